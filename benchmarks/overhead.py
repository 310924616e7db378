"""What privacy costs in time and bytes: plain vs SecAgg vs CKKS rounds, DP vs non-DP training.

    python benchmarks/overhead.py [--quick] [--out benchmarks/results]

For the DPK-GAT size (125,864 parameters) and a 1e6-parameter model, all in one run:

1. **Real daemons** (:func:`fedcore.simulation.simulate`: a coordinator and 3 client processes
   over mutual TLS on loopback) with ``benchmarks/sized_workload.py``, an MLP whose parameter
   count is a setting: round time and bytes up/down per round in ``plain``, ``secagg`` and
   ``ckks`` mode without DP (median of rounds 2..R; round 1 warms up), round 0 (CKKS key set-up
   and the statistics sum), and the same ``plain`` federation with DP-SGD (epsilon 8). Ratios are
   against the ``plain`` run of the same size in this run.
2. **Per-stage breakdown** through :class:`fedcore.he.driver.InProcessDriver` (every message
   serialised; 3 clients; update vectors of the same sizes): server and per-client seconds and
   bytes of every stage, median of ``reps`` after a warm-up.
3. **DP vs non-DP client training**, in process, median of ``reps`` fits after a warm-up: the real
   DPK-GAT :class:`~mer.train.federated.MERTrainer` on a client of the embedded synthetic set, and
   the sized MLP at both sizes (both through ``dp_train``, DP on or off).

Writes benchmarks/results/overhead.json and overhead.png. Torch uses one thread per process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # for sized_workload ("benchmarks" is an Opacus package name)

import sized_workload as sw

CONFIG = {
    "sizes": {"dpk-gat": 125_864, "1e6": 1_000_000},
    "clients": 3,
    "rounds": 4,                  # round 1 is the warm-up; medians over rounds 2..R
    "modes": ["plain", "secagg", "ckks"],
    "workload": {"samples": 240, "epochs": 1, "batch_size": 32, "lr": 0.05},
    "dp": {"target_epsilon": 8.0, "max_grad_norm": 1.0},
    "reps": 3,
    "quick": {"rounds": 3, "reps": 2},
}
RESULTS = BENCH / "results"


def _median(xs):
    return float(statistics.median(xs)) if xs else None


# -- 1. daemons ---------------------------------------------------------------------------------
def daemon_run(size: int, mode: str, rounds: int, dp: bool, tmp: Path) -> dict:
    from fedcore.simulation import simulate

    env = {"PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    settings = {**CONFIG["workload"], "parameters": size}
    t0 = time.perf_counter()
    res = simulate(clients=CONFIG["clients"], rounds=rounds, out=tmp / f"{mode}-{size}-{'dp' if dp else 'nodp'}",
                   aggregation=mode, workload="sized_workload:workload", workload_settings=settings,
                   privacy=dict(CONFIG["dp"]) if dp else {"enabled": False}, federation={"evaluate_every": 0},
                   env=env, progress=False, echo=False, timeout=600)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"simulate({mode}, {size}, dp={dp}) ended with code {res.returncode}; see {res.run_dir}/logs")
    later = [m for m in res.metrics if m["round"] >= 2]
    history_s = sum(m["seconds"] for m in res.metrics)
    return {"mode": mode, "parameters": size, "dp": dp, "rounds": rounds, "wall_s": wall,
            "round_s": _median([m["seconds"] for m in later]),
            "round_s_all": [m["seconds"] for m in res.metrics],
            "bytes_up_per_round": _median([m["bytes_up"] for m in later]),
            "bytes_down_per_round": _median([m["bytes_down"] for m in later]),
            "round0_s": res.summary.get("seconds", 0.0) - history_s,
            "epsilon_max": res.summary.get("epsilon_max")}


# -- 2. per-stage breakdown ---------------------------------------------------------------------
def stage_breakdown(size: int, mode: str, reps: int) -> dict:
    from fedcore.common.aggregation import ClientJob
    from fedcore.he.driver import InProcessDriver
    from mer.federated_sim import mode_objects

    ids = [f"client{i + 1}" for i in range(CONFIG["clients"])]
    server, clients = mode_objects(mode, ids, {"min_clients": 3})
    drv = InProcessDriver(server, clients)
    t0 = time.perf_counter()
    setup = drv.setup()
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(size)
    vectors = {c: rng.normal(0, 0.01, size) for c in ids}
    runs = []
    for r in range(reps + 1):
        jobs = {c: ClientJob(r + 1, 0, vectors[c], 60.0 + 40 * i) for i, c in enumerate(ids)}
        t0 = time.perf_counter()
        _, stages = drv.run_round(r + 1, jobs)
        if r:  # r = 0 warms up
            runs.append((time.perf_counter() - t0, stages))
    out = {"mode": mode, "parameters": size, "reps": reps, "round_s": _median([t for t, _ in runs]),
           "setup_s": setup_s if setup else 0.0, "setup_bytes": sum(s.bytes_up + s.bytes_down for s in setup),
           "stages": {}}
    for i, st in enumerate(runs[0][1]):
        name = st.stage.name
        out["stages"][name] = {
            "server_s": _median([s[i].server_seconds for _, s in runs]),
            "client_s_median": _median([statistics.median(s[i].client_seconds.values()) for _, s in runs]),
            "bytes_up_per_client": st.bytes_up / len(ids), "bytes_down_per_client": st.bytes_down / len(ids)}
    return out


# -- 3. DP vs non-DP client training --------------------------------------------------------------
def _fit_times(trainer, params, spec, config, statistics_, reps: int) -> float:
    import torch

    times = []
    for i in range(reps + 1):
        torch.manual_seed(i)
        t0 = time.perf_counter()
        trainer.fit(params, spec, i + 1, config, statistics_)
        if i:
            times.append(time.perf_counter() - t0)
    return _median(times)


def dp_training(size: int | None, reps: int, data: Path | None, tmp: Path) -> dict:
    """Median fit seconds with and without DP; ``size`` None = the real DPK-GAT MERTrainer."""
    out = {"model": "dpk-gat (MERTrainer)" if size is None else f"sized MLP ({size} parameters)"}
    for dp in (False, True):
        privacy = dict(CONFIG["dp"]) if dp else {"enabled": False}
        work = tmp / f"fit-{size}-{dp}"
        if size is None:
            from mer.bench_config import hyperparameters
            from mer.train.federated import workload
            hp = hyperparameters(CONFIG["dp"]["target_epsilon"])  # what `bench epsilon` and `simulate` train with
            settings = {"data": str(data / "data"), "format": "casme2", "cache_dir": str(data / "cache"),
                        "num_classes": 5, "num_clients": 3, "client_index": 0, "seed": 0,
                        "epochs": int(hp["epochs"]), "batch_size": int(hp["batch_size"]), "lr": float(hp["lr"])}
        else:
            workload = sw.workload
            settings = {**CONFIG["workload"], "parameters": size}
        params, spec = workload.initial_parameters(settings, 0)
        trainer = workload.make_trainer(settings, "client1", work, "cpu")
        stats = trainer.statistics(settings)
        config = {**settings, "rounds": 50, "privacy": privacy}
        out["dp_s" if dp else "nodp_s"] = _fit_times(trainer, params, spec, config, stats, reps)
        out["parameters"] = int(spec.size)
    out["ratio"] = out["dp_s"] / out["nodp_s"]
    return out


# -- plot and main ------------------------------------------------------------------------------
def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    sizes = list(CONFIG["sizes"])
    x = np.arange(len(sizes))
    w = 0.2
    rows = res["daemons"]
    for ax, key, label in ((axes[0], "round_s", "round time (s), real daemons"),
                           (axes[1], "bytes_up_per_round", "bytes up per round (all clients)")):
        variants = [(m, False) for m in CONFIG["modes"]] + [("plain", True)]
        for j, (mode, dp) in enumerate(variants):
            vals = [next(r[key] for r in rows if r["mode"] == mode and r["dp"] == dp and r["parameters"] == CONFIG["sizes"][s])
                    for s in sizes]
            bars = ax.bar(x + (j - 1.5) * w, vals, w, label=f"{mode}{' + DP' if dp else ''}")
            for b, s in zip(bars, sizes):
                ratio = res["ratios"][s][f"{mode}{'_dp' if dp else ''}_{'time' if key == 'round_s' else 'bytes'}"]
                ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"x{ratio:.1f}", ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(x, [f"{s}\n({CONFIG['sizes'][s]:,} params)" for s in sizes])
        ax.set_yscale("log")
        ax.set_title(label + "; xN = vs plain")
        ax.legend(fontsize=8)
    ax = axes[2]
    dps = res["dp_training"]
    ax.bar(np.arange(len(dps)) - 0.2, [d["nodp_s"] for d in dps], 0.4, label="no DP")
    ax.bar(np.arange(len(dps)) + 0.2, [d["dp_s"] for d in dps], 0.4, label="DP-SGD (eps 8)")
    for i, d in enumerate(dps):
        ax.text(i + 0.2, d["dp_s"], f"x{d['ratio']:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(len(dps)), [d["model"].replace(" (", "\n(") for d in dps], fontsize=8)
    ax.set_title("one client's local training (s per fit)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ratios(res: dict) -> dict:
    out = {}
    for name, size in CONFIG["sizes"].items():
        rows = [r for r in res["daemons"] if r["parameters"] == size]
        base = next(r for r in rows if r["mode"] == "plain" and not r["dp"])
        out[name] = {}
        for r in rows:
            key = f"{r['mode']}{'_dp' if r['dp'] else ''}"
            out[name][f"{key}_time"] = r["round_s"] / base["round_s"]
            out[name][f"{key}_bytes"] = r["bytes_up_per_round"] / base["bytes_up_per_round"]
            out[name][f"{key}_bytes_down"] = r["bytes_down_per_round"] / base["bytes_down_per_round"]
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from fedcore.dp.config import InsecureRNGWarning
    from mer.data.synth import synthesize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 2 reps")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=InsecureRNGWarning)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("fedcore.dp.config").setLevel(logging.ERROR)
    rounds = CONFIG["quick"]["rounds"] if args.quick else CONFIG["rounds"]
    reps = CONFIG["quick"]["reps"] if args.quick else CONFIG["reps"]
    started = time.time()
    res = {"config": CONFIG, "quick": args.quick, "load_average_at_start": os.getloadavg(),
           "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                       "torch": torch.__version__}, "daemons": [], "stages": [], "dp_training": []}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        tmp = Path(tmp)
        for name, size in CONFIG["sizes"].items():
            for mode in CONFIG["modes"]:
                res["stages"].append(stage_breakdown(size, mode, reps))
            for mode, dp in [(m, False) for m in CONFIG["modes"]] + [("plain", True)]:
                row = daemon_run(size, mode, rounds, dp, tmp)
                res["daemons"].append(row)
                print(f"daemons {name:7s} {mode:6s}{' +DP' if dp else '    '}: round {row['round_s']:.3f} s, "
                      f"up {row['bytes_up_per_round'] / 1e6:.2f} MB, down {row['bytes_down_per_round'] / 1e6:.2f} MB, "
                      f"round 0 {row['round0_s']:.2f} s", flush=True)
        synthesize(tmp / "mer" / "data", subjects=24, seed=0)
        from mer.data.load import load_arrays
        load_arrays(tmp / "mer" / "data", "casme2", cache_dir=tmp / "mer" / "cache", verbose=False)
        for size in (None, *CONFIG["sizes"].values()):
            row = dp_training(size, reps, tmp / "mer", tmp)
            res["dp_training"].append(row)
            print(f"fit {row['model']}: no DP {row['nodp_s']:.3f} s, DP {row['dp_s']:.3f} s (x{row['ratio']:.2f})",
                  flush=True)
    res["ratios"] = ratios(res)
    res["elapsed_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / "overhead.png")
    print(json.dumps(res["ratios"], indent=1))
    print(f"done in {res['elapsed_s']:.0f} s: {args.out / 'overhead.json'}, {args.out / 'overhead.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
