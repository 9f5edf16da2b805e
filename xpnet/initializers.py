"""Weight initializers, drawn on the host from a seeded NumPy ``Generator``.

Drawing on the host (in float64, then cast once) is what makes every backend
start from bit-identical weights: no backend's own RNG is involved.

An initializer is a callable ``init(rng, shape) -> numpy.ndarray`` (float64).
"""

from __future__ import annotations

import numpy as np

__all__ = ["seed_normal", "get_initializer", "as_generator", "INITIALIZERS"]


def as_generator(rng=None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a Generator or ``None``.

    ``None`` gives a generator seeded from the operating system's entropy (not
    reproducible); pass an int for reproducible weights.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be an int seed, a numpy.random.Generator or None, got {type(rng).__name__}"
    )


def seed_normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """The tutorial's init: standard normal times 0.01."""
    return rng.standard_normal(shape) * 0.01


INITIALIZERS = {"seed": seed_normal, "normal001": seed_normal}


def get_initializer(init):
    """Look up an initializer by name or accept a callable."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except KeyError:
        raise ValueError(
            f"unknown init {init!r}; choose one of {', '.join(sorted(INITIALIZERS))} "
            "or pass a callable init(rng, shape)"
        ) from None
