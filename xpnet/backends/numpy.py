"""NumPy: the reference backend (CPU only)."""

from __future__ import annotations

import functools
import glob
import os
import threading
from collections.abc import Callable
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
    >>> be.owns(np.zeros(2))  # and any subclass: memory-mapped arrays too
    True
    """

    name = "numpy"
    library = "numpy"
    namespace_module = "array_api_compat.numpy"
    install_hint = "pip install numpy"
    takes_scipy_sparse = True

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
    def affine(self, x: Array, w: Array, b: Array) -> Array:
        # The twin's ``x @ w + b`` holds two (n, out) arrays at once; for large n each
        # is fresh memory from the OS (glibc hands blocks above its mmap/trim thresholds
        # back on free), and the page faults cost more than the product: 1.9 ms against
        # 0.55 ms for (1437, 64) @ (64, 100) in float64. Here the product's own buffer
        # takes the biases.
        y = x @ w  # a new array (also for scipy.sparse x), which nobody else holds
        if type(y) is np.ndarray and y.dtype == np.result_type(y, b) and y.flags.writeable:
            return np.add(y, b, out=y)
        return y + b

    def relu_(self, x: Array) -> Array:
        if type(x) is np.ndarray and x.dtype.kind == "f" and x.flags.writeable:
            return np.maximum(x, 0.0, out=x)
        return super().relu_(x)

    def relu_backward(self, x: Array, grad: Array) -> Array:
        # bool * float directly: the twin's cast mask is a temporary of grad's size.
        if type(grad) is np.ndarray and grad.dtype.kind == "f" and grad.shape == x.shape:
            return np.multiply(grad, x > 0)
        return super().relu_backward(x, grad)

    def relu_backward_(self, x: Array, grad: Array) -> Array:
        if (type(grad) is np.ndarray and grad.dtype.kind == "f" and grad.shape == x.shape
                and grad.flags.writeable):
            return np.multiply(grad, x > 0, out=grad)  # the mask is made before grad is written
        return super().relu_backward_(x, grad)

    def sub_matmul_(self, w: Array, a: Array, b: Array) -> Array:
        # NumPy's matmul cannot accumulate into its output: ``w -= a @ b`` makes a
        # temporary the size of the weights and reads it again. BLAS itself can
        # (``beta=1``, as torch's addmm_ does): 8-15% of a batch-32 MNIST epoch.
        gemm = bundled_gemm()
        if gemm is not None and gemm.subtract_product_(w, a, b):
            return w
        return super().sub_matmul_(w, a, b)

    def softmax_crossentropy(self, logits: Array, onehot: Array) -> tuple[Array, Array]:
        # The twin's arithmetic in eight calls instead of fourteen: the temporaries are
        # written in place and the reductions called as ufunc methods, without NumPy's
        # Python wrappers (9.9 against 16.6 us a step at batch 32).
        m = np.maximum.reduce(logits, axis=1, keepdims=True)
        e = np.subtract(logits, m)
        np.exp(e, out=e)
        s = np.add.reduce(e, axis=1, keepdims=True)
        loss_sum = np.add.reduce(np.log(s) + m, axis=None) - np.vdot(logits, onehot)
        np.divide(e, s, out=e)
        np.subtract(e, onehot, out=e)
        np.multiply(e, 1.0 / logits.shape[0], out=e)  # the gradient of the mean loss
        return loss_sum, e

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


# -- NumPy's own BLAS ----------------------------------------------------------------
#: ``XPNET_NUMPY_BLAS=0`` turns the direct BLAS calls off (every call takes its twin).
#: Read once, at the first weight update of the process.
BLAS_SWITCH = "XPNET_NUMPY_BLAS"
_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112


class BundledGemm:
    """``cblas_sgemm``/``cblas_dgemm`` of the OpenBLAS that NumPy's PyPI wheels bundle.

    NumPy links that library itself, so these calls share its thread pool
    (a second OpenBLAS, e.g. SciPy's, would fight it for the cores).

    Parameters
    ----------
    gemms : dict
        ``{numpy.dtype: ctypes function}`` for float32 and float64.
    max_dim : int
        The largest dimension the library's integer type holds (ctypes would
        wrap a larger one silently).
    """

    def __init__(self, gemms: dict[np.dtype, Callable[..., None]], max_dim: int) -> None:
        self._gemms = gemms
        self._max_dim = max_dim

    def subtract_product_(self, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
        """``c -= a @ b`` in place in one BLAS call; ``False`` (nothing done) if BLAS can't.

        BLAS can when the three are plain ``numpy.ndarray`` objects (not masked
        arrays or other subclasses whose ``@`` means more, nor memmaps: two
        mappings of one file overlap where their addresses do not), 2-D,
        non-empty, of one float dtype, ``c`` is C-contiguous, aligned and
        writable and shares no memory with ``a`` or ``b``, and ``a`` and ``b``
        are each C- or F-contiguous (a transposed view is F-contiguous).

        Overlap is judged by address, as NumPy's own ``out=`` does: arrays that
        view one buffer mapped twice (``np.frombuffer`` on two ``mmap`` objects of
        one file) are beyond it.
        """
        if not (type(c) is np.ndarray and type(a) is np.ndarray and type(b) is np.ndarray):
            return False
        gemm = self._gemms.get(c.dtype)
        if gemm is None or a.dtype != c.dtype or b.dtype != c.dtype:
            return False
        if c.ndim != 2 or a.ndim != 2 or b.ndim != 2 or 0 in a.shape or 0 in b.shape:
            return False
        (m, k), n = a.shape, b.shape[1]
        if b.shape[0] != k or c.shape != (m, n) or max(m, n, k) > self._max_dim:
            return False
        flags = c.flags
        if not (flags.c_contiguous and flags.aligned and flags.writeable):
            return False
        op_a, op_b = _blas_operand(a), _blas_operand(b)
        if op_a is None or op_b is None:
            return False
        if np.may_share_memory(c, a) or np.may_share_memory(c, b):
            return False
        gemm(_CBLAS_ROW_MAJOR, op_a[0], op_b[0], m, n, k, -1.0, a.ctypes.data, op_a[1],
             b.ctypes.data, op_b[1], 1.0, c.ctypes.data, n)
        return True


def _blas_operand(x: np.ndarray) -> tuple[int, int] | None:
    """``(transpose flag, leading dimension)`` of a row-major BLAS operand, or None."""
    if not x.flags.aligned:
        return None
    if x.flags.c_contiguous:
        return _CBLAS_NO_TRANS, x.shape[1]
    if x.flags.f_contiguous:  # x.T is C-contiguous: pass it, transposed
        return _CBLAS_TRANS, x.shape[0]
    return None


@functools.cache
def bundled_gemm() -> BundledGemm | None:
    """NumPy's bundled BLAS, checked on a small product; None where there is none.

    Only the scipy-openblas builds of NumPy's wheels are recognised (their
    exported names say which integer width they take); other builds (conda's
    MKL, Accelerate, a system OpenBLAS) take the portable path.

    Examples
    --------
    >>> from xpnet.backends.numpy import BundledGemm, bundled_gemm
    >>> gemm = bundled_gemm()
    >>> gemm is None or isinstance(gemm, BundledGemm)
    True
    """
    if os.environ.get(BLAS_SWITCH, "1").strip() == "0":
        return None
    try:
        import ctypes  # absent from some minimal Python builds: then the twin it is
    except ImportError:
        return None
    for path in _bundled_blas_paths():
        try:
            gemm = _gemm_from(ctypes.CDLL(path))
        except OSError:
            continue
        if gemm is not None and _gives_matmul(gemm):
            return gemm
    return None


def _bundled_blas_paths() -> list[str]:
    """The scipy-openblas shared libraries shipped inside the NumPy package."""
    root = os.path.dirname(os.path.abspath(np.__file__))
    patterns = [os.path.join(root + ".libs", "*scipy_openblas*"),  # Linux, Windows wheels
                os.path.join(root, ".dylibs", "*scipy_openblas*")]  # macOS wheels
    return sorted(p for pattern in patterns for p in glob.glob(pattern))


def _gemm_from(lib: Any) -> BundledGemm | None:
    """The library's (a ``ctypes.CDLL``) ``?gemm`` with the argument types its names promise."""
    import ctypes

    for suffix, index_t, max_dim in (("64_", ctypes.c_int64, 2**63 - 1),
                                     ("", ctypes.c_int32, 2**31 - 1)):
        gemms = {}
        for dtype, prefix, scalar in ((np.dtype(np.float32), "s", ctypes.c_float),
                                      (np.dtype(np.float64), "d", ctypes.c_double)):
            fn = getattr(lib, f"scipy_cblas_{prefix}gemm{suffix}", None)
            if fn is None:
                break
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, index_t, index_t,
                           index_t, scalar, ctypes.c_void_p, index_t, ctypes.c_void_p,
                           index_t, scalar, ctypes.c_void_p, index_t]
            fn.restype = None
            gemms[dtype] = fn
        if len(gemms) == 2:
            return BundledGemm(gemms, max_dim)
    return None


def _gives_matmul(gemm: BundledGemm) -> bool:
    """Whether ``gemm`` computes what NumPy does on a small product, in every layout."""
    rng = np.random.default_rng(0)
    a64, b64 = rng.random((3, 4)), rng.random((4, 5))
    want = 1.0 - np.matmul(a64, b64)
    for dtype in (np.float32, np.float64):
        a, b = a64.astype(dtype), b64.astype(dtype)
        for a_, b_ in ((a, b), (np.asfortranarray(a), np.asfortranarray(b))):
            c = np.ones((3, 5), dtype=dtype)
            if not gemm.subtract_product_(c, a_, b_):
                return False
            if not np.allclose(c, want, rtol=1e-5, atol=1e-6):
                return False
    return True
