"""The "lbfgs" solver: scipy's L-BFGS-B over the flattened parameters, as scikit-learn runs it.

The loss and its gradient are computed on the estimator's backend (any array
library, any device); only the flat parameter and gradient vectors cross to
the host, where scipy's optimizer lives. The vector is laid out as
scikit-learn's ``_pack``: every weight matrix (row-major), then every bias.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize
from sklearn.utils.optimize import _check_optimize_result

from .._threads import scipy_blas_one_thread
from ..feeds.sparse import SparseRows
from ..optimizers import KeepGrads
from ..training import train_step
from ._network import dense_layers
from ._stochastic import squared_norm


class LbfgsMixin:
    """``solver="lbfgs"`` for :class:`~xpnet.sklearn._base.BaseMLP`."""

    if TYPE_CHECKING:  # attributes of the estimator this mixin is part of
        def __getattr__(self, name: str) -> Any: ...

    def _fit_lbfgs(self, be, X, targets, sw) -> None:
        """scikit-learn's ``_fit_lbfgs``: ``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``."""
        layers = dense_layers(self._layers)
        keep = KeepGrads()
        for layer in layers:
            layer.optimizer = keep  # gradients are kept for the optimizer, never applied
        loss = self._lbfgs_loss()
        weights = None if sw is None else be.asarray(sw)
        sw_sum = float(X.shape[0]) if sw is None else float(sw.sum())
        with scipy_blas_one_thread():  # its pool would take cores from the products'
            result = scipy.optimize.minimize(
                self._lbfgs_loss_grad, self._pack(be, [(d.weights, d.biases) for d in layers]),
                method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
                args=(be, X, targets, weights, sw_sum, loss))
        # The same n_iter_ and ConvergenceWarning as scikit-learn (its own helper).
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        self._unpack(be, result.x)
        self._optimizer = None  # a later stochastic fit makes its own

    @staticmethod
    def _pack(be, pairs) -> np.ndarray:
        """Host float64 vector: the weights of every layer, then the biases."""
        xp = be.xp
        flat = [xp.reshape(w, (-1,)) for w, _ in pairs] + [b for _, b in pairs]
        return np.asarray(be.to_numpy(xp.concat(flat)), dtype=np.float64)

    def _unpack(self, be, packed: np.ndarray) -> None:
        """Load the host vector ``packed`` into the layers (one transfer to the device)."""
        xp = be.xp
        flat = be.asarray(packed)
        layers = dense_layers(self._layers)
        start = 0
        for name in ("weights", "biases"):
            for layer in layers:
                shape = tuple(getattr(layer, name).shape)
                size = int(np.prod(shape))
                layer.set_param(name, xp.reshape(flat[start:start + size], shape))
                start += size

    def _lbfgs_loss_grad(self, packed, be, X, targets, weights, sw_sum: float, loss):
        """Loss (scikit-learn's: data term plus ``alpha/2 * ||W||^2 / sum(w)``) and its
        gradient as a host vector, for scipy."""
        self._unpack(be, packed)
        xp = be.xp
        layers = dense_layers(self._layers)
        loss_sum, grads = self._data_loss_grad(be, X, targets, weights, sw_sum, loss)
        penalty = sum(squared_norm(xp, d.weights) for d in layers)
        total = loss_sum / sw_sum + (0.5 * float(self.alpha)) * penalty / sw_sum
        coef = float(self.alpha) / sw_sum  # biases are not penalised
        pairs = [(gw + coef * d.weights, gb) for (gw, gb), d in zip(grads, layers)]
        return float(total), self._pack(be, pairs)

    def _data_loss_grad(self, be, X, targets, weights, sw_sum: float, loss):
        """Summed data loss and the per-layer gradients of its weighted mean, over all rows
        (sparse input block by block, each block's share of the mean added up)."""
        if not isinstance(X, SparseRows):
            return self._block_loss_grad(be, X, targets, weights, loss), self._layer_grads()
        xp, total, grads = be.xp, 0.0, None
        for lo in range(0, X.shape[0], _BLOCK_ROWS):
            idx = np.arange(lo, min(lo + _BLOCK_ROWS, X.shape[0]))
            idx_d = be.asarray(idx, dtype=be.index_dtype)
            wb = None if weights is None else xp.take(weights, idx_d, axis=0)
            total = total + self._block_loss_grad(be, X.rows(idx), be.take_rows(targets, idx_d),
                                                  wb, loss)
            share = (idx.shape[0] if wb is None else float(xp.sum(wb))) / sw_sum
            block = [(gw * share, gb * share) for gw, gb in self._layer_grads()]
            grads = block if grads is None else [
                (a + c, b + d) for (a, b), (c, d) in zip(grads, block)]
        return total, grads

    def _block_loss_grad(self, be, xb, tb, wb, loss):
        """Forward and backward over one block; the gradients stay in ``layer.grads``."""
        return train_step(self._layers, be.xp, xb, tb, 0, loss=loss, weights=wb)

    def _layer_grads(self) -> list:
        return [(d.grads["weights"], d.grads["biases"]) for d in dense_layers(self._layers)]


#: Rows per block when sparse input is not trained through sparse products.
_BLOCK_ROWS = 1024

