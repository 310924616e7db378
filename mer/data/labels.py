"""Emotion label maps, kept as data tables (CSV files in ``mer/data/labelmaps/``).

Each table has columns ``native,index,class,note``: a native label (lower case, as the data
set writes it, synonyms as extra rows), the class index and name it maps to, and a note. A
row with an empty index *excludes* that label under the map (e.g. fear and sadness in CASME II
5-class); such samples are counted and reported as unmapped, never silently lost. A label
that has no row at all is an *unknown* label and a :class:`~mer.data.errors.DataError`.

Maps (name -> file): ``casme2-5`` (happiness, disgust, repression, surprise, others),
``samm-5`` (anger, contempt, happiness, surprise, other), ``composite-3`` (negative, positive,
surprise as in MEGC2019), ``casme3-7``. A path to a CSV with the same columns also works.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mer.data.errors import DataError

LABEL_MAPS: dict[str, str] = {
    "casme2-5": "casme2_5class.csv",
    "samm-5": "samm_5class.csv",
    "composite-3": "composite_3class.csv",
    "casme3-7": "casme3_7class.csv",
}


def normalise_label(text: object) -> str:
    """Lower case, trimmed, inner whitespace and underscores collapsed to one space."""
    return " ".join(str(text).replace("_", " ").split()).lower()


@dataclass(frozen=True)
class LabelMap:
    name: str
    classes: tuple[str, ...]
    table: dict[str, int | None]  # normalised native label -> class index, None = excluded

    def knows(self, native: str) -> bool:
        return normalise_label(native) in self.table

    def map(self, native: str) -> int | None:
        """Class index of ``native``; None if the map excludes it; DataError if it is unknown."""
        key = normalise_label(native)
        if key not in self.table:
            raise DataError(
                f"unknown emotion label {native!r} for label map {self.name!r} (known: {', '.join(sorted(self.table))})"
            )
        return self.table[key]


def _parse(name: str, text: str, origin: str) -> LabelMap:
    rows = list(csv.DictReader(io.StringIO(text)))
    need = {"native", "index", "class"}
    if not rows or not need <= set(rows[0]):
        raise DataError(
            f"label map needs columns native,index,class (got {sorted(rows[0]) if rows else 'no rows'})", file=origin
        )
    table: dict[str, int | None] = {}
    names: dict[int, str] = {}
    for i, row in enumerate(rows, start=2):
        native = normalise_label(row["native"])
        idx_text = (row["index"] or "").strip()
        if native in table:
            raise DataError(f"label {native!r} appears twice", file=origin, row=i)
        if not idx_text:
            table[native] = None
            continue
        try:
            idx = int(idx_text)
        except ValueError:
            raise DataError(f"index must be an integer or empty (got {idx_text!r})", file=origin, row=i) from None
        cls = (row["class"] or "").strip()
        if names.setdefault(idx, cls) != cls:
            raise DataError(f"index {idx} is named both {names[idx]!r} and {cls!r}", file=origin, row=i)
        table[native] = idx
    if sorted(names) != list(range(len(names))):
        raise DataError(f"class indices must be 0..K-1 without gaps (got {sorted(names)})", file=origin)
    return LabelMap(name, tuple(names[i] for i in range(len(names))), table)


def load_label_map(name_or_path: str | Path) -> LabelMap:
    """A map by registry name (see :data:`LABEL_MAPS`) or from a CSV path."""
    if isinstance(name_or_path, str) and name_or_path in LABEL_MAPS:
        text = resources.files("mer.data").joinpath("labelmaps", LABEL_MAPS[name_or_path]).read_text("utf-8")
        return _parse(name_or_path, text, f"mer/data/labelmaps/{LABEL_MAPS[name_or_path]}")
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(
            f"unknown label map {str(name_or_path)!r}: not one of {', '.join(LABEL_MAPS)} and not a CSV file"
        )
    return _parse(path.stem, path.read_text("utf-8-sig"), str(path))


def map_from_classes(name: str, classes: list[str] | tuple[str, ...]) -> LabelMap:
    """Identity map over the given class names (used for manifests without a map)."""
    return LabelMap(name, tuple(classes), {normalise_label(c): i for i, c in enumerate(classes)})
