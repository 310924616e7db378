"""Coding-sheet reading: header search, aliases, cell text."""

from __future__ import annotations

import me_fixtures as fx
import pytest

from mer.data.errors import DataError
from mer.data.sheets import read_sheet


def test_header_found_after_title_block_and_aliases_matched(tmp_path):
    p = tmp_path / "s.xlsx"
    fx.write_xlsx(
        p,
        [
            ["Subject", "File name", "Onset Frame", "apex_frame", "Estimated Emotion"],
            [6, "x", 10.0, 12, "Anger"],
            [None, None, None, None, None],
        ],
        title_rows=[["title"], [], ["notes"]],
    )
    sh = read_sheet(p, ("subject", "filename", "onset", "apex", "emotion"))
    assert sh.header_row == 4
    assert sh.rows == [(5, {"subject": "6", "filename": "x", "onset": "10", "apex": "12", "emotion": "Anger"})]


def test_semicolon_csv_is_sniffed(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("Subject;Filename;OnsetFrame;ApexFrame;Estimated Emotion\n01;EP01;1;3;others\n")
    sh = read_sheet(p, ("subject", "filename", "onset", "apex", "emotion"))
    assert sh.rows[0][1]["filename"] == "EP01"


def test_binary_file_posing_as_csv_is_rejected(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes(b"\x00\x01\x02garbage")
    with pytest.raises(DataError, match="NUL bytes"):
        read_sheet(p, ("subject",))


def test_unsupported_sheet_type_named(tmp_path):
    p = tmp_path / "s.xls"
    p.write_bytes(b"old excel")
    with pytest.raises(DataError, match=r"unsupported coding sheet type '.xls' \(expected .xlsx or .csv\)"):
        read_sheet(p, ("subject",))
