"""The ``xpnet`` command line, run as a subprocess like a user would, and in-process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import checkpoint as ckpt
from xpnet import cli
from xpnet import datasets as ds

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCH_LINE = re.compile(
    r"^epoch (\d+)/(\d+) loss=(\d+\.\d{4}) train_acc=(\d\.\d{4}) val_acc=(\d\.\d{4})"
    r"(?: lr=\S+)? seconds=(\d+\.\d{2})$", re.M)
RESULT_LINE = re.compile(r"^test_acc=(\d\.\d{4}) test_loss=(\d+\.\d{4}) wall_seconds=(\d+\.\d{2})$")

ROOT = Path(__file__).resolve().parent.parent

needs_mnist = pytest.mark.skipif(ds._files_in(ds._checkout_dir())[0] is None,
                                 reason="no MNIST copy in data/mnist")


def checkout_pythonpath() -> str:
    """PYTHONPATH that makes a child process import this checkout's xpnet, not an installed one."""
    rest = os.environ.get("PYTHONPATH", "")
    return str(ROOT) + (os.pathsep + rest if rest else "")


def cli_env() -> dict:
    env = {**os.environ, "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": checkout_pythonpath(),
           # Tiny matrices: BLAS threads only add contention on shared CI machines.
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           ds.ENV_MIRRORS: "http://127.0.0.1:9/"}  # never the internet
    for key in (ds.ENV_DATA_DIR, "XPNET_BACKEND", "XPNET_DEVICE", "XPNET_DTYPE", "XPNET_DEBUG"):
        env.pop(key, None)
    return env


def run_xpnet(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xpnet", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=cwd, env=cli_env())


def assert_one_line_error(stderr: str, *needles):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("xpnet: error: ")
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_valid_png(path: Path, min_side: int = 100):
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert min(img.shape[:2]) >= min_side
    assert float(img.std()) > 0  # not a blank canvas
    return img


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv(ds.ENV_MIRRORS, "http://127.0.0.1:9/")
    for key in (ds.ENV_DATA_DIR, "XPNET_BACKEND", "XPNET_DEVICE", "XPNET_DEBUG"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def single_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------
# One real training run, shared by the tests below
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    if ds._files_in(ds._checkout_dir())[0] is None:
        pytest.skip("no MNIST copy in data/mnist")
    work = tmp_path_factory.mktemp("train")
    proc = run_xpnet("train", "--epochs", "1", "--hidden", "32", "--plot", "plots/acc.png",
                     "--save", "models/mlp.npz", cwd=work)
    return proc, work


@pytest.mark.slow
def test_train_prints_epochs_and_the_test_accuracy(trained):
    proc, work = trained
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("xpnet ") and "784-32-10" in lines[0]
    assert "backend=numpy device=cpu dtype=float32" in lines[0]
    assert "epochs=1 batch_size=32 lr=0.1 optimizer=sgd" in lines[0]
    epochs = EPOCH_LINE.findall(proc.stdout)
    assert len(epochs) == 1
    epoch, total, loss, train_acc, val_acc, seconds = epochs[0]
    assert (epoch, total) == ("1", "1")
    assert float(val_acc) >= 0.9 and float(train_acc) >= 0.9 and 0 < float(loss) < 1
    result = RESULT_LINE.match(lines[-1])
    assert result, lines[-1]
    assert float(result.group(1)) >= 0.9
    assert "epoch 1" in proc.stderr and "batch" in proc.stderr  # the tqdm bar
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_train_writes_a_png_plot(trained):
    proc, work = trained
    assert proc.returncode == 0, proc.stderr
    assert f"saved plot: {Path('plots/acc.png')}" in proc.stdout
    img = assert_valid_png(work / "plots" / "acc.png", min_side=300)
    assert img.shape[:2] == (450, 700)  # 7 x 4.5 inches at 100 dpi
    assert [p.name for p in (work / "plots").iterdir()] == ["acc.png"]  # no temporary left


@pytest.mark.slow
def test_saved_model_reloads_on_another_backend_with_the_same_classes(trained):
    proc, work = trained
    assert proc.returncode == 0, proc.stderr
    path = work / "models" / "mlp.npz"
    meta = ckpt.read_metadata(path)
    printed = float(RESULT_LINE.match(proc.stdout.strip().splitlines()[-1]).group(1))
    assert round(meta["metadata"]["metrics"]["test_acc"], 4) == printed
    assert meta["metadata"]["training"]["hidden"] == [32]
    assert meta["metadata"]["training"]["epochs"] == 1
    assert len(meta["metadata"]["history"]["val_acc"]) == 1
    X_test, y_test = ds.load_mnist(dtype="float64")[4:]
    ref = ckpt.load_model(path, backend="numpy", dtype="float64")
    want = ref.predict(X_test)
    assert float(np.mean(want == y_test)) == pytest.approx(printed, abs=2e-4)
    others = ["array_api_strict"]
    try:
        xpnet.get_backend("torch")
        others.append("torch")
    except xpnet.BackendUnavailableError:
        pass
    for name in others:
        model = ckpt.load_model(path, backend=name, dtype="float64")
        be = model.backend
        got = be.to_numpy(model.predict(be.asarray(X_test)))
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.slow
def test_evaluate_a_saved_model_on_another_backend(trained):
    proc, work = trained
    assert proc.returncode == 0, proc.stderr
    printed = RESULT_LINE.match(proc.stdout.strip().splitlines()[-1]).group(1)
    ev = run_xpnet("evaluate", "models/mlp.npz", "--backend", "array_api_strict",
                   "--quiet", cwd=work)
    assert ev.returncode == 0, ev.stderr
    line = ev.stdout.strip()
    assert re.fullmatch(r"test_acc=\d\.\d{4} test_loss=\d+\.\d{4} n=10000 "
                        r"backend=array_api_strict device=CPU_DEVICE dtype=float32", line), line
    # array_api_strict computes with NumPy underneath: the very same accuracy.
    assert line.startswith(f"test_acc={printed} ")


# --------------------------------------------------------------------------
# Other commands, options, entry points
# --------------------------------------------------------------------------

@needs_mnist
def test_show_examples_draws_four_labelled_digits(tmp_path, capsys):
    out = tmp_path / "sub" / "digits.png"
    assert cli.main(["show-examples", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"saved examples: {out} (labels 5 0 4 1)"
    assert_valid_png(out, min_side=500)


@needs_mnist
@pytest.mark.slow
def test_optimizer_schedule_and_early_stopping_flags(tmp_path, capsys, single_thread):
    save = tmp_path / "m.npz"
    code = cli.main(["train", "--epochs", "2", "--hidden", "16", "--optimizer", "nesterov",
                     "--momentum", "0.5", "--lr", "0.05", "--weight-decay", "1e-5",
                     "--schedule", "step", "--early-stopping", "5", "--init", "he_normal",
                     "--seed", "3", "--quiet", "--save", str(save)])
    out = capsys.readouterr().out
    assert code == 0
    epochs = EPOCH_LINE.findall(out)
    assert [e[0] for e in epochs] == ["1", "2"]
    lrs = re.findall(r" lr=(\S+) ", out)
    assert [float(v) for v in lrs] == pytest.approx([0.05, 0.005])  # step: x0.1 every epoch
    assert float(epochs[-1][4]) > 0.85
    training = ckpt.read_metadata(save)["metadata"]["training"]
    assert training["optimizer"] == "nesterov" and training["momentum"] == 0.5
    assert training["init"] == "he_normal" and training["schedule"] == "step"
    assert training["early_stopping"] == 5 and training["seed"] == 3
    assert not out.startswith("xpnet ")  # --quiet: no banner


def test_the_default_path_never_imports_the_optimizer_modules(monkeypatch):
    monkeypatch.setitem(sys.modules, "xpnet.optimizers", None)  # importing it now fails
    monkeypatch.setitem(sys.modules, "xpnet.callbacks", None)
    args = cli.build_parser().parse_args(["train"])
    assert cli._optimization(args) == (None, [], None, None)
    assert (args.epochs, args.batch_size, args.lr, args.hidden, args.dtype, args.seed) == \
        (25, 32, 0.1, [100, 200], "float32", 0)
    args = cli.build_parser().parse_args(["train", "--early-stopping", "2"])
    with pytest.raises(ImportError):
        cli._optimization(args)


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["show-examples"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: xpnet")
    expected = {
        (): ["train", "evaluate", "show-examples", "--version"],
        ("train",): ["--backend", "--device", "--dtype", "--epochs", "--batch-size", "--lr",
                     "--hidden", "--seed", "--data-dir", "--plot", "--save", "--quiet",
                     "--optimizer", "--momentum", "--weight-decay", "--init", "--schedule",
                     "--early-stopping"],
        ("evaluate",): ["MODEL", "--backend", "--device", "--dtype", "--data-dir"],
        ("show-examples",): ["--out", "--data-dir"],
    }[tuple(command)]
    for flag in expected:
        assert flag in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xpnet {xpnet.__version__}"


@pytest.mark.parametrize("argv,needles", [
    (["train", "--epochs", "0"], ["argument --epochs", "expected a positive integer, got '0'"]),
    (["train", "--batch-size", "x"], ["argument --batch-size", "got 'x'"]),
    (["train", "--lr", "-1"], ["argument --lr", "expected a number in (0.0, inf]", "'-1'"]),
    (["train", "--lr", "nan"], ["argument --lr", "'nan'"]),
    (["train", "--hidden", "100,x"], ["argument --hidden", "got '100,x'"]),
    (["train", "--momentum", "1.5"], ["argument --momentum", "[0.0, 1.0)", "'1.5'"]),
    (["train", "--backend", "tensorflow"], ["argument --backend", "invalid choice: 'tensorflow'"]),
    (["train", "--optimizer", "rmsprop"], ["argument --optimizer", "'rmsprop'"]),
    (["train", "--dtype", "float16"], ["argument --dtype", "'float16'"]),
    (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["fly"], ["invalid choice: 'fly'"]),
    ([], ["required: COMMAND"]),
])
def test_bad_flags_exit_2_with_one_line(argv, needles, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *needles)


def test_errors_exit_1_with_one_line(tmp_path, capsys):
    def check(argv, *needles):
        assert cli.main(argv) == 1
        captured = capsys.readouterr()
        assert_one_line_error(captured.err, *needles)
        return captured

    check(["evaluate", str(tmp_path / "nope.npz")], "no checkpoint at", "does not exist")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    check(["evaluate", str(tmp_path / "junk.npz")], "not a readable xpnet checkpoint")
    (tmp_path / "empty").mkdir()
    check(["train", "--epochs", "1", "--data-dir", str(tmp_path / "empty")],
          "MNIST not found in data_dir=", "missing train-images-idx3-ubyte")
    check(["train", "--momentum", "0.5"], "--momentum applies to --optimizer momentum or "
                                          "nesterov, got --optimizer sgd")
    check(["train", "--plot", str(tmp_path)], "--plot must be a file path")
    check(["train", "--backend", "numpy", "--device", "cuda:0"],
          "backend 'numpy' only has device 'cpu'")
    check(["show-examples", "--out", str(tmp_path / "x.png"), "--data-dir",
           str(tmp_path / "missing")], "no such directory")


@needs_mnist
def test_a_data_error_is_one_line_even_when_the_message_has_many(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ds, "_checkout_dir", lambda: tmp_path / "nothing")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["show-examples", "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert_one_line_error(err, "could not find or download MNIST", " | ",
                          "source checkout", "What to do")
    assert not (tmp_path / "cache" / "xpnet" / "mnist").exists() or \
        list((tmp_path / "cache" / "xpnet" / "mnist").iterdir()) == []


def test_errors_from_a_real_process(tmp_path):
    proc = run_xpnet("evaluate", tmp_path / "missing.npz", cwd=tmp_path)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "does not exist")
    proc = run_xpnet("train", "--epochs", "0", cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "--epochs")
    assert proc.stdout == ""


def test_child_processes_import_the_checkout_under_test(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import xpnet; print(xpnet.__file__)"],
                          capture_output=True, text=True, timeout=120, env=cli_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).resolve() == ROOT / "xpnet" / "__init__.py"


def test_the_console_script(tmp_path):
    script = shutil.which("xpnet", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("the xpnet console script is not installed next to this Python")
    proc = subprocess.run([script, "train", "--help"], capture_output=True, text=True,
                          timeout=120, env=cli_env(), cwd=tmp_path)
    assert proc.returncode == 0 and "--early-stopping" in proc.stdout


def test_plot_functions_validate_and_write_atomically(tmp_path):
    from xpnet import plotting

    be = xpnet.get_backend("numpy")
    path = plotting.plot_history({"epoch": [1, 2, 3], "val_acc": [0.5, 0.7, 0.8]},
                                 tmp_path / "h.png", backend=be)
    assert_valid_png(path)
    assert plotting.backend_title(be) == "numpy / cpu / float32"
    with pytest.raises(ValueError, match="history has no 'train_acc' or 'val_acc' values"):
        plotting.plot_history({"loss": [1.0]}, tmp_path / "none.png")
    with pytest.raises(ValueError, match="same number .* got 2 and 3"):
        plotting.plot_examples(np.zeros((2, 784)), [1, 2, 3], tmp_path / "e.png")
    with pytest.raises(ValueError, match="images must be square, got 10 pixels"):
        plotting.plot_examples(np.zeros((1, 10)), [1], tmp_path / "e.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]
