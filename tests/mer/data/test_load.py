"""load_arrays: the single entry point, end to end on fixtures in the real layouts."""

from __future__ import annotations

import me_fixtures as fx
import numpy as np
import pytest

from mer.data.arrays import MEArrays
from mer.data.errors import DataError
from mer.data.load import load_arrays, load_with_report
from mer.face.regions import AU_NODES
from mer.flow import methods


@pytest.fixture
def flow_calls(monkeypatch):
    """Count calls of every flow method (the real functions still run)."""
    calls = {"n": 0}
    for name, fn in list(methods.FLOW_METHODS.items()):

        def counted(a, b, fn=fn):
            calls["n"] += 1
            return fn(a, b)

        monkeypatch.setitem(methods.FLOW_METHODS, name, counted)
    return calls


def test_casme2_load_gives_arrays_contract_and_counts(tmp_path, capsys):
    fx.casme2(tmp_path)
    arr = load_arrays(tmp_path, "casme2", size=28)
    assert isinstance(arr, MEArrays) and len(arr) == 6
    assert arr.flow.shape == (6, 3, 28, 28) and arr.flow.dtype == np.float32
    assert arr.class_names == ("happiness", "disgust", "repression", "surprise", "others")
    assert set(arr.subject) == {"casme2/sub01", "casme2/sub02", "casme2/sub03"}
    i = list(arr.sample_id).index("EP02_01f")
    assert arr.au[i, AU_NODES.index(4)] == 1 and arr.au[i, AU_NODES.index(10)] == 1 and arr.au[i].sum() == 2
    assert arr.au_known.all()
    err = capsys.readouterr().err
    assert "read 7; skipped 0; unmapped 1 (fear 1); mapped 6 into 5 classes" in err
    assert "unknown AU codes {'M57': 1}" in err


def test_flow_image_keeps_direction_of_motion(tmp_path):
    fx.casme2(tmp_path)  # every apex is the onset shifted +1.5 px in x
    arr = load_arrays(tmp_path, "casme2", size=64, verbose=False)
    inner = arr.flow[:, :, 16:48, 16:48]
    assert (inner[:, 0].mean(axis=(1, 2)) > 0.3).all()  # u positive: rightward motion
    assert (np.abs(inner[:, 1].mean(axis=(1, 2))) < 0.15).all()  # v near zero
    assert arr.flow[:, :2].min() >= -1 and arr.flow[:, :2].max() <= 1 and arr.flow[:, 2].min() >= 0


def test_second_run_with_cache_does_no_flow_work(tmp_path, flow_calls):
    data, cache = tmp_path / "d", tmp_path / "cache"
    fx.casme2(data)
    a1, r1 = load_with_report(data, "casme2", size=32, cache_dir=cache)
    assert flow_calls["n"] == 6 and r1.cache == {"hits": 0, "misses": 6, "writes": 6}
    a2, r2 = load_with_report(data, "casme2", size=32, cache_dir=cache)
    assert flow_calls["n"] == 6 and r2.cache == {"hits": 6, "misses": 0, "writes": 0}
    np.testing.assert_array_equal(a1.flow, a2.flow)
    # a moved copy still hits (content, not path, is the key); another size or method misses
    import shutil

    shutil.copytree(data, tmp_path / "moved")
    _, r3 = load_with_report(tmp_path / "moved", "casme2", size=32, cache_dir=cache)
    assert r3.cache["hits"] == 6
    _, r4 = load_with_report(data, "casme2", size=28, cache_dir=cache)
    _, r5 = load_with_report(data, "casme2", size=32, flow_method="dis", cache_dir=cache)
    assert r4.cache["misses"] == 6 and r5.cache["misses"] == 6


def test_changed_frame_bytes_miss_the_cache(tmp_path, flow_calls):
    fx.casme2(tmp_path / "d")
    load_with_report(tmp_path / "d", "casme2", size=32, cache_dir=tmp_path / "c")
    apex = tmp_path / "d" / "sub01" / "EP02_01f" / "img59.jpg"
    apex.write_bytes((tmp_path / "d" / "sub01" / "EP02_01f" / "img50.jpg").read_bytes())
    _, rep = load_with_report(tmp_path / "d", "casme2", size=32, cache_dir=tmp_path / "c")
    assert rep.cache["misses"] == 1 and flow_calls["n"] == 7


def test_corrupt_frame_raises_naming_file_or_is_skipped_with_reason(tmp_path):
    fx.casme2(tmp_path)
    (tmp_path / "sub02" / "EP06_01" / "img12.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"frame file is corrupt or not an image .* in sub02/EP06_01/img12.jpg"):
        load_arrays(tmp_path, "casme2", size=28, verbose=False)
    arr, rep = load_with_report(tmp_path, "casme2", size=28, skip_bad=True)
    assert len(arr) == 5 and [p.sample for p in rep.skipped] == ["casme2/sub02/EP06_01"]
    assert "EP06_01" not in set(arr.sample_id)


def test_haar_on_a_faceless_frame_is_a_data_error_naming_the_onset(tmp_path):
    fx.casme2(tmp_path)  # textures, no faces: every sample is reported, none vanishes
    with pytest.raises(DataError) as ei:
        load_arrays(tmp_path, "casme2", size=28, landmarks="haar", verbose=False)
    assert len(ei.value.problems) == 6
    assert (
        "landmarks (haar): no frontal face found by the Haar cascade in a 48x48 image in sub01/EP02_01f/img46.jpg"
        in str(ei.value)
    )


def test_composite_is_28_natively_and_resized_on_request(tmp_path):
    fx.composite(tmp_path)
    a = load_arrays(tmp_path, "composite", verbose=False)
    assert a.size == 28 and len(a) == 6 and not a.au_known.any()
    assert set(a.dataset) == {"casme2", "samm", "smic"} and "samm/006" in set(a.subject)
    b = load_arrays(tmp_path, "composite", size=64, verbose=False)
    assert b.size == 64 and b.flow[:, :2].min() >= -1 and b.flow[:, 2].max() <= 1


def test_unknown_flow_method_and_landmarks_list_valid_names(tmp_path):
    fx.casme2(tmp_path)
    with pytest.raises(ValueError, match="valid: farneback, dis, tvl1"):
        load_arrays(tmp_path, "casme2", flow_method="lucas")
    with pytest.raises(ValueError, match="valid: dlib, haar, template"):
        load_arrays(tmp_path, "casme2", landmarks="mediapipe")


def test_nothing_usable_is_an_error_not_an_empty_array(tmp_path):
    fx.casme2(tmp_path / "d")
    lm = tmp_path / "only_joy.csv"
    lm.write_text(
        "native,index,class,note\njoy,0,joy,\n"
        + "".join(f"{e},,,excluded\n" for e in ("happiness", "disgust", "surprise", "others", "repression", "fear"))
    )
    with pytest.raises(DataError, match=r"no usable samples .*unmapped 7"):
        load_arrays(tmp_path / "d", "casme2", label_map=lm, verbose=False)


def test_manifest_npy_flow_rows_load_and_save_round_trip(tmp_path):
    np.save(tmp_path / "f.npy", np.full((3, 16, 16), 0.5, np.float32))
    fx.write_csv(
        tmp_path / "manifest.csv",
        [["subject", "sample_id", "emotion", "flow"], ["p1", "s1", "joy", "f.npy"], ["p2", "s1", "fear", "f.npy"]],
    )
    arr = load_arrays(tmp_path, "manifest", size=16, verbose=False)
    assert list(arr.subject) == ["manifest/p1", "manifest/p2"] and arr.class_names == ("fear", "joy")
    arr.save(tmp_path / "a.npz")
    back = MEArrays.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.flow, arr.flow) and back.class_names == arr.class_names
