"""What privacy costs in time and bytes: plain vs SecAgg vs CKKS rounds, DP vs non-DP training.

    python benchmarks/overhead.py [--quick] [--out benchmarks/results]

For 1e5 parameters, the DPK-GAT size (125,864) and a 1e6-parameter model, all in one run:

1. **Real daemons** (:func:`fedcore.simulation.simulate`: a coordinator and 3 client processes
   over mutual TLS on loopback) with ``benchmarks/sized_workload.py``, an MLP whose parameter
   count is a setting: round time and bytes up/down per round in ``plain``, ``secagg`` and
   ``ckks`` mode without DP (``repeats`` federations per mode, run interleaved -- plain, secagg,
   ckks, plain, ... -- so that a drifting load on a shared machine hits every mode alike; median
   over rounds 2..R-1 of all of them: round 1 warms up, round R also carries the final EVALUATE
   stage), round 0 (CKKS key set-up and the statistics sum), and the same ``plain`` federation
   with DP-SGD (epsilon 8). Ratios are against the ``plain`` rows of the same size in this run.
   Each round is also cut into its wire stages from the logs (:func:`stage_samples`: the time
   from one stage's opening to the next one's, and its critical path), compared with
   the in-process breakdown below, what a stage costs beyond its computation is the hand-off
   (task delivery, transfers, the coordinator's close). A few runs are repeated with the run
   folders on tmpfs (``tmpfs_reference``, rows with ``storage = "tmpfs"``): the coordinator
   fsyncs its checkpoint and attempt records every round, and on a slow disk that is a large
   part of a short round.
2. **Per-stage breakdown** through the same engine and client daemons over the in-memory
   transport (:func:`stage_breakdown`: every message serialised; 3 clients; the same workload,
   sizes and stage names as the daemons): the engine's and the median client's seconds and the
   bytes of every stage, median over ``reps`` rounds after a warm-up round.
   ``--breakdown-only`` runs just this part into ``STEM_stages.json`` and ``.png``.
3. **DP vs non-DP client training**, in process, median of ``reps`` fits after a warm-up: the real
   DPK-GAT :class:`~mer.train.federated.MERTrainer` on a client of the embedded synthetic set, and
   the sized MLP at both sizes (both through ``dp_train``, DP on or off).

Writes benchmarks/results/overhead.json and overhead.png, with the load average at start and the
targets of issue 17 (``targets``: a plain 1e5 round <= 40 ms, SecAgg <= 1.2x and CKKS <= 2x plain
at the DPK-GAT size) as measured, never rounded. Torch uses one thread per process.
``--skip-dp`` leaves out part 3 and the DP daemon runs (for quick checks of the round latency);
``--stem`` names the output files (default ``overhead``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # for sized_workload ("benchmarks" is an Opacus package name)

import sized_workload as sw

CONFIG = {
    "sizes": {"1e5": 100_000, "dpk-gat": 125_864, "1e6": 1_000_000},
    "clients": 3,
    # round 1 warms up, round R evaluates too: medians over rounds 2..R-1 (many, since one load spike
    # on a shared machine moves a short round's time by more than the effects measured here)
    "rounds": 16,
    "dp_rounds": 6,  # the DP daemon runs (their rounds are long)
    "repeats": 2,  # federations per configuration, interleaved across modes, rounds pooled
    "modes": ["plain", "secagg", "ckks"],
    "workload": {"samples": 240, "epochs": 1, "batch_size": 32, "lr": 0.05},
    "dp": {"target_epsilon": 8.0, "max_grad_norm": 1.0},
    "reps": 3,
    "quick": {"rounds": 4, "dp_rounds": 4, "reps": 2, "repeats": 1},
    # the same daemons with their run folders (checkpoints, attempt and metrics files, all fsync'd)
    # on tmpfs: what the round costs without the disk's fsync latency (a reference, not a target)
    "tmpfs_reference": [("1e5", "plain"), ("dpk-gat", "plain"), ("dpk-gat", "secagg")],
    # issue 17: a plain round of 1e5 parameters, and SecAgg / CKKS against plain at the DPK-GAT size
    "targets": {
        "plain_round_s": ("1e5", 0.040),
        "secagg_over_plain": ("dpk-gat", 1.2),
        "ckks_over_plain": ("dpk-gat", 2.0),
    },
}
RESULTS = BENCH / "results"


def _median(xs):
    return float(statistics.median(xs)) if xs else None


# -- 1. daemons ---------------------------------------------------------------------------------
def daemon_run(size: int, mode: str, rounds: int, dp: bool, tmp: Path, storage: str = "disk") -> dict:
    from fedcore.simulation import simulate

    env = {
        "PYTHONPATH": os.pathsep.join([str(BENCH), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    settings = {**CONFIG["workload"], "parameters": size}
    load = os.getloadavg()
    t0 = time.perf_counter()
    res = simulate(
        clients=CONFIG["clients"],
        rounds=rounds,
        out=tmp / f"{mode}-{size}-{'dp' if dp else 'nodp'}-{storage}",
        aggregation=mode,
        workload="sized_workload:workload",
        workload_settings=settings,
        # one planned round of headroom: the round-0 statistics charge the same ledger
        privacy={**CONFIG["dp"], "planned_rounds": rounds + 1} if dp else {"enabled": False},
        federation={"evaluate_every": 0},
        env=env,
        progress=False,
        echo=False,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(
            f"simulate({mode}, {size}, dp={dp}) ended with code {res.returncode}; see {res.run_dir}/logs"
        )
    later = [m for m in res.metrics if 2 <= m["round"] < rounds] or [m for m in res.metrics if m["round"] >= 2]
    history_s = sum(m["seconds"] for m in res.metrics)
    return {
        "mode": mode,
        "parameters": size,
        "dp": dp,
        "storage": storage,
        "rounds": rounds,
        "wall_s": wall,
        "load_average_at_start": load,
        "round_s_all": [m["seconds"] for m in res.metrics],
        "round_samples": [m["seconds"] for m in later],
        "stage_samples": stage_samples(res.run_dir / "logs", later),
        "bytes_up": [m["bytes_up"] for m in later],
        "bytes_down": [m["bytes_down"] for m in later],
        "round0_s": res.summary.get("seconds", 0.0) - history_s,
        "epsilon_max": res.summary.get("epsilon_max"),
    }


def pooled(runs: list[dict]) -> dict:
    """One row from repeated (interleaved) federations of one configuration: medians over the
    measured rounds of all of them, and each federation's own median beside."""
    stages: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for name, parts in run["stage_samples"].items():
            for key, values in parts.items():
                stages.setdefault(name, {}).setdefault(key, []).extend(values)
    first = runs[0]
    return {
        **{k: first[k] for k in ("mode", "parameters", "dp", "storage", "rounds")},
        "repeats": len(runs),
        "load_average_at_start": [r["load_average_at_start"] for r in runs],
        "wall_s": [r["wall_s"] for r in runs],
        "round_s": _median([x for r in runs for x in r["round_samples"]]),
        "round_s_per_repeat": [_median(r["round_samples"]) for r in runs],
        "round_s_all": [r["round_s_all"] for r in runs],
        "stage_s": {name: {k: _median(v) for k, v in parts.items()} for name, parts in stages.items()},
        "bytes_up_per_round": _median([x for r in runs for x in r["bytes_up"]]),
        "bytes_down_per_round": _median([x for r in runs for x in r["bytes_down"]]),
        "round0_s": _median([r["round0_s"] for r in runs]),
        "epsilon_max": first["epsilon_max"],
    }


_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*"
_OPENED = re.compile(_STAMP + r": round (\d+) attempt (\d+): stage (\w+) open ")
_ANSWERED = re.compile(
    _STAMP + r": round (\d+) attempt (\d+) stage (\w+) answered in ([\d.]+) s, submitted in ([\d.]+) s"
)


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def stage_samples(logs: Path, rounds: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Each wire stage of ``rounds`` (metrics lines) cut along its critical path, from the logs
    (millisecond stamps): ``span`` from the stage's opening to the next one's (a round's last
    stage: to the next round's TRAIN opening, so it holds the aggregation and the checkpoint;
    the spans of a round add up to its period), and for the client that finished last:
    ``delivery`` (opening -> the client holds its task: the hand-off), ``work`` (answering),
    ``upload`` (the Submit call) and ``close`` (its submission landing -> the next opening:
    the coordinator's accept, its tick, and for the last stage the aggregate and checkpoint).
    One value per round of ``rounds`` (medians are taken by :func:`pooled`)."""
    opened: dict[tuple[int, int], list[tuple[str, float]]] = {}
    for line in (logs / "coordinator.log").read_text(errors="replace").splitlines():
        if m := _OPENED.match(line):
            opened.setdefault((int(m[2]), int(m[3])), []).append((m[4], _stamp(m[1])))
    answers: dict[tuple[int, int, str], list[tuple[float, float, float]]] = {}
    for path in sorted(logs.glob("*.log")):
        if path.name == "coordinator.log":
            continue
        for line in path.read_text(errors="replace").splitlines():
            if m := _ANSWERED.match(line):
                answers.setdefault((int(m[2]), int(m[3]), m[4]), []).append((_stamp(m[1]), float(m[5]), float(m[6])))
    parts: dict[str, dict[str, list[float]]] = {}
    for m in rounds:
        seq = [(n, t) for n, t in opened.get((m["round"], m["attempt"]), []) if n != "EVALUATE"]
        nxt = [t for (r, _), opens in opened.items() if r == m["round"] + 1 for n, t in opens if n == "TRAIN"]
        if not seq or not nxt:
            continue
        ends = [t for _, t in seq[1:]] + [min(nxt)]
        for (name, t), end in zip(seq, ends):
            row = parts.setdefault(name, {})
            row.setdefault("span", []).append(end - t)
            done = answers.get((m["round"], m["attempt"], name))
            if done:
                t_done, work, upload = max(done)
                for key, value in (
                    ("delivery", t_done - upload - work - t),
                    ("work", work),
                    ("upload", upload),
                    ("close", end - t_done),
                ):
                    row.setdefault(key, []).append(value)
    return parts


# -- 2. per-stage breakdown ---------------------------------------------------------------------
def stage_breakdown(
    size: int, mode: str, reps: int, tmp: Path | None = None, workload: str = "sized_workload:workload"
) -> dict:
    """Per-stage seconds and bytes of one federation of ``reps`` + 1 rounds through the daemons'
    engine and client daemons over the in-memory transport (:mod:`fedcore.simulation_memory`), on
    the daemon runs' workload and settings at ``size`` parameters, DP off. The stage names are the
    wire's, as :func:`stage_samples` reads them from the daemons' logs. Round 1 warms up; medians
    over rounds 2..R of each stage's engine seconds (``server_s``) and of the median client's
    (``client_s_median``: its handler and (de)serialisation, TRAIN's local training included);
    ``round_s`` the median over those rounds of every party's seconds summed (the clients take
    turns, so this is the round's computation done sequentially); round 0 (statistics, CKKS key
    set-up) is ``setup_s``/``setup_bytes``. EVALUATE is left out, as in the daemons' cut."""
    from fedcore.simulation_memory import memory_federation

    clients = CONFIG["clients"]
    quiet = logging.getLogger("fedcore")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # one "DP is off" notice per client and round
    try:
        with tempfile.TemporaryDirectory(prefix="stages-", dir=tmp) as run:
            fed = memory_federation(
                clients,
                reps + 1,
                Path(run) / "run",
                aggregation=mode,
                workload=workload,
                workload_settings={**CONFIG["workload"], "parameters": size},
                privacy={"enabled": False},
                federation={"evaluate_every": 0},
            )
            rc = fed.run()
    finally:
        quiet.setLevel(level)
    if rc != 0:
        raise RuntimeError(f"stage_breakdown({size}, {mode}): the in-memory federation ended with code {rc}")
    timings = [t for t in fed.timings.values() if t.stage != "EVALUATE"]
    setup = [t for t in timings if t.round == 0]
    rounds = sorted({t.round for t in timings if t.round >= 2})
    per_round = {r: [t for t in timings if t.round == r] for r in rounds}
    out = {
        "mode": mode,
        "parameters": size,
        "reps": len(rounds),
        "clients": clients,
        "harness": "fedcore.simulation_memory: RoundEngine + ClientDaemons over MemoryConnection",
        "round_s": _median([sum(t.server_s + sum(t.client_s.values()) for t in ts) for ts in per_round.values()]),
        "setup_s": sum(t.server_s + sum(t.client_s.values()) for t in setup),
        "setup_bytes": sum(t.bytes_up + t.bytes_down for t in setup),
        "setup_stages": [t.stage for t in setup],
        "stages": {},
    }
    for t in per_round[rounds[0]]:
        same = [u for ts in per_round.values() for u in ts if u.stage == t.stage]
        out["stages"][t.stage] = {
            "server_s": _median([u.server_s for u in same]),
            "client_s_median": _median([statistics.median(u.client_s.values()) for u in same if u.client_s]),
            "bytes_up_per_client": _median([u.bytes_up for u in same]) / clients,
            "bytes_down_per_client": _median([u.bytes_down for u in same]) / clients,
        }
    return out


def breakdown_only(out: Path, stem: str, reps: int) -> int:
    """Only part 2, for every size and mode, into ``STEM_stages.json`` and ``.png``."""
    started = time.time()
    res = {
        "config": CONFIG,
        "load_average_at_start": os.getloadavg(),
        "source": _source(),
        "reps": reps,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "stages": [],
    }
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        for name, size in CONFIG["sizes"].items():
            for mode in CONFIG["modes"]:
                row = stage_breakdown(size, mode, reps, Path(tmp))
                res["stages"].append(row)
                print(
                    f"stages {name:7s} {mode:6s}: round {row['round_s']:.4f} s (set-up {row['setup_s']:.3f} s); "
                    + ", ".join(
                        f"{k} {v['server_s'] * 1e3:.1f}+{v['client_s_median'] * 1e3:.1f} ms"
                        for k, v in row["stages"].items()
                    ),
                    flush=True,
                )
    res["elapsed_s"] = time.time() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}_stages.json").write_text(json.dumps(res, indent=1))
    _plot_stages(res["stages"], out / f"{stem}_stages.png")
    return 0


def _plot_stages(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(k for r in rows for k in r["stages"]))
    fig, ax = plt.subplots(figsize=(12, 4.6))
    xs = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for i, name in enumerate(names):
        for key, hatch in (("client_s_median", ""), ("server_s", "//")):
            vals = np.array([r["stages"].get(name, {}).get(key, 0.0) for r in rows])
            ax.bar(
                xs,
                vals,
                bottom=bottom,
                color=f"C{i % 10}",
                hatch=hatch,
                edgecolor="white",
                label=f"{name} {'engine' if key == 'server_s' else 'median client'}",
            )
            bottom += vals
    ax.set_xticks(xs, [f"{r['mode']}\n{r['parameters']:,}" for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("s per round (critical path if clients ran in parallel)")
    ax.set_title(f"Per-stage computation through the engine, in memory, {CONFIG['clients']} clients", fontsize=9)
    ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
            settings = {
                "data": str(data / "data"),
                "format": "casme2",
                "cache_dir": str(data / "cache"),
                "num_classes": 5,
                "num_clients": 3,
                "client_index": 0,
                "seed": 0,
                "epochs": int(hp["epochs"]),
                "batch_size": int(hp["batch_size"]),
                "lr": float(hp["lr"]),
            }
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
    rows = [r for r in res["daemons"] if r["storage"] == "disk"]
    for ax, key, label in (
        (axes[0], "round_s", "round time (s), real daemons"),
        (axes[1], "bytes_up_per_round", "bytes up per round (all clients)"),
    ):
        variants = [
            (m, dp)
            for m, dp in [(m, False) for m in CONFIG["modes"]] + [("plain", True)]
            if any(r["mode"] == m and r["dp"] == dp for r in rows)
        ]
        for j, (mode, dp) in enumerate(variants):
            vals = [
                next(
                    r[key]
                    for r in rows
                    if r["mode"] == mode and r["dp"] == dp and r["parameters"] == CONFIG["sizes"][s]
                )
                for s in sizes
            ]
            bars = ax.bar(x + (j - 1.5) * w, vals, w, label=f"{mode}{' + DP' if dp else ''}")
            for b, s in zip(bars, sizes):
                ratio = res["ratios"][s][f"{mode}{'_dp' if dp else ''}_{'time' if key == 'round_s' else 'bytes'}"]
                ax.text(
                    b.get_x() + b.get_width() / 2, b.get_height(), f"x{ratio:.1f}", ha="center", va="bottom", fontsize=7
                )
        ax.set_xticks(x, [f"{s}\n({CONFIG['sizes'][s]:,} params)" for s in sizes])
        ax.set_yscale("log")
        ax.set_title(label + "; xN = vs plain")
        ax.legend(fontsize=8)
    ax = axes[2]
    dps = res["dp_training"]
    if not dps:
        ax.set_axis_off()
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
        rows = [r for r in res["daemons"] if r["parameters"] == size and r["storage"] == "disk"]
        base = next(r for r in rows if r["mode"] == "plain" and not r["dp"])
        out[name] = {}
        for r in rows:
            key = f"{r['mode']}{'_dp' if r['dp'] else ''}"
            out[name][f"{key}_time"] = r["round_s"] / base["round_s"]
            out[name][f"{key}_bytes"] = r["bytes_up_per_round"] / base["bytes_up_per_round"]
            out[name][f"{key}_bytes_down"] = r["bytes_down_per_round"] / base["bytes_down_per_round"]
    return out


def handoffs(res: dict) -> dict:
    """Per size and mode: each wire stage's time through the daemons beside its computation in
    process (server + median client), and what is left: the hand-off."""
    out: dict = {}
    for name, size in CONFIG["sizes"].items():
        for mode in CONFIG["modes"]:
            row = next(
                (
                    r
                    for r in res["daemons"]
                    if r["parameters"] == size and r["mode"] == mode and not r["dp"] and r["storage"] == "disk"
                ),
                None,
            )
            inproc = next((b for b in res["stages"] if b["parameters"] == size and b["mode"] == mode), None)
            if row is None or inproc is None:
                continue
            stages = {}
            for stage, cut in row["stage_s"].items():
                work = inproc["stages"].get(stage)
                compute = None if work is None else work["server_s"] + work["client_s_median"]
                stages[stage] = {
                    "daemons_s": cut["span"],
                    "compute_in_process_s": compute,
                    "beyond_compute_s": None if compute is None else cut["span"] - compute,
                    "critical_path_s": {k: v for k, v in cut.items() if k != "span"},
                }
            out.setdefault(name, {})[mode] = {"round_s": row["round_s"], "stages": stages}
    return out


def tmpfs_reference(res: dict) -> dict:
    """Round seconds with the run folders on tmpfs beside the same run on disk, per size and mode."""
    out: dict = {}
    for name, size in CONFIG["sizes"].items():
        for fast in (r for r in res["daemons"] if r["parameters"] == size and r["storage"] == "tmpfs"):
            disk = next(
                r
                for r in res["daemons"]
                if r["parameters"] == size and r["mode"] == fast["mode"] and not r["dp"] and r["storage"] == "disk"
            )
            plain = next(
                (
                    r
                    for r in res["daemons"]
                    if r["parameters"] == size and r["mode"] == "plain" and r["storage"] == "tmpfs"
                ),
                None,
            )
            out.setdefault(name, {})[fast["mode"]] = {
                "round_s_tmpfs": fast["round_s"],
                "round_s_disk": disk["round_s"],
                "durable_writes_s": disk["round_s"] - fast["round_s"],
                "over_plain_tmpfs": None if plain is None else fast["round_s"] / plain["round_s"],
            }
    return out


def targets(res: dict) -> dict:
    """The issue-17 targets beside what this run measured (no rounding)."""
    out = {}
    for key, (size, bound) in CONFIG["targets"].items():
        if key == "plain_round_s":
            row = next(
                (
                    r
                    for r in res["daemons"]
                    if r["mode"] == "plain"
                    and not r["dp"]
                    and r["storage"] == "disk"
                    and r["parameters"] == CONFIG["sizes"][size]
                ),
                None,
            )
            value = None if row is None else row["round_s"]
        else:
            value = res["ratios"].get(size, {}).get(f"{key.split('_')[0]}_time")
        out[key] = {"size": size, "target": bound, "measured": value, "met": value is not None and value <= bound}
    return out


def _source() -> str:
    """The commit measured: ``git rev-parse HEAD`` (with "+dirty" for local changes), else $SOURCE_COMMIT."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(BENCH), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(BENCH), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("SOURCE_COMMIT", "unknown")


def main(argv: list[str] | None = None) -> int:
    import torch

    from fedcore.dp.config import InsecureRNGWarning
    from mer.data.synth import synthesize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 rounds, 2 reps, 1 federation per configuration")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-dp", action="store_true", help="no DP runs (daemons without DP and the breakdown only)")
    parser.add_argument("--stem", default="overhead", help="output file names: STEM.json, STEM.png")
    parser.add_argument(
        "--breakdown-only",
        action="store_true",
        help="only the in-memory per-stage breakdown, into STEM_stages.json and .png",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", category=InsecureRNGWarning)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("fedcore.dp.config").setLevel(logging.ERROR)
    if args.breakdown_only:
        return breakdown_only(args.out, args.stem, CONFIG["quick"]["reps"] if args.quick else CONFIG["reps"])
    rounds = CONFIG["quick"]["rounds"] if args.quick else CONFIG["rounds"]
    dp_rounds = CONFIG["quick"]["dp_rounds"] if args.quick else CONFIG["dp_rounds"]
    reps = CONFIG["quick"]["reps"] if args.quick else CONFIG["reps"]
    repeats = CONFIG["quick"]["repeats"] if args.quick else CONFIG["repeats"]
    started = time.time()
    res = {
        "config": CONFIG,
        "quick": args.quick,
        "skip_dp": args.skip_dp,
        "load_average_at_start": os.getloadavg(),
        "source": _source(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "daemons": [],
        "stages": [],
        "dp_training": [],
    }
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        tmp = Path(tmp)
        for name, size in CONFIG["sizes"].items():
            for mode in CONFIG["modes"]:
                res["stages"].append(stage_breakdown(size, mode, reps, tmp))
            runs: dict[tuple[str, bool], list[dict]] = {}
            for rep in range(repeats):  # plain, secagg, ckks, plain, ...: load drifts hit every mode alike
                for mode in CONFIG["modes"]:
                    runs.setdefault((mode, False), []).append(daemon_run(size, mode, rounds, False, tmp / f"r{rep}"))
            if not args.skip_dp:
                runs[("plain", True)] = [daemon_run(size, "plain", dp_rounds, True, tmp)]
            for (mode, dp), done in runs.items():
                row = pooled(done)
                res["daemons"].append(row)
                print(
                    f"daemons {name:7s} {mode:6s}{' +DP' if dp else '    '}: round {row['round_s']:.4f} s, "
                    f"up {row['bytes_up_per_round'] / 1e6:.2f} MB, down {row['bytes_down_per_round'] / 1e6:.2f} MB, "
                    f"round 0 {row['round0_s']:.2f} s; stages "
                    + ", ".join(f"{k} {v['span'] * 1e3:.1f} ms" for k, v in row["stage_s"].items()),
                    flush=True,
                )
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            with tempfile.TemporaryDirectory(prefix="overhead-", dir=shm) as fast:
                runs = {}
                for rep in range(repeats):
                    for name, mode in CONFIG["tmpfs_reference"]:
                        runs.setdefault((name, mode), []).append(
                            daemon_run(
                                CONFIG["sizes"][name], mode, rounds, False, Path(fast) / f"r{rep}", storage="tmpfs"
                            )
                        )
                for (name, mode), done in runs.items():
                    row = pooled(done)
                    res["daemons"].append(row)
                    print(
                        f"daemons {name:7s} {mode:6s}     (run folder on tmpfs): round {row['round_s']:.4f} s",
                        flush=True,
                    )
        if not args.skip_dp:
            synthesize(tmp / "mer" / "data", subjects=24, seed=0)
            from mer.data.load import load_arrays

            load_arrays(tmp / "mer" / "data", "casme2", cache_dir=tmp / "mer" / "cache", verbose=False)
        for size in () if args.skip_dp else (None, *CONFIG["sizes"].values()):
            row = dp_training(size, reps, tmp / "mer", tmp)
            res["dp_training"].append(row)
            print(
                f"fit {row['model']}: no DP {row['nodp_s']:.3f} s, DP {row['dp_s']:.3f} s (x{row['ratio']:.2f})",
                flush=True,
            )
    res["ratios"] = ratios(res)
    res["tmpfs_reference"] = tmpfs_reference(res)
    res["handoffs"] = handoffs(res)
    res["targets"] = targets(res)
    res["elapsed_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / f"{args.stem}.png")
    print(json.dumps(res["ratios"], indent=1))
    print(json.dumps(res["targets"], indent=1))
    print(f"done in {res['elapsed_s']:.0f} s: {args.out / (args.stem + '.json')}, {args.out / (args.stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
