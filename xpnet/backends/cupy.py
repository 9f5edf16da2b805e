"""CuPy: NumPy's API on a CUDA device (tested on GPU machines only)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import BackendUnavailableError, DeviceSpecError, install_command
from ._base import Backend

__all__ = ["CupyBackend"]


class CupyBackend(Backend):
    """CuPy through array-api-compat's wrapper, on one CUDA device."""

    name = "cupy"
    library = "cupy"
    namespace_module = "array_api_compat.cupy"
    install_hint = f'{install_command("cupy13")} (CUDA 13) or {install_command("cupy12")} (CUDA 12)'

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        return array_api_compat.is_cupy_namespace(ns)

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
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

    def to_numpy(self, x: Array) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            return x.get()
        return np.array(x, copy=True)

    def synchronize(self) -> None:
        self.device.synchronize()

    # -- fast paths (twin: Backend.capture_step) -----------------------------------
    #: Not yet the default: switch on once ci/gpu.sh has shown the recorded step
    #: matching the portable one (tests/test_compiled_epoch.py) and faster.
    captures_graphs = False

    def capture_step(self, step: Callable, params: Callable) -> Callable:
        """``step`` recorded once in a CUDA graph, then replayed per batch (see :class:`_GraphStep`)."""
        return _GraphStep(importlib.import_module("cupy"), step, params)


class _GraphStep:
    """A training step recorded in a CUDA graph and replayed per batch.

    The first call (and any call after ``X``, ``onehot`` or a parameter became
    another array) runs the step normally, then records it on a private
    stream; later calls copy the batch indices into the recorded index buffer
    and launch the graph: one launch instead of some forty kernel launches.
    The step's temporaries come from a private memory pool that nothing else
    allocates from, so the addresses baked into the graph stay the step's own.
    If recording fails, or the step rebinds a parameter (an optimizer), every
    call runs the plain step; ``reason`` says why.
    """

    def __init__(self, cupy: Any, step: Callable, params: Callable) -> None:
        self._cp, self._step, self._params = cupy, step, params
        # The recorded cupy.cuda.Graph and the signature it was recorded for: set
        # together by _record, so a matching _key means _graph is a graph.
        self._key: tuple | None = None
        self._graph: Any = None
        self.reason = ""

    def _signature(self, X: Array, onehot: Array, idx: Array) -> tuple:
        return (X.data.ptr, X.shape, onehot.data.ptr, onehot.shape, idx.shape, idx.dtype.str,
                tuple(p.data.ptr for p in self._params()))

    def __call__(self, X: Array, onehot: Array, idx: Array) -> Array:
        if self.reason:
            return self._step(X, onehot, idx)
        key = self._signature(X, onehot, idx)
        if key != self._key:
            return self._record(X, onehot, idx, key)
        with self._stream:
            self._idx[...] = idx
            self._graph.launch(self._stream)
            return self._loss.copy()  # the next replay overwrites the recorded output

    def _record(self, X: Array, onehot: Array, idx: Array, key: tuple) -> Array:
        """Run this call's step for real (warming the private pool), then record it."""
        cp = self._cp
        self._key = self._graph = None
        self._pool = cp.cuda.MemoryPool()
        self._stream = cp.cuda.Stream()  # blocking: ordered with the default stream
        with cp.cuda.using_allocator(self._pool.malloc), self._stream:
            self._idx = cp.empty(idx.shape, dtype=idx.dtype)
            self._idx[...] = idx
            loss = self._step(X, onehot, self._idx)
        with self._stream:
            out = loss.copy()  # outside the private pool, which must be as before the step
        del loss
        self._stream.synchronize()
        if self._signature(X, onehot, idx) != key:
            self.reason = "the step replaced a parameter array (an optimizer?)"
            return out
        try:
            with cp.cuda.using_allocator(self._pool.malloc), self._stream:
                self._stream.begin_capture()
                try:
                    self._loss = self._step(X, onehot, self._idx)
                finally:
                    graph = self._stream.end_capture()
        except Exception as exc:  # CUDA refuses to record something: run plainly
            self.reason = f"recording failed: {type(exc).__name__}: {exc}"
            return out
        if self._signature(X, onehot, idx) != key:
            self.reason = "the recorded step replaced a parameter array"
            return out
        self._graph, self._key = graph, key
        return out


def _visible_device_count(cupy: Any) -> int:
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


def _device_index(cupy: Any, device: Any) -> int:
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
