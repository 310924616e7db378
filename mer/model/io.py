"""Save and load a trained model without pickle: a JSON description plus raw arrays.

``DIR/model.json`` holds the model name, its config and free metadata (class names, input size,
training config); ``DIR/weights.npz`` holds every state-dict tensor (parameters and buffers:
graphs, priors, r) as a plain numpy array, written with ``allow_pickle=False``. Loading rebuilds
the model from the registry and reads the arrays back with ``np.load(..., allow_pickle=False)``;
``torch.load`` is never used, so a model folder from elsewhere cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mer.model.registry import build_model

FORMAT = "fedpsyau-model/v1"
CONFIG_FILE, WEIGHTS_FILE = "model.json", "weights.npz"


def save_model(model: nn.Module, directory: str | Path, name: str, meta: dict | None = None) -> Path:
    """Write ``model`` (built by ``build_model(name, ...)``) into ``directory``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    np.savez(out / WEIGHTS_FILE, allow_pickle=False, **arrays)
    doc = {"format": FORMAT, "model": name, "config": asdict(model.config), "meta": meta or {}}
    (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2))
    return out


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a saved model in eval mode; returns ``(model, meta)``."""
    d = Path(directory)
    if not (d / CONFIG_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{d} is not a saved model: expected {CONFIG_FILE} and {WEIGHTS_FILE}")
    doc = json.loads((d / CONFIG_FILE).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{d / CONFIG_FILE}: expected format {FORMAT!r} (got {doc.get('format')!r})")
    config = dict(doc["config"])
    model = build_model(doc["model"], config.pop("num_classes"), **config)
    expected = model.state_dict()
    with np.load(d / WEIGHTS_FILE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    problems = [f"missing {k}" for k in expected if k not in arrays]
    problems += [f"unexpected {k}" for k in arrays if k not in expected]
    problems += [
        f"{k}: expected shape {tuple(v.shape)} (got {arrays[k].shape})"
        for k, v in expected.items()
        if k in arrays and tuple(v.shape) != arrays[k].shape
    ]
    if problems:
        raise ValueError(f"{d / WEIGHTS_FILE} does not match model {doc['model']!r}: " + "; ".join(problems))
    model.load_state_dict({k: torch.from_numpy(np.array(arrays[k])) for k in expected}, strict=True)
    return model.to(device).eval(), doc.get("meta", {})
