"""The estimators' network: scikit-learn's initialisation over xpnet Dense layers."""

from __future__ import annotations

import math


def _glorot_uniform(random_state, fan_in: int, fan_out: int, activation: str):
    """scikit-learn's MLP initialisation: U(-b, b), b = sqrt(6 / (fan_in + fan_out)) (2 for logistic)."""
    factor = 2.0 if activation == "logistic" else 6.0
    bound = math.sqrt(factor / (fan_in + fan_out))
    coef = random_state.uniform(-bound, bound, (fan_in, fan_out))
    intercept = random_state.uniform(-bound, bound, fan_out)
    return coef, intercept


def _fixed(values):
    """An initializer ``init(rng, shape)`` returning ``values`` (drawn beforehand)."""
    def init(rng, shape):
        return values

    return init


def build_layers(be, sizes, activation: str, random_state) -> list:
    """Dense layers of ``sizes`` with ``activation`` between them; the output is linear."""
    from ..layers import Dense, ReLU, Sigmoid, Tanh

    make_act = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}[activation]
    layers: list = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i and make_act is not None:
            layers.append(make_act(backend=be))
        coef, intercept = _glorot_uniform(random_state, fan_in, fan_out, activation)
        dense = Dense(fan_in, fan_out, init=_fixed(coef), backend=be)
        dense.biases = be.asarray(intercept)
        layers.append(dense)
    return layers


def dense_layers(layers) -> list:
    return [layer for layer in layers if layer.param_names]
