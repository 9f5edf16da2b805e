"""Elementwise and softmax activations: Sigmoid, Tanh, LeakyReLU, Softmax.

Each layer recomputes what its backward pass needs from ``input`` (as
:class:`~xpnet.layers.ReLU` does), so ``backward(input, grad_output)`` depends
on its arguments only, never on the last ``forward`` call.
"""

from __future__ import annotations

from .._typing import Array
from .._validation import check_number
from ..backends import Backend
from ..errors import ShapeError
from .base import Layer

__all__ = ["Sigmoid", "Tanh", "LeakyReLU", "Softmax"]


class Sigmoid(Layer):
    """Logistic function ``f(x) = 1 / (1 + exp(-x))``; ``f'(x) = f(x) (1 - f(x))``.

    Computed from ``e = exp(-|x|)`` as ``1 / (1 + e)`` for ``x >= 0`` and
    ``e / (1 + e)`` for ``x < 0``, so no ``exp`` overflows and small outputs
    keep their relative precision.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> xpnet.layers.Sigmoid(backend=be).forward(be.asarray([[-1000.0, 0.0, 2.0]]))
    array([[0.        , 0.5       , 0.88079708]])
    """

    def _sigmoid(self, x: Array) -> Array:
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        inv = 1.0 / (1.0 + e)
        return xp.where(x >= 0, inv, e * inv)

    def _forward(self, input: Array) -> Array:
        return self._sigmoid(input)

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        s = self._sigmoid(input)
        return grad_output * (s * (1.0 - s))


class Tanh(Layer):
    """Hyperbolic tangent ``f(x) = tanh(x)``; ``f'(x) = 1 - tanh(x)^2``.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> xpnet.layers.Tanh(backend=be).forward(be.asarray([[0.0, 1.0]]))
    array([[0.        , 0.76159416]])
    """

    def _forward(self, input: Array) -> Array:
        return self.xp.tanh(input)

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        t = self.xp.tanh(input)
        return grad_output * (1.0 - t * t)


class LeakyReLU(Layer):
    """``f(x) = x`` for ``x > 0`` and ``negative_slope * x`` otherwise.

    Parameters
    ----------
    negative_slope : float, default 0.01
        Slope for ``x <= 0`` (the gradient at exactly 0 is ``negative_slope``,
        matching :class:`~xpnet.layers.ReLU`'s convention of 0 there).
    backend : str or Backend, optional

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> xpnet.layers.LeakyReLU(0.1, backend=be).forward(be.asarray([[-2.0, 3.0]]))
    array([[-0.2,  3. ]])
    """

    def __init__(self, negative_slope: float = 0.01, *, backend: Backend | str | None = None) -> None:
        super().__init__(backend=backend)
        self.negative_slope = check_number(negative_slope, "negative_slope")

    def _forward(self, input: Array) -> Array:
        return self.xp.where(input > 0, input, input * self.negative_slope)

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        return self.xp.where(input > 0, grad_output, grad_output * self.negative_slope)

    def get_config(self) -> dict:
        return {"negative_slope": self.negative_slope}


class Softmax(Layer):
    """Softmax over the last axis: ``f(z)_j = exp(z_j) / sum_k exp(z_k)``.

    Forward subtracts the row maximum first, so large logits do not overflow.
    Backward is the Jacobian-vector product ``s * (g - sum(g * s))`` with
    ``s = softmax(z)``.

    As the **output layer** of a classifier it turns logits into
    probabilities (``predict``'s argmax is unchanged). xpnet's loss is the softmax
    cross-entropy *from logits*; a final ``Softmax`` sets
    :attr:`fused_with_loss`, which tells the training loop to feed the loss
    with this layer's input and skip its backward: the cross-entropy of the
    probabilities and its gradient ``(softmax(z) - onehot) / n`` then come out
    exactly, without computing ``log`` of a rounded probability.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> xpnet.layers.Softmax(backend=be).forward(be.asarray([[1000.0, 1000.0, -1000.0]]))
    array([[0.5, 0.5, 0. ]])
    """

    #: A final Softmax is fused with the softmax cross-entropy loss (see above).
    fused_with_loss = True

    def _check_input(self, input: Array, name: str) -> None:
        self.backend.check_array(input, name)
        if input.ndim < 1:
            raise ShapeError(f"{name} must have at least one axis for Softmax, got a 0-d array")

    def _forward(self, input: Array) -> Array:
        xp = self.xp
        e = xp.exp(input - xp.max(input, axis=-1, keepdims=True))
        return e / xp.sum(e, axis=-1, keepdims=True)

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        s = self._forward(input)
        gs = grad_output * s
        return gs - s * self.xp.sum(gs, axis=-1, keepdims=True)
