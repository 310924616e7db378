"""Typed errors and the skip log for bad input.

Every problem names the file and, for sheets, the row: ``DataError("expected a 28x28x3 flow
image (got 32x32x1)", file="flows/sub01_EP02.png")`` reads "expected a 28x28x3 flow image (got
32x32x1) in flows/sub01_EP02.png". Readers and the loader collect problems in a
:class:`ProblemLog`: with ``skip_bad=False`` all of them are raised together at the end of a
stage (one :class:`DataError` listing each), with ``skip_bad=True`` each bad sample is skipped
and recorded with its reason. Nothing is dropped without a record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DataError(ValueError):
    """Bad input data: a missing or corrupt file, an unreadable sheet, an unknown label."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        sample: str | None = None,
        problems: list[Problem] | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.sample = sample
        self.problems = problems or []
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        text = self.message + (f" in {', '.join(where)}" if where else "")
        if self.sample:
            text += f" (sample {self.sample})"
        return text


@dataclass(frozen=True)
class Problem:
    """One skipped (or fatal) sample: where it came from and why it is bad."""

    sample: str  # "dataset/subject/sample_id" where known, else ""
    reason: str  # the rendered DataError message

    def __str__(self) -> str:
        return f"{self.sample}: {self.reason}" if self.sample else self.reason


@dataclass
class ProblemLog:
    """Collects problems; :meth:`raise_if_any` raises them all unless skipping is on."""

    skip_bad: bool = False
    problems: list[Problem] = field(default_factory=list)

    def add(self, err: DataError, sample: str = "") -> None:
        self.problems.append(Problem(sample or (err.sample or ""), str(err)))

    def raise_if_any(self, stage: str) -> None:
        if self.skip_bad or not self.problems:
            return
        shown = "\n".join(f"  - {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        raise DataError(
            f"{len(self.problems)} bad sample(s) while {stage} (pass skip_bad=True / --skip-bad to "
            f"skip them with a report):\n{shown}{more}",
            problems=list(self.problems),
        )
