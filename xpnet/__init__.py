"""xpnet: a small, fast MLP library written once against the Python array API.

The same layers, loss and training loop run on NumPy, CuPy, PyTorch, JAX and
array-api-strict; pick one with ``backend=``.

>>> import xpnet
>>> model = xpnet.Sequential.mlp([784, 100, 200, 10], backend="numpy", seed=0)
>>> model.n_params()
100710
"""

from . import backup, callbacks, initializers, losses, metrics, optimizers
from ._version import __version__
from .backends import Backend, available_backends, get_backend
from .backup import BackupAndRestore, ModelCheckpoint, TrainingInterrupted
from .callbacks import Callback, EarlyStopping, History, LearningRateScheduler, ReduceLROnPlateau
from .errors import (
    BackendUnavailableError,
    CheckpointError,
    DataError,
    DeviceMismatchError,
    DivergenceError,
    DTypeError,
    ExportError,
    ShapeError,
    StateError,
    XpnetError,
)
from .layers import Dense, Dropout, Flatten, Layer, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .losses import grad_softmax_crossentropy_with_logits, softmax_crossentropy_with_logits
from .network import Sequential, forward, predict, train
from .optimizers import SGD, Adam, AdamW, get_optimizer, get_schedule
from .training import iterate_minibatches

__all__ = [
    "__version__",
    "Backend",
    "get_backend",
    "available_backends",
    "Layer",
    "Dense",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "LeakyReLU",
    "Softmax",
    "Dropout",
    "Flatten",
    "SGD",
    "Adam",
    "AdamW",
    "get_optimizer",
    "get_schedule",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "LearningRateScheduler",
    "BackupAndRestore",
    "ModelCheckpoint",
    "TrainingInterrupted",
    "backup",
    "callbacks",
    "initializers",
    "metrics",
    "optimizers",
    "softmax_crossentropy_with_logits",
    "grad_softmax_crossentropy_with_logits",
    "forward",
    "predict",
    "train",
    "iterate_minibatches",
    "Sequential",
    "History",
    "Callback",
    "losses",
    "XpnetError",
    "BackendUnavailableError",
    "DeviceMismatchError",
    "ShapeError",
    "StateError",
    "DTypeError",
    "DivergenceError",
    "CheckpointError",
    "DataError",
    "ExportError",
]
