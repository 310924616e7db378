"""Synthetic benchmark presets: what each one mimics, as frozen data.

A :class:`Preset` is a list of :class:`Source` "data sets" (frame rate, crop side, noise,
head motion, illumination drift, apex timing, sample and subject counts, class counts), an
emotion -> AU-combination table (a CSV next to this module), the subject idiosyncrasies and
the label noise. Three presets are registered in :data:`PRESETS`:

- ``default``: the geometry and nuisances of the embedded default set (:mod:`mer.data.synth`,
  CASME II layout, 128x128 frames, 5 classes with CASME II's balance). The written default set
  is still made by :func:`mer.data.synth.synthesize`; this entry lets the corpus draw clips of
  that geometry.
- ``composite-like``: the MEGC2019 composite (See et al., MEGC 2019, "the composite data set",
  Table 1): 442 clips of 68 subjects from three sources, 3 classes negative 250 / positive 109
  / surprise 83. Per source (samples, subjects, negative/positive/surprise): CASME II 145, 24,
  88/32/25; SAMM 133, 28, 92/26/15; SMIC-HS 164, 16, 70/51/43. Frame rates: SMIC-HS 100 fps
  (Li et al. 2013), CASME II 200 fps (Yan et al. 2014), SAMM 200 fps, grey-scale (Davison et
  al. 2018). SMIC has no apex annotation, so the composite's apex is the middle frame: at that
  frame the motion is anywhere between a third of its peak and the peak. Crop sides differ by
  source as the faces do in the recordings (SMIC's faces are smallest, SAMM's largest): 96,
  128 and 160 px here. No AU labels (the composite's CSV has none). Images: 28x28 u/v/strain,
  min-max normalised per image per channel, 8 bits (the shared composite's format).
- ``casme2-like``: CASME II (Yan et al. 2014): 26 subjects, 255 clips, 200 fps, its 7-emotion
  mix (others 99, disgust 63, happiness 32, repression 27, surprise 25, sadness 7, fear 2) and
  AU coding in the sheet; written in the CASME II layout (frames + coding sheet).

Motion amplitudes of real micro-expressions: sub-pixel to about 2 px at the apex in a face
crop of 128-160 px (the flow magnitudes that make MEs hard to see, Davison et al. 2018, Fig. 1;
Liong et al. 2018): log-uniform in ``amplitude_px``. Every evaluation preset draws faces from
the ``eval`` identity pool only (:func:`mer.data.synth_faces.face_pool`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

LAYOUTS = ("casme2", "composite")


@dataclass(frozen=True)
class Source:
    """One source "data set" inside a preset."""

    name: str  # reader's data set name: casme2 | samm | smic
    samples: int  # clips in the written preset
    subjects: int  # subjects in the written preset
    classes: tuple[tuple[str, int], ...]  # (native emotion, clips) in the written preset
    fps: int = 200  # frame rate: sets the onset->apex frame gap
    side: int = 128  # aligned crop side the frames are rendered at, px
    grey: bool = False  # grey-scale camera (SAMM)
    noise_sigma: float = 1.5  # sensor noise std, grey levels
    blur_sigma: float = 0.0  # optics / low resolution blur, px
    jpeg_quality: int | None = 92  # None: lossless frames (SMIC's BMPs)
    head_px_s: float = 0.6  # head translation drift, px per second onset->apex (std)
    head_roll_s: float = 0.3  # head roll drift, degrees per second (std)
    head_jitter_px: float = 0.12  # frame-to-frame head shake, px (std)
    illumination: float = 0.02  # frame gain change std; gradient half that
    apex_fraction: tuple[float, float] = (0.85, 1.0)  # motion fraction at the frame used as apex
    onset_apex_s: tuple[float, float] = (0.07, 0.25)  # onset->apex duration, seconds
    blink_prob: float = 0.15
    distractor_prob: float = 0.25


@dataclass(frozen=True)
class Preset:
    name: str
    layout: str  # "casme2" (frames + sheet) | "composite" (28x28 PNGs)
    label_map: str  # label map the reader applies
    emotions_csv: str  # emotion -> AU combination table (file in mer/data)
    sources: tuple[Source, ...]
    amplitude_px: tuple[float, float] = (0.5, 3.0)  # apex motion of the strongest AU point
    label_noise: float = 0.0  # chance a clip's motion comes from another class
    expressiveness_sigma: float = 0.15  # per-subject log amplitude factor, std
    au_gain_sigma: float = 0.0  # per-subject, per-AU log gain, std
    shape_px: float = 0.0  # per-subject face-shape warp (anatomy vs template), px std
    habit_prob: tuple[float, float] = (0.0, 0.0)  # per-subject chance of a habitual AU in a clip
    habit_strength: tuple[float, float] = (0.3, 0.8)  # habitual AU amplitude, fraction of the clip's
    texture: tuple[float, float] = (2.5, 5.0)  # skin texture std range, grey levels
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.sources)

    @property
    def subjects(self) -> int:
        return sum(s.subjects for s in self.sources)

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise ValueError(f"preset {self.name} has no source {name!r} (has {', '.join(s.name for s in self.sources)})")


_COMPOSITE_COMMON = {"blink_prob": 0.3, "distractor_prob": 0.5, "onset_apex_s": (0.07, 0.3)}

PRESETS: dict[str, Preset] = {
    "default": Preset(
        name="default",
        layout="casme2",
        label_map="casme2-5",
        emotions_csv="synth_emotions.csv",
        sources=(
            Source(
                "casme2",
                samples=221,
                subjects=24,
                classes=(("others", 94), ("disgust", 56), ("repression", 28), ("happiness", 25), ("surprise", 18)),
                head_px_s=0.0,
                head_roll_s=0.0,
            ),
        ),
    ),
    "composite-like": Preset(
        name="composite-like",
        layout="composite",
        label_map="composite-3",
        emotions_csv="preset_composite_emotions.csv",
        sources=(
            Source(
                "casme2",
                samples=145,
                subjects=24,
                classes=(("negative", 88), ("positive", 32), ("surprise", 25)),
                fps=200,
                side=128,
                noise_sigma=2.0,
                jpeg_quality=90,
                head_px_s=1.5,
                head_roll_s=0.8,
                illumination=0.02,
                **_COMPOSITE_COMMON,
            ),
            Source(
                "samm",
                samples=133,
                subjects=28,
                classes=(("negative", 92), ("positive", 26), ("surprise", 15)),
                fps=200,
                side=160,
                grey=True,
                noise_sigma=1.5,
                jpeg_quality=95,
                head_px_s=1.5,
                head_roll_s=0.8,
                illumination=0.03,
                **_COMPOSITE_COMMON,
            ),
            Source(
                "smic",
                samples=164,
                subjects=16,
                classes=(("negative", 70), ("positive", 51), ("surprise", 43)),
                fps=100,
                side=96,
                noise_sigma=3.0,
                blur_sigma=0.6,
                jpeg_quality=None,
                head_px_s=2.5,
                head_roll_s=1.2,
                head_jitter_px=0.2,
                illumination=0.04,
                apex_fraction=(0.35, 1.0),
                **_COMPOSITE_COMMON,
            ),
        ),
        amplitude_px=(0.25, 2.0),
        label_noise=0.15,
        expressiveness_sigma=0.35,
        au_gain_sigma=0.35,
        shape_px=1.5,
        habit_prob=(0.2, 0.6),
        texture=(1.5, 5.0),
    ),
    "casme2-like": Preset(
        name="casme2-like",
        layout="casme2",
        label_map="casme2-5",
        emotions_csv="preset_casme2_emotions.csv",
        sources=(
            Source(
                "casme2",
                samples=255,
                subjects=26,
                classes=(
                    ("others", 99),
                    ("disgust", 63),
                    ("happiness", 32),
                    ("repression", 27),
                    ("surprise", 25),
                    ("sadness", 7),
                    ("fear", 2),
                ),
                fps=200,
                side=128,
                noise_sigma=2.0,
                jpeg_quality=90,
                head_px_s=1.5,
                head_roll_s=0.8,
                illumination=0.03,
                blink_prob=0.3,
                distractor_prob=0.5,
                onset_apex_s=(0.07, 0.3),
            ),
        ),
        amplitude_px=(0.3, 2.0),
        label_noise=0.1,
        expressiveness_sigma=0.35,
        au_gain_sigma=0.35,
        shape_px=1.5,
        habit_prob=(0.2, 0.6),
        texture=(1.5, 5.0),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError lists the registered names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


@cache
def emotion_combos(csv_name: str) -> dict[str, tuple[tuple[str, float], ...]]:
    """Emotion -> ((AU combination, probability within the emotion), ...) from a table in mer/data."""
    text = resources.files("mer.data").joinpath(csv_name).read_text("utf-8")
    out: dict[str, list[tuple[str, float]]] = {}
    for r in csv.DictReader(text.splitlines()):
        out.setdefault(r["emotion"], []).append((r["aus"], float(r["weight"])))
    return {e: tuple((a, w / sum(x for _, x in rows)) for a, w in rows) for e, rows in out.items()}
