"""Host-side randomness: every random draw of xpnet comes from a NumPy ``Generator``.

Drawing on the host (never with a backend's own RNG) is what makes every
backend start from bit-identical weights, shuffle in the same order and drop
the same units for the same seed.
"""

from __future__ import annotations

import numpy as np

from ._typing import SeedLike

__all__ = ["as_generator", "dropout_keep_mask"]


def as_generator(rng: SeedLike = None) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a Generator or ``None``.

    ``None`` gives a generator seeded from the operating system's entropy (not
    reproducible); pass an int for reproducible weights.

    Examples
    --------
    >>> from xpnet._random import as_generator
    >>> as_generator(0).integers(10, size=3)
    array([8, 6, 5])
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be an int seed, a numpy.random.Generator or None, got {type(rng).__name__}"
    )


def dropout_keep_mask(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> np.ndarray:
    """Host draw of a Dropout keep-mask: ``True`` where a unit is kept.

    Each entry is kept independently with probability ``1 - rate``
    (``uniform[0, 1) >= rate``). Drawn on the host from ``rng`` so the same seed
    gives the same masks on every backend; :class:`xpnet.layers.Dropout`
    uploads it once per step.

    Examples
    --------
    >>> from xpnet._random import as_generator, dropout_keep_mask
    >>> dropout_keep_mask(as_generator(0), (2, 3), 0.5)
    array([[ True, False, False],
           [False,  True,  True]])
    """
    return rng.random(shape) >= rate
