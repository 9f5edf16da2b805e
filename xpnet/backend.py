"""Backend and device abstraction: the one place that knows about array libraries.

A :class:`Backend` bundles an array namespace (obtained through
``array-api-compat``), a device and a floating dtype. Layers, losses and the
training loop receive one and only ever call ``backend.xp`` -- standard array
API functions -- plus the few helpers defined here (moving host data to the
device once, converting back to NumPy when explicitly asked, validating
arguments).

Backend-specific fast paths live in :class:`Backend` subclasses below; each
overrides a portable method of :class:`Backend` (its *twin*), and the test
suite compares the two.

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

import numpy as np

from .errors import (
    BackendUnavailableError,
    DeviceMismatchError,
    DTypeError,
    ShapeError,
    XpnetError,
)

__all__ = ["Backend", "get_backend", "available_backends", "BACKEND_NAMES"]

#: Names accepted by :func:`get_backend`, in the order tests try them.
BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "jax", "cupy")

_INSTALL_HINTS = {
    "numpy": 'pip install numpy',
    "cupy": 'pip install "xpnet[cupy13]" (CUDA 13) or "xpnet[cupy12]" (CUDA 12)',
    "torch": 'pip install "xpnet[torch]"',
    "jax": 'pip install "xpnet[jax]"',
    "array_api_strict": 'pip install array-api-strict',
}

_ENV_BACKEND = "XPNET_BACKEND"
_ENV_DEVICE = "XPNET_DEVICE"
_ENV_DTYPE = "XPNET_DTYPE"


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------

def _import(name: str):
    """Import the array library behind backend ``name`` or explain how to get it."""
    module = {"jax": "jax.numpy"}.get(name, name)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend {name!r} needs the {name!r} package, which is not installed "
            f"({exc}). Install it with: {_INSTALL_HINTS[name]}"
        ) from exc


def _name_of_namespace(ns: Any) -> str:
    """Map a namespace object (numpy, array_api_compat.torch, jax.numpy, ...) to a name."""
    modname = getattr(ns, "__name__", "")
    for name in ("array_api_strict", "cupy", "torch", "jax", "numpy"):
        if name in modname.split("."):
            return name
    raise XpnetError(
        f"unsupported array namespace {modname or ns!r}; expected one of "
        f"{', '.join(BACKEND_NAMES)} (by name or as the module itself)"
    )


def _namespace(name: str):
    """The array-API namespace xpnet uses for backend ``name``."""
    lib = _import(name)
    if name in ("array_api_strict", "jax"):
        return lib  # both are array-API namespaces themselves
    # array-api-compat's wrapped namespaces for numpy, cupy and torch.
    return importlib.import_module(f"array_api_compat.{name}")


def _resolve_device(name: str, device: Any):
    """Turn a user's device spec into the backend's own device object."""
    if name == "numpy":
        if device in (None, "cpu", 0) or str(device) == "cpu":
            return "cpu"
        raise XpnetError(f"backend 'numpy' only has device 'cpu', got device={device!r}")
    if name == "array_api_strict":
        import array_api_strict as aas

        if device is None:
            return aas.Device("CPU_DEVICE")
        if isinstance(device, aas.Device):
            return device
        if isinstance(device, str):
            try:
                return aas.Device(device)
            except Exception as exc:
                raise XpnetError(
                    f"array_api_strict has no device {device!r}; use 'CPU_DEVICE', "
                    "'device1' or 'device2'"
                ) from exc
        raise XpnetError(f"cannot interpret device={device!r} for array_api_strict")
    if name == "torch":
        import torch

        if device is None:
            dev = torch.device("cpu")
        elif isinstance(device, int):
            dev = torch.device("cuda", device)
        else:
            try:
                dev = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise XpnetError(f"cannot interpret device={device!r} for torch: {exc}") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailableError(
                    f"torch device {str(dev)!r} requested but torch sees no CUDA device "
                    f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
                    "Use device='cpu' or install a CUDA build of torch on a machine with a GPU."
                )
            index = 0 if dev.index is None else dev.index
            if index >= torch.cuda.device_count():
                raise BackendUnavailableError(
                    f"torch device {str(dev)!r} requested but only "
                    f"{torch.cuda.device_count()} CUDA device(s) are visible"
                )
            dev = torch.device("cuda", index)
        return dev
    if name == "cupy":
        import cupy

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
        if device is None:
            index = 0
        elif isinstance(device, int):
            index = device
        elif isinstance(device, cupy.cuda.Device):
            index = device.id
        elif isinstance(device, str) and device.startswith(("cuda", "gpu")):
            index = int(device.split(":")[1]) if ":" in device else 0
        else:
            raise XpnetError(
                f"cannot interpret device={device!r} for cupy; use an int, 'cuda:N' "
                "or a cupy.cuda.Device"
            )
        if not 0 <= index < count:
            raise BackendUnavailableError(
                f"CUDA device {index} requested but only {count} device(s) are visible"
            )
        return cupy.cuda.Device(index)
    if name == "jax":
        import jax

        if device is None:
            return jax.devices()[0]
        if isinstance(device, int):
            devices = jax.devices()
            if device >= len(devices):
                raise BackendUnavailableError(
                    f"jax device {device} requested but only {len(devices)} are visible"
                )
            return devices[device]
        if isinstance(device, str):
            platform, _, idx = device.partition(":")
            platform = {"cuda": "gpu"}.get(platform, platform)
            try:
                devices = jax.devices(platform)
            except RuntimeError as exc:
                raise BackendUnavailableError(
                    f"jax has no {platform!r} devices ({exc})"
                ) from exc
            index = int(idx) if idx else 0
            if index >= len(devices):
                raise BackendUnavailableError(
                    f"jax device {device!r} requested but only {len(devices)} "
                    f"{platform} device(s) are visible"
                )
            return devices[index]
        return device  # a jax Device object
    raise AssertionError(name)


def _resolve_dtype(name: str, xp, dtype: Any):
    if dtype is None:
        dtype = os.environ.get(_ENV_DTYPE, "float32")
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise DTypeError(
                f"dtype must be 'float32' or 'float64', got {dtype!r}"
            )
        key = dtype
    elif dtype is xp.float32 or dtype is xp.float64:  # the namespace's own dtype objects
        key = "float32" if dtype is xp.float32 else "float64"
    elif getattr(dtype, "__module__", "").startswith("array_api_strict") or (
            type(dtype).__module__.startswith("array_api_strict")):
        key = repr(dtype).rsplit(".", 1)[-1].strip("')")  # array_api_strict.float64
        if key not in ("float32", "float64"):
            raise DTypeError(f"dtype must be float32 or float64, got {dtype!r}")
    else:
        try:  # other libraries' dtypes (np.float64 given to torch, ...), by name
            key = np.dtype(dtype).name
        except TypeError:
            key = str(dtype).replace("torch.", "")
        if key not in ("float32", "float64"):
            raise DTypeError(f"dtype must be float32 or float64, got {dtype!r}")
    if name == "jax" and key == "float64":
        import jax

        if not jax.config.jax_enable_x64:
            raise DTypeError(
                "float64 on JAX needs 64-bit mode: set the environment variable "
                "JAX_ENABLE_X64=1 before importing jax, or call "
                "jax.config.update('jax_enable_x64', True)"
            )
    return getattr(xp, key)


# --------------------------------------------------------------------------
# The Backend object
# --------------------------------------------------------------------------

class Backend:
    """An array namespace, a device and a floating dtype.

    Build one with :func:`get_backend`; this class is not meant to be called
    directly. Attributes are read-only by convention.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"array_api_strict"``, ``"torch"``, ``"jax"`` or ``"cupy"``.
    xp : module
        The array-API namespace (from array-api-compat where needed).
    device : object
        The backend's own device object.
    dtype : dtype
        The floating dtype of parameters and activations.
    index_dtype : dtype
        The integer dtype used for labels and indices.
    """

    #: Whether arrays may be updated in place (``a -= b``); JAX may not.
    mutable_arrays = True

    def __init__(self, name: str, xp, device, dtype):
        self.name = name
        self.xp = xp
        self.device = device
        self.dtype = dtype
        self.index_dtype = xp.int64 if self._has_int64() else xp.int32
        self._array_type = type(xp.zeros(1, dtype=dtype, device=device))

    def _has_int64(self) -> bool:
        try:
            z = self.xp.zeros(1, dtype=self.xp.int64, device=self.device)
        except Exception:  # pragma: no cover - jax without x64 warns, not raises
            return False
        return z.dtype == self.xp.int64

    # -- identity ---------------------------------------------------------
    @property
    def dtype_name(self) -> str:
        return "float64" if self.dtype == self.xp.float64 else "float32"

    @property
    def device_name(self) -> str:
        dev = self.device
        if self.name == "cupy":
            return f"cuda:{dev.id}"
        if self.name == "array_api_strict":
            text = repr(dev)  # "array_api_strict.Device('device1')"
            return text.split("'")[1] if "'" in text else text
        return str(dev)

    @property
    def eps(self) -> float:
        """Machine epsilon of :attr:`dtype`."""
        return float(self.xp.finfo(self.dtype).eps)

    def __repr__(self) -> str:
        return (
            f"Backend(name={self.name!r}, device={self.device_name!r}, "
            f"dtype={self.dtype_name!r})"
        )

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Backend)
            and self.name == other.name
            and self.device_name == other.device_name
            and self.dtype_name == other.dtype_name
        )

    def __hash__(self) -> int:
        return hash((self.name, self.device_name, self.dtype_name))

    def with_dtype(self, dtype) -> "Backend":
        """The same backend and device with another floating dtype."""
        return get_backend(self.name, device=self.device, dtype=dtype)

    # -- creation and transfer ------------------------------------------------
    def asarray(self, data, dtype=None) -> Any:
        """Copy host data (NumPy array, list, scalar) onto this backend's device.

        The result never aliases ``data`` (``copy=True``), so later changes on
        either side cannot leak into the other. ``dtype`` defaults to the
        backend's floating dtype; pass ``backend.index_dtype`` for labels.
        """
        dtype = self.dtype if dtype is None else dtype
        if isinstance(data, np.ndarray) and self.name in ("torch", "array_api_strict", "jax"):
            # Convert on the host first: torch/strict/jax do not all accept
            # every NumPy dtype (uint8 -> int64 for instance).
            data = np.asarray(data, dtype=self._numpy_dtype(dtype))
        return self.xp.asarray(data, dtype=dtype, device=self.device, copy=True)

    def _numpy_dtype(self, dtype) -> np.dtype:
        for key in ("float32", "float64", "int8", "int16", "int32", "int64",
                    "uint8", "uint16", "uint32", "uint64", "bool"):
            if dtype == getattr(self.xp, key):
                return np.dtype(key)
        raise DTypeError(f"no NumPy equivalent for {dtype!r}")

    def zeros(self, shape, dtype=None):
        """Zeros of ``shape`` on this device (``dtype`` defaults to :attr:`dtype`)."""
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype,
                             device=self.device)

    def to_numpy(self, x) -> np.ndarray:
        """Copy ``x`` back to the host as a NumPy array (an explicit transfer).

        The result is always a fresh, writable copy: it never aliases device
        or CPU tensor memory (``torch.Tensor.numpy()`` alone would).
        """
        if self.name == "cupy" and not isinstance(x, np.ndarray):
            return x.get()
        if self.name == "torch" and not isinstance(x, np.ndarray):
            x = x.detach().cpu().numpy()
        elif self.name == "array_api_strict" and not isinstance(x, np.ndarray):
            import array_api_strict as aas

            x = x.to_device(aas.Device("CPU_DEVICE"))
        return np.array(x, copy=True)

    def synchronize(self) -> None:
        """Wait for queued device work (for timing); a no-op on the CPU."""
        if self.name == "cupy":
            self.device.synchronize()
        elif self.name == "torch" and getattr(self.device, "type", "cpu") == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def floating_point_errors_ignored(self):
        """Context manager silencing NumPy's overflow/invalid warnings.

        ``fit`` uses it while its divergence guard is on: the guard reports a
        NaN/inf loss once, with the epoch and step, instead of a warning per
        operation. Other backends do not warn, so this is a no-op for them.
        """
        if self.name in ("numpy", "array_api_strict"):  # strict computes with NumPy
            return np.errstate(over="ignore", invalid="ignore", divide="ignore")
        import contextlib

        return contextlib.nullcontext()

    # -- validation -----------------------------------------------------------
    def owns(self, x) -> bool:
        """Whether ``x`` is an array of this backend on this device (cheap check)."""
        if type(x) is not self._array_type:
            return False
        if self.name == "numpy":
            return True
        import array_api_compat

        return array_api_compat.device(x) == self.device

    def check_array(self, x, name: str, *, ndim: int | None = None,
                    kind: str = "real floating", shape: tuple | None = None):
        """Validate an argument; return it unchanged or raise a clear error.

        Parameters
        ----------
        x : array
            The argument.
        name : str
            Its name, used in messages.
        ndim : int, optional
            Required number of dimensions.
        kind : {"real floating", "integral", "any"}
            Required dtype kind. ``"real floating"`` also requires the
            backend's own dtype, so float64 data never silently runs in float32.
        shape : tuple, optional
            Required shape; ``None`` entries match anything.
        """
        if not self.owns(x):
            self._raise_foreign(x, name)
        if ndim is not None and x.ndim != ndim:
            hint = ""
            if ndim == 2 and x.ndim == 1:
                hint = " (a single sample? use x[None, :] or reshape it to (1, n_features))"
            elif ndim == 2 and x.ndim > 2:
                hint = " (images? flatten them to (n_samples, n_features) first)"
            raise ShapeError(
                f"{name} must be a {ndim}-D array, got shape {tuple(x.shape)}{hint}"
            )
        if shape is not None:
            for want, got in zip(shape, x.shape):
                if want is not None and want != got:
                    raise ShapeError(
                        f"{name} must have shape {_fmt_shape(shape)}, got {tuple(x.shape)}"
                    )
        if kind == "real floating" and x.dtype != self.dtype:
            raise DTypeError(
                f"{name} must have dtype {self.dtype_name} (the model's dtype), got "
                f"{x.dtype}; convert it with backend.asarray(...) or "
                f"xp.astype(x, xp.{self.dtype_name}) (images as uint8? scale them to "
                "[0, 1] floats first)"
            )
        if kind == "integral" and not self.xp.isdtype(x.dtype, "integral"):
            raise DTypeError(
                f"{name} must hold integer class labels, got dtype {x.dtype}; "
                "convert with xp.astype(y, xp.int64) after checking the values are whole"
            )
        return x

    def _raise_foreign(self, x, name: str):
        import array_api_compat

        if not array_api_compat.is_array_api_obj(x):
            raise TypeError(
                f"{name} must be an array of {self!r}, got {type(x).__name__}; "
                "move host data once with backend.asarray(data)"
            )
        try:
            other = array_api_compat.array_namespace(x).__name__
        except TypeError:
            other = type(x).__module__
        try:
            dev = array_api_compat.device(x)
        except Exception:
            dev = "?"
        raise DeviceMismatchError(
            f"{name} is a {type(x).__module__}.{type(x).__name__} on device {dev!s} "
            f"(namespace {other}), but the model runs on {self!r}. xpnet never moves "
            "data silently: convert it explicitly with backend.asarray(backend_of_x."
            "to_numpy(x)) or build the model on the matching backend."
        )

    # -- fast-path hooks (portable twins; subclasses may specialise) ------------
    def sub_(self, a, b):
        """``a - b``, computed in place when the backend allows; returns the result.

        Callers always rebind (``w = backend.sub_(w, g)``), so immutable
        backends (JAX) work unchanged.
        """
        a -= b
        return a


    def affine(self, x, w, b):
        """``x @ w + b`` (the Dense forward)."""
        return x @ w + b

    def sub_matmul_(self, w, a, b):
        """``w - a @ b``, in place when the backend allows; callers rebind the result."""
        return self.sub_(w, a @ b)

    def make_train_step(self, layers, first_trainable: int):
        """A callable ``step(X, onehot, idx) -> summed loss`` for the training loop.

        The portable version gathers the batch with ``xp.take`` and runs
        :func:`xpnet.training.train_step` (layers update themselves). Backends
        may return a compiled equivalent; tests compare the two.
        """
        from .training import train_step

        xp = self.xp

        def step(X, onehot, idx):
            xb = xp.take(X, idx, axis=0)
            tb = xp.take(onehot, idx, axis=0)
            return train_step(layers, xp, xb, tb, first_trainable)

        return step


class _TorchBackend(Backend):
    """PyTorch's fused BLAS calls: one ``addmm`` instead of a matmul plus an add.

    Each saves an operator dispatch (~4 us on the CPU, a kernel launch on a
    GPU) and a temporary; the weight update accumulates straight into the
    weights (BLAS ``beta=1``).
    """

    def __init__(self, *args):
        import torch

        self._addmm = torch.addmm
        super().__init__(*args)

    def affine(self, x, w, b):
        return self._addmm(b, x, w)

    def sub_matmul_(self, w, a, b):
        return w.addmm_(a, b, alpha=-1)


class _JaxBackend(Backend):
    mutable_arrays = False

    def sub_(self, a, b):
        return a - b  # JAX arrays are immutable: rebinding is the only option

    def make_train_step(self, layers, first_trainable: int):
        """``jax.jit`` of the portable step: eager JAX dispatch costs ~1 ms a step.

        The layers' own ``_forward``/``_backward`` are traced once with their
        parameters swapped for tracers, so the compiled step runs exactly the
        portable math; parameters go in and come out as explicit arguments.
        Learning rates are baked in as constants (``fit`` asks for a new step
        when they change). Layers with optimizers or host randomness are not
        compiled: their state lives outside the traced function.
        """
        portable = super().make_train_step(layers, first_trainable)
        if not all(layer.compilable and layer.optimizer is None for layer in layers):
            return portable
        import jax

        names = [layer.param_names for layer in layers]

        def get_params():
            return [tuple(getattr(layer, n) for n in ns) for layer, ns in zip(layers, names)]

        def set_params(params):
            for layer, ns, ps in zip(layers, names, params):
                for n, p in zip(ns, ps):
                    setattr(layer, n, p)

        def pure_step(params, X, onehot, idx):
            saved = get_params()
            try:
                set_params(params)
                loss = portable(X, onehot, idx)
                return loss, get_params()
            finally:
                set_params(saved)  # never leave tracers on the layers

        compiled = jax.jit(pure_step)

        def step(X, onehot, idx):
            loss, params = compiled(get_params(), X, onehot, idx)
            set_params(params)
            return loss

        return step


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("n" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


_CACHE: dict = {}


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
    BackendUnavailableError
        If the library is not installed or the device is not visible.

    Examples
    --------
    >>> import xpnet
    >>> xpnet.get_backend("array_api_strict", device="device1", dtype="float64")
    Backend(name='array_api_strict', device='device1', dtype='float64')
    """
    if isinstance(backend, Backend):
        if device is None and dtype is None:
            return backend
        return get_backend(backend.name, device=backend.device if device is None else device,
                           dtype=backend.dtype if dtype is None else dtype)
    if backend is None:
        backend = os.environ.get(_ENV_BACKEND, "numpy")
        if device is None:
            device = os.environ.get(_ENV_DEVICE) or None
    if isinstance(backend, str):
        name = backend.strip().lower().replace("-", "_")
        if name not in BACKEND_NAMES:
            raise XpnetError(
                f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}"
            )
    else:
        name = _name_of_namespace(backend)
    xp = _namespace(name)
    dev = _resolve_device(name, device)
    dt = _resolve_dtype(name, xp, dtype)
    key = (name, str(dev), str(dt))
    cached = _CACHE.get(key)
    if cached is None:
        cls = {"jax": _JaxBackend, "torch": _TorchBackend}.get(name, Backend)
        cached = _CACHE[key] = cls(name, xp, dev, dt)
    return cached


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


def backend_of(x) -> Backend:
    """The :class:`Backend` (name and device, dtype of ``x`` if floating) holding ``x``."""
    import array_api_compat

    ns = array_api_compat.array_namespace(x)
    name = _name_of_namespace(ns)
    dtype = None
    xp = _namespace(name)
    if x.dtype in (xp.float32, xp.float64):
        dtype = x.dtype
    return get_backend(name, device=array_api_compat.device(x), dtype=dtype)
