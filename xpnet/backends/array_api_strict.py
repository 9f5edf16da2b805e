"""array-api-strict: the standard and nothing else, with fake devices to catch misplaced arrays."""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import DeviceSpecError
from ._base import Backend

__all__ = ["ArrayApiStrictBackend"]


class ArrayApiStrictBackend(Backend):
    """array-api-strict: devices ``CPU_DEVICE`` (default), ``device1``, ``device2``."""

    name = "array_api_strict"
    library = "array_api_strict"
    namespace_module = "array_api_strict"  # an array-API namespace itself
    install_hint = "pip install array-api-strict"
    casts_numpy_input_on_host = True  # it refuses some NumPy dtypes (uint8 -> int64)

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        return array_api_compat.is_array_api_strict_namespace(ns)

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
        aas = importlib.import_module("array_api_strict")
        if device is None:
            return aas.Device("CPU_DEVICE")
        if isinstance(device, aas.Device):
            return device
        if isinstance(device, str):
            try:
                return aas.Device(device)
            except Exception as exc:
                raise DeviceSpecError(
                    f"array_api_strict has no device {device!r}; use 'CPU_DEVICE', "
                    "'device1' or 'device2'"
                ) from exc
        raise DeviceSpecError(f"cannot interpret device={device!r} for array_api_strict")

    @property
    def device_name(self) -> str:
        text = repr(self.device)  # "array_api_strict.Device('device1')"
        return text.split("'")[1] if "'" in text else text

    @property
    def dlpack_device(self) -> tuple | None:
        # The fake devices (device1, device2) must not swap memory with CPU arrays.
        return (1, 0) if self.device_name == "CPU_DEVICE" else None

    def _import_dlpack(self, x: Any, copy: bool | None) -> Array:
        return self.xp.from_dlpack(x, device=self.device, copy=copy)

    def to_numpy(self, x: Array) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            aas = importlib.import_module("array_api_strict")
            x = x.to_device(aas.Device("CPU_DEVICE"))
        return np.array(x, copy=True)

    def floating_point_errors_ignored(self) -> AbstractContextManager[Any]:
        # array-api-strict computes with NumPy, which warns on overflow.
        return np.errstate(over="ignore", invalid="ignore", divide="ignore")
