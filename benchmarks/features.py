"""Flow-stage throughput: samples per second for each flow method at 128x128, and the cache.

On a small synthetic set (``--subjects``, default 4, about 37 clips) it times the real path,
``load_with_report(..., fmt="casme2")``: read the sheet, read and decode frames, template
alignment, flow, strain, normalisation. For each method: one warm-up pass, then ``--repeats``
timed passes without a cache; samples/s from the median. Then the cache: a first pass that
fills an empty cache, and ``--repeats`` second passes that only hash frame bytes and load
entries, with the speed-up over the uncached Farneback pass measured in the same run. Also the
flow call alone on one aligned 128x128 pair (median of 20, TV-L1 3), to show how much of a
pass is flow. The machine's load average is recorded: absolute times on a shared machine drift. Writes
``benchmarks/results/features.json`` and ``features.png``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

from mer.data.features import FlowSettings, aligned_pair
from mer.data.frames import read_gray
from mer.data.load import load_with_report
from mer.data.readers import read_records
from mer.data.synth import synthesize
from mer.flow.methods import FLOW_METHODS, compute_flow

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--methods", default=",".join(FLOW_METHODS))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    out: dict = {
        "load_average_start": os.getloadavg(),
        "size": args.size,
        "repeats": args.repeats,
        "cv2": cv2.__version__,
        "cv2_threads": cv2.getNumThreads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "methods": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        summary = synthesize(data, subjects=args.subjects, seed=0)
        n = summary["samples"]
        out["samples"] = n
        recs, _, _ = read_records(data, "casme2")
        a, b = aligned_pair(read_gray(recs[0].onset), read_gray(recs[0].apex), FlowSettings(size=args.size))
        for m in methods:
            compute_flow(a, b, m)  # warm-up
            reps = 3 if m == "tvl1" else 20
            t = [_timed(functools.partial(compute_flow, a, b, m)) for _ in range(reps)]
            out.setdefault("flow_only_ms_per_pair", {})[m] = 1000 * statistics.median(t)
        print(
            "flow only, ms per aligned 128x128 pair:",
            ", ".join(f"{m} {v:.1f}" for m, v in out["flow_only_ms_per_pair"].items()),
            flush=True,
        )
        for m in methods:
            run = functools.partial(load_with_report, data, "casme2", size=args.size, flow_method=m, progress=False)
            run()  # warm-up: imports, OpenCV init, file cache
            times = [_timed(run) for _ in range(args.repeats)]
            med = statistics.median(times)
            out["methods"][m] = {"seconds_per_pass": times, "median_s": med, "samples_per_s": n / med}
            print(f"{m:10s} {n / med:8.1f} samples/s  (median {med:.3f} s for {n} clips)", flush=True)
        cache = Path(tmp) / "cache"
        first = _timed(lambda: load_with_report(data, "casme2", size=args.size, cache_dir=cache, progress=False))
        second = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            _, rep = load_with_report(data, "casme2", size=args.size, cache_dir=cache, progress=False)
            second.append(time.perf_counter() - t0)
            assert rep.cache["misses"] == 0, rep.cache  # a second pass must do no flow work
        med2 = statistics.median(second)
        base = out["methods"].get("farneback", {}).get("median_s")
        out["cache"] = {
            "method": "farneback",
            "first_pass_s": first,
            "second_pass_s": second,
            "second_pass_median_s": med2,
            "second_pass_samples_per_s": n / med2,
            "hits_last_pass": rep.cache["hits"],
            "speedup_vs_uncached_farneback": (base / med2) if base else None,
        }
        print(
            f"cached     {n / med2:8.1f} samples/s  (second pass median {med2:.3f} s, "
            f"{out['cache']['speedup_vs_uncached_farneback'] or float('nan'):.1f}x the uncached farneback pass)"
        )
    out["load_average_end"] = os.getloadavg()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "features.json").write_text(json.dumps(out, indent=2))
    _plot(out, outdir / "features.png")
    return 0


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(out["methods"]) + ["farneback\n(cached)"]
    rates = [v["samples_per_s"] for v in out["methods"].values()] + [out["cache"]["second_pass_samples_per_s"]]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    bars = ax.bar(names, rates, color=["#4c72b0"] * len(out["methods"]) + ["#55a868"])
    ax.set_yscale("log")
    ax.set_ylabel("samples / s (log)")
    ax.set_title(
        f"load_arrays throughput, {out['size']}x{out['size']}, {out['samples']} clips, median of {out['repeats']}"
    )
    for b, r in zip(bars, rates):
        ax.text(b.get_x() + b.get_width() / 2, r, f"{r:.0f}", ha="center", va="bottom", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
