"""Fully connected layer: ``output = input @ weights + biases``."""

from __future__ import annotations

from .._random import as_generator
from .._typing import Array, Initializer, SeedLike
from .._validation import check_int, check_number
from ..backends import Backend
from ..errors import ShapeError
from ..initializers import get_initializer
from .base import Layer

__all__ = ["Dense"]


class Dense(Layer):
    """Affine layer ``f(X) = X @ W + b`` with the tutorial's SGD step in ``backward``.

    Parameters
    ----------
    input_units, output_units : int
        Sizes of the input and output features.
    learning_rate : float, default 0.1
        Step size of the plain SGD update done inside :meth:`backward`
        (ignored when an optimizer is attached).
    init : str or callable, default "seed"
        Weight initializer (see :mod:`xpnet.initializers`); ``"seed"`` is the
        tutorial's ``normal * 0.01``. Biases start at zero.
    rng : int, numpy.random.Generator or None
        Host random generator (or seed) the weights are drawn from, so every
        backend starts from identical weights.
    backend : str or Backend, optional
        Where the parameters live (default: :func:`xpnet.get_backend`).

    Examples
    --------
    >>> import xpnet
    >>> layer = xpnet.Dense(3, 2, rng=0, backend="numpy")
    >>> layer.weights.shape, layer.biases.shape
    ((3, 2), (2,))
    """

    param_names = ("weights", "biases")
    fresh_output = True  # backend.affine makes a new array
    fresh_input_grad = True  # grad_output @ weights.T

    def __init__(self, input_units: int, output_units: int, learning_rate: float = 0.1,
                 *, init: str | Initializer = "seed", rng: SeedLike = None,
                 backend: Backend | str | None = None) -> None:
        super().__init__(backend=backend)
        self.input_units = check_int(input_units, "input_units", low=1)
        self.output_units = check_int(output_units, "output_units", low=1)
        self.learning_rate = check_number(learning_rate, "learning_rate", low=0)
        host_w = get_initializer(init)(as_generator(rng), (input_units, output_units))
        self.weights = self.backend.asarray(host_w)  # drawn in float64, cast once
        self.biases = self.backend.zeros((output_units,))

    @classmethod
    def param_shapes(cls, config: dict) -> dict | None:
        n_in = check_int(config.get("input_units"), "input_units", low=1)
        n_out = check_int(config.get("output_units"), "output_units", low=1)
        return {"weights": (n_in, n_out), "biases": (n_out,)}

    @classmethod
    def from_config(cls, config: dict, params: dict | None = None, *,
                    backend: Backend | str | None = None) -> Layer:
        if not params:
            return super().from_config(config, backend=backend)
        weights = params["weights"]  # taken as the "initializer": nothing is drawn
        layer = cls(**config, init=lambda rng, shape: weights, backend=backend)
        layer._set_host_params({"biases": params["biases"]})
        return layer

    def _check_input(self, input: Array, name: str) -> None:
        self.backend.check_array(input, name, ndim=2)
        if input.shape[1] != self.input_units:
            raise ShapeError(
                f"{name} must have shape (n, {self.input_units}) for "
                f"Dense({self.input_units}, {self.output_units}), got {tuple(input.shape)}"
            )

    def output_shape_for(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.output_units)

    def _forward(self, input: Array) -> Array:
        return self.backend.affine(input, self.weights, self.biases)  # input @ W + b

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        # d loss / d input uses the weights *before* the update, as in the seed.
        grad_input = grad_output @ self.weights.T if need_input_grad else None
        if self.optimizer is None:  # the seed's SGD step, in place where the backend allows
            self.weights, self.biases = self.backend.dense_sgd_step_(
                self.weights, self.biases, input, grad_output, self.learning_rate)
        else:
            self._apply_update({"weights": input.T @ grad_output,
                                "biases": self.xp.sum(grad_output, axis=0)})
        return grad_input

    def get_config(self) -> dict:
        return {"input_units": self.input_units, "output_units": self.output_units,
                "learning_rate": self.learning_rate}

    def extra_repr(self) -> str:
        return f"{self.input_units}, {self.output_units}, learning_rate={self.learning_rate}"
