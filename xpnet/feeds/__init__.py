"""Input kinds: the one package that knows what ``X`` is.

:func:`as_feed` picks one :class:`Feed` for ``fit``'s input, once;
:func:`as_eval_feed` one for ``predict``/``evaluate``; :func:`apply_options`
applies ``fit``'s sample weights, class weights and validation split to any
of them. The training loop (:func:`xpnet.training.run_epoch`) and the scoring
functions (:mod:`xpnet.scoring`) then see blocks of rows, never the kind:

========================  =====================================================
kind                      feed
========================  =====================================================
arrays on the device      :class:`~xpnet.feeds.arrays.ArrayFeed`: one block per epoch
host NumPy data           :class:`~xpnet.feeds.host.HostFeed`: one block per chunk,
(``np.memmap``, or NumPy  moved to the device by a loader thread, the in-memory
on another backend)       permutation (same weights bit for bit)
an iterable of batches    :class:`~xpnet.feeds.batches.BatchFeed`: one block per batch
``distributed=comm``      :class:`~xpnet.feeds.sharded.ShardedFeed`: arrays whose rows
                          the MPI ranks share, sums reduced over ranks
========================  =====================================================

Host data that is not a NumPy array yet (lists, pandas DataFrames and Series,
``__array__`` objects) becomes one first, and host data of another dtype is
converted to the model's in its one copy to the device
(:mod:`~xpnet.feeds.convert`); tensors of an array library are never converted.
A list is data when ``y`` is given and an iterable of batches when it is not.

A new input kind is a new module here with a :class:`Feed` subclass and one
line in :func:`as_feed` (see ``docs/architecture.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._distributed_fit import check_inputs_agree, on_every_rank
from .._validation import check_int
from .._weights import check_sample_weight, class_weight_factors, validation_split_index
from .arrays import ArrayFeed, UncheckedArrays, check_batch_fits, check_labels, check_targets
from .base import Block, Feed
from .batches import BatchFeed, BatchSource
from .convert import as_host_array, device_targets, in_memory_features, is_host_like
from .host import DEFAULT_CHUNK_BYTES, HostData, HostFeed, host_sample_weight, is_host_array
from .sharded import ShardedFeed, check_same_weights

__all__ = ["Feed", "Block", "as_feed", "as_eval_feed", "as_validation_feed", "apply_options",
           "shard", "ArrayFeed", "HostFeed", "BatchFeed", "ShardedFeed", "HostData",
           "BatchSource", "DEFAULT_CHUNK_BYTES", "is_host_array", "check_labels"]


def _refuse_sharding(distributed: Any, what: str) -> None:
    if distributed is not None:
        raise NotImplementedError(
            f"{what}(distributed=...) takes arrays on the model's device; host data and "
            "batch iterables are streamed by one process only (for now)"
        )


def _streams_arrays(backend: Any) -> bool:
    """Whether ``backend`` streams an in-memory NumPy array (every backend but NumPy's)."""
    return is_host_array(backend, np.empty((0,)))


def _is_host_pair(backend: Any, pair: Any) -> bool:
    return (isinstance(pair, (tuple, list)) and len(pair) == 2
            and (is_host_array(backend, pair[0])
                 or (is_host_like(pair[0]) and _streams_arrays(backend))))


def _features(model: Any, X: Any, name: str = "X") -> Any:
    """Host data as a NumPy array, converted to the model's dtype unless it is streamed."""
    be = model.backend
    return in_memory_features(be, X, name, lambda x: is_host_array(be, x))


def _host_inputs(model: Any, X: Any, y: Any, names: tuple[str, str] = ("X", "y")) -> tuple:
    """``(X, y)`` converted for the feed ``X`` picks: streamed host arrays, or device arrays."""
    X = _features(model, X, names[0])
    if is_host_array(model.backend, X):
        return X, as_host_array(y, names[1])
    return X, (None if y is None else device_targets(model, y, names[1]))


def as_feed(model: Any, X: Any, y: Any, *, shuffle: Any = True, chunk_bytes: Any = None,
            distributed: Any = None, validation_data: Any = None) -> Any:
    """The feed of ``fit``'s training input, before its arrays are checked (``.check(batch_size)``).

    Host data is checked here (dtype, shape, labels: nothing is read but the
    labels); arrays on the device by ``check``, which also knows the batch size.
    """
    chunkwise = isinstance(shuffle, str) and shuffle == "chunks"
    if y is not None or not isinstance(X, (list, tuple)):  # a list without y: batches
        X, y = _host_inputs(model, X, y)
    feed: Any
    if is_host_array(model.backend, X):
        feed = HostFeed(model, HostData.of(model, X, y, chunk_bytes=chunk_bytes,
                                           shuffle_chunks=chunkwise))
    elif chunkwise:
        raise ValueError("shuffle='chunks' (the approximate shuffle) is for host data "
                         "(a NumPy array or np.memmap); use shuffle=True here")
    elif BatchSource.accepts(X):
        if y is not None:
            raise TypeError(
                f"X is a {type(X).__name__}, which fit takes as an iterable of (X_batch, "
                f"y_batch[, w_batch]) batches, so y must be None (got {type(y).__name__}); samples "
                "go in a list, a NumPy array or a DataFrame"
            )
        feed = BatchFeed(model, BatchSource(model, X))
    else:
        feed = UncheckedArrays(model, X, y)
    if not feed.shardable or _is_host_pair(model.backend, validation_data):
        _refuse_sharding(distributed, "fit")
    return feed


def as_validation_feed(model: Any, validation_data: Any, chunk_bytes: Any = None) -> Feed | None:
    """``fit``'s ``validation_data=(X_val, y_val)`` as a checked feed (None: none given)."""
    if validation_data is None:
        return None
    try:
        vx, vy = validation_data
    except (TypeError, ValueError):
        raise TypeError("validation_data must be a pair (X_val, y_val)") from None
    names = ("validation_data[0]", "validation_data[1]")
    vx, vy = _host_inputs(model, vx, vy, names)
    if is_host_array(model.backend, vx):  # scored chunk by chunk
        return HostFeed(model, HostData.of(model, vx, vy, chunk_bytes=chunk_bytes, names=names))
    model.layers[0]._check_input(vx, "validation_data[0]")
    check_targets(model, vy, vx.shape[0], "validation_data[1]")
    return ArrayFeed(model, vx, vy)


def apply_options(model: Any, feed: Feed, validation: Feed | None, *, batch_size: int,
                  sample_weight: Any = None, class_weight: Any = None,
                  validation_split: Any = 0.0) -> tuple[Feed, Feed | None]:
    """``fit``'s sample weights, class weights and validation split, for any input kind.

    The weights are checked on the host once (float64, class weights folded
    in); the *last* fraction of the rows validates (as Keras, before any
    shuffling). Returns the training feed and the validation feed.
    """
    feed.refuse_options(sample_weight=sample_weight, class_weight=class_weight,
                        validation_split=validation_split)
    weights = feed.host_sample_weight(sample_weight)
    be, labels = feed.class_weight_source()
    factors = class_weight_factors(be, labels, model.loss, class_weight, model.n_outputs)
    if factors is not None:
        weights = factors if weights is None else weights * factors
    split_at = validation_split_index(validation_split, feed.n, validation is not None)
    if split_at is not None:
        feed, validation = feed.split(split_at)
        weights = None if weights is None else weights[:split_at]
        check_batch_fits(batch_size, feed.n)
    if weights is not None:
        feed = feed.with_weights(weights)
    return feed, validation


def shard(feed: Any, comm: Any) -> Any:
    """``feed`` with its rows shared by the ranks of ``comm`` (None: ``feed`` itself)."""
    if comm is None or feed is None:
        return feed
    return ShardedFeed(feed, comm)


def as_eval_feed(model: Any, X: Any, y: Any = None, *, block: Any, method: str,
                 chunk_bytes: Any = None, distributed: Any = None,
                 sample_weight: Any = None) -> Feed:
    """The feed of ``predict``/``evaluate``'s input (``y`` given: ``evaluate``), checked."""
    X, y = _host_inputs(model, X, y)
    if is_host_array(model.backend, X):
        _refuse_sharding(distributed, method)
        check_int(block, "batch_size", low=1)
        data = HostData.of(model, X, y, chunk_bytes=chunk_bytes)
        _refuse_empty(y, data.n)
        weights = host_sample_weight(sample_weight, data.n)
        streamed = HostFeed(model, data, batch_size=block)
        return streamed if weights is None else streamed.with_weights(weights)
    if distributed is not None:
        check_inputs_agree(distributed, X, y, batch_size=block, sample_weight=sample_weight,
                           what="prediction inputs" if y is None else "evaluation data")
    model.layers[0]._check_input(X, "X")
    if y is not None:
        check_targets(model, y, X.shape[0])
    check_int(block, "batch_size", low=1)
    _refuse_empty(y, X.shape[0])
    host = None if sample_weight is None else on_every_rank(
        distributed, "checking the sample weights",
        lambda: check_sample_weight(model.backend, sample_weight, X.shape[0]))
    feed = ArrayFeed(model, X, y, host_weight=host, batch_size=block)
    if distributed is not None and host is not None:
        check_same_weights(distributed, host)
    return shard(feed, distributed)


def _refuse_empty(y: Any, n: int) -> None:
    if y is not None and n == 0:
        raise ValueError("X and y are empty: there is nothing to evaluate")
