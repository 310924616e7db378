"""The common sample record every reader produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SampleRecord:
    """One micro-expression sample, as read from a data set's layout and sheet.

    Either the frame paths (``onset`` and ``apex``; ``offset`` when annotated) or a
    precomputed ``flow_image`` is set.
    """

    dataset: str  # "casme2", "samm", "smic", "casme3", or the manifest's name
    subject: str  # subject id within the data set (folder name: "sub01", "006", "s1")
    sample_id: str  # clip id within the subject ("EP02_01f", "006_1_2", "s1_ne_01")
    emotion: str  # native emotion label, lower-cased ("happiness", "others", ...)
    label: int | None  # class index under the label map; None when the map excludes it
    aus: tuple[int, ...] = ()  # AU numbers (laterality and intensity dropped), in sheet order
    unknown_aus: tuple[str, ...] = ()  # AU codes that could not be parsed, kept verbatim
    onset: Path | None = None
    apex: Path | None = None
    offset: Path | None = None
    flow_image: Path | None = None
    au_known: bool = True  # False when the data set has no AU coding (SMIC, the composite)
    apex_estimated: bool = False  # True when the apex is the clip's middle frame, not annotated
    source: str = ""  # where it came from: "sheet.xlsx row 7" or a folder

    @property
    def key(self) -> str:
        """ "dataset/subject/sample_id": unique across data sets."""
        return f"{self.dataset}/{self.subject}/{self.sample_id}"

    @property
    def global_subject(self) -> str:
        """ "dataset/subject", the subject id used in MEArrays."""
        return f"{self.dataset}/{self.subject}"
