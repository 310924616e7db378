"""How a federation round scales with the number of clients: time and memory, in memory and over gRPC.

    python benchmarks/scale.py [--quick] [--out benchmarks/results]

1. **In memory** (:func:`fedcore.simulation_memory.memory_federation`: the coordinator's real
   ``RoundEngine`` and one real ``ClientDaemon`` per client over the in-memory transport, every
   message serialised) on the known-updates workload (:mod:`fedcore.examples.updates`, 1e5
   parameters), n in {10, 100, 300} clients, secagg and plain, 10 % of the clients going silent
   when handed their input stage (SECAGG_MASKED_INPUT / PLAIN_INPUT: for SecAgg+ the costly case,
   the server rebuilds each dropout's pairwise masks with every surviving neighbour). The clients
   take turns in one process, so a round's wall time is the sum of every party's work. Per n:
   wall seconds of round 1 up to its EVALUATE stage, the per-stage ``fed.timings`` split into the
   engine's seconds (``server_s``) and the clients' (``clients_s``), and the peak RSS of the
   process (VmHWM) -- which holds the coordinator AND every client. Each (mode, n, rep) runs in a
   fresh child process (so each peak is its own), after a 3-client warm-up federation; a fresh
   one-round federation each rep (a silent client is dead for the rest of its federation);
   provisioning is not timed. Each released model is checked against the survivors' expected mean.

   The engine's own memory cannot be read off the RSS of a shared process. It is estimated in a
   separate, untimed probe run per n (secagg): the bytes reachable from the engine object at every
   stage change (a walk of ``gc.get_referents``, numpy buffers with their owners: what the coordinator
   *holds*), and, for n <= ``transient_max_n`` (tracemalloc makes a round ~3x slower), the largest
   tracemalloc peak inside one engine call or tick above the traced memory at its start (what it
   allocates *while* answering). Their sum bounds the engine's peak from above, less what native
   libraries allocate outside tracemalloc's view.

2. **Over gRPC** (:func:`fedcore.simulation.simulate` with ``transport="grpc"``: a coordinator
   process and n real client processes over mutual TLS on loopback), n in {3, 10, 30}, secagg, the
   same workload and size, no dropouts: the median round time over rounds 2..R-1 (round 1 warms
   up, round R also evaluates), and the coordinator process's CPU (utime + stime from
   /proc/PID/stat) and resident memory (VmRSS sampled every 50 ms, peak from VmHWM, as
   ``benchmarks/coordinator_memory.py`` samples it), CPU per round taken between the first and the
   last metrics.jsonl line. On 2 cores n client processes share the CPUs with the coordinator.

The growth exponent b of ``y = a n^b`` is fitted by least squares on log y vs log n
(:func:`fit_exponent`). Writes benchmarks/results/scale.json and scale.png (load average at start).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
WORKLOAD = "fedcore.examples.updates:workload"

CONFIG = {
    "memory": {
        "clients": [10, 100, 300],
        "L": 100_000,
        "dropout": 0.1,
        "reps": 2,
        "modes": ["secagg", "plain"],
        "transient_max_n": 100,
    },
    "grpc": {"clients": [3, 10, 30], "L": 100_000, "rounds": 5, "mode": "secagg"},
    "quick": {
        "memory": {"clients": [10, 30, 100], "reps": 1, "modes": ["secagg"], "transient_max_n": 30},
        "grpc": {"clients": [3, 10], "rounds": 4},
    },
}
#: the last driver-based run of this script (the in-process SecAgg driver, SecAgg+ stages only, L = 1e5, 10 %;
#: scale.json before this port, load 6.0): n -> (sequential round s, coordinator s), and the fitted exponents
PREVIOUS_DRIVER = {
    "rows": {10: (0.0937, 0.0194), 50: (1.703, 0.193), 100: (6.655, 0.749), 200: (14.69, 1.364)},
    "exponent_server_s": 1.463,
    "exponent_client_s": 0.765,
}


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
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else 1.0
    return {"exponent": float(b), "coefficient": float(np.exp(log_a)), "r2": float(r2)}


def _proc_kib(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` in seconds (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def source() -> str:
    """The commit measured (``benchmarks/secagg.py``'s :func:`source`, one definition)."""
    sys.path.insert(0, str(BENCH))
    import secagg as secagg_bench

    return secagg_bench.source()


# -- 1. in memory: one child process per (mode, n, rep) --------------------------------------------
_SKIP = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


def held_bytes(root, stop) -> int:
    """Bytes reachable from ``root`` through ``gc.get_referents`` (``sys.getsizeof`` each, a numpy
    buffer with the array that owns it), not entering ``stop`` objects, classes, modules, functions
    or frames."""
    seen = {id(x) for x in stop}
    todo, total = [root], 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, _SKIP):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj, 0)  # an array that owns its buffer counts it here; a view, not
        if isinstance(obj, np.ndarray) and obj.base is not None:
            todo.append(obj.base)  # numpy does not report a view's base to gc
        todo.extend(gc.get_referents(obj))
    return total


def child(spec: dict) -> dict:
    """One measured round in this (fresh) process; the row as a dict (see the module docstring)."""
    import tracemalloc

    sys.path.insert(0, str(BENCH))
    import secagg as secagg_bench  # benchmarks/secagg.py: engine_round

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("fedcore").setLevel(logging.ERROR)
    tmp = Path(spec["tmp"])
    secagg_bench.engine_round(spec["mode"], 3, 1000, set(), tmp / "warm-up")  # imports, first-call costs
    base_mib = _proc_kib("self", "VmRSS") / 1024
    n, mode = spec["n"], spec["mode"]
    rng = np.random.default_rng([n, spec["rep"]])
    gone = set(rng.choice(n, round(spec["dropout"] * n), replace=False).tolist())
    if not spec.get("probe"):
        row = secagg_bench.engine_round(mode, n, spec["L"], gone, tmp / "run")
        return {**row, "rep": spec["rep"], "rss_base_mib": base_mib, "rss_peak_mib": _proc_kib("self", "VmHWM") / 1024}
    # the probe: what the engine holds at each stage change, and its largest transient inside one call
    trace = n <= spec["transient_max_n"]
    held: list[tuple[str, float]] = []
    transient = [0]
    last = [None]
    fed_ref: list = []

    def on_pass(engine) -> None:
        if not fed_ref:  # first pass: wrap the engine's entry points
            fed_ref.append(engine)
            for name in ("join", "task", "heartbeat", "download", "precheck_submit", "submit", "tick"):
                setattr(engine, name, _traced(getattr(engine, name), transient) if trace else getattr(engine, name))
        st = engine.state
        key = (st.round, st.stage.stage.name if st.stage else None)
        if key != last[0]:
            last[0] = key
            held.append((f"{key[0]}:{key[1]}", held_bytes(engine, [logging.getLogger()]) / 2**20))

    if trace:
        tracemalloc.start(1)
    t0 = time.perf_counter()
    secagg_bench.engine_round(mode, n, spec["L"], gone, tmp / "run", on_stage=on_pass)
    return {
        "n": n,
        "mode": mode,
        "L": spec["L"],
        "dropouts": len(gone),
        "probe_wall_s": time.perf_counter() - t0,
        "engine_held_mib_by_stage": held,
        "engine_held_peak_mib": max(v for _, v in held),
        "engine_transient_peak_mib": transient[0] / 2**20 if trace else None,
        "engine_peak_bound_mib": max(v for _, v in held) + transient[0] / 2**20 if trace else None,
        "tracemalloc": trace,
    }


def _traced(fn, peak: list):
    import tracemalloc

    def call(*args, **kwargs):
        current, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            return fn(*args, **kwargs)
        finally:
            peak[0] = max(peak[0], tracemalloc.get_traced_memory()[1] - current)

    return call


def run_child(spec: dict, timeout: float = 600) -> dict:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_part(cfg: dict, tmp: Path) -> dict:
    rows, probes = [], []
    for mode in cfg["modes"]:
        for n in cfg["clients"]:
            runs = []
            for rep in range(cfg["reps"]):
                spec = {
                    "mode": mode,
                    "n": n,
                    "L": cfg["L"],
                    "dropout": cfg["dropout"],
                    "rep": rep,
                    "tmp": str(tmp / f"{mode}-{n}-{rep}"),
                }
                runs.append(run_child(spec))
            row = {
                **{k: runs[0][k] for k in ("mode", "n", "L", "dropouts")},
                "reps": len(runs),
                **{
                    k: float(statistics.median(r[k] for r in runs))
                    for k in ("wall_s", "cpu_s", "compute_s", "server_s", "clients_s", "rss_base_mib")
                },
                "rss_peak_mib": max(r["rss_peak_mib"] for r in runs),
                "wall_s_each": [r["wall_s"] for r in runs],
                "max_abs_error": max(r["max_abs_error"] for r in runs),
                "stages": {
                    s: {
                        k: float(statistics.median(r["stages"][s][k] for r in runs))
                        for k in ("server_s", "clients_s", "bytes_up", "bytes_down")
                    }
                    for s in runs[0]["stages"]
                },
                **{k: runs[0][k] for k in ("bits", "frac_bits", "degree", "threshold") if k in runs[0]},
            }
            rows.append(row)
            print(
                f"memory {mode:6s} n={n:3d}: round {row['wall_s']:.3f} s wall (engine {row['server_s']:.3f} s, "
                f"clients {row['clients_s']:.3f} s), peak RSS {row['rss_peak_mib']:.0f} MiB "
                f"(base {row['rss_base_mib']:.0f}), err {row['max_abs_error']:.1e}",
                flush=True,
            )
    if "secagg" in cfg["modes"]:
        for n in cfg["clients"]:
            spec = {
                "mode": "secagg",
                "n": n,
                "L": cfg["L"],
                "dropout": cfg["dropout"],
                "rep": 0,
                "probe": True,
                "transient_max_n": cfg["transient_max_n"],
                "tmp": str(tmp / f"probe-{n}"),
            }
            probe = run_child(spec)
            probes.append(probe)
            print(
                f"engine memory n={n:3d}: holds <= {probe['engine_held_peak_mib']:.1f} MiB at stage changes, "
                f"transient {probe['engine_transient_peak_mib']} MiB",
                flush=True,
            )
    fits = {}
    for mode in cfg["modes"]:
        mine = [r for r in rows if r["mode"] == mode]
        if len({r["n"] for r in mine}) >= 2:
            ns = [r["n"] for r in mine]
            fits[mode] = {
                k: fit_exponent(ns, [r[k] for r in mine])
                for k in ("wall_s", "compute_s", "server_s", "clients_s", "rss_peak_mib")
            }
            fits[mode]["rss_peak_over_base_mib"] = fit_exponent(
                ns, [r["rss_peak_mib"] - r["rss_base_mib"] for r in mine]
            )
    return {"rows": rows, "engine_memory": probes, "fits": fits}


# -- 2. over gRPC ------------------------------------------------------------------------------------
class CoordinatorSampler(threading.Thread):
    """Samples the coordinator of ``run_dir`` (its pid from coordinator.pid) every 50 ms: (t, VmRSS MiB,
    CPU s, metrics.jsonl lines); the last VmHWM seen is its peak."""

    def __init__(self, run_dir: Path):
        super().__init__(daemon=True)
        self.run_dir, self.samples, self.peak_mib, self.pid = run_dir, [], 0.0, None
        self.stop = threading.Event()

    def run(self) -> None:
        pidfile = self.run_dir / "coordinator.pid"
        while not self.stop.is_set() and self.pid is None:
            try:
                self.pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                time.sleep(0.02)
        metrics = self.run_dir / "metrics.jsonl"
        t0 = time.monotonic()
        while not self.stop.wait(0.05):
            try:
                lines = metrics.read_text().count("\n") if metrics.exists() else 0
                self.samples.append(
                    (time.monotonic() - t0, _proc_kib(self.pid, "VmRSS") / 1024, _cpu_s(self.pid), lines)
                )
                self.peak_mib = _proc_kib(self.pid, "VmHWM") / 1024
            except (OSError, KeyError, ValueError):
                return


def grpc_run(n: int, cfg: dict, tmp: Path) -> dict:
    from fedcore.simulation import simulate

    run_dir = tmp / f"grpc-{n}"
    sampler = CoordinatorSampler(run_dir)
    sampler.start()
    t0 = time.perf_counter()
    res = simulate(
        clients=n,
        rounds=cfg["rounds"],
        out=run_dir,
        aggregation=cfg["mode"],
        workload=WORKLOAD,
        workload_settings={"size": cfg["L"], "seed": 1},
        privacy={"enabled": False},
        federation={"evaluate_every": 0},
        progress=False,
        echo=False,
        timeout=600,
    )
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join(timeout=5)
    if res.returncode != 0:
        raise RuntimeError(f"grpc n={n}: exit code {res.returncode}; see {run_dir / 'logs'}")
    rounds = cfg["rounds"]
    later = [m for m in res.metrics if 2 <= m["round"] < rounds]
    s = sampler.samples
    first = next(x for x in s if x[3] >= 1)
    last = next(x for x in s if x[3] >= rounds) if any(x[3] >= rounds for x in s) else s[-1]
    per_round_cpu = (last[2] - first[2]) / max(last[3] - first[3], 1)
    return {
        "n": n,
        "rounds": rounds,
        "mode": cfg["mode"],
        "L": cfg["L"],
        "wall_s": wall,
        "round_s": float(statistics.median(m["seconds"] for m in later)),
        "round_s_all": [m["seconds"] for m in res.metrics],
        "coordinator_cpu_s_per_round": per_round_cpu,
        "coordinator_cpu_s_total": s[-1][2],
        "coordinator_rss_start_mib": s[0][1],
        "coordinator_rss_peak_mib": sampler.peak_mib,
        "coordinator_rss_at_first_round_mib": first[1],
        "bytes_up_per_round": float(statistics.median(m["bytes_up"] for m in later)),
        "bytes_down_per_round": float(statistics.median(m["bytes_down"] for m in later)),
        "contributors": [m["contributors"] for m in res.metrics],
        "samples": len(s),
    }


def grpc_part(cfg: dict, tmp: Path) -> dict:
    rows = []
    for n in cfg["clients"]:
        row = grpc_run(n, cfg, tmp)
        rows.append(row)
        print(
            f"grpc   secagg n={n:3d}: round {row['round_s']:.3f} s, coordinator CPU "
            f"{row['coordinator_cpu_s_per_round']:.3f} s/round, RSS peak {row['coordinator_rss_peak_mib']:.0f} MiB",
            flush=True,
        )
    ns = [r["n"] for r in rows]
    fits = (
        {
            k: fit_exponent(ns, [r[k] for r in rows])
            for k in ("round_s", "coordinator_cpu_s_per_round", "coordinator_rss_peak_mib")
        }
        if len(rows) >= 2
        else {}
    )
    return {"rows": rows, "fits": fits}


# -- plot and main -----------------------------------------------------------------------------------
def _b(fits: dict, key: str) -> str:
    return f" (b={fits[key]['exponent']:.2f})" if key in fits else ""


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    mem = res["memory"]
    ax = axes[0]
    for mode, color in (("secagg", "C0"), ("plain", "C2")):
        rows = [r for r in mem["rows"] if r["mode"] == mode]
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        fit = mem["fits"].get(mode, {})
        ax.plot(ns, [r["wall_s"] for r in rows], "-o", color=color, label=f"{mode}: round, wall{_b(fit, 'wall_s')}")
        ax.plot(
            ns,
            [r["server_s"] for r in rows],
            "--s",
            color=color,
            label=f"{mode}: the engine's share{_b(fit, 'server_s')}",
        )
    prev = sorted(PREVIOUS_DRIVER["rows"].items())
    ax.plot(
        [n for n, _ in prev],
        [v[0] for _, v in prev],
        ":",
        color="grey",
        marker="x",
        label="secagg via the driver (earlier run, SecAgg+ stages only)",
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="clients n",
        ylabel="seconds per round (all parties, one process)",
        title=f"In memory: 1e5 parameters, {int(CONFIG['memory']['dropout'] * 100)} % dropping",
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    for mode, color in (("secagg", "C0"), ("plain", "C2")):
        rows = [r for r in mem["rows"] if r["mode"] == mode]
        if rows:
            ax.plot(
                [r["n"] for r in rows],
                [r["rss_peak_mib"] for r in rows],
                "-o",
                color=color,
                label=f"{mode}: process peak RSS (coordinator + all clients)",
            )
    if mem["engine_memory"]:
        ax.plot(
            [p["n"] for p in mem["engine_memory"]],
            [p["engine_held_peak_mib"] for p in mem["engine_memory"]],
            "--s",
            color="C3",
            label="secagg: held by the engine (peak at stage changes)",
        )
        tr = [p for p in mem["engine_memory"] if p["engine_peak_bound_mib"] is not None]
        if tr:
            ax.plot(
                [p["n"] for p in tr],
                [p["engine_peak_bound_mib"] for p in tr],
                ":^",
                color="C3",
                label="secagg: engine held + largest transient",
            )
    ax.set(xscale="log", yscale="log", xlabel="clients n", ylabel="MiB", title="In memory: memory")
    ax.legend(fontsize=7)
    ax = axes[2]
    rows = res["grpc"]["rows"]
    if rows:
        ns = [r["n"] for r in rows]
        fits = res["grpc"]["fits"]
        ax.plot(ns, [r["round_s"] for r in rows], "-o", color="C0", label=f"round time{_b(fits, 'round_s')}")
        ax.plot(
            ns,
            [r["coordinator_cpu_s_per_round"] for r in rows],
            "--s",
            color="C3",
            label=f"coordinator CPU per round{_b(fits, 'coordinator_cpu_s_per_round')}",
        )
        ax.set(xscale="log", yscale="log", xlabel="client processes n", ylabel="s")
        ax2 = ax.twinx()
        ax2.plot(
            ns,
            [r["coordinator_rss_peak_mib"] for r in rows],
            ":^",
            color="C1",
            label=f"coordinator peak RSS (MiB){_b(fits, 'coordinator_rss_peak_mib')}",
        )
        ax2.set_ylabel("MiB")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper left")
    ax.set_title(f"Over gRPC: daemons on loopback, {CONFIG['grpc']['mode']}, 1e5 parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n <= 100 in memory (secagg, 1 rep), gRPC n in {3, 10}")
    parser.add_argument("--skip-grpc", action="store_true", help="the in-memory part only")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    logging.basicConfig(level=logging.WARNING)
    mem_cfg = {**CONFIG["memory"], **(CONFIG["quick"]["memory"] if args.quick else {})}
    grpc_cfg = {**CONFIG["grpc"], **(CONFIG["quick"]["grpc"] if args.quick else {})}
    started = time.time()
    res = {
        "config": CONFIG,
        "quick": args.quick,
        "load_average_at_start": os.getloadavg(),
        "source": source(),
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
        "previous_driver": {**PREVIOUS_DRIVER, "rows": {str(k): v for k, v in PREVIOUS_DRIVER["rows"].items()}},
    }
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        tmp = Path(tmp)
        res["memory"] = {
            **memory_part(mem_cfg, tmp),
            "config": mem_cfg,
            "note": "one process holds the coordinator and every client: its RSS is theirs together; "
            "the engine's own share is the probe's (engine_memory)",
        }
        res["grpc"] = {"rows": [], "fits": {}} if args.skip_grpc else {**grpc_part(grpc_cfg, tmp), "config": grpc_cfg}
    res["elapsed_s"] = time.time() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(res, indent=1))
    plot(res, args.out / "scale.png")
    for mode, fits in res["memory"]["fits"].items():
        print(f"memory {mode}: " + ", ".join(f"{k} ^{f['exponent']:.2f} (R2 {f['r2']:.2f})" for k, f in fits.items()))
    if res["grpc"]["fits"]:
        print("grpc: " + ", ".join(f"{k} ^{f['exponent']:.2f}" for k, f in res["grpc"]["fits"].items()))
    print(f"done in {res['elapsed_s']:.0f} s: {args.out / 'scale.json'}, {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
