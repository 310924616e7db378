"""The single entry point the rest of the system uses: a data set folder -> :class:`MEArrays`.

>>> arrays = load_arrays("data/casme2", "casme2", cache_dir="~/.cache/fedpsyau")  # doctest: +SKIP

Stages: read records (:mod:`mer.data.readers`), drop those the label map excludes (counted by
emotion), compute or load each flow image (:mod:`mer.data.features`, cached by content), and
stack. Each stage collects its bad samples; without ``skip_bad`` they are raised together,
with it they are skipped and listed in the :class:`LoadReport`. The counts of read, skipped,
unmapped and mapped samples are logged (logger ``mer.data``) and, with ``verbose``, printed
to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mer.data.arrays import MEArrays
from mer.data.aus import au_vector
from mer.data.errors import DataError, Problem, ProblemLog
from mer.data.features import FlowSettings, record_flow_image
from mer.data.labels import LabelMap
from mer.data.readers import composite, read_records
from mer.flow.cache import FlowCache

log = logging.getLogger("mer.data")


@dataclass
class LoadReport:
    fmt: str
    root: str
    read: int = 0  # records read from the layout / sheet
    mapped: int = 0  # samples in the returned arrays
    unmapped: Counter = field(default_factory=Counter)  # emotion -> samples the label map excludes
    skipped: list[Problem] = field(default_factory=list)  # bad samples skipped (skip_bad=True)
    apex_estimated: int = 0  # samples whose apex is the middle frame, not annotated
    unknown_aus: Counter = field(default_factory=Counter)
    cache: dict[str, int] | None = None
    classes: tuple[str, ...] = ()

    def summary(self) -> str:
        parts = [
            f"{self.fmt} {self.root}: read {self.read}",
            f"skipped {len(self.skipped)}",
            f"unmapped {sum(self.unmapped.values())}"
            + (f" ({', '.join(f'{k} {v}' for k, v in sorted(self.unmapped.items()))})" if self.unmapped else ""),
            f"mapped {self.mapped} into {len(self.classes)} classes",
        ]
        if self.apex_estimated:
            parts.append(f"apex estimated (middle frame) for {self.apex_estimated}")
        if self.unknown_aus:
            parts.append(f"unknown AU codes {dict(self.unknown_aus)}")
        if self.cache is not None:
            parts.append(f"flow cache hits {self.cache['hits']} misses {self.cache['misses']}")
        return "; ".join(parts)


def load_with_report(
    root: str | Path,
    fmt: str,
    *,
    size: int | None = None,
    flow_method: str = "farneback",
    landmarks: str = "template",
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    label_map: str | Path | LabelMap | None = None,
    sheet: str | Path | None = None,
    progress: bool = True,
) -> tuple[MEArrays, LoadReport]:
    """Like :func:`load_arrays`, also returning the :class:`LoadReport`."""
    root = Path(root).expanduser()
    if size is None:
        size = composite.NATIVE_SIZE if fmt == "composite" else 128
    settings = FlowSettings(size=size, method=flow_method, landmarks=landmarks)
    settings.validate()
    plog = ProblemLog(skip_bad=skip_bad)
    records, lmap, plog = read_records(root, fmt, label_map=label_map, skip_bad=skip_bad, sheet=sheet, problems=plog)
    report = LoadReport(fmt, str(root), read=len(records) + len(plog.problems), classes=lmap.classes)
    report.unmapped = Counter(r.emotion for r in records if r.label is None)
    keep = [r for r in records if r.label is not None]
    cache = FlowCache(Path(cache_dir).expanduser()) if cache_dir is not None else None
    images, good = [], []
    for rec in tqdm(keep, desc=f"flow {fmt}", unit="clip", disable=not (progress and sys.stderr.isatty())):
        try:
            images.append(record_flow_image(rec, settings, cache, root if root.is_dir() else root.parent))
            good.append(rec)
        except DataError as err:
            plog.add(err, sample=rec.key)
    plog.raise_if_any(f"computing flow for {fmt} samples in {root}")
    report.skipped = list(plog.problems)
    report.mapped = len(good)
    report.apex_estimated = sum(r.apex_estimated for r in good)
    report.unknown_aus = Counter(c for r in good for c in r.unknown_aus)
    report.cache = cache.stats() if cache is not None else None
    log.info(report.summary())
    for p in plog.problems:
        log.warning("skipped %s", p)
    if not good:
        raise DataError(f"no usable samples ({report.summary()})", file=root)
    arrays = MEArrays(
        flow=np.stack(images).astype(np.float32),
        label=np.array([r.label for r in good], dtype=np.int64),
        au=np.stack([au_vector(r.aus) for r in good]),
        au_known=np.array([r.au_known for r in good], dtype=bool),
        subject=np.array([r.global_subject for r in good], dtype=str),
        dataset=np.array([r.dataset for r in good], dtype=str),
        sample_id=np.array([r.sample_id for r in good], dtype=str),
        class_names=lmap.classes,
    )
    return arrays, report


def load_arrays(
    root: str | Path,
    fmt: str,
    *,
    size: int | None = None,
    flow_method: str = "farneback",
    landmarks: str = "template",
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    label_map: str | Path | LabelMap | None = None,
    sheet: str | Path | None = None,
    verbose: bool = True,
) -> MEArrays:
    """Load a data set as flow images and labels.

    Args:
        root: the data set folder (the manifest CSV or its folder for ``manifest``).
        fmt: ``casme2`` | ``samm`` | ``smic`` | ``casme3`` | ``composite`` | ``manifest``.
        size: side S of the returned (N, 3, S, S) flow images. None: 128, or 28 for the
            composite (its native size; other sizes are resized from 28).
        flow_method: ``farneback`` (default) | ``dis`` | ``tvl1``.
        landmarks: ``template`` (aligned crops, default) | ``haar`` | ``dlib`` (optional extra).
        cache_dir: flow cache folder (content-hashed; a second run does no flow work). None: no cache.
        skip_bad: skip bad samples with a report instead of raising one DataError listing them.
        label_map: a map name (``casme2-5``, ``samm-5``, ``composite-3``, ``casme3-7``), a CSV
            path or a LabelMap. None: the format's default (CASME II 5-class, SAMM 5-class,
            composite 3-class for SMIC, CAS(ME)^3 and the composite; the manifest's own emotions).
        sheet: the coding sheet when it is not the one .xlsx/.csv in ``root``.
        verbose: print the counts summary and skipped samples to stderr.

    Subjects in the result are ``"dataset/subject"``.
    """
    arrays, report = load_with_report(
        root,
        fmt,
        size=size,
        flow_method=flow_method,
        landmarks=landmarks,
        cache_dir=cache_dir,
        skip_bad=skip_bad,
        label_map=label_map,
        sheet=sheet,
        progress=verbose,
    )
    if verbose:
        print(report.summary(), file=sys.stderr)
        for p in report.skipped:
            print(f"  skipped {p}", file=sys.stderr)
    return arrays
