"""Micro-expression models: DPK-GAT (FED-PsyAU), the flow-cnn and STSTNet references, behind one registry."""

from mer.model.dpkgat import DPKGAT, PRIORS, DPKGATConfig
from mer.model.flow_cnn import FlowCNN, FlowCNNConfig
from mer.model.io import load_model, save_model
from mer.model.layers import DPKGATLayer
from mer.model.loss import LossWeights, balanced_class_weight, loss_weights_for, mer_loss, per_sample_loss
from mer.model.registry import MODELS, TRAIN_DEFAULTS, build_config, build_model, model_options, train_defaults
from mer.model.ststnet import STSTNet, STSTNetConfig

__all__ = [
    "DPKGAT",
    "MODELS",
    "PRIORS",
    "TRAIN_DEFAULTS",
    "DPKGATConfig",
    "DPKGATLayer",
    "FlowCNN",
    "FlowCNNConfig",
    "LossWeights",
    "STSTNet",
    "STSTNetConfig",
    "balanced_class_weight",
    "build_config",
    "build_model",
    "load_model",
    "loss_weights_for",
    "mer_loss",
    "model_options",
    "per_sample_loss",
    "save_model",
    "train_defaults",
]
