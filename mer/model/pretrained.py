"""Pre-trained checkpoints: write, verify and apply them, and choose which parameters train.

A checkpoint is a folder with two files, never a pickle:

- ``weights.npz``: raw float32 arrays, one per parameter of the model *except its emotion
  classifier* (whose shape depends on the number of classes of the task), written with
  ``allow_pickle=False`` and read back with ``np.load(..., allow_pickle=False)``;
- ``manifest.json``: ``format``, the model name and its config (without ``num_classes``), the
  corpus recipe and seed that made it, the SHA-256 of ``weights.npz``, the pre-training figures.

:func:`apply_init` loads one into a freshly built model. It refuses -- naming what differs -- a
checkpoint of another model, of another config (``prior``, ``dim``...), with a missing or
misshapen parameter, or whose weights do not match the manifest's SHA-256. The classifier is
always the model's own fresh initialisation: it is trained on the task's data.

``init`` values (``--init`` on ``train``, ``simulate`` and the client workload):
``pretrained`` (the checkpoint that ships in the package, :data:`PACKAGED`), ``none`` (train from
scratch) or a path to a checkpoint folder made by ``fedpsyau pretrain``.

:func:`set_trainable` freezes all but one group of parameters (``--dp-trainable``):
``all``; ``graph`` (the DPK-GAT layers, the AU heads and the dual-stream head: everything after
the regional stage); ``head`` (the emotion classifier only). Frozen parameters have
``requires_grad = False``, so Opacus computes no per-sample gradient for them, adds no noise to
them and they cost no privacy; in a federation they are not even sent (see
:func:`trainable_names`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "fedpsyau-pretrained/v1"
MANIFEST, WEIGHTS = "manifest.json", "weights.npz"
#: parameters that belong to the task, never to a checkpoint (their shape depends on the classes)
TASK_PARAMETERS = ("classifier.",)
INITS = ("pretrained", "none")  # or a folder path
TRAINABLE = ("all", "graph", "head")
#: config fields that only say where patches are cut on the crop, not what the weights are: a
#: checkpoint serves every crop geometry (the patches sit on the same facial points, mapped)
GEOMETRY_FIELDS = ("face_crop",)
#: module prefixes of each trainable group, per model ("all" needs no entry)
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "dpk-gat": {
        "graph": ("upper.", "lower.", "coordinated.", "au_head.", "au_stream.", "flow1.", "flow2.", "classifier."),
        "head": ("classifier.",),
    },
    "flow-cnn": {"head": ("classifier.",)},
    "ststnet": {"head": ("classifier.", "fc.")},
}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or made for another model or config."""


def packaged_checkpoint() -> Path:
    """The folder of the checkpoint that ships inside the package (DPK-GAT, default config)."""
    return Path(str(resources.files("mer").joinpath("checkpoints", "dpk-gat-au")))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _config_dict(model: nn.Module) -> dict[str, Any]:
    cfg = asdict(model.config)
    cfg.pop("num_classes", None)
    return json.loads(json.dumps(cfg))  # tuples -> lists, as the manifest stores them


def _model_name(model: nn.Module) -> str:
    from mer.model.registry import MODELS

    for name, (cls, _) in MODELS.items():
        if type(model) is cls:
            return name
    raise CheckpointError(f"{type(model).__name__} is not a registered model")


def save_checkpoint(
    model: nn.Module, directory: str | Path, recipe: dict[str, Any], figures: dict[str, Any] | None = None
) -> Path:
    """Write ``model``'s parameters (classifier excluded) and the manifest into ``directory``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        n: p.detach().cpu().numpy().astype(np.float32)
        for n, p in model.named_parameters()
        if not n.startswith(TASK_PARAMETERS)
    }
    tmp = out / (WEIGHTS + ".tmp.npz")
    np.savez(tmp, allow_pickle=False, **arrays)
    tmp.replace(out / WEIGHTS)
    doc = {
        "format": FORMAT,
        "model": _model_name(model),
        "config": _config_dict(model),
        "parameters": len(arrays),
        "values": int(sum(a.size for a in arrays.values())),
        "weights_sha256": file_sha256(out / WEIGHTS),
        "recipe": recipe,
        "figures": figures or {},
    }
    (out / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
    return out


def read_checkpoint(directory: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and the verified arrays of a checkpoint folder."""
    d = Path(directory)
    if not (d / MANIFEST).is_file() or not (d / WEIGHTS).is_file():
        raise CheckpointError(
            f"{d} is not a pre-trained checkpoint: expected {MANIFEST} and {WEIGHTS} "
            f"(make one with `fedpsyau pretrain --out DIR`)"
        )
    try:
        doc = json.loads((d / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{d / MANIFEST}: not readable JSON ({exc})") from None
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{d / MANIFEST}: expected format {FORMAT!r} (got {doc.get('format')!r})")
    digest = file_sha256(d / WEIGHTS)
    if digest != doc.get("weights_sha256"):
        raise CheckpointError(
            f"{d / WEIGHTS}: SHA-256 {digest[:16]}... does not match the manifest's "
            f"{str(doc.get('weights_sha256'))[:16]}...: the checkpoint is corrupt or was altered"
        )
    with np.load(d / WEIGHTS, allow_pickle=False) as z:
        arrays = {k: np.array(z[k]) for k in z.files}
    return doc, arrays


def resolve_init(init: str | Path) -> Path | None:
    """``none`` -> None; ``pretrained`` -> the packaged checkpoint; anything else -> that folder."""
    text = str(init)
    if text == "none":
        return None
    if text == "pretrained":
        return packaged_checkpoint()
    return Path(text).expanduser()


def check_compatible(model: nn.Module, doc: dict[str, Any], arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise :class:`CheckpointError` naming every parameter or config field that differs."""
    name = _model_name(model)
    if doc.get("model") != name:
        raise CheckpointError(f"{where} is a checkpoint of model {doc.get('model')!r}, not {name!r}")
    mine = {k: v for k, v in _config_dict(model).items() if k not in GEOMETRY_FIELDS}
    theirs = {k: v for k, v in doc.get("config", {}).items() if k not in GEOMETRY_FIELDS}
    differ = [
        f"{k}: checkpoint {theirs.get(k)!r}, model {mine.get(k)!r}"
        for k in sorted(set(mine) | set(theirs))
        if mine.get(k) != theirs.get(k)
    ]
    expected = {n: tuple(p.shape) for n, p in model.named_parameters() if not n.startswith(TASK_PARAMETERS)}
    differ += [f"parameter {n}: missing from the checkpoint" for n in expected if n not in arrays]
    differ += [f"parameter {n}: not in the model" for n in arrays if n not in expected]
    differ += [
        f"parameter {n}: checkpoint shape {arrays[n].shape}, model {s}"
        for n, s in expected.items()
        if n in arrays and tuple(arrays[n].shape) != s
    ]
    if differ:
        raise CheckpointError(f"{where} does not fit this {name} model: " + "; ".join(differ))


def apply_init(model: nn.Module, init: str | Path) -> dict[str, Any] | None:
    """Load checkpoint ``init`` into ``model`` in place; returns its manifest (None for ``none``)."""
    path = resolve_init(init)
    if path is None:
        return None
    doc, arrays = read_checkpoint(path)
    check_compatible(model, doc, arrays, str(path))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in arrays:
                p.copy_(torch.from_numpy(arrays[n]).to(p.dtype))
    return doc


def trainable_names(model_name: str, model: nn.Module, trainable: str) -> list[str]:
    """Names of the parameters group ``trainable`` trains, in ``named_parameters`` order."""
    if trainable not in TRAINABLE:
        raise ValueError(f"dp_trainable must be one of {', '.join(TRAINABLE)} (got {trainable!r})")
    names = [n for n, _ in model.named_parameters()]
    if trainable == "all":
        return names
    groups = GROUPS.get(model_name, {})
    if trainable not in groups:
        allowed = ["all", *groups]
        raise ValueError(
            f"dp_trainable {trainable!r} is not defined for model {model_name!r} (allowed: {', '.join(allowed)})"
        )
    return [n for n in names if n.startswith(groups[trainable])]


def set_trainable(model_name: str, model: nn.Module, trainable: str) -> list[str]:
    """Freeze every parameter outside group ``trainable``; returns the trainable names."""
    keep = set(trainable_names(model_name, model, trainable))
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return [n for n, _ in model.named_parameters() if n in keep]
