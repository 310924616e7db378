"""The contract between the data side (readers + flow) and the model side (training, federation).

:class:`MEArrays` holds one data set as flow images plus labels, ready for a model. Everything is
a plain numpy array so it can be saved with ``np.savez`` and loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from mer.face.regions import AU_NODES


@dataclass
class MEArrays:
    flow: np.ndarray  # (N, 3, S, S) float32: horizontal flow u, vertical flow v, optical strain
    label: np.ndarray  # (N,) int64: mapped class index into class_names
    au: np.ndarray  # (N, 12) float32: multi-hot AU labels in AU_NODES order
    au_known: np.ndarray  # (N,) bool: False where the data set has no AU coding (SMIC)
    subject: np.ndarray  # (N,) str: "dataset/subject", unique across data sets
    dataset: np.ndarray  # (N,) str
    sample_id: np.ndarray  # (N,) str
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.label)
        problems = []
        if self.flow.ndim != 4 or self.flow.shape[1] != 3 or self.flow.shape[2] != self.flow.shape[3]:
            problems.append(f"flow must be (N, 3, S, S) (got {self.flow.shape})")
        if self.au.shape != (n, len(AU_NODES)):
            problems.append(f"au must be ({n}, {len(AU_NODES)}) (got {self.au.shape})")
        for name in ("flow", "au_known", "subject", "dataset", "sample_id"):
            if len(getattr(self, name)) != n:
                problems.append(f"{name} has {len(getattr(self, name))} rows, label has {n}")
        if n and (self.label.min() < 0 or self.label.max() >= len(self.class_names)):
            problems.append(
                f"labels must lie in [0, {len(self.class_names)}) (got {self.label.min()}..{self.label.max()})"
            )
        if problems:
            raise ValueError("invalid MEArrays: " + "; ".join(problems))

    def __len__(self) -> int:
        return len(self.label)

    @property
    def size(self) -> int:
        """Side S of the flow images."""
        return int(self.flow.shape[-1])

    def subset(self, index: np.ndarray) -> MEArrays:
        index = np.asarray(index)
        kw = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "class_names"}
        return MEArrays(class_names=self.class_names, **kw)

    def save(self, path: str | Path) -> None:
        kw = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        kw = {k: (v.astype(str) if v.dtype == object else v) for k, v in kw.items()}
        np.savez(path, **kw)

    @classmethod
    def load(cls, path: str | Path) -> MEArrays:
        with np.load(path, allow_pickle=False) as z:
            kw = {f.name: z[f.name] for f in fields(cls)}
        kw["class_names"] = tuple(str(c) for c in kw["class_names"])
        return cls(**kw)
