"""JAX: immutable arrays, and a compiler (``jax.jit``) for pure functions."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import array_api_compat

from .._typing import Array, Device, Namespace
from ..errors import BackendUnavailableError, DTypeError, install_command
from ._base import Backend

__all__ = ["JaxBackend"]


class JaxBackend(Backend):
    """``jax.numpy`` on a JAX device; updates rebind, training steps are jitted."""

    name = "jax"
    library = "jax.numpy"
    namespace_module = "jax.numpy"  # an array-API namespace itself
    install_hint = install_command("jax")
    casts_numpy_input_on_host = True
    mutable_arrays = False
    compiles = True
    compiles_loops = True

    def __init__(self, *args: Any) -> None:
        self._jax = importlib.import_module("jax")
        super().__init__(*args)

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        # jax.numpy (or jax's array-API module), or the top-level jax module itself
        return array_api_compat.is_jax_namespace(ns) or ns is sys.modules.get("jax")

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
        jax = importlib.import_module("jax")
        if device is None:
            return jax.devices()[0]
        if isinstance(device, int):
            return _device_by_index(jax, device)
        if isinstance(device, str):
            return _device_by_name(jax, device)
        return device  # a jax Device object

    @classmethod
    def check_dtype_supported(cls, key: str) -> None:
        if key == "float64" and not _x64_enabled():
            raise DTypeError(
                "float64 on JAX needs 64-bit mode: set the environment variable "
                "JAX_ENABLE_X64=1 before importing jax, or call "
                "jax.config.update('jax_enable_x64', True)"
            )

    def _has_int64(self) -> bool:
        # Asking for an int64 array without 64-bit mode would warn and truncate:
        # read the setting instead of probing.
        return _x64_enabled()

    # -- fast paths (twins: Backend.sub_, Backend.compile, Backend.compile_loop) ---
    def sub_(self, a: Array, b: Array) -> Array:
        return a - b  # JAX arrays are immutable: rebinding is the only option

    def compile(self, fn: Callable) -> Callable:
        """``jax.jit(fn)``: eager JAX dispatch costs ~1 ms a training step."""
        return self._jax.jit(fn)

    def compile_loop(self, body: Callable, *, donate_carry: bool = False) -> Callable:
        """``jax.lax.scan`` of ``body`` inside one ``jax.jit`` program.

        A whole epoch then costs one dispatch instead of one per step; with
        ``donate_carry`` the carry's input buffers (parameters, optimizer
        state) are reused for its output instead of copied.
        """
        scan = self._jax.lax.scan

        def run(carry: Any, xs: Array, *consts: Any) -> tuple[Any, Array]:
            return scan(lambda c, x: body(c, x, *consts), carry, xs)

        return self._jax.jit(run, donate_argnums=(0,) if donate_carry else ())


def _x64_enabled() -> bool:
    return bool(importlib.import_module("jax").config.jax_enable_x64)


def _device_by_index(jax: Any, index: int) -> Any:
    devices = jax.devices()
    if index >= len(devices):
        raise BackendUnavailableError(
            f"jax device {index} requested but only {len(devices)} are visible"
        )
    return devices[index]


def _device_by_name(jax: Any, device: str) -> Any:
    """``"cpu"``, ``"gpu:1"``, ``"cuda:0"`` (an alias of gpu) -> that jax Device."""
    platform, _, idx = device.partition(":")
    platform = {"cuda": "gpu"}.get(platform, platform)
    try:
        devices = jax.devices(platform)
    except RuntimeError as exc:
        raise BackendUnavailableError(f"jax has no {platform!r} devices ({exc})") from exc
    index = int(idx) if idx else 0
    if index >= len(devices):
        raise BackendUnavailableError(
            f"jax device {device!r} requested but only {len(devices)} "
            f"{platform} device(s) are visible"
        )
    return devices[index]
