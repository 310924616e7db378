"""``/metrics``: the status board in the Prometheus text format, through ``prometheus-client``.

A custom collector reads the board's newest snapshot at each scrape (no metric objects to keep in
step with the engine), registered in a registry of its own (not the process-global one).

Families (all prefixed ``fedpsyau_``)::

    federation_info{federation,aggregation,strategy,run_id,workload}   1
    phase{fedpsyau_phase=...}                    state set: joining, setup, stats, ..., done, aborted
    round, rounds_planned, attempt, rounds_completed_total, stop_requested
    clients{state="joined"|"alive"}
    client_up{client}, client_last_seen_seconds{client}
    client_epsilon{client}, client_epsilon_budget{client}    (clients that report DP-SGD)
    eval{metric="uf1"|"uar"|"accuracy"|"loss"}, eval_round  (the newest evaluated round)
    round_seconds                                            (the newest completed round)
    bytes_total{direction="up"|"down"}                       (completed rounds)
    status_updated_timestamp_seconds
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    StateSetMetricFamily,
)

from fedcore.coordinator.state import Phase
from fedcore.status.snapshot import EVAL_KEYS

if TYPE_CHECKING:
    from fedcore.status.board import StatusBoard

__all__ = ["CONTENT_TYPE_LATEST", "FederationCollector", "exposition"]


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"fedpsyau_{name}", doc, value=float(value or 0))


class FederationCollector:
    def __init__(self, board: StatusBoard):
        self.board = board

    def collect(self):
        s = self.board.current()
        if not s:
            return
        yield InfoMetricFamily(
            "fedpsyau_federation",
            "the federation this coordinator serves",
            value={k: str(s.get(k, "")) for k in ("federation", "aggregation", "strategy", "run_id", "workload")},
        )
        yield StateSetMetricFamily(
            "fedpsyau_phase", "the round engine's phase", value={p.value: p.value == s.get("phase") for p in Phase}
        )
        yield _gauge("round", "the current wire round (0 = set-up and statistics)", s.get("round"))
        yield _gauge("rounds_planned", "training rounds planned", s.get("rounds"))
        yield _gauge("attempt", "the current round's attempt", s.get("attempt"))
        yield CounterMetricFamily(
            "fedpsyau_rounds_completed",
            "training rounds completed (checkpointed)",
            value=float(s.get("completed") or 0),
        )
        yield _gauge(
            "stop_requested", "1 when a stop after the current round was asked for", bool(s.get("stop_requested"))
        )
        clients = s.get("clients", [])
        g = GaugeMetricFamily("fedpsyau_clients", "clients by state", labels=["state"])
        g.add_metric(["joined"], len(clients))
        g.add_metric(["alive"], sum(1 for c in clients if c.get("alive")))
        yield g
        up = GaugeMetricFamily("fedpsyau_client_up", "1 while the client is alive", labels=["client"])
        seen = GaugeMetricFamily(
            "fedpsyau_client_last_seen_seconds", "seconds since the client was last heard from", labels=["client"]
        )
        eps = GaugeMetricFamily(
            "fedpsyau_client_epsilon", "sample-level epsilon the client reports spent", labels=["client"]
        )
        budget = GaugeMetricFamily("fedpsyau_client_epsilon_budget", "the client's target epsilon", labels=["client"])
        for c in clients:
            up.add_metric([c["id"]], 1.0 if c.get("alive") else 0.0)
            seen.add_metric([c["id"]], float(c.get("last_seen_s") or 0))
            if c.get("dp") and isinstance(c.get("epsilon"), (int, float)):
                eps.add_metric([c["id"]], float(c["epsilon"]))
                if c.get("target_epsilon"):
                    budget.add_metric([c["id"]], float(c["target_epsilon"]))
        yield from (up, seen, eps, budget)
        history = s.get("history", [])
        evaluated = [r for r in history if any(k in r for k in EVAL_KEYS)]
        ev = GaugeMetricFamily(
            "fedpsyau_eval", "pooled evaluation metrics of the newest evaluated round", labels=["metric"]
        )
        if evaluated:
            for k in EVAL_KEYS:
                if k in evaluated[-1]:
                    ev.add_metric([k], float(evaluated[-1][k]))
        yield ev
        yield _gauge("eval_round", "the newest evaluated round", evaluated[-1]["round"] if evaluated else 0)
        yield _gauge(
            "round_seconds", "duration of the newest completed round", history[-1].get("seconds") if history else 0
        )
        b = CounterMetricFamily("fedpsyau_bytes", "bytes of the completed rounds", labels=["direction"])
        b.add_metric(["up"], float(s.get("bytes_up") or 0))
        b.add_metric(["down"], float(s.get("bytes_down") or 0))
        yield b
        yield _gauge("status_updated_timestamp_seconds", "when this snapshot was taken (Unix time)", s.get("updated"))


def exposition(board: StatusBoard) -> bytes:
    """The text exposition of ``board``'s newest snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FederationCollector(board))
    return generate_latest(registry)
