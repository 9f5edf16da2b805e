"""PyTorch interop: an xpnet model is a ``torch.nn.Sequential`` with the same modules in order.

Layer ``i`` of a :class:`~xpnet.Sequential` is module ``i`` of the equivalent
``torch.nn.Sequential``: ``Dense(a, b)`` is ``nn.Linear(a, b)`` (whose weight is
the transposed Dense weight, ``(b, a)``), ``ReLU``, ``Sigmoid``, ``Tanh``,
``LeakyReLU(s)``, ``Softmax`` (last axis), ``Dropout(p)`` and ``Flatten`` are
their namesakes. The same names and layouts are what ``model.save("m.safetensors")``
stores, so torch's ``load_state_dict`` takes either.

torch is imported when a function here is called, never by ``import xpnet``.

Examples
--------
>>> import xpnet
>>> from xpnet.interop import to_torch_state_dict, from_torch   # doctest: +SKIP
>>> model = xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0)
>>> sorted(to_torch_state_dict(model))                            # doctest: +SKIP
['0.bias', '0.weight', '2.bias', '2.weight']
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from ._typing import BackendLike, Device, DType
from .backends import get_backend
from .checkpoint import torch_name
from .errors import BackendUnavailableError
from .layers import Dense, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .layers.base import Layer, layers_of
from .network import Sequential

__all__ = ["to_torch_state_dict", "to_torch", "from_torch"]

#: Parameter-free layers and their torch.nn namesakes (constructor arguments aside).
_SAME_NAME = {ReLU: "ReLU", Sigmoid: "Sigmoid", Tanh: "Tanh", Flatten: "Flatten"}


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"xpnet.interop needs PyTorch, which is not installed ({exc}). Install it with: "
            'pip install "xpnet[torch]"'
        ) from exc


def to_torch_state_dict(model: Any) -> dict:
    """The model's parameters as a torch ``state_dict`` (CPU tensors, the model's dtype).

    ``torch.nn.Sequential(...).load_state_dict(to_torch_state_dict(model))``
    makes the equivalent torch module compute the same outputs.
    """
    torch = _torch()
    layers = layers_of(model, "model")
    be = getattr(model, "backend", None) or layers[0].backend
    state = {}
    for i, layer in enumerate(layers):
        for name in layer.param_names:
            stored, transposed = torch_name(f"layer{i}.{name}")
            host = be.to_numpy(getattr(layer, name))
            state[stored] = torch.from_numpy(np.ascontiguousarray(host.T if transposed else host))
    return state


def _torch_module(nn: Any, i: int, layer: Any) -> Any:
    """The torch.nn module equivalent to xpnet layer ``i``."""
    kind = type(layer)
    if kind is Dense:
        return nn.Linear(layer.input_units, layer.output_units)
    if kind in _SAME_NAME:
        return getattr(nn, _SAME_NAME[kind])()
    if kind is LeakyReLU:
        return nn.LeakyReLU(layer.negative_slope)
    if kind is Softmax:
        return nn.Softmax(dim=-1)
    if kind is Dropout:
        return nn.Dropout(layer.rate)
    raise TypeError(f"layer {i} ({layer!r}) has no torch.nn equivalent here; supported: Dense, "
                    "ReLU, Sigmoid, Tanh, LeakyReLU, Softmax, Dropout, Flatten")


def to_torch(model: Any) -> Any:
    """The equivalent ``torch.nn.Sequential``, with the model's parameters, in eval mode."""
    torch = _torch()
    layers = layers_of(model, "model")
    module = torch.nn.Sequential(*[_torch_module(torch.nn, i, la) for i, la in enumerate(layers)])
    state = to_torch_state_dict(model)
    dtype = next(iter(state.values())).dtype if state else torch.float32
    module.to(dtype).load_state_dict(state)
    return module.eval()


def _host(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _dense_from_linear(module: Any, be: Any) -> Layer:
    weight = _host(module.weight).T
    bias = _host(module.bias) if module.bias is not None else np.zeros(weight.shape[1])
    return Dense.from_config({"input_units": weight.shape[0], "output_units": weight.shape[1]},
                             {"weights": weight, "biases": bias}, backend=be)


def _check_flatten(i: int, module: Any) -> None:
    if (module.start_dim, module.end_dim) != (1, -1):
        raise ValueError(f"module {i} is Flatten(start_dim={module.start_dim}, end_dim="
                         f"{module.end_dim}); xpnet's Flatten is Flatten(start_dim=1, end_dim=-1)")


def _check_softmax(i: int, module: Any) -> None:
    if module.dim not in (-1, 1):
        raise ValueError(f"module {i} is Softmax(dim={module.dim}); xpnet's Softmax is over the "
                         "last axis of (n, k) outputs (dim=-1 or 1)")


def _xpnet_layer(nn: Any, i: int, module: Any, be: Any) -> Layer:
    """The xpnet layer equivalent to torch module ``i`` (or a TypeError naming it)."""
    if isinstance(module, nn.Linear):
        return _dense_from_linear(module, be)
    for layer_cls, torch_cls in _SAME_NAME.items():
        if type(module) is getattr(nn, torch_cls):
            if layer_cls is Flatten:
                _check_flatten(i, module)
            return layer_cls(backend=be)
    if type(module) is nn.LeakyReLU:
        return LeakyReLU(module.negative_slope, backend=be)
    if type(module) is nn.Softmax:
        _check_softmax(i, module)
        return Softmax(backend=be)
    if type(module) is nn.Dropout:
        return Dropout(module.p, backend=be)
    raise TypeError(f"module {i} ({type(module).__name__}) has no xpnet equivalent; supported: "
                    "Linear, ReLU, Sigmoid, Tanh, LeakyReLU, Softmax, Dropout, Flatten")


def _float_dtype(module: Any) -> str:
    for p in module.parameters():
        return str(p.dtype).removeprefix("torch.")
    return "float32"


def from_torch(module: Any, *, backend: BackendLike = None, device: Device = None,
               dtype: DType = None) -> Sequential:
    """An xpnet :class:`~xpnet.Sequential` computing what ``module`` computes.

    Parameters
    ----------
    module : torch.nn.Sequential
        Of ``Linear`` (with or without bias), ``ReLU``, ``Sigmoid``, ``Tanh``,
        ``LeakyReLU``, ``Softmax(dim=-1)``, ``Dropout`` and ``Flatten()``.
    backend, device : optional
        Where to put the model (default: :func:`xpnet.get_backend`'s default).
    dtype : {"float32", "float64"}, optional
        Default: the dtype of the module's parameters.

    Raises
    ------
    TypeError
        ``module`` is not a ``torch.nn.Sequential``, or holds a module without
        an xpnet equivalent (named, with its position).
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"module must be a torch.nn.Sequential, got {type(module).__name__}")
    if len(module) == 0:
        raise ValueError("module must contain at least one module, got an empty Sequential")
    be = get_backend(backend, device=device,
                     dtype=dtype if dtype is not None else _float_dtype(module))
    layers = [_xpnet_layer(torch.nn, i, m, be) for i, m in enumerate(module)]
    return Sequential(layers, backend=be)
