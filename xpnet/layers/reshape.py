"""Shape-only layers: Flatten."""

from __future__ import annotations

import math

from .._typing import Array
from ..errors import ShapeError
from .base import Layer

__all__ = ["Flatten"]


class Flatten(Layer):
    """Reshape ``(n, d1, d2, ...)`` to ``(n, d1 * d2 * ...)``; backward reshapes back.

    Put it first to feed images of shape ``(n, 28, 28)`` to a ``Dense`` layer.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> flat = xpnet.layers.Flatten(backend=be)
    >>> x = be.zeros((5, 2, 3))
    >>> flat.forward(x).shape
    (5, 6)
    >>> flat.backward(x, be.zeros((5, 6))).shape
    (5, 2, 3)
    """

    def _check_input(self, input: Array, name: str) -> None:
        self.backend.check_array(input, name)
        if input.ndim < 2:
            raise ShapeError(
                f"{name} must have a batch axis and at least one feature axis for "
                f"Flatten, got shape {tuple(input.shape)}"
            )

    def output_shape_for(self, input_shape: tuple) -> tuple:
        return (input_shape[0], math.prod(input_shape[1:]))

    def _forward(self, input: Array) -> Array:
        n, features = self.output_shape_for(tuple(input.shape))
        # The standard lets a shape entry be None (unknown until run time, as for a
        # traced graph's batch axis, see xpnet.export); reshape then infers it (-1).
        return self.xp.reshape(input, (-1 if n is None else n, features))

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        return self.xp.reshape(grad_output, tuple(input.shape))

    def backward(self, input: Array, grad_output: Array) -> Array:
        """Return ``grad_output`` reshaped to ``input``'s shape (validated).

        Overrides :meth:`Layer.backward`, whose check assumes the output has as
        many axes as the input.
        """
        self._check_input(input, "input")
        want = self.output_shape_for(tuple(input.shape))
        self.backend.check_array(grad_output, "grad_output", ndim=2)
        if tuple(grad_output.shape) != want:
            raise ShapeError(
                f"grad_output must have the layer output's shape {want}, "
                f"got {tuple(grad_output.shape)}"
            )
        return self._backward(input, grad_output, True)
