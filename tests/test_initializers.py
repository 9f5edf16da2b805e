"""Initializers: the distributions, the names, and identical starts on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.initializers import (
    INITIALIZERS,
    as_generator,
    compute_fans,
    get_initializer,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    seed_normal,
)

NAMES = ["seed", "he_normal", "he_uniform", "glorot_normal", "glorot_uniform"]


def test_contract_names_exist():
    assert set(NAMES) <= set(INITIALIZERS)
    assert INITIALIZERS["kaiming_normal"] is he_normal
    assert INITIALIZERS["xavier_uniform"] is glorot_uniform


@pytest.mark.parametrize("name", NAMES)
def test_float64_reproducible_and_distinct_draws(name):
    init = get_initializer(name)
    a = init(as_generator(5), (30, 20))
    b = init(as_generator(5), (30, 20))
    assert a.dtype == np.float64 and a.shape == (30, 20)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, init(as_generator(6), (30, 20)))


@pytest.mark.parametrize("init, std", [
    (seed_normal, lambda fi, fo: 0.01),
    (he_normal, lambda fi, fo: math.sqrt(2 / fi)),
    (he_uniform, lambda fi, fo: math.sqrt(2 / fi)),
    (glorot_normal, lambda fi, fo: math.sqrt(2 / (fi + fo))),
    (glorot_uniform, lambda fi, fo: math.sqrt(2 / (fi + fo))),
], ids=lambda v: getattr(v, "__name__", ""))
def test_standard_deviations(init, std):
    """200k draws: the sample std is within 1% of the target (its sd is ~0.2%)."""
    fi, fo = 400, 500
    w = init(as_generator(0), (fi, fo))
    assert abs(w.mean()) < 0.01 * std(fi, fo)
    assert w.std() == pytest.approx(std(fi, fo), rel=0.01)


@pytest.mark.parametrize("init, limit", [
    (he_uniform, lambda fi, fo: math.sqrt(6 / fi)),
    (glorot_uniform, lambda fi, fo: math.sqrt(6 / (fi + fo))),
])
def test_uniform_bounds(init, limit):
    w = init(as_generator(1), (100, 50))
    a = limit(100, 50)
    assert w.min() >= -a and w.max() < a and w.max() > 0.99 * a and w.min() < -0.99 * a


def test_seed_is_the_tutorial_formula():
    np.testing.assert_array_equal(
        seed_normal(as_generator(0), (3, 4)),
        np.random.default_rng(0).standard_normal((3, 4)) * 0.01)


def test_fans():
    assert compute_fans((784, 100)) == (784, 100)
    assert compute_fans((7,)) == (7, 7)
    assert compute_fans((3, 8, 5, 5)) == (75, 200)
    with pytest.raises(ValueError, match="0-d"):
        compute_fans(())
    with pytest.raises(ValueError, match="non-zero fans"):
        he_normal(as_generator(0), (0, 3))


def test_lookup_errors():
    with pytest.raises(ValueError, match="unknown init 'orthogonal'; choose one of"):
        get_initializer("orthogonal")
    with pytest.raises(ValueError, match="unknown init"):
        get_initializer(None)
    with pytest.raises(TypeError, match="rng must be an int seed"):
        as_generator(True)


@pytest.mark.parametrize("name", NAMES)
def test_every_backend_starts_identical(backend, name):
    """Dense(init=name) holds exactly the float64 host draw, cast once to the dtype."""
    layer = xpnet.Dense(12, 7, init=name, rng=3, backend=backend)
    host = get_initializer(name)(np.random.default_rng(3), (12, 7))
    w = backend.to_numpy(layer.weights)
    assert layer.weights.dtype == backend.dtype
    np.testing.assert_array_equal(w, host.astype(w.dtype))


def test_mlp_init_by_name(backend32):
    a = xpnet.Sequential.mlp([6, 5, 3], init="he_uniform", seed=4, backend=backend32)
    gen = np.random.default_rng(4)
    w1 = he_uniform(gen, (6, 5))
    w2 = he_uniform(gen, (5, 3))
    np.testing.assert_array_equal(backend32.to_numpy(a[0].weights), w1.astype(np.float32))
    np.testing.assert_array_equal(backend32.to_numpy(a[2].weights), w2.astype(np.float32))
