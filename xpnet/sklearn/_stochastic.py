"""The stochastic solvers "sgd" and "adam": scikit-learn's update rules and its epoch loop.

:class:`StochasticMixin` mirrors ``BaseMultilayerPerceptron._fit_stochastic``
line for line where that keeps the results equal to scikit-learn's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer

from .._compiled import CompiledEpoch, compiles_epochs
from ..feeds.base import Block, Feed
from ..feeds.sparse import SparseRows
from ..optimizers import SGD, Adam, _one_minus_pow, _sqrt
from ..training import FitSettings, Stepper, run_epoch, train_step
from ._inputs import subset_rows, take_rows
from ._network import dense_layers


class _SklearnL2:
    """scikit-learn's L2 term: ``alpha / batch_weight * W`` added to each weight gradient.

    ``batch_weight`` (the batch's size, or its total sample weight) is set by
    the estimator before every step; a zero-weight batch counts as 1, as in
    :class:`xpnet.training.L2Penalty`. Biases are not penalised. Mixed in
    front of the update rule, so the rule may fuse the term
    (:meth:`~xpnet.optimizers.Optimizer.update`'s ``decay``).
    """

    alpha = 0.0
    batch_weight = 1.0

    def update(self, layer, grads, decay=None):
        if self.alpha and "weights" in grads:
            decay = {"weights": self.alpha / (self.batch_weight or 1.0)}
        super().update(layer, grads, decay)  # type: ignore[misc]


class _SklearnSGD(_SklearnL2, SGD):
    """SGD with scikit-learn's velocity form of (Nesterov) momentum.

    ``v = momentum * v - lr * g``; the step is ``momentum * v - lr * g`` (Nesterov)
    or ``v``. It equals :class:`~xpnet.optimizers.SGD` at a constant learning rate
    and keeps scikit-learn's behaviour when 'invscaling'/'adaptive' change it.
    The backend's :meth:`~xpnet.backends.Backend.momentum_step_` does the math
    (in place on NumPy), with the L2 term fused.
    """

    def _update_param(self, be, param, grad, st, lr):
        return self._velocity_step(be, param, grad, st, lr, None)

    def _update_param_decayed(self, be, param, grad, st, lr, coef):
        return self._velocity_step(be, param, grad, st, lr, coef)

    def _velocity_step(self, be, param, grad, st, lr, coef):
        v = st.get("velocity")
        if v is None:  # scikit-learn starts from zero velocities
            v = be.xp.zeros_like(param)
        param, st["velocity"] = be.momentum_step_(param, v, grad, lr=lr, momentum=self.momentum,
                                                  nesterov=self.nesterov, decay=coef)
        return param


class _SklearnAdam(_SklearnL2, Adam):
    """Adam with scikit-learn's placement of epsilon (outside the bias correction).

    ``param -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``.
    The step count may be a traced integer (a compiled epoch): the bias
    corrections then stay on the device.
    """

    def _update_param(self, be, param, grad, st, lr):
        return self._adam_step(be, param, grad, st, lr, None)

    def _update_param_decayed(self, be, param, grad, st, lr, coef):
        return self._adam_step(be, param, grad, st, lr, coef)

    def _adam_step(self, be, param, grad, st, lr, coef):
        t = st.get("step", 0) + 1
        st["step"] = t
        if st.get("exp_avg") is None:  # scikit-learn starts from zero moments
            st["exp_avg"], st["exp_avg_sq"] = be.xp.zeros_like(param), be.xp.zeros_like(param)
        xp = be.xp
        step_size = lr * _sqrt(xp, _one_minus_pow(xp, self.beta2, t, param.dtype)) \
            / _one_minus_pow(xp, self.beta1, t, param.dtype)
        param, st["exp_avg"], st["exp_avg_sq"] = be.adam_step_(
            param, st["exp_avg"], st["exp_avg_sq"], grad, step_size=step_size,
            beta1=self.beta1, beta2=self.beta2, eps=self.eps, decay=coef)
        return param


def squared_norm(xp, w):
    """``sum(w * w)`` as one dot product (no temporary of w's size).

    ``flat @ flat`` (the standard's 1-D inner product) rather than ``vecdot``,
    whose generic array-api-compat version costs 107 us on torch against 6.5 us.
    """
    flat = xp.reshape(w, (-1,))
    return flat @ flat



#: Fewest full batches a call must train for its epochs to run as one compiled
#: program (compiling costs about 0.3 s on JAX, a few hundred one-by-one steps).
MIN_COMPILED_STEPS = 256



class EpochRows(Feed):
    """The rows of one scikit-learn epoch, in ``order``: the full batches (one compiled
    program where the estimator allows it), then the rest batch by batch, the last one
    possibly smaller. The epoch's loss is divided by the number of rows."""

    compiles = True

    def __init__(self, be, X, targets, order, n_compiled: int, batch_size: int) -> None:
        self.be, self.X, self.targets, self.order = be, X, targets, order
        self.n, self.n_compiled, self.batch_size = order.shape[0], n_compiled, batch_size
        self.n_steps = -(-self.n // batch_size)

    def epoch_blocks(self, epoch: int, settings: Any) -> Iterator[Block]:
        be, b = self.be, self.batch_size
        order_d = be.asarray(self.order, dtype=be.index_dtype)
        if self.n_compiled:
            yield Block(self.X, self.targets, order_d, self.n_compiled, b)
        rest = self.n_compiled * b
        if rest < self.n:
            yield Block(self.X, self.targets, order_d[rest:], -(-(self.n - rest) // b), b,
                        compilable=False, host_order=self.order[rest:])

    def trained_weight(self) -> float:
        return max(self.n, 1)


class SklearnStepper(Stepper):
    """scikit-learn's update rules for the shared loop: its batch step (loss with the L2
    term, host batch weights, sparse rows) and its compiled full batches; no divergence
    guard (scikit-learn trains through NaN; early stopping keeps the best weights)."""

    guards = False

    def __init__(self, est, be, targets, weights, sw, batch_size: int) -> None:
        self.est, self.backend, self.targets = est, be, targets
        self.weights, self.sw, self.batch_size = weights, sw, batch_size

    def start(self, feed: Any) -> None:
        pass

    def epoch_fn(self, weighted: bool) -> Any:
        return self.est._compiled_epochs(self.backend, self.batch_size)

    def block_runner(self, block: Block) -> Any:
        est, be, X, sw = self.est, self.backend, block.X, self.sw
        order_d, order = block.order, block.host_order

        def run(lo: int, hi: int) -> Any:
            weight = float(hi - lo) if sw is None else float(max(sw[order[lo:hi]].sum(), 0.0))
            xb = take_rows(be, X, order_d[lo:hi], order[lo:hi])
            return est._batch_step(be, xb, self.targets, self.weights, order_d[lo:hi], weight)

        return run


class StochasticMixin:
    """The sgd/adam solver of :class:`~xpnet.sklearn._base.BaseMLP`: scikit-learn's
    ``_fit_stochastic``, its epoch and its stopping rules."""

    # The fitted state this loop updates (set up by BaseMLP._initialize).
    n_iter_: int
    t_: int
    loss_: float
    loss_curve_: list
    validation_scores_: Any
    best_validation_score_: Any
    best_loss_: Any
    _no_improvement_count: int
    _best_params: Any
    _optimizer: Any
    _compiled: Any

    if TYPE_CHECKING:  # the other attributes of the estimator this mixin is part of
        def __getattr__(self, name: str) -> Any: ...

    def _make_optimizer(self):
        """scikit-learn's update rule for ``solver`` (the L2 penalty goes in front of it)."""
        if self.solver == "sgd":
            momentum = float(self.momentum)
            return _SklearnSGD(float(self.learning_rate_init), momentum=momentum,
                               nesterov=bool(self.nesterovs_momentum) and momentum > 0)
        return _SklearnAdam(float(self.learning_rate_init), beta1=float(self.beta_1),
                            beta2=float(self.beta_2), eps=float(self.epsilon))

    def _prepare_optimizer(self, incremental: bool) -> None:
        """A new update rule per fit; partial_fit keeps the one it has (its state)."""
        if getattr(self, "_optimizer", None) is None or not incremental:
            self._optimizer = self._make_optimizer()
        self._optimizer.alpha = float(self.alpha)
        for layer in dense_layers(self._layers):
            layer.optimizer = self._optimizer

    def _fit_stochastic(self, be, X, targets, y_host, sw, incremental: bool) -> None:
        """scikit-learn's ``_fit_stochastic``: epochs until a stopping rule or ``max_iter``."""
        self._prepare_optimizer(incremental)
        n = X.shape[0]
        train_idx, validation = np.arange(n), None
        if self.early_stopping:
            train_idx, val_idx = self._validation_split(y_host, n)
            # Gathered once per fit, scored after every epoch.
            validation = (subset_rows(be, X, val_idx), y_host[val_idx],
                          None if sw is None else sw[val_idx])
        batch_size = self._batch_size(train_idx.shape[0])
        weights = None if sw is None else be.asarray(sw)
        self.n_iter_ = 0  # counts this call's epochs, as scikit-learn >= 1.6
        try:
            self._epochs(be, X, targets, sw, weights, train_idx, validation,
                         batch_size, incremental)
        except KeyboardInterrupt:  # as scikit-learn: keep what was learnt so far
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if self.early_stopping:  # restore the best weights (the initial ones if none was)
            self._set_params(self._best_params)

    def _epochs(self, be, X, targets, sw, weights, train_idx, validation,
                batch_size: int, incremental: bool) -> None:
        """scikit-learn's epoch loop: shuffle, one pass, the stopping rules."""
        order = train_idx
        with be.floating_point_errors_ignored():
            for _ in range(self.max_iter):
                if self.shuffle:  # reshuffles the previous order, as scikit-learn does
                    order = self._random_state.permutation(order)
                self.loss_ = self._epoch(be, X, targets, weights, sw, order, batch_size,
                                         epochs=1 if incremental else self.max_iter)
                if self._end_of_epoch(be, validation, train_idx.shape[0]):
                    break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                        "and the optimization hasn't converged yet.", ConvergenceWarning,
                        stacklevel=5)

    def _end_of_epoch(self, be, validation, n_train: int) -> bool:
        """Count the epoch, check the stopping rule; True to stop."""
        self.n_iter_ += 1
        self.t_ += n_train
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
        self._update_no_improvement_count(be, validation)
        self._update_learning_rate()
        if self._no_improvement_count > self.n_iter_no_change:
            if self._stop_or_decay():
                return True
            self._no_improvement_count = 0
        return False

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=4)
        return int(np.clip(self.batch_size, 1, n))

    def _validation_split(self, y_host, n: int):
        # As scikit-learn: stratified only for a classifier with one output unit
        # (binary), on the binarized labels: the same split for the same random_state.
        stratify = None
        if is_classifier(self) and self.n_outputs_ == 1 and not self._multilabel:
            stratify = LabelBinarizer().fit(self.classes_).transform(y_host).astype(bool)
        train_idx, val_idx = train_test_split(np.arange(n), random_state=self._random_state,
                                              test_size=self.validation_fraction,
                                              stratify=stratify)
        if val_idx.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return train_idx, val_idx  # in train_test_split's order, as scikit-learn trains

    def _epoch(self, be, X, targets, weights, sw, order, batch_size: int, epochs: int) -> float:
        """One pass over the rows ``order`` (the last batch may be smaller, as in scikit-learn).

        Returns scikit-learn's epoch loss: the batch losses (penalty included)
        weighted by batch size, over the rows. Without sample weights, a
        backend that compiles loops runs the full batches of a device array as
        one program when this call's ``epochs`` will run enough of them to pay
        for compiling it. The batches are walked by the shared loop
        (:func:`xpnet.training.run_epoch`) with scikit-learn's stepper.
        """
        n = order.shape[0]
        n_full = n // batch_size if weights is None and not isinstance(X, SparseRows) else 0
        if not (n_full * epochs >= MIN_COMPILED_STEPS and compiles_epochs(be, self._layers)):
            n_full = 0
        feed = EpochRows(be, X, targets, order, n_full, batch_size)
        stepper = SklearnStepper(self, be, targets, weights, sw, batch_size)
        settings = FitSettings(epochs=1, batch_size=batch_size, rng=None, shuffle=False,
                               check_every=0, train_accuracy=False)
        return run_epoch(feed, stepper, settings, 0)["loss"]

    def _batch_step(self, be, xb, targets, weights, idx, weight: float):
        """Train on the batch ``xb`` (rows ``idx``); returns its loss (penalty included) times
        its size.

        ``weight`` is the batch's size or total sample weight (the mean's
        denominator and the penalty's); a batch of weight 0 leaves its loss
        unscaled and unpenalised, as in scikit-learn.
        """
        xp = be.xp
        tb = be.take_rows(targets, idx)
        wb = None if weights is None else xp.take(weights, idx, axis=0)
        alpha = self._optimizer.alpha
        self._optimizer.batch_weight = weight
        if alpha and weight > 0:  # the penalty term of the loss, before the update
            sq = sum(squared_norm(xp, d.weights) for d in dense_layers(self._layers))
        loss_sum = train_step(self._layers, xp, xb, tb, 0, loss=self._loss, weights=wb)
        batch_loss = loss_sum / (weight if weight > 0 else 1.0)
        if alpha and weight > 0:
            batch_loss = batch_loss + sq * (0.5 * alpha / weight)
        return batch_loss * float(xb.shape[0])

    def _compiled_epochs(self, be, batch_size: int) -> CompiledEpoch:
        """The full-batch steps of an epoch as one compiled loop, kept while the layers are.

        The program bakes in what :meth:`_batch_step` reads as Python values
        (the batch size and ``alpha``, which ``set_params`` may change between
        ``partial_fit`` calls); learning rates are its arguments.
        """
        key = (self._layers, self._optimizer, batch_size, self._optimizer.alpha)
        cached = getattr(self, "_compiled", None)
        if cached is None or cached[0][0] is not key[0] or cached[0][1] is not key[1] \
                or cached[0][2:] != key[2:]:
            def step(X, targets, idx):
                xb = be.take_rows(X, idx)
                return self._batch_step(be, xb, targets, None, idx, float(batch_size))

            cached = self._compiled = (key, CompiledEpoch(be, self._layers, step))
        return cached[1]

    def _update_no_improvement_count(self, be, validation) -> None:
        if validation is not None:
            self._track_validation_score(be, *validation)
            return
        last = self.loss_curve_[-1]
        if last > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if last < self.best_loss_:
            self.best_loss_ = last

    def _track_validation_score(self, be, Xv, yv_host, swv) -> None:
        """Early stopping: score the validation rows (NaN when the outputs are not finite,
        as scikit-learn records it); keep the best parameters."""
        score = self._score_device(be, Xv, yv_host, swv)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        # Comparisons with NaN are False, as in scikit-learn: a NaN epoch resets the
        # count and never becomes the best.
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._get_params()

    def _update_learning_rate(self) -> None:
        """scikit-learn's 'invscaling' schedule: lr = lr_init / (t + 1) ** power_t (sgd only)."""
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (
                float(self.learning_rate_init) / (self.t_ + 1) ** float(self.power_t))

    def _stop_or_decay(self) -> bool:
        """After n_iter_no_change epochs without improvement: stop, or divide lr by 5 ('adaptive')."""
        opt = self._optimizer
        if self.solver == "sgd" and self.learning_rate == "adaptive" and \
                opt.learning_rate > 1e-6:
            opt.learning_rate /= 5.0
            if self.verbose:
                print(f"Setting learning rate to {opt.learning_rate:f}")
            return False
        if self.verbose:
            what = "Validation score" if self.early_stopping else "Training loss"
            print(f"{what} did not improve more than tol={self.tol:f} for "
                  f"{self.n_iter_no_change} consecutive epochs. Stopping.")
        return True
