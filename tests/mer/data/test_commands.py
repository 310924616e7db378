"""`fedpsyau data synth` and `fedpsyau data inspect` through their argparse registration."""

from __future__ import annotations

import argparse
import json

import me_fixtures as fx

from mer.data.commands import register


def run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="fedpsyau")
    register(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    return args.func(args)


def test_synth_then_inspect_reports_the_same_counts(tmp_path, capsys):
    assert run(["data", "synth", "--out", str(tmp_path / "d"), "--subjects", "2", "--seed", "5", "--samples", "6"]) == 0
    out = capsys.readouterr().out
    assert "wrote 6 samples of 2 subjects" in out
    assert run(["data", "inspect", "--data", str(tmp_path / "d"), "--format", "casme2", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["read"] == rep["usable"] == 6 and sum(rep["per_class"].values()) == 6
    assert set(rep["per_subject"]) == {"casme2/sub01", "casme2/sub02"} and rep["skipped"] == []


def test_inspect_lists_skipped_samples_with_reasons(tmp_path, capsys):
    fx.casme2(tmp_path)
    (tmp_path / "sub01" / "EP02_01f" / "img46.jpg").write_bytes(b"junk")
    assert run(["data", "inspect", "--data", str(tmp_path), "--format", "casme2"]) == 0
    out = capsys.readouterr().out
    assert "read 7, usable 5, skipped 1, unmapped 1" in out
    assert "casme2/sub01/EP02_01f: frame file is corrupt or not an image (4 bytes) in " in out
    assert "excluded by the label map: fear 1" in out and "unknown AU codes: 'M57' x1" in out


def test_inspect_of_missing_folder_exits_1_with_message(tmp_path, capsys):
    assert run(["data", "inspect", "--data", str(tmp_path / "nope"), "--format", "samm"]) == 1
    assert "data folder not found" in capsys.readouterr().err


def test_synth_into_non_empty_folder_exits_1(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    assert run(["data", "synth", "--out", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
