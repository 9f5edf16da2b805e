"""The ``xpnet`` command: train the tutorial's MLP on MNIST or your own data, evaluate, show examples.

::

    xpnet train [--backend numpy] [--epochs 25] [--plot out/accuracy.png] [--save out/model.npz]
    xpnet train --data FILE.npz | --csv FILE --target COLUMN [same options]
    xpnet evaluate out/model.npz [--backend torch]
    xpnet show-examples --out out/examples.png
    xpnet export out/model.npz out/model.onnx [--output logits|proba|label]

``xpnet train`` with no option reproduces the tutorial: 784-100-200-10 with
ReLU, batch 32, learning rate 0.1, 25 epochs, NumPy float32. It prints one
line per epoch in a form scripts can parse::

    epoch 3/25 loss=0.1234 train_acc=0.9650 val_acc=0.9612 seconds=0.71

and ends with ``test_acc=... test_loss=... wall_seconds=...``.

Errors (bad option values, missing or corrupted files, unavailable backends)
exit with status 1 (2 for command-line syntax) and one line on stderr,
``xpnet: error: ...``; set ``XPNET_DEBUG=1`` to see the traceback instead.

``xpnet train --backup-dir DIR [--backup-every epoch|N]`` backs the run up to
``DIR`` (:class:`xpnet.BackupAndRestore`) at every epoch's end or every ``N``
steps. Run the same command again after the process died and it continues
from the last backup, printing ``resuming from DIR/backup-00000003.npz (epoch
2, step 17)`` (epochs count from 1, the step is the number of steps of that
epoch already done), and ends with the same model, bit for bit, as a run that
was never stopped; when it completes, the backups are removed. A backup of
another run (other data, model or training options) is refused (status 1).
While training with ``--backup-dir``, Ctrl-C (SIGINT) or SIGTERM writes a
last backup after the current step (a JAX epoch compiled as one program: at
its end), prints how to resume and exits with status 128 + the signal's
number: 130 for SIGINT, 143 for SIGTERM. A second signal stops at once
(status 130; the previous backup is kept). Without ``--backup-dir``, Ctrl-C
stops at once with status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path

from ._version import __version__
from .backends import BACKEND_NAMES, get_backend
from .backup import BackupAndRestore, TrainingInterrupted, interrupt_on_signals
from .callbacks import Callback
from .checkpoint import load_model
from .datasets import load_mnist, locate_mnist
from .errors import DataError, XpnetError
from .losses import SoftmaxCrossEntropy, one_hot
from .network import Sequential
from .plotting import plot_examples, plot_history, require_matplotlib

__all__ = ["main", "build_parser"]

OPTIMIZER_CHOICES = ("sgd", "momentum", "nesterov", "adam", "adamw")
#: --loss choices: the labels become one-hot float targets for the last two.
LOSS_CHOICES = ("softmax_crossentropy", "mse", "binary_crossentropy")
INIT_CHOICES = ("seed", "he_normal", "he_uniform", "glorot_normal", "glorot_uniform")
SCHEDULE_CHOICES = ("none", "step", "cosine")
N_FEATURES, N_CLASSES = 784, 10
#: Seconds between an error message and ``MPI_Abort`` (which may drop unforwarded output).
_ABORT_GRACE_S = 0.5


# --------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------

class _UsageError(ValueError):
    """A command line that cannot work (conflicting flags, an unusable data file): exit 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``xpnet: error: ...``."""

    def error(self, message):
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"xpnet: error: {_one_line(message)}{hint}\n")


def _one_line(text) -> str:
    return " | ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low) \
            and (value < high if high_open else value <= high)
        if not ok:
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            raise argparse.ArgumentTypeError(
                f"expected a number in {lo}{low}, {high}{hi}, got {text!r}"
            )
        return value
    return parse


def _hidden(text: str) -> list[int]:
    text = text.strip()
    if text in ("", "none"):
        return []
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            size = 0
        if size < 1:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated positive layer sizes such as 100,200, got {text!r}"
            )
        sizes.append(size)
    return sizes


def _backup_dir(text: str) -> str:
    if Path(text).expanduser().exists() and not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(
            f"expected a directory for the backups (created if missing), got the file {text!r}")
    return text


def _backup_every(text: str):
    if text == "epoch":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'epoch' or a positive number of steps, got {text!r}") from None


def _device(text: str):
    return int(text) if text.isdigit() else text


def _add_backend_args(p, *, dtype_default):
    p.add_argument("--backend", choices=BACKEND_NAMES, default=None,
                   help="array library (default: $XPNET_BACKEND or numpy); which one for which "
                        "work: docs/backends.md")
    p.add_argument("--device", type=_device, default=None,
                   help="device on that backend, e.g. cpu, cuda, cuda:1 (default: the "
                        "backend's first device)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=dtype_default,
                   help="floating dtype" + (" (default: float32)" if dtype_default else
                                            " (default: the dtype the model was saved with)"))


def _add_data_args(p):
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory with the four MNIST files (.gz or raw); default: "
                        "$XPNET_DATA_DIR, data/mnist of a checkout, ~/.cache/xpnet/mnist, "
                        "else download")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check, to load another dataset in MNIST format "
                        "(e.g. Fashion-MNIST)")


def _add_own_data_args(p):
    g = p.add_argument_group(
        "your own data (instead of MNIST)",
        "A classification dataset of numeric features. Labels may be any integers or names: "
        "they are mapped to classes 0..C-1 in sorted order (saved with --save).")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, metavar="FILE.npz",
                     help="arrays X (rows, features) and y (rows,), optionally X_val/y_val "
                          "and X_test/y_test (numpy.savez)")
    src.add_argument("--csv", default=None, metavar="FILE",
                     help="a CSV file with a header row; every column but --target is a "
                          "numeric feature")
    g.add_argument("--target", default=None, metavar="COLUMN",
                   help="the label column of --csv")
    g.add_argument("--test-split", type=_float_in(0.0, 1.0, high_open=True), default=0.0,
                   metavar="FRACTION",
                   help="hold out this share of the --csv rows, drawn with --seed, as the "
                        "test split (default: 0, no test split)")
    g.add_argument("--val-split", type=_float_in(0.0, 1.0, high_open=True), default=None,
                   metavar="FRACTION",
                   help="share of the training rows, drawn with --seed, held out for "
                        "validation when the data has none (default: 0.1; 0 for none)")
    g.add_argument("--standardize", action="store_true",
                   help="scale every feature to mean 0 and standard deviation 1 (statistics "
                        "of the training rows, saved with --save)")


def build_parser() -> argparse.ArgumentParser:
    """The ``xpnet`` argument parser (subcommands ``train``, ``evaluate``, ``show-examples``)."""
    parser = _Parser(
        prog="xpnet",
        description="Train and evaluate the tutorial's MLP on MNIST (or your own data) with any "
                    "array backend.",
    )
    parser.add_argument("--version", action="version", version=f"xpnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train", help="train 784-100-200-10 on MNIST (the tutorial's defaults) or an MLP on "
                      "your own --data/--csv",
        description="Train an MLP on MNIST. The defaults reproduce the tutorial: hidden "
                    "layers 100,200 with ReLU, batch 32, lr 0.1, 25 epochs, NumPy float32, "
                    "the last 10,000 training images held out for validation. Prints one "
                    "line per epoch and the test accuracy at the end. With --data or --csv it "
                    "trains on your own classification data instead, with the same options.")
    _add_backend_args(t, dtype_default="float32")
    t.add_argument("--epochs", type=_positive_int, default=25, help="(default: 25)")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="(default: 32)")
    t.add_argument("--lr", type=_float_in(0.0, math.inf, low_open=True), default=0.1,
                   help="learning rate (default: 0.1)")
    t.add_argument("--hidden", type=_hidden, default=[100, 200], metavar="SIZES",
                   help="hidden layer sizes, comma separated (default: 100,200; 'none' for "
                        "softmax regression)")
    t.add_argument("--seed", type=_int, default=0,
                   help="seed of the initial weights and the batch order (default: 0)")
    _add_data_args(t)
    _add_own_data_args(t)
    t.add_argument("--plot", default=None, metavar="PATH",
                   help="write the train/validation accuracy curves to this PNG")
    t.add_argument("--save", default=None, metavar="PATH",
                   help="save the trained model to this .npz file")
    t.add_argument("--quiet", action="store_true",
                   help="no progress bars or banner: only the epoch lines and the result")
    t.add_argument("--blas-threads", default=None, metavar="N|auto",
                   help="BLAS threads while training (default: XPNET_BLAS_THREADS, else auto: "
                        "one thread for small steps such as the tutorial's batch 32)")
    t.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="use only the first N images of each split (quick runs and tests)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training over MPI; launch as 'mpiexec -n 4 python -m "
                        "xpnet train --distributed' (needs xpnet[mpi]); --batch-size "
                        "is the global batch; only rank 0 prints, saves and plots")
    g = t.add_argument_group("optimization (beyond the tutorial)")
    g.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, default="sgd",
                   help="(default: sgd, the tutorial's plain step inside backward)")
    g.add_argument("--momentum", type=_float_in(0.0, 1.0, high_open=True), default=None,
                   help="momentum of --optimizer momentum/nesterov (default: 0.9)")
    g.add_argument("--weight-decay", type=_float_in(0.0, math.inf), default=0.0,
                   help="L2 penalty (decoupled for adamw) (default: 0)")
    g.add_argument("--loss", choices=LOSS_CHOICES, default="softmax_crossentropy",
                   help="what training minimises (default: softmax_crossentropy; mse and "
                        "binary_crossentropy fit one-hot targets, and --early-stopping then "
                        "watches val_loss)")
    g.add_argument("--init", choices=INIT_CHOICES, default="seed",
                   help="weight initializer (default: seed, the tutorial's normal*0.01)")
    g.add_argument("--schedule", choices=SCHEDULE_CHOICES, default="none",
                   help="learning-rate schedule over the epochs (default: none)")
    g.add_argument("--early-stopping", type=_positive_int, default=None, metavar="PATIENCE",
                   help="stop when val_acc has not improved for PATIENCE epochs and keep "
                        "the best weights")
    _add_backup_args(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "evaluate", help="accuracy of a saved model on the MNIST test split",
        description="Load a model saved by 'xpnet train --save' (on any backend) and "
                    "report its loss and accuracy on the 10,000 MNIST test images.")
    e.add_argument("model", metavar="MODEL", help="a .npz file written by --save")
    _add_backend_args(e, dtype_default=None)
    e.add_argument("--batch-size", type=_positive_int, default=1024,
                   help="rows per prediction block (default: 1024)")
    _add_data_args(e)
    e.add_argument("--quiet", action="store_true", help="print only the result line")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser(
        "show-examples", help="draw four training digits with their labels to a PNG",
        description="Draw the tutorial's 2x2 grid of the first four training digits, each "
                    "titled with its label, to a PNG file.")
    s.add_argument("--out", default="out/examples.png", metavar="PATH",
                   help="PNG file to write (default: out/examples.png)")
    s.add_argument("--start", type=_int, default=0,
                   help="index of the first training image shown (default: 0)")
    _add_data_args(s)
    s.set_defaults(func=cmd_show_examples)
    _add_export_parser(sub)
    return parser


def _add_backup_args(p) -> None:
    g = p.add_argument_group(
        "backups (continue a run that was stopped)",
        "With --backup-dir, running the same command again after the process died (killed, "
        "preempted, Ctrl-C) continues from the last backup and ends with the same model, "
        "bit for bit; the backups are removed when the run completes, and a backup of another "
        "run (other data, model or options) is refused. Ctrl-C or SIGTERM writes a last "
        "backup after the current step (a compiled JAX epoch: at its end) and exits with "
        "status 130 (SIGINT) or 143 (SIGTERM).")
    g.add_argument("--backup-dir", type=_backup_dir, default=None, metavar="DIR",
                   help="back the run up to this directory (created if missing; one per run) "
                        "and resume from its last backup if it has one")
    g.add_argument("--backup-every", type=_backup_every, default=None, metavar="epoch|N",
                   help="back up at every epoch's end (default) or every N steps (needs "
                        "--backup-dir)")


def _add_export_parser(sub) -> None:
    x = sub.add_parser(
        "export", help="write a saved model as an ONNX file (needs xpnet[onnx])",
        description="Export a model saved by 'xpnet train --save' (.npz or .safetensors) to "
                    "ONNX: input X of shape (N, n_features), any batch size N.")
    x.add_argument("model", metavar="MODEL", help="a file written by --save")
    x.add_argument("out", metavar="OUT", help="the .onnx file to write")
    x.add_argument("--output", choices=("logits", "proba", "label"), default="logits",
                   help="what the graph outputs (default: logits)")
    x.set_defaults(func=cmd_export)


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _say(quiet: bool, *parts) -> None:
    if not quiet:
        print(*parts, flush=True)


def _check_output_path(path: str, what: str) -> Path:
    """Fail before training, not after, when an output file cannot be written."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{what} must be a file path, got the directory {str(p)!r}")
    p.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(p.parent, os.W_OK):
        raise PermissionError(f"{what}: cannot write into directory {str(p.parent)!r}")
    return p


def _load_data(args, backend, *, progress: bool):
    verify = not args.no_verify
    directory = locate_mnist(args.data_dir, verify=verify, progress=progress)
    return directory, load_mnist(directory, verify=verify, backend=backend)


def _optimization(args):
    """Optimizer and callbacks for the non-default flags (imported only when needed)."""
    optimizer, scheduler, stopper = None, None, None
    callbacks: list[Callback] = []
    if args.momentum is not None and args.optimizer not in ("momentum", "nesterov"):
        raise ValueError(
            f"--momentum applies to --optimizer momentum or nesterov, got --optimizer "
            f"{args.optimizer}"
        )
    if args.optimizer != "sgd" or args.weight_decay:
        # Kept lazy: the default run never imports the optimizer modules.
        from .optimizers import get_optimizer

        kwargs = {"weight_decay": args.weight_decay}
        if args.momentum is not None:
            kwargs["momentum"] = args.momentum
        optimizer = get_optimizer(args.optimizer, args.lr, **kwargs)
    if args.schedule != "none":
        from .callbacks import LearningRateScheduler
        from .optimizers import get_schedule

        scheduler = LearningRateScheduler(get_schedule(args.schedule, epochs=args.epochs),
                                          optimizer=optimizer)
        callbacks.append(scheduler)
    if args.early_stopping is not None:
        from .callbacks import EarlyStopping

        monitor = "val_acc" if args.loss == "softmax_crossentropy" else "val_loss"
        stopper = EarlyStopping(monitor=monitor, patience=args.early_stopping,
                                restore_best=True)
        callbacks.append(stopper)
    return optimizer, callbacks, scheduler, stopper


def _targets(model, labels):
    """What the model's loss trains on: the labels, or one-hot float targets (mse, bce)."""
    if isinstance(model.loss, SoftmaxCrossEntropy):
        return labels
    return one_hot(labels, model.n_outputs, dtype=model.backend.dtype)


def _test_scores(model, X, labels, comm=None) -> dict:
    """Test loss (the model's own) and classification accuracy (argmax vs label)."""
    if isinstance(model.loss, SoftmaxCrossEntropy):
        return model.evaluate(X, labels, distributed=comm)
    xp = model.backend.xp
    loss = model.evaluate(X, _targets(model, labels))["loss"]
    hits = xp.argmax(model.predict_logits(X), axis=1) == labels
    return {"loss": loss, "accuracy": float(xp.mean(xp.astype(hits, model.backend.dtype)))}


def _arch(sizes) -> str:
    return "-".join(str(s) for s in sizes)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def _communicator(args):
    """The MPI communicator of ``--distributed`` (None without it); imported only when asked."""
    if not args.distributed:
        return None
    from .distributed import init

    return init(require_mpi=True)


def _limited(splits, limit):
    """The first ``limit`` rows of each array (all of them without ``--limit``)."""
    if limit is None:
        return splits
    return tuple(None if a is None else a[:min(limit, a.shape[0]), ...] for a in splits)


def _own_data(args):
    """``--data`` / ``--csv`` read into host :class:`~xpnet.tabular.Splits`, checked."""
    from . import tabular

    try:
        if args.data is not None:
            splits = tabular.read_npz(args.data)
        else:
            splits = tabular.read_csv(args.csv, args.target, test_fraction=args.test_split,
                                        seed=args.seed)
        splits = tabular.with_validation(splits, args.val_split, seed=args.seed)
    except DataError as exc:
        raise _UsageError(str(exc)) from None
    scaling = None
    if args.standardize:
        splits, mean, scale = tabular.standardized(splits)
        scaling = {"mean": mean.tolist(), "scale": scale.tolist()}
    return splits, scaling


def _check_data_flags(args) -> None:
    """Flags that only make sense with one data source: refused before anything runs."""
    own = args.data is not None or args.csv is not None
    wrong = [flag for flag, bad in (
        ("--target needs --csv", args.target is not None and args.csv is None),
        ("--csv needs --target COLUMN", args.csv is not None and args.target is None),
        ("--test-split applies to --csv", args.test_split and args.csv is None),
        ("--data-dir is MNIST's; with --data/--csv leave it out", own and args.data_dir),
        ("--no-verify is MNIST's; with --data/--csv leave it out", own and args.no_verify),
        ("--val-split applies to --data/--csv (MNIST keeps its last 10,000 training images)",
         not own and args.val_split is not None),
        ("--standardize applies to --data/--csv (MNIST pixels are already in [0, 1])",
         not own and args.standardize),
    ) if bad]
    if wrong:
        raise _UsageError(wrong[0])
    if own and args.val_split is None:
        args.val_split = 0.1


def _train_data(args, be, quiet: bool, comm):
    """The six host/device arrays, the input and output sizes, a name and metadata."""
    if args.data is None and args.csv is None:
        if comm is not None and not comm.is_root:
            comm.barrier()  # rank 0 finds (or downloads) MNIST first, the others then read it
        directory, data = _load_data(args, be, progress=not quiet)
        if comm is not None and comm.is_root:
            comm.barrier()
        if data[0].shape[1] != N_FEATURES:
            raise ValueError(f"images must have {N_FEATURES} pixels, got {data[0].shape[1]}")
        return data, (N_FEATURES, N_CLASSES), "MNIST", {"data_dir": str(directory)}
    splits, scaling = _own_data(args)
    data = tuple(None if a is None else be.asarray(a, dtype=be.index_dtype if i % 2 else None)
                 for i, a in enumerate((splits.X, splits.y, splits.X_val, splits.y_val,
                                        splits.X_test, splits.y_test)))
    name = Path(splits.source).name
    meta = {"data": str(Path(splits.source).resolve()), "classes": splits.classes,
            "target": args.target, "standardize": scaling}
    return data, (splits.n_features, splits.n_classes), name, meta


def _report_stop(quiet, stopper) -> None:
    if stopper is not None and stopper.stopped_epoch is not None:
        _say(quiet, f"early stopping after epoch {stopper.stopped_epoch + 1}: best "
                    f"{stopper.monitor}={stopper.best:.4f} at epoch {stopper.best_epoch + 1} "
                    "(its weights are kept)")


def _final_figures(history, stopper) -> dict:
    """The last epoch's figures, or the best epoch's when its weights were restored."""
    if stopper is not None and stopper.best_epoch is not None and stopper.restore_best:
        return {k: v[stopper.best_epoch] for k, v in history.history.items()
                if len(v) > stopper.best_epoch}
    return history.last()


def _save(args, model, path, history, stopper, test, wall, meta, comm) -> None:
    """``--save``: the model with how it was trained and what it scored."""
    last = _final_figures(history, stopper)
    training = {
        "epochs": args.epochs, "epochs_run": len(history), "batch_size": args.batch_size,
        "lr": args.lr, "hidden": args.hidden, "seed": args.seed,
        "optimizer": args.optimizer, "momentum": args.momentum,
        "weight_decay": args.weight_decay, "init": args.init, "schedule": args.schedule,
        "loss": args.loss, "early_stopping": args.early_stopping, **meta,
        "limit": args.limit, "ranks": 1 if comm is None else comm.size,
    }
    metrics = {"train_acc": last.get("train_acc"), "val_acc": last.get("val_acc"),
               "test_acc": None if test is None else test["accuracy"],
               "test_loss": None if test is None else test["loss"],
               "wall_seconds": wall}
    if stopper is not None and stopper.best is not None:
        metrics["best_val_acc"] = stopper.best
    model.save(path, training=training, metrics=metrics, history=history.history)


class _Backup(BackupAndRestore):
    """``--backup-dir``: a :class:`~xpnet.backup.BackupAndRestore` that says where it resumes."""

    def __init__(self, directory: Path, every, announce: bool) -> None:
        super().__init__(directory, save_freq=every)
        self.announce = announce  # only rank 0 prints

    def begin(self, *args, **kwargs):
        resume = super().begin(*args, **kwargs)
        if resume is not None and self.announce:
            print(f"resuming from {self.restored_from} (epoch {resume.epoch + 1}, step "
                  f"{resume.step})", flush=True)
        return resume


def _backup(args, root: bool) -> _Backup | None:
    """``--backup-dir``'s callback (None without it), checked before anything runs."""
    if args.backup_dir is None:
        if args.backup_every is not None:
            raise _UsageError("--backup-every needs --backup-dir DIR (where to back up)")
        return None
    return _Backup(Path(args.backup_dir).expanduser(), args.backup_every or "epoch", root)


def _stop_on_signals(backup):
    """With a backup, Ctrl-C/SIGTERM back up after the current step and stop fit."""
    return contextlib.nullcontext() if backup is None else interrupt_on_signals(backup)


def cmd_train(args) -> int:
    """``xpnet train``: the tutorial's training run (or one on ``--data``/``--csv``), end to end."""
    start = time.perf_counter()
    _check_data_flags(args)
    comm = args.communicator = _communicator(args)
    root = comm is None or comm.is_root  # only rank 0 prints, saves and plots
    quiet = args.quiet or not root
    plot_path = _check_output_path(args.plot, "--plot") if args.plot and root else None
    save_path = _check_output_path(args.save, "--save") if args.save and root else None
    if plot_path is not None:
        require_matplotlib()
    optimizer, callbacks, scheduler, stopper = _optimization(args)
    backup = _backup(args, root)
    be = get_backend(args.backend, device=args.device, dtype=args.dtype)
    data, (n_in, n_out), name, meta = _train_data(args, be, quiet, comm)
    X_train, y_train, X_val, y_val, X_test, y_test = _limited(data, args.limit)
    if stopper is not None and X_val is None:
        raise _UsageError("--early-stopping needs validation data (--val-split > 0 or "
                          "X_val/y_val in the --data file)")
    sizes = [n_in, *args.hidden, n_out]
    _say(quiet, f"xpnet {__version__}: {_arch(sizes)} MLP on {name} | backend={be.name} "
                f"device={be.device_name} dtype={be.dtype_name} | epochs={args.epochs} "
                f"batch_size={args.batch_size} lr={args.lr:g} optimizer={args.optimizer} "
                f"init={args.init} schedule={args.schedule} seed={args.seed}"
                + ("" if comm is None else f" | ranks={comm.size}"))
    _say(quiet, f"data: {meta.get('data_dir', meta.get('data'))} (train {X_train.shape[0]}, "
                f"val {0 if X_val is None else X_val.shape[0]}, "
                f"test {0 if X_test is None else X_test.shape[0]})")
    model = Sequential.mlp(sizes, learning_rate=args.lr, init=args.init, seed=args.seed,
                           backend=be, loss=args.loss)
    validation = None if X_val is None else (X_val, _targets(model, y_val))
    with _stop_on_signals(backup):
        history = model.fit(X_train, _targets(model, y_train), epochs=args.epochs,
                            batch_size=args.batch_size, seed=args.seed,
                            validation_data=validation, optimizer=optimizer,
                            callbacks=callbacks + ([] if backup is None else [backup]),
                            verbose=2 if quiet else 1, blas_threads=args.blas_threads,
                            distributed=comm,
                            train_accuracy=args.loss == "softmax_crossentropy")
    _report_stop(quiet, stopper)
    test = None if X_test is None else _test_scores(model, X_test, y_test, comm)
    if save_path is not None:
        _save(args, model, save_path, history, stopper, test, time.perf_counter() - start,
              meta, comm)
        _say(quiet, f"saved model: {save_path}")
    if plot_path is not None:
        plot_history(history, plot_path, title=f"{_arch(sizes)} MLP on {name}", backend=be)
        _say(quiet, f"saved plot: {plot_path}")
    if root:
        scores = "" if test is None else \
            f"test_acc={test['accuracy']:.4f} test_loss={test['loss']:.4f} "
        print(f"{scores}wall_seconds={time.perf_counter() - start:.2f}", flush=True)
    return 0


def cmd_evaluate(args) -> int:
    """``xpnet evaluate MODEL``: test accuracy of a saved model on any backend."""
    model = load_model(args.model, backend=args.backend, device=args.device, dtype=args.dtype)
    be = model.backend
    header = model.checkpoint
    dense = [e for e in header["architecture"] if "output_units" in e and "input_units" in e]
    arch = _arch([dense[0]["input_units"]] + [e["output_units"] for e in dense]) if dense \
        else f"{len(header['architecture'])} layers"
    _say(args.quiet, f"model: {args.model} ({arch}; trained on "
                     f"{header.get('backend')}/{header.get('device')}/{header.get('dtype')} "
                     f"with xpnet {header.get('xpnet_version')}) | evaluating on "
                     f"backend={be.name} device={be.device_name} dtype={be.dtype_name}")
    directory, data = _load_data(args, be, progress=not args.quiet)
    X_test, y_test = data[4], data[5]
    if model.n_inputs is not None and model.n_inputs != X_test.shape[1]:
        raise ValueError(
            f"the model expects {model.n_inputs} input features but the test images in "
            f"{directory} have {X_test.shape[1]}"
        )
    if model.n_outputs < N_CLASSES:
        raise ValueError(f"the model has {model.n_outputs} outputs, MNIST needs {N_CLASSES}")
    test = model.evaluate(X_test, y_test, batch_size=args.batch_size)
    print(f"test_acc={test['accuracy']:.4f} test_loss={test['loss']:.4f} "
          f"n={X_test.shape[0]} backend={be.name} device={be.device_name} "
          f"dtype={be.dtype_name}", flush=True)
    return 0


def cmd_export(args) -> int:
    """``xpnet export MODEL OUT``: the saved model as an ONNX file."""
    from .export import export_onnx  # lazily: it needs the [onnx] extra

    model = load_model(args.model, backend="numpy")
    export_onnx(model, args.out, output=args.output)
    print(f"saved ONNX model: {args.out} (output={args.output}, input X: (N, "
          f"{model.n_inputs if model.n_inputs is not None else '?'}), {model.backend.dtype_name})",
          flush=True)
    return 0


def cmd_show_examples(args) -> int:
    """``xpnet show-examples``: the tutorial's four digits with their labels."""
    require_matplotlib()
    out = _check_output_path(args.out, "--out")
    verify = not args.no_verify
    directory = locate_mnist(args.data_dir, verify=verify)
    X_train, y_train = load_mnist(directory, verify=verify, dtype="uint8", flatten=False)[:2]
    n = X_train.shape[0]
    if not 0 <= args.start <= n - 4:
        raise ValueError(f"--start must be in [0, {n - 4}] (the training split has {n} "
                         f"images), got {args.start}")
    lo = args.start
    plot_examples(X_train[lo:lo + 4], y_train[lo:lo + 4], out,
                  title=f"MNIST training images {lo}..{lo + 3}")
    labels = " ".join(str(int(v)) for v in y_train[lo:lo + 4])
    print(f"saved examples: {out} (labels {labels})", flush=True)
    return 0


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------

def _error_message(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return _one_line(text) or type(exc).__name__


def main(argv=None) -> int:
    """Run the ``xpnet`` command line; return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TrainingInterrupted as exc:
        return _interrupted(args, argv, exc)
    except KeyboardInterrupt:
        print(f"xpnet: interrupted{_kept_backups(args)}", file=sys.stderr, flush=True)
        return 130
    except _UsageError as exc:
        # Reported like argparse's own errors: the command line itself is wrong.
        print(f"xpnet: error: {_one_line(exc)} (see 'xpnet {args.command} --help')",
              file=sys.stderr, flush=True)
        _abort_other_ranks(args, 2, exc)
        return 2
    except (XpnetError, ValueError, TypeError, KeyError, OSError, ImportError,
            MemoryError) as exc:
        if os.environ.get("XPNET_DEBUG"):
            raise
        print(f"xpnet: error: {_error_message(exc)}", file=sys.stderr, flush=True)
        _abort_other_ranks(args, 1, exc)
        return 1


def _interrupted(args, argv, exc: TrainingInterrupted) -> int:
    """``--backup-dir`` and Ctrl-C/SIGTERM: say how to resume; 128 + the signal's number."""
    comm = getattr(args, "communicator", None)
    if comm is None or comm.is_root:
        how = (f": xpnet {shlex.join(argv)}" if comm is None else
               f" (mpiexec ... xpnet {shlex.join(argv)})")
        print(f"xpnet: {_one_line(exc)}\nxpnet: to resume, run the same command again{how}",
              file=sys.stderr, flush=True)
    return 128 + int(exc.signum or signal.SIGINT)  # 130 for SIGINT, 143 for SIGTERM


def _kept_backups(args) -> str:
    """After a second Ctrl-C: where the backups written so far are, if any."""
    directory = getattr(args, "backup_dir", None)
    if directory is None or not any(Path(directory).expanduser().glob("backup-*.npz")):
        return ""
    return (f" (the backups in {directory!r} are kept: run the same command again to resume "
            "from the last one)")


def _abort_other_ranks(args, code: int, exc: BaseException) -> None:
    """After an error under ``--distributed``, make sure the whole job ends.

    An error that every rank raised together (a refused batch size, ranks
    given different data) needs nothing: each rank prints it and exits, and
    the launcher forwards every message. After an error of one rank alone the
    others would wait forever in their next collective, so the job is aborted
    (``MPI_Abort``), as is every failing exit under ``python -m mpi4py``. An
    abort may drop output not yet forwarded: the grace before it lets the
    launcher pass on the message just printed.
    """
    comm = getattr(args, "communicator", None)
    if comm is None or comm.size == 1:
        return
    from .distributed import raised_on_every_rank

    if raised_on_every_rank(exc) and "mpi4py.run" not in sys.modules:
        return
    time.sleep(_ABORT_GRACE_S)
    comm.abort(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
