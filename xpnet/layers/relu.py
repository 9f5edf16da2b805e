"""Rectified linear unit: ``f(x) = max(0, x)``."""

from __future__ import annotations

from .._typing import Array
from .base import Layer

__all__ = ["ReLU"]


class ReLU(Layer):
    """Elementwise ``max(0, x)``; its gradient passes where ``x > 0``.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy")
    >>> xpnet.ReLU(backend=be).forward(be.asarray([[-1.0, 2.0]]))
    array([[0., 2.]], dtype=float32)
    """

    def _forward(self, input: Array) -> Array:
        return self.backend.relu(input)  # xp.maximum(input, 0.0), or the library's own

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        # grad * (x > 0); the portable version casts the mask (the standard forbids
        # bool * float), which is twice as fast as xp.where(mask, grad, 0.0) on NumPy.
        return self.backend.relu_backward(input, grad_output)

    def _forward_(self, input: Array) -> Array:
        # In place on an intermediate the training step owns (NumPy); _backward's mask is
        # unchanged, since max(x, 0) > 0 exactly where x > 0.
        return self.backend.relu_(input)

    def _backward_(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        return self.backend.relu_backward_(input, grad_output)
