"""Micro-expression models: DPK-GAT (FED-PsyAU) and the flow-cnn reference, behind one registry."""

from mer.model.dpkgat import DPKGAT, PRIORS, DPKGATConfig
from mer.model.flow_cnn import FlowCNN, FlowCNNConfig
from mer.model.io import load_model, save_model
from mer.model.layers import DPKGATLayer
from mer.model.loss import LossWeights, balanced_class_weight, mer_loss, per_sample_loss
from mer.model.registry import MODELS, build_config, build_model, model_options

__all__ = [
    "DPKGAT",
    "MODELS",
    "PRIORS",
    "DPKGATConfig",
    "DPKGATLayer",
    "FlowCNN",
    "FlowCNNConfig",
    "LossWeights",
    "balanced_class_weight",
    "build_config",
    "build_model",
    "load_model",
    "mer_loss",
    "model_options",
    "per_sample_loss",
    "save_model",
]
