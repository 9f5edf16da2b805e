"""Synchronous data-parallel communication over MPI (``pip install "xpnet[mpi]"``).

xpnet does not implement a distributed engine of its own: it talks to MPI
through ``mpi4py`` (with the ``mpich`` wheel from PyPI, or the system's MPI).
:func:`init` returns a communicator with the few collectives data-parallel
training needs:

* :meth:`~MPICommunicator.allreduce_mean_` -- the mean over ranks of a list of
  gradients, through **one** fused host buffer per call (one message, not one
  per array); the buffer is allocated once per list of shapes and reused;
* :meth:`~MPICommunicator.allreduce_scalar` -- a loss or a count (sum, mean, max);
* :meth:`~MPICommunicator.broadcast` and :meth:`~MPICommunicator.check_equal`
  -- every rank starts from rank 0's parameters, and stays there bitwise;
* :meth:`~MPICommunicator.gather` / :meth:`~MPICommunicator.allgather` --
  prediction blocks, in rank order;
* :meth:`~MPICommunicator.check_same` -- fail on every rank, before training,
  when the ranks were given different data;
* :meth:`~MPICommunicator.shard` -- each rank's contiguous slice of every
  global batch of one shared permutation.

Without MPI (one process, or mpi4py not installed) :func:`init` returns a
:class:`SingleProcessCommunicator` with the same interface, so training code
has one path whatever the number of processes.

Launch with ``mpiexec -n 4 python -m mpi4py script.py``: through
``-m mpi4py`` an uncaught exception on one rank aborts the whole job in about a
second, instead of leaving the other ranks waiting forever in a collective.

Device arrays
-------------
Today every backend is staged through host memory: arrays are copied into the
fused NumPy buffer (``numpy.from_dlpack`` gives zero-copy views of CPU torch,
JAX and array-api-strict arrays, :meth:`Backend.to_numpy` is the fallback),
reduced by MPI, and copied back with :meth:`Backend.asarray`. A backend that
declares the capability ``device_collectives = "nccl"`` will get NCCL
collectives on the device (CuPy's ``cupy.cuda.nccl``, the unique id broadcast
over MPI) -- that path is a documented stub (``_DEVICE_ALLREDUCE``) until it
can be written and tested on a machine with GPUs; until then such a backend is
staged through the host too. NumPy is used here only for host buffers, like data loading; all
arithmetic on parameters stays in the backends.

Examples
--------
>>> import xpnet
>>> from xpnet.distributed import SingleProcessCommunicator
>>> comm = SingleProcessCommunicator()
>>> comm.rank, comm.size, comm.is_root
(0, 1, True)
>>> be = xpnet.get_backend("numpy", dtype="float64")
>>> [g.tolist() for g in comm.allreduce_mean_([be.asarray([1.0, 2.0])], be)]
[[1.0, 2.0]]
>>> [idx.tolist() for idx in comm.shard(8, 4, rng=0)]
[[2, 4, 3, 6], [5, 0, 1, 7]]
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ._typing import Array
from .errors import BackendUnavailableError, XpnetError, install_command

if TYPE_CHECKING:
    from .backends import Backend

_T = TypeVar("_T")

__all__ = [
    "init",
    "MPICommunicator",
    "SingleProcessCommunicator",
    "DistributedError",
    "MPI_INSTALL_HINT",
    "raised_on_every_rank",
]

MPI_INSTALL_HINT = f'{install_command("mpi")}  (mpi4py>=4 and the mpich wheel)'

#: Environment variables set by the common MPI launchers (MPICH/Hydra, Open MPI, Slurm).
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")

_SCALAR_OPS = ("sum", "mean", "max", "min")


class DistributedError(XpnetError, ValueError):
    """The ranks of a job disagree (data sizes, shapes, parameters) or misuse a collective."""


_EVERY_RANK_MARK = "_xpnet_raised_on_every_rank"


def mark_raised_on_every_rank(exc: BaseException) -> None:
    """Mark ``exc`` as raised by every rank of the job together (none is left waiting)."""
    try:
        setattr(exc, _EVERY_RANK_MARK, True)
    except AttributeError:  # an exception type with __slots__: left unmarked, so ranks abort
        pass


def _disagreement(message: str) -> DistributedError:
    """The error every rank raises when the agreement checks find the ranks differ."""
    error = DistributedError(message)
    mark_raised_on_every_rank(error)
    return error


def raised_on_every_rank(exc: BaseException) -> bool:
    """Whether every rank raised ``exc`` together, so each can exit without ``MPI_Abort``.

    Errors of the agreement checks (:meth:`MPICommunicator.check_same`,
    :meth:`~MPICommunicator.check_equal`, a global batch the ranks do not
    divide in ``fit``) are, and so are the failures that ``fit``, ``evaluate``
    and the backups share with every rank (reading the data, the sample
    weights or a backup; scoring). Any other error may be one rank's alone
    while the others wait in a collective.
    """
    return bool(getattr(exc, _EVERY_RANK_MARK, False))


def _import_mpi() -> Any:
    """``mpi4py.MPI``, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise BackendUnavailableError(
            f"distributed training needs mpi4py, which is not installed ({exc}). "
            f"Install it with: {MPI_INSTALL_HINT}"
        ) from exc
    return MPI


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (``mpiexec``, ``srun``)."""
    return any(os.environ.get(var) for var in _LAUNCHER_SIZE_VARIABLES)


def init(*, require_mpi: bool | None = None) -> Communicator:
    """The communicator of this job: MPI's world, or a single-process stand-in.

    Parameters
    ----------
    require_mpi : bool, optional
        ``True``: use MPI or raise :class:`~xpnet.errors.BackendUnavailableError`.
        ``False``: never touch MPI (a :class:`SingleProcessCommunicator`).
        ``None`` (default): MPI when the process was started by an MPI launcher
        (``mpiexec``, ``srun``), else the single-process stand-in. A process
        started by ``mpiexec`` without mpi4py raises, rather than training
        alone while believing it is one of several ranks.

    Returns
    -------
    MPICommunicator or SingleProcessCommunicator

    Examples
    --------
    >>> from xpnet.distributed import init
    >>> init(require_mpi=False).size
    1
    """
    if require_mpi is False or (require_mpi is None and not launched_by_mpi()):
        # A plain `python script.py` never initialises MPI (no singleton start-up).
        return SingleProcessCommunicator()
    return MPICommunicator(_import_mpi().COMM_WORLD)


# --------------------------------------------------------------------------
# Host staging: one fused buffer for a list of arrays
# --------------------------------------------------------------------------

def _host_view(x: Array, backend: Backend) -> np.ndarray:
    """``x`` readable on the host, without a copy where DLPack allows one.

    ``numpy.from_dlpack`` is zero-copy for CPU arrays of NumPy, torch, JAX and
    array-api-strict; anything else (a GPU array, array-api-strict's fake
    devices) is copied by the backend's explicit transfer.
    """
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.from_dlpack(x)
    except (TypeError, ValueError, RuntimeError, BufferError, AttributeError):
        return backend.to_numpy(x)


class FusedHostBuffer:
    """One contiguous host buffer holding a list of same-dtype arrays back to back.

    Built once per list of shapes and reused every step, so packing and
    reducing allocate nothing new.

    Parameters
    ----------
    shapes : sequence of tuple of int
        The arrays' shapes, in order.
    dtype : numpy.dtype
        Their common dtype.
    """

    def __init__(self, shapes: Sequence[tuple[int, ...]], dtype: Any) -> None:
        self.shapes = tuple(tuple(int(d) for d in s) for s in shapes)
        self.dtype = np.dtype(dtype)
        sizes = [math.prod(s) for s in self.shapes]
        self.offsets = np.cumsum([0] + sizes).tolist()
        self.data = np.empty(self.offsets[-1], dtype=self.dtype)
        self.views = [self.data[lo:hi].reshape(shape) for lo, hi, shape
                      in zip(self.offsets[:-1], self.offsets[1:], self.shapes)]

    def pack(self, arrays: Sequence[Array], backend: Backend) -> np.ndarray:
        """Copy ``arrays`` into the buffer; returns the flat buffer."""
        for view, x in zip(self.views, arrays):
            np.copyto(view, _host_view(x, backend), casting="no")
        return self.data

    def unpack(self, arrays: Sequence[Array], backend: Backend) -> list[Array]:
        """New backend arrays from the buffer, each with the dtype of its counterpart."""
        return [backend.asarray(view, dtype=x.dtype) for view, x in zip(self.views, arrays)]


def _signature(arrays: Sequence[Array]) -> tuple:
    """The key of a list's fused buffer: shapes and the common dtype."""
    if not arrays:
        raise ValueError("expected a non-empty list of arrays, got an empty one")
    dtypes = {str(x.dtype) for x in arrays}
    if len(dtypes) != 1:
        raise TypeError(
            f"all arrays of one fused collective must share a dtype, got {sorted(dtypes)}"
        )
    dtype = str(arrays[0].dtype).replace("torch.", "").rsplit(".", 1)[-1]
    return tuple(tuple(x.shape) for x in arrays), np.dtype(dtype)


#: On-device allreduce implementations by capability name: ``fn(comm, arrays, backend)``.
#: Empty for now. ``"nccl"`` (CuPy, torch on CUDA) is planned: one
#: ``cupy.cuda.nccl.NcclCommunicator`` per job, its unique id broadcast over MPI,
#: each rank on the GPU of its node-local rank
#: (``COMM_WORLD.Split_type(COMM_TYPE_SHARED)``), the fused buffer a device array
#: reduced by ``ncclAllReduce`` on the backend's stream. It is not written yet
#: because it cannot be tested without GPUs.
_DEVICE_ALLREDUCE: dict[str, Callable[..., list[Array]]] = {}


def _collective_path(backend: Backend) -> str:
    """``"host"`` (stage through a NumPy buffer) or the name of an on-device path.

    Chosen by the backend capability ``device_collectives`` (e.g. ``"nccl"``);
    a backend without it, or one whose path is not implemented yet, is staged
    through host memory -- always correct, only slower on a GPU.
    """
    wanted = getattr(backend, "device_collectives", None)
    return wanted if isinstance(wanted, str) and wanted in _DEVICE_ALLREDUCE else "host"


# --------------------------------------------------------------------------
# Communicators
# --------------------------------------------------------------------------

class _CommunicatorBase:
    """What both communicators share: buffer cache, argument checks, sharding."""

    rank: int
    size: int

    def __init__(self) -> None:
        self._buffers: dict = {}

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0 (the one that prints, plots and writes files)."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"

    def _buffer_for(self, arrays: Sequence[Array]) -> FusedHostBuffer:
        # The arrays' own shapes and dtypes as the key: a cheap look-up every step,
        # the validation and the allocation only for a new list of shapes.
        # The array type first: dtypes of different libraries may hash alike, and
        # comparing them warns (array-api-strict) or is ill-defined.
        key = (type(arrays[0]) if arrays else None,
               tuple((tuple(x.shape), x.dtype) for x in arrays))
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = FusedHostBuffer(*_signature(arrays))
        return buf

    def check_same(self, value: _T, what: str) -> _T:
        """``value`` if every rank passed an equal one (each communicator implements it)."""
        raise NotImplementedError

    def check_global_batch(self, global_batch: int) -> int:
        """The per-rank batch size; a ValueError unless ``size`` divides ``global_batch``."""
        if isinstance(global_batch, bool) or not isinstance(global_batch, int) \
                or global_batch < 1:
            raise ValueError(f"global_batch must be a positive int, got {global_batch!r}")
        if global_batch % self.size:
            raise ValueError(
                f"global_batch={global_batch} is not divisible by the {self.size} ranks; "
                f"use a multiple of {self.size} (e.g. {global_batch - global_batch % self.size or self.size}) "
                "so every rank gets an equal slice of each batch"
            )
        return global_batch // self.size

    def shard(self, n: int, global_batch: int, rng: Any = None, *,
              shuffle: bool = True) -> list[np.ndarray]:
        """This rank's sample indices for each global batch of one epoch.

        Every rank draws the same permutation of ``range(n)`` from ``rng``
        (which must therefore be seeded identically on every rank), cuts it
        into global batches of ``global_batch`` samples (the last incomplete
        batch is dropped, as in ``fit``) and takes its contiguous slice of
        each: rank ``r`` gets ``batch[r * b:(r + 1) * b]`` with
        ``b = global_batch // size``. Over all ranks, each global batch is
        covered exactly once, in the order one process would use.

        Parameters
        ----------
        n : int
            Number of training samples (the same on every rank).
        global_batch : int
            Samples per step over all ranks; must divide by :attr:`size`.
        rng : int, numpy.random.Generator or None
            Host RNG of the permutation (ignored when ``shuffle`` is False).
        shuffle : bool, default True
            Draw a permutation; otherwise use ``0, 1, ..., n - 1``.

        Returns
        -------
        list of numpy.ndarray
            One int64 index array of ``global_batch // size`` entries per step.
        """
        local = self.check_global_batch(global_batch)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        if shuffle:
            from .initializers import as_generator

            order = as_generator(rng).permutation(n)
            # Different seeds (or rng=None) would silently drop and repeat samples.
            self.check_same(_checksum(order), "batch order (seed rng identically on every rank)")
        else:
            order = np.arange(n)
        lo = self.rank * local
        return [order[start + lo:start + lo + local]
                for start in range(0, n - global_batch + 1, global_batch)]

    def local_order(self, n: int, global_batch: int, rng: Any = None, *,
                    shuffle: bool = True) -> np.ndarray:
        """This rank's indices for one epoch, step after step: :meth:`shard` as one host array.

        Step ``s`` uses entries ``[s * b, (s + 1) * b)`` with ``b = global_batch // size``,
        so the training loop uploads one array per epoch. With one rank it is the
        first ``(n // global_batch) * global_batch`` entries of the permutation one
        process draws.

        Examples
        --------
        >>> from xpnet.distributed import SingleProcessCommunicator
        >>> SingleProcessCommunicator().local_order(8, 4, rng=0).tolist()
        [2, 4, 3, 6, 5, 0, 1, 7]
        """
        shards = self.shard(n, global_batch, rng, shuffle=shuffle)
        return np.concatenate(shards) if shards else np.empty(0, dtype=np.int64)

    @staticmethod
    def _check_op(op: str) -> str:
        if op not in _SCALAR_OPS:
            raise ValueError(f"op must be one of {_SCALAR_OPS}, got {op!r}")
        return op


class SingleProcessCommunicator(_CommunicatorBase):
    """The communicator of a job with one process: every collective is the identity.

    It has the interface of :class:`MPICommunicator` and needs no MPI, so the
    training code is the same with and without ``mpiexec``. Like the MPI one,
    it returns new arrays rather than its arguments.
    """

    rank = 0
    size = 1

    def allreduce_mean_(self, arrays: Sequence[Array], backend: Backend) -> list[Array]:
        """The mean over one rank: copies of ``arrays`` (see :meth:`MPICommunicator.allreduce_mean_`)."""
        buf = self._buffer_for(arrays)
        buf.pack(arrays, backend)
        return buf.unpack(arrays, backend)

    def allreduce_scalar(self, value: Any, op: str = "sum") -> float:
        """``float(value)``: the sum, mean, max or min over one rank."""
        self._check_op(op)
        return float(value)

    def broadcast(self, arrays: Sequence[Array], backend: Backend, root: int = 0) -> list[Array]:
        """Copies of ``arrays`` (rank 0's parameters are this process's)."""
        return self.allreduce_mean_(arrays, backend)

    def check_equal(self, arrays: Sequence[Array], backend: Backend, what: str = "parameters") -> str:
        """The checksum of ``arrays`` (one rank always agrees with itself)."""
        return _checksum(self._buffer_for(arrays).pack(arrays, backend))

    def check_same(self, value: _T, what: str) -> _T:
        """``value`` (one rank always agrees with itself)."""
        return value

    def gather(self, block: Array, backend: Backend, root: int = 0) -> Array | None:
        """``block`` itself: rank 0 holds every block."""
        return block

    def allgather(self, block: Array, backend: Backend) -> Array:
        """``block`` itself."""
        return block

    def barrier(self) -> None:
        """Nothing to wait for."""

    def abort(self, code: int = 1) -> None:
        """Exit the process with ``code``."""
        raise SystemExit(code)


def _checksum(host_buffer: np.ndarray) -> str:
    """A digest of the bytes of a host buffer (bitwise equality, NaN patterns included)."""
    return hashlib.blake2b(host_buffer.tobytes(), digest_size=16).hexdigest()


class MPICommunicator(_CommunicatorBase):
    """Data-parallel collectives over an ``mpi4py`` communicator (usually ``COMM_WORLD``).

    Build it with :func:`init`. Every method is collective: all ranks must call
    it, in the same order, or the job waits (launch with ``-m mpi4py`` so an
    exception on one rank aborts the others).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The communicator (``MPI.COMM_WORLD`` by default through :func:`init`).
    """

    def __init__(self, comm: Any) -> None:
        super().__init__()
        self._MPI = _import_mpi()
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._scalar = np.zeros(1, dtype=np.float64)  # reused by allreduce_scalar

    def allreduce_mean_(self, arrays: Sequence[Array], backend: Backend) -> list[Array]:
        """The element-wise mean over ranks of each array in ``arrays``.

        All arrays travel in one message: they are packed into a fused host
        buffer (allocated on the first call for this list of shapes, reused
        afterwards), summed in place by ``Allreduce(IN_PLACE)``, divided by
        :attr:`size` and copied back with ``backend.asarray``. Every rank gets
        bitwise the same result.

        Parameters
        ----------
        arrays : list of arrays
            Arrays of ``backend`` with one common dtype, e.g. a model's gradients.
        backend : Backend
            Their backend.

        Returns
        -------
        list of arrays
            New arrays (callers rebind: ``grads = comm.allreduce_mean_(grads, be)``).
        """
        path = _collective_path(backend)
        if path != "host":  # pragma: no cover - no on-device path is registered yet
            return _DEVICE_ALLREDUCE[path](self, arrays, backend)
        buf = self._buffer_for(arrays)
        data = buf.pack(arrays, backend)
        self.comm.Allreduce(self._MPI.IN_PLACE, data, op=self._MPI.SUM)
        data /= self.size  # host buffer: the one division of the fused mean
        return buf.unpack(arrays, backend)

    def allreduce_scalar(self, value: Any, op: str = "sum") -> float:
        """A Python float reduced over ranks by ``op`` (``"sum"``, ``"mean"``, ``"max"``, ``"min"``).

        ``value`` may be a Python number or a 0-d backend array (read back
        with ``float``). Reduced in float64.
        """
        self._check_op(op)
        mpi_op = {"sum": self._MPI.SUM, "mean": self._MPI.SUM,
                  "max": self._MPI.MAX, "min": self._MPI.MIN}[op]
        self._scalar[0] = float(value)
        self.comm.Allreduce(self._MPI.IN_PLACE, self._scalar, op=mpi_op)
        result = float(self._scalar[0])
        return result / self.size if op == "mean" else result

    def broadcast(self, arrays: Sequence[Array], backend: Backend, root: int = 0) -> list[Array]:
        """Rank ``root``'s ``arrays`` on every rank (new arrays; shapes must agree).

        The shapes and dtype are checked on every rank first, so a mismatch is
        a clear error everywhere rather than a truncated message.
        """
        key = _signature(arrays)
        self.check_same((key[0], key[1].str), "shapes and dtype of the broadcast arrays")
        buf = self._buffer_for(arrays)
        data = buf.pack(arrays, backend) if self.rank == root else buf.data
        self.comm.Bcast(data, root=root)
        return buf.unpack(arrays, backend)

    def check_equal(self, arrays: Sequence[Array], backend: Backend, what: str = "parameters") -> str:
        """Raise a :class:`DistributedError` on every rank unless ``arrays`` are bitwise equal on all ranks.

        Compares a checksum of the fused host buffer; returns it.
        """
        digest = _checksum(self._buffer_for(arrays).pack(arrays, backend))
        digests = self.comm.allgather(digest)
        differing = [r for r, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise _disagreement(
                f"{what} differ between ranks: ranks {differing} do not match rank 0 "
                "(broadcast them from rank 0 with comm.broadcast before training)"
            )
        return digest

    def check_same(self, value: _T, what: str) -> _T:
        """``value`` if every rank passed an equal one; else a DistributedError on every rank.

        Use it before training for what must agree (number of samples, input
        shape, dtype, global batch, seed...). ``value`` must be picklable and
        comparable with ``==``.
        """
        values = self.comm.allgather(value)
        if any(v != values[0] for v in values[1:]):
            listing = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
            raise _disagreement(
                f"the ranks were given different {what} ({listing}); every rank must "
                "load the same data and use the same settings"
            )
        return value

    def _blocks_layout(self, block: Array, backend: Backend) -> tuple[np.ndarray, tuple, list[int], list[int]]:
        """Host copy of ``block``, the rows of every rank, and the per-rank element counts."""
        host = np.ascontiguousarray(_host_view(block, backend))
        tail = tuple(host.shape[1:])
        self.check_same((tail, host.dtype.str), "trailing shape and dtype of the gathered blocks")
        rows = self.comm.allgather(int(host.shape[0]))
        counts = [r * math.prod(tail) for r in rows]
        return host, tail, rows, counts

    def gather(self, block: Array, backend: Backend, root: int = 0) -> Array | None:
        """The blocks of all ranks concatenated along axis 0 in rank order, on ``root``.

        Other ranks get ``None``. Blocks may differ in their number of rows,
        not in their trailing shape or dtype (checked on every rank).
        """
        host, tail, rows, counts = self._blocks_layout(block, backend)
        out = np.empty((sum(rows), *tail), dtype=host.dtype) if self.rank == root else None
        self.comm.Gatherv(host, (out, counts) if self.rank == root else None, root=root)
        return backend.asarray(out, dtype=block.dtype) if self.rank == root else None

    def allgather(self, block: Array, backend: Backend) -> Array:
        """The blocks of all ranks concatenated along axis 0 in rank order, on every rank."""
        host, tail, rows, counts = self._blocks_layout(block, backend)
        out = np.empty((sum(rows), *tail), dtype=host.dtype)
        self.comm.Allgatherv(host, (out, counts))
        return backend.asarray(out, dtype=block.dtype)

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (``MPI_Abort``)."""
        self.comm.Abort(code)


#: Either communicator: what :func:`init` returns and ``fit(distributed=...)`` takes.
Communicator = SingleProcessCommunicator | MPICommunicator
