"""What every input kind offers the training loop and the scoring functions.

A :class:`Feed` turns one kind of input (arrays on the device, host data
streamed in chunks, an iterable of batches, rows sharded over MPI ranks) into
*blocks*: rows on the device and the order in which the steps of an epoch
gather them. The loop (:func:`xpnet.training.run_epoch`) and the scoring
functions (:mod:`xpnet.scoring`) only see blocks, never the input kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .._typing import Array
from ..scoring import mean_of

__all__ = ["Block", "Feed"]


@dataclass
class Block:
    """Rows on the device and the order in which an epoch's steps gather them.

    Step ``s`` of the block trains on rows ``order[s * rows:(s + 1) * rows]``
    of ``X`` (and the same rows of ``targets`` and ``weights``).

    Attributes
    ----------
    X : array
        Features on the model's device.
    targets : array
        What the loss compares the outputs with: one-hot labels, or the dense
        targets of another loss.
    order : array
        Device row indices in step order.
    n_steps, rows : int
        Steps in the block, rows per step.
    weights : array or None
        Per-row sample weights of ``X`` (None: unweighted).
    compilable : bool
        Whether the block may run as one compiled program (full batches only).
    host_order : NumPy array or None
        ``order`` on the host, where a step needs it (scikit-learn's sparse rows and
        host sample weights).
    """

    X: Array
    targets: Array
    order: Array
    n_steps: int
    rows: int
    weights: Array | None = None
    compilable: bool = True
    host_order: Any = None


class Feed:
    """One input kind. Subclasses override what differs; the defaults are one process's.

    Attributes
    ----------
    n : int or None
        Rows (None: not known before the data ends, a generator of batches).
    n_steps : int or None
        Training steps per epoch (None: not known in advance).
    weighted : bool
        Whether the rows carry sample weights.
    compiles : bool
        Whether a whole epoch may run as one compiled program (the loop still
        asks the stepper whether it has one).
    is_root : bool
        Whether this process shows the progress bar.
    shardable : bool
        Whether ``distributed=`` can share its rows over MPI ranks.
    rescorable : bool
        Whether the training rows can be read again after an epoch (for ``train_acc``).
    resumes_mid_epoch : bool
        Whether an epoch can be replayed up to any step (a backup may then be taken
        mid-epoch, :mod:`xpnet.backup`); a generator of batches resumes at epoch ends.
    rank, processes : int
        This process's rank among the processes sharing the rows, and their number.
    """

    n: Any = None  # int, or None where unknown
    n_steps: Any = None  # int, or None where unknown
    weighted: bool = False
    compiles: bool = False
    is_root: bool = True
    shardable: bool = False
    rescorable: bool = True
    resumes_mid_epoch: bool = True
    rank: int = 0
    processes: int = 1

    # -- training ---------------------------------------------------------------------
    def epoch_blocks(self, epoch: int, settings: Any) -> Iterator[Block]:
        """The blocks of one epoch, in step order (draws the epoch's batch order)."""
        raise NotImplementedError

    def trained_weight(self) -> float:
        """The total weight of the rows the last epoch trained on (the mean loss's denominator)."""
        raise NotImplementedError

    def reduce(self, value: float) -> float:
        """A per-process sum made global: the identity in one process."""
        return value

    def on_every_rank(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``; a sharded feed makes a failure on one rank fail on every rank."""
        return fn()

    # -- options ----------------------------------------------------------------------
    def refuse_options(self, *, sample_weight: Any, class_weight: Any,
                       validation_split: Any) -> None:
        """Raise for what this kind cannot take (every option works by default)."""

    def host_sample_weight(self, sample_weight: Any) -> Any:
        """Checked host float64 copy of ``fit``'s ``sample_weight`` (None: unweighted)."""
        raise NotImplementedError

    def class_weight_source(self) -> tuple[Any, Any]:
        """``(backend, labels)`` that :func:`~xpnet._weights.class_weight_factors` reads."""
        raise NotImplementedError

    def split(self, at: int) -> tuple[Feed, Feed]:
        """The training rows before ``at`` and the validation rows from ``at`` on."""
        raise NotImplementedError

    def with_weights(self, host_weight: Any) -> Feed:
        """This feed with checked host sample weights (float64, one per row)."""
        raise NotImplementedError

    # -- evaluation -------------------------------------------------------------------
    def eval_blocks(self, model: Any, block: int, *, dense: bool,
                    weighted: bool = True) -> Iterator[tuple[Array, Array, Array | None]]:
        """``(logits, labels or dense targets, weights or None)`` of each block of rows.

        Logits are checked for NaN/inf as in prediction. ``dense``: the loss's
        dense targets instead of integer labels.
        """
        raise NotImplementedError

    def logit_blocks(self, model: Any, block: int) -> Iterator[Array]:
        """The checked logits of every row, block by block (the blocks of prediction)."""
        raise NotImplementedError

    def mean_hits(self, xp: Any, hits: list) -> float:
        """The accuracy from the 0/1 hits of every block of rows (one mean, as in memory)."""
        return mean_of(xp, hits)

    def collect(self, what: str, fn: Callable[[Feed], Array]) -> Array:
        """``fn(feed)`` for the rows of this process; a sharded feed gathers every rank's part."""
        return fn(self)

    def fingerprint(self) -> dict:
        """What identifies the training data (JSON): a backup made on other data is refused."""
        return {"kind": type(self).__name__, "rows": self.n, "steps": self.n_steps}

    def agree(self, value: Any, what: str) -> Any:
        """``value``; a sharded feed checks every rank has an equal one."""
        return value

    def start(self) -> None:
        """Called once before the first epoch (a sharded feed checks the ranks agree)."""
