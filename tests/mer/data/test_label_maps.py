"""The label-map tables: one test per shipped map, plus the table validation."""

from __future__ import annotations

import pytest

from mer.data.errors import DataError
from mer.data.labels import LABEL_MAPS, load_label_map


def test_casme2_5class_table():
    m = load_label_map("casme2-5")
    assert m.classes == ("happiness", "disgust", "repression", "surprise", "others")
    assert [m.map(x) for x in ("Happiness", "disgust", "repression", "surprise", "others", "other")] == [
        0,
        1,
        2,
        3,
        4,
        4,
    ]
    assert m.map("fear") is None and m.map("sadness") is None  # excluded, documented in the table
    with pytest.raises(DataError, match="unknown emotion label 'joy'"):
        m.map("joy")


def test_samm_5class_table():
    m = load_label_map("samm-5")
    assert m.classes == ("anger", "contempt", "happiness", "surprise", "other")
    assert [m.map(x) for x in ("Anger", "Contempt", "Happiness", "Surprise", "Other")] == [0, 1, 2, 3, 4]
    assert all(m.map(x) is None for x in ("disgust", "fear", "sadness"))


def test_composite_3class_table_covers_all_native_sets():
    m = load_label_map("composite-3")
    assert m.classes == ("negative", "positive", "surprise")
    neg = ("negative", "repression", "anger", "contempt", "disgust", "fear", "sadness", "sad")
    assert all(m.map(x) == 0 for x in neg)
    assert all(m.map(x) == 1 for x in ("positive", "happiness", "happy"))
    assert m.map("surprise") == 2
    assert m.map("others") is None and m.map("other") is None


def test_casme3_7class_table():
    m = load_label_map("casme3-7")
    assert len(m.classes) == 7 and m.map("happy") == m.map("happiness") == 0 and m.map("others") == 6


def test_every_registered_map_loads_from_package_data():
    for name in LABEL_MAPS:
        assert load_label_map(name).classes


def test_table_with_gapped_indices_is_rejected(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("native,index,class,note\na,0,a,\nb,2,b,\n")
    with pytest.raises(DataError, match=r"class indices must be 0..K-1 without gaps \(got \[0, 2\]\)"):
        load_label_map(p)


def test_table_with_conflicting_names_names_the_row(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("native,index,class,note\na,0,a,\nb,0,b,\n")
    with pytest.raises(DataError, match="index 0 is named both 'a' and 'b' in .*bad.csv, row 3"):
        load_label_map(p)


def test_unknown_map_name_lists_the_registry():
    with pytest.raises(ValueError, match="casme2-5, samm-5, composite-3, casme3-7"):
        load_label_map("casme2-7")
