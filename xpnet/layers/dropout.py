"""Inverted dropout with a host-drawn, backend-independent mask."""

from __future__ import annotations

from .._random import as_generator, dropout_keep_mask
from .._typing import Array, SeedLike
from .._validation import check_number
from ..backends import Backend
from ..errors import ShapeError, StateError
from .base import Layer

__all__ = ["Dropout"]


class Dropout(Layer):
    """Zero each activation with probability ``rate`` during training.

    Kept activations are scaled by ``1 / (1 - rate)`` ("inverted" dropout), so
    the layer is the identity at inference: :meth:`Sequential.predict
    <xpnet.Sequential.predict>` and ``evaluate`` skip it
    (``identity_in_eval = True``), and :meth:`eval` makes :meth:`forward` the
    identity too.

    The keep-mask is drawn on the host from a NumPy ``Generator`` seeded with
    ``rng`` (one draw per training-mode forward call) and uploaded once per
    step, so the same seed gives the same masks -- and the same training run --
    on every backend and device. :meth:`backward` reuses the mask of the last
    :meth:`forward`.

    Parameters
    ----------
    rate : float, default 0.5
        Probability of dropping a unit, in ``[0, 1)``.
    rng : int, numpy.random.Generator or None
        Seed of the mask generator. ``None`` seeds from the operating system
        (masks then differ between runs and backends); pass an int for
        reproducible masks. Give each Dropout layer its own seed.
    backend : str or Backend, optional

    Attributes
    ----------
    training : bool
        ``True`` (the default): forward draws a new mask. ``False``: identity.

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> drop = xpnet.layers.Dropout(0.5, rng=0, backend=be)
    >>> x = be.asarray([[1.0, 2.0, 3.0, 4.0]])
    >>> drop.forward(x)
    array([[2., 0., 0., 0.]])
    >>> drop.backward(x, be.asarray([[1.0, 1.0, 1.0, 1.0]]))
    array([[2., 0., 0., 0.]])
    >>> drop.eval().forward(x)
    array([[1., 2., 3., 4.]])
    """

    identity_in_eval = True
    #: The mask is a host draw per step: a compiled (traced) step would freeze it.
    compilable = False

    def __init__(self, rate: float = 0.5, *, rng: SeedLike = None,
                 backend: Backend | str | None = None) -> None:
        super().__init__(backend=backend)
        self.rate = check_number(rate, "rate", low=0.0, high=1.0, high_open=True,
                                 expected="a number in [0, 1)")
        self._seed = int(rng) if isinstance(rng, int) and not isinstance(rng, bool) else None
        self._rng = as_generator(rng)
        self._scale = 1.0 / (1.0 - self.rate)
        self._mask = None
        self.training = True

    # -- mode -------------------------------------------------------------------
    def train(self, mode: bool = True) -> Dropout:
        """Set training mode (``mode=True``) or evaluation mode; returns ``self``."""
        self.training = bool(mode)
        if not self.training:
            self._mask = None
        return self

    def eval(self) -> Dropout:
        """Evaluation mode: forward and backward are the identity; returns ``self``."""
        return self.train(False)

    def _active(self) -> bool:
        return self.training and self.rate > 0.0

    # -- math --------------------------------------------------------------------
    def _forward(self, input: Array) -> Array:
        if not self._active():
            return input
        keep = dropout_keep_mask(self._rng, tuple(input.shape), self.rate)
        self._mask = self.backend.asarray(keep, dtype=self.xp.bool)
        return self.xp.where(self._mask, input * self._scale, 0.0)

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool = True) -> Array:
        if not self._active():
            return grad_output
        mask = self._mask
        if mask is None:
            raise StateError(
                "Dropout.backward needs the mask of a preceding forward call in training "
                "mode; call forward(input) first (or eval() for the identity)"
            )
        if tuple(mask.shape) != tuple(input.shape):
            raise ShapeError(
                f"Dropout.backward got input of shape {tuple(input.shape)} but the last "
                f"forward call had shape {tuple(mask.shape)}; call forward on this batch first"
            )
        return self.xp.where(mask, grad_output * self._scale, 0.0)

    def to(self, backend: Backend | str | None) -> Dropout:
        super().to(backend)
        self._mask = None
        return self

    def host_rng_state(self) -> dict:
        return dict(self._rng.bit_generator.state)

    def set_host_rng_state(self, state: dict) -> None:
        self._rng.bit_generator.state = state

    def get_config(self) -> dict:
        return {"rate": self.rate, "rng": self._seed}
