"""CASME II, SAMM and CAS(ME)^3 readers on fixtures written in the real layouts."""

from __future__ import annotations

import me_fixtures as fx
import pytest

from mer.data.errors import DataError
from mer.data.readers import read_records


@pytest.mark.parametrize("sheet", ["xlsx", "csv"])
def test_casme2_reader_reads_layout_and_quirks(tmp_path, sheet):
    exp = fx.casme2(tmp_path, sheet)
    recs, lmap, plog = read_records(tmp_path, "casme2")
    assert len(recs) == exp["rows"] and not plog.problems
    by = {r.sample_id: r for r in recs}
    r = by["EP02_01f"]
    assert (r.dataset, r.subject, r.emotion, r.aus) == ("casme2", "sub01", "disgust", (4, 10))
    assert r.onset.name == "img46.jpg" and r.apex.name == "img59.jpg" and r.offset.name == "img86.jpg"
    assert lmap.classes[r.label] == "disgust"
    assert by["EP03_02"].apex_estimated and by["EP03_02"].apex.name == "img20.jpg"  # '/' apex -> middle frame
    assert by["EP03_02"].aus == (12,)  # R12
    assert by["EP01_11f"].aus == (1, 2) and by["EP01_11f"].unknown_aus == ("M57",)  # A1+A2, unknown kept
    assert by["EP01_11f"].subject == "sub02"  # 'sub02' text cell
    assert by["EP04_05"].onset.name == "reg_img100.jpg"  # cropped naming
    assert by["EP04_05"].aus == (4,) and lmap.classes[by["EP04_05"].label] == "others"
    assert lmap.classes[by["EP06_01"].label] == "repression"
    assert by["EP07_03"].label is None and by["EP07_03"].emotion == "fear"  # excluded, not lost
    assert lmap.classes[by["EP08_01"].label] == "happiness"  # 'Happiness ' normalised


def test_samm_reader_finds_header_below_title_block(tmp_path):
    exp = fx.samm(tmp_path)
    recs, lmap, _ = read_records(tmp_path, "samm")
    assert len(recs) == exp["rows"]
    by = {r.sample_id: r for r in recs}
    r = by["006_1_2"]
    assert r.subject == "006" and r.onset.name == "006_05562.jpg" and r.apex.name == "006_05588.jpg"
    assert r.aus == (14,) and lmap.classes[r.label] == "contempt"  # R14A: side and intensity dropped
    assert r.source.endswith("row 12")  # 10 title rows + header
    assert by["007_5_1"].aus == (12, 6)
    assert by["007_5_2"].unknown_aus == ("?",) and lmap.classes[by["007_5_2"].label] == "other"
    assert by["007_6_1"].label is None  # disgust excluded by samm-5


def test_casme3_reader_uses_color_folder_and_composite_map(tmp_path):
    exp = fx.casme3(tmp_path)
    recs, lmap, _ = read_records(tmp_path, "casme3")
    assert len(recs) == exp["rows"]
    by = {(r.subject, r.sample_id): r for r in recs}
    a = by[("spNO.1", "a")]
    assert a.onset.parent.name == "color" and a.onset.name == "0.jpg" and a.aus == (4, 12)
    assert lmap.classes[a.label] == "positive"
    assert lmap.classes[by[("spNO.2", "c")].label] == "negative"  # numeric subject -> spNO.2; sad -> negative
    assert by[("spNO.2", "d")].label is None  # others excluded from 3 classes
    assert by[("spNO.2", "d")].onset.parent.name == "d"  # no color/ folder: clip folder itself


def test_missing_frame_names_sheet_row_and_folder(tmp_path):
    fx.casme2(tmp_path)
    (tmp_path / "sub01" / "EP02_01f" / "img59.jpg").unlink()
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, "casme2")
    msg = str(ei.value)
    assert "apex frame 59 not found in sub01/EP02_01f" in msg and "CASME2-coding-20140508.xlsx, row 2" in msg


def test_missing_clip_folder_is_skipped_with_reason(tmp_path):
    fx.casme2(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "sub02" / "EP06_01")
    recs, _, plog = read_records(tmp_path, "casme2", skip_bad=True)
    assert len(recs) == 6 and len(plog.problems) == 1
    p = plog.problems[0]
    assert p.sample == "casme2/2/EP06_01" and "frame folder sub02/EP06_01 not found" in p.reason and "row 6" in p.reason


def test_unknown_emotion_is_an_error_naming_the_row(tmp_path):
    fx.casme2(tmp_path, "csv")
    path = tmp_path / "CASME2-coding-20140508.csv"
    path.write_text(path.read_text().replace("repression", "contentment"))
    with pytest.raises(DataError, match=r"unknown emotion label 'contentment'.*row 6"):
        read_records(tmp_path, "casme2")


def test_unreadable_sheet_is_a_data_error_naming_it(tmp_path):
    fx.casme2(tmp_path)
    (tmp_path / "CASME2-coding-20140508.xlsx").write_bytes(b"this is not a zip file")
    with pytest.raises(DataError, match=r"cannot read the coding sheet as \.xlsx.*CASME2-coding-20140508\.xlsx"):
        read_records(tmp_path, "casme2")


def test_sheet_without_header_lists_what_it_wanted(tmp_path):
    fx.write_csv(tmp_path / "coding.csv", [["a", "b"], [1, 2]])
    with pytest.raises(DataError, match="no header row with columns subject, filename, onset, apex, emotion"):
        read_records(tmp_path, "casme2")


def test_unknown_format_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid: casme2, samm, smic, casme3, composite, manifest"):
        read_records(tmp_path, "casme4")
