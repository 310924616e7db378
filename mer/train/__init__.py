"""Centralised MER training and subject-independent evaluation (LOSO, UF1/UAR)."""

from mer.train.centralised import TrainConfig, predict, resolve_device, train_model
from mer.train.loso import EvalResult, run_holdout, run_loso
from mer.train.metrics import accuracy, confusion_matrix, summarize, uar, uf1
from mer.train.splits import Fold, holdout_split, inner_validation, loso_folds

__all__ = [
    "EvalResult",
    "Fold",
    "TrainConfig",
    "accuracy",
    "confusion_matrix",
    "holdout_split",
    "inner_validation",
    "loso_folds",
    "predict",
    "resolve_device",
    "run_holdout",
    "run_loso",
    "summarize",
    "train_model",
    "uar",
    "uf1",
]
