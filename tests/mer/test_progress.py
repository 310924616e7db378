"""Long commands report each finished step: a line with an ETA off a terminal, a bar on one."""

from __future__ import annotations

import re

from mer.progress import StepProgress, duration


def test_lines_with_an_eta_when_the_output_is_not_a_terminal(capsys):
    p = StepProgress(3, "bench", "run", bar=False)
    for i in range(3):
        p.done(f"[{i + 1}/3] run {i}")
    p.close()
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == 3 and all(re.search(r", ETA \d+m\d\ds$", line) for line in lines[:2])
    assert re.search(r"\[3/3\] run 2, done in \d+m\d\ds$", lines[2])
    assert out.err == ""  # no bar in a log file


def test_a_bar_and_the_same_lines_on_a_terminal(capsys):
    p = StepProgress(2, "bench", "run", bar=True)
    p.done("[1/2] first")
    p.close()
    out = capsys.readouterr()
    assert out.out == "" and "[1/2] first, ETA" in out.err and "bench" in out.err


def test_durations_read_as_minutes_or_hours():
    assert (duration(5), duration(125), duration(3 * 3600 + 7 * 60)) == ("0m05s", "2m05s", "3h07m")


def test_train_lines_per_fold_are_the_same_shape():
    """``train``'s LOSO lines (mer.train.loso) end with an ETA too: one shared format."""
    import inspect

    from mer.train import loso

    assert "ETA {_duration(eta)}" in inspect.getsource(loso.run_folds)
