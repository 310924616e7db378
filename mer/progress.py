"""Progress for long commands: a tqdm bar on a terminal, one line per step with an ETA otherwise.

``train`` (per LOSO fold, :mod:`mer.train.loso`) and ``bench`` (per training run) follow the same
rule: when stderr is a terminal a bar; when it is not (a log file, CI, ``nohup``), one line per
finished step on stdout with the elapsed time and an ETA, so a 68-fold run is never silent.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def duration(seconds: float) -> str:
    """``4m05s`` / ``1h07m``."""
    m, s = divmod(round(max(0.0, seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


class StepProgress:
    """``total`` steps; :meth:`done` after each with the line to show (the ETA is appended)."""

    def __init__(self, total: int, desc: str, unit: str, bar: bool | None = None):
        self.total, self.count, self.started = total, 0, time.perf_counter()
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=sys.stderr,
            disable=not (sys.stderr.isatty() if bar is None else bar),
        )

    def eta(self) -> float:
        elapsed = time.perf_counter() - self.started
        return elapsed / max(1, self.count) * (self.total - self.count)

    def done(self, line: str) -> str:
        self.count += 1
        text = (
            f"{line}, ETA {duration(self.eta())}"
            if self.count < self.total
            else f"{line}, done in {duration(time.perf_counter() - self.started)}"
        )
        if self.bar.disable:
            print(text, flush=True)
        else:
            self.bar.write(text, file=sys.stderr)
            self.bar.update(1)
        return text

    def close(self) -> None:
        self.bar.close()
