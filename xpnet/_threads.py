"""How many BLAS threads a ``fit`` uses: one for small steps, the library's default for large ones.

At the tutorial's batch sizes a step's matrix products are too small to share
out: waking BLAS threads costs more than it saves, and on a machine whose
cores are busy with other work the threads wait for each other (``make
demo`` took 180 s instead of 17 s on a loaded 2-core machine). So each
``fit`` chooses from the work of one step (multiply-adds of its Dense layers
times the batch size): below :data:`SMALL_STEP_FLOPS` one thread, above it
the BLAS library's own default. ``XPNET_BLAS_THREADS`` (a positive int, or
``auto``) and ``fit(blas_threads=...)`` override the choice. The limit goes
through threadpoolctl, as in scikit-learn, for the duration of the fit only,
and is a no-op where threadpoolctl is not installed. An lbfgs fit of
``xpnet.sklearn`` also runs SciPy's own BLAS on one thread
(:func:`scipy_blas_one_thread`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["ENV_VAR", "SMALL_STEP_FLOPS", "step_flops", "threads_for", "blas_threads",
           "scipy_blas_paths", "scipy_blas_one_thread"]

ENV_VAR = "XPNET_BLAS_THREADS"
#: Floating-point operations of one training step below which one BLAS thread
#: is used (see ``benchmarks/results/blas_threads.md`` for the measurements).
SMALL_STEP_FLOPS = 50e6


def step_flops(layers: Any, batch_size: int) -> float:
    """Floating-point operations of one training step: three products per Dense layer.

    Examples
    --------
    >>> import xpnet
    >>> model = xpnet.Sequential.mlp([784, 100, 200, 10], backend="numpy")
    >>> f"{step_flops(model.layers, 32) / 1e6:.1f} MFLOP"
    '19.3 MFLOP'
    """
    macs = sum(getattr(layer, "input_units", 0) * getattr(layer, "output_units", 0)
               for layer in layers if getattr(layer, "input_units", None) is not None)
    return 2.0 * 3.0 * macs * batch_size  # forward, input gradient, weight gradient


def _requested(value: Any) -> int | None:
    """``value`` (or the environment's) as a thread count; None for ``"auto"``."""
    if value is None:
        value = os.environ.get(ENV_VAR, "auto").strip() or "auto"
    if isinstance(value, str) and value.lower() == "auto":
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1 or (not isinstance(value, str) and count != value):
        raise ValueError(f"blas_threads (or {ENV_VAR}) must be a positive int or 'auto', "
                          f"got {value!r}")
    return count


def threads_for(flops: float, requested: Any = None) -> int | None:
    """The BLAS thread limit for a step of ``flops`` operations (None: the library's default).

    Examples
    --------
    >>> threads_for(19.3e6, "auto"), threads_for(2.5e9, "auto"), threads_for(2.5e9, 3)
    (1, None, 3)
    """
    count = _requested(requested)
    if count is not None:
        return count
    return 1 if flops < SMALL_STEP_FLOPS else None


def blas_threads(layers: Any, batch_size: int, requested: Any = None) -> Any:
    """A context manager limiting the BLAS threads for one fit (threadpoolctl), or a null one."""
    limit = threads_for(step_flops(layers, batch_size), requested)
    if limit is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its own default
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")


def scipy_blas_paths(filepaths: list, scipy_dir: str) -> list:
    """The BLAS libraries among ``filepaths`` that scipy ships for itself (wheel layout:
    inside the package or its ``scipy.libs`` sibling); none where scipy uses a shared one.

    Examples
    --------
    >>> scipy_blas_paths(["/sp/scipy.libs/libscipy_openblas.so",
    ...                   "/sp/numpy.libs/libscipy_openblas64_.so"], "/sp/scipy")
    ['/sp/scipy.libs/libscipy_openblas.so']
    >>> scipy_blas_paths(["/conda/lib/libopenblas.so"], "/conda/lib/python3.12/site-packages/scipy")
    []
    """
    roots = tuple(os.path.join(scipy_dir + suffix, "") for suffix in ("", ".libs"))
    return [path for path in filepaths if os.path.realpath(path).startswith(roots)]


def scipy_blas_one_thread() -> Any:
    """A context manager: one thread for scipy's own BLAS library, for an lbfgs fit.

    pip's scipy and numpy wheels each bring an OpenBLAS with its own thread pool:
    L-BFGS-B's vector work runs on scipy's, the loss and gradient on the array
    library's. A pool's threads keep spinning for a while after each call, so
    two pools take cores from each other: a digits lbfgs fit on a 2-core machine
    took 3x longer with both pools at 2 threads than with scipy's at 1
    (``benchmarks/results/sklearn_compare.md``). L-BFGS-B's vectors are small next to the
    products, so one thread costs it nothing. Where scipy shares the array
    library's BLAS (conda), nothing is limited.
    """
    scipys = _scipy_blas_controller()
    return contextlib.nullcontext() if scipys is None else _SCIPY_ONE_THREAD.held(scipys)


class _SharedLimit:
    """One thread for a pool while any fit needs it, restored when the last one ends.

    Fits in several Python threads (joblib's threading backend) overlap: with a
    limiter each, the one that ends last would restore the limit of one instead
    of the pool's own count.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._limiter: Any = None

    @contextlib.contextmanager
    def held(self, controller: Any) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._limiter = controller.limit(limits=1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._limiter.restore_original_limits()


_SCIPY_ONE_THREAD = _SharedLimit()


@functools.cache
def _scipy_blas_controller() -> Any:
    """threadpoolctl's controller of scipy's own BLAS libraries, or None; found once (a
    search of the loaded libraries takes milliseconds, a share of a small lbfgs fit)."""
    try:
        import scipy.optimize  # noqa: F401  (loads scipy's BLAS)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()
    blas = [lib.filepath for lib in controller.lib_controllers if lib.user_api == "blas"]
    paths = scipy_blas_paths(blas, os.path.realpath(os.path.dirname(scipy.__file__)))
    return controller.select(filepath=paths) if paths else None
