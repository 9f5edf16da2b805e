"""Processes racing on the same files, and a save killed by SIGTERM.

Every child process here has a timeout; downloads come only from an HTTP
server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet
import xpnet.datasets as ds

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "mnist"
_TIMEOUT = 120

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and rename")


def _env(**extra) -> dict:
    # The checkout under test, never an installed xpnet; no network for downloads.
    return dict(os.environ, PYTHONPATH=str(ROOT), XPNET_BACKEND="numpy",
                XPNET_MNIST_MIRRORS="http://127.0.0.1:9/", **extra)


def _spawn(code: str, *args: str, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"child timed out after {_TIMEOUT} s: {err[-2000:]}")
    return proc.returncode, out, err


def _wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + _TIMEOUT
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"child exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"child never reached {what}")
        time.sleep(0.01)


def _params(model) -> list[np.ndarray]:
    return [model.backend.to_numpy(getattr(layer, name))
            for layer in model.layers for name in layer.param_names]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y)
                                    for x, y in zip(a, b))


def _stray_files(directory: Path, keep: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != keep)


# --------------------------------------------------------------------------
# Two processes saving the same checkpoint path
# --------------------------------------------------------------------------

_SAVER = """
import sys, time
from pathlib import Path
import xpnet
path, seed, go, rounds = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
model = xpnet.Sequential.mlp([64, 256, 10], backend="numpy", seed=seed)
while not go.exists():  # start together
    time.sleep(0.001)
for _ in range(rounds):
    model.save(path, writer=seed)
print("saved")
"""

_READER = """
import sys, time
from pathlib import Path
import xpnet
path, go, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
loads = 0
while not stop.exists():
    if path.exists():
        xpnet.Sequential.load(path, backend="numpy")  # any CheckpointError fails the test
        loads += 1
print(loads)
"""


def test_two_processes_saving_one_path_leave_one_complete_file(tmp_path):
    path, go, stop = tmp_path / "ckpt" / "model.npz", tmp_path / "go", tmp_path / "stop"
    path.parent.mkdir()
    savers = [_spawn(_SAVER, str(path), str(seed), str(go), "30") for seed in (1, 2)]
    reader = _spawn(_READER, str(path), str(go), str(stop))
    go.touch()
    results = [_finish(p) for p in savers]
    stop.touch()
    reader_rc, reader_out, reader_err = _finish(reader)
    for rc, out, err in results:
        assert rc == 0 and out.strip() == "saved", err[-2000:]
    # Every load the reader made during the race found a complete checkpoint.
    assert reader_rc == 0, reader_err[-2000:]
    loaded = xpnet.Sequential.load(path, backend="numpy")
    candidates = {seed: _params(xpnet.Sequential.mlp([64, 256, 10], backend="numpy",
                                                     seed=seed)) for seed in (1, 2)}
    writer = loaded.metadata["writer"]
    assert writer in candidates
    assert _same(_params(loaded), candidates[writer])
    assert not _same(candidates[1], candidates[2])  # the two files really differ
    assert _stray_files(path.parent, keep="model.npz") == []  # no temporary left behind


# --------------------------------------------------------------------------
# SIGTERM during a save
# --------------------------------------------------------------------------

_PAUSED_SAVER = """
import os, sys, time
from pathlib import Path
import xpnet
path, marker, handler = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if handler == "exit":  # what many applications install: SIGTERM -> SystemExit
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
model = xpnet.Sequential.mlp([32, 64, 10], backend="numpy", seed=99)
def paused_fsync(fd):
    # The whole new file is written to a temporary; the rename has not happened yet.
    marker.touch()
    time.sleep(60)
os.fsync = paused_fsync
model.save(path)
"""


def _old_checkpoint(path: Path) -> list[np.ndarray]:
    old = xpnet.Sequential.mlp([32, 64, 10], backend="numpy", seed=5)
    old.save(path, generation="old")
    return _params(old)


@pytest.mark.parametrize("handler", ["default", "exit"])
def test_sigterm_during_a_save_leaves_the_old_file_intact(tmp_path, handler):
    path, marker = tmp_path / "ckpt" / "model.npz", tmp_path / "in-save"
    old = _old_checkpoint(path)
    before = path.read_bytes()
    proc = _spawn(_PAUSED_SAVER, str(path), str(marker), handler)
    _wait_for(marker, proc, "the middle of the save")
    proc.send_signal(signal.SIGTERM)
    rc, _, err = _finish(proc)
    assert rc in (-signal.SIGTERM, 143), err[-2000:]
    assert path.read_bytes() == before
    again = xpnet.Sequential.load(path, backend="numpy")
    assert again.metadata == {"generation": "old"} and _same(_params(again), old)
    stray = _stray_files(path.parent, keep="model.npz")
    if handler == "exit":
        assert stray == []  # the exception unwound atomic_write: its temporary is gone
    else:
        # A process killed outright runs no cleanup: at most its hidden temporary remains,
        # never a file under the checkpoint's name.
        assert all(n.startswith(".model.npz.") and n.endswith(".tmp") for n in stray), stray


_LOOPING_SAVER = """
import sys
from pathlib import Path
import xpnet
path, ready = Path(sys.argv[1]), Path(sys.argv[2])
model = xpnet.Sequential.mlp([32, 64, 10], backend="numpy", seed=99)
ready.touch()
while True:
    model.save(path, generation="new")
"""


def test_sigterm_at_arbitrary_moments_of_repeated_saves_leaves_a_complete_file(tmp_path):
    new = _params(xpnet.Sequential.mlp([32, 64, 10], backend="numpy", seed=99))
    rng = np.random.default_rng(0)
    for attempt in range(4):
        path, ready = tmp_path / f"run{attempt}" / "model.npz", tmp_path / f"ready{attempt}"
        old = _old_checkpoint(path)
        proc = _spawn(_LOOPING_SAVER, str(path), str(ready))
        _wait_for(ready, proc, "its first save")
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGTERM)
        rc, _, err = _finish(proc)
        assert rc == -signal.SIGTERM, err[-2000:]
        loaded = xpnet.Sequential.load(path, backend="numpy")
        generation = loaded.metadata["generation"]
        assert _same(_params(loaded), {"old": old, "new": new}[generation])


# --------------------------------------------------------------------------
# Two processes filling one empty MNIST cache
# --------------------------------------------------------------------------

class _SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files in small pieces, so that two downloads really overlap."""

    def log_message(self, *args):
        pass

    def copyfile(self, source, outputfile):
        while chunk := source.read(256 * 1024):
            outputfile.write(chunk)
            time.sleep(0.002)


@pytest.fixture
def mirror():
    if ds._files_in(SHIPPED)[0] is None:
        pytest.skip(f"no MNIST copy in {SHIPPED} to serve")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_SlowHandler, directory=str(SHIPPED)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


_FILLER = """
import sys, time
from pathlib import Path
import numpy as np
import xpnet.datasets as ds
cache, mirror, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
ds.download_mnist(cache, mirrors=[mirror], progress=False)
out = ds.load_mnist(data_dir=cache, dtype="uint8", n_val=0, download=False)  # verifies SHA-256
print(len(out[0]), len(out[4]), int(np.bincount(out[1]).sum()))
"""


def test_two_processes_filling_one_empty_cache_both_succeed(tmp_path, mirror):
    cache, go = tmp_path / "cache" / "xpnet" / "mnist", tmp_path / "go"
    fillers = [_spawn(_FILLER, str(cache), mirror, str(go)) for _ in range(2)]
    go.touch()
    for rc, out, err in (_finish(p) for p in fillers):
        assert rc == 0, err[-3000:]
        assert out.split() == ["60000", "10000", "60000"]
    names = sorted(p.name for p in cache.iterdir())
    assert names == sorted(n + ".gz" for n in ds.MNIST_FILES.values())  # no temporaries
    for name in names:
        assert (cache / name).read_bytes() == (SHIPPED / name).read_bytes()
