"""Layers: each is small and shows its math."""

from .base import Layer
from .dense import Dense
from .relu import ReLU

__all__ = ["Layer", "Dense", "ReLU"]
