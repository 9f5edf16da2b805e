"""The tutorial's ``Layer``: ``forward(input)`` and ``backward(input, grad_output)``."""

from __future__ import annotations

from ..backends import Backend, get_backend

__all__ = ["Layer"]


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

    def __init__(self, *, backend: Backend | str | None = None):
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        self.grads: dict = {}
        self.optimizer = None  # None: plain SGD step inside backward (the seed)

    # -- public, validated API (the tutorial's) ----------------------------
    def forward(self, input):
        """Compute the layer's output for a batch ``input`` of shape (n, ...)."""
        self._check_input(input, "input")
        return self._forward(input)

    def backward(self, input, grad_output):
        """Return d loss / d input, updating parameters (if any) on the way."""
        self._check_input(input, "input")
        self.backend.check_array(grad_output, "grad_output", ndim=input.ndim)
        if tuple(grad_output.shape) != self.output_shape_for(tuple(input.shape)):
            from ..errors import ShapeError

            raise ShapeError(
                f"grad_output must have the layer output's shape "
                f"{self.output_shape_for(tuple(input.shape))}, got {tuple(grad_output.shape)}"
            )
        return self._backward(input, grad_output, True)

    def __call__(self, input):
        return self.forward(input)

    # -- to override ----------------------------------------------------------
    def _forward(self, input):
        return input

    def _backward(self, input, grad_output, need_input_grad: bool):
        return grad_output

    def output_shape_for(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape``."""
        return input_shape

    def _check_input(self, input, name):
        self.backend.check_array(input, name)

    # -- parameters -----------------------------------------------------------
    @property
    def params(self) -> dict:
        """Trainable parameters by name (the arrays themselves, not copies)."""
        return {n: getattr(self, n) for n in self.param_names}

    def set_param(self, name: str, value) -> None:
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

    def to(self, backend) -> "Layer":
        """Move the layer's parameters to ``backend`` (through the host, once)."""
        backend = get_backend(backend)
        if backend != self.backend:
            for n in self.param_names:
                host = self.backend.to_numpy(getattr(self, n))
                setattr(self, n, backend.asarray(host))
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

    def get_config(self) -> dict:
        """Constructor arguments (JSON-able) that rebuild this layer: ``type(self)(**config)``.

        Checkpoints store it next to the parameters; layers with arguments override it.
        """
        return {}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
