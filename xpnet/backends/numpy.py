"""NumPy: the reference backend (CPU only)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any, NoReturn

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import DeviceSpecError
from ._base import Backend

__all__ = ["NumpyBackend"]

#: Per-thread scratch memory of the in-place kernels: one flat buffer per dtype,
#: as large as the largest parameter seen (bounded, and never shared by threads).
_scratch = threading.local()


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

    # -- fast paths (twins: the Backend methods of the same names) ---------------
    def momentum_step_(self, param: Array, velocity: Array, grad: Array, *, lr: float,
                       momentum: float, nesterov: bool,
                       decay: Any = None) -> tuple[Array, Array]:
        # The twin's expression makes ten temporaries of the parameter's size; at
        # batch 32 allocating them cost more than the arithmetic. Here every pass
        # writes into param, velocity or one reused scratch buffer.
        if grad is param or grad is velocity:  # written before it is read: no aliasing here
            return super().momentum_step_(param, velocity, grad, lr=lr, momentum=momentum,
                                          nesterov=nesterov, decay=decay)
        s = _scratch_like(param, 0)
        np.multiply(velocity, momentum, out=velocity)
        if decay is not None:
            lr_decay = lr * decay
            np.multiply(param, lr_decay, out=s)
            np.subtract(velocity, s, out=velocity)
        np.multiply(grad, lr, out=s)
        np.subtract(velocity, s, out=velocity)  # momentum * v - lr * (grad + decay * param)
        if not nesterov:
            np.add(param, velocity, out=param)
            return param, velocity
        if decay is not None:
            np.multiply(param, 1.0 - lr_decay, out=param)
        np.subtract(param, s, out=param)  # param - u, with s = lr * grad
        np.multiply(velocity, momentum, out=s)
        np.add(param, s, out=param)
        return param, velocity

    def adam_step_(self, param: Array, exp_avg: Array, exp_avg_sq: Array, grad: Array, *,
                   step_size: Any, beta1: float, beta2: float, eps: float,
                   decay: Any = None) -> tuple[Array, Array, Array]:
        # As momentum_step_: passes into the state and two scratch buffers, no temporaries.
        if any(grad is a for a in (param, exp_avg, exp_avg_sq)):
            return super().adam_step_(param, exp_avg, exp_avg_sq, grad, step_size=step_size,
                                      beta1=beta1, beta2=beta2, eps=eps, decay=decay)
        g = grad
        if decay is not None:
            g = _scratch_like(param, 1)
            np.multiply(param, decay, out=g)
            np.add(g, grad, out=g)
        t = _scratch_like(param, 0)
        np.multiply(g, 1.0 - beta1, out=t)
        np.multiply(exp_avg, beta1, out=exp_avg)
        np.add(exp_avg, t, out=exp_avg)
        np.multiply(g, g, out=t)
        np.multiply(t, 1.0 - beta2, out=t)
        np.multiply(exp_avg_sq, beta2, out=exp_avg_sq)
        np.add(exp_avg_sq, t, out=exp_avg_sq)
        np.sqrt(exp_avg_sq, out=t)
        np.add(t, eps, out=t)
        np.divide(exp_avg, t, out=t)
        np.multiply(t, step_size, out=t)
        np.subtract(param, t, out=param)
        return param, exp_avg, exp_avg_sq


def _scratch_like(x: np.ndarray, slot: int) -> np.ndarray:
    """An uninitialised array shaped like ``x``, reused by this thread's later calls.

    Distinct ``slot`` numbers are distinct buffers (a kernel needing two asks for 0 and 1).
    """
    buffers = _scratch.__dict__.setdefault("buffers", {})
    flat = buffers.get((x.dtype, slot))
    if flat is None or flat.size < x.size:
        flat = buffers[x.dtype, slot] = np.empty(x.size, dtype=x.dtype)
    return flat[:x.size].reshape(x.shape)
