"""``status --config coordinator.toml`` and ``stop --config coordinator.toml``.

``status`` reads, in this order, and says which it read:

1. the running coordinator's status endpoint (``/status.json``; the bound URL from
   ``run_dir/status.address``, with ``[status] token`` and, over HTTPS, ``[tls] ca``), when
   ``[status]`` serves one;
2. ``run_dir/status.json``, which the coordinator rewrites at least every 5 s whether or not a
   page is served (so it also shows the final state of a run that ended);
3. ``run_dir/metrics.jsonl`` and ``summary.json`` (a run from before status.json existed).

``stop`` writes ``run_dir/stop.request`` (:mod:`fedcore.coordinator.control`); the coordinator
finishes the round in flight, tells the clients it is over and exits with code 7. ``--wait``
waits for that exit. Both commands only read the config (no certificates are needed for
``stop``) and need the run folder on this machine.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fedcore.config.coordinator import CoordinatorConfig, load_coordinator_config
from fedcore.coordinator import control
from fedcore.exitcodes import ExitCode
from fedcore.status.board import STATUS_FILE
from fedcore.status.server import ADDRESS_FILE
from fedcore.status.snapshot import history_rows
from fedcore.status.text import render_text


def fetch_status(url: str, token: str = "", ca: Path | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``url``status.json from a status server; raises OSError / ValueError when it cannot."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/status.json", headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise ValueError(f"{url}status.json answered HTTP {resp.status}: {body[:200].decode(errors='replace')}")
        return json.loads(body)
    finally:
        conn.close()


def _from_records(cfg: CoordinatorConfig) -> dict[str, Any] | None:
    run_dir = cfg.server.run_dir
    metrics, summary = run_dir / "metrics.jsonl", run_dir / "summary.json"
    if not metrics.exists() and not summary.exists():
        return None
    history = (
        [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
    )
    done = json.loads(summary.read_text()) if summary.exists() else {}
    rows = history_rows(history)
    return {
        "federation": done.get("federation", cfg.federation.id),
        "aggregation": cfg.federation.aggregation,
        "strategy": cfg.strategy.name,
        "phase": done.get("status", "?"),
        "round": rows[-1]["round"] if rows else 0,
        "rounds": cfg.federation.rounds,
        "completed": len(rows),
        "outcome": done.get("reason", ""),
        "history": rows,
    }


def read_status(cfg: CoordinatorConfig) -> tuple[dict[str, Any] | None, str, list[str]]:
    """(snapshot, where it came from, notes on sources that failed)."""
    run_dir = cfg.server.run_dir
    notes: list[str] = []
    running = control.running_pid(run_dir)
    if cfg.status.enabled and running:
        address = run_dir / ADDRESS_FILE
        url = address.read_text().strip() if address.exists() else f"http://{cfg.status.address}/"
        try:
            return fetch_status(url, cfg.status.token, cfg.tls.ca), url, notes
        except (OSError, ValueError) as exc:
            notes.append(f"the status endpoint {url} did not answer ({exc}); reading the run folder")
    path = run_dir / STATUS_FILE
    if path.exists():
        try:
            return json.loads(path.read_text()), str(path), notes
        except (OSError, ValueError) as exc:
            notes.append(f"{path} cannot be read ({exc})")
    snap = _from_records(cfg)
    return snap, str(run_dir / "metrics.jsonl") if snap else "", notes


def status_command(config: Path, as_json: bool = False) -> int:
    cfg = load_coordinator_config(config, check_files=False)
    snap, source, notes = read_status(cfg)
    for note in notes:
        print(f"note: {note}")
    if snap is None:
        print(
            f"no run in {cfg.server.run_dir} yet (no coordinator running, no status.json, metrics.jsonl or "
            f"summary.json)"
        )
        return ExitCode.UNREACHABLE
    if as_json:
        print(json.dumps(snap, indent=1, sort_keys=True))
    else:
        print(render_text(snap, source=source, running=control.running_pid(cfg.server.run_dir)))
    return ExitCode.OK


def stop_command(config: Path, wait: bool = False, reason: str = "") -> int:
    cfg = load_coordinator_config(config, check_files=False)
    run_dir = cfg.server.run_dir
    pid = control.running_pid(run_dir)
    if pid is None:
        print(f"no coordinator is running on {run_dir}: nothing to stop")
        return ExitCode.UNREACHABLE
    control.request_stop(run_dir, reason)
    print(
        f"asked the coordinator (pid {pid}) to stop after the current round; it tells the clients, exits with "
        f"code {int(ExitCode.STOPPED)} (STOPPED), and resumes from that round when started again"
    )
    if not wait:
        return ExitCode.OK
    while control.running_pid(run_dir) is not None:
        time.sleep(0.5)
    summary = run_dir / "summary.json"
    done = json.loads(summary.read_text()) if summary.exists() else {}
    print(f"the coordinator exited: {done.get('status', '?')}: {done.get('reason', 'no summary.json')}")
    return ExitCode.OK
