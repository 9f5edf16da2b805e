"""The fitted state: ``coefs_``/``intercepts_`` as the model's own arrays, and pickling.

Pickles hold host (NumPy) arrays only, so that a model trained on a device
unpickles anywhere its backend exists; the optimizer's state (velocities,
Adam moments, step counts) travels with it, keyed by layer position instead
of the layer objects' ids, so a ``partial_fit`` loop continues exactly.
"""

from __future__ import annotations

import copy
import weakref

import numpy as np

from ..errors import ShapeError
from ._inputs import to_host
from ._network import dense_layers

#: The keys of an optimizer's per-parameter state that are bookkeeping, not values.
_BOOKKEEPING = ("backend", "layer")


class ParamList(list):
    """``coefs_`` or ``intercepts_``: a list of the model's own parameter arrays.

    ``params[i] = a`` replaces layer ``i``'s array in the model (after a shape
    check); the elements are the arrays the model trains, so where the library's
    arrays are mutable, ``params[i][:] = 0`` changes the model too. The list's
    length is the model's: adding or removing layers this way is refused.
    """

    def __init__(self, est, name: str) -> None:
        super().__init__(getattr(d, name) for d in dense_layers(est._layers))
        self._est, self._name = est, name

    def __setitem__(self, index, value) -> None:
        if isinstance(index, slice):
            raise TypeError(f"assign {self._attr()}[i] one layer at a time, or the whole list")
        value = assign_param(self._est, self._name, index, value)
        super().__setitem__(index, value)

    def __reduce__(self):
        # Pickled or deep-copied on its own, it is a plain list of the arrays: the
        # estimator it writes into does not travel with it.
        return (list, (list(self),))

    def _attr(self) -> str:
        return "coefs_" if self._name == "weights" else "intercepts_"

    def _refuse(self, *args, **kwargs):
        raise TypeError(f"{self._attr()} has one array per layer; replace arrays with "
                        f"{self._attr()}[i] = a, the layers themselves are fixed at fit")

    append = extend = insert = pop = remove = clear = __delitem__ = _refuse
    __iadd__ = __imul__ = _refuse


def assign_param(est, name: str, index: int, value):
    """Make ``value`` layer ``index``'s parameter ``name``; returns the array the model holds.

    An array of the model's backend and dtype is taken as is (it becomes the
    model's, as in scikit-learn); anything else is copied onto the backend.
    """
    be = est._backend
    layer = dense_layers(est._layers)[index]
    current = getattr(layer, name)
    attr = ("coefs_" if name == "weights" else "intercepts_") + f"[{index}]"
    if not (be.owns(value) and value.dtype == current.dtype):
        host = np.asarray(to_host(value))
        if host.dtype.kind not in "biuf":
            raise TypeError(f"{attr} must hold real numbers, got dtype {host.dtype}")
        value = be.asarray(host)
    if tuple(value.shape) != tuple(current.shape):
        raise ShapeError(f"{attr} must have shape {tuple(current.shape)} (the layer's), got "
                         f"{tuple(value.shape)}")
    layer.set_param(name, value)
    return value


def assign_all(est, name: str, values) -> None:
    """``est.coefs_ = values``: one array per layer, each checked as by :func:`assign_param`."""
    values = list(values)
    n = len(dense_layers(est._layers))
    if len(values) != n:
        attr = "coefs_" if name == "weights" else "intercepts_"
        raise ValueError(f"{attr} must be a list of {n} arrays (one per layer), got "
                         f"{len(values)}")
    for i, value in enumerate(values):
        assign_param(est, name, i, value)


# -- pickling ---------------------------------------------------------------------------

def host_layer(layer, be):
    """A copy of ``layer`` without its backend, parameters as NumPy arrays."""
    twin = copy.copy(layer)
    twin.__dict__ = {k: v for k, v in layer.__dict__.items()
                     if k not in ("backend", "xp", "optimizer", "grads")}
    for name in layer.param_names:
        twin.__dict__[name] = be.to_numpy(getattr(layer, name))
    return twin


def device_layer(layer, be):
    """Undo :func:`host_layer` on backend ``be`` (in place)."""
    layer.backend, layer.xp, layer.optimizer, layer.grads = be, be.xp, None, {}
    for name in layer.param_names:
        setattr(layer, name, be.asarray(getattr(layer, name)))
    return layer


def _host_value(be, value):
    if isinstance(value, (int, float)):
        return value
    host = be.to_numpy(value)
    # A step count a compiled epoch left on the device comes back a Python int.
    return int(host) if host.ndim == 0 and host.dtype.kind in "iu" else host


def host_optimizer(opt, layers, be):
    """A picklable copy of optimizer ``opt``: its state keyed by (layer index, name)."""
    if opt is None:
        return None
    positions = {id(layer): i for i, layer in enumerate(layers)}
    twin = copy.copy(opt)
    twin.state = {}
    for (layer_id, name), st in opt.state.items():
        if layer_id in positions and st["layer"]() is layers[positions[layer_id]]:
            twin.state[(positions[layer_id], name)] = {
                k: _host_value(be, v) for k, v in st.items() if k not in _BOOKKEEPING}
    return twin


def device_optimizer(opt, layers, be):
    """Undo :func:`host_optimizer` for the unpickled ``layers`` on backend ``be``."""
    if opt is None:
        return None
    state = {}
    for (position, name), st in opt.state.items():
        layer = layers[position]
        restored = {k: v if isinstance(v, (int, float)) else be.asarray(v)
                    for k, v in st.items()}
        state[(id(layer), name)] = {"backend": be, "layer": weakref.ref(layer), **restored}
    opt.state = state
    for layer in dense_layers(layers):
        layer.optimizer = opt
    return opt


def host_params(params, be):
    """Early stopping's best parameters (pairs of device arrays) as NumPy arrays."""
    return None if params is None else [tuple(be.to_numpy(p) for p in pair) for pair in params]


def device_params(params, be):
    return None if params is None else [tuple(be.asarray(p) for p in pair) for pair in params]
