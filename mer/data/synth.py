"""The embedded default data set: seeded synthetic micro-expressions in the CASME II layout.

``synthesize(out_dir)`` writes ``sub01/EP02_01f/img46.jpg``-style frame folders and a coding
sheet ``CASME2-coding-synthetic.csv`` (Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame,
Action Units, Estimated Emotion), so the real CASME II reader is the path that reads it:

>>> load_arrays(out_dir, "casme2")  # doctest: +SKIP

How a clip is made:

- **Faces**: real faces shipped in installed packages (:mod:`mer.data.synth_faces`), one per
  subject, each with its own alignment error, flip, brightness, contrast, gamma, tint and skin
  texture; every subject also has an expressiveness factor (0.7-1.3).
- **Emotion -> AUs** from the table ``mer/data/synth_emotions.csv`` (emotion, AU combination,
  probability): class balance as in CASME II (others 41 %, disgust 25 %, happiness 13 %,
  repression 11 %, surprise 10 %), with overlapping combinations (AU4 alone is disgust or
  others) so the classes are not separable by AUs alone.
- **Motion**: the AUs move control points of the face (:mod:`mer.data.synth_motion`); a
  thin-plate spline carries the motion to the pixels. Peak (apex) motion is log-uniform
  between ``amplitude_px`` bounds (sub-pixel to a few pixels at 128x128), each AU with its own
  gain. Frames are written at onset, two in-between points, apex and offset.
- **Nuisances**: head jitter (shift, roll, scale) between frames, illumination change (gain and
  a gradient), blinks, a distractor motion at a random facial point, sensor noise and JPEG
  compression; optional label noise (the sheet's emotion replaced by another class).

The default set (24 subjects, seed 0) has 221 samples: others 94, disgust 56, repression 28,
happiness 25, surprise 18 (2 to 20 per subject). Writing it takes about 10 s, reading it back
with flow about 3 s on 2 cores. On it, the calibration baseline (``benchmarks/baseline.py``:
logistic regression on per-region flow-magnitude histograms, LOSO) scores UF1 0.61 (UAR 0.62).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from mer.data.synth_faces import face_pool, subject_face
from mer.data.synth_motion import (
    AU_MOTION,
    au_displacements,
    backward_map,
    control_points,
    head_similarity,
    parse_combo,
    skin_field,
)
from mer.face.regions import all_points

SHEET_NAME = "CASME2-coding-synthetic.csv"
SHEET_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units", "Estimated Emotion")
#: motion fraction at each written frame: onset, two in-between frames, apex, offset
TIMELINE = (0.0, 0.35, 0.75, 1.0, 0.25)


@dataclass(frozen=True)
class SynthConfig:
    subjects: int = 24  # at least 2; CASME II has 26
    seed: int = 0
    samples: int | None = None  # total clips; None: round(9.2 * subjects) (CASME II: 255 / 26)
    size: int = 128  # frame side, pixels (aligned crops)
    amplitude_px: tuple[float, float] = (0.5, 3.0)  # apex motion of the strongest AU point, log-uniform
    head_px: float = 0.12  # head shift per frame, std, pixels
    head_roll_deg: float = 0.08  # head roll per frame, std, degrees
    illumination: float = 0.02  # frame gain std; gradients half that
    blink_prob: float = 0.15  # chance of a blink (eyelids move) in a clip
    distractor_prob: float = 0.25  # chance of an unrelated motion at a random facial point
    noise_sigma: float = 1.5  # sensor noise std, gray levels
    label_noise: float = 0.0  # chance the sheet gives another class than the motion shows
    jpeg_quality: int = 92

    def validate(self) -> None:
        problems = []
        if self.subjects < 2:
            problems.append(f"subjects must be >= 2 (got {self.subjects})")
        if self.samples is not None and self.samples < 2 * self.subjects:
            problems.append(f"samples must be >= 2 per subject ({2 * self.subjects}) (got {self.samples})")
        if not 32 <= self.size <= 512:
            problems.append(f"size must be in [32, 512] (got {self.size})")
        lo, hi = self.amplitude_px
        if not 0 < lo <= hi:
            problems.append(f"amplitude_px must satisfy 0 < min <= max (got {self.amplitude_px})")
        for name in ("blink_prob", "distractor_prob", "label_noise"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1] (got {getattr(self, name)})")
        if problems:
            raise ValueError("invalid synth settings: " + "; ".join(problems))


def emotion_table() -> list[tuple[str, str, float]]:
    """(emotion, AU combination, probability) rows of ``synth_emotions.csv``."""
    text = resources.files("mer.data").joinpath("synth_emotions.csv").read_text("utf-8")
    rows = [(r["emotion"], r["aus"], float(r["weight"])) for r in csv.DictReader(text.splitlines())]
    total = sum(w for _, _, w in rows)
    return [(e, a, w / total) for e, a, w in rows]


def _samples_per_subject(cfg: SynthConfig, rng: np.random.Generator) -> list[int]:
    total = cfg.samples if cfg.samples is not None else round(9.2 * cfg.subjects)
    share = rng.dirichlet(np.full(cfg.subjects, 2.5))
    counts = 2 + rng.multinomial(total - 2 * cfg.subjects, share)
    return counts.tolist()


def _render(
    base: np.ndarray,
    field: np.ndarray,
    s: float,
    head: np.ndarray,
    gain: float,
    gradient: tuple[float, float],
    rng: np.random.Generator,
    cfg: SynthConfig,
) -> np.ndarray:
    map_x, map_y = backward_map(field, s, head, cfg.size)
    img = cv2.remap(base, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    ramp = np.linspace(-1.0, 1.0, cfg.size, dtype=np.float32)
    light = gain + gradient[0] * ramp[None, :] + gradient[1] * ramp[:, None]
    img = img * light[..., None] + rng.normal(0.0, cfg.noise_sigma, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _clip(base, combo_text, amp, cfg, rng) -> tuple[list[np.ndarray], dict]:
    combo = parse_combo(combo_text)
    gains = {au: float(rng.uniform(0.6, 1.2)) for au, _ in combo}
    moving = {p: d * amp for p, d in au_displacements(combo, gains).items()}
    info = {"amplitude_px": round(amp, 3), "blink": False, "distractor": None}
    blink = rng.random() < cfg.blink_prob
    if blink:  # both upper lids come down
        b = float(rng.uniform(0.5, 2.5))
        for p in ((0.32, 0.35), (0.68, 0.35)):
            moving[p] = moving.get(p, np.zeros(2)) + np.array([0.0, b])
        info["blink"] = round(b, 3)
    if rng.random() < cfg.distractor_prob:
        p = tuple(all_points()[rng.integers(len(all_points()))].round(4).tolist())
        ang = rng.uniform(0, 2 * np.pi)
        d = float(rng.uniform(0.2, 0.8)) * amp * np.array([np.cos(ang), np.sin(ang)])
        moving[p] = moving.get(p, np.zeros(2)) + d
        info["distractor"] = list(p)
    centres, _ = control_points({p: np.ones(2) for p in moving}, cfg.size)
    apex_disp = np.zeros_like(centres)
    for i, p in enumerate(moving):  # moving points come first in control_points' order
        apex_disp[i] = moving[p]
    field = skin_field(centres, apex_disp, cfg.size)
    frames = []
    for s in TIMELINE:
        head = head_similarity(
            *rng.normal(0.0, cfg.head_px, 2),
            rng.normal(0.0, cfg.head_roll_deg),
            float(np.exp(rng.normal(0.0, 0.002))),
            cfg.size,
        )
        gain = float(1.0 + rng.normal(0.0, cfg.illumination))
        grad = tuple(rng.normal(0.0, cfg.illumination * 0.5, 2).tolist())
        frames.append(_render(base, field, s, head, gain, grad, rng, cfg))
    return frames, info


def synthesize(out_dir: str | Path, subjects: int = 24, seed: int = 0, **overrides) -> dict:
    """Write the synthetic data set to ``out_dir`` (must be absent or empty); return its summary.

    ``overrides`` are :class:`SynthConfig` fields (``samples``, ``amplitude_px``, ``label_noise``...).
    The summary (also written to ``synth_summary.json``) has the counts per class and subject.
    """
    cfg = replace(SynthConfig(), subjects=subjects, seed=seed, **overrides)
    cfg.validate()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder {out} is not empty; synthesize writes into an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    table = emotion_table()
    classes = sorted({e for e, _, _ in table})
    sources = face_pool("eval")  # never a pre-training identity
    order = [0, 1] + (2 + rng.permutation(len(sources) - 2)).tolist()
    counts = _samples_per_subject(cfg, rng)
    rows, per_class, per_subject, noisy, faces = [], Counter(), {}, 0, {}
    for si in range(cfg.subjects):
        sub = f"sub{si + 1:02d}"
        src = sources[order[si % len(order)]]
        base, jitter = subject_face(src, rng, cfg.size)
        expressive = float(rng.uniform(0.7, 1.3))
        faces[sub] = {"face": src.name, "expressiveness": round(expressive, 3), **jitter}
        used: set[str] = set()
        for _ in range(counts[si]):
            k = rng.choice(len(table), p=[w for _, _, w in table])
            emotion, combo_text, _ = table[k]
            amp = float(np.exp(rng.uniform(*np.log(cfg.amplitude_px)))) * expressive
            frames, _info = _clip(base, combo_text, amp, cfg, rng)
            name = f"EP{int(rng.integers(1, 20)):02d}_{int(rng.integers(1, 10)):02d}" + (
                "f" if rng.random() < 0.3 else ""
            )
            while name in used:
                name = f"EP{int(rng.integers(1, 20)):02d}_{int(rng.integers(1, 10)):02d}"
            used.add(name)
            onset = int(rng.integers(10, 200))
            apex = onset + int(rng.integers(6, 16))
            offset = apex + int(rng.integers(6, 20))
            numbers = (onset, onset + (apex - onset) // 3, onset + 2 * (apex - onset) // 3, apex, offset)
            clip = out / sub / name
            clip.mkdir(parents=True)
            for n, frame in zip(numbers, frames):
                cv2.imwrite(str(clip / f"img{n}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
            label = emotion
            if rng.random() < cfg.label_noise:
                label = str(rng.choice([c for c in classes if c != emotion]))
                noisy += 1
            rows.append((f"{si + 1:02d}", name, onset, apex, offset, combo_text, label))
            per_class[label] += 1
            per_subject[sub] = per_subject.get(sub, 0) + 1
    with open(out / SHEET_NAME, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SHEET_COLUMNS)
        w.writerows(rows)
    summary = {
        "format": "casme2",
        "sheet": SHEET_NAME,
        "subjects": cfg.subjects,
        "samples": len(rows),
        "per_class": dict(sorted(per_class.items())),
        "per_subject": per_subject,
        "label_noise_flips": noisy,
        "config": asdict(cfg),
        "faces": faces,
        "modelled_aus": sorted(AU_MOTION),
    }
    (out / "synth_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
