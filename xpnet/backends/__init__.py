"""The backends: one :class:`Backend` subclass per array library, found by name.

A :class:`Backend` bundles an array namespace (obtained through
``array-api-compat``), a device and a floating dtype. Layers, losses and the
training loop receive one and only ever call ``backend.xp`` -- standard array
API functions -- plus the few helpers of :class:`Backend` (moving host data to
the device once, converting back to NumPy when explicitly asked, validating
arguments, the fast-path hooks).

The registry below maps each name to the module and class that implement it.
Both the module and the library are imported on first use only, so
``import xpnet`` never imports torch, jax, cupy or array-api-strict.

Examples
--------
>>> import xpnet
>>> be = xpnet.get_backend("numpy", dtype="float64")
>>> be
Backend(name='numpy', device='cpu', dtype='float64')
>>> x = be.asarray([[1.0, 2.0]])
>>> be.to_numpy(x * 2)
array([[2., 4.]])
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import array_api_compat

from .._typing import Array
from ..errors import BackendUnavailableError, UnknownBackendError, XpnetError
from ._base import Backend

__all__ = ["Backend", "get_backend", "backend_of", "available_backends", "BACKEND_NAMES",
           "EXPORT_ONLY_BACKENDS"]

#: name -> (module in this package, class): where each backend lives.
_REGISTRY = {
    "numpy": ("numpy", "NumpyBackend"),
    "array_api_strict": ("array_api_strict", "ArrayApiStrictBackend"),
    "torch": ("torch", "TorchBackend"),
    "jax": ("jax", "JaxBackend"),
    "cupy": ("cupy", "CupyBackend"),
    "ndonnx": ("ndonnx", "NdonnxBackend"),  # export only (xpnet.export): records ONNX graphs
}

#: Backends that record a graph for export and cannot train (their classes set ``export_only``).
EXPORT_ONLY_BACKENDS = ("ndonnx",)

#: Names of the training backends, in the order tests try them (``get_backend`` also
#: accepts :data:`EXPORT_ONLY_BACKENDS`).
BACKEND_NAMES = tuple(name for name in _REGISTRY if name not in EXPORT_ONLY_BACKENDS)

_ENV_BACKEND = "XPNET_BACKEND"
_ENV_DEVICE = "XPNET_DEVICE"


def backend_class(name: str) -> type[Backend]:
    """The :class:`Backend` subclass registered as ``name`` (its module imported now).

    Examples
    --------
    >>> from xpnet.backends import backend_class
    >>> backend_class("jax").compiles, backend_class("numpy").mutable_arrays
    (True, True)
    """
    if name not in _REGISTRY:
        raise UnknownBackendError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}"
        )
    module_name, class_name = _REGISTRY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)


def _class_of_namespace(ns: Any) -> type[Backend]:
    """The backend class of a namespace object (numpy, array_api_compat.torch, jax.numpy...)."""
    for name in _REGISTRY:
        cls = backend_class(name)
        if cls.is_namespace(ns):
            return cls
    raise UnknownBackendError(
        f"unsupported array namespace {getattr(ns, '__name__', '') or ns!r}; expected "
        f"one of {', '.join(BACKEND_NAMES)} (by name or as the module itself)"
    )


def get_backend(backend: Any = None, *, device: Any = None, dtype: Any = None) -> Backend:
    """Select a backend by name, namespace object or :class:`Backend`.

    Parameters
    ----------
    backend : str, module, Backend or None
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"``, ``"array_api_strict"``,
        one of those modules (or the array-api-compat wrapper), or an existing
        :class:`Backend` (returned as is unless ``device``/``dtype`` differ).
        ``None`` reads the environment variable ``XPNET_BACKEND`` (default
        ``"numpy"``).
    device : optional
        ``"cpu"``, ``"cuda:1"``, ``1``, a backend's own device object, or
        array-api-strict's ``Device("device1")``. ``None`` reads
        ``XPNET_DEVICE`` or uses the backend's default device.
    dtype : {"float32", "float64"} or dtype, optional
        Floating dtype of parameters; default ``XPNET_DTYPE`` or float32.

    Returns
    -------
    Backend

    Raises
    ------
    UnknownBackendError
        If the name or namespace is not a supported library (a ``ValueError``).
    DeviceSpecError
        If the device spec means nothing to the library (a ``ValueError``).
    BackendUnavailableError
        If the library is not installed or the device is not visible (an ``ImportError``).

    Examples
    --------
    >>> import xpnet
    >>> xpnet.get_backend("array_api_strict", device="device1", dtype="float64")
    Backend(name='array_api_strict', device='device1', dtype='float64')
    """
    if isinstance(backend, Backend):
        if device is None and dtype is None:
            return backend
        return type(backend).create(device=backend.device if device is None else device,
                                    dtype=backend.dtype if dtype is None else dtype)
    if backend is None:
        backend = os.environ.get(_ENV_BACKEND, "numpy")
        if device is None:
            device = os.environ.get(_ENV_DEVICE) or None
    if isinstance(backend, str):
        name = backend.strip().lower().replace("-", "_")
        if name not in _REGISTRY:
            raise UnknownBackendError(
                f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}"
            )
        cls = backend_class(name)
    else:
        cls = _class_of_namespace(backend)
    return cls.create(device=device, dtype=dtype)


def available_backends() -> dict[str, str]:
    """Map each backend name to ``"ok"`` or the reason it is unavailable."""
    status = {}
    for name in BACKEND_NAMES:
        try:
            get_backend(name)
            status[name] = "ok"
        except (BackendUnavailableError, XpnetError) as exc:
            status[name] = str(exc)
    return status


def backend_of(x: Array) -> Backend:
    """The :class:`Backend` (name and device, dtype of ``x`` if floating) holding ``x``.

    Examples
    --------
    >>> import numpy as np, xpnet
    >>> from xpnet.backends import backend_of
    >>> backend_of(np.zeros(2))
    Backend(name='numpy', device='cpu', dtype='float64')
    """
    cls = _class_of_namespace(array_api_compat.array_namespace(x))
    xp = cls.load_namespace()
    dtype = x.dtype if x.dtype in (xp.float32, xp.float64) else None
    return cls.create(device=array_api_compat.device(x), dtype=dtype)
