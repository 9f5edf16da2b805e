"""The estimators' hyperparameters checked once per fit, with scikit-learn's rules and messages."""

from __future__ import annotations

import math
import numbers

import numpy as np

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
SOLVERS = ("lbfgs", "sgd", "adam")
STOCHASTIC_SOLVERS = ("sgd", "adam")
SCHEDULES = ("constant", "invscaling", "adaptive")
REGRESSION_LOSSES = ("squared_error", "poisson")


def _is_real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def _is_int(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def hidden_sizes(est) -> list:
    """``hidden_layer_sizes`` as a list of ints > 0 (an int alone is one layer)."""
    sizes = est.hidden_layer_sizes
    sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
    for s in sizes:
        if not _is_int(s) or s <= 0:
            raise ValueError(f"hidden_layer_sizes must be > 0, got {est.hidden_layer_sizes}.")
    return [int(s) for s in sizes]


def _looks_like_sizes(value) -> bool:
    return _is_int(value) or (isinstance(value, (tuple, list)) and all(map(_is_int, value)))


def _check_choices(est) -> None:
    choices = [("activation", ACTIVATIONS), ("solver", SOLVERS), ("learning_rate", SCHEDULES)]
    if hasattr(est, "loss"):
        choices.append(("loss", REGRESSION_LOSSES))
    for name, allowed in choices:
        value = getattr(est, name)
        if name == "loss" and not isinstance(value, str) and _looks_like_sizes(value):
            raise ValueError(
                f"MLPRegressor's first positional argument is loss (as in scikit-learn >= "
                f"1.7), got {value!r}: write MLPRegressor(hidden_layer_sizes={value!r})")
        if value not in allowed:
            raise ValueError(f"The '{name}' parameter of {type(est).__name__} must be one of "
                             f"{list(allowed)}, got {value!r}.")


def _check_reals(est) -> None:
    for name, strict in [("learning_rate_init", True), ("epsilon", True), ("alpha", False),
                         ("tol", False), ("power_t", False)]:
        value = getattr(est, name)
        if not _is_real(value) or not math.isfinite(value) or value < 0 or \
                (strict and value == 0):
            bound = "> 0" if strict else ">= 0"
            raise ValueError(f"The '{name}' parameter must be a finite number {bound}, "
                             f"got {value!r}.")
    for name, hi_open in (("momentum", False), ("beta_1", True), ("beta_2", True),
                          ("validation_fraction", True)):
        value = getattr(est, name)
        if not _is_real(value) or not 0 <= float(value) <= 1 or (hi_open and value == 1):
            raise ValueError(f"The '{name}' parameter must be in [0, 1{')' if hi_open else ']'}"
                             f", got {value!r}.")


def _check_counts(est) -> None:
    for name in ("max_iter", "max_fun"):
        value = getattr(est, name)
        if not _is_int(value) or value < 1:
            raise ValueError(f"The '{name}' parameter must be an int >= 1, got {value!r}.")
    value = est.n_iter_no_change
    # scikit-learn also takes np.inf: never stop for lack of improvement.
    if not ((_is_int(value) and value >= 1) or (_is_real(value) and value == np.inf)):
        raise ValueError(f"The 'n_iter_no_change' parameter must be an int >= 1 or np.inf, "
                         f"got {value!r}.")
    bs = est.batch_size
    if bs != "auto" and (not _is_int(bs) or bs < 1):
        raise ValueError(f"The 'batch_size' parameter must be 'auto' or an int >= 1, "
                         f"got {bs!r}.")


def validate_hyperparameters(est) -> list:
    """Check every hyperparameter of ``est``; return its hidden layer sizes."""
    sizes = hidden_sizes(est)
    _check_choices(est)
    _check_reals(est)
    _check_counts(est)
    return sizes
