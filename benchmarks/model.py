"""Model cost benchmark: parameters, training throughput, and the price of DP-SGD (Opacus).

For each model (dpk-gat, flow-cnn) at batch 32 on inputs of the model's working size (what the
trainer feeds it):

- parameter count and parameter tensors;
- forward+backward samples/s (no optimiser);
- one full training step (forward, backward, AdamW step) without DP, and with Opacus DP-SGD
  (per-sample gradients, clipping to 1.0, Gaussian noise 1.0) in grad_sample_mode "hooks" and
  "ew" (torch ExpandedWeights); the ratio private / non-private is what issue 5 budgets (<= 1.5x).

Steps of the three variants are interleaved round-robin after a warm-up and the median is
reported, so drift on a shared machine hits all variants alike. CPU runs default to one thread
(on a 2-core machine shared with other work, two OpenMP threads stall on each other).

    python benchmarks/model.py [--device auto] [--threads 1] [--steps 30]

Writes benchmarks/results/model.json and model.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from opacus import GradSampleModule
from opacus.grad_sample import GradSampleModuleExpandedWeights
from opacus.optimizers import DPOptimizer

from mer.model import build_model, mer_loss
from mer.train.centralised import resolve_device

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("plain", "hooks", "ew")


def _batch(model, batch: int, device):
    g = torch.Generator().manual_seed(0)
    s = model.input_size
    x = torch.randn(batch, 3, s, s, generator=g).to(device)
    y = (torch.arange(batch) % model.config.num_classes).to(device)
    au = (torch.rand(batch, 12, generator=g) > 0.7).float().to(device)
    known = torch.ones(batch, dtype=torch.bool, device=device)
    return x, y, au, known


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(name: str, mode: str, batch: int, device):
    """A closure running one training step of ``name`` in ``mode`` (plain | hooks | ew)."""
    torch.manual_seed(0)
    model = build_model(name, 5).to(device).train()
    x, y, au, known = _batch(model, batch, device)
    net = model
    if mode == "hooks":
        net = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    elif mode == "ew":
        net = GradSampleModuleExpandedWeights(model, batch_first=True, loss_reduction="mean")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    if mode != "plain":
        opt = DPOptimizer(opt, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=batch)

    def step():
        opt.zero_grad(set_to_none=True)
        mer_loss(net(x), y, au, known).backward()
        opt.step()

    return model, step


def throughput(name: str, batch: int, device, steps: int) -> float:
    """Forward+backward samples per second (no optimiser step), median of ``steps``."""
    model = build_model(name, 5).to(device).train()
    x, y, au, known = _batch(model, batch, device)
    times = []
    for i in range(steps + 3):
        _sync(device)
        t = time.perf_counter()
        mer_loss(model(x), y, au, known).backward()
        _sync(device)
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times[3:])


def step_times(name: str, batch: int, device, steps: int, warmup: int = 3) -> dict:
    steps_by_mode = {m: make_step(name, m, batch, device)[1] for m in MODES}
    times = {m: [] for m in MODES}
    for i in range(warmup + steps):
        for m in MODES:
            _sync(device)
            t = time.perf_counter()
            steps_by_mode[m]()
            _sync(device)
            if i >= warmup:
                times[m].append(time.perf_counter() - t)
    med = {m: statistics.median(v) for m, v in times.items()}
    return {
        "step_ms_median": {m: round(v * 1e3, 3) for m, v in med.items()},
        "step_ms_min": {m: round(min(v) * 1e3, 3) for m, v in times.items()},
        "ratio_vs_plain": {m: round(med[m] / med["plain"], 3) for m in MODES},
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1; 0 = torch's default)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument("--models", nargs="+", default=["dpk-gat", "flow-cnn"])
    ap.add_argument("--out", default=str(RESULTS), help="results folder")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")  # Opacus' full-backward-hook notice on every step
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "steps": args.steps,
        "torch": torch.__version__,
        "models": {},
    }
    for name in args.models:
        model = build_model(name, 5)
        entry = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "parameter_tensors": len(list(model.parameters())),
            "input_size": model.input_size,
            "train_samples_per_s": round(throughput(name, args.batch, device, args.steps), 1),
        }
        entry.update(step_times(name, args.batch, device, args.steps))
        report["models"][name] = entry
        print(name, json.dumps(entry))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "" if device.type == "cpu" else f"_{device.type}"
    (out / f"model{tag}.json").write_text(json.dumps(report, indent=2))
    _plot(report, out / f"model{tag}.png")
    return report


def _plot(report: dict, path: Path) -> None:
    names = list(report["models"])
    fig, ax = plt.subplots(figsize=(7, 3.8))
    w = 0.25
    for k, mode in enumerate(MODES):
        vals = [report["models"][n]["step_ms_median"][mode] for n in names]
        bars = ax.bar([i + (k - 1) * w for i in range(len(names))], vals, w, label=mode)
        for b, n in zip(bars, names):
            ax.annotate(
                f"{report['models'][n]['ratio_vs_plain'][mode]:.2f}x",
                (b.get_x() + b.get_width() / 2, b.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(range(len(names)), [f"{n}\n{report['models'][n]['parameters']:,} params" for n in names])
    ax.set_ylabel("ms per training step (median)")
    ax.set_title(f"DP-SGD step cost, batch {report['batch']}, {report['device_name']}, {report['threads']} thread(s)")
    ax.legend(title="Opacus mode")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
