"""ndonnx: an export-only backend whose arrays record an ONNX graph instead of computing.

ndonnx is an array-API namespace: running a layer's ``_forward`` on its arrays
builds the ONNX nodes of that computation. :mod:`xpnet.export` moves a model's
parameters here (they become the graph's constants) and traces
``Sequential``'s own forward on a symbolic input, so the exported graph is the
very code that predicts, not a second implementation.

It cannot train (``trains = False``, ``export_only = True``): it is left out of
:data:`xpnet.backends.BACKEND_NAMES`, the test matrix and the CLI's choices.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import DeviceSpecError
from ._base import Backend

__all__ = ["NdonnxBackend"]


class NdonnxBackend(Backend):
    """ndonnx: one (symbolic) device, ``"onnx"``; parameters become graph constants."""

    name = "ndonnx"
    library = "ndonnx"
    namespace_module = "ndonnx"  # an array-API namespace itself
    install_hint = 'pip install "xpnet[onnx]"  (or: pip install ndonnx)'
    mutable_arrays = False  # arrays are graph values: every update is a new node
    trains = False
    export_only = True

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        return array_api_compat.is_ndonnx_namespace(ns)

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
        default = cls.load_namespace().__array_namespace_info__().default_device()
        if device is None or device is default or device in ("onnx", "cpu"):
            return default
        raise DeviceSpecError(
            f"ndonnx has one device (the ONNX graph), spelled 'onnx' or None; got {device!r}"
        )

    @property
    def device_name(self) -> str:
        return "onnx"

    @property
    def dlpack_device(self) -> tuple | None:
        return None  # graph values have no memory to share

    def sub_(self, a: Array, b: Array) -> Array:
        return a - b  # immutable: callers rebind

    def to_numpy(self, x: Array) -> np.ndarray:
        """The value of a constant array; a symbolic one (built from an input) has none."""
        value = x.unwrap_numpy()  # raises ValueError for values known only at run time
        return np.array(value, copy=True)
