"""What the cryptographic RNG (now the default) costs a DP-SGD step.

For two models -- DPK-GAT (``mer.model.build_model("dpk-gat", num_classes=5)``, input
(B, 3, 128, 128)) and a tiny softmax regression (16 -> 4) -- one DP-SGD step through
:func:`fedcore.dp.opacus_train.dp_train` (Poisson sampling, expected batch 32, hooks mode) with
``secure_rng = true`` (AES-256-CTR noise, four Gaussians summed per coordinate, CSPRNG Poisson
masks) against ``secure_rng = false`` (torch's generator). Step times are medians over the steps
after a warm-up epoch; the two settings alternate for ``--repeats`` rounds in one process so that
drift on a shared machine hits both; the ratio is taken per repeat and its median reported.
The noise draw alone (one step's Gaussian noise for all parameters: SecureRNG's four summed
Gaussians in float64 against ``torch.normal``) is timed apart, as it is steadier than whole steps.

    python benchmarks/dp_secure_rng.py [--repeats 3] [--epochs 3] [--threads 1]

Writes benchmarks/results/dp_secure_rng.json and dp_secure_rng.png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 32


def _models():
    import torch
    import torch.nn.functional as F
    from torch import nn

    from mer.model import build_model, mer_loss

    def dpk(n, g):
        x = torch.randn(n, 3, 128, 128, generator=g)
        return (x, torch.arange(n) % 5, (torch.rand(n, 12, generator=g) > 0.7).float(), torch.ones(n, dtype=torch.bool))

    def tiny(n, g):
        return (torch.randn(n, 16, generator=g), torch.arange(n) % 4)

    return {
        "dpk-gat": (lambda: build_model("dpk-gat", num_classes=5), mer_loss, dpk),
        "tiny": (lambda: nn.Sequential(nn.Linear(16, 4)), F.cross_entropy, tiny),
    }


def run_once(name: str, secure: bool, epochs: int) -> dict:
    import torch

    from fedcore.dp.config import PrivacyConfig
    from fedcore.dp.opacus_train import dp_train
    from fedcore.dp.plan import plan_privacy

    make, loss_fn, data = _models()[name]
    torch.manual_seed(0)
    model = make()
    n = 10 * BATCH  # q = 0.1: 10 steps an epoch
    tensors = data(n, torch.Generator().manual_seed(0))
    config = PrivacyConfig(
        noise_multiplier=1.0,
        planned_rounds=1,
        local_epochs=epochs,
        batch_size=BATCH,
        secure_rng=secure,
        accountant="rdp",
    )
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_privacy(config, n)
        ledger = plan.open_ledger(Path(tmp) / "l.json")
        dp_train(
            model,
            loss_fn,
            tensors,
            privacy=config,
            ledger=ledger,
            round=1,
            plan=plan,
            device="cpu",
            on_step=lambda info: stamps.append(time.perf_counter()),
        )
    times = [b - a for a, b in itertools.pairwise(stamps)][9:]  # drop the first epoch
    return {
        "step_ms": statistics.median(times) * 1e3,
        "steps": len(times),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def noise_draw(parameters: int, repeats: int = 15) -> dict:
    import numpy as np
    import torch

    from fedcore.dp.rng import SecureRNG

    rng = SecureRNG()

    def secure():
        rng.standard_normal(4 * parameters).reshape(4, parameters).sum(axis=0)

    def plain():
        torch.normal(0.0, 1.0, size=(parameters,))

    out = {}
    for name, fn in (("secure", secure), ("torch", plain)):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[f"{name}_ms_median"] = round(float(np.median(times)) * 1e3, 3)
    return out


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    out = {"batch": BATCH, "repeats": args.repeats, "epochs": args.epochs, "threads": args.threads, "models": {}}
    for name in _models():
        run_once(name, False, 2)  # warm-up (imports, allocator)
        rows = []
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            got = {secure: run_once(name, secure, args.epochs) for secure in order}
            rows.append(
                {
                    "insecure_ms": got[False]["step_ms"],
                    "secure_ms": got[True]["step_ms"],
                    "ratio": got[True]["step_ms"] / got[False]["step_ms"],
                }
            )
            print(name, r, json.dumps(rows[-1]), flush=True)
        out["models"][name] = {
            "parameters": got[True]["parameters"],
            "insecure_step_ms_median": round(statistics.median(x["insecure_ms"] for x in rows), 3),
            "secure_step_ms_median": round(statistics.median(x["secure_ms"] for x in rows), 3),
            "secure_over_insecure_median": round(statistics.median(x["ratio"] for x in rows), 3),
            "noise_draw": noise_draw(got[True]["parameters"]),
            "repeats": rows,
        }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dp_secure_rng.json").write_text(json.dumps(out, indent=2))
    _plot(out, RESULTS / "dp_secure_rng.png")
    print(json.dumps({k: {m: v for m, v in d.items() if m != "repeats"} for k, d in out["models"].items()}, indent=2))


def _plot(out: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(out["models"]))
    for ax, (name, d) in zip(axes, out["models"].items(), strict=True):
        ax.bar(
            ["torch RNG", "CSPRNG (default)"],
            [d["insecure_step_ms_median"], d["secure_step_ms_median"]],
            color=["#999999", "#2a6fbb"],
        )
        ax.set_title(f"{name} ({d['parameters']:,} params)\nx{d['secure_over_insecure_median']:.2f}", fontsize=9)
        ax.set_ylabel("DP-SGD step, ms (median)")
    fig.suptitle(f"Cost of secure_rng, batch {out['batch']}, {out['threads']} thread(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
