"""SMIC-HS, MEGC2019 composite and manifest readers on fixtures in the real layouts."""

from __future__ import annotations

import me_fixtures as fx
import numpy as np
import pytest

from mer.data.errors import DataError
from mer.data.readers import read_records


def test_smic_reader_labels_from_folders_apex_is_middle_frame(tmp_path):
    exp = fx.smic(tmp_path)
    recs, lmap, _ = read_records(tmp_path, "smic")
    assert len(recs) == exp["rows"]  # non_micro is not read
    by = {r.sample_id: r for r in recs}
    r = by["s1_ne_01"]
    assert r.subject == "s1" and lmap.classes[r.label] == "negative" and not r.au_known
    assert r.onset.name == "image106720.bmp" and r.offset.name == "image106724.bmp"
    assert r.apex.name == "image106722.bmp" and r.apex_estimated  # middle of 5 frames
    assert lmap.classes[by["s2_sur_01"].label] == "surprise"


def test_smic_clip_with_one_frame_is_reported(tmp_path):
    fx.smic(tmp_path)
    fx.write_clip(tmp_path / "s3" / "micro" / "positive" / "s3_po_01", [5], lambda k: f"image{k}", ext=".bmp")
    _, _, plog = read_records(tmp_path, "smic", skip_bad=True)
    assert [p.sample for p in plog.problems] == ["smic/s3/s3_po_01"]
    assert "clip has 1 frame(s), need at least 2" in plog.problems[0].reason


def test_composite_reader_maps_names_and_numbers(tmp_path):
    fx.composite(tmp_path)
    recs, lmap, _ = read_records(tmp_path, "composite")
    assert lmap.classes == ("negative", "positive", "surprise")
    got = {(r.dataset, r.subject): lmap.classes[r.label] for r in recs}
    assert got == {
        ("casme2", "sub01"): "negative",
        ("casme2", "sub02"): "positive",
        ("samm", "006"): "positive",
        ("samm", "007"): "surprise",
        ("smic", "s1"): "negative",
        ("smic", "s2"): "surprise",
    }
    assert all(r.flow_image is not None and r.onset is None for r in recs)


def test_composite_wrong_size_flow_image_names_file_and_row(tmp_path):
    fx.composite(tmp_path, bad=True)
    with pytest.raises(DataError) as ei:
        read_records(tmp_path, "composite")
    msg = str(ei.value)
    assert "expected a 28x28x3 8-bit flow image (got 32x32x1 8-bit) in flows/sub01_EP09_01.png, row 8" in msg
    assert "numeric label must be in 0..2" in msg and "row 9" in msg
    assert "flow image is missing or unreadable in flows/s4_s4_ne_01.png, row 10" in msg


def test_composite_skip_bad_reports_every_skipped_sample(tmp_path):
    fx.composite(tmp_path, bad=True)
    recs, _, plog = read_records(tmp_path, "composite", skip_bad=True)
    assert len(recs) == 6
    assert sorted(p.sample for p in plog.problems) == ["casme2/sub01/EP09_01", "samm/008/008_1_1", "smic/s4/s4_ne_01"]


def test_manifest_reader_frames_and_flow_rows(tmp_path):
    fx.write_clip(tmp_path / "clips" / "a", [1, 2, 3], lambda n: f"f{n}")
    np.save(tmp_path / "flow_b.npy", np.zeros((3, 16, 16), np.float32))
    fx.write_csv(
        tmp_path / "manifest.csv",
        [
            ["dataset", "subject", "sample_id", "emotion", "onset", "apex", "offset", "flow", "aus"],
            ["mine", "p1", "a", "Joy", "clips/a/f1.jpg", "clips/a/f3.jpg", "", "", "6+12"],
            ["mine", "p2", "b", "anger", "", "", "", "flow_b.npy", ""],
        ],
    )
    recs, lmap, _ = read_records(tmp_path, "manifest")
    assert lmap.classes == ("anger", "joy")  # sorted emotions of the file
    a, b = recs
    assert a.aus == (6, 12) and a.au_known and a.onset.name == "f1.jpg" and lmap.classes[a.label] == "joy"
    assert b.flow_image.name == "flow_b.npy" and not b.au_known


def test_manifest_row_with_both_frames_and_flow_is_rejected(tmp_path):
    fx.write_clip(tmp_path / "c", [1, 2], lambda n: f"f{n}")
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8), np.float32))
    fx.write_csv(
        tmp_path / "m.csv",
        [
            ["subject", "sample_id", "emotion", "onset", "apex", "flow"],
            ["p", "s", "joy", "c/f1.jpg", "c/f2.jpg", "x.npy"],
        ],
    )
    with pytest.raises(
        DataError, match=r"either onset and apex frame paths or a flow path \(got both\) in m.csv, row 2"
    ):
        read_records(tmp_path / "m.csv", "manifest")


def test_manifest_missing_columns_named(tmp_path):
    fx.write_csv(tmp_path / "manifest.csv", [["subject", "label"], ["p", "joy"]])
    with pytest.raises(DataError, match="manifest lacks column.s. sample_id"):
        read_records(tmp_path, "manifest")
