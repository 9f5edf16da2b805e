"""The tutorial's ``Layer``: ``forward(input)`` and ``backward(input, grad_output)``."""

from __future__ import annotations

from typing import Any, Protocol

from .._typing import Array
from ..backends import Backend, get_backend
from ..errors import ShapeError

__all__ = ["Layer", "layers_of"]


class _Updater(Protocol):
    """What a layer needs of its optimizer (:class:`xpnet.optimizers.Optimizer`;
    named structurally because ``optimizers`` imports this module)."""

    def update(self, layer: Any, grads: dict) -> None: ...


def loss_layers(layers: Any) -> list:
    """The layers whose output the loss sees: a final Softmax is fused with the loss.

    The cross-entropy from logits equals the cross-entropy of the final
    Softmax's probabilities, computed stably, so training skips that layer.
    """
    layers = list(layers)
    if layers and layers[-1].fused_with_loss:
        return layers[:-1]
    return layers


def inference_layers(layers: Any) -> list:
    """The layers that act at inference (Dropout and other training-only layers left out)."""
    return [layer for layer in layers if not getattr(layer, "identity_in_eval", False)]


def layers_of(model: Any, name: str = "network", *, allow_empty: bool = False) -> list[Layer]:
    """The layers of ``model`` (a ``Sequential`` or any iterable of layers) as a checked list.

    Parameters
    ----------
    model : Sequential or iterable of Layer
        Anything with a ``layers`` attribute is read through it.
    name : str
        How the messages call ``model``.
    allow_empty : bool
        Whether no layers at all is acceptable.

    Examples
    --------
    >>> import xpnet
    >>> from xpnet.layers.base import layers_of
    >>> layers_of([xpnet.ReLU(backend="numpy")])
    [ReLU()]
    >>> layers_of([xpnet.ReLU(backend="numpy"), "relu"])
    Traceback (most recent call last):
    ...
    TypeError: network[1] must be an xpnet Layer, got str
    """
    try:
        layers = list(getattr(model, "layers", model))
    except TypeError:
        raise TypeError(
            f"{name} must be a Sequential or a list of Layers, got {type(model).__name__}"
        ) from None
    if not layers and not allow_empty:
        raise ValueError(f"{name} must contain at least one layer, got an empty list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"{name}[{i}] must be an xpnet Layer, got {type(layer).__name__}")
    return layers


class Layer:
    """A building block that maps ``input`` to ``output`` and back-propagates.

    Subclasses implement :meth:`_forward` and :meth:`_backward` (the unchecked
    math); the public :meth:`forward`/:meth:`backward` validate their
    arguments first. The training loop calls the unchecked versions after
    validating the whole batch once.

    A layer with parameters lists their attribute names in ``param_names``;
    :attr:`params` and :attr:`grads` expose them as dicts for optimizers.
    """

    #: Attribute names of trainable parameters (e.g. ``("weights", "biases")``).
    param_names: tuple[str, ...] = ()
    #: True for layers that are the identity at inference (Dropout): predict skips them.
    identity_in_eval = False
    #: True when forward/backward are pure functions of inputs, parameters and
    #: Python constants (no host randomness or host reads), so a backend may
    #: compile the whole training step (``jax.jit``). Dropout sets it to False.
    compilable = True
    #: True for a final layer the loss absorbs (Softmax): training and ``evaluate``
    #: feed the softmax cross-entropy with this layer's *input*, the logits.
    fused_with_loss = False
    #: True when :meth:`_forward` always returns a new array that nothing else holds
    #: (Dense), so the training step may let the next layer overwrite it (:meth:`_forward_`).
    fresh_output = False
    #: True when :meth:`_backward` always returns a new input gradient that nothing
    #: else holds (Dense), so the training step may let the layer below overwrite it
    #: (:meth:`_backward_`).
    fresh_input_grad = False
    #: The plain SGD step size of a layer with parameters (set by its ``__init__``).
    learning_rate: float

    def __init__(self, *, backend: Backend | str | None = None):
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        self.grads: dict = {}
        self.optimizer: _Updater | None = None  # None: plain SGD step inside backward (the seed)

    # -- public, validated API (the tutorial's) ----------------------------
    def forward(self, input: Array) -> Array:
        """Compute the layer's output for a batch ``input`` of shape (n, ...)."""
        self._check_input(input, "input")
        return self._forward(input)

    def backward(self, input: Array, grad_output: Array) -> Array:
        """Return d loss / d input, updating parameters (if any) on the way."""
        self._check_input(input, "input")
        self.backend.check_array(grad_output, "grad_output", ndim=input.ndim)
        if tuple(grad_output.shape) != self.output_shape_for(tuple(input.shape)):
            raise ShapeError(
                f"grad_output must have the layer output's shape "
                f"{self.output_shape_for(tuple(input.shape))}, got {tuple(grad_output.shape)}"
            )
        return self._backward(input, grad_output, True)

    def __call__(self, input: Array) -> Array:
        return self.forward(input)

    # -- to override ----------------------------------------------------------
    def _forward(self, input: Array) -> Array:
        return input

    def _backward(self, input: Array, grad_output: Array, need_input_grad: bool) -> Array:
        return grad_output

    def _forward_(self, input: Array) -> Array:
        """:meth:`_forward`, allowed to overwrite ``input``.

        The training step calls it only for an ``input`` it owns (the output of
        a layer with :attr:`fresh_output`), never for a user's array. A layer that
        overwrites must keep :meth:`_backward` right when handed the overwritten
        ``input`` (ReLU: ``max(x, 0) > 0`` exactly where ``x > 0``).
        """
        return self._forward(input)

    def _backward_(self, input: Array, grad_output: Array, need_input_grad: bool) -> Array:
        """:meth:`_backward`, allowed to overwrite ``grad_output`` (which the training step
        owns: the input gradient of a layer with :attr:`fresh_input_grad`)."""
        return self._backward(input, grad_output, need_input_grad)

    def output_shape_for(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape``."""
        return input_shape

    def _check_input(self, input: Array, name: str) -> None:
        self.backend.check_array(input, name)

    # -- parameters -----------------------------------------------------------
    @property
    def params(self) -> dict:
        """Trainable parameters by name (the arrays themselves, not copies)."""
        return {n: getattr(self, n) for n in self.param_names}

    def set_param(self, name: str, value: Array) -> None:
        """Replace parameter ``name`` (optimizers use this, so JAX works too)."""
        setattr(self, name, value)

    def n_params(self) -> int:
        total = 0
        for p in self.params.values():
            size = 1
            for s in p.shape:
                size *= s
            total += size
        return total

    def to(self, backend: Backend | str | None) -> Layer:
        """Move the layer's parameters to ``backend`` (a copy each: on the device
        when both backends share one, through DLPack; else through the host)."""
        backend = get_backend(backend)
        if backend != self.backend:
            for n in self.param_names:
                setattr(self, n, backend.transfer_from(self.backend, getattr(self, n)))
            self.backend = backend
            self.xp = backend.xp
            self.grads = {}
        return self

    def _apply_update(self, grads: dict, lr_grads: dict | None = None) -> None:
        """Hand gradients to the optimizer, or take the seed's SGD step.

        ``lr_grads``, when given, already holds ``learning_rate * grad`` (the
        layer computed it cheaply), so the plain step is one in-place subtract.
        """
        if self.optimizer is not None:
            self.grads = grads
            self.optimizer.update(self, grads)
            return
        be = self.backend
        if lr_grads is None:
            lr = self.learning_rate
            lr_grads = {n: g * lr for n, g in grads.items()}
        for n, g in lr_grads.items():
            setattr(self, n, be.sub_(getattr(self, n), g))

    @classmethod
    def param_shapes(cls, config: dict) -> dict | None:
        """Shapes of the parameters that ``cls(**config)`` would have, without building it.

        Checkpoints compare them with the stored arrays before building
        anything, so a header cannot make loading allocate more than the file
        holds. ``None`` means "unknown until built" (the default for a layer
        with parameters; xpnet's own layers override this).
        """
        return {} if not cls.param_names else None

    @classmethod
    def from_config(cls, config: dict, params: dict | None = None, *,
                    backend: Backend | str | None = None) -> Layer:
        """Rebuild a layer from :meth:`get_config`, with ``params`` (host arrays by name).

        Layers that initialise parameters override this to take ``params``
        instead of drawing fresh values.
        """
        layer = cls(**config, backend=backend)
        layer._set_host_params(params or {})
        return layer

    def _set_host_params(self, params: dict) -> None:
        for name, host in params.items():
            self.set_param(name, self.backend.asarray(host))

    def host_rng_state(self) -> dict | None:
        """The state of the host generator this layer draws from in training (None: it draws nothing).

        A backup (:mod:`xpnet.backup`) keeps it, so a resumed run draws what
        the uninterrupted one would have drawn.
        """
        return None

    def set_host_rng_state(self, state: dict) -> None:
        """Continue from :meth:`host_rng_state`'s ``state``."""
        raise TypeError(f"{type(self).__name__} draws no host randomness, so it has no "
                        "generator state to restore")

    def get_config(self) -> dict:
        """Constructor arguments (JSON-able) that rebuild this layer: ``type(self)(**config)``.

        Checkpoints store it next to the parameters; layers with arguments override it.
        """
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
