"""The status snapshot of a real engine, and what the page, /metrics and the terminal make of it."""

from __future__ import annotations

import re

from fedcore_testkit import ScriptedClient, TinyWorkload, make_engine, run_until
from prometheus_client.parser import text_string_to_metric_families

from fedcore.proto.fedpsyau.v1 import federation_pb2 as pb
from fedcore.status.board import StatusBoard
from fedcore.status.metrics import exposition
from fedcore.status.page import render_fragment, render_page, svg_plot
from fedcore.status.snapshot import fingerprint, take
from fedcore.status.text import render_text


def _privacy(eps):
    return pb.PrivacyReport(enabled=True, epsilon=eps, delta=1e-5, accountant="rdp", target_epsilon=8.0)


def _after_one_round(tmp_path):
    """Round 1 completed and evaluated, round 2's TRAIN open with bob's report in."""
    engine = make_engine(tmp_path, workload=TinyWorkload(stats=False), federation={"rounds": 3})
    clients = [ScriptedClient(engine, c) for c in ("alice", "bob")]
    for c, eps in zip(clients, (1.5, 2.5), strict=True):
        c.join()
        c.train_report = pb.TrainReport(ready=True, metrics={"loss": 1.0}, privacy=_privacy(eps))
    run_until(engine, clients, lambda: len(engine.state.history) == 1 and engine.state.round == 2)
    clients[1].step()
    return engine


def test_the_snapshot_holds_round_stage_clients_privacy_and_metrics(tmp_path):
    engine = _after_one_round(tmp_path)
    with engine.lock:
        snap = take(engine)
    assert (snap["phase"], snap["round"], snap["rounds"], snap["stage"], snap["completed"]) == (
        "train",
        2,
        3,
        "TRAIN",
        1,
    )
    parts = {c["id"]: c["part"] for c in snap["clients"]}
    assert parts == {"alice": "working", "bob": "answered"}
    alice = next(c for c in snap["clients"] if c["id"] == "alice")
    assert alice["alive"] and alice["epsilon"] == 1.5 and alice["target_epsilon"] == 8.0
    (row,) = snap["history"]
    assert row["round"] == 1 and 0 <= row["uf1"] <= 1 and "accuracy" in row and row["bytes_up"] > 0
    assert row["epsilon_max"] == 2.5


def test_the_page_shows_every_client_the_round_and_a_plot_point_per_evaluated_round(tmp_path):
    engine = _after_one_round(tmp_path)
    with engine.lock:
        snap = take(engine)
    html = render_page({**snap, "version": 7})
    assert 'data-round="2"' in html and 'data-version="7"' in html and "stage TRAIN" in html
    for cid in ("alice", "bob"):
        assert f'data-client="{cid}"' in html
    assert "1.500 / 8" in html and 'data-round="1"' in html  # epsilon vs budget; round 1's row
    assert re.search(r'data-key="uf1" data-points="1"', html)
    assert "<script" not in render_fragment(snap)  # the fragment carries no script


def test_client_ids_and_reasons_are_escaped(tmp_path):
    snap = {
        "federation": "f<b>",
        "phase": "aborted",
        "outcome": "<img src=x onerror=alert(1)>",
        "clients": [{"id": "<script>alert(1)</script>", "alive": True, "part": "idle"}],
        "history": [],
    }
    html = render_page(snap)
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script&gt;" in html


def test_the_plot_keeps_the_round_axis_and_marks_missing_data():
    empty = svg_plot([], 10)
    assert "no round evaluated yet" in empty and ">10</text>" in empty
    two = svg_plot([{"round": 1, "uf1": 0.2}, {"round": 3, "uf1": 0.5, "uar": 0.4}], 10)
    assert two.count("<circle") == 3 and 'data-key="uf1" data-points="2"' in two


def test_metrics_exposition_parses_and_carries_the_numbers(tmp_path):
    engine = _after_one_round(tmp_path)
    board = StatusBoard(engine, tmp_path)
    board.refresh(block=True)
    families = {f.name: f for f in text_string_to_metric_families(exposition(board).decode())}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert value[("fedpsyau_round", ())] == 2
    assert value[("fedpsyau_rounds_completed_total", ())] == 1
    assert value[("fedpsyau_client_epsilon", (("client", "bob"),))] == 2.5
    assert value[("fedpsyau_client_epsilon_budget", (("client", "alice"),))] == 8.0
    assert value[("fedpsyau_clients", (("state", "alive"),))] == 2
    assert value[("fedpsyau_phase", (("fedpsyau_phase", "train"),))] == 1
    assert value[("fedpsyau_phase", (("fedpsyau_phase", "done"),))] == 0
    assert 0 <= value[("fedpsyau_eval", (("metric", "uf1"),))] <= 1
    assert value[("fedpsyau_bytes_total", (("direction", "up"),))] > 0


def test_the_board_counts_versions_by_what_changed_and_writes_status_json(tmp_path):
    engine = _after_one_round(tmp_path)
    board = StatusBoard(engine, tmp_path)
    board.refresh(block=True)
    first = board.version
    board.refresh(block=True)
    assert board.version == first  # only the ages moved
    with engine.lock:
        before = fingerprint(take(engine))
        engine.registry.clients["alice"].alive = False
        assert fingerprint(take(engine)) != before
    board.refresh(block=True)
    assert board.version == first + 1
    assert '"alive": false' in (tmp_path / "status.json").read_text()
    assert board.wait(first, timeout=0.05)["version"] == first + 1  # a newer version returns at once


def test_the_terminal_view_lists_the_same(tmp_path):
    engine = _after_one_round(tmp_path)
    with engine.lock:
        snap = take(engine)
    text = render_text(snap, source="test", running=123)
    assert "round 2 of 3 (1 completed)" in text and "stage TRAIN" in text and "coordinator pid 123 running" in text
    assert re.search(r"alice\s+alive .*working .*epsilon 1\.500 / 8", text)
    assert re.search(r"^\s+1\s+\d+\s+2\s+\d\.\d{3}", text, flags=re.MULTILINE)
