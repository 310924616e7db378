"""AU string parsing as the sheets write it."""

from __future__ import annotations

import numpy as np
import pytest

from mer.data.aus import au_vector, parse_aus
from mer.face.regions import AU_NODES


@pytest.mark.parametrize(
    "text, aus, unknown",
    [
        ("4+L10", (4, 10), ()),
        ("R12", (12,), ()),
        ("A1+A2", (1, 2), ()),
        ("AU4", (4,), ()),
        ("AU 4 + L AU10", (4, 10), ()),
        ("1+2+4+L10+R12C", (1, 2, 4, 10, 12), ()),
        ("R14A", (14,), ()),
        (12.0, (12,), ()),
        ("4.0", (4,), ()),
        ("M57+4", (4,), ("M57",)),
        ("38?", (), ("38?",)),
        ("blink+7", (7,), ("blink",)),
        ("", (), ()),
        ("none", (), ()),
        ("/", (), ()),
        (None, (), ()),
        ("4+4", (4,), ()),
        ("1,2;5", (1, 2, 5), ()),
    ],
)
def test_au_strings_parse_without_losing_unknown_codes(text, aus, unknown):
    code = parse_aus(text)
    assert code.aus == aus and code.unknown == unknown


def test_au_vector_ignores_aus_that_are_not_nodes():
    v = au_vector((1, 12, 38))
    assert v.shape == (len(AU_NODES),) and v.dtype == np.float32
    assert v.sum() == 2 and v[AU_NODES.index(1)] == 1 and v[AU_NODES.index(12)] == 1
