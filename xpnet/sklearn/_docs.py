"""The estimators' docstrings: every parameter and attribute described once, for both."""

from __future__ import annotations

_LOSS = """\
loss : {"squared_error", "poisson"}, default="squared_error"
    The loss minimised. "squared_error" is half the mean squared error (with
    several outputs, the mean over them; the step follows their sum, as
    scikit-learn's); "poisson" is half the Poisson deviance, with an ``exp``
    output so predictions are positive (targets must be >= 0).
"""

_COMMON = """\
hidden_layer_sizes : int or tuple of int, default=(100,)
    The number of units of each hidden layer; ``(50, 20)`` is two hidden layers.
activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
    The hidden layers' activation function.
solver : {"lbfgs", "sgd", "adam"}, default="adam"
    How the weights are fitted: "lbfgs", scipy's L-BFGS-B over all the
    training data at once (good for small data sets); "sgd", minibatch
    gradient descent with (Nesterov) momentum; "adam", minibatch Adam.
alpha : float >= 0, default=0.0001
    Strength of the L2 penalty ``alpha / 2 * ||W||^2`` on the weights (not the
    biases), divided by the batch's total sample weight.
batch_size : int or "auto", default="auto"
    Minibatch size of the stochastic solvers; "auto" is ``min(200, n_samples)``.
    Ignored by "lbfgs".
learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
    The step size schedule of ``solver="sgd"``: constant, ``learning_rate_init
    / t ** power_t`` after ``t`` samples, or divided by 5 whenever
    ``n_iter_no_change`` epochs bring no improvement of ``tol``.
learning_rate_init : float > 0, default=0.001
    The initial step size ("sgd" and "adam").
power_t : float >= 0, default=0.5
    The exponent of the "invscaling" schedule.
max_iter : int >= 1, default=200
    At most this many epochs (stochastic solvers) or iterations ("lbfgs").
shuffle : bool, default=True
    Whether the stochastic solvers reshuffle the samples each epoch.
random_state : int, RandomState instance or None, default=None
    Seeds the initial weights, the shuffles and the early-stopping split. An
    int restarts the same draws on every ``fit``/``partial_fit`` call.
tol : float >= 0, default=1e-4
    Improvement in loss (or validation score) that counts as progress; for
    "lbfgs", the projected-gradient tolerance ``gtol``.
verbose : bool, default=False
    Print the loss after each epoch.
warm_start : bool, default=False
    Whether ``fit`` continues from the current weights (same classes required)
    instead of initialising new ones.
momentum : float in [0, 1], default=0.9
    Momentum of "sgd".
nesterovs_momentum : bool, default=True
    Whether "sgd" uses Nesterov's momentum (when ``momentum > 0``).
early_stopping : bool, default=False
    Stochastic solvers: hold out ``validation_fraction`` of the data, stop
    after ``n_iter_no_change`` epochs without a validation score better by
    ``tol``, and keep the best epoch's weights.
validation_fraction : float in [0, 1), default=0.1
    The share of the training data held out for early stopping.
beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
    Decay rates of Adam's first and second moment estimates.
epsilon : float > 0, default=1e-8
    Adam's numerical-stability constant.
n_iter_no_change : int >= 1 or np.inf, default=10
    Epochs without an improvement of ``tol`` before stopping (or, with
    "adaptive", before the step shrinks); ``np.inf`` never stops early.
max_fun : int >= 1, default=15000
    "lbfgs" only: at most this many loss evaluations.
"""

_CLASS_WEIGHT = """\
class_weight : "balanced", dict or None, default=None
    xpnet's addition: multiplies each sample's weight by its class's weight.
    "balanced" is ``n_samples / (n_present_classes * count)`` over the labels of
    ``y`` (scikit-learn's ``compute_class_weight``).
"""

_XPNET = """\
backend : str, Backend or None, default=None
    xpnet's addition: the array library training runs on ("numpy", "torch",
    "jax", "cupy", "array_api_strict"; None: NumPy) when ``X`` is converted
    (without array API dispatch; with it, training runs where ``X`` lives).
device : str or None, default=None
    The backend's device ("cuda:0", ...); None: its default.
dtype : {"float32", "float64"} or None, default=None
    The training precision; None follows ``X`` (float32 stays float32).
"""

_ATTRIBUTES = """\
Attributes
----------
classes_ : ndarray of shape (n_classes,)
    The labels (classifier only).
loss_ : float
    The last epoch's (or the lbfgs solution's) loss, penalty included.
best_loss_ : float or None
    The best training loss (stochastic solvers without early stopping).
loss_curve_ : list of float
    Each epoch's loss (stochastic solvers only).
validation_scores_ : list of float or None
    Each epoch's validation score with early stopping (NaN where the
    predictions were not finite).
best_validation_score_ : float or None
    The best validation score with early stopping.
t_ : int
    Training samples seen by the stochastic solvers.
coefs_, intercepts_ : list of arrays
    The weight matrices and bias vectors of each layer: the model's own arrays,
    on its backend. ``est.coefs_ = [...]`` and ``est.coefs_[i] = a`` replace
    them; where the library's arrays are mutable, ``est.coefs_[i][:] = 0``
    edits the model in place. JAX arrays are immutable: use the first two forms.
n_features_in_, feature_names_in_ : int, ndarray
    What ``fit`` saw, checked at prediction time.
n_iter_ : int
    Epochs (or lbfgs iterations) run by the last ``fit``/``partial_fit`` call.
n_layers_, n_outputs_ : int
    Layers including input and output; output units.
out_activation_ : str
    "softmax", "logistic", "identity" or "exp".
"""


def _section(text: str) -> str:
    return "\n".join("    " + line if line else "" for line in text.splitlines())


def class_doc(summary: str, params: list, notes: str, examples: str) -> str:
    """A numpydoc class docstring: summary, the parameters, attributes, notes, examples."""
    body = "Parameters\n----------\n" + "".join(params) + "\n" + _ATTRIBUTES
    return (summary.rstrip() + "\n\n" + _section(body) + "\n\n" + _section(notes.strip())
            + "\n\n" + _section(examples.strip()) + "\n    ")


def classifier_params() -> list:
    return [_COMMON, _CLASS_WEIGHT, _XPNET]


def regressor_params() -> list:
    return [_LOSS, _COMMON, _XPNET]
