"""The fits that :mod:`benchmarks.fit_hashes` hashes: data, inputs and ``Sequential`` cases.

Everything here goes through xpnet's public API only (``xpnet.Sequential`` and
its ``fit``/``predict``/``evaluate``, public layers, losses, optimizers,
callbacks and ``xpnet.distributed``), because the modules behind it are about
to move: the same cases must run unchanged before and after.

A case is a name and a function returning an :data:`Outcome`: a list of arrays
(the final parameters, or predictions) and a record (the ``History`` without
its timing keys, or scores). Error cases (:mod:`benchmarks.fit_hash_errors`)
instead raise before training. Estimator cases: :mod:`benchmarks.fit_hash_sklearn`.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import xpnet
from xpnet.distributed import init as init_communicator

#: (arrays, record): what one case hashes.
Outcome = tuple[list, dict]

N_ROWS, N_FEATURES, N_CLASSES, N_TARGETS = 256, 20, 3, 2
HIDDEN = 16
#: Small enough that every host-data fit streams several chunks (labels, batch 32:
#: float64 8 chunks of 32 rows, float32 96 + 96 + 64 rows; chunks hold whole batches).
CHUNK_BYTES = 10_000
#: History keys that hold wall-clock time: never hashed.
TIMING_KEYS = frozenset({"seconds"})
#: Output units per loss (BCE: one 0/1 column per label).
OUTPUTS = {"softmax_crossentropy": N_CLASSES, "mse": N_TARGETS, "binary_crossentropy": N_CLASSES}


@dataclass(frozen=True)
class Case:
    """One row of the table: ``run()`` trains (or raises, when ``raises``)."""

    name: str
    run: Callable[[], Outcome]
    raises: bool = False


# -- data --------------------------------------------------------------------------------

def host_features(n: int = N_ROWS, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Float64 features and integer labels of separable-ish Gaussian classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    X = rng.standard_normal((n, N_FEATURES)) + 1.5 * np.eye(N_CLASSES, N_FEATURES)[y]
    return X, y


def host_targets(X: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """What ``loss`` trains on: labels, float targets (MSE) or 0/1 columns (BCE)."""
    if loss == "mse":
        return np.stack([X[:, 0] - 0.5 * X[:, 1], np.tanh(X[:, 2])], axis=1)
    if loss == "binary_crossentropy":
        return (X[:, :N_CLASSES] > 0.3).astype(np.float64)
    return y


def host_sample_weight(n: int = N_ROWS, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.25, 2.0, n)


@dataclass
class HostSet:
    """One data set on the host, in the model's dtype: ``X``, targets, weights."""

    X: np.ndarray
    t: np.ndarray
    w: np.ndarray

    @classmethod
    def make(cls, be: xpnet.Backend, loss: str, n: int = N_ROWS, seed: int = 1) -> HostSet:
        X, y = host_features(n, seed)
        t = host_targets(X, y, loss)
        dtype = np.dtype(be.dtype_name)
        return cls(X.astype(dtype), t.astype(dtype) if t.dtype.kind == "f" else t,
                   host_sample_weight(n, seed + 2))


def to_device(be: xpnet.Backend, a: np.ndarray) -> Any:
    """``a`` on the backend: labels as its index dtype, anything else as its float dtype."""
    return be.asarray(a, dtype=be.index_dtype) if a.dtype.kind in "iu" else be.asarray(a)


def memmap_of(a: np.ndarray, folder: Path, name: str) -> np.ndarray:
    """``a`` saved as ``folder/name.npy`` and opened with ``np.load(mmap_mode="r")``."""
    path = folder / f"{name}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode="r")


class BatchDataset:
    """Batches by index (``__len__``/``__getitem__``): replayed, and shuffled from the seed."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple:
        return self.batches[i]


# -- fits ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FitSpec:
    """What one ``Sequential.fit`` case trains on and with.

    ``inputs`` is one of :data:`INPUT_KINDS`; ``weights`` adds ``sample_weight``
    (triples for batches); ``validation`` adds ``validation_data`` of the inputs'
    kind; ``options`` are further ``fit`` keyword arguments, a callable value
    being called at run time (fresh callbacks, Generators). ``refits`` more
    ``fit`` calls continue the same ``History``.
    """

    inputs: str = "arrays"
    loss: str = "softmax_crossentropy"
    optimizer: str = "seed"
    model: str = "mlp"
    weights: bool = False
    validation: bool = False
    options: dict = field(default_factory=dict)
    epochs: int = 2
    batch_size: int = 32
    refits: int = 0


#: name -> optimizer factory (None: the layers' own SGD step, the tutorial's).
OPTIMIZERS: dict[str, Callable[[], Any]] = {
    "seed": lambda: None,
    "sgd": lambda: xpnet.SGD(0.05),
    "momentum": lambda: xpnet.SGD(0.05, momentum=0.9),
    "nesterov": lambda: xpnet.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: xpnet.Adam(1e-2),
    "adamw": lambda: xpnet.AdamW(1e-2, weight_decay=1e-2),
}


def build_model(be: xpnet.Backend, loss: str, kind: str = "mlp") -> xpnet.Sequential:
    """The model of a case: an MLP, or one with Dropout (host-drawn masks)."""
    sizes = [N_FEATURES, HIDDEN, OUTPUTS[loss]]
    if kind == "mlp":
        return xpnet.Sequential.mlp(sizes, init="he_normal", learning_rate=0.05, seed=0,
                                    backend=be, loss=loss)
    rng = np.random.default_rng(0)
    layers = [xpnet.Dense(sizes[0], sizes[1], 0.05, init="he_normal", rng=rng, backend=be),
              xpnet.ReLU(backend=be), xpnet.Dropout(0.25, rng=4, backend=be),
              xpnet.Dense(sizes[1], sizes[2], 0.05, init="he_normal", rng=rng, backend=be)]
    return xpnet.Sequential(layers, backend=be, loss=loss)


def parameters(model: xpnet.Sequential) -> list:
    """Every parameter array of ``model`` on the host, in layer order."""
    be = model.backend
    return [be.to_numpy(getattr(layer, name)) for layer in model.layers
            for name in layer.param_names]


def history_record(history: xpnet.History) -> dict:
    return {k: v for k, v in history.history.items() if k not in TIMING_KEYS}


def _materialize(options: dict, optimizer: Any) -> dict:
    """The options of one ``fit`` call: a callable value is called with its optimizer."""
    return {k: v(optimizer) if callable(v) else v for k, v in options.items()}


def _split_batches(X: Any, t: Any, w: Any, batch_size: int) -> list:
    """Whole batches only (the last incomplete one dropped, as ``fit`` does)."""
    n = X.shape[0] // batch_size * batch_size
    out = []
    for lo in range(0, n, batch_size):
        rows = slice(lo, lo + batch_size)
        # (``...``: array-api-strict takes no 1-axis index of a 2-D array)
        part = (X[rows, ...], t[rows, ...])
        out.append(part if w is None else (*part, w[rows]))
    return out


def _batch_inputs(be: xpnet.Backend, spec: FitSpec, data: HostSet) -> Any:
    """The training batches of a ``batch-*`` input kind."""
    w = data.w if spec.weights else None
    if spec.inputs == "batch-list":  # arrays on the device
        dev = [to_device(be, a) for a in (data.X, data.t)]
        wd = None if w is None else to_device(be, w)
        return _split_batches(dev[0], dev[1], wd, spec.batch_size)
    batches = _split_batches(data.X, data.t, w, spec.batch_size)
    if spec.inputs == "batch-generator":
        return (b for b in batches)
    if spec.inputs == "batch-dataset":
        return BatchDataset(batches)
    return batches  # batch-host-list


def training_inputs(be: xpnet.Backend, spec: FitSpec, folder: Path, comm: Any) -> tuple:
    """``(X, y, extra fit keyword arguments)`` of the spec's input kind."""
    data = HostSet.make(be, spec.loss)
    val = HostSet.make(be, spec.loss, n=96, seed=11)
    extra: dict = {}
    if spec.inputs.startswith("batch-"):
        X, y = _batch_inputs(be, spec, data), None
        val_pair = (to_device(be, val.X), to_device(be, val.t))
    elif spec.inputs in ("arrays", "distributed"):
        X, y = to_device(be, data.X), to_device(be, data.t)
        val_pair = (to_device(be, val.X), to_device(be, val.t))
        if spec.weights:
            extra["sample_weight"] = to_device(be, data.w)
        if spec.inputs == "distributed":
            extra["distributed"] = comm
    else:  # host data: a NumPy array, or memmaps of .npy files
        mapped = spec.inputs == "memmap"
        X = memmap_of(data.X, folder, "X") if mapped else data.X
        y = data.t
        val_pair = (memmap_of(val.X, folder, "Xv") if mapped else val.X, val.t)
        extra["chunk_bytes"] = CHUNK_BYTES
        if spec.weights:
            extra["sample_weight"] = data.w
    if spec.validation:
        extra["validation_data"] = val_pair
    return X, y, extra


def run_fit(be: xpnet.Backend, spec: FitSpec, comm: Any = None) -> Outcome:
    """Train the spec's model and return its parameters and History.

    With ``seed`` a Generator, the record also holds the Generator's next draw
    after training: ``fit`` must draw as much from it as before. Progress bars
    (``progress=True``) are written to a buffer, not the terminal.
    """
    with tempfile.TemporaryDirectory(prefix="xpnet-hashes-") as tmp:
        X, y, extra = training_inputs(be, spec, Path(tmp), comm)
        model = build_model(be, spec.loss, spec.model)
        history, record = None, {}
        for _ in range(1 + spec.refits):
            optimizer = OPTIMIZERS[spec.optimizer]()
            kwargs = {"epochs": spec.epochs, "batch_size": spec.batch_size, "seed": 5,
                      "optimizer": optimizer, **extra, **_materialize(spec.options, optimizer)}
            with contextlib.redirect_stderr(io.StringIO()):
                history = model.fit(X, y, history=history, **kwargs)
            if isinstance(kwargs["seed"], np.random.Generator):
                record["seed_generator_next"] = float(kwargs["seed"].random())
        return parameters(model), {**history_record(history), **record}


# -- scoring ------------------------------------------------------------------------------

def run_scores(be: xpnet.Backend, inputs: str, loss: str, weighted: bool,
               comm: Any = None) -> Outcome:
    """Predictions (and probabilities) and ``evaluate``'s scores after a short fit.

    ``inputs`` says how the scored data is given: ``arrays``, ``host`` (NumPy
    on the host), ``memmap`` or ``distributed`` (sharded over ``comm``).
    """
    model = build_model(be, loss)
    data = HostSet.make(be, loss)
    model.fit(to_device(be, data.X), to_device(be, data.t), epochs=1, batch_size=32, seed=5)
    test = HostSet.make(be, loss, n=150, seed=21)
    with tempfile.TemporaryDirectory(prefix="xpnet-hashes-") as tmp:
        X, t, w, kwargs = _scored_inputs(be, inputs, test, Path(tmp), comm)
        arrays = [be.to_numpy(model.predict(X, batch_size=40, **kwargs))]
        if loss != "mse":  # (predict_proba has no distributed mode)
            local = {k: v for k, v in kwargs.items() if k != "distributed"}
            arrays.append(be.to_numpy(model.predict_proba(X, batch_size=40, **local)))
        scores = model.evaluate(X, t, batch_size=40, sample_weight=w if weighted else None,
                                **kwargs)
    return arrays, dict(scores)


def _scored_inputs(be: xpnet.Backend, inputs: str, test: HostSet, folder: Path,
                   comm: Any) -> tuple:
    if inputs in ("arrays", "distributed"):
        kwargs = {"distributed": comm} if inputs == "distributed" else {}
        return to_device(be, test.X), to_device(be, test.t), to_device(be, test.w), kwargs
    X = memmap_of(test.X, folder, "X") if inputs == "memmap" else test.X
    return X, test.t, test.w, {"chunk_bytes": CHUNK_BYTES}


# -- the matrix ---------------------------------------------------------------------------

def _early_stopping(optimizer: Any) -> list:
    """Stops within the 6 epochs of its cases (val_loss improves by less than 0.08)."""
    return [xpnet.EarlyStopping(monitor="val_loss", patience=0, min_delta=0.08)]


def _schedule(optimizer: Any) -> list:
    """Halve the rate every epoch: the layers' rates, or ``optimizer``'s."""
    return [xpnet.LearningRateScheduler(lambda epoch: 0.5 ** epoch, optimizer=optimizer)]


def _generator(optimizer: Any) -> np.random.Generator:
    return np.random.default_rng(7)


#: variant -> FitSpec of the in-memory (device arrays) fits.
ARRAY_FITS: dict[str, FitSpec] = {
    "seed": FitSpec(validation=True),
    **{opt: FitSpec(optimizer=opt, validation=True) for opt in OPTIMIZERS if opt != "seed"},
    "mse": FitSpec(loss="mse", validation=True),
    "mse-adam-weights": FitSpec(loss="mse", optimizer="adam", weights=True),
    "bce": FitSpec(loss="binary_crossentropy", validation=True),
    "bce-split": FitSpec(loss="binary_crossentropy", options={"validation_split": 0.25}),
    "weights": FitSpec(weights=True, validation=True),
    "weights-adam": FitSpec(weights=True, optimizer="adam"),
    "class-balanced": FitSpec(options={"class_weight": "balanced"}),
    "class-dict": FitSpec(options={"class_weight": {0: 1.0, 1: 2.0, 2: 0.5}}),
    "split": FitSpec(options={"validation_split": 0.2}),
    "alpha": FitSpec(options={"alpha": 1e-3}),
    "alpha-momentum": FitSpec(optimizer="momentum", options={"alpha": 1e-3}),
    "early-stopping": FitSpec(validation=True, epochs=6, options={
        "callbacks": _early_stopping}),
    "scheduler": FitSpec(options={"callbacks": _schedule}, epochs=3),
    "scheduler-adam": FitSpec(optimizer="adam", options={"callbacks": _schedule}, epochs=3),
    "check-every-0": FitSpec(options={"check_every": 0}),
    "check-every-3": FitSpec(options={"check_every": 3}),
    "no-train-acc": FitSpec(validation=True, options={"train_accuracy": False}),
    "seed-generator": FitSpec(options={"seed": _generator}),
    "progress": FitSpec(validation=True, options={"progress": True}),
    "batch-48": FitSpec(batch_size=48, epochs=3),
    "no-shuffle": FitSpec(options={"shuffle": False}),
    "refit": FitSpec(optimizer="adam", refits=1),
    "dropout": FitSpec(model="dropout"),
    "dropout-adam": FitSpec(model="dropout", optimizer="adam", validation=True),
}

#: variant -> FitSpec of host-data fits (memmaps; "host" = a NumPy array off NumPy).
HOST_FITS: dict[str, FitSpec] = {
    "memmap-shuffle": FitSpec(inputs="memmap", validation=True),
    "memmap-no-shuffle": FitSpec(inputs="memmap", options={"shuffle": False}),
    "memmap-chunks": FitSpec(inputs="memmap", options={"shuffle": "chunks"}),
    "memmap-chunks-adam": FitSpec(inputs="memmap", optimizer="adam",
                                  options={"shuffle": "chunks"}),
    "memmap-adam": FitSpec(inputs="memmap", optimizer="adam"),
    "memmap-weights": FitSpec(inputs="memmap", weights=True),
    "memmap-class-balanced": FitSpec(inputs="memmap", options={"class_weight": "balanced"}),
    "memmap-split": FitSpec(inputs="memmap", options={"validation_split": 0.2}),
    "memmap-alpha": FitSpec(inputs="memmap", options={"alpha": 1e-3}),
    "memmap-mse": FitSpec(inputs="memmap", loss="mse", validation=True),
    "memmap-bce-weights": FitSpec(inputs="memmap", loss="binary_crossentropy", weights=True),
    "memmap-batch-48": FitSpec(inputs="memmap", batch_size=48, epochs=3),
    "memmap-early-stopping": FitSpec(inputs="memmap", validation=True, epochs=6,
                                     options={"callbacks": _early_stopping}),
    "memmap-seed-generator": FitSpec(inputs="memmap", options={"seed": _generator}),
    "memmap-chunks-seed-generator": FitSpec(inputs="memmap", options={
        "seed": _generator, "shuffle": "chunks"}),
    "memmap-progress": FitSpec(inputs="memmap", options={"progress": True}),
}

#: Host NumPy arrays: their own input kind only where the backend is not NumPy.
HOST_ARRAY_FITS: dict[str, FitSpec] = {
    "host-seed": FitSpec(inputs="host", validation=True),
    "host-adam-weights": FitSpec(inputs="host", optimizer="adam", weights=True),
    "host-chunks": FitSpec(inputs="host", options={"shuffle": "chunks"}),
}

BATCH_FITS: dict[str, FitSpec] = {
    "batch-list": FitSpec(inputs="batch-list", validation=True),
    "batch-list-triples": FitSpec(inputs="batch-list", weights=True, optimizer="adam"),
    "batch-host-list": FitSpec(inputs="batch-host-list"),
    "batch-host-triples": FitSpec(inputs="batch-host-list", weights=True),
    "batch-generator": FitSpec(inputs="batch-generator", epochs=1, validation=True),
    "batch-generator-triples": FitSpec(inputs="batch-generator", weights=True, epochs=1),
    "batch-dataset": FitSpec(inputs="batch-dataset", optimizer="momentum"),
    "batch-dataset-no-shuffle": FitSpec(inputs="batch-dataset", options={"shuffle": False}),
    "batch-alpha": FitSpec(inputs="batch-list", options={"alpha": 1e-3}),
    "batch-mse": FitSpec(inputs="batch-host-list", loss="mse"),
    "batch-dataset-seed-generator": FitSpec(inputs="batch-dataset", options={"seed": _generator}),
    "batch-progress": FitSpec(inputs="batch-generator", epochs=1, options={"progress": True}),
}

#: Data parallelism: one process here, two ranks in benchmarks/fit_hashes_mpi.py.
DISTRIBUTED_FITS: dict[str, FitSpec] = {
    "dist-seed": FitSpec(inputs="distributed", validation=True),
    "dist-sgd": FitSpec(inputs="distributed", optimizer="sgd"),
    "dist-momentum": FitSpec(inputs="distributed", optimizer="momentum"),
    "dist-adam": FitSpec(inputs="distributed", optimizer="adam", validation=True),
    "dist-weights": FitSpec(inputs="distributed", weights=True, optimizer="sgd"),
    "dist-class-split-alpha": FitSpec(inputs="distributed", optimizer="sgd", options={
        "class_weight": "balanced", "validation_split": 0.25, "alpha": 1e-3}),
    "dist-early-stopping": FitSpec(inputs="distributed", optimizer="adam", validation=True,
                                   epochs=6, options={"callbacks": _early_stopping}),
    "dist-mse": FitSpec(inputs="distributed", loss="mse", optimizer="sgd"),
    "dist-bce": FitSpec(inputs="distributed", loss="binary_crossentropy", optimizer="adam"),
    "dist-seed-generator": FitSpec(inputs="distributed", optimizer="sgd",
                                   options={"seed": _generator}),
    "dist-progress": FitSpec(inputs="distributed", options={"progress": True}),
}

#: variant -> (inputs, loss, weighted) of the scoring cases.
SCORES: dict[str, tuple[str, str, bool]] = {
    "scores-arrays": ("arrays", "softmax_crossentropy", False),
    "scores-arrays-weights": ("arrays", "softmax_crossentropy", True),
    "scores-arrays-mse": ("arrays", "mse", False),
    "scores-arrays-bce": ("arrays", "binary_crossentropy", True),
    "scores-memmap": ("memmap", "softmax_crossentropy", False),
    "scores-memmap-weights": ("memmap", "softmax_crossentropy", True),
    "scores-memmap-mse": ("memmap", "mse", True),
    "scores-dist": ("distributed", "softmax_crossentropy", False),
    "scores-dist-weights": ("distributed", "softmax_crossentropy", True),
}

#: The variants kept for JAX, where every new model compiles (seconds each).
JAX_FITS = ("seed", "adam", "momentum", "mse", "bce", "weights", "class-balanced", "split",
            "alpha", "early-stopping", "scheduler", "check-every-3", "batch-48", "dropout",
            "seed-generator", "refit", "host-seed", "host-adam-weights", "memmap-shuffle",
            "memmap-chunks", "memmap-weights", "memmap-mse", "batch-list", "batch-host-triples",
            "batch-generator", "dist-seed", "dist-adam", "dist-weights", "dist-seed-generator",
            "scores-arrays", "scores-memmap-weights", "scores-dist-weights")


def backend_tag(name: str, dtype: str) -> str:
    return f"{name}-f{dtype[-2:]}"


def fit_cases(name: str, dtype: str, comm_factory: Callable[[], Any] = lambda: None,
              groups: tuple[str, ...] = ("arrays", "host", "batches", "distributed",
                                         "scores")) -> list[Case]:
    """The ``Sequential`` cases of one backend and dtype.

    ``comm_factory`` gives the communicator of the ``dist-*`` cases (the
    one-process stand-in by default); ``groups`` picks the families.
    """
    specs: dict[str, Any] = {}
    # On NumPy a NumPy array is the in-memory input, not host data.
    host = {**HOST_FITS, **(HOST_ARRAY_FITS if name != "numpy" else {})}
    table = {"arrays": ARRAY_FITS, "host": host, "batches": BATCH_FITS,
             "distributed": DISTRIBUTED_FITS, "scores": SCORES}
    for group in groups:
        specs.update(table[group])
    if name == "jax":
        specs = {k: v for k, v in specs.items() if k in JAX_FITS}
    tag = backend_tag(name, dtype)
    return [Case(f"{tag}/{variant}", _runner(name, dtype, spec, comm_factory))
            for variant, spec in specs.items()]


def _runner(name: str, dtype: str, spec: Any, comm_factory: Callable[[], Any]) -> Callable:
    def run() -> Outcome:
        be = xpnet.get_backend(name, dtype=dtype)
        inputs = spec[0] if isinstance(spec, tuple) else spec.inputs
        comm = None
        if inputs == "distributed":
            comm = comm_factory() or init_communicator(require_mpi=False)
        if isinstance(spec, tuple):
            return run_scores(be, *spec, comm=comm)
        return run_fit(be, spec, comm)
    return run
