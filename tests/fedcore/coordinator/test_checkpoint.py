"""CheckpointStore: atomic writes, verification, fallback past corrupt files, pruning, no pickle."""

import io
import logging
import os
import struct
import zipfile

import numpy as np
import pytest

from fedcore.common.params import ParamSpec, TensorSpec
from fedcore.coordinator import checkpoint as ckmod
from fedcore.coordinator.checkpoint import Checkpoint, CheckpointError, CheckpointStore
from fedcore.strategy import make_strategy

SPEC = ParamSpec((TensorSpec("w", (2, 3)), TensorSpec("b", (3,))))


def make(round_, seed=0, stats=True):
    rng = np.random.default_rng(seed + round_)
    strategy = make_strategy("fedadam")
    strategy.apply(np.zeros(9, np.float32), rng.normal(size=9), 1)
    return Checkpoint(
        round=round_,
        params=rng.normal(size=9).astype(np.float32),
        spec=SPEC,
        strategy_state=strategy.state_dict(),
        history=[{"round": r, "loss": 1.0 / r, "clients": ["a", "b"], "uf1": None} for r in range(1, round_ + 1)],
        statistics=rng.integers(0, 50, size=4).astype(np.float64) if stats else None,
        extra={"federation_id": "fed-1", "epsilon": {"a": 1.5}},
    )


def assert_same(a: Checkpoint, b: Checkpoint):
    assert a.round == b.round
    assert b.params.dtype == np.float32
    np.testing.assert_array_equal(a.params, b.params)
    assert a.spec == b.spec
    assert a.history == b.history
    assert a.extra == b.extra
    if a.statistics is None:
        assert b.statistics is None
    else:
        np.testing.assert_array_equal(a.statistics, b.statistics)
    assert set(a.strategy_state) == set(b.strategy_state)
    for k, v in a.strategy_state.items():
        np.testing.assert_array_equal(v, b.strategy_state[k])


def test_round_trip_keeps_every_field(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    ck = make(4)
    path = store.save(ck)
    assert path.name == "round-000004.npz"
    assert (tmp_path / "ckpt" / "LATEST").read_text() == "round-000004.npz\n"
    back = store.load_latest()
    assert_same(ck, back)
    assert type(back.strategy_state["step"]) is int


def test_restored_strategy_state_continues_identically(tmp_path):
    store = CheckpointStore(tmp_path)
    a = make_strategy("fedyogi")
    x = np.zeros(9, np.float32)
    for r in (1, 2):
        x = a.apply(x, np.full(9, 0.1 * r), r)
    store.save(Checkpoint(2, x, SPEC, a.state_dict()))
    back = store.load_latest()
    b = make_strategy("fedyogi")
    b.load_state_dict(back.strategy_state)
    d = np.linspace(-1, 1, 9)
    np.testing.assert_array_equal(a.apply(back.params, d, 3), b.apply(back.params, d, 3))


def test_round_trip_without_statistics_or_state(tmp_path):
    store = CheckpointStore(tmp_path)
    ck = Checkpoint(0, np.arange(9, dtype=np.float32), SPEC)
    store.save(ck)
    assert_same(ck, store.load_latest())


def test_empty_store_loads_none(tmp_path):
    assert CheckpointStore(tmp_path / "new").load_latest() is None


def test_truncated_newest_falls_back_to_previous(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(make(1))
    newest = store.save(make(2))
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger=ckmod.__name__):
        back = store.load_latest()
    assert_same(make(1), back)
    assert "round 2" in caplog.text


def member_data_ranges(data: bytes) -> list[range]:
    """Byte ranges of each zip member's contents (npy header + array bytes)."""
    ranges = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            local = data[info.header_offset : info.header_offset + 30]
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            ranges.append(range(start, start + info.compress_size))
    return ranges


def test_every_bit_flip_of_newest_is_detected_or_harmless(tmp_path):
    """Flip one bit at every third byte across the whole file (bit = byte index mod 8): loading it raises CheckpointError (so
    load_latest falls back) or, only for a flip outside the members' contents (an unused zip field
    such as a timestamp), gives the original checkpoint; never a changed one, never another error."""
    store = CheckpointStore(tmp_path)
    store.save(make(1))
    ck = make(2)
    newest = store.save(ck)
    original = newest.read_bytes()
    contents = member_data_ranges(original)
    assert sum(len(r) for r in contents) > 0.5 * len(original)
    detected = 0
    positions = range(0, len(original), 3)
    for pos in positions:
        flipped = bytearray(original)
        flipped[pos] ^= 1 << (pos % 8)
        newest.write_bytes(bytes(flipped))
        try:
            back = store.load(2)
        except CheckpointError:
            detected += 1
            continue
        assert not any(pos in r for r in contents), f"flip at byte {pos} inside a member went unnoticed"
        assert_same(ck, back)
    assert detected >= sum(any(p in r for r in contents) for p in positions)


def test_flip_in_params_bytes_is_caught(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(make(1))
    ck = make(2)
    newest = store.save(ck)
    data = bytearray(newest.read_bytes())
    at = bytes(data).find(ck.params.tobytes())
    assert at > 0
    data[at + 5] ^= 0x01
    newest.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        store.load(2)
    assert store.load_latest().round == 1


def test_all_files_corrupt_gives_none_without_raising(tmp_path):
    store = CheckpointStore(tmp_path)
    for r in (1, 2):
        store.save(make(r)).write_bytes(b"PK\x03\x04 garbage")
    assert store.load_latest() is None


def test_stray_temp_file_from_a_crash_is_ignored_and_cleaned(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(make(1))
    partial = make(2)
    stray = tmp_path / ".round-000002.npz.0123456789ab.tmp"
    stray.write_bytes(ckmod.encode(partial)[:100])  # crashed before fsync + rename
    assert_same(make(1), store.load_latest())
    store.save(make(2))
    assert not stray.exists()
    assert_same(make(2), store.load_latest())


def test_failed_rename_leaves_previous_checkpoint_and_no_temp(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    store.save(make(1))

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(ckmod.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        store.save(make(2))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LATEST", "round-000001.npz"]
    assert_same(make(1), store.load_latest())


def test_crash_before_latest_update_uses_the_complete_newer_file(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(make(1))
    ckmod.atomic_write(store.path_for(2), ckmod.encode(make(2)))  # renamed, LATEST not yet updated
    assert (tmp_path / "LATEST").read_text() == "round-000001.npz\n"
    assert store.load_latest().round == 2


def test_pruning_keeps_the_newest_keep(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    for r in range(1, 7):
        store.save(make(r, stats=False))
    assert store.rounds() == [6, 5, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "LATEST",
        "round-000004.npz",
        "round-000005.npz",
        "round-000006.npz",
    ]
    assert (tmp_path / "LATEST").read_text() == "round-000006.npz\n"


def test_saving_after_fallback_replaces_the_corrupt_newer_files(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for r in (1, 2, 3):
        store.save(make(r))
    store.path_for(3).write_bytes(b"corrupt")
    resumed = store.load_latest()
    assert resumed.round == 2
    store.save(make(3, seed=7))
    assert store.rounds() == [3, 2]
    assert_same(make(3, seed=7), store.load_latest())


def test_loading_never_unpickles(tmp_path):
    """An npz holding a pickled object whose unpickling would create a file is refused unread."""
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    store = CheckpointStore(tmp_path / "store")
    store.save(make(1))
    arr = np.empty(1, dtype=object)
    arr[0] = Evil()
    with open(store.path_for(2), "wb") as f:
        np.savez(f, params=arr, meta=arr, sha256=arr)
    assert store.load_latest().round == 1
    assert not marker.exists()


def test_file_whose_contents_name_another_round_is_refused(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(make(1))
    store.path_for(5).write_bytes(store.path_for(1).read_bytes())
    with pytest.raises(CheckpointError, match="holds round 1, its name says 5"):
        store.load(5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (Checkpoint(1, np.zeros(8, np.float32), SPEC), r"shape \(9,\)"),
        (Checkpoint(-1, np.zeros(9, np.float32), SPEC), "non-negative integer"),
        (Checkpoint(1, np.zeros(9, np.float32), SPEC, extra={"x": object()}), "JSON"),
        (Checkpoint(1, np.zeros(9, np.float32), SPEC, strategy_state={"m": "text"}), "strategy state 'm'"),
    ],
)
def test_save_refuses_bad_fields_and_writes_nothing(tmp_path, bad, match):
    store = CheckpointStore(tmp_path)
    with pytest.raises(ValueError, match=match):
        store.save(bad)
    assert os.listdir(tmp_path) == []


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep must be an integer >= 1"):
        CheckpointStore(tmp_path, keep=0)
