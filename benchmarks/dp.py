"""DP benchmark: epsilon vs noise for typical client sizes, DP-SGD step cost through dp_train, samplers.

1. Epsilon (RDP, delta 1e-5) against the noise multiplier for clients of n = 80, 160, 255, 500
   records (batch 32, Poisson rate q = 1/ceil(n/32), 1 local epoch a round, 50 rounds), and the
   noise multiplier each needs for epsilon 1, 3 and 8 (with the PRV epsilon at that noise, for
   comparison).
2. One training step through :func:`fedcore.dp.opacus_train.dp_train` (Poisson sampling,
   per-sample gradients, clipping, noise) against its plain path, at batch 32 on DPK-GAT
   (``mer.model.build_model("dpk-gat", num_classes=5)``, input (B, 3, 128, 128)), for the
   Opacus ``hooks`` and ``ew`` modes; a stand-in conv+linear model if mer is not importable.
   Each variant runs in its own subprocess (so ru_maxrss is its own peak memory); step times
   are the median of the steps after a warm-up epoch, timed by the ``on_step`` callback.
3. Discrete Gaussian sampler speed (1e6 samples, numpy PCG64 and the AES-CTR SecureRNG).

    python benchmarks/dp.py [--threads 1] [--epochs 3] [--device cpu]

Writes benchmarks/results/dp.json and dp.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (80, 160, 255, 500)
TARGETS = (1.0, 3.0, 8.0)
ROUNDS, BATCH, DELTA = 50, 32, 1e-5
SIGMAS = (0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 14.0, 20.0)


def epsilon_curves() -> dict:
    from fedcore.dp.accounting import derive_noise_multiplier, epsilon

    out = {}
    for n in SIZES:
        steps_per_round = math.ceil(n / BATCH)
        q, steps = 1 / steps_per_round, ROUNDS * steps_per_round
        curve = [round(epsilon(q, s, steps, DELTA), 4) for s in SIGMAS]
        needed = {}
        for target in TARGETS:
            sigma = derive_noise_multiplier(q, steps, target, DELTA)
            needed[f"{target:g}"] = {
                "noise_multiplier": round(sigma, 4),
                "rdp_epsilon": round(epsilon(q, sigma, steps, DELTA), 4),
                "prv_epsilon": round(epsilon(q, sigma, steps, DELTA, "prv"), 4),
            }
        out[str(n)] = {"sample_rate": q, "steps": steps, "epsilon_by_sigma": curve, "sigma_for_epsilon": needed}
        print(
            f"n={n}: q={q:.4f} steps={steps} sigma for eps 1/3/8 =",
            [needed[f"{t:g}"]["noise_multiplier"] for t in TARGETS],
            flush=True,
        )
    return out


def _model():
    """DPK-GAT if mer is importable, else a stand-in; returns (model, name, loss_fn, make_targets)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    try:
        from mer.model import build_model, mer_loss

        model = build_model("dpk-gat", num_classes=5)

        def targets(n, g):
            return (
                torch.arange(n) % 5,
                (torch.rand(n, 12, generator=g) > 0.7).float(),
                torch.ones(n, dtype=torch.bool),
            )

        return model, "dpk-gat", mer_loss, targets
    except ImportError:  # stand-in of similar size, all layers Opacus-supported
        model = nn.Sequential(
            nn.Conv2d(3, 16, 4, stride=4),
            nn.GroupNorm(4, 16),
            nn.GELU(),
            nn.Conv2d(16, 32, 4, stride=4),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(512, 128),
            nn.GELU(),
            nn.Linear(128, 5),
        )
        return model, "stand-in (mer not importable)", F.cross_entropy, lambda n, g: (torch.arange(n) % 5,)


def measure_steps(mode: str, epochs: int, threads: int, device: str) -> dict:
    """Run in a subprocess: dp_train (mode = plain | hooks | fused | ew) and report step times and peak memory."""
    import torch

    from fedcore.dp.config import PrivacyConfig
    from fedcore.dp.opacus_train import dp_train
    from fedcore.dp.plan import plan_privacy

    warnings.filterwarnings("ignore")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, name, loss_fn, targets = _model()
    n = 10 * BATCH  # q = 0.1: 10 steps an epoch, expected batch 32
    g = torch.Generator().manual_seed(0)
    tensors = (torch.randn(n, 3, 128, 128, generator=g), *targets(n, g))
    config = PrivacyConfig(
        enabled=mode != "plain",
        noise_multiplier=1.0,
        planned_rounds=1,
        local_epochs=epochs,
        batch_size=BATCH,
        secure_rng=False,
    )
    stamps: list[tuple[float, int]] = []

    def on_step(info) -> None:
        stamps.append((time.perf_counter(), info.batch_size))

    with tempfile.TemporaryDirectory() as tmp:
        ledger = plan_privacy(config, n).open_ledger(Path(tmp) / "l.json") if config.enabled else None
        start = time.perf_counter()
        stats = dp_train(
            model,
            loss_fn,
            tensors,
            privacy=config,
            ledger=ledger,
            round=1,
            device=device,
            optimizer_factory=lambda p: torch.optim.AdamW(p, lr=1e-3),
            on_step=on_step,
            grad_sample_mode="hooks" if mode == "plain" else mode,
        )
        total = time.perf_counter() - start
    times = [b - a for (a, _), (b, size) in itertools.pairwise(stamps) if size > 0]
    timed = times[9:] if len(times) > 12 else times  # drop the first epoch (10 steps) as warm-up
    return {
        "model": name,
        "mode": mode,
        "steps": stats.steps,
        "empty_batches": stats.empty_batches,
        "step_ms_median": round(statistics.median(timed) * 1e3, 2),
        "step_ms_min": round(min(timed) * 1e3, 2),
        "timed_steps": len(timed),
        "call_s": round(total, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def step_costs(epochs: int, threads: int, device: str) -> dict:
    results = {}
    for mode in ("plain", "hooks", "fused", "ew"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--epochs",
            str(epochs),
            "--threads",
            str(threads),
            "--device",
            device,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            results[mode] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        else:
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(mode, json.dumps(results[mode]), flush=True)
    plain = results["plain"].get("step_ms_median")
    for mode in ("hooks", "fused", "ew"):
        if plain and "step_ms_median" in results[mode]:
            results[mode]["ratio_vs_plain"] = round(results[mode]["step_ms_median"] / plain, 3)
    return results


def sampler_speed(repeats: int = 5) -> dict:
    import numpy as np

    from fedcore.dp.discrete import sample_discrete_gaussian
    from fedcore.dp.rng import SecureRNG

    out = {}
    for label, rng in (("numpy_pcg64", np.random.default_rng(0)), ("secure_aes_ctr", SecureRNG())):
        for sigma in (1.0, 1000.0):
            sample_discrete_gaussian(sigma, 10_000, rng)  # warm-up
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                sample_discrete_gaussian(sigma, 1_000_000, rng)
                times.append(time.perf_counter() - t)
            out[f"{label}_sigma{sigma:g}_ms_per_1e6"] = round(statistics.median(times) * 1e3, 1)
    print("sampler", json.dumps(out), flush=True)
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for n, entry in report["epsilon"].items():
        ax.plot(
            SIGMAS,
            entry["epsilon_by_sigma"],
            marker="o",
            markersize=3,
            label=f"n = {n} (q = {entry['sample_rate']:.3g})",
        )
    for target in TARGETS:
        ax.axhline(target, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("noise multiplier sigma")
    ax.set_ylabel("epsilon after 50 rounds (RDP, delta 1e-5)")
    ax.set_title("Epsilon vs noise, batch 32, 1 local epoch a round", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    modes = [m for m in ("plain", "hooks", "fused", "ew") if "step_ms_median" in report["steps"].get(m, {})]
    values = [report["steps"][m]["step_ms_median"] for m in modes]
    palette = {"plain": "#888", "hooks": "#1f77b4", "fused": "#2ca02c", "ew": "#ff7f0e"}
    bars = bx.bar(modes, values, color=[palette[m] for m in modes])
    for bar, m in zip(bars, modes, strict=True):
        ratio = report["steps"][m].get("ratio_vs_plain")
        label = f"{bar.get_height():.0f} ms" + (f"\n{ratio:.2f}x" if ratio else "")
        bx.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    if values:
        bx.set_ylim(0, max(values) * 1.3)
    failed = [
        f"{m}: {report['steps'][m]['error'][:60]}"
        for m in ("hooks", "fused", "ew")
        if "error" in report["steps"].get(m, {})
    ]
    if failed:
        bx.text(0.02, 0.97, "failed - " + "\n".join(failed), transform=bx.transAxes, fontsize=7, va="top")
    model = next((report["steps"][m]["model"] for m in modes), "?")
    bx.set_ylabel("median step time (ms)")
    bx.set_title(
        f"dp_train step, batch {BATCH}, {model}, {report['device']} x{report['threads']} thread(s)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for the step timing (0 = default)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of 10 steps per variant (the first is warm-up)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--skip-steps", action="store_true", help="only epsilon curves and sampler speed")
    ap.add_argument("--child", choices=("plain", "hooks", "fused", "ew"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure_steps(args.child, args.epochs, args.threads, args.device)))
        return {}
    report = {
        "device": args.device,
        "threads": args.threads,
        "rounds": ROUNDS,
        "batch": BATCH,
        "delta": DELTA,
        "sigmas": list(SIGMAS),
    }
    report["epsilon"] = epsilon_curves()
    report["sampler"] = sampler_speed()
    report["steps"] = {} if args.skip_steps else step_costs(args.epochs, args.threads, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dp.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "dp.png")
    print(f"wrote {out / 'dp.json'} and {out / 'dp.png'}")
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
