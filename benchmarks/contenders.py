"""The contenders a benchmark times, each training the seed MLP from the same start.

* :class:`XpnetContender`: ``Sequential.fit`` on one xpnet backend (numpy,
  torch, jax, cupy, array_api_strict), one epoch per call;
* :class:`HandwrittenNumpy`: the tutorial's NumPy MLP written out by hand
  (:mod:`benchmarks.handwritten_numpy`), the baseline of every ratio;
* :class:`TorchIdiomatic`: ``nn.Sequential`` + ``CrossEntropyLoss`` +
  ``optim.SGD`` on the same device (:mod:`benchmarks.torch_idiomatic`);
* :class:`GemmOnly`: just the eight matrix products a training step needs,
  into preallocated outputs: what no Python implementation on this BLAS can
  beat (the "floor"); :class:`TorchGemmOnly`: the same with torch's BLAS;
* :class:`JaxByHand`: the epoch written directly in JAX, one compiled
  ``lax.scan`` (:mod:`benchmarks.jax_by_hand`), the floor of ``xpnet jax``;
* :func:`matmul_ceiling`: the best GFLOP/s of a large square product per
  library and dtype (the "ceiling").

:func:`build_contenders` makes them from the parsed command line.
"""

from __future__ import annotations

import time

import numpy as np

import xpnet
from xpnet.errors import XpnetError

from . import handwritten_numpy as hw
from .machine import installed
from .workload import SIZES, initial_params


def _block(lib: str, obj=None, device=None):
    """Wait until queued work is done (GPU queues, JAX's asynchronous dispatch)."""
    if lib == "jax":
        import jax

        if obj is not None:
            jax.block_until_ready(obj)
    elif lib == "torch":
        if device is not None and str(device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()
    elif lib == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def matmul_ceiling(lib: str, dtype: str, device: str, n: int, reps: int) -> float:
    """Best GFLOP/s of an ``n x n @ n x n`` product with ``lib`` (after one warm-up)."""
    host = np.random.default_rng(0).random((2, n, n)).astype(dtype)
    if lib == "numpy":
        a, b = host
        out = np.empty((n, n), dtype=dtype)
        fn = lambda: np.matmul(a, b, out=out)  # noqa: E731
    elif lib == "torch":
        import torch

        a, b = (torch.tensor(h, device=device) for h in host)
        fn = lambda: torch.mm(a, b)  # noqa: E731
    elif lib == "jax":
        import jax
        import jax.numpy as jnp

        dev = jax.devices("gpu" if device.startswith("cuda") else "cpu")[0]
        a, b = (jax.device_put(jnp.asarray(h), dev) for h in host)
        fn = lambda: jnp.matmul(a, b)  # noqa: E731
    elif lib == "cupy":
        import cupy

        a, b = (cupy.asarray(h) for h in host)
        fn = lambda: cupy.matmul(a, b)  # noqa: E731
    else:
        raise ValueError(lib)
    best = float("inf")
    for i in range(reps + 1):
        t0 = time.perf_counter()
        r = fn()
        _block(lib, r, device)
        dt = time.perf_counter() - t0
        if i:
            best = min(best, dt)
    return 2 * n**3 / best / 1e9


class Contender:
    """Something that can train one epoch and predict, timed by the harness.

    ``reset(batch_size)`` rebuilds the model from the seed init with a fresh
    batch-order generator, so every contender starts from the same weights
    and sees the same batches at each batch size.
    """

    kind = "?"
    lib = "numpy"  # whose matmul ceiling applies

    def __init__(self, label, dtype, device, data, epochs):
        self.label, self.dtype, self.device = label, dtype, device
        self.data = data
        self.epochs = epochs
        self.batch_size = None
        self.losses = []

    @property
    def key(self):
        return f"{self.label} {self.dtype}"

    def reset(self, batch_size):
        raise NotImplementedError

    def epoch(self) -> float:
        raise NotImplementedError

    def predict(self) -> float:
        raise NotImplementedError

    def _timed_epoch(self, train) -> float:
        """Seconds ``train()`` takes; the mean loss it returns is recorded in ``losses``."""
        t0 = time.perf_counter()
        loss = train()
        dt = time.perf_counter() - t0
        self.losses.append(loss)
        return dt


class HandwrittenNumpy(Contender):
    """The hand-written NumPy reference: the baseline of every ratio."""

    kind = "handwritten"

    def reset(self, batch_size):
        self.batch_size = batch_size
        self.net = hw.build_mlp(SIZES, seed=0, dtype=self.dtype)
        self.rng = np.random.default_rng(0)
        self.losses = []

    def epoch(self):
        X, y = self.data
        return self._timed_epoch(lambda: hw.train_epoch(self.net, X, y, self.batch_size, self.rng))

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        hw.predict(self.net, X)
        return time.perf_counter() - t0


class GemmOnly(Contender):
    """The eight matrix products of a training step, nothing else (a floor).

    On NumPy by default; :class:`TorchGemmOnly` runs the same products with
    torch's BLAS, the floor of the torch contenders.
    """

    kind = "gemm"

    def _weights(self):
        rng = np.random.default_rng(0)
        return [(rng.standard_normal((a, c)) * 0.01).astype(self.dtype)
                for a, c in zip(SIZES[:-1], SIZES[1:])]

    def _empty(self, shape):
        return np.empty(shape, dtype=self.dtype)

    def _matmul(self):
        return np.matmul

    def reset(self, batch_size):
        self.batch_size = b = batch_size
        self.W = self._weights()
        self.H = [self._empty((b, c)) for c in SIZES[1:]]       # activations
        self.G = [self._empty((b, c)) for c in SIZES[1:-1]]     # input grads
        self.GW = [self._empty(tuple(w.shape)) for w in self.W]  # weight grads
        self.losses = []

    def epoch(self):
        X, _ = self.data
        b = self.batch_size
        W, H, G, GW = self.W, self.H, self.G, self.GW
        mm = self._matmul()
        t0 = time.perf_counter()
        for lo in range(0, X.shape[0] - b + 1, b):
            xb = X[lo:lo + b]
            mm(xb, W[0], out=H[0])
            mm(H[0], W[1], out=H[1])
            mm(H[1], W[2], out=H[2])
            mm(H[1].T, H[2], out=GW[2])
            mm(H[2], W[2].T, out=G[1])
            mm(H[0].T, G[1], out=GW[1])
            mm(G[1], W[1].T, out=G[0])
            mm(xb.T, G[0], out=GW[0])
        _block(self.lib, device=self.device)
        return time.perf_counter() - t0

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        h = X
        for w in self.W:
            h = h @ w
        _block(self.lib, device=self.device)
        return time.perf_counter() - t0


class TorchGemmOnly(GemmOnly):
    """:class:`GemmOnly` with torch tensors: what torch's own BLAS needs for a step."""

    lib = "torch"

    def _weights(self):
        import torch

        return [torch.as_tensor(w, device=self.device) for w in super()._weights()]

    def _empty(self, shape):
        import torch

        return torch.empty(shape, dtype=getattr(torch, self.dtype), device=self.device)

    def _matmul(self):
        import torch

        return torch.mm


class XpnetContender(Contender):
    """``Sequential.fit`` on one xpnet backend, one epoch per call."""

    kind = "xpnet"

    def __init__(self, label, dtype, device, data, epochs, backend):
        super().__init__(label, dtype, device, data, epochs)
        self.be = backend
        self.lib = {"array_api_strict": "numpy"}.get(backend.name, backend.name)

    def reset(self, batch_size):
        self.batch_size = batch_size
        self.model = xpnet.Sequential.mlp(SIZES, backend=self.be, seed=0)
        self.rng = np.random.default_rng(0)
        self.losses = []
        self.call_seconds = []

    def _sync(self, obj=None):
        if self.be.name == "jax":
            obj = obj if obj is not None else [layer.params for layer in self.model.layers]
            _block("jax", obj)
        else:
            self.be.synchronize()

    def epoch(self):
        """The epoch as ``fit`` times it (``history["seconds"]``).

        ``fit``'s once-per-call work (argument and finite checks, one-hot
        encoding) is amortised over all epochs of a real run, so it is left
        out of the epoch figure and recorded separately (``call_seconds``).
        """
        X, y = self.data
        t0 = time.perf_counter()
        h = self.model.fit(X, y, epochs=1, batch_size=self.batch_size, seed=self.rng,
                           train_accuracy=False)
        self._sync()
        call = time.perf_counter() - t0
        self.losses.append(h["loss"][-1])
        self.call_seconds.append(call)
        return h["seconds"][-1]

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        p = self.model.predict(X)
        self._sync(p)
        return time.perf_counter() - t0


class JaxByHand(Contender):
    """The epoch written directly in JAX (:mod:`benchmarks.jax_by_hand`): xpnet-jax's floor."""

    kind = "jax-hand"
    lib = "jax"

    def reset(self, batch_size):
        import jax

        from . import jax_by_hand

        self.batch_size = batch_size
        X, y = self.data
        dev = X.devices().pop() if hasattr(X, "devices") else None
        self.params = jax.device_put(initial_params(SIZES, self.dtype), dev)
        self.onehot = jax.nn.one_hot(y, SIZES[-1], dtype=X.dtype)
        self.epoch_fn = jax_by_hand.make_epoch(jax)
        self.rng = np.random.default_rng(0)
        self.losses = []

    def epoch(self):
        return self._timed_epoch(self._train_epoch)

    def _train_epoch(self) -> float:
        import jax

        X, _ = self.data
        n, b = X.shape[0], self.batch_size
        steps = n // b
        rows = jax.device_put(self.rng.permutation(n)[:steps * b].reshape(steps, b),
                              X.devices().pop())
        self.params, total = self.epoch_fn(self.params, X, self.onehot, rows)
        return float(total) / (steps * b)  # waits for the program, as fit's read-back does

    def predict(self):
        import jax

        X, _ = self.data
        t0 = time.perf_counter()
        h = X
        for k, (w, b) in enumerate(self.params):
            h = h @ w + b
            if k < len(self.params) - 1:
                h = jax.numpy.maximum(h, 0)
        _block("jax", h)
        return time.perf_counter() - t0


class TorchIdiomatic(Contender):
    """Idiomatic PyTorch (``nn.Sequential``, ``optim.SGD``) on the same device."""

    kind = "torch"
    lib = "torch"

    def reset(self, batch_size):
        from .torch_idiomatic import TorchMLP

        self.batch_size = batch_size
        self.mlp = TorchMLP(SIZES, seed=0, dtype=self.dtype, device=self.device)
        self.rng = np.random.default_rng(0)
        self.losses = []

    def epoch(self):
        X, y = self.data

        def train():
            loss = self.mlp.train_epoch(X, y, self.batch_size, self.rng)
            self.mlp.synchronize()
            return loss

        return self._timed_epoch(train)

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        self.mlp.predict(X)
        self.mlp.synchronize()
        return time.perf_counter() - t0


def build_contenders(args, host) -> tuple[list, list]:
    """The contender objects and a list of notes on what was skipped and why."""
    notes = []
    X32, y = host["X"], host["y"]
    cache = {}

    def device_data(name, device, dtype):
        key = (name, str(device), dtype)
        if key not in cache:
            be = xpnet.get_backend(name, device=device, dtype=dtype)
            Xh = X32 if dtype == "float32" else X32.astype(dtype)
            cache[key] = (be, be.asarray(Xh), be.asarray(y, dtype=be.index_dtype))
        return cache[key]

    out = []
    gpu = args.device == "cuda"
    for dt in args.dtypes:
        _, Xn, yn = device_data("numpy", None, dt)
        out.append(HandwrittenNumpy("numpy hand-written", dt, "cpu", (Xn, yn), args.epochs))
        if not args.no_gemm:
            out.append(GemmOnly("numpy GEMMs only", dt, "cpu", (Xn, yn), args.epochs))
        for name in args.backends:
            device = None if name in ("numpy", "array_api_strict") else (
                "cuda" if gpu else ("cpu" if name == "torch" else None))
            if name == "jax" and gpu:
                device = "cuda"
            try:
                be, Xd, yd = device_data(name, device, dt)
            except (XpnetError, ImportError) as exc:
                notes.append(f"xpnet {name} {dt}: skipped ({str(exc).splitlines()[0][:160]})")
                continue
            epochs = args.jax_epochs if (name == "jax" and args.jax_epochs) else args.epochs
            out.append(XpnetContender(f"xpnet {name}", dt, be.device_name, (Xd, yd), epochs, be))
            if name == "jax" and not args.no_gemm:
                out.append(JaxByHand("jax by hand", dt, be.device_name, (Xd, yd), epochs))
        if not args.no_torch:
            if not installed("torch"):
                notes.append("torch idiomatic: skipped (torch is not installed)")
                continue
            try:
                be, Xd, yd = device_data("torch", "cuda" if gpu else "cpu", dt)
            except XpnetError as exc:
                notes.append(f"torch idiomatic {dt}: skipped ({str(exc).splitlines()[0][:160]})")
                continue
            out.append(TorchIdiomatic("torch idiomatic", dt, be.device_name, (Xd, yd), args.epochs))
            if not args.no_gemm:
                out.append(TorchGemmOnly("torch GEMMs only", dt, be.device_name, (Xd, yd),
                                         args.epochs))
    return out, notes
