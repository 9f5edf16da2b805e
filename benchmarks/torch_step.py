"""The torch training step: xpnet's, the same written by hand, and that under ``torch.compile``.

Run ``python -m benchmarks.torch_step`` (``--help`` for the flags). Issue 15
asks to try ``torch.compile`` of the step and keep it only where a benchmark
shows it faster. In one process, interleaved epoch by epoch, on torch's CPU
(or ``--device cuda``), it times one MNIST epoch of the seed MLP with

* ``xpnet``: xpnet's step (``xpnet.training.portable_train_step`` on the torch
  backend, the one ``fit`` runs);
* ``by hand``: the same operations written directly in torch (``addmm``,
  ``addmm_`` with the rate as ``alpha``, ``log_softmax``, ``threshold_backward``);
* ``compiled``: ``torch.compile(by hand, fullgraph=True, dynamic=False)``
  (its compile time printed apart).

All three start from the same weights and see the same batches; it prints
seconds per epoch (median and every epoch) and each one's ratio to ``by hand``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import xpnet
from xpnet.training import loss_layers, portable_train_step

from .workload import LEARNING_RATE, SIZES, initial_params, load_data


def hand_step(torch):
    """``step(params, X, onehot, idx) -> loss sum``: the seed step in torch, updating in place."""
    threshold_backward = torch.ops.aten.threshold_backward

    def step(params, X, onehot, idx):
        xb, tb = torch.index_select(X, 0, idx), torch.index_select(onehot, 0, idx)
        acts = [xb]
        for k, (w, b) in enumerate(params):
            h = torch.addmm(b, acts[-1], w)
            acts.append(torch.relu(h) if k < len(params) - 1 else h)
        log_p = torch.log_softmax(acts[-1], 1)
        loss = -(log_p * tb).sum()
        g = (log_p.exp() - tb).mul_(1.0 / idx.shape[0])
        for k in range(len(params) - 1, -1, -1):
            w, b = params[k]
            g_in = g @ w.T if k else None  # before the update; layer 0 needs none
            w.addmm_(acts[k].T, g, alpha=-LEARNING_RATE)
            b.sub_(g.sum(0), alpha=LEARNING_RATE)
            if k:
                g = threshold_backward(g_in, acts[k], 0)
        return loss

    return step


def contenders(torch, device: str, dtype: str) -> dict:
    """``{name: step(X, onehot, idx)}``, each with its own copy of the initial weights."""
    def fresh():
        return [(torch.tensor(w, device=device), torch.tensor(b, device=device))
                for w, b in initial_params(SIZES, dtype)]

    by_hand, compiled_params = fresh(), fresh()
    step = hand_step(torch)
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    be = xpnet.get_backend("torch", device=device, dtype=dtype)
    model = xpnet.Sequential.mlp(SIZES, seed=0, backend=be)
    return {"xpnet": portable_train_step(be, loss_layers(model.layers), 0),
            "by hand": lambda X, oh, idx: step(by_hand, X, oh, idx),
            "compiled": lambda X, oh, idx: compiled(compiled_params, X, oh, idx)}


def time_epochs(steps: dict, X, onehot, batches: list, epochs: int, sync) -> dict:
    """Seconds per epoch of each step, interleaved (rotating order); epoch 0 is a warm-up."""
    times: dict = {name: [] for name in steps}
    names = list(steps)
    for epoch in range(epochs + 1):
        for name in names[epoch % len(names):] + names[:epoch % len(names)]:
            t0 = time.perf_counter()
            total = 0.0
            for idx in batches:
                total = total + steps[name](X, onehot, idx)
            float(total)  # the epoch's one read-back, as fit does
            sync()
            if epoch:
                times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None) -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="a few thousand random rows: a smoke run")
    args = p.parse_args(argv)
    data = load_data("auto", quick=args.quick)
    X = torch.tensor(data["X"].astype(args.dtype), device=args.device)
    onehot = torch.nn.functional.one_hot(torch.tensor(data["y"], device=args.device),
                                         SIZES[-1]).to(X.dtype)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    print(f"data: {data['source']}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}, {args.dtype}")
    print("| batch | contender | median s/epoch | x by hand | every epoch |")
    print("|---:|---|---:|---:|---|")
    order = np.random.default_rng(0).permutation(X.shape[0])
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        batches = [torch.tensor(order[lo:lo + batch_size], device=args.device)
                   for lo in range(0, X.shape[0] - batch_size + 1, batch_size)]
        steps = contenders(torch, args.device, args.dtype)
        try:
            t0 = time.perf_counter()
            steps["compiled"](X, onehot, batches[0])
            sync()
            print(f"(batch {batch_size}: torch.compile took {time.perf_counter() - t0:.1f} s)")
        except Exception as exc:  # noqa: BLE001 -- no C++ compiler, an unsupported op: say so
            print(f"(batch {batch_size}: torch.compile failed, left out: "
                  f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            del steps["compiled"]
        times = time_epochs(steps, X, onehot, batches, args.epochs, sync)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, seconds in times.items():
            print(f"| {batch_size} | {name} | {med[name]:.3f} | {med[name] / med['by hand']:.2f} | "
                  + " ".join(f"{t:.3f}" for t in seconds) + " |", flush=True)


if __name__ == "__main__":
    main()
