"""The distribution a user installs: build it, check it, install the wheel in a clean venv, run it.

What ``pip install xpnet-*.whl`` gives must work without this checkout: the wheel carries the
package and its ``py.typed`` marker and nothing else (no tests, no benchmarks), its metadata
passes ``twine check``, and the installed ``xpnet`` command trains. The venv is created without
system site packages and gets only xpnet's three dependencies (from PyPI or pip's cache), so a
module that imports something undeclared fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT / "data" / "mnist"
RUNTIME_DEPENDENCIES = ("numpy>=1.26", "array-api-compat>=1.12", "tqdm>=4.60")

pytestmark = pytest.mark.slow


def _run(*cmd, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd}:\n{result.stdout}\n{result.stderr}"
    return result


def _source_copy(dest: Path) -> Path:
    """The files a build reads, plus tests/ and benchmarks/ (which the wheel must leave out).

    Building in a copy keeps ``build/`` and ``*.egg-info`` out of the checkout.
    """
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("xpnet", "tests", "benchmarks"):
        shutil.copytree(ROOT / name, dest / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``python -m build`` of a copy of this checkout: one sdist and one wheel."""
    pytest.importorskip("build", reason="needs the test extra: pip install -e '.[test]'")
    src = _source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: setuptools comes from this environment, so no build env is downloaded.
    _run(sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
         "--outdir", out, src, cwd=src)
    return out


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (path,) = dist.glob("xpnet-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel (``--no-deps``) and xpnet's declared dependencies."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    python = env_dir / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", *RUNTIME_DEPENDENCIES, cwd=env_dir)
    _run(python, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=env_dir)
    return env_dir


def _clean_env() -> dict:
    """No PYTHONPATH: the child must import the installed xpnet, not this checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "XPNET_DATA_DIR", "XPNET_BACKEND", "XPNET_DTYPE")}
    env.update(MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1")
    return env


def test_twine_check_passes(dist):
    pytest.importorskip("twine", reason="needs the test extra: pip install -e '.[test]'")
    files = sorted(dist.iterdir())
    assert len(files) == 2  # the sdist and the wheel
    result = _run(sys.executable, "-m", "twine", "check", "--strict", *files, cwd=dist)
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_wheel_holds_the_package_and_py_typed_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "xpnet/py.typed" in names
    assert "xpnet/cli.py" in names and "xpnet/backends/_base.py" in names
    stray = [n for n in names if not (n.startswith("xpnet/") or ".dist-info/" in n)]
    assert stray == []
    assert not [n for n in names if "/tests/" in n or n.startswith(("tests/", "benchmarks/"))]
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: torch" in text and "Requires-Dist: numpy>=1.26" in text


def test_installed_wheel_imports_from_the_venv(installed, tmp_path):
    python = installed / "bin" / "python"
    code = ("import xpnet, xpnet.errors as e; print(xpnet.__file__); "
            "print(e.install_command('torch'))")
    out = _run(python, "-c", code, cwd=tmp_path, env=_clean_env()).stdout.splitlines()
    assert out[0].startswith(str(installed)), out
    # Not a checkout: the hint names the extra of the installed distribution.
    assert out[1] == 'pip install "xpnet[torch]"'


def test_installed_cli_help_and_one_epoch(installed, tmp_path):
    xpnet_cmd = installed / "bin" / "xpnet"
    help_text = _run(xpnet_cmd, "--help", cwd=tmp_path, env=_clean_env()).stdout
    assert "train" in help_text and "evaluate" in help_text
    if not MNIST.is_dir():
        pytest.skip("no MNIST copy in data/mnist")
    result = _run(xpnet_cmd, "train", "--epochs", "1", "--limit", "3000", "--init", "he_normal",
                  "--data-dir", MNIST,
                  "--quiet", "--save", tmp_path / "m.npz", cwd=tmp_path, env=_clean_env())
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("test_acc="), result.stdout
    assert float(last.split()[0].split("=")[1]) > 0.5  # 3000 images, one epoch, He init: about 0.85
    assert (tmp_path / "m.npz").stat().st_size > 100_000


def test_installed_cli_trains_on_own_data(installed, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((200, 3)) + 3.0 * labels[:, None],
             y=labels)
    result = _run(installed / "bin" / "xpnet", "train", "--data", tmp_path / "d.npz",
                  "--epochs", "3", "--hidden", "8", "--quiet", cwd=tmp_path, env=_clean_env())
    assert "epoch 3/3" in result.stdout


def test_install_hint_in_a_checkout_is_an_editable_install_of_it():
    from xpnet.errors import install_command

    assert install_command("torch") == f'pip install -e "{ROOT}[torch]"'
    assert install_command("plot", "sklearn") == f'pip install -e "{ROOT}[plot,sklearn]"'
