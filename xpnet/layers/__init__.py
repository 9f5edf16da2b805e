"""Layers: each is small and shows its math."""

from .activations import LeakyReLU, Sigmoid, Softmax, Tanh
from .base import Layer
from .dense import Dense
from .dropout import Dropout
from .relu import ReLU
from .reshape import Flatten

__all__ = [
    "Layer",
    "Dense",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "Softmax",
    "Dropout",
    "Flatten",
]
