"""Write a preset to disk in its data set layout, so the real readers are the path that reads it.

- ``composite`` layout (``composite-like``): ``labels.csv`` (dataset, subject, sample, label; no
  AU column, as the shared composite) and ``flows/{subject}_{sample}.png``: 28x28 RGB, u / v /
  strain min-max normalised per image per channel (:func:`mer.data.synth_flowimg.composite_pixels`).
  Read it with ``load_arrays(out, "composite")``.
- ``casme2`` layout (``casme2-like``, ``default``): ``sub01/EP02_01f/img46.jpg`` onset, apex and
  offset frames and the coding sheet ``CASME2-coding-synthetic.csv`` (Subject, Filename,
  OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion). Read it with
  ``load_arrays(out, "casme2")``.

Faces come from the ``eval`` identity pool. The clips are those of
``make_plan(preset, seed, "eval")`` (documented counts), rendered by the same functions as
:func:`mer.data.corpus.render_plan`, so loading the written set gives the arrays that
``render_plan`` returns for that plan. ``synth_summary.json`` records the counts, the faces
and the plan's label-noise flips.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import cv2

from mer.data.presets import get_preset
from mer.data.synth import SHEET_COLUMNS, SHEET_NAME
from mer.data.synth_flowimg import composite_pixels
from mer.data.synth_plan import Plan, make_plan
from mer.data.synth_render import clip_frames, decode_grey, encode_frame, subject_look


def _empty_out(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty; the preset writer writes into an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_preset(out_dir: str | Path, preset_name: str, seed: int = 0) -> dict:
    """Write preset ``preset_name`` (eval faces, documented counts) to an empty ``out_dir``; return its summary."""
    preset = get_preset(preset_name)
    plan = make_plan(preset, seed, "eval")
    out = _empty_out(out_dir)
    writer = _write_composite if preset.layout == "composite" else _write_casme2
    rows = writer(out, plan)
    per_source = Counter(plan.subjects[c.subject].source for c in plan.clips)
    per_class = Counter(c.emotion for c in plan.clips)
    summary = {
        "preset": preset.name,
        "format": preset.layout,
        "seed": seed,
        "samples": rows,
        "subjects": len(plan.subjects),
        "per_source": dict(sorted(per_source.items())),
        "subjects_per_source": dict(sorted(Counter(s.source for s in plan.subjects).items())),
        "per_class": dict(sorted(per_class.items())),
        "per_source_class": {
            s.name: dict(Counter(c.emotion for c in plan.clips if plan.subjects[c.subject].source == s.name))
            for s in preset.sources
        },
        "label_noise_flips": sum(c.noisy for c in plan.clips),
        "faces": {f"{s.source}/{s.subject}": s.face for s in plan.subjects},
        "preset_settings": asdict(preset),
    }
    (out / "synth_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _looks(plan: Plan):
    preset = get_preset(plan.preset)
    cache: dict[int, object] = {}
    for c in plan.clips:
        sp = plan.subjects[c.subject]
        src = preset.source(sp.source)
        if c.subject not in cache:
            cache.clear()
            cache[c.subject] = subject_look(preset, src, sp)
        yield preset, src, sp, cache[c.subject], c


def _write_composite(out: Path, plan: Plan) -> int:
    (out / "flows").mkdir()
    rows = []
    for preset, src, sp, look, c in _looks(plan):
        onset, apex = (decode_grey(encode_frame(f, src)[1]) for f in clip_frames(preset, src, look, c))
        rgb = composite_pixels(onset, apex)
        path = out / "flows" / f"{sp.subject}_{c.sample_id}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        rows.append((sp.source, sp.subject, c.sample_id, c.emotion))
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(("dataset", "subject", "sample", "label"))
        w.writerows(rows)
    return len(rows)


def _write_casme2(out: Path, plan: Plan) -> int:
    rows = []
    for preset, src, sp, look, c in _looks(plan):
        clip = out / sp.subject / c.sample_id
        clip.mkdir(parents=True)
        for number, frame in zip((c.onset, c.apex, c.offset), clip_frames(preset, src, look, c, with_offset=True)):
            suffix, data = encode_frame(frame, src)
            (clip / f"img{number}{suffix}").write_bytes(data)
        rows.append((sp.subject.removeprefix("sub"), c.sample_id, c.onset, c.apex, c.offset, c.combo, c.emotion))
    with open(out / SHEET_NAME, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SHEET_COLUMNS)
        w.writerows(rows)
    return len(rows)
