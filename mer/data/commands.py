"""CLI commands of the data side: ``fedpsyau data synth`` and ``fedpsyau data inspect``.

``fedpsyau data synth --preset NAME`` writes a benchmark preset (:mod:`mer.data.presets`):
``default`` (the embedded set, CASME II layout; ``--subjects``, ``--samples`` and
``--label-noise`` apply to it only), ``composite-like`` (the MEGC2019 composite's format:
28x28 flow PNGs + labels.csv) or ``casme2-like`` (CASME II layout). Presets have fixed,
documented counts; only ``--seed`` varies them.

``register(subparsers)`` adds a ``data`` command with two subcommands; each handler returns
the exit code: 0 success, 1 bad input (a DataError or an invalid option; the message says
what was expected), 2 usage errors (argparse's own).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from mer.data.errors import DataError, ProblemLog
from mer.data.frames import decode_gray, read_bytes
from mer.data.preset_write import write_preset
from mer.data.presets import PRESETS, get_preset
from mer.data.readers import READERS, read_records
from mer.data.synth import synthesize


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="micro-expression data: synthesize, inspect")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("synth", help="write a synthetic data set: the embedded default (CASME II layout) or a preset")
    p.add_argument("--out", required=True, help="output folder (absent or empty)")
    p.add_argument(
        "--preset",
        default="default",
        choices=list(PRESETS),
        help="default (embedded set) | composite-like (MEGC2019 composite format) | casme2-like",
    )
    p.add_argument("--subjects", type=int, default=None, help="default preset only: number of subjects (default 24)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--samples", type=int, default=None, help="default preset only: total clips (default 9.2 per subject)"
    )
    p.add_argument(
        "--label-noise", type=float, default=None, help="default preset only: chance of a wrong sheet label (default 0)"
    )
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("inspect", help="count samples per class and subject; list bad samples and why")
    p.add_argument("--data", required=True, help="data set folder (or manifest CSV)")
    p.add_argument("--format", required=True, choices=sorted(READERS), help="data set layout")
    p.add_argument("--label-map", default=None, help="label map name or CSV (default: the format's)")
    p.add_argument("--sheet", default=None, help="coding sheet, if not the one .xlsx/.csv in --data")
    p.add_argument("--no-frames", action="store_true", help="do not decode the onset/apex frames")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_inspect)


def cmd_synth(args: argparse.Namespace) -> int:
    if args.preset != "default":
        return _synth_preset(args)
    try:
        summary = synthesize(
            args.out,
            subjects=args.subjects if args.subjects is not None else 24,
            seed=args.seed,
            samples=args.samples,
            label_noise=args.label_noise or 0.0,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {summary['samples']} samples of {summary['subjects']} subjects to {args.out} "
        f"(CASME II layout, sheet {summary['sheet']})"
    )
    for name, n in summary["per_class"].items():
        print(f"  {name:12s} {n}")
    print(
        f"read it with: load_arrays({args.out!r}, 'casme2') or fedpsyau data inspect --data {args.out} --format casme2"
    )
    return 0


def _synth_preset(args: argparse.Namespace) -> int:
    fixed = [f"--{n.replace('_', '-')}" for n in ("subjects", "samples", "label_noise") if getattr(args, n) is not None]
    if fixed:
        print(
            f"error: preset {args.preset} has fixed, documented counts and label noise; {', '.join(fixed)} "
            f"apply to --preset default only (got {', '.join(fixed)} with --preset {args.preset})",
            file=sys.stderr,
        )
        return 1
    try:
        summary = write_preset(args.out, args.preset, seed=args.seed)
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    fmt = get_preset(args.preset).layout
    print(
        f"wrote preset {args.preset}: {summary['samples']} samples of {summary['subjects']} subjects to {args.out} "
        f"({fmt} layout; label-noise flips {summary['label_noise_flips']})"
    )
    for name, n in summary["per_source"].items():
        print(f"  source {name:8s} {n} samples, {summary['subjects_per_source'][name]} subjects")
    for name, n in summary["per_class"].items():
        print(f"  {name:12s} {n}")
    print(f"read it with: load_arrays({args.out!r}, {fmt!r}) or fedpsyau data inspect --data {args.out} --format {fmt}")
    return 0


def inspect(data: str, fmt: str, *, label_map=None, sheet=None, frames: bool = True) -> dict:
    """Counts and problems of a data set, without computing flow."""
    plog = ProblemLog(skip_bad=True)
    records, lmap, plog = read_records(data, fmt, label_map=label_map, skip_bad=True, sheet=sheet, problems=plog)
    read = len(records) + len(plog.problems)  # rows that failed to become records count as read
    good = []
    for r in records:
        try:
            if frames and r.onset is not None:
                decode_gray(read_bytes(r.onset, "onset frame"), r.onset)
                decode_gray(read_bytes(r.apex, "apex frame"), r.apex)
            good.append(r)
        except DataError as err:
            plog.add(err, sample=r.key)
    mapped = [r for r in good if r.label is not None]
    return {
        "format": fmt,
        "data": str(data),
        "label_map": lmap.name,
        "classes": list(lmap.classes),
        "read": read,
        "usable": len(mapped),
        "per_class": {c: sum(1 for r in mapped if r.label == i) for i, c in enumerate(lmap.classes)},
        "unmapped": dict(Counter(r.emotion for r in good if r.label is None)),
        "per_subject": dict(sorted(Counter(r.global_subject for r in mapped).items())),
        "apex_estimated": sum(r.apex_estimated for r in mapped),
        "unknown_aus": dict(Counter(c for r in good for c in r.unknown_aus)),
        "skipped": [{"sample": p.sample, "reason": p.reason} for p in plog.problems],
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        rep = inspect(args.data, args.format, label_map=args.label_map, sheet=args.sheet, frames=not args.no_frames)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(
        f"{rep['format']} {rep['data']}: read {rep['read']}, usable {rep['usable']}, "
        f"skipped {len(rep['skipped'])}, unmapped {sum(rep['unmapped'].values())} (label map {rep['label_map']})"
    )
    print("per class:")
    for c, n in rep["per_class"].items():
        print(f"  {c:12s} {n}")
    if rep["unmapped"]:
        print("excluded by the label map: " + ", ".join(f"{k} {v}" for k, v in sorted(rep["unmapped"].items())))
    print(f"per subject ({len(rep['per_subject'])}):")
    for s, n in rep["per_subject"].items():
        print(f"  {s:20s} {n}")
    if rep["apex_estimated"]:
        print(f"apex estimated as the middle frame for {rep['apex_estimated']} samples")
    if rep["unknown_aus"]:
        print("unknown AU codes: " + ", ".join(f"{k!r} x{v}" for k, v in rep["unknown_aus"].items()))
    if rep["skipped"]:
        print(f"skipped ({len(rep['skipped'])}):")
        for p in rep["skipped"]:
            print(f"  {p['sample']}: {p['reason']}")
    return 0
