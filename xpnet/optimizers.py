"""Optimizers decoupled from layers, and learning-rate schedules.

A layer exposes its parameters (``layer.params``, ``layer.param_names``) and,
after ``backward``, their gradients (``layer.grads``); an optimizer updates
the parameters. Everything is written against the array API standard: the
namespace comes from ``layer.backend``.

Two ways to use an optimizer
----------------------------
**Inside backward** (what :meth:`Sequential.fit(optimizer=...)
<xpnet.Sequential.fit>` does, and the seed's timing): set
``layer.optimizer = opt`` (or ``opt.attach(layers)``). ``Dense.backward``
first computes the gradient w.r.t. its input from the *old* weights, then
calls ``opt.update(layer, grads)``, which applies one step to that layer at
once -- exactly where the seed took its SGD step.

**Decoupled** (the PyTorch style): attach :class:`KeepGrads` (or
``opt.attach(layers, deferred=True)``), so ``backward`` only stores
``layer.grads``; then call ``opt.step(layers)`` once per backward pass. The
result is the same as the first way, because every layer's input gradient
already uses the pre-update weights.

Layers without an optimizer keep the seed's behaviour: the plain SGD step
``W -= learning_rate * dW`` inside ``backward``.

Optimizer state (momentum buffers, Adam moments and step counts) is kept per
parameter, keyed by ``(id(layer), name)``, on the layer's backend; parameters
are rebound with ``layer.set_param`` after each step (in place where the
backend allows it, a new array on JAX).

Examples
--------
>>> import xpnet
>>> from xpnet.optimizers import Adam
>>> be = xpnet.get_backend("numpy", dtype="float64")
>>> model = xpnet.Sequential.mlp([4, 8, 3], init="he_normal", backend=be, seed=0)
>>> X = be.asarray([[0.0, 1.0, 2.0, 3.0]] * 8)
>>> y = be.asarray([0, 1, 2, 0, 1, 2, 0, 1], dtype=be.index_dtype)
>>> history = model.fit(X, y, epochs=2, batch_size=4, optimizer=Adam(1e-3))
>>> len(history)
2
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from ._typing import Array, Namespace
from ._validation import check_int, check_number
from .layers.base import Layer, layers_of

if TYPE_CHECKING:
    from .backends import Backend

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "KeepGrads",
    "StepSchedule",
    "CosineSchedule",
    "get_optimizer",
    "get_schedule",
    "OPTIMIZERS",
    "SCHEDULES",
]


@overload
def _check_number(name: str, value: Any, *, low: float = ..., high: float = ...,
                  low_open: bool = ..., high_open: bool = ...,
                  allow_none: Literal[False] = ...) -> float: ...
@overload
def _check_number(name: str, value: Any, *, low: float = ..., high: float = ...,
                  low_open: bool = ..., high_open: bool = ...,
                  allow_none: bool) -> float | None: ...
def _check_number(name: str, value: Any, *, low: float = 0.0, high: float = math.inf,
                  low_open: bool = False, high_open: bool = False,
                  allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    return check_number(value, name, low=low, high=high, low_open=low_open, high_open=high_open)


class Optimizer:
    """Base class: per-parameter state and the update/step protocol.

    Subclasses implement :meth:`_update_param`.

    Parameters
    ----------
    learning_rate : float
        Step size; read at every update, so schedules may change it between
        epochs (see :class:`xpnet.callbacks.LearningRateScheduler`).
    weight_decay : float, default 0.0
        L2 penalty coefficient (what it means exactly depends on the optimizer).

    Notes
    -----
    Weight decay applies to every parameter, biases included, as in
    ``torch.optim`` when all parameters are in one group.
    """

    #: True when :meth:`_update_param` is array math on ``be.xp`` only (no host
    #: reads), so a compiling backend may trace it into a compiled epoch, with
    #: the state's arrays and step counts as traced values. Set it to False in a
    #: subclass that reads values back to the host.
    compilable = True

    def __init__(self, learning_rate: float, *, weight_decay: float = 0.0) -> None:
        # None only where a subclass allows it (SGD(): each layer's own rate).
        self.learning_rate: float | None = _check_number("learning_rate", learning_rate)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        self.state: dict = {}

    # -- the protocol used by layers ------------------------------------------------
    def update(self, layer: Layer, grads: dict, decay: dict | None = None) -> None:
        """Apply one step to ``layer``'s parameters from ``grads`` (name -> array).

        Called by ``layer.backward`` when ``layer.optimizer is self``, after the
        layer computed its input gradient. ``decay`` (name -> coefficient ``c``,
        a float or a 0-d array) adds an L2 term ``c * param`` to those gradients
        (what :class:`xpnet.training.L2Penalty` passes); an optimizer may fuse it
        into its update.
        """
        be = layer.backend
        lr = self._lr_for(layer)
        for name, grad in grads.items():
            key = (id(layer), name)
            st = self.state.get(key)
            # id() values are reused once a layer is freed: state belongs to the
            # layer object it was made for (held weakly), never to a newcomer.
            if st is None or st["layer"]() is not layer:
                st = self.state[key] = {"backend": be, "layer": weakref.ref(layer)}
            elif st["backend"] is not be and st["backend"] != be:
                _move_state(st, be)
            coef = None if decay is None else decay.get(name)
            if coef is None:
                new = self._update_param(be, getattr(layer, name), grad, st, lr)
            else:
                new = self._update_param_decayed(be, getattr(layer, name), grad, st, lr, coef)
            layer.set_param(name, new)

    def step(self, layers: Any) -> None:
        """Apply the gradients stored in each layer's ``grads`` (the decoupled flow).

        Call it once after each backward pass done with :class:`KeepGrads`
        attached (``opt.attach(layers, deferred=True)``); calling it twice
        applies the same gradients twice.
        """
        for layer in layers_of(layers, "layers", allow_empty=True):
            if layer.param_names and layer.grads:
                self.update(layer, layer.grads)

    def attach(self, layers: Any, *, deferred: bool = False) -> list[Layer]:
        """Set ``optimizer`` on every layer with parameters; returns the layers.

        With ``deferred=True`` the layers get a :class:`KeepGrads` instead, so
        ``backward`` only stores gradients and :meth:`step` applies them.
        """
        layers = layers_of(layers, "layers", allow_empty=True)
        target = KeepGrads() if deferred else self
        for layer in layers:
            if layer.param_names:
                layer.optimizer = target
        return layers

    @staticmethod
    def zero_grad(layers: Any) -> None:
        """Forget the gradients stored on ``layers`` (``layer.grads = {}``)."""
        for layer in layers_of(layers, "layers", allow_empty=True):
            layer.grads = {}

    def reset(self) -> None:
        """Drop all per-parameter state (momentum buffers, moments, step counts)."""
        self.state.clear()

    def state_owner(self, layer: Layer) -> Optimizer:
        """The optimizer whose :attr:`state` holds ``layer``'s state: this one (a wrapper's inner one)."""
        return self

    # -- to override --------------------------------------------------------------------
    def _lr_for(self, layer: Layer) -> float:
        if self.learning_rate is None:  # pragma: no cover - SGD, the one allowing None, overrides this
            raise ValueError(f"{type(self).__name__} has no learning_rate")
        return self.learning_rate

    def _update_param(self, be: Backend, param: Array, grad: Array, st: dict,
                      lr: float | Array) -> Array:
        """Return the new value of ``param``; may update ``st`` (this parameter's state)."""
        raise NotImplementedError

    def _update_param_decayed(self, be: Backend, param: Array, grad: Array, st: dict,
                              lr: float | Array, coef: float | Array) -> Array:
        """:meth:`_update_param` of ``grad + coef * param``; subclasses may fuse the two."""
        return self._update_param(be, param, grad + param * coef, st, lr)

    def get_config(self) -> dict:
        """Hyperparameters (JSON-able), e.g. for logs and checkpoints."""
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _move_state(st: dict, be: Backend) -> None:
    """Move a parameter's state arrays to backend ``be`` (the layer was moved)."""
    old = st["backend"]
    for k, v in list(st.items()):
        if k not in ("backend", "layer") and not isinstance(v, (int, float)):
            st[k] = be.asarray(old.to_numpy(v))
    st["backend"] = be


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and weight decay.

    With ``d = grad + weight_decay * param``::

        buf   = d                                      (first step)
        buf   = momentum * buf + (1 - dampening) * d   (later steps)
        d     = d + momentum * buf   if nesterov  else  buf      (when momentum > 0)
        param = param - learning_rate * d

    the same recurrence as ``torch.optim.SGD``.

    Parameters
    ----------
    learning_rate : float or None, default None
        ``None`` uses each layer's own ``learning_rate`` attribute (what
        ``Dense(..., learning_rate=...)`` was built with), so ``SGD()``
        reproduces the seed's in-backward step.
    momentum : float, default 0.0
        In ``[0, 1)``.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    dampening : float, default 0.0
    weight_decay : float, default 0.0
        L2 penalty added to the gradient.

    Examples
    --------
    >>> from xpnet.optimizers import SGD
    >>> SGD(0.1, momentum=0.9, nesterov=True)
    SGD(learning_rate=0.1, weight_decay=0.0, momentum=0.9, nesterov=True, dampening=0.0)
    """

    def __init__(self, learning_rate: float | None = None, *, momentum: float = 0.0,
                 nesterov: bool = False, dampening: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        self.learning_rate = _check_number("learning_rate", learning_rate, allow_none=True)
        self.weight_decay = _check_number("weight_decay", weight_decay)
        self.state = {}
        self.momentum = _check_number("momentum", momentum, high=1.0, high_open=True)
        self.dampening = _check_number("dampening", dampening, high=1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0.0 or self.dampening != 0.0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening == 0")

    def _lr_for(self, layer: Layer) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        lr = getattr(layer, "learning_rate", None)
        if lr is None:
            raise ValueError(
                f"SGD() without learning_rate uses each layer's learning_rate, but "
                f"{type(layer).__name__} has none; pass SGD(learning_rate=...)"
            )
        return lr

    def _update_param(self, be: Backend, param: Array, grad: Array, st: dict,
                      lr: float | Array) -> Array:
        d = grad
        if self.weight_decay:
            d = d + param * self.weight_decay
        if self.momentum:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = d
            elif self.dampening:
                buf = buf * self.momentum + d * (1.0 - self.dampening)
            else:
                buf = buf * self.momentum + d
            st["momentum_buffer"] = buf
            d = d + buf * self.momentum if self.nesterov else buf
        return be.sub_(param, d * lr)

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum,
                "nesterov": self.nesterov, "dampening": self.dampening}


class Adam(Optimizer):
    """Adam: adaptive moment estimation (Kingma & Ba, 2015).

    With ``g = grad + weight_decay * param`` (L2 penalty, as in
    ``torch.optim.Adam``) and step count ``t``::

        m     = m + (1 - beta1) * (g - m)
        v     = beta2 * v + (1 - beta2) * g * g
        param = param - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    learning_rate : float, default 1e-3
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates of the first and second moment estimates, in ``[0, 1)``.
    eps : float, default 1e-8
    weight_decay : float, default 0.0

    Examples
    --------
    >>> from xpnet.optimizers import Adam
    >>> Adam()
    Adam(learning_rate=0.001, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-08)
    """

    #: Whether weight decay is decoupled from the gradient (AdamW).
    decoupled_weight_decay = False

    def __init__(self, learning_rate: float = 1e-3, *, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate, weight_decay=weight_decay)
        self.beta1 = _check_number("beta1", beta1, high=1.0, high_open=True)
        self.beta2 = _check_number("beta2", beta2, high=1.0, high_open=True)
        self.eps = _check_number("eps", eps, low_open=True)

    def _update_param(self, be: Backend, param: Array, grad: Array, st: dict,
                      lr: float | Array) -> Array:
        t = st.get("step", 0) + 1
        st["step"] = t
        g = grad
        if self.weight_decay:
            if self.decoupled_weight_decay:
                param = param * (1.0 - lr * self.weight_decay)
            else:
                g = g + param * self.weight_decay
        m = st.get("exp_avg")
        v = st.get("exp_avg_sq")
        if m is None or v is None:  # zero-initialised moments (set together), without zeros
            m = g * (1.0 - self.beta1)
            v = (g * g) * (1.0 - self.beta2)
        else:
            m = m + (g - m) * (1.0 - self.beta1)
            v = v * self.beta2 + (g * g) * (1.0 - self.beta2)
        st["exp_avg"], st["exp_avg_sq"] = m, v
        step_size = lr / _one_minus_pow(be.xp, self.beta1, t, param.dtype)
        bc2_sqrt = _sqrt(be.xp, _one_minus_pow(be.xp, self.beta2, t, param.dtype))
        denom = be.xp.sqrt(v) / bc2_sqrt + self.eps
        return be.sub_(param, (m * step_size) / denom)

    def get_config(self) -> dict:
        return {**super().get_config(), "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}


def _one_minus_pow(xp: Namespace, beta: float, t: int | Array, dtype: Any) -> float | Array:
    """``1 - beta ** t``: host arithmetic for an int ``t``, device arithmetic for an array.

    A compiled epoch carries the step count as an integer array; there the
    bias correction stays on the device, in ``dtype``, written as
    ``-expm1(t log beta)`` so that float32 keeps its precision (``1 - 0.999``
    would cancel).
    """
    if isinstance(t, int):
        return 1.0 - beta ** t
    if beta == 0.0:
        return 1.0  # t >= 1
    return -xp.expm1(xp.astype(t, dtype) * math.log(beta))


def _sqrt(xp: Namespace, x: float | Array) -> float | Array:
    return math.sqrt(x) if isinstance(x, float) else xp.sqrt(x)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    Before each Adam step, ``param = param * (1 - lr * weight_decay)``; the
    gradient itself is not changed. Same recurrence as ``torch.optim.AdamW``.

    Parameters
    ----------
    learning_rate : float, default 1e-3
    beta1, beta2, eps : float
        As in :class:`Adam`.
    weight_decay : float, default 0.01
        PyTorch's default; ``0`` makes AdamW identical to Adam.
    """

    decoupled_weight_decay = True

    def __init__(self, learning_rate: float = 1e-3, *, beta1: float = 0.9,
                 beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(learning_rate, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay)


class KeepGrads:
    """A stand-in optimizer that only keeps gradients: parameters never change.

    Attach it (``layer.optimizer = KeepGrads()``) to read ``layer.grads`` after
    ``backward`` -- for gradient checks, or for the decoupled flow where a real
    optimizer's :meth:`Optimizer.step` applies them later.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.optimizers import KeepGrads
    >>> be = xpnet.get_backend("numpy", dtype="float64")
    >>> dense = xpnet.Dense(2, 1, rng=0, backend=be)
    >>> dense.optimizer = KeepGrads()
    >>> _ = dense.backward(be.asarray([[1.0, 2.0]]), be.asarray([[1.0]]))
    >>> dense.grads["weights"]
    array([[1.],
           [2.]])
    """

    learning_rate = None
    compilable = True  # it only stores the gradients

    def update(self, layer: Layer, grads: dict) -> None:
        layer.grads = grads

    def step(self, layers: Any) -> None:
        """Nothing to apply."""

    def __repr__(self) -> str:
        return "KeepGrads()"


#: Optimizer names accepted by :func:`get_optimizer`.
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


def get_optimizer(name: str, learning_rate: float, *, momentum: float = 0.9,
                  weight_decay: float = 0.0) -> Optimizer:
    """Build an optimizer by name (used by the command line).

    Parameters
    ----------
    name : {"sgd", "momentum", "nesterov", "adam", "adamw"}
    learning_rate : float
    momentum : float, default 0.9
        Used by ``"momentum"`` and ``"nesterov"`` only.
    weight_decay : float, default 0.0
        L2 penalty (``sgd``, ``momentum``, ``nesterov``, ``adam``) or
        decoupled decay (``adamw``; with 0 it equals ``adam``).

    Examples
    --------
    >>> from xpnet.optimizers import get_optimizer
    >>> get_optimizer("nesterov", 0.05)
    SGD(learning_rate=0.05, weight_decay=0.0, momentum=0.9, nesterov=True, dampening=0.0)
    """
    key = str(name).strip().lower()
    if key == "sgd":
        return SGD(learning_rate, weight_decay=weight_decay)
    if key == "momentum":
        return SGD(learning_rate, momentum=momentum, weight_decay=weight_decay)
    if key == "nesterov":
        return SGD(learning_rate, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if key == "adam":
        return Adam(learning_rate, weight_decay=weight_decay)
    if key == "adamw":
        return AdamW(learning_rate, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


# --------------------------------------------------------------------------
# Learning-rate schedules: epoch (0-based) -> multiplier of the base rate
# --------------------------------------------------------------------------

class StepSchedule:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs: ``gamma ** (epoch // step_size)``.

    Examples
    --------
    >>> from xpnet.optimizers import StepSchedule
    >>> s = StepSchedule(2, gamma=0.5)
    >>> [s(e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_int(step_size, "step_size", low=1)
        self.gamma = _check_number("gamma", gamma)

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (int(epoch) // self.step_size)

    def __repr__(self) -> str:
        return f"StepSchedule(step_size={self.step_size}, gamma={self.gamma})"


class CosineSchedule:
    """Cosine annealing from 1 to ``min_multiplier`` over ``epochs`` epochs.

    ``m(e) = min + (1 - min) * (1 + cos(pi * e / epochs)) / 2`` for
    ``0 <= e <= epochs`` (and ``min`` after), the closed form of PyTorch's
    ``CosineAnnealingLR`` with ``T_max = epochs``.

    Examples
    --------
    >>> from xpnet.optimizers import CosineSchedule
    >>> s = CosineSchedule(4)
    >>> [round(s(e), 4) for e in range(4)]
    [1.0, 0.8536, 0.5, 0.1464]
    """

    def __init__(self, epochs: int, min_multiplier: float = 0.0) -> None:
        self.epochs = check_int(epochs, "epochs", low=1)
        self.min_multiplier = _check_number("min_multiplier", min_multiplier, high=1.0)

    def __call__(self, epoch: int) -> float:
        e = min(max(int(epoch), 0), self.epochs)
        lo = self.min_multiplier
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * e / self.epochs))

    def __repr__(self) -> str:
        return f"CosineSchedule(epochs={self.epochs}, min_multiplier={self.min_multiplier})"


#: Schedule names accepted by :func:`get_schedule`.
SCHEDULES = ("none", "step", "cosine")


def get_schedule(name: str | None, *, epochs: int, step_size: int | None = None,
                 gamma: float = 0.1) -> Callable[[int], float] | None:
    """A learning-rate schedule by name: a callable ``epoch -> multiplier``, or ``None``.

    Parameters
    ----------
    name : {"none", "step", "cosine"} or None
    epochs : int
        Length of the run (the cosine period; the default step size).
    step_size : int, optional
        Epochs between decays for ``"step"``; default ``max(1, epochs // 3)``.
    gamma : float, default 0.1
        Decay factor for ``"step"``.

    Examples
    --------
    >>> from xpnet.optimizers import get_schedule
    >>> get_schedule("step", epochs=9)
    StepSchedule(step_size=3, gamma=0.1)
    >>> get_schedule("none", epochs=9) is None
    True
    """
    key = "none" if name is None else str(name).strip().lower()
    check_int(epochs, "epochs", low=1)
    if key == "none":
        return None
    if key == "step":
        return StepSchedule(max(1, epochs // 3) if step_size is None else step_size, gamma)
    if key == "cosine":
        return CosineSchedule(epochs)
    raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
