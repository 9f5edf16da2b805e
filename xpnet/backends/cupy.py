"""CuPy: NumPy's API on a CUDA device (tested on GPU machines only)."""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat
import numpy as np

from ._base import Backend
from ..errors import BackendUnavailableError, DeviceSpecError

__all__ = ["CupyBackend"]


class CupyBackend(Backend):
    """CuPy through array-api-compat's wrapper, on one CUDA device."""

    name = "cupy"
    library = "cupy"
    namespace_module = "array_api_compat.cupy"
    install_hint = 'pip install "xpnet[cupy13]" (CUDA 13) or "xpnet[cupy12]" (CUDA 12)'

    @classmethod
    def is_namespace(cls, ns) -> bool:
        return array_api_compat.is_cupy_namespace(ns)

    @classmethod
    def resolve_device(cls, device: Any):
        cupy = importlib.import_module("cupy")
        count = _visible_device_count(cupy)
        index = _device_index(cupy, device)
        if not 0 <= index < count:
            raise BackendUnavailableError(
                f"CUDA device {index} requested but only {count} device(s) are visible"
            )
        return cupy.cuda.Device(index)

    @property
    def device_name(self) -> str:
        return f"cuda:{self.device.id}"

    def to_numpy(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            return x.get()
        return np.array(x, copy=True)

    def synchronize(self) -> None:
        self.device.synchronize()


def _visible_device_count(cupy) -> int:
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when no driver/device
        raise BackendUnavailableError(
            "CuPy is installed but no CUDA device is visible "
            f"({type(exc).__name__}: {exc}). Check the NVIDIA driver and "
            "CUDA_VISIBLE_DEVICES, or use backend='numpy'."
        ) from exc
    if count == 0:
        raise BackendUnavailableError(
            "CuPy is installed but no CUDA device is visible; check the NVIDIA "
            "driver and CUDA_VISIBLE_DEVICES, or use backend='numpy'."
        )
    return count


def _device_index(cupy, device: Any) -> int:
    """The CUDA device index for ``None``, an int, ``"cuda:N"``/``"gpu:N"`` or a Device."""
    if device is None:
        return 0
    if isinstance(device, int):
        return device
    if isinstance(device, cupy.cuda.Device):
        return device.id
    if isinstance(device, str) and device.startswith(("cuda", "gpu")):
        return int(device.split(":")[1]) if ":" in device else 0
    raise DeviceSpecError(
        f"cannot interpret device={device!r} for cupy; use an int, 'cuda:N' "
        "or a cupy.cuda.Device"
    )
