"""The tutorial this project starts from, ported to xpnet: an MLP on MNIST in a page.

Run it with::

    python examples/mnist_mlp.py                  # NumPy, 25 epochs, like the tutorial
    python examples/mnist_mlp.py --backend torch --epochs 5

The code is the tutorial's, line for line: a list of layers, the free functions
``forward``/``predict``/``train``/``iterate_minibatches``, and a loop printing the
epoch, the train and the validation accuracy. Only two things change: arrays
live on the chosen backend (``be.xp`` is its array-API namespace), and the
plots are written to PNG files instead of shown. ``xpnet train`` does the same
with a progress bar, saved models and more options.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")  # write PNG files, never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import xpnet  # noqa: E402
from xpnet import Dense, ReLU, forward, iterate_minibatches, predict, train  # noqa: E402
from xpnet.datasets import load_mnist  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--backend", default="numpy", help="numpy, torch, jax, cupy, array_api_strict")
parser.add_argument("--epochs", type=int, default=25)
parser.add_argument("--plot", default="out/example_accuracy.png")
parser.add_argument("--examples", default="out/example_digits.png")
args = parser.parse_args()
for path in (args.plot, args.examples):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

be = xpnet.get_backend(args.backend)  # float32 by default
xp = be.xp

# The data: pixels in [0, 1], the last 10,000 training images kept for validation.
X_train, y_train, X_val, y_val, X_test, y_test = load_mnist(flatten=True, backend=be)

# Four example digits with their labels.
plt.figure(figsize=[6, 6])
for i in range(4):
    plt.subplot(2, 2, i + 1)
    plt.title(f"Label: {int(y_train[i])}")
    plt.imshow(be.to_numpy(X_train[i]).reshape([28, 28]), cmap="gray")
plt.savefig(args.examples)
plt.close()

# The network: 784 -> 100 -> 200 -> 10 with ReLU in between. The weights are
# drawn on the host from one seeded generator: identical on every backend.
init_rng = np.random.default_rng(0)
network = []
network.append(Dense(X_train.shape[1], 100, backend=be, rng=init_rng))
network.append(ReLU(backend=be))
network.append(Dense(100, 200, backend=be, rng=init_rng))
network.append(ReLU(backend=be))
network.append(Dense(200, 10, backend=be, rng=init_rng))

# forward() returns every layer's activation; the last one holds the logits.
activations = forward(network, X_train[:5])
print("untrained logits for 5 images:", tuple(activations[-1].shape))


def accuracy(network, X, y):
    return float(xp.mean(xp.astype(predict(network, X) == y, be.dtype)))


train_log = []
val_log = []
batch_rng = np.random.default_rng(0)  # the batch order: the same on every backend
for epoch in range(args.epochs):
    for x_batch, y_batch in iterate_minibatches(X_train, y_train, batchsize=32,
                                                shuffle=True, rng=batch_rng):
        train(network, x_batch, y_batch)

    train_log.append(accuracy(network, X_train, y_train))
    val_log.append(accuracy(network, X_val, y_val))

    print("Epoch", epoch)
    print("Train accuracy:", train_log[-1])
    print("Val accuracy:", val_log[-1])

plt.plot(train_log, label="train accuracy")
plt.plot(val_log, label="val accuracy")
plt.xlabel("epoch")
plt.ylabel("accuracy")
plt.title(f"784-100-200-10 on MNIST ({be.name}, {be.dtype_name})")
plt.legend(loc="best")
plt.grid()
plt.savefig(args.plot)
print("Test accuracy:", accuracy(network, X_test, y_test))
print("Saved the curves to", args.plot)
