"""Compiled epochs: a whole training epoch as one program, on backends that compile loops.

At batch 32 a training step is a few dozen small array operations, and on a
compiling backend (JAX) each call of even a compiled step pays a dispatch.
:class:`CompiledEpoch` hands the backend the whole epoch instead, through
:meth:`Backend.compile_loop <xpnet.backends.Backend.compile_loop>`
(``jax.lax.scan`` inside ``jax.jit``): the batch gather (``take`` on the epoch's
permutation), forward, loss, backward and every update run inside one
program, and the running loss sum comes back once per epoch.

The math stays the layers' own. The portable training step is traced with
every piece of state it reads or writes swapped for the compiler's
placeholders -- the *carry*: parameters, the gradients that layers with an
optimizer keep in ``layer.grads``, and the optimizer's per-parameter state
(momentum buffers, Adam moments and step counts) -- and with the learning
rates passed as arguments, so a per-epoch schedule reuses the program.
Whatever the trace touched is put back on the layers and optimizers
afterwards; the results are installed after each call.

The portable twin is the same class on a backend whose ``compile_loop`` is
the Python loop (tests compare both with the plain step-by-step epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._typing import Array
from .errors import StateError

if TYPE_CHECKING:
    from .backends import Backend
    from .layers.base import Layer

__all__ = ["CompiledEpoch", "compiles_epochs", "epoch_cache_key"]

#: Warm-up steps allowed before the state's structure must stop changing.
MAX_WARMUP_STEPS = 3


def compiles_epochs(backend: Backend, layers: Sequence[Layer]) -> bool:
    """Whether ``backend`` can run a whole epoch of ``layers`` as one program.

    It needs a backend that compiles loops, layers that are all
    :attr:`~xpnet.layers.Layer.compilable` and optimizers (if any) that are
    ``compilable`` too (pure array math, no host reads).
    """
    return bool(getattr(backend, "compiles_loops", False)) and all(
        layer.compilable for layer in layers) and all(
        getattr(opt, "compilable", False) for opt in _optimizers(layers))


def epoch_cache_key(layers: Sequence[Layer]) -> tuple:
    """What a compiled epoch bakes in: the layers, their settings and optimizers' settings.

    Learning rates are arguments of the program, not constants, so they are
    left out: a learning-rate schedule does not recompile. Optimizers count by
    class and settings, not identity (their state is carried, not baked), so
    ``fit(optimizer=Adam())`` called again with a fresh ``Adam()`` reuses the
    program; which layers share one optimizer is part of the carry's layout.
    """
    return tuple(
        (id(layer), type(layer).__name__, repr(_without_rate(layer.get_config())),
         type(layer.optimizer).__name__, _optimizer_settings(layer.optimizer))
        for layer in layers)


def _without_rate(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "learning_rate"}


def _optimizer_settings(opt: Any) -> str:
    config = getattr(opt, "get_config", None)
    return repr(_without_rate(config())) if callable(config) else repr(opt)


def _optimizers(layers: Sequence[Layer]) -> list:
    """The distinct optimizers attached to ``layers``, in layer order."""
    seen, out = set(), []
    for layer in layers:
        opt = layer.optimizer
        if opt is not None and id(opt) not in seen:
            seen.add(id(opt))
            out.append(opt)
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Slot:
    """One value a training step reads and may replace: ``get()`` and ``set(value)``.

    ``role`` names it by position (layer index, parameter, state key, kind),
    never by object identity, so two epochs with the same roles can run the
    same compiled program.
    """

    __slots__ = ("get", "set", "role", "kind")

    def __init__(self, get: Callable[[], Any], set_: Callable[[Any], None], role: tuple,
                 kind: str = "array") -> None:
        self.get, self.set, self.role, self.kind = get, set_, role, kind


def _attr_slot(owner: object, name: str, role: tuple, kind: str = "array") -> _Slot:
    return _Slot(lambda: getattr(owner, name), lambda v: setattr(owner, name, v), role, kind)


def _item_slot(owner: dict, key: str, role: tuple, kind: str) -> _Slot:
    return _Slot(lambda: owner[key], lambda v: owner.__setitem__(key, v), role, kind)


def _grad_slot(layer: Layer, name: str, role: tuple) -> _Slot:
    # ``_apply_update`` replaces the whole ``grads`` dict each step: go through the layer.
    def set_(v: Array) -> None:
        layer.grads = {**layer.grads, name: v}

    return _Slot(lambda: layer.grads[name], set_, role)


def _param_state(opt: Any, layers: Sequence[Layer]) -> Iterator[tuple[int, str, dict]]:
    """``(layer index, parameter name, state dict)`` of ``opt``'s state for ``layers``."""
    state = getattr(opt, "state", None)
    if not isinstance(state, dict):
        return
    for i, layer in enumerate(layers):
        if layer.optimizer is not opt:
            continue
        for name in layer.param_names:
            st = state.get((id(layer), name))
            if not isinstance(st, dict):
                continue
            owner = st.get("layer")
            if callable(owner) and owner() is layer:  # state made for this very layer
                yield i, name, st


def carry_slots(backend: Backend, layers: Sequence[Layer]) -> list[_Slot]:
    """The state one training step of ``layers`` reads and replaces, in a fixed order."""
    slots = [_attr_slot(layer, name, ("param", i, name))
             for i, layer in enumerate(layers) for name in layer.param_names]
    slots += [_grad_slot(layer, name, ("grad", i, name))
              for i, layer in enumerate(layers) if layer.optimizer is not None
              for name in sorted(layer.grads)]
    for j, opt in enumerate(_optimizers(layers)):
        for i, name, st in _param_state(opt, layers):
            for key in sorted(k for k in st if isinstance(k, str)):
                value = st[key]
                if backend.owns(value):
                    kind = "array"
                elif _is_number(value):
                    kind = "int" if isinstance(value, int) else "float"
                else:
                    continue  # bookkeeping (the backend, a weak reference)
                slots.append(_item_slot(st, key, ("opt", j, i, name, key, kind), kind))
    return slots


def rate_slots(layers: Sequence[Layer]) -> list[_Slot]:
    """The learning rates the step reads: the layers' own and their optimizers'."""
    slots = [_attr_slot(layer, "learning_rate", ("rate", i))
             for i, layer in enumerate(layers) if _is_number(getattr(layer, "learning_rate", None))]
    slots += [_attr_slot(opt, "learning_rate", ("opt_rate", j))
              for j, opt in enumerate(_optimizers(layers))
              if _is_number(getattr(opt, "learning_rate", None))]
    return slots


def _snapshot(layers: Sequence[Layer]) -> list[tuple[dict, dict]]:
    """Shallow copies of every dict a traced step may write to, for :func:`_restore`."""
    dicts = [layer.__dict__ for layer in layers]
    for opt in _optimizers(layers):
        dicts.append(opt.__dict__)
        state = getattr(opt, "state", None)
        if isinstance(state, dict):
            dicts.append(state)
            dicts += [st for st in state.values() if isinstance(st, dict)]
    return [(d, dict(d)) for d in dicts]


def _restore(snapshot: list) -> None:
    """Put every snapshotted dict back as it was: no placeholder stays behind."""
    for d, saved in snapshot:
        d.clear()
        d.update(saved)


class CompiledEpoch:
    """The training steps of one epoch as one call of a compiled loop.

    Parameters
    ----------
    backend : Backend
        Its :meth:`~xpnet.backends.Backend.compile_loop` runs the epoch.
    layers : list of Layer
        The layers the loss sees (a fused final Softmax left out).
    step : callable
        The portable step ``step(X, onehot, idx) -> summed loss`` (the layers
        update themselves); traced once per state layout and data shape.

    Notes
    -----
    An optimizer creates its state in its first step, which changes the
    carry's structure: with optimizers, the first steps of an epoch (until
    a step leaves the structure as it found it, at most
    :data:`MAX_WARMUP_STEPS`) run one by one before the loop takes over.
    """

    def __init__(self, backend: Backend, layers: Sequence[Layer],
                 step: Callable[[Array, Array, Array], Array]) -> None:
        self.backend = backend
        self.layers = list(layers)
        self.step = step
        self._stable_layouts: set = set()
        self._eager_steps = 0
        self._loops: dict = {}

    def _is_stable(self) -> bool:
        """Whether a step keeps the carry's structure (only optimizers create state)."""
        if not _optimizers(self.layers):
            return True
        return self._layout() in self._stable_layouts

    def _layout(self) -> tuple:
        return (tuple(s.role for s in carry_slots(self.backend, self.layers)),
                tuple(s.role for s in rate_slots(self.layers)))

    def __call__(self, X: Array, onehot: Array, order: Array, n_steps: int,
                 batch_size: int) -> list[float]:
        """Train ``n_steps`` batches of ``order``; return the running loss sums (host floats)."""
        if n_steps < 1:
            return []
        xp = self.backend.xp
        rows = xp.reshape(order[:n_steps * batch_size], (n_steps, batch_size))
        total = self.backend.zeros(())
        running, done = [], 0
        while done < n_steps and (done < self._eager_steps or not self._is_stable()):
            if done >= MAX_WARMUP_STEPS:
                raise StateError(
                    "the training state keeps changing its structure from step to step; "
                    "set compilable = False on the optimizer or layer responsible")
            before = self._layout()
            total = total + self.step(X, onehot, rows[done, ...])
            running.append(total)
            done += 1
            if self._layout() == before:
                self._stable_layouts.add(before)
        # Every epoch runs as many steps one by one as the first needed, so the
        # loop always has the same length and is compiled once.
        self._eager_steps = max(self._eager_steps, done)
        hosts = [float(t) for t in running]
        if done < n_steps:
            ys = self._run_loop(X, onehot, rows[done:, ...], total)
            hosts += [float(v) for v in self.backend.to_numpy(ys)]
        return hosts

    def _run_loop(self, X: Array, onehot: Array, rows: Array, total: Array) -> Array:
        """One call of the compiled loop over ``rows``; installs the new state."""
        be = self.backend
        layout = self._layout()
        loop = self._loops.get(layout)
        if loop is None:
            loop = self._loops[layout] = be.compile_loop(self._body, donate_carry=True)
        slots = carry_slots(be, self.layers)
        values = _distinct([_to_device(be, s) for s in slots], be)
        rates = [be.asarray(s.get()) for s in rate_slots(self.layers)]
        (values, total), ys = loop((values, total), rows, rates, X, onehot)
        for slot, value in zip(slots, values):
            slot.set(_from_device(slot, value))
        return ys

    def _body(self, carry: tuple[list[Array], Array], idx: Array, rates: list[Array], X: Array,
              onehot: Array) -> tuple[tuple[list[Array], Array], Array]:
        """One step as a pure function of the carry (traced by compiling backends)."""
        values, total = carry
        saved = _snapshot(self.layers)
        try:
            slots = carry_slots(self.backend, self.layers)  # the same layout as ``values``
            for slot, value in zip(slots, values):
                slot.set(value)
            for slot, rate in zip(rate_slots(self.layers), rates):
                slot.set(rate)
            loss = self.step(X, onehot, idx)
            values = [slot.get() for slot in slots]
        finally:
            _restore(saved)
        total = total + loss
        return (values, total), total


def _to_device(backend: Backend, slot: _Slot) -> Array:
    value = slot.get()
    if slot.kind == "int":
        return backend.asarray(value, dtype=backend.index_dtype)
    if slot.kind == "float":
        return backend.asarray(value)
    return value


def _from_device(slot: _Slot, value: Array) -> Any:
    if slot.kind == "int":
        return int(value)
    if slot.kind == "float":
        return float(value)
    return value


def _distinct(values: list, backend: Backend) -> list:
    """``values`` with repeated arrays copied: a donated buffer may appear only once.

    (SGD with momentum keeps its first buffer as the very gradient array.)
    """
    seen, out = set(), []
    for v in values:
        if id(v) in seen:
            v = backend.xp.asarray(v, copy=True)
        seen.add(id(v))
        out.append(v)
    return out

