"""``xpnet train --data FILE.npz`` and ``--csv FILE --target COLUMN``: a user's own data."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

import xpnet
from xpnet import cli, tabular
from xpnet.errors import DataError

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+) loss=\S+ train_acc=\S+ val_acc=(\d\.\d{4}) seconds=\S+$",
                        re.M)
RESULT_LINE = re.compile(r"^test_acc=(\d\.\d{4}) test_loss=\S+ wall_seconds=\S+$", re.M)
NAMES = ("setosa", "versicolor", "virginica")
FAST = ["--epochs", "8", "--hidden", "16", "--init", "he_normal", "--optimizer", "adam",
        "--lr", "0.01", "--quiet"]


def blobs(n=240, d=4, seed=0):
    """Three well-separated Gaussian classes: any working training run reaches > 0.9."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return rng.standard_normal((n, d)) + 4.0 * np.eye(3, d)[labels], labels


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def iris_like_csv(tmp_path):
    """Features around a column of class names (the target is not the last column)."""
    X, labels = blobs()
    rows = [[*x[:2], NAMES[k], *x[2:]] for x, k in zip(X, labels)]
    return write_csv(tmp_path / "flowers.csv", ["a", "b", "species", "c", "d"], rows)


def run(capsys, *argv):
    code = cli.main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_npz_trains_evaluates_saves_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X, labels = blobs()
    data = tmp_path / "blobs.npz"
    # Labels 10, 20, 30: mapped to classes 0, 1, 2 and kept in the checkpoint.
    np.savez(data, X=X[:200], y=(labels[:200] + 1) * 10, X_test=X[200:],
             y_test=(labels[200:] + 1) * 10)
    code, out, err = run(capsys, "--data", data, *FAST, "--save", tmp_path / "m.npz",
                         "--plot", tmp_path / "acc.png")
    assert code == 0, err
    epochs = EPOCH_LINE.findall(out)
    assert [int(e[0]) for e in epochs] == list(range(1, 9))
    assert float(epochs[-1][2]) > 0.9
    assert float(RESULT_LINE.search(out).group(1)) > 0.9
    model = xpnet.Sequential.load(tmp_path / "m.npz", backend="numpy")
    assert model.n_inputs == 4 and model.n_outputs == 3
    training = model.metadata["training"]
    assert training["classes"] == [10, 20, 30]
    assert training["data"].endswith("blobs.npz")
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csv_with_named_labels_and_test_split(iris_like_csv, tmp_path, capsys):
    code, out, err = run(capsys, "--csv", iris_like_csv, "--target", "species",
                         "--test-split", "0.25", *FAST, "--save", tmp_path / "m.npz")
    assert code == 0, err
    assert float(RESULT_LINE.search(out).group(1)) > 0.9
    meta = xpnet.Sequential.load(tmp_path / "m.npz", backend="numpy").metadata["training"]
    assert meta["classes"] == list(NAMES)
    assert meta["target"] == "species"


def test_without_test_split_the_result_line_has_no_test_scores(iris_like_csv, capsys):
    code, out, _ = run(capsys, "--csv", iris_like_csv, "--target", "species", "--epochs", "1",
                       "--quiet")
    assert code == 0
    assert "test_acc" not in out
    assert re.search(r"^wall_seconds=\d+\.\d{2}$", out, re.M)


def test_standardize_saves_the_statistics(tmp_path, capsys):
    X, labels = blobs()
    X = X * 1000.0 + 5.0
    np.savez(tmp_path / "d.npz", X=X, y=labels)
    code, _, err = run(capsys, "--data", tmp_path / "d.npz", *FAST, "--standardize",
                       "--save", tmp_path / "m.npz")
    assert code == 0, err
    scaling = xpnet.Sequential.load(tmp_path / "m.npz").metadata["training"]["standardize"]
    train_rows = X[np.random.default_rng(0).permutation(X.shape[0])[24:]]
    np.testing.assert_allclose(scaling["mean"], train_rows.mean(axis=0))
    np.testing.assert_allclose(scaling["scale"], train_rows.std(axis=0))


# --------------------------------------------------------------------------
# Refusals: exit status 2, one line naming the problem
# --------------------------------------------------------------------------

def _npz(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


X4, Y4 = np.ones((6, 3)), np.array([0, 1, 0, 1, 0, 1])

NPZ_CASES = {
    "unknown array name": (dict(X=X4, y=Y4, X_valid=X4), ["unexpected arrays", "X_valid"]),
    "X without y": (dict(X=X4), ["missing array 'y'"]),
    "y_test without X_test": (dict(X=X4, y=Y4, y_test=Y4), ["missing array 'X_test'"]),
    "1-D features": (dict(X=np.ones(6), y=Y4), ["2-D", "(6,)"]),
    "labels of the wrong length": (dict(X=X4, y=Y4[:5]), ["one label per row (6)", "(5,)"]),
    "2-D labels": (dict(X=X4, y=Y4[:, None]), ["1-D", "(6, 1)"]),
    "string features": (dict(X=np.array([["a"] * 3] * 6), y=Y4), ["real numbers", "<U1"]),
    "NaN feature": (dict(X=np.where(np.eye(6, 3) > 0, np.nan, 1.0), y=Y4), ["finite", "row 0"]),
    "fractional labels": (dict(X=X4, y=Y4 + 0.5), ["non-integral"]),
    "one class only": (dict(X=X4, y=np.zeros(6, int)), ["at least 2 classes"]),
    "test label not in training": (dict(X=X4, y=Y4, X_test=X4[:2], y_test=np.array([1, 7])),
                                   ["y_test", "[7]", "training labels [0, 1]"]),
    "test features of another width": (dict(X=X4, y=Y4, X_test=np.ones((2, 4)),
                                            y_test=Y4[:2]), ["X_test has 4 features", "3"]),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_a_usage_error(case, tmp_path, capsys):
    arrays, needles = NPZ_CASES[case]
    code, out, err = run(capsys, "--data", _npz(tmp_path, **arrays), "--epochs", "1")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("xpnet: error: ")
    for needle in needles:
        assert needle in err, err


CSV_CASES = {
    "missing target column": ([["a", "b", "label"], ["1", "2", "x"]], "klass",
                              ["no column 'klass'", "['a', 'b', 'label']"]),
    "non-numeric feature": ([["a", "b", "label"], ["1", "2", "x"], ["1", "big", "y"]], "label",
                            ["column 'b' must be numeric", "row 3", "'big'"]),
    "ragged row": ([["a", "b", "label"], ["1", "2", "x"], ["1", "x"]], "label",
                   ["row 3 has 2 fields", "header 3"]),
    "header only": ([["a", "label"]], "label", ["at least one data row"]),
    "no feature column": ([["label"], ["x"], ["y"]], "label", ["at least one feature column"]),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_bad_csv_is_a_usage_error(case, tmp_path, capsys):
    rows, target, needles = CSV_CASES[case]
    path = write_csv(tmp_path / "bad.csv", rows[0], rows[1:])
    code, _, err = run(capsys, "--csv", path, "--target", target, "--epochs", "1")
    assert code == 2
    for needle in needles:
        assert needle in err, err


FLAG_CASES = {
    "--target without --csv": (["--target", "y"], "--target needs --csv"),
    "--csv without --target": (["--csv", "{csv}"], "--csv needs --target"),
    "--data with --data-dir": (["--data", "{npz}", "--data-dir", "x"], "--data-dir is MNIST's"),
    "--data with --no-verify": (["--data", "{npz}", "--no-verify"], "--no-verify is MNIST's"),
    "--test-split with --data": (["--data", "{npz}", "--test-split", "0.2"],
                                 "--test-split applies to --csv"),
    "--val-split on MNIST": (["--val-split", "0.2"], "--val-split applies to --data/--csv"),
    "--standardize on MNIST": (["--standardize"], "--standardize applies"),
    "early stopping without validation": (["--data", "{npz}", "--val-split", "0",
                                           "--early-stopping", "2"],
                                          "--early-stopping needs validation data"),
    "validation split too small": (["--data", "{npz}", "--val-split", "0.01"],
                                   "leaves 0 validation rows"),
    "missing file": (["--data", "{missing}"], "no such file"),
}


@pytest.mark.parametrize("case", FLAG_CASES)
def test_conflicting_flags_are_usage_errors(case, tmp_path, capsys):
    argv, needle = FLAG_CASES[case]
    names = {"npz": _npz(tmp_path, X=X4, y=Y4), "missing": tmp_path / "nope.npz",
             "csv": write_csv(tmp_path / "ok.csv", ["a", "y"], [["1", "0"], ["2", "1"]])}
    code, _, err = run(capsys, *(a.format(**names) for a in argv), "--epochs", "1")
    assert code == 2
    assert needle in err, err


def test_data_and_csv_together_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--data", "a.npz", "--csv", "b.csv"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# --------------------------------------------------------------------------
# The readers themselves
# --------------------------------------------------------------------------

def test_integer_csv_labels_sort_numerically(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["x", "y"], [["0.5", "10"], ["1.5", "9"], ["2", "10"]])
    splits = tabular.read_csv(path, "y")
    assert splits.classes == [9, 10]
    assert splits.y.tolist() == [1, 0, 1]
    assert splits.X.dtype == np.float64 and splits.X.shape == (3, 1)


def test_validation_rows_are_a_seeded_random_disjoint_draw():
    X, labels = blobs(n=50)
    splits = tabular.Splits(X, labels, None, None, None, None, [0, 1, 2], "mem")
    a = tabular.with_validation(splits, 0.2, seed=3)
    b = tabular.with_validation(splits, 0.2, seed=3)
    assert a.X_val.shape == (10, 4) and a.X.shape == (40, 4)
    np.testing.assert_array_equal(a.X_val, b.X_val)
    rows = {tuple(r) for r in a.X} | {tuple(r) for r in a.X_val}
    assert len(rows) == 50  # every row in exactly one split
    # Not the file's tail: sorted files would otherwise validate on one class only.
    assert not np.array_equal(a.X_val, X[-10:])


def test_reader_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not a readable .npz"):
        (tmp_path / "x.npz").write_bytes(b"not a zip")
        tabular.read_npz(tmp_path / "x.npz")
    assert issubclass(DataError, ValueError)
