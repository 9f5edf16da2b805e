"""PyTorch interop (xpnet.interop): state dicts both ways, from_torch of a trained torch MLP."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.interop import from_torch, to_torch, to_torch_state_dict
from xpnet.layers import Dense, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = {"float32": 1e-6, "float64": 1e-12}


def _close(ours, theirs, dtype):
    scale = max(1.0, float(np.max(np.abs(theirs))))
    assert float(np.max(np.abs(ours - theirs))) <= TOL[dtype] * scale


def _torch_dtype(dtype):
    return getattr(torch, dtype)


def _trained_torch_mlp(dtype):
    """A small torch MLP trained a few steps, so its weights are nothing like an init."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1),
                        nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16, bias=False),
                        nn.LeakyReLU(0.05), nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 3),
                        nn.Softmax(dim=-1)).to(_torch_dtype(dtype))
    X = torch.randn(64, 2, 3, dtype=_torch_dtype(dtype))
    y = torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.nll_loss(torch.log(net(X)), y).backward()
        opt.step()
    return net.eval(), X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_torch_of_a_trained_mlp_gives_the_same_outputs(dtype):
    net, X = _trained_torch_mlp(dtype)
    model = from_torch(net, backend="numpy")
    assert model.backend.dtype_name == dtype
    assert [type(layer) for layer in model.layers] == [
        Flatten, Dense, ReLU, Dropout, Dense, Tanh, Dense, LeakyReLU, Dense, Sigmoid, Dense,
        Softmax]
    assert model.layers[7].negative_slope == 0.05 and model.layers[3].rate == 0.1
    with torch.no_grad():
        theirs = net(X).numpy()
        logits = net[:-1](X).numpy()
    host = X.numpy()
    _close(model.predict_proba(host), theirs, dtype)
    _close(model.predict_logits(host), logits, dtype)
    assert np.array_equal(np.asarray(model.layers[6].biases), np.zeros(16))  # Linear(bias=False)


def test_from_torch_onto_another_backend(backend):
    net, X = _trained_torch_mlp(backend.dtype_name)
    model = from_torch(net, backend=backend)
    assert model.backend == backend
    with torch.no_grad():
        logits = net[:-1](X).numpy()
    ours = backend.to_numpy(model.predict_logits(backend.asarray(X.numpy())))
    _close(ours, logits, backend.dtype_name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_dict_loads_into_the_equivalent_torch_module(dtype):
    be = xpnet.get_backend("numpy", dtype=dtype)
    model = xpnet.Sequential.mlp([5, 9, 7, 3], seed=1, backend=be,
                                 activation=lambda: Tanh(backend=be))
    for layer in model.layers[::2]:
        layer.biases = be.asarray(np.random.default_rng(2).normal(size=layer.output_units))
    state = to_torch_state_dict(model)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert tuple(state["0.weight"].shape) == (9, 5)
    net = nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Linear(9, 7), nn.Tanh(),
                        nn.Linear(7, 3)).to(_torch_dtype(dtype))
    net.load_state_dict(state)
    X = np.random.default_rng(3).normal(size=(11, 5)).astype(dtype)
    with torch.no_grad():
        theirs = net(torch.from_numpy(X)).numpy()
    _close(model.predict_logits(X), theirs, dtype)
    twin = to_torch(model)
    with torch.no_grad():
        assert np.array_equal(twin(torch.from_numpy(X)).numpy(), theirs)


def test_state_dict_is_a_copy():
    model = xpnet.Sequential.mlp([3, 4, 2], seed=0, backend="numpy")
    state = to_torch_state_dict(model)
    state["0.weight"].zero_()
    assert np.any(np.asarray(model.layers[0].weights) != 0)


@pytest.mark.parametrize("module, error, match", [
    (lambda: nn.Linear(3, 2), TypeError, "must be a torch.nn.Sequential"),
    (lambda: nn.Sequential(), ValueError, "at least one module"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.GELU()), TypeError, r"module 1 \(GELU\)"),
    (lambda: nn.Sequential(nn.Conv1d(1, 1, 3)), TypeError, r"module 0 \(Conv1d\)"),
    (lambda: nn.Sequential(nn.Flatten(start_dim=0), nn.Linear(3, 2)), ValueError, "start_dim"),
    (lambda: nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=0)), ValueError, "dim=0"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)), ValueError, "takes 5 inputs"),
])
def test_from_torch_refuses_what_it_cannot_express(module, error, match):
    with pytest.raises(error, match=match):
        from_torch(module(), backend="numpy")


def test_to_torch_refuses_a_layer_without_equivalent():
    from xpnet.layers import Layer

    class Custom(Layer):
        pass

    with pytest.raises(TypeError, match=r"layer 1 \(Custom\(\)\)"):
        to_torch([Dense(3, 4, backend="numpy"), Custom(backend="numpy")])
