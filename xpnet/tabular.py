"""Your own classification data from a file: ``.npz`` arrays or a CSV table (``xpnet train --data/--csv``).

Both readers return a :class:`Splits` of NumPy arrays on the host: float64
features, labels mapped to ``0..n_classes-1`` (in sorted order of the
training labels) and the original label of each class. Any problem with the
file is a :class:`~xpnet.errors.DataError` naming the file, the array or
column and what was expected; the command line reports it as a usage error.
Plain ``csv`` and NumPy only: no pandas.
"""

from __future__ import annotations

import csv
import os
import zipfile
from dataclasses import dataclass, replace

import numpy as np

from .errors import DataError

__all__ = ["Splits", "read_npz", "read_csv", "with_validation", "standardized"]

#: The arrays a ``--data`` file may hold; the first pair is required.
NPZ_PAIRS = (("X", "y"), ("X_val", "y_val"), ("X_test", "y_test"))


@dataclass(frozen=True)
class Splits:
    """Train, optional validation and optional test arrays of one dataset.

    Attributes
    ----------
    X, y : numpy.ndarray
        Training features (n, d) float64 and labels (n,) int64 in ``0..C-1``.
    X_val, y_val, X_test, y_test : numpy.ndarray or None
        The same for validation and test, when the file has them.
    classes : list
        ``classes[k]`` is the original label that ``k`` stands for.
    source : str
        What the data is, for messages and titles (the file name).
    """

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    classes: list
    source: str

    @property
    def n_features(self) -> int:
        """Number of feature columns."""
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes (distinct training labels)."""
        return len(self.classes)


# --------------------------------------------------------------------------
# Shared checks
# --------------------------------------------------------------------------

def _features(values, where: str) -> np.ndarray:
    """Real, finite, 2-D float64 features, or a DataError naming ``where``."""
    arr = np.asarray(values)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{where}: features must be real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{where}: features must be a non-empty 2-D array (rows, features), "
                        f"got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(f"{where}: features must be finite, row {row} holds NaN or inf")
    return arr


def _label_array(values, where: str, n_rows: int) -> np.ndarray:
    """1-D labels with one per feature row (integers, strings or integral floats)."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise DataError(f"{where}: labels must be 1-D with one label per row ({n_rows}), "
                        f"got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise DataError(f"{where}: labels must be class labels (integers or names), got "
                            "non-integral floats; for regression targets use the Python API")
        arr = arr.astype(np.int64)
    elif not (np.issubdtype(arr.dtype, np.integer) or arr.dtype.kind in "USb"):
        raise DataError(f"{where}: labels must be integers or strings, got dtype {arr.dtype}")
    return arr


def _encode(labels: np.ndarray, classes: np.ndarray, where: str) -> np.ndarray:
    """Indices of ``labels`` in the sorted training ``classes``; unknown labels are refused."""
    idx = np.searchsorted(classes, labels)
    idx = np.minimum(idx, classes.shape[0] - 1)
    unknown = classes[idx] != labels
    if unknown.any():
        extra = sorted(set(labels[unknown].tolist()))[:5]
        raise DataError(f"{where}: labels {extra} do not occur in the training labels "
                        f"{_preview(classes)}")
    return idx.astype(np.int64)


def _preview(classes: np.ndarray) -> str:
    shown = classes[:10].tolist()
    return f"{shown}" if classes.shape[0] <= 10 else f"{shown[:-1]} ... ({classes.shape[0]} classes)"


def _build(parts: dict, source: str) -> Splits:
    """Check the splits against each other and map every label to its class index."""
    X, y = parts["train"]
    classes = np.unique(y)
    if classes.shape[0] < 2:
        raise DataError(f"{source}: the training labels must hold at least 2 classes, got "
                        f"{classes.tolist()}")
    out: dict = {"X": X, "y": _encode(y, classes, f"{source} y")}
    for split, suffix in (("val", "_val"), ("test", "_test")):
        X_s, y_s = parts.get(split, (None, None))
        if X_s is not None and X_s.shape[1] != X.shape[1]:
            raise DataError(f"{source}: X{suffix} has {X_s.shape[1]} features, the training "
                            f"data {X.shape[1]}")
        out["X" + suffix] = X_s
        out["y" + suffix] = None if y_s is None else _encode(y_s, classes, f"{source} y{suffix}")
    return Splits(**out, classes=classes.tolist(), source=source)


# --------------------------------------------------------------------------
# --data FILE.npz
# --------------------------------------------------------------------------

def read_npz(path: str | os.PathLike[str]) -> Splits:
    """Read ``X``, ``y`` and optionally ``X_val``/``y_val``, ``X_test``/``y_test`` from an ``.npz``.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``numpy.savez`` (or ``savez_compressed``).

    Returns
    -------
    Splits

    Raises
    ------
    DataError
        An unreadable file, a missing or unknown array name, an ``X`` without its ``y``,
        non-numeric or non-finite features, labels of the wrong shape, or validation/test
        labels that the training labels do not have.
    """
    source = os.fspath(path)
    arrays = _load_npz(source)
    known = {name for pair in NPZ_PAIRS for name in pair}
    unknown = sorted(set(arrays) - known)
    if unknown:
        raise DataError(f"{source}: unexpected arrays {unknown}; a --data file holds X and y, "
                        "optionally X_val and y_val, X_test and y_test")
    parts = {}
    for (x_name, y_name), split in zip(NPZ_PAIRS, ("train", "val", "test")):
        if x_name not in arrays and y_name not in arrays and split != "train":
            continue
        missing = [n for n in (x_name, y_name) if n not in arrays]
        if missing:
            raise DataError(f"{source}: missing array {missing[0]!r} (found {sorted(arrays)}); "
                            f"{x_name} and {y_name} go together")
        X = _features(arrays[x_name], f"{source} {x_name}")
        parts[split] = (X, _label_array(arrays[y_name], f"{source} {y_name}", X.shape[0]))
    return _build(parts, source)


def _load_npz(source: str) -> dict:
    """Every array of the file, without pickles (an object array is refused by NumPy)."""
    try:
        with np.load(source, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise DataError(f"--data: no such file {source!r}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{source}: not a readable .npz file of numeric arrays ({exc})") from None


# --------------------------------------------------------------------------
# --csv FILE --target COLUMN
# --------------------------------------------------------------------------

def read_csv(path: str | os.PathLike[str], target: str, *, test_fraction: float = 0.0,
             seed: int = 0) -> Splits:
    """Read a CSV file with a header row: numeric feature columns and one label column.

    Parameters
    ----------
    path : str or os.PathLike
        Comma-separated, first row the column names.
    target : str
        Name of the label column (any values: they are mapped to classes).
    test_fraction : float, default 0.0
        Share of the rows held out as a test split, drawn at random with ``seed``
        (0: no test split).
    seed : int, default 0
        Seed of that draw.

    Returns
    -------
    Splits

    Raises
    ------
    DataError
        A missing file or target column, an empty file, rows of the wrong length, or a
        feature value that is not a number (the message names its row and column).
    """
    source = os.fspath(path)
    header, rows = _read_rows(source)
    if target not in header:
        raise DataError(f"{source}: no column {target!r} for --target; the columns are "
                        f"{header}")
    if len(header) < 2:
        raise DataError(f"{source}: needs at least one feature column besides {target!r}")
    col = header.index(target)
    features = [c for i, c in enumerate(header) if i != col]
    X = _features(_numeric_rows(rows, col, features, source), f"{source}")
    labels = _csv_labels([row[col] for row in rows])
    return _build(_split(X, labels, test_fraction, seed), source)


def _read_rows(source: str) -> tuple[list[str], list[list[str]]]:
    try:
        with open(source, newline="", encoding="utf-8") as fh:
            table = [row for row in csv.reader(fh) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise DataError(f"--csv: no such file {source!r}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{source}: not a readable UTF-8 CSV file ({exc})") from None
    if len(table) < 2:
        raise DataError(f"{source}: needs a header row and at least one data row, got "
                        f"{len(table)} row(s)")
    header = [name.strip() for name in table[0]]
    for line, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{source}: row {line} has {len(row)} fields, the header "
                            f"{len(header)}")
    return header, table[1:]


def _numeric_rows(rows, target_col: int, features: list[str], source: str) -> np.ndarray:
    """The feature cells as float64; the first cell that is not a number is named."""
    out = np.empty((len(rows), len(features)), dtype=np.float64)
    for r, row in enumerate(rows):
        cells = [cell for i, cell in enumerate(row) if i != target_col]
        for c, cell in enumerate(cells):
            try:
                out[r, c] = float(cell)
            except ValueError:
                raise DataError(f"{source}: column {features[c]!r} must be numeric, row "
                                f"{r + 2} holds {cell.strip()!r} (only --target may hold "
                                "names)") from None
    return out


def _csv_labels(cells: list[str]) -> np.ndarray:
    """Integer labels when every cell is an integer (sorted numerically), else strings."""
    stripped = [cell.strip() for cell in cells]
    try:
        return np.array([int(cell) for cell in stripped], dtype=np.int64)
    except ValueError:
        return np.array(stripped)


def _split(X: np.ndarray, labels: np.ndarray, test_fraction: float, seed: int) -> dict:
    """Train and (with ``test_fraction``) a random test split of the rows."""
    n_test = int(round(test_fraction * X.shape[0]))
    if test_fraction and not 1 <= n_test < X.shape[0]:
        raise DataError(f"--test-split {test_fraction:g} of {X.shape[0]} rows leaves "
                        f"{n_test} test rows and {X.shape[0] - n_test} training rows")
    if n_test == 0:
        return {"train": (X, labels)}
    order = np.random.default_rng(seed).permutation(X.shape[0])
    test, train = order[:n_test], order[n_test:]
    return {"train": (X[train], labels[train]), "test": (X[test], labels[test])}


def with_validation(splits: Splits, fraction: float, seed: int = 0) -> Splits:
    """Hold out a random ``fraction`` of the training rows for validation (none: unchanged).

    The rows are drawn at random with ``seed``: files are often sorted by class, and a
    tail of the file would then hold one class only.

    Parameters
    ----------
    splits : Splits
        Data without validation arrays (with them it is returned unchanged).
    fraction : float
        Share of the training rows held out; 0 holds out none.
    seed : int, default 0
        Seed of the draw.

    Returns
    -------
    Splits
    """
    if splits.X_val is not None or fraction == 0:
        return splits
    n = splits.X.shape[0]
    n_val = int(round(fraction * n))
    if not 1 <= n_val < n:
        raise DataError(f"--val-split {fraction:g} of {n} training rows leaves {n_val} "
                        f"validation rows and {n - n_val} training rows")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return replace(splits, X=splits.X[train], y=splits.y[train], X_val=splits.X[val],
                   y_val=splits.y[val])


def standardized(splits: Splits) -> tuple[Splits, np.ndarray, np.ndarray]:
    """Every split scaled by the training rows' mean and standard deviation (0 -> 1).

    Returns
    -------
    splits : Splits
        The scaled data.
    mean, scale : numpy.ndarray
        What was subtracted and divided by, per feature (saved with the model).
    """
    mean = splits.X.mean(axis=0)
    scale = splits.X.std(axis=0)
    scale[scale == 0] = 1.0  # a constant column stays 0 instead of becoming NaN

    def scaled(X):
        return None if X is None else (X - mean) / scale

    return (replace(splits, X=scaled(splits.X), X_val=scaled(splits.X_val),
                    X_test=scaled(splits.X_test)), mean, scale)
