"""How SecAgg+ scales with the number of clients: time and bytes per client and on the coordinator.

    python benchmarks/scale.py [--quick] [--out benchmarks/results]

SecAgg rounds with n in {10, 50, 100, 200} clients through :func:`fedcore.secagg.driver.run_round`:
the full protocol (advertise keys, share keys with t-of-n Shamir shares sealed client to client,
masked input, unmask), every message serialised to bytes and parsed back, in one process. 10 % of
the clients drop out after sharing keys, before their masked input (the costly case for the
coordinator: it rebuilds each dropout's pairwise masks with every surviving neighbour). Vector
lengths 1e5 and 1e4, the mode's default settings (masking-graph degree k "auto": complete up to
61 clients, then even k >= 10 log2 n; threshold a strict majority).

Per n: per-client seconds (mean over the clients that answered, summed over stages), coordinator
seconds, bytes up and down per client and through the coordinator; the growth exponent b of
``y = a n^b`` fitted by least squares on log y vs log n (:func:`fit_exponent`), for n in the
sweep. A client's work follows its masking-graph degree k rather than n (k = n - 1 up to 61
clients, then about 10 log2 n), so the client time is also fitted against k. Medians of ``reps`` rounds after one warm-up round per (n, L); each round's sum is checked
against the exact sum of the survivors' clipped, weighted inputs.

Writes benchmarks/results/scale.json and scale.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

CONFIG = {
    "clients": [10, 50, 100, 200],
    "lengths": [100_000, 10_000],
    "dropout": 0.1,
    "reps": 2,
    "max_weight": 100,
    "settings": {},  # the mode's defaults
    "quick": {"clients": [10, 50, 100], "lengths": [10_000], "reps": 1},
}
FED = "scale"


def fit_exponent(n, y) -> dict[str, float]:
    """Least-squares fit of ``log y = log a + b log n``: {"exponent": b, "coefficient": a, "r2": R^2}.

    Needs at least two distinct n and positive y (ValueError otherwise).
    """
    n = np.asarray(n, np.float64)
    y = np.asarray(y, np.float64)
    if n.shape != y.shape or n.ndim != 1:
        raise ValueError(f"n and y must be 1-D of one length (got shapes {n.shape} and {y.shape})")
    if len(np.unique(n)) < 2 or (n <= 0).any() or (y <= 0).any():
        raise ValueError(f"need >= 2 distinct positive n and positive y (got n={n.tolist()}, y={y.tolist()})")
    x, z = np.log(n), np.log(y)
    b, log_a = np.polyfit(x, z, 1)
    resid = z - (log_a + b * x)
    total = ((z - z.mean()) ** 2).sum()
    r2 = 1.0 - (resid ** 2).sum() / total if total > 0 else 1.0
    return {"exponent": float(b), "coefficient": float(np.exp(log_a)), "r2": float(r2)}


def one_n(n: int, length: int, reps: int) -> dict:
    from fedcore.common.aggregation import AggregationContext, ClientIdentity, ClientJob
    from fedcore.common.stages import Stage
    from fedcore.secagg.client import SecAggClient
    from fedcore.secagg.driver import run_round
    from fedcore.secagg.server import SecAggServer

    ids = tuple(f"client-{i:03d}" for i in range(n))
    settings = CONFIG["settings"]
    server = SecAggServer(FED, settings)
    clients = {c: SecAggClient(ClientIdentity(c), FED, settings) for c in ids}
    rng = np.random.default_rng(n * 7 + length)
    base = [rng.normal(0, 0.1, length) for _ in range(4)]
    weights = {c: float(1 + (i * 37) % CONFIG["max_weight"]) for i, c in enumerate(ids)}
    runs, err = [], 0.0
    for r in range(reps + 1):  # r = 0 warms up
        ctx = AggregationContext(FED, r + 1, 0, ids, length, settings, max_weight=CONFIG["max_weight"])
        jobs = {c: ClientJob(r + 1, 0, base[i % 4], weights[c]) for i, c in enumerate(ids)}
        gone = set(rng.choice(ids, round(CONFIG["dropout"] * n), replace=False).tolist())
        t0 = time.perf_counter()
        run = run_round(server, clients, ctx, jobs, {Stage.SECAGG_MASKED_INPUT: gone})
        wall = time.perf_counter() - t0
        clip = run.result.notes["clip"]
        want = sum(weights[c] * np.clip(jobs[c].vector, -clip, clip) for c in ids if c not in gone)
        err = max(err, float(np.abs(run.result.weighted_sum - want).max()))
        if run.result.num_contributors != n - len(gone):
            raise RuntimeError(f"n={n}: {run.result.num_contributors} contributors, expected {n - len(gone)}")
        if r:
            runs.append((wall, run))
    per_client_s = [sum(s.client_s / max(s.responded, 1) for s in run.stages) for _, run in runs]
    up = [sum(s.bytes_up for s in run.stages) for _, run in runs]
    down = [sum(s.bytes_down for s in run.stages) for _, run in runs]
    notes = runs[-1][1].result.notes
    return {"n": n, "L": length, "dropouts": round(CONFIG["dropout"] * n), "reps": reps,
            "client_s": float(np.median(per_client_s)),
            "client_max_s": float(np.median([sum(s.client_max_s for s in run.stages) for _, run in runs])),
            "server_s": float(np.median([run.server_s for _, run in runs])),
            "round_s": float(np.median([w for w, _ in runs])),
            "server_unmask_s": float(np.median([run.stages[-1].server_s for _, run in runs])),
            "bytes_up_per_client": float(np.median(up)) / n, "bytes_down_per_client": float(np.median(down)) / n,
            "server_bytes": float(np.median(up)) + float(np.median(down)),
            "max_abs_error": err, **{k: notes[k] for k in ("bits", "frac_bits", "degree", "threshold")}}


METRICS = ("client_s", "server_s", "bytes_up_per_client", "bytes_down_per_client", "server_bytes")


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for length, ls in zip(res["lengths"], ("-", "--")):
        rows = sorted((r for r in res["rows"] if r["L"] == length), key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        fits = res["fits"][str(length)]
        for key, color, label in (("client_s", "C0", "per client"), ("server_s", "C3", "coordinator")):
            axes[0].plot(ns, [r[key] for r in rows], ls, marker="o", color=color,
                         label=f"{label}, L={length:.0e} (b={fits[key]['exponent']:.2f})")
        for key, color, label in (("bytes_up_per_client", "C0", "up per client"),
                                  ("bytes_down_per_client", "C2", "down per client"),
                                  ("server_bytes", "C3", "through the coordinator")):
            axes[1].plot(ns, [r[key] for r in rows], ls, marker="o", color=color,
                         label=f"{label}, L={length:.0e} (b={fits[key]['exponent']:.2f})")
    for ax, what in zip(axes, ("seconds per round", "bytes per round")):
        ax.set(xscale="log", yscale="log", xlabel="clients n", ylabel=what)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_title(f"SecAgg+ time vs n ({int(CONFIG['dropout'] * 100)} % dropout; b = fitted exponent)")
    axes[1].set_title("SecAgg+ bytes vs n")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n <= 100, L = 1e4, 1 rep")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    logging.getLogger("fedcore.secagg").setLevel(logging.ERROR)  # clipped-value warnings
    cfg = {**CONFIG, **(CONFIG["quick"] if args.quick else {})}
    started = time.time()
    res = {"config": CONFIG, "quick": args.quick, "clients": cfg["clients"], "lengths": cfg["lengths"],
           "load_average_at_start": os.getloadavg(),
           "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
           "rows": [], "fits": {}}
    for length in cfg["lengths"]:
        for n in cfg["clients"]:
            row = one_n(n, length, cfg["reps"])
            res["rows"].append(row)
            print(f"n={n:3d} L={length:.0e}: client {row['client_s'] * 1e3:.1f} ms, coordinator {row['server_s']:.3f} s, "
                  f"up/client {row['bytes_up_per_client'] / 1e3:.0f} kB, down/client "
                  f"{row['bytes_down_per_client'] / 1e3:.1f} kB, k={row['degree']}, err {row['max_abs_error']:.1e}",
                  flush=True)
        rows = [r for r in res["rows"] if r["L"] == length]
        res["fits"][str(length)] = {m: fit_exponent([r["n"] for r in rows], [r[m] for r in rows]) for m in METRICS}
        # a client's work follows its masking-graph degree k (complete graph up to 61 clients), not n itself
        res["fits"][str(length)]["client_s_vs_degree"] = fit_exponent([r["degree"] for r in rows],
                                                                      [r["client_s"] for r in rows])
    res["elapsed_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / "scale.png")
    for length, fits in res["fits"].items():
        print(f"L={int(length):.0e}: " + ", ".join(f"{m} ^{f['exponent']:.2f} (R2 {f['r2']:.2f})" for m, f in fits.items()))
    print(f"done in {res['elapsed_s']:.0f} s: {args.out / 'scale.json'}, {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
