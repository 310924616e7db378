"""Parsing FACS action-unit strings as the data sets' sheets write them.

Accepted forms, joined by ``+`` (also ``,``, ``;``, ``/`` or whitespace):

- ``4``, ``AU4``, ``au 4``: AU 4;
- ``L10``, ``R12``, ``B1``, ``U14``, ``T7`` (left, right, bilateral, unilateral, top/bottom
  prefixes; also ``AUL10`` and ``L AU10``): the AU, laterality dropped;
- ``A1``: ``A`` read as a shortened ``AU`` (the sheets use it that way);
- ``12C``, ``R14A``: a trailing FACS intensity letter A-E, dropped;
- ``4.0``: a number that a spreadsheet stored as a float.

Empty cells and ``none``, ``-``, ``/``, ``n/a``, ``nan`` mean no AUs. Anything else (``M57``,
``?``, ``38?``, ``blink``) is an unknown code: kept verbatim in the result and reported, never
a crash. AUs outside the 12 graph nodes (e.g. 38) are valid AUs and kept; only
:func:`au_vector` drops them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mer.face.regions import AU_NODES

_SPLIT = re.compile(r"[+,;/\s]+")
_TOKEN = re.compile(
    r"^(?:AU)?(?P<side>[LRBUT])?(?:AU|A)?(?P<num>\d{1,2})(?:\.0+)?(?P<intensity>[A-E])?$", re.IGNORECASE
)
_EMPTY = {"", "none", "-", "/", "n/a", "na", "nan", "null"}


@dataclass(frozen=True)
class AUCode:
    aus: tuple[int, ...]  # unique AU numbers in order of appearance
    unknown: tuple[str, ...]  # tokens that are not AU codes, verbatim


def parse_aus(text: object) -> AUCode:
    """Parse one AU cell (string or number) into AU numbers and unknown codes."""
    if text is None:
        return AUCode((), ())
    if isinstance(text, float) and text.is_integer():
        text = int(text)
    s = str(text).strip()
    if s.lower() in _EMPTY:
        return AUCode((), ())
    s = re.sub(r"\bAU\s+", "AU", s, flags=re.IGNORECASE)  # "AU 4" -> "AU4"
    s = re.sub(r"\b([LRBUT])\s+AU", r"\1AU", s, flags=re.IGNORECASE)  # "L AU10" -> "LAU10"
    aus: list[int] = []
    unknown: list[str] = []
    for tok in (t for t in _SPLIT.split(s) if t):
        m = _TOKEN.match(tok)
        if m is None or int(m.group("num")) == 0:
            unknown.append(tok)
            continue
        n = int(m.group("num"))
        if n not in aus:
            aus.append(n)
    return AUCode(tuple(aus), tuple(unknown))


def au_vector(aus: tuple[int, ...] | list[int]) -> np.ndarray:
    """12-dim float32 multi-hot vector in AU_NODES order; AUs that are not nodes are ignored."""
    v = np.zeros(len(AU_NODES), dtype=np.float32)
    for a in aus:
        if a in AU_NODES:
            v[AU_NODES.index(a)] = 1.0
    return v
