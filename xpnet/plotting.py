"""PNG figures of training curves and example digits (matplotlib, Agg, never interactive).

Figures are built with :class:`matplotlib.figure.Figure` and the Agg canvas
directly -- no ``pyplot``, so no window ever opens, whatever ``MPLBACKEND``
says -- and written atomically (a crash never leaves half a PNG).

Examples
--------
>>> import os, tempfile
>>> from xpnet.plotting import plot_history
>>> path = os.path.join(tempfile.mkdtemp(), "acc.png")
>>> _ = plot_history({"epoch": [1, 2], "train_acc": [0.9, 0.95], "val_acc": [0.89, 0.93]},
...                  path, title="demo")
>>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import atomic_write
from .errors import install_command

if TYPE_CHECKING:
    from .backends import Backend

__all__ = ["plot_history", "plot_examples", "backend_title", "require_matplotlib"]

_CURVES = (("train_acc", "train accuracy"), ("val_acc", "validation accuracy"))


def require_matplotlib() -> tuple[type, type]:
    """Import matplotlib or raise an ImportError that says how to install it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            f"plotting needs matplotlib, which cannot be imported ({exc}); install it with "
            + install_command("plot")
        ) from None
    return Figure, FigureCanvasAgg


def backend_title(backend: Backend | dict | None) -> str:
    """``"numpy / cpu / float32"`` for a Backend (or a dict with those keys)."""
    if backend is None:
        return ""
    if isinstance(backend, dict):
        return f"{backend.get('backend', '?')} / {backend.get('device', '?')} / " \
               f"{backend.get('dtype', '?')}"
    return f"{backend.name} / {backend.device_name} / {backend.dtype_name}"


def _save(fig: Any, canvas_cls: type, path: str | os.PathLike[str]) -> Path:
    canvas_cls(fig)
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    return path


def _series(history: Any, key: str) -> list[float] | None:
    data = history.history if hasattr(history, "history") else history
    values = data.get(key) if isinstance(data, dict) else None
    return None if not values else [float(v) for v in values]


def plot_history(history: Any, path: str | os.PathLike[str], *, title: str | None = None,
                 backend: Backend | dict | None = None) -> Path:
    """Plot train and validation accuracy per epoch to a PNG file.

    Parameters
    ----------
    history : History or dict
        Per-epoch lists ``train_acc`` and/or ``val_acc`` (and ``epoch``).
    path : str or os.PathLike
        Destination PNG (written atomically; parent directories are created).
    title : str, optional
        Figure title; default ``"MNIST accuracy"``.
    backend : Backend or dict, optional
        Appended to the title as ``backend / device / dtype``.

    Returns
    -------
    pathlib.Path
    """
    Figure, Canvas = require_matplotlib()
    series = [(label, _series(history, key)) for key, label in _CURVES]
    curves = [(label, ys) for label, ys in series if ys]
    if not curves:
        raise ValueError(
            "history has no 'train_acc' or 'val_acc' values to plot; train with "
            "validation_data=... (and train_accuracy=True)"
        )
    epochs = _series(history, "epoch") or list(range(1, len(curves[0][1]) + 1))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    for label, ys in curves:
        ax.plot(epochs[:len(ys)], ys, marker="o", markersize=3, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    full = title or "MNIST accuracy"
    if backend is not None:
        full += f"\n{backend_title(backend)}"
    ax.set_title(full)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, Canvas, path)


def plot_examples(images: Any, labels: Any, path: str | os.PathLike[str], *,
                  title: str | None = None) -> Path:
    """The tutorial's 2x2 grid of digits titled with their labels, as a PNG.

    Parameters
    ----------
    images : array-like, shape (4, 28, 28) or (4, 784)
        Pixels (any scale); at most the first four are drawn.
    labels : array-like, shape (4,)
    path : str or os.PathLike
    title : str, optional

    Returns
    -------
    pathlib.Path
    """
    Figure, Canvas = require_matplotlib()
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if images.shape[0] != labels.shape[0] or images.shape[0] < 1:
        raise ValueError(
            f"images and labels must have the same number (>= 1) of samples, got "
            f"{images.shape[0]} and {labels.shape[0]}"
        )
    n = min(4, images.shape[0])
    side = int(round(np.sqrt(images[0].size)))
    if side * side != images[0].size:
        raise ValueError(f"images must be square, got {images[0].size} pixels per image")
    fig = Figure(figsize=(6, 6))
    for i in range(n):
        ax = fig.add_subplot(2, 2, i + 1)
        ax.set_title(f"Label: {int(labels[i])}")
        ax.imshow(images[i].reshape(side, side), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Canvas, os.fspath(path))
