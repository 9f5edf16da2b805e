"""Rectified linear unit: ``f(x) = max(0, x)``."""

from __future__ import annotations

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

    def _forward(self, input):
        return self.xp.maximum(input, 0.0)

    def _backward(self, input, grad_output, need_input_grad=True):
        return self.xp.where(input > 0, grad_output, 0.0)
