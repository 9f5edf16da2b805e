""":class:`MLPClassifier`: scikit-learn's MLP classifier trained by xpnet."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils import column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_array

from ..losses import BinaryCrossEntropy, SoftmaxCrossEntropy, log_softmax
from ._base import BaseMLP
from ._docs import class_doc, classifier_params
from ._inputs import dispatch_on, foreign_array, to_host
from ._losses import ClippedBinaryLogLoss, ClippedLogLoss, sigmoid


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = class_doc(
        """Multi-layer perceptron classifier trained by xpnet on any array library.

    scikit-learn's ``sklearn.neural_network.MLPClassifier``: the same
    parameters, in the same order, the same fitted attributes and, in float64
    on NumPy, the same weights; plus ``class_weight`` and where training runs.""",
        classifier_params(),
        """Notes
-----
Output layers follow scikit-learn: a softmax over classes (multiclass), a
sigmoid unit (binary) or one sigmoid per label (multilabel). ``X`` may be a
dense array of any array library or a scipy.sparse CSR/CSC matrix.""",
        """Examples
--------
>>> import numpy as np
>>> from xpnet.sklearn import MLPClassifier
>>> X = np.asarray([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 10)
>>> y = np.asarray(["no", "yes", "yes", "yes"] * 10)
>>> clf = MLPClassifier((8,), solver="adam", learning_rate_init=0.05,
...                     max_iter=300, random_state=0).fit(X, y)
>>> clf.classes_.tolist(), clf.predict(X[:4]).tolist()
(['no', 'yes'], ['no', 'yes', 'yes', 'yes'])""")

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, backend=None, device=None, dtype=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend, device=device, dtype=dtype)
        self.class_weight = class_weight

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and labels ``y``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or scipy.sparse CSR/CSC matrix
        y : array of shape (n_samples,) (any labels) or (n_samples, n_labels) of 0/1
            (multilabel)
        sample_weight : array of shape (n_samples,), optional
            Non-negative weights of the samples in the (weighted mean) loss.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)`` (stochastic solvers only).

        Parameters
        ----------
        X, y, sample_weight
            As in :meth:`fit`.
        classes : array of shape (n_classes,), optional
            Every label of every call: required on the first call, and if
            given later it must be the same set.

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    # -- labels ------------------------------------------------------------------------------
    def _validate_y(self, y, n_samples, *, incremental, classes, first_pass):
        y = check_array(to_host(y), ensure_2d=False, dtype=None, ensure_all_finite=True,
                        input_name="y")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                             f"[{n_samples}, {y.shape[0]}]")
        check_classification_targets(y)
        kind = type_of_target(y)
        if first_pass:
            self._define_classes(y, kind, classes)
        elif self._multilabel:
            if y.ndim != 2 or y.shape[1] != self.n_outputs_:
                raise ValueError(f"y must have {self.n_outputs_} label columns as when "
                                 f"fitted, got shape {y.shape}")
            return y
        elif kind == "multilabel-indicator":
            raise ValueError("the model was fitted on single-label targets, got a "
                             "multilabel indicator matrix")
        else:
            self._check_known_classes(y, incremental, classes)
        unseen = np.setdiff1d(np.unique(y), self.classes_) if not self._multilabel \
            else np.empty(0)
        if len(unseen):  # partial_fit's first call: y's labels must be among classes=
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{self.classes_}. 'y' has {np.unique(y)}.")
        return y

    def _define_classes(self, y, kind: str, classes) -> None:
        """First pass: the classes, the output layer's size and the loss."""
        self._multilabel = kind == "multilabel-indicator"
        if self._multilabel:
            self.classes_ = np.arange(y.shape[1])
            self._label_dtype = y.dtype
        else:
            self.classes_ = np.unique(np.asarray(classes) if classes is not None else y)
        n_classes = len(self.classes_)
        self.n_outputs_ = y.shape[1] if self._multilabel else (
            1 if n_classes <= 2 else n_classes)
        self._loss = SoftmaxCrossEntropy() if self.n_outputs_ > 1 and not self._multilabel \
            else BinaryCrossEntropy()

    def _check_known_classes(self, y, incremental: bool, classes) -> None:
        """A later call's labels, with scikit-learn's rules and messages."""
        if incremental and classes is not None and \
                not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        labels = unique_labels(y)
        if self.warm_start:
            if set(labels.tolist()) != set(self.classes_.tolist()):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {labels}")
        elif len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                             f"{self.classes_}. 'y' has {labels}.")

    def _encode_targets(self, y):
        """Host targets for the loss: 0/1 columns (sigmoid outputs) or class indices."""
        if self._multilabel:
            return np.asarray(y, dtype=np.float64)
        idx = np.searchsorted(self.classes_, y)
        if self.n_outputs_ == 1:
            return (idx == len(self.classes_) - 1).astype(np.float64) if len(self.classes_) == 2 \
                else np.zeros(len(y))
        return idx

    def _apply_class_weight(self, y, sw):
        if self.class_weight is None:
            return sw
        if self._multilabel:
            raise ValueError("class_weight is not supported for multilabel targets")
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            # scikit-learn's factors over the labels present in y: n / (n_present * count).
            labels = np.unique(y)
            weights = compute_class_weight("balanced", classes=labels, y=y)
            per_class = dict(zip(labels.tolist(), weights.tolist()))
        elif isinstance(self.class_weight, dict):
            per_class = dict(self.class_weight)
            unknown = [k for k in per_class if k not in set(self.classes_.tolist())]
            if unknown:
                raise ValueError(f"class_weight has labels not among the classes "
                                 f"{self.classes_.tolist()}: {unknown}")
        else:
            raise ValueError(f"class_weight must be 'balanced', a dict or None, got "
                             f"{self.class_weight!r}")
        factor = np.asarray([float(per_class.get(label, 1.0)) for label in y.tolist()])
        if np.any(factor < 0) or not np.all(np.isfinite(factor)):
            raise ValueError("class_weight values must be finite and >= 0")
        return factor if sw is None else sw * factor

    def _lbfgs_loss(self):
        """The loss lbfgs minimises: scikit-learn's clipped values (see ClippedLogLoss)."""
        if isinstance(self._loss, SoftmaxCrossEntropy):
            return ClippedLogLoss()
        return ClippedBinaryLogLoss()

    # -- prediction ----------------------------------------------------------------------------
    def _out_activation(self) -> str:
        return "logistic" if isinstance(self._loss, BinaryCrossEntropy) else "softmax"

    def _proba_device(self, be, z):
        if isinstance(self._loss, BinaryCrossEntropy):
            p = sigmoid(be.xp, z)
            if self._multilabel:
                return p
            return be.xp.concat([1.0 - p, p], axis=1) if len(self.classes_) == 2 else \
                be.xp.ones((z.shape[0], 1), dtype=z.dtype, device=be.device)
        return be.xp.exp(log_softmax(z, xp=be.xp))

    def _labels_from_logits(self, be, z):
        """Host labels (or the multilabel 0/1 matrix) for logits ``z``."""
        xp = be.xp
        if self._multilabel:
            return be.to_numpy(xp.astype(z > 0, be.index_dtype)).astype(self._label_dtype)
        if self.n_outputs_ == 1:
            idx = be.to_numpy(xp.astype(z[:, 0] > 0, be.index_dtype))
            idx = np.minimum(idx, len(self.classes_) - 1)
        else:
            idx = be.to_numpy(xp.argmax(z, axis=1))
        return self.classes_[idx]

    def predict(self, X):
        """Predicted labels (in ``X``'s namespace under array API dispatch)."""
        be, z, X = self._raw_outputs(X, "predict")
        labels = self._labels_from_logits(be, z)
        if dispatch_on() and foreign_array(X) and labels.dtype.kind in "iub":
            return be.asarray(labels, dtype=getattr(be.xp, labels.dtype.name))
        return labels

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes) (or (n, n_labels) multilabel)."""
        be, z, X = self._raw_outputs(X, "predict_proba")
        return self._output(be, self._proba_device(be, z), X)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, as scikit-learn computes it: ``-inf`` where a
        probability underflowed to 0 (scikit-learn's estimator checks require that equality)."""
        be, z, X = self._raw_outputs(X, "predict_log_proba")
        proba = self._proba_device(be, z)
        with be.floating_point_errors_ignored():  # log(0) is -inf, no divide-by-zero warning
            return self._output(be, be.xp.log(proba), X)

    def _score_device(self, be, Xd, y_host, sw) -> float:
        labels = self._labels_from_logits(be, self._forward(be, Xd))
        return float(accuracy_score(y_host, labels, sample_weight=sw))

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy (subset accuracy for multilabel), weighted by ``sample_weight``."""
        be, z, X = self._raw_outputs(X, "score")
        y = to_host(y)
        return float(accuracy_score(y, self._labels_from_logits(be, z),
                                    sample_weight=to_host(sample_weight)))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

