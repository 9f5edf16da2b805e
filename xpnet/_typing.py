"""Type aliases for annotations across the package.

xpnet is written against the array API standard, whose arrays (NumPy, CuPy,
torch, JAX, array-api-strict) share no common base class or protocol that the
libraries' stubs declare, so an array is annotated as ``Array`` = ``Any``: the
alias says what is meant, a checker accepts every library's array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np

__all__ = ["Array", "Namespace", "Device", "DType", "SeedLike", "Initializer", "BackendLike"]

#: An array of any supported library (see the module docstring for why ``Any``).
Array = Any
#: An array-API namespace module (``array_api_compat.numpy``, ``jax.numpy``...).
Namespace = Any
#: A library's own device object, or a user's device spec (``"cpu"``, ``"cuda:0"``).
Device = Any
#: What :func:`xpnet.get_backend` accepts: a name, a namespace module, a ``Backend`` or ``None``
#: (``Any``: naming ``Backend`` here would make this leaf module import the backends).
BackendLike = Any
#: A library's dtype object, or a user's dtype spec (``"float32"``).
DType = Any
#: What :func:`xpnet._random.as_generator` accepts: a seed, a Generator or ``None``.
SeedLike: TypeAlias = "int | np.integer | np.random.Generator | None"
#: An initializer ``init(rng, shape) -> host array`` (see :mod:`xpnet.initializers`).
Initializer: TypeAlias = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
