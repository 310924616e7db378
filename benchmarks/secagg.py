"""SecAgg+ benchmark: per-stage time and bytes, the ratio to a plain round, PRG throughput.

    python benchmarks/secagg.py [--quick] [--out benchmarks/results]

Every round runs in one process through :mod:`fedcore.secagg.driver` (each message serialised to
bytes and parsed back), so "round time" is the *sequential* cost of all clients' and the server's
work; in the real daemons the clients run in parallel and local training dominates. The plain
baseline (``fedcore.plain``) runs through the same driver in the same process and run.

Dropouts happen after share-keys and before masked input, the costly case for the server: it must
rebuild every dropped client's pairwise masks with each surviving neighbour. Weights are sample
counts up to ``max_weight`` = 100 (the ring is then Z_2^32 for every n here). Medians over
``reps`` rounds after one warm-up round per (n, L).

Writes benchmarks/results/secagg.json and secagg.png.

``--compare``: the compute (server + all clients, one process) of the configurations that
FACTS.md compares with Flower 1.42's SecAgg+ (n = 10 and 50 at 1e5, n = 50 at 1e6, 20 % of the
clients dropping before their masked input), with the masks applied as before (one
:func:`~fedcore.secagg.prg.add_mask` per mask over the whole vector, a reused scratch vector)
and as now (:func:`~fedcore.secagg.prg.apply_masks`, blocked), alternating round by round in the
same run; exact sums checked in both. Compute is reported as wall time (server + clients, as the
driver counts it) and as the process's CPU time over the round (``time.process_time``: one
thread, so the CPU it used, less exposed to other load on a shared machine). Flower's figures are FACTS.md's (not this run: flwr is not
installed here). Writes benchmarks/results/secagg_compare.{json,png}.
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
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedcore.common.aggregation import AggregationContext, ClientIdentity, ClientJob
from fedcore.common.stages import Stage
from fedcore.plain import PlainClient, PlainServer
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.driver import run_round
from fedcore.secagg.prg import fill_mask
from fedcore.secagg.server import SecAggServer

CONFIG = {
    "clients": [5, 10, 20, 50, 100],
    "lengths": [100_000, 1_000_000],
    "dropouts": [0.0, 0.1, 0.3],
    "reps": {100_000: 3, 1_000_000: 2},
    "max_weight": 100,
    "settings": {},  # the mode's defaults: k auto, threshold 0.5, clip 1.0, bits auto
    "quick_skip": "L = 1e6 only for n <= 20; 2 reps",
    "targets": {"ratio_at_1e5_10_clients": 1.2, "server_unmask_100_clients_30pct_1e5_s": 0.3},
}
FED = "bench"


def _vectors(length: int, count: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(0, 0.1, length).astype(np.float32) for _ in range(count)]


def _setup(mode: str, n: int, length: int, round_: int, vectors: list[np.ndarray], clients=None):
    ids = tuple(f"client-{i:03d}" for i in range(n))
    settings = CONFIG["settings"]
    ctx = AggregationContext(FED, round_, 0, ids, length, settings, max_weight=CONFIG["max_weight"])
    if clients is None:
        cls = SecAggClient if mode == "secagg" else PlainClient
        clients = {c: cls(ClientIdentity(c), FED, settings) for c in ids}
    weights = {c: float(1 + (i * 37) % CONFIG["max_weight"]) for i, c in enumerate(ids)}
    jobs = {c: ClientJob(round_, 0, vectors[i % len(vectors)], weights[c]) for i, c in enumerate(ids)}
    return ids, ctx, clients, jobs, weights


def _expected(ids, jobs, weights, contributors, clip: float | None) -> np.ndarray:
    total = np.zeros(jobs[ids[0]].vector.shape[0])
    for c in contributors:
        x = jobs[c].vector.astype(np.float64)
        total += weights[c] * (np.clip(x, -clip, clip) if clip else x)
    return total


def bench_rounds(mode: str, n: int, length: int, dropout: float, reps: int, vectors) -> dict:
    server = SecAggServer(FED, CONFIG["settings"]) if mode == "secagg" else PlainServer(FED, CONFIG["settings"])
    clients, runs, err = None, [], 0.0
    rng = np.random.default_rng(n)
    for r in range(reps + 1):  # round 0 is the warm-up
        ids, ctx, clients, jobs, weights = _setup(mode, n, length, r + 1, vectors, clients)
        gone = set(rng.choice(ids, round(dropout * n), replace=False)) if dropout else set()
        stage = Stage.SECAGG_MASKED_INPUT if mode == "secagg" else Stage.PLAIN_INPUT
        run = run_round(server, clients, ctx, jobs, {stage: gone})
        clip = run.result.notes["clip"] if mode == "secagg" else None
        want = _expected(ids, jobs, weights, [c for c in ids if c not in gone], clip)
        err = max(err, float(np.abs(run.result.weighted_sum - want).max()))
        if r:
            runs.append(run)
    stages = {}
    for i, st in enumerate(runs[0].stages):
        stages[st.stage] = {
            "server_s": float(np.median([run.stages[i].server_s for run in runs])),
            "client_s": float(np.median([run.stages[i].client_s for run in runs])),
            "client_max_s": float(np.median([run.stages[i].client_max_s for run in runs])),
            "client_mean_s": float(np.median([run.stages[i].client_s / max(run.stages[i].responded, 1)
                                              for run in runs])),
            "bytes_down": st.bytes_down, "bytes_up": st.bytes_up, "responded": st.responded}
    notes = runs[-1].result.notes
    return {"mode": mode, "n": n, "L": length, "dropout": dropout, "reps": reps,
            "total_s": float(np.median([run.total_s for run in runs])),
            "server_s": float(np.median([run.server_s for run in runs])),
            "client_s": float(np.median([run.client_s for run in runs])),
            "bytes_up_per_client": sum(s["bytes_up"] for s in stages.values()) / n,
            "max_abs_error": err, "stages": stages,
            **({k: notes[k] for k in ("bits", "frac_bits", "degree", "threshold", "share_threshold")}
               if mode == "secagg" else {})}


def bench_prg(length: int, reps: int = 50) -> dict:
    key = os.urandom(32)
    out = np.empty(length, np.uint32)
    zeros = bytes(4 * length)

    def ours():
        fill_mask(key, out)

    def raw():  # a raw AES-128-CTR keystream of the same length, output allocated per call
        Cipher(algorithms.AES(key[:16]), modes.CTR(key[16:])).encryptor().update(zeros)

    res = {}
    for name, fn in (("fill_mask", ours), ("raw_aes_ctr", raw)):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        res[name + "_ms"] = float(np.median(ts) * 1e3)
    res["L"] = length
    res["fill_mask_GBps"] = 4 * length / (res["fill_mask_ms"] * 1e-3) / 1e9
    res["ratio_fill_mask_to_raw"] = res["fill_mask_ms"] / res["raw_aes_ctr_ms"]
    return res


#: FACTS.md section 7: Flower 1.42 SecAgg+ compute (server + all clients), measured in another run
FLOWER_FACTS_S = {(10, 100_000): 0.361, (50, 100_000): 14.2, (50, 1_000_000): 22.0}
#: FACTS.md section 7: this project's compute in that run (before the blocked masks)
PROJECT_FACTS_S = {(10, 100_000): 0.041, (50, 100_000): 0.69, (50, 1_000_000): 2.77}
_LEGACY_SCRATCH: dict = {}


def _legacy_apply_masks(target, masks, block_bytes=None):
    """How masks were applied before apply_masks: one full-length keystream + add per mask."""
    from fedcore.secagg.prg import add_mask
    key = (target.shape, target.dtype)
    if key not in _LEGACY_SCRATCH:
        _LEGACY_SCRATCH.clear()
        _LEGACY_SCRATCH[key] = np.empty_like(target)
    for material, sign in masks:
        add_mask(target, material, sign, _LEGACY_SCRATCH[key])
    return target


def compare(out: Path, reps: int) -> int:
    import fedcore.secagg.client as client_mod
    import fedcore.secagg.unmask as unmask_mod
    blocked = client_mod.apply_masks
    impls = {"before": _legacy_apply_masks, "after": blocked}
    load = os.getloadavg()
    rows = []
    for (n, length), flower_s in FLOWER_FACTS_S.items():
        vectors = _vectors(length)
        server = SecAggServer(FED, CONFIG["settings"])
        clients = None
        rng = np.random.default_rng(n)
        times: dict[str, list[tuple[float, float, float]]] = {"before": [], "after": []}
        err = {"before": 0.0, "after": 0.0}
        for r in range(2 * (reps + 1)):
            name = ("before", "after")[r % 2]
            client_mod.apply_masks = unmask_mod.apply_masks = impls[name]
            try:
                ids, ctx, clients, jobs, weights = _setup("secagg", n, length, r + 1, vectors, clients)
                gone = set(rng.choice(ids, round(0.2 * n), replace=False))
                cpu0 = time.process_time()
                run = run_round(server, clients, ctx, jobs, {Stage.SECAGG_MASKED_INPUT: gone})
                cpu = time.process_time() - cpu0
            finally:
                client_mod.apply_masks = unmask_mod.apply_masks = blocked
            want = _expected(ids, jobs, weights, [c for c in ids if c not in gone], run.result.notes["clip"])
            err[name] = max(err[name], float(np.abs(run.result.weighted_sum - want).max()))
            if r >= 2:  # the first round of each is the warm-up
                times[name].append((run.server_s, run.client_s, cpu))
        row = {"n": n, "L": length, "dropout": 0.2, "reps": reps,
               "flower_facts_compute_s": flower_s,
               "project_facts_compute_s": PROJECT_FACTS_S[(n, length)]}
        for name in ("before", "after"):
            row[f"{name}_compute_s"] = float(np.median([a + b for a, b, _ in times[name]]))
            row[f"{name}_server_s"] = float(np.median([a for a, _, _ in times[name]]))
            row[f"{name}_clients_s"] = float(np.median([b for _, b, _ in times[name]]))
            row[f"{name}_cpu_s"] = float(np.median([c for _, _, c in times[name]]))
            row[f"{name}_cpu_min_s"] = float(np.min([c for _, _, c in times[name]]))
            row[f"{name}_max_abs_error"] = err[name]
        row["after_over_before"] = row["after_compute_s"] / row["before_compute_s"]
        row["after_over_before_cpu"] = row["after_cpu_s"] / row["before_cpu_s"]
        row["after_over_flower_not_same_run"] = row["after_compute_s"] / row["flower_facts_compute_s"]
        row["after_cpu_over_flower_not_same_run"] = row["after_cpu_s"] / row["flower_facts_compute_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {"load_average_at_start": load, "cpus": os.cpu_count(), "python": sys.version.split()[0],
           "flower": "FACTS.md section 7 (Flower 1.42 simulation engine, another run on a machine like this)",
           "target_ratio_to_flower": 0.10, "rows": rows}
    (out / "secagg_compare.json").write_text(json.dumps(res, indent=1))
    _plot_compare(rows, out / "secagg_compare.png")
    return 0


def _plot_compare(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    xs = np.arange(len(rows))
    for i, (key, label) in enumerate((("before_compute_s", "this project, masks one by one (same run)"),
                                      ("after_compute_s", "this project, blocked masks (same run)"),
                                      ("flower_facts_compute_s", "Flower 1.42 SecAgg+ (FACTS.md, not this run)"))):
        bars = ax.bar(xs + (i - 1) * 0.27, [r[key] for r in rows], 0.27, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"n={r['n']}, L={r['L']:.0e}" for r in rows])
    ax.set_ylabel("compute, server + all clients (s)")
    ax.set_title("SecAgg+ with 20 % dropping before masked input", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = results["rounds"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for length, style in zip(CONFIG["lengths"], ("-", "--")):
        for mode, drop, color in (("secagg", 0.0, "C0"), ("secagg", 0.1, "C1"), ("secagg", 0.3, "C3"),
                                  ("plain", 0.0, "k")):
            pts = sorted((r["n"], r["total_s"]) for r in rounds
                         if r["mode"] == mode and r["L"] == length and r["dropout"] == drop)
            if pts:
                label = f"{mode}{'' if mode == 'plain' else f' {int(drop * 100)}% drop'} L={length:.0e}"
                ax.plot(*zip(*pts), style, marker="o", color=color, label=label)
    ax.set(xlabel="clients", ylabel="round time, all clients sequential (s)", xscale="log", yscale="log",
           title="One aggregation round (in-process, serialised)")
    ax.legend(fontsize=7)
    ax = axes[1]
    for length, style in zip(CONFIG["lengths"], ("-", "--")):
        for drop, color in ((0.0, "C0"), (0.1, "C1"), (0.3, "C3")):
            pts = sorted((r["n"], r["stages"]["SECAGG_UNMASK"]["server_s"]) for r in rounds
                         if r["mode"] == "secagg" and r["L"] == length and r["dropout"] == drop)
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=color, label=f"{int(drop * 100)}% drop L={length:.0e}")
    ax.axhline(0.3, color="grey", lw=0.8, ls=":", label="target 0.3 s (n=100, 30 %, 1e5)")
    ax.set(xlabel="clients", ylabel="server unmask stage (s)", xscale="log", yscale="log", title="Server unmask")
    ax.legend(fontsize=7)
    ax = axes[2]
    pick = [r for r in rounds if r["mode"] == "secagg" and r["L"] == CONFIG["lengths"][0] and r["dropout"] == 0.3]
    names = ["SECAGG_ADVERTISE_KEYS", "SECAGG_SHARE_KEYS", "SECAGG_MASKED_INPUT", "SECAGG_UNMASK"]
    xs = np.arange(len(pick))
    bottom = np.zeros(len(pick))
    for i, name in enumerate(names):
        for side, hatch in (("client_mean_s", ""), ("server_s", "//")):
            vals = np.array([r["stages"][name][side] for r in pick])
            ax.bar(xs, vals, bottom=bottom, color=f"C{i}", hatch=hatch, edgecolor="white",
                   label=f"{name.removeprefix('SECAGG_').lower()} {'server' if side == 'server_s' else 'per client'}")
            bottom += vals
    ax.set_xticks(xs, [str(r["n"]) for r in pick])
    ax.set(xlabel="clients", ylabel="s", title="Per-stage time, L=1e5, 30 % dropout")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def targets_only(out: Path, reps: int = 7) -> int:
    """The issue's two targets, measured alone (less exposed to a busy machine than the sweep)."""
    vectors = _vectors(100_000)
    load = os.getloadavg()
    secagg = bench_rounds("secagg", 10, 100_000, 0.0, reps, vectors)
    plain = bench_rounds("plain", 10, 100_000, 0.0, reps, vectors)
    unmask = bench_rounds("secagg", 100, 100_000, 0.3, reps, vectors)
    res = {"load_average_at_start": load, "reps": reps,
           "ratio_at_1e5_10_clients": secagg["total_s"] / plain["total_s"],
           "secagg_round_s": secagg["total_s"], "plain_round_s": plain["total_s"],
           "secagg_stages": secagg["stages"], "plain_stages": plain["stages"],
           "server_unmask_100_clients_30pct_1e5_s": unmask["stages"]["SECAGG_UNMASK"]["server_s"],
           "unmask_run": unmask}
    (out / "secagg_targets.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=CONFIG["quick_skip"])
    parser.add_argument("--targets", action="store_true",
                        help="only the two target configurations, 7 reps each, into secagg_targets.json")
    parser.add_argument("--compare", action="store_true",
                        help="before/after the blocked masks on FACTS.md's Flower configurations")
    parser.add_argument("--reps", type=int, default=5, help="rounds per implementation with --compare")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    logging.getLogger("fedcore.secagg").setLevel(logging.ERROR)  # clipped-value warnings, once per client
    args.out.mkdir(parents=True, exist_ok=True)
    if args.targets:
        return targets_only(args.out)
    if args.compare:
        return compare(args.out, args.reps)
    started = time.time()
    results = {"config": CONFIG, "quick": args.quick, "load_average_at_start": os.getloadavg(),
               "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                           "numpy": np.__version__},
               "prg": [bench_prg(length) for length in CONFIG["lengths"]], "rounds": []}
    for length in CONFIG["lengths"]:
        vectors = _vectors(length)
        for n in CONFIG["clients"]:
            if args.quick and length > 100_000 and n > 20:
                continue
            reps = 2 if args.quick else CONFIG["reps"][length]
            results["rounds"].append(bench_rounds("plain", n, length, 0.0, reps, vectors))
            for drop in CONFIG["dropouts"]:
                row = bench_rounds("secagg", n, length, drop, reps, vectors)
                results["rounds"].append(row)
                print(f"secagg n={n:3d} L={length:.0e} drop={drop:.0%}: round {row['total_s']:.3f} s, server unmask "
                      f"{row['stages']['SECAGG_UNMASK']['server_s']:.3f} s, err {row['max_abs_error']:.1e}", flush=True)
    ratios = []
    for r in results["rounds"]:
        if r["mode"] == "secagg" and r["dropout"] == 0.0:
            plain = next(p for p in results["rounds"] if p["mode"] == "plain" and p["n"] == r["n"] and p["L"] == r["L"])
            ratios.append({"n": r["n"], "L": r["L"], "secagg_s": r["total_s"], "plain_s": plain["total_s"],
                           "ratio": r["total_s"] / plain["total_s"]})
    results["ratios"] = ratios
    target = next(x for x in ratios if x["n"] == 10 and x["L"] == 100_000)
    unmask = next(r for r in results["rounds"] if r["mode"] == "secagg" and r["n"] == 100 and r["L"] == 100_000
                  and r["dropout"] == 0.3)["stages"]["SECAGG_UNMASK"]["server_s"]
    results["targets"] = {"ratio_at_1e5_10_clients": target["ratio"], "ratio_target": 1.2,
                          "server_unmask_100_clients_30pct_1e5_s": unmask, "server_unmask_target_s": 0.3}
    results["elapsed_s"] = time.time() - started
    (args.out / "secagg.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "secagg.png")
    for x in ratios:
        print(f"ratio secagg/plain n={x['n']:3d} L={x['L']:.0e}: {x['ratio']:.2f} "
              f"({x['secagg_s']:.3f} s vs {x['plain_s']:.3f} s)")
    for p in results["prg"]:
        print(f"PRG L={p['L']:.0e}: fill_mask {p['fill_mask_ms']:.3f} ms vs raw AES-CTR {p['raw_aes_ctr_ms']:.3f} ms")
    print(json.dumps(results["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
