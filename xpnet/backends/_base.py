"""The portable :class:`Backend`: what every array library shares.

A library's own module (``numpy.py``, ``torch.py``, ...) subclasses
:class:`Backend` and overrides only what its library does differently: the
name, how to import it, device resolution and naming, the way back to NumPy,
and its fast paths. Every fast path overrides a portable method defined here
(its *twin*), and the test suite compares the two.

The library itself is imported when a backend is first created (through
``importlib``), never when its module is imported, so ``import xpnet`` stays
free of torch, jax, cupy and array-api-strict.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar, NoReturn

import array_api_compat
import numpy as np

from .._typing import Array, Device, DType, Namespace
from ..errors import (
    BackendUnavailableError,
    DeviceMismatchError,
    DTypeError,
    ShapeError,
)

__all__ = ["Backend"]

_ENV_DTYPE = "XPNET_DTYPE"
_FLOAT_NAMES = ("float32", "float64")
_NUMPY_EQUIVALENTS = ("float32", "float64", "int8", "int16", "int32", "int64",
                      "uint8", "uint16", "uint32", "uint64", "bool")

#: One Backend per (class, device, dtype): backends are shared, so ``is`` and
#: ``==`` agree for backends built from equal specs.
_INSTANCES: dict = {}


def softmax_crossentropy_sum_and_grad(xp: Namespace, logits: Array,
                                      onehot: Array) -> tuple[Array, Array]:
    """Softmax cross-entropy: summed loss (0-d, on the device) and gradient of the mean loss.

    The portable kernel (``onehot`` rows sum to 1), twin of every
    :meth:`Backend.softmax_crossentropy`; it shares the max/exp/sum between
    loss and gradient::

        loss_i = log(sum_j exp(z_ij - m_i)) + m_i - z_i[y_i]
    """
    m = xp.max(logits, axis=1, keepdims=True)
    e = xp.exp(logits - m)
    s = xp.sum(e, axis=1, keepdims=True)
    scale = 1.0 / logits.shape[0]
    grad = e * (scale / s) - onehot * scale
    loss_sum = xp.sum(xp.log(s) + m) - xp.sum(logits * onehot)
    return loss_sum, grad


class Backend:
    """An array namespace, a device and a floating dtype.

    Build one with :func:`xpnet.get_backend`; this class is not meant to be
    called directly. Attributes are read-only by convention.

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

    Examples
    --------
    >>> import xpnet
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> be
    Backend(name='numpy', device='cpu', dtype='float64')
    >>> be.to_numpy(be.asarray([[1.0, 2.0]]) * 2)
    array([[2., 4.]])
    """

    # -- what each library module sets ---------------------------------------
    #: The name accepted by :func:`xpnet.get_backend`.
    name: ClassVar[str] = ""
    #: The module whose import proves the library is installed.
    library: ClassVar[str] = ""
    #: The array-API namespace module (the library itself or array-api-compat's wrapper).
    namespace_module: ClassVar[str] = ""
    #: How to install the library, quoted in the "not installed" error.
    install_hint: ClassVar[str] = ""

    # -- capabilities ---------------------------------------------------------
    #: Whether arrays may be updated in place (``a -= b``); JAX's may not.
    mutable_arrays: ClassVar[bool] = True
    #: Whether :meth:`compile` really compiles (training then compiles its step).
    compiles: ClassVar[bool] = False
    #: Whether :meth:`capture_step` records a training step once and replays it
    #: (CUDA graphs); training then uses it for optimizer-free compilable layers.
    captures_graphs: ClassVar[bool] = False
    #: Whether :meth:`compile_loop` compiles a whole loop into one program
    #: (training then runs each epoch as one call; see ``xpnet._compiled``).
    compiles_loops: ClassVar[bool] = False
    #: Whether NumPy input is cast on the host before the transfer (libraries
    #: that do not accept every NumPy dtype, e.g. uint8 labels as int64).
    casts_numpy_input_on_host: ClassVar[bool] = False
    #: Whether models on this backend can be trained (``fit``); ndonnx's cannot.
    trains: ClassVar[bool] = True
    #: Whether the backend only records a graph for export (ndonnx): it is then left
    #: out of :data:`xpnet.backends.BACKEND_NAMES`, the test matrix and the CLI.
    export_only: ClassVar[bool] = False
    #: Whether the Dense forward/backward (``x @ w``, ``x.T @ g``) accept a host
    #: ``scipy.sparse`` CSR block as ``x`` and return this backend's arrays (NumPy:
    #: scipy's products return ndarrays), so sparse input skips densifying.
    takes_scipy_sparse: ClassVar[bool] = False

    def __init__(self, xp: Namespace, device: Device, dtype: DType) -> None:
        self.xp = xp
        self.device = device
        self.dtype = dtype
        self.index_dtype = xp.int64 if self._has_int64() else xp.int32
        self._array_type = type(xp.zeros(1, dtype=dtype, device=device))

    # -- construction (class level: resolve the spec, then share instances) ---
    @classmethod
    def create(cls, device: Any = None, dtype: Any = None) -> Backend:
        """The shared backend of this library for a device spec and dtype spec."""
        xp = cls.load_namespace()
        dev = cls.resolve_device(device)
        dt = cls.resolve_dtype(xp, dtype)
        key = (cls, str(dev), str(dt))
        backend = _INSTANCES.get(key)
        if backend is None:
            backend = _INSTANCES[key] = cls(xp, dev, dt)
        return backend

    @classmethod
    def import_library(cls) -> Any:
        """Import the library (``cls.library``) or explain how to install it."""
        try:
            return importlib.import_module(cls.library)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {cls.name!r} needs the {cls.name!r} package, which is not "
                f"installed ({exc}). Install it with: {cls.install_hint}"
            ) from exc

    @classmethod
    def load_namespace(cls) -> Namespace:
        """The array-API namespace xpnet uses for this library."""
        library = cls.import_library()
        if cls.namespace_module == cls.library:
            return library
        return importlib.import_module(cls.namespace_module)

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        """Whether ``ns`` is this library's namespace (raw or wrapped)."""
        raise NotImplementedError

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
        """Turn a user's device spec into the library's own device object."""
        raise NotImplementedError

    @classmethod
    def resolve_dtype(cls, xp: Namespace, dtype: Any) -> DType:
        """The namespace's float32/float64 for a dtype spec (name or dtype object)."""
        if dtype is None:
            dtype = os.environ.get(_ENV_DTYPE, "float32")
        key = _float_name(xp, dtype)
        cls.check_dtype_supported(key)
        return getattr(xp, key)

    @classmethod
    def check_dtype_supported(cls, key: str) -> None:
        """Raise :class:`DTypeError` when the library cannot use float ``key`` now."""

    def _has_int64(self) -> bool:
        """Whether the namespace stores int64 (the index dtype is int32 otherwise)."""
        try:
            z = self.xp.zeros(1, dtype=self.xp.int64, device=self.device)
        except Exception:  # pragma: no cover - a library without int64
            return False
        return z.dtype == self.xp.int64

    # -- identity ---------------------------------------------------------------
    @property
    def dtype_name(self) -> str:
        return "float64" if self.dtype == self.xp.float64 else "float32"

    @property
    def device_name(self) -> str:
        """The device as users write it (``"cpu"``, ``"cuda:0"``, ``"device1"``)."""
        return str(self.device)

    @property
    def eps(self) -> float:
        """Machine epsilon of :attr:`dtype`."""
        return float(self.xp.finfo(self.dtype).eps)

    def _identity(self) -> tuple:
        return (self.name, self.device_name, self.dtype_name)

    def __repr__(self) -> str:
        return (
            f"Backend(name={self.name!r}, device={self.device_name!r}, "
            f"dtype={self.dtype_name!r})"
        )

    def __eq__(self, other: object) -> bool:
        # ``is`` first: optimizers compare a parameter's backend at every update.
        return other is self or (isinstance(other, Backend)
                                 and self._identity() == other._identity())

    def __hash__(self) -> int:
        return hash(self._identity())

    def with_dtype(self, dtype: Any) -> Backend:
        """The same backend and device with another floating dtype."""
        return type(self).create(device=self.device, dtype=dtype)

    @property
    def shares_host_memory(self) -> bool:
        """Whether :meth:`asarray` with ``copy=False`` of a NumPy array reads the host buffer itself.

        With operations finished when they return (NumPy; torch on the CPU).
        Host-data streaming then hands its chunk buffers over without a copy.
        A property, since it may depend on the device (torch: CPU only).
        """
        return False

    # -- creation and transfer ----------------------------------------------------
    def asarray(self, data: Any, dtype: Any = None, *, copy: bool = True) -> Array:
        """Copy host data (NumPy array, list, scalar) onto this backend's device.

        By default the result never aliases ``data`` (``copy=True``), so later
        changes on either side cannot leak into the other. ``dtype`` defaults
        to the backend's floating dtype; pass ``backend.index_dtype`` for labels.

        ``copy=False`` never copies: the result shares ``data``'s memory (an
        array of this backend is returned as is, another library's array on
        the same device is imported through DLPack, see :meth:`from_dlpack`),
        or a ``ValueError`` says why that is impossible (another device, another
        dtype, a library that needs aligned buffers...).

        Examples
        --------
        >>> import numpy as np, xpnet
        >>> be = xpnet.get_backend("numpy", dtype="float64")
        >>> host = np.zeros(3)
        >>> be.asarray(host) is host, be.asarray(host, copy=False) is host
        (False, True)
        """
        dtype = self.dtype if dtype is None else dtype
        if not copy:
            return self._shared(data, dtype)
        if self.casts_numpy_input_on_host and isinstance(data, np.ndarray):
            data = np.asarray(data, dtype=self._numpy_dtype(dtype))
        return self.xp.asarray(data, dtype=dtype, device=self.device, copy=True)

    def _shared(self, data: Any, dtype: DType) -> Array:
        """``data`` as an array of this backend without a copy, or why not (``copy=False``)."""
        if isinstance(data, np.ndarray) and data.dtype != self._numpy_dtype(dtype):
            _raise_no_copy_cast(data.dtype, dtype)
        if self.owns(data):
            shared = data
        elif hasattr(data, "__dlpack__"):
            shared = self.from_dlpack(data, copy=False)
        else:
            raise ValueError(
                f"asarray(..., copy=False) needs an array that supports DLPack, got "
                f"{type(data).__name__}; use copy=True"
            )
        if shared.dtype != dtype:
            _raise_no_copy_cast(shared.dtype, dtype)
        return shared

    @property
    def dlpack_device(self) -> tuple | None:
        """This backend's device as DLPack names it, ``(device_type, index)``; ``None``
        where the backend exchanges no memory through DLPack."""
        cached = self.__dict__.get("_dlpack_device")
        if cached is None:
            kind, index = self.zeros((1,)).__dlpack_device__()
            cached = self.__dict__["_dlpack_device"] = (int(kind), int(index))
        return cached

    def from_dlpack(self, x: Any, *, copy: bool | None = None) -> Array:
        """An array of this backend for ``x`` (any DLPack producer) on the same device.

        ``copy=None`` shares ``x``'s memory where the library can, ``False``
        shares or raises ``ValueError``, ``True`` makes a private copy on the
        device (never through the host). ``x`` on another device is refused
        with :class:`DeviceMismatchError`: moving data is never implicit.

        Examples
        --------
        >>> import numpy as np, xpnet
        >>> be = xpnet.get_backend("numpy", dtype="float64")
        >>> host = np.arange(3.0)
        >>> np.shares_memory(be.from_dlpack(host), host)
        True
        """
        if self.owns(x):
            return self.xp.asarray(x, copy=True) if copy else x
        if not hasattr(x, "__dlpack__"):
            raise TypeError(f"from_dlpack needs an array that supports DLPack, got "
                            f"{type(x).__name__}")
        source = tuple(int(v) for v in x.__dlpack_device__())
        if self.dlpack_device is None or source != self.dlpack_device:
            raise DeviceMismatchError(
                f"a {type(x).__module__}.{type(x).__name__} on DLPack device {source} "
                f"cannot be shared with {self!r} (DLPack device {self.dlpack_device}); "
                "move it explicitly with backend.asarray(source_backend.to_numpy(x))"
            )
        if copy:
            # Import, then copy on the device: some libraries' from_dlpack(copy=True)
            # still alias the source buffer (jax 0.10 on the CPU).
            return self.xp.asarray(self._import_dlpack(x, None), copy=True)
        return self._import_dlpack(x, copy)

    def _import_dlpack(self, x: Any, copy: bool | None) -> Array:
        """The library's ``from_dlpack`` (``x`` already checked to be on this device)."""
        return self.xp.from_dlpack(x, copy=copy)

    def transfer_from(self, source: Backend, x: Array) -> Array:
        """A private copy of ``source``'s floating array ``x`` on this backend, in its dtype.

        When both backends sit on the same device the copy is made there,
        through DLPack (no host round trip: e.g. CuPy -> torch on one GPU);
        otherwise it goes through the host (:meth:`to_numpy`, :meth:`asarray`).
        """
        if source.dlpack_device is not None and source.dlpack_device == self.dlpack_device:
            try:
                shared = self.from_dlpack(x)
            except (BufferError, TypeError, ValueError, RuntimeError):
                shared = None  # e.g. a read-only or unaligned buffer: the host path works
            if shared is not None:
                return self.xp.asarray(shared, dtype=self.dtype, device=self.device, copy=True)
        return self.asarray(source.to_numpy(x))

    def _numpy_dtype(self, dtype: DType) -> np.dtype:
        for key in _NUMPY_EQUIVALENTS:
            if dtype == getattr(self.xp, key):
                return np.dtype(key)
        raise DTypeError(f"no NumPy equivalent for {dtype!r}")

    def zeros(self, shape: int | tuple[int, ...], dtype: DType = None) -> Array:
        """Zeros of ``shape`` on this device (``dtype`` defaults to :attr:`dtype`)."""
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype,
                             device=self.device)

    def to_numpy(self, x: Array) -> np.ndarray:
        """Copy ``x`` back to the host as a NumPy array (an explicit transfer).

        The result is always a fresh, writable copy: it never aliases device
        or CPU tensor memory (``torch.Tensor.numpy()`` alone would).
        """
        return np.array(x, copy=True)

    def synchronize(self) -> None:
        """Wait for queued device work (for timing); a no-op on the CPU."""

    def floating_point_errors_ignored(self) -> AbstractContextManager[Any]:
        """Context manager silencing floating-point warnings, where a library emits them.

        ``fit`` uses it while its divergence guard is on: the guard reports a
        NaN/inf loss once, with the epoch and step, instead of a warning per
        operation. Libraries that do not warn get a no-op.
        """
        return contextlib.nullcontext()

    # -- validation -------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend on this device (cheap check)."""
        return isinstance(x, self._array_type) and array_api_compat.device(x) == self.device

    def check_array(self, x: Any, name: str, *, ndim: int | None = None,
                    kind: str = "real floating", shape: tuple | None = None) -> Array:
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
            _raise_ndim(x, name, ndim)
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

    def _raise_foreign(self, x: Any, name: str) -> NoReturn:
        """Explain why :meth:`owns` refused ``x``, naming only facts about ``x``."""
        if not array_api_compat.is_array_api_obj(x):
            raise TypeError(
                f"{name} must be an array of {self!r}, got {type(x).__name__}; "
                "move host data once with backend.asarray(data)"
            )
        try:
            ns = array_api_compat.array_namespace(x)
        except TypeError:
            ns = None
        try:
            dev = array_api_compat.device(x)
        except Exception:
            dev = "?"
        kind = f"{type(x).__module__}.{type(x).__name__}"
        if ns is not None and self.is_namespace(ns) and dev == self.device:
            # Same library, same device: only the array type is unexpected.
            raise TypeError(
                f"{name} is a {kind}, which {self!r} does not accept as its array "
                "type; convert it with backend.asarray(x)"
            )
        other = getattr(ns, "__name__", type(x).__module__)
        raise DeviceMismatchError(
            f"{name} is a {kind} on device {dev!s} (namespace {other}), but the model "
            f"runs on {self!r}. xpnet never moves data silently: convert it explicitly "
            "with backend.asarray(backend_of_x.to_numpy(x)) or build the model on the "
            "matching backend."
        )

    # -- fast-path hooks (portable twins; library classes may specialise) -----------
    def sub_(self, a: Array, b: Array) -> Array:
        """``a - b``, computed in place when the backend allows; returns the result.

        Callers always rebind (``w = backend.sub_(w, g)``), so immutable
        backends (JAX) work unchanged.
        """
        a -= b
        return a

    def take_rows(self, x: Array, idx: Array) -> Array:
        """``xp.take(x, idx, axis=0)``: the rows ``idx`` of ``x`` (the batch gather)."""
        return self.xp.take(x, idx, axis=0)

    def relu(self, x: Array) -> Array:
        """``max(x, 0)`` elementwise (the ReLU forward)."""
        return self.xp.maximum(x, 0.0)

    def relu_backward(self, x: Array, grad: Array) -> Array:
        """``grad * (x > 0)`` (the ReLU backward; the standard forbids bool * float, so cast)."""
        return grad * self.xp.astype(x > 0, grad.dtype)

    def relu_(self, x: Array) -> Array:
        """``max(x, 0)`` written into ``x`` where the backend allows; callers rebind the result.

        For an intermediate the caller owns (the training step's Dense output
        before a ReLU), never a user's array. ``relu_backward`` gives the same
        gradient for the overwritten ``x`` (``max(x, 0) > 0`` exactly where
        ``x > 0``). This twin allocates (:meth:`relu`); library classes may
        work in place.
        """
        return self.relu(x)

    def relu_backward_(self, x: Array, grad: Array) -> Array:
        """``grad * (x > 0)`` written into ``grad`` where the backend allows; callers rebind.

        ``grad`` must be an intermediate the caller owns (an input gradient the
        training step got from the next layer), never a user's array. This
        twin allocates (:meth:`relu_backward`); library classes may work in place.
        """
        return self.relu_backward(x, grad)

    def affine(self, x: Array, w: Array, b: Array) -> Array:
        """``x @ w + b`` (the Dense forward)."""
        return x @ w + b

    def sub_matmul_(self, w: Array, a: Array, b: Array) -> Array:
        """``w - a @ b``, in place when the backend allows; callers rebind the result."""
        return self.sub_(w, a @ b)

    def softmax_crossentropy(self, logits: Array, onehot: Array) -> tuple[Array, Array]:
        """Summed softmax cross-entropy of ``logits`` against dense ``onehot`` rows (0-d, on
        the device) and the gradient of its mean: :func:`softmax_crossentropy_sum_and_grad`.

        Examples
        --------
        >>> import numpy as np, xpnet
        >>> be = xpnet.get_backend("numpy", dtype="float64")
        >>> loss, grad = be.softmax_crossentropy(np.zeros((2, 2)), np.eye(2))
        >>> round(float(loss), 4), grad.tolist()
        (1.3863, [[-0.25, 0.25], [0.25, -0.25]])
        """
        return softmax_crossentropy_sum_and_grad(self.xp, logits, onehot)

    def dense_sgd_step_(self, w: Array, b: Array, x: Array, grad_out: Array,
                        lr: float | Array) -> tuple[Array, Array]:
        """The Dense layer's plain SGD step: ``w -= lr * x.T @ grad_out``, ``b -= lr * sum(grad_out)``.

        Returns ``(w, b)``, updated in place where the backend allows (callers
        rebind both). This twin scales the small ``(n, out)`` gradient once
        instead of the ``(in, out)`` weight gradient: same step, fewer flops.
        """
        g = grad_out * lr
        return self.sub_matmul_(w, x.T, g), self.sub_(b, self.xp.sum(g, axis=0))

    def momentum_step_(self, param: Array, velocity: Array, grad: Array, *, lr: float,
                       momentum: float, nesterov: bool,
                       decay: float | Array | None = None) -> tuple[Array, Array]:
        """One step of SGD with momentum in the velocity form; returns ``(param, velocity)``.

        With ``u = lr * (grad + decay * param)`` (no ``decay``: ``lr * grad``)::

            velocity = momentum * velocity - u
            param    = param + momentum * velocity - u   (nesterov)
                       param + velocity                  (otherwise)

        scikit-learn's ``SGDOptimizer``; ``decay`` is its L2 term
        (``alpha / batch weight``, a float or a 0-d array). ``grad`` is only
        read (and may not be ``param`` or ``velocity`` themselves: the fast
        paths then fall back to this twin). Library classes may compute it in
        place (callers rebind both results); this twin allocates.

        Examples
        --------
        >>> import numpy as np, xpnet
        >>> be = xpnet.get_backend("numpy", dtype="float64")
        >>> p, v = be.momentum_step_(np.ones(2), np.zeros(2), np.ones(2), lr=0.5,
        ...                          momentum=0.5, nesterov=False)
        >>> p.tolist(), v.tolist()
        ([0.5, 0.5], [-0.5, -0.5])
        """
        u = grad * lr if decay is None else (grad + param * decay) * lr
        velocity = velocity * momentum - u
        step = velocity * momentum - u if nesterov else velocity
        return param + step, velocity

    def adam_step_(self, param: Array, exp_avg: Array, exp_avg_sq: Array, grad: Array, *,
                   step_size: float | Array, beta1: float, beta2: float, eps: float,
                   decay: float | Array | None = None) -> tuple[Array, Array, Array]:
        """One Adam step, epsilon outside the bias correction; returns ``(param, m, v)``.

        With ``g = grad + decay * param`` (no ``decay``: ``grad``)::

            m     = beta1 * m + (1 - beta1) * g
            v     = beta2 * v + (1 - beta2) * g**2
            param = param - step_size * m / (sqrt(v) + eps)

        scikit-learn's ``AdamOptimizer``, whose ``step_size`` (``lr * sqrt(1 -
        beta2**t) / (1 - beta1**t)``, a float or a 0-d array) the caller
        computes. ``grad`` is only read; library classes may work in place
        (callers rebind all three results).

        Examples
        --------
        >>> import numpy as np, xpnet
        >>> be = xpnet.get_backend("numpy", dtype="float64")
        >>> p, m, v = be.adam_step_(np.ones(1), np.zeros(1), np.zeros(1), np.full(1, 2.0),
        ...                         step_size=0.5, beta1=0.5, beta2=0.75, eps=0.0)
        >>> p.tolist(), m.tolist(), v.tolist()
        ([0.5], [1.0], [1.0])
        """
        g = grad if decay is None else grad + param * decay
        exp_avg = exp_avg * beta1 + g * (1.0 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (g * g) * (1.0 - beta2)
        return param - (exp_avg * step_size) / (self.xp.sqrt(exp_avg_sq) + eps), exp_avg, exp_avg_sq

    def compile(self, fn: Callable) -> Callable:
        """A compiled equivalent of the pure function ``fn``; ``fn`` itself here.

        Libraries that compile (:attr:`compiles`) return their compiled
        version; ``fn`` must then be a pure function of its array arguments.

        Examples
        --------
        >>> import xpnet
        >>> be = xpnet.get_backend("numpy")
        >>> be.compile(abs) is abs
        True
        """
        return fn

    def capture_step(self, step: Callable, params: Callable) -> Callable:
        """A replayed equivalent of ``step(X, onehot, idx) -> loss``; ``step`` itself here.

        ``params()`` lists the arrays the step updates in place. Libraries
        with graph capture (:attr:`captures_graphs`) record one call and replay
        it, as long as ``X``, ``onehot`` and ``params()`` stay the same arrays
        and ``idx`` keeps its shape.
        """
        return step

    def compile_loop(self, body: Callable, *, donate_carry: bool = False) -> Callable:
        """``run(carry, xs, *consts) -> (carry, ys)``: ``body`` applied along ``xs``'s first axis.

        ``body(carry, x, *consts) -> (carry, y)`` is called with ``x = xs[i]``
        for ``i = 0, 1, ...``; ``ys`` stacks the ``y`` (0-d arrays) into a 1-D
        array. This portable twin is a Python loop; libraries that compile
        loops (:attr:`compiles_loops`) return one compiled program with the
        same meaning (``body`` must then be pure, and ``carry`` keep its
        structure, shapes and dtypes). With ``donate_carry`` they may reuse the
        input carry's buffers for the output: the caller must not read the
        carry it passed in again. ``xs`` needs at least one row.

        Examples
        --------
        >>> import xpnet
        >>> be = xpnet.get_backend("numpy", dtype="float64")
        >>> run = be.compile_loop(lambda c, x, k: (c + k * x, c))
        >>> c, ys = run(be.asarray(0.0), be.asarray([1.0, 2.0, 3.0]), 10.0)
        >>> float(c), be.to_numpy(ys).tolist()
        (60.0, [0.0, 10.0, 30.0])
        """
        xp = self.xp

        def run(carry: Any, xs: Array, *consts: Any) -> tuple[Any, Array]:
            ys = []
            for i in range(xs.shape[0]):
                carry, y = body(carry, xs[i, ...], *consts)
                ys.append(y)
            return carry, xp.stack(ys)

        return run


def _raise_no_copy_cast(have: Any, want: Any) -> NoReturn:
    raise ValueError(f"asarray(..., copy=False) cannot change the dtype from {have} to "
                     f"{want} without a copy; use copy=True")


def _float_name(xp: Namespace, dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for a dtype spec, or a :class:`DTypeError`."""
    if isinstance(dtype, str):
        if dtype not in _FLOAT_NAMES:
            raise DTypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        return dtype
    if dtype is xp.float32 or dtype is xp.float64:  # the namespace's own dtype objects
        return "float32" if dtype is xp.float32 else "float64"
    key = _foreign_dtype_name(dtype)
    if key not in _FLOAT_NAMES:
        raise DTypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return key


def _foreign_dtype_name(dtype: Any) -> str:
    """The name of another library's dtype object (np.float64 given to torch, ...)."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        # torch.float64, array_api_strict.float64, ...: the last dotted component
        return repr(dtype).rsplit(".", 1)[-1].strip("')\"")


def _raise_ndim(x: Array, name: str, ndim: int) -> NoReturn:
    hint = ""
    if ndim == 2 and x.ndim == 1:
        hint = " (a single sample? use x[None, :] or reshape it to (1, n_features))"
    elif ndim == 2 and x.ndim > 2:
        hint = " (images? flatten them to (n_samples, n_features) first)"
    raise ShapeError(f"{name} must be a {ndim}-D array, got shape {tuple(x.shape)}{hint}")


def _fmt_shape(shape: tuple) -> str:
    inner = ", ".join("n" if s is None else str(s) for s in shape)
    return "(" + inner + (",)" if len(shape) == 1 else ")")

