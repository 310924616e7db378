"""The status page in a real headless browser (Chromium) over a running federation: it loads,
shows every client and the current round, and updates itself; a screenshot is taken.

Skipped when no Chromium is installed (``apt-get install chromium``): CI's machines may lack it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from e2e_kit import provision_fast, spawn, stop_all, wait_for

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium on this machine (apt-get install chromium); the status page's browser test needs one",
)


def browser(url: str, profile: Path, *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def attr(dom: str, name: str) -> int:
    m = re.search(rf'id="status"[^>]*\b{name}="(\d+)"', dom) or re.search(rf'<div id="status"[^>]*{name}="(\d+)"', dom)
    assert m, dom[:2000]
    return int(m.group(1))


@pytest.fixture
def federation(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prov = provision_fast(
        tmp_path / "fed",
        port,
        rounds=60,
        workload="fedcore.examples.softmax:workload",
        client_settings=[{"slowdown": 0.4}] * 3,
        status={"address": "127.0.0.1:0"},
    )
    run = prov.out / "run"
    procs = [spawn(["coordinator", "--config", str(prov.coordinator_config)], tmp_path / "coordinator.log")]
    procs += [spawn(["client", "--config", str(c)], tmp_path / f"{cid}.log") for cid, c in prov.client_configs.items()]
    try:
        wait_for(
            lambda: (
                (run / "status.json").exists()
                and json.loads((run / "status.json").read_text()).get("completed", 0) >= 1
            ),
            120,
            "a first completed round",
            procs[:1],
        )
        yield (run / "status.address").read_text().strip(), tmp_path
    finally:
        stop_all(procs)


def test_the_page_loads_shows_the_clients_and_round_and_updates_itself(federation):
    url, tmp = federation
    first = browser(url, tmp / "chrome", "--dump-dom")
    for cid in ("alice", "bob", "carol"):
        assert f'data-client="{cid}"' in first
    round1 = attr(first, "data-round")
    assert round1 >= 1 and "of 60" in first and 'data-key="uf1"' in first
    assert re.search(r'data-key="uf1" data-points="[1-9]', first)  # the plot has the rounds so far

    later = browser(url, tmp / "chrome", "--dump-dom", "--virtual-time-budget=4000")
    updates = re.search(r'<body[^>]*data-updates="(\d+)"', later)
    assert updates and int(updates.group(1)) >= 1, later[:1500]  # the script swapped in news
    assert attr(later, "data-round") >= round1 and attr(later, "data-version") > attr(first, "data-version")

    shot = tmp / "status.png"
    browser(url, tmp / "chrome", f"--screenshot={shot}", "--window-size=1100,1250", "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
