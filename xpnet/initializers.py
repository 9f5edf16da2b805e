"""Weight initializers, drawn on the host from a seeded NumPy ``Generator``.

Drawing on the host (in float64, then cast once) is what makes every backend
start from bit-identical weights: no backend's own RNG is involved.

An initializer is a callable ``init(rng, shape) -> numpy.ndarray`` (float64).
Weight shapes follow xpnet's layout ``(fan_in, fan_out, *receptive_field)``
(``Dense`` weights are ``(input_units, output_units)``).

=================  ==========================================================
name               distribution
=================  ==========================================================
``seed``           ``N(0, 1) * 0.01`` -- the tutorial's init
``he_normal``      ``N(0, 2 / fan_in)`` (Kaiming, for ReLU networks)
``he_uniform``     ``U(-a, a)``, ``a = sqrt(6 / fan_in)``
``glorot_normal``  ``N(0, 2 / (fan_in + fan_out))`` (Xavier, for tanh/sigmoid)
``glorot_uniform`` ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``
=================  ==========================================================

The normal variants are plain (not truncated) normals, as in PyTorch's
``kaiming_normal_`` and ``xavier_normal_``.

Examples
--------
>>> import xpnet
>>> from xpnet.initializers import INITIALIZERS, as_generator
>>> w = INITIALIZERS["he_uniform"](as_generator(0), (784, 100))
>>> w.shape, w.dtype, bool(abs(w).max() <= (6 / 784) ** 0.5)
((784, 100), dtype('float64'), True)
"""

from __future__ import annotations

import math

import numpy as np

from ._random import as_generator, dropout_keep_mask

# Host randomness lives in xpnet._random; re-exported here, where it always was.
from ._typing import Initializer

__all__ = [
    "seed_normal",
    "he_normal",
    "he_uniform",
    "glorot_normal",
    "glorot_uniform",
    "compute_fans",
    "get_initializer",
    "as_generator",
    "dropout_keep_mask",
    "INITIALIZERS",
]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape`` in xpnet's layout.

    ``(fan_in, fan_out)`` for 2-D shapes; ``(in, out, *k)`` multiplies both by
    ``prod(k)``; a 1-D shape ``(n,)`` has ``fan_in = fan_out = n``.

    Examples
    --------
    >>> from xpnet.initializers import compute_fans
    >>> compute_fans((784, 100))
    (784, 100)
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError("cannot compute fans of a 0-d (scalar) parameter shape ()")
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[0] * receptive, shape[1] * receptive


def _check_fans(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    fan_in, fan_out = compute_fans(shape)
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"{name} needs a shape with non-zero fans, got {tuple(shape)}")
    return fan_in, fan_out


def seed_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """The tutorial's init: standard normal times 0.01."""
    return rng.standard_normal(shape) * 0.01


def he_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """He (Kaiming) normal: ``N(0, std^2)`` with ``std = sqrt(2 / fan_in)``.

    Keeps the activations' variance constant through ReLU layers.
    """
    fan_in, _ = _check_fans("he_normal", shape)
    return rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)


def he_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """He (Kaiming) uniform: ``U(-a, a)`` with ``a = sqrt(6 / fan_in)``."""
    fan_in, _ = _check_fans("he_uniform", shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def glorot_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Glorot (Xavier) normal: ``N(0, std^2)`` with ``std = sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = _check_fans("glorot_normal", shape)
    return rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Glorot (Xavier) uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = _check_fans("glorot_uniform", shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


#: Initializers by name (``"normal001"`` is an alias of ``"seed"``; Kaiming/Xavier
#: names are aliases of He/Glorot).
INITIALIZERS = {
    "seed": seed_normal,
    "normal001": seed_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
}


def get_initializer(init: str | Initializer) -> Initializer:
    """Look up an initializer by name or accept a callable ``init(rng, shape)``.

    Examples
    --------
    >>> from xpnet.initializers import get_initializer
    >>> get_initializer("he_normal").__name__
    'he_normal'
    """
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown init {init!r}; choose one of {', '.join(sorted(INITIALIZERS))} "
            "or pass a callable init(rng, shape)"
        ) from None
