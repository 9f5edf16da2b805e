"""NumPy: the reference backend (CPU only)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, NoReturn

import array_api_compat
import numpy as np

from .._typing import Device, Namespace
from ..errors import DeviceSpecError
from ._base import Backend

__all__ = ["NumpyBackend"]


class NumpyBackend(Backend):
    """NumPy through array-api-compat's wrapper; arrays are any ``numpy.ndarray``.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> be = xpnet.get_backend("numpy")
    >>> be.owns(np.zeros(2).view(np.memmap))  # np.load(..., mmap_mode="r") gives these
    True
    """

    name = "numpy"
    library = "numpy"
    namespace_module = "array_api_compat.numpy"
    install_hint = "pip install numpy"

    @property
    def shares_host_memory(self) -> bool:
        return True

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        return array_api_compat.is_numpy_namespace(ns)

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
        if device in (None, "cpu", 0) or str(device) == "cpu":
            return "cpu"
        raise DeviceSpecError(
            f"backend 'numpy' only has device 'cpu', got device={device!r}"
        )

    def owns(self, x: Any) -> bool:
        # Any ndarray subclass (np.memmap, np.load(mmap_mode="r")) is NumPy data;
        # np.matrix is not: its * and indexing differ from an array's.
        return isinstance(x, np.ndarray) and not isinstance(x, np.matrix)

    def _raise_foreign(self, x: Any, name: str) -> NoReturn:
        if isinstance(x, np.matrix):
            raise TypeError(
                f"{name} is a numpy.matrix, whose operators and indexing differ from an "
                "array's; convert it with np.asarray(x) first"
            )
        super()._raise_foreign(x, name)

    def floating_point_errors_ignored(self) -> AbstractContextManager[Any]:
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")
