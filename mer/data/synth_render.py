"""Render one planned clip of a preset: the subject's face and idiosyncrasies, then its frames.

A subject (:func:`subject_look`, from its plan seed) has a base face from its identity pool
(:func:`mer.data.synth_faces.subject_face`: alignment error, flip, photometry, skin texture),
grey-scale for a grey camera, plus the preset's idiosyncrasies:

- **face shape**: a smooth random warp of the face, so the subject's brows, eyes and mouth sit
  up to a few pixels off the template the model's patches assume; the AU motion happens at the
  subject's own anatomy (the template points moved by the same warp);
- **expressiveness and AU gains**: a log-normal amplitude factor per subject and per AU;
- **habitual motion**: one AU the subject makes in a share of all clips, whatever the emotion.

A clip (:func:`clip_frames`, from its plan seed) then gets: per-AU gains, a log-uniform apex
amplitude (``amplitude_px`` at a 128 px crop, scaled by the source's crop side), the habit,
blinks and a distractor motion, the motion fraction of the frame used as apex (below 1 where
the apex is estimated), head drift that grows with the onset->apex time (frames / fps),
frame-to-frame head shake, illumination drift, blur, sensor noise and (lossy sources) JPEG.
Frames come back as BGR uint8, ready to write or to encode; :func:`decode_grey` turns them into
the grey frames a reader decodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mer.data.presets import Preset, Source
from mer.data.synth_faces import face_sources, subject_face
from mer.data.synth_motion import (
    AU_MOTION,
    au_displacements,
    backward_map,
    control_points,
    head_similarity,
    parse_combo,
)
from mer.data.synth_plan import ClipPlan, SubjectPlan
from mer.face.regions import all_points
from mer.face.tps import tps_fit

#: motion fraction of the offset frame the writers add (readers use onset and apex only)
OFFSET_FRACTION = (0.1, 0.4)
_BLINK_POINTS = ((0.32, 0.35), (0.68, 0.35))


@dataclass(frozen=True)
class SubjectLook:
    base: np.ndarray  # (side, side, 3) float32 BGR, neutral face after the shape warp
    shape: np.ndarray  # (side, side, 2) backward shape field, px
    expressiveness: float
    au_gain: dict[int, float]
    habit: tuple[int, float, float]  # (AU, chance per clip, strength as a fraction of the amplitude)
    restless: float  # head-motion factor


def _smooth_field(rng: np.random.Generator, side: int, sigma_px: float) -> np.ndarray:
    if sigma_px <= 0:
        return np.zeros((side, side, 2), dtype=np.float64)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64) / (side - 1)
    field = np.zeros((side, side, 2))
    for _ in range(5):  # Gaussian bumps over the face
        cx, cy = rng.uniform(0.2, 0.8, 2)
        w = rng.uniform(0.12, 0.3)
        g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * w * w))
        field += g[..., None] * rng.normal(0.0, sigma_px, 2)[None, None, :]
    return field


def subject_look(preset: Preset, src: Source, sp: SubjectPlan) -> SubjectLook:
    """A subject's neutral face and idiosyncrasies, a pure function of its plan entry."""
    rng = np.random.default_rng(sp.seed)
    face = next(f for f in face_sources() if f.name == sp.face)
    base, _ = subject_face(face, rng, src.side, preset.texture)
    if src.grey:
        g = cv2.cvtColor(np.clip(base, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
        base = np.repeat(g[..., None], 3, axis=2)
    shape = _smooth_field(rng, src.side, preset.shape_px)
    if preset.shape_px > 0:
        ys, xs = np.mgrid[0 : src.side, 0 : src.side].astype(np.float32)
        base = cv2.remap(
            base,
            xs + shape[..., 0].astype(np.float32),
            ys + shape[..., 1].astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
    expressive = float(np.exp(rng.normal(0.0, preset.expressiveness_sigma)))
    gains = {au: float(np.exp(rng.normal(0.0, preset.au_gain_sigma))) for au in sorted(AU_MOTION)}
    habit_au = int(rng.choice(sorted(AU_MOTION)))
    habit = (habit_au, float(rng.uniform(*preset.habit_prob)), float(rng.uniform(*preset.habit_strength)))
    restless = float(np.exp(rng.normal(0.0, 0.4)))
    return SubjectLook(base.astype(np.float32), shape, expressive, gains, habit, restless)


def _field(look: SubjectLook, moving: dict, side: int) -> np.ndarray:
    centres, _ = control_points({p: np.ones(2) for p in moving}, side)
    disp = np.zeros_like(centres)
    for i, p in enumerate(moving):  # moving points come first in control_points' order
        disp[i] = moving[p]
    # the subject's anatomy: template points moved by the face-shape warp (base(q) = face(q + D(q)))
    ij = np.clip(np.round(centres).astype(int), 0, side - 1)
    centres = centres - look.shape[ij[:, 1], ij[:, 0]]
    return coarse_skin_field(centres, disp, side)


def coarse_skin_field(centres: np.ndarray, disp: np.ndarray, side: int, cells: int | None = None) -> np.ndarray:
    """:func:`mer.data.synth_motion.skin_field` evaluated on a (cells + 1)^2 grid, bilinear in between.

    ``cells`` None: side // 3 (3 px cells). The TPS is smooth at that scale: the interpolation
    error is about 0.1 % of the peak motion on average and 3-4 % at worst (next to a control
    point), for about a tenth of the cost of a dense evaluation.
    """
    cells = cells or max(16, side // 3)
    if not np.any(disp):
        return np.zeros((side, side, 2), dtype=np.float64)
    g = np.linspace(0.0, side - 1.0, cells + 1)
    gx, gy = np.meshgrid(g, g)
    coarse = tps_fit(centres + disp, -disp)(np.column_stack([gx.ravel(), gy.ravel()]))
    coarse = coarse.reshape(cells + 1, cells + 1, 2).astype(np.float32)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) * (cells / (side - 1.0))
    return cv2.remap(coarse, xs, ys, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float64)


def _render(
    look: SubjectLook,
    field: np.ndarray,
    s: float,
    head: np.ndarray,
    gain: float,
    grad,
    src: Source,
    rng: np.random.Generator,
) -> np.ndarray:
    map_x, map_y = backward_map(field, s, head, src.side)
    img = cv2.remap(look.base, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if src.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), src.blur_sigma)
    ramp = np.linspace(-1.0, 1.0, src.side, dtype=np.float32)
    light = gain + grad[0] * ramp[None, :] + grad[1] * ramp[:, None]
    img = img * light[..., None] + rng.normal(0.0, src.noise_sigma, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def clip_frames(
    preset: Preset, src: Source, look: SubjectLook, clip: ClipPlan, with_offset: bool = False
) -> list[np.ndarray]:
    """BGR uint8 frames [onset, apex] (+ offset) of a planned clip; the same for a given plan."""
    onset_seq, offset_seq = np.random.SeedSequence(clip.seed).spawn(2)
    rng = np.random.default_rng(onset_seq)
    side = src.side
    combo = parse_combo(clip.combo)
    gains = {au: look.au_gain[au] * float(rng.uniform(0.6, 1.2)) for au, _ in combo}
    amp = float(np.exp(rng.uniform(*np.log(preset.amplitude_px)))) * look.expressiveness * side / 128.0
    moving = {p: d * amp for p, d in au_displacements(combo, gains).items()}

    def add(p, d):
        moving[p] = moving.get(p, np.zeros(2)) + d

    h_au, h_prob, h_strength = look.habit
    if rng.random() < h_prob:
        for p, d in au_displacements([(h_au, "B")], {}).items():
            add(p, d * amp * h_strength)
    if rng.random() < src.blink_prob:  # both upper lids come down, caught at any phase
        b = float(rng.uniform(0.5, 2.5)) * side / 128.0 * float(rng.uniform(0.2, 1.0))
        for p in _BLINK_POINTS:
            add(p, np.array([0.0, b]))
    if rng.random() < src.distractor_prob:
        pts = all_points()
        p = tuple(pts[rng.integers(len(pts))].round(4).tolist())
        ang = rng.uniform(0, 2 * np.pi)
        add(p, float(rng.uniform(0.2, 0.8)) * amp * np.array([np.cos(ang), np.sin(ang)]))
    field = _field(look, moving, side)
    apex_s = float(rng.uniform(*src.apex_fraction))
    seconds = (clip.apex - clip.onset) / src.fps
    drift = look.restless * seconds
    heads = [head_similarity(*rng.normal(0.0, src.head_jitter_px, 2), rng.normal(0.0, 0.08), 1.0, side)]
    heads.append(
        head_similarity(
            *(rng.normal(0.0, src.head_jitter_px, 2) + rng.normal(0.0, src.head_px_s * drift, 2)),
            rng.normal(0.0, 0.08) + rng.normal(0.0, src.head_roll_s * drift),
            float(np.exp(rng.normal(0.0, 0.002 + 0.004 * drift))),
            side,
        )
    )
    lights = [
        (1.0 + rng.normal(0.0, src.illumination), tuple(rng.normal(0.0, src.illumination * 0.5, 2))) for _ in range(2)
    ]
    frames = [_render(look, field, s, h, g, gr, src, rng) for s, h, (g, gr) in zip((0.0, apex_s), heads, lights)]
    if with_offset:
        r2 = np.random.default_rng(offset_seq)
        h = head_similarity(*rng_normal2(r2, src.head_px_s * drift + src.head_jitter_px), 0.0, 1.0, side)
        frames.append(
            _render(
                look,
                field,
                float(r2.uniform(*OFFSET_FRACTION)) * apex_s,
                h,
                1.0 + r2.normal(0.0, src.illumination),
                (0.0, 0.0),
                src,
                r2,
            )
        )
    return frames


def rng_normal2(rng: np.random.Generator, sigma: float) -> tuple[float, float]:
    a, b = rng.normal(0.0, sigma, 2)
    return float(a), float(b)


def encode_frame(frame: np.ndarray, src: Source) -> tuple[str, bytes]:
    """(file suffix, bytes) of a frame as the source stores it: JPEG at its quality, or lossless BMP."""
    if src.jpeg_quality is None:
        ok, buf = cv2.imencode(".bmp", frame)
        suffix = ".bmp"
    else:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, src.jpeg_quality])
        suffix = ".jpg"
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {frame.shape} frame as {suffix}")
    return suffix, buf.tobytes()


def decode_grey(data: bytes) -> np.ndarray:
    """The grey frame a reader decodes from stored bytes (cv2.IMREAD_GRAYSCALE, as mer.data.frames)."""
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
