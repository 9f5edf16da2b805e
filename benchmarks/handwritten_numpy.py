"""The reference: the seed MLP written by hand in NumPy, in the tutorial's style.

This is what a user would write without xpnet: ``Layer``/``Dense``/``ReLU``
classes built on ``np.dot``, a softmax cross-entropy that picks the logits of
the right answers by fancy indexing, and plain SGD inside ``Dense.backward``.
It is deliberately *not* tuned -- it is the yardstick the issue measures
xpnet against -- but it computes exactly what xpnet computes:

* weights are drawn the same way and in the same order as
  ``xpnet.Sequential.mlp(sizes, seed=seed)``: one ``numpy.random.Generator``,
  ``standard_normal(shape) * 0.01`` per Dense layer in float64, then cast once
  to the working dtype; biases start at zero;
* batches come in the same order as ``Sequential.fit(..., seed=rng)``: one
  ``rng.permutation(n)`` per epoch, consecutive slices of ``batch_size``
  indices, the last incomplete batch dropped.

The only differences are the ones of the tutorial: the loss uses ``exp`` of
the raw logits (no max-shift; harmless with this init), the learning rate
multiplies the weight gradient rather than ``grad_output``, and the first
layer's input gradient is computed although nobody uses it. With float64 the
losses and weights agree with xpnet's to rounding (tests/test_benchmarks.py).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Layer",
    "ReLU",
    "Dense",
    "softmax_crossentropy_with_logits",
    "grad_softmax_crossentropy_with_logits",
    "forward",
    "predict",
    "train",
    "iterate_minibatches",
    "build_mlp",
    "train_epoch",
]


class Layer:
    """A building block: ``forward(input)`` and ``backward(input, grad_output)``."""

    def forward(self, input):
        return input

    def backward(self, input, grad_output):
        # The identity's Jacobian, the long way round (as the tutorial does).
        num_units = input.shape[1]
        d_layer_d_input = np.eye(num_units, dtype=input.dtype)
        return np.dot(grad_output, d_layer_d_input)


class ReLU(Layer):
    """Elementwise ``max(0, x)``."""

    def forward(self, input):
        return np.maximum(0, input)

    def backward(self, input, grad_output):
        relu_grad = input > 0
        return grad_output * relu_grad


class Dense(Layer):
    """``f(x) = x . W + b`` with an SGD step inside ``backward``.

    ``weights`` is the (input_units, output_units) initial matrix; the
    caller draws it (see :func:`build_mlp`) so that xpnet and this reference
    start from the same numbers.
    """

    def __init__(self, weights, learning_rate=0.1):
        self.learning_rate = learning_rate
        self.weights = weights
        self.biases = np.zeros(weights.shape[1], dtype=weights.dtype)

    def forward(self, input):
        return np.dot(input, self.weights) + self.biases

    def backward(self, input, grad_output):
        # d f / d x = W^T, with the weights from before the update.
        grad_input = np.dot(grad_output, self.weights.T)
        grad_weights = np.dot(input.T, grad_output)
        grad_biases = grad_output.mean(axis=0) * input.shape[0]
        assert grad_weights.shape == self.weights.shape
        assert grad_biases.shape == self.biases.shape
        self.weights = self.weights - self.learning_rate * grad_weights
        self.biases = self.biases - self.learning_rate * grad_biases
        return grad_input


def softmax_crossentropy_with_logits(logits, reference_answers):
    """Per-sample cross-entropy from logits and integer labels."""
    logits_for_answers = logits[np.arange(len(logits)), reference_answers]
    return -logits_for_answers + np.log(np.sum(np.exp(logits), axis=-1))


def grad_softmax_crossentropy_with_logits(logits, reference_answers):
    """Gradient of the mean cross-entropy w.r.t. the logits."""
    ones_for_answers = np.zeros_like(logits)
    ones_for_answers[np.arange(len(logits)), reference_answers] = 1
    softmax = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    return (-ones_for_answers + softmax) / logits.shape[0]


def forward(network, X):
    """Every layer's activation, in order; the last one holds the logits."""
    activations = []
    input = X
    for layer in network:
        activations.append(layer.forward(input))
        input = activations[-1]
    return activations


def predict(network, X):
    """Predicted class of each row of ``X`` (one forward pass over all of it)."""
    logits = forward(network, X)[-1]
    return logits.argmax(axis=-1)


def train(network, X, y):
    """One SGD step on the batch ``(X, y)``; returns its mean loss."""
    layer_activations = forward(network, X)
    layer_inputs = [X] + layer_activations
    logits = layer_activations[-1]
    loss = softmax_crossentropy_with_logits(logits, y)
    loss_grad = grad_softmax_crossentropy_with_logits(logits, y)
    for layer_index in range(len(network))[::-1]:
        layer = network[layer_index]
        loss_grad = layer.backward(layer_inputs[layer_index], loss_grad)
    return np.mean(loss)


def iterate_minibatches(inputs, targets, batchsize, shuffle=False, rng=None):
    """Yield ``(inputs[excerpt], targets[excerpt])``; the last partial batch is dropped."""
    assert len(inputs) == len(targets)
    if shuffle:
        indices = rng.permutation(len(inputs))
    for start_idx in range(0, len(inputs) - batchsize + 1, batchsize):
        if shuffle:
            excerpt = indices[start_idx:start_idx + batchsize]
        else:
            excerpt = slice(start_idx, start_idx + batchsize)
        yield inputs[excerpt], targets[excerpt]


def build_mlp(sizes=(784, 100, 200, 10), *, seed=0, dtype="float32", learning_rate=0.1):
    """Dense/ReLU list with the weights ``xpnet.Sequential.mlp(sizes, seed=seed)`` gets."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    network = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            network.append(ReLU())
        w = (rng.standard_normal((a, b)) * 0.01).astype(dtype)
        network.append(Dense(w, learning_rate))
    return network


def train_epoch(network, X, y, batch_size, rng):
    """One pass over ``(X, y)`` in the order ``rng.permutation`` gives; mean loss."""
    losses = []
    for x_batch, y_batch in iterate_minibatches(X, y, batch_size, shuffle=True, rng=rng):
        losses.append(train(network, x_batch, y_batch))
    return float(np.mean(losses)) if losses else float("nan")
