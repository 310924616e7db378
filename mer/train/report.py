"""The report folder of a federated run: UF1/UAR per round, epsilon per round, confusion matrix.

Reads ``RUN_DIR/metrics.jsonl`` and ``RUN_DIR/summary.json`` as the coordinator wrote them and
writes ``RUN_DIR/report/{metrics.png, epsilon.png, confusion.png}``. The class names come from
the data folder's label map when the summary names one, else they are numbered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_rounds(metrics: list[dict[str, Any]], path: Path) -> Path | None:
    rows = [(m["round"], m["eval"]) for m in metrics if m.get("round", 0) >= 1 and m.get("eval")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for key, style in (("uf1", "o-"), ("uar", "s--"), ("accuracy", ":")):
        pts = [(r, ev[key]) for r, ev in rows if key in ev]
        if pts:
            ax.plot(*zip(*pts), style, label=key.upper() if key != "accuracy" else "accuracy")
    ax.set_xlabel("round")
    ax.set_ylabel("pooled over held-out subjects")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Federated DPK-GAT: evaluation per round")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(run_dir: str | Path, class_names: list[str] | None = None) -> dict[str, Any]:
    """Write the PNGs; return summary.json's content (empty if the run wrote none)."""
    from fedcore.dp.report import ReportError, plot_epsilon, read_privacy_history
    from fedcore.simulation import read_metrics
    from mer.train.plots import confusion_png

    run_dir = Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    plot_rounds(metrics, out / "metrics.png")
    try:
        plot_epsilon(read_privacy_history(run_dir), out / "epsilon.png")
    except ReportError:
        pass  # a run without DP has no epsilon to plot
    final = next((m["eval"] for m in reversed(metrics) if m.get("eval", {}).get("confusion")), None)
    if final:
        k = len(final["confusion"])
        names = class_names or [f"class {i}" for i in range(k)]
        confusion_png(final["confusion"], names, out / "confusion.png", "pooled confusion, final round")
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}
