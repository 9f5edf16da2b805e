"""Rows sharded over MPI ranks (``fit``/``predict``/``evaluate`` with ``distributed=``).

Every rank holds the same arrays on its device. In training, every rank draws
the same permutation and takes its contiguous slice of each global batch
(:meth:`~xpnet.distributed.MPICommunicator.local_order`); the loss, the
training accuracy and the validation scores are reduced over ranks, so every
rank logs the same numbers and stops together. In prediction and scoring each
rank takes whole blocks of rows (:func:`shard_rows`): bitwise the blocks of one
process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .._distributed_fit import on_every_rank
from .._typing import Array
from ..scoring import logit_blocks
from .arrays import ArrayFeed, data_fingerprint, weights_fingerprint
from .base import Block, Feed

__all__ = ["ShardedFeed", "shard_rows", "check_same_weights", "data_fingerprint"]


def shard_rows(n: int, block: int, rank: int, size: int) -> tuple:
    """This rank's contiguous rows ``[lo, hi)`` of ``n``, cut at multiples of ``block``.

    Whole blocks are dealt out, so each rank computes exactly the blocks one
    process would (bitwise the same logits).

    Examples
    --------
    >>> from xpnet.feeds.sharded import shard_rows
    >>> [shard_rows(2500, 1024, r, 2) for r in range(2)]
    [(0, 1024), (1024, 2500)]
    """
    n_blocks = -(-n // block)
    return (min(rank * n_blocks // size * block, n),
            min((rank + 1) * n_blocks // size * block, n))


def check_same_weights(comm: Any, host_weight: Any) -> None:
    """A DistributedError on every rank unless the host weights are bitwise equal on all ranks."""
    comm.check_same(weights_fingerprint(host_weight),
                    "sample weights (a fingerprint of their values)")


class ShardedFeed(Feed):
    """An :class:`~xpnet.feeds.arrays.ArrayFeed` whose rows the ranks of ``comm`` share."""

    def __init__(self, inner: ArrayFeed, comm: Any) -> None:
        self.inner, self.comm = inner, comm
        self.n, self.n_steps = inner.n, inner.n_steps
        self.weighted = inner.weighted
        self.is_root = comm.is_root
        self.rank, self.processes = comm.rank, comm.size
        self._host_order: Any = None

    def fingerprint(self) -> dict:
        return {**self.inner.fingerprint(), "ranks": self.comm.size}

    def agree(self, value: Any, what: str) -> Any:
        return self.comm.check_same(value, what)

    @property
    def model(self) -> Any:
        return self.inner.model

    def start(self) -> None:
        """A DistributedError on every rank unless the ranks hold the same data and weights."""
        inner = self.inner
        self.comm.check_same(data_fingerprint(inner.model.backend, inner.X, inner.y),
                             "training data (a fingerprint of the labels and of 16 rows of X)")
        if inner.host_weight is not None:
            check_same_weights(self.comm, inner.host_weight)
        inner.start()

    # -- training ---------------------------------------------------------------------
    def epoch_blocks(self, epoch: int, settings: Any) -> Iterator[Block]:
        inner, comm = self.inner, self.comm
        be = inner.model.backend
        local = comm.check_global_batch(settings.batch_size)
        self._host_order = comm.local_order(inner.n, settings.batch_size, settings.rng,
                                            shuffle=settings.shuffle)
        order = be.asarray(self._host_order, dtype=be.index_dtype)
        yield Block(inner.X, inner.targets(), order, inner.n_steps, local, inner.weights)

    def trained_weight(self) -> float:
        """The total weight of the rows all ranks trained on in the epoch."""
        inner = self.inner
        if inner.host_weight is None:
            return float(max(inner.n_steps * inner.batch_size, 1))
        total = self.comm.allreduce_scalar(float(inner.host_weight[self._host_order].sum()), "sum")
        return total if total > 0 else 1.0

    def reduce(self, value: float) -> float:
        # A sum spreads a NaN of any rank to all: every rank stops together.
        return self.comm.allreduce_scalar(value, "sum")

    def on_every_rank(self, what: str, fn: Callable[[], Any]) -> Any:
        return on_every_rank(self.comm, what, fn)

    # -- evaluation: whole blocks of rows per rank ------------------------------------
    def _shard(self, block: int) -> ArrayFeed:
        inner = self.inner
        lo, hi = shard_rows(inner.n, block, self.comm.rank, self.comm.size)
        part = ArrayFeed(inner.model, inner.X[lo:hi, ...], inner.y[lo:hi, ...]
                         if inner.y is not None else None)
        part.weights = None if inner.weights is None else inner.weights[lo:hi]
        return part

    def eval_blocks(self, model: Any, block: int, *, dense: bool,
                    weighted: bool = True) -> Iterator[tuple[Array, Array, Array | None]]:
        part = self._shard(block)
        if part.n == 0:
            return iter(())
        if dense:
            return part.eval_blocks(model, block, dense=True, weighted=weighted)
        # One block of the shard's logits: the labels' loss is summed over it at once.
        blocks = logit_blocks(model, part.X, block)
        z = blocks[0] if len(blocks) == 1 else model.backend.xp.concat(blocks, axis=0)
        return iter([(z, part.y, None)])

    def mean_hits(self, xp: Any, hits: list) -> float:
        local = 0.0
        if hits:
            local = float(xp.sum(hits[0] if len(hits) == 1 else xp.concat(hits, axis=0)))
        return self.comm.allreduce_scalar(local, "sum") / max(self.n, 1)

    def collect(self, what: str, fn: Callable[[Feed], Array]) -> Array:
        part = self._shard(self.inner.batch_size)
        local = on_every_rank(self.comm, what, lambda: fn(part))
        return self.comm.allgather(local, self.inner.model.backend)
