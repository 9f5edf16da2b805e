"""The seed's settings vs He init + Adam on MNIST (784-100-200-10), same epochs.

Run it with::

    python examples/compare_optimizers.py                 # NumPy float32, 10 epochs
    python examples/compare_optimizers.py --epochs 25 --backend torch --device cuda

Both runs use the same network, the same minibatches (batch 32, the same
shuffling seed) and the same number of epochs; they differ only in

* ``seed``: the tutorial's ``normal * 0.01`` weights and its plain SGD step
  (learning rate 0.1) taken inside ``backward``;
* ``he_adam``: He (Kaiming) normal weights and Adam (learning rate 1e-3);
* ``he_adam_cosine`` (only with ``--runs``): the same, with the learning
  rate decayed to 0 along a cosine over the run.

It prints the validation accuracy after every epoch, writes both validation
curves to a PNG and all numbers to a JSON file next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import xpnet
from xpnet.callbacks import Callback, LearningRateScheduler
from xpnet.datasets import load_mnist
from xpnet.optimizers import Adam, get_schedule
from xpnet.plotting import backend_title, require_matplotlib

RUNS = {
    "seed": {"label": "seed: normal*0.01 init, SGD lr=0.1", "init": "seed",
             "optimizer": lambda: None, "schedule": None},
    "he_adam": {"label": "He normal init, Adam lr=1e-3", "init": "he_normal",
                "optimizer": lambda: Adam(1e-3), "schedule": None},
    # optional (--runs seed,he_adam,he_adam_cosine): the same with cosine decay
    "he_adam_cosine": {"label": "He normal init, Adam lr=1e-3, cosine decay",
                       "init": "he_normal", "optimizer": lambda: Adam(1e-3),
                       "schedule": "cosine"},
}


class PrintEpoch(Callback):
    def __init__(self, name):
        self.name = name

    def on_epoch_end(self, epoch, logs=None):
        train = f"train {logs['accuracy']:.4f}  " if "accuracy" in logs else ""
        print(f"  {self.name:8s} epoch {epoch + 1:3d}  loss {logs['loss']:.4f}  {train}"
              f"val {logs['val_accuracy']:.4f}  ({logs['seconds']:.1f} s)", flush=True)


def plot(results, path, epochs, be):
    Figure, Canvas = require_matplotlib()
    fig = Figure(figsize=(7, 4.5))
    Canvas(fig)
    ax = fig.add_subplot()
    for name, res in results.items():
        ax.plot(range(1, epochs + 1), res["val_acc"], marker="o", markersize=3,
                label=RUNS[name]["label"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"MNIST 784-100-200-10, batch 32\n{backend_title(be)}")
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="init and shuffling seed")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="out/compare_optimizers.png")
    parser.add_argument("--runs", default="seed,he_adam",
                        help=f"comma-separated, from {', '.join(RUNS)}")
    parser.add_argument("--train-accuracy", action="store_true",
                        help="also record accuracy on the 50k training images each epoch")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)

    be = xpnet.get_backend(args.backend, device=args.device, dtype=args.dtype)
    X_train, y_train, X_val, y_val, X_test, y_test = load_mnist(args.data_dir, backend=be)
    print(f"{be!r}: {X_train.shape[0]} train / {X_val.shape[0]} val / {X_test.shape[0]} test")

    results = {}
    for name in names:
        run = RUNS[name]
        print(f"{run['label']}:")
        model = xpnet.Sequential.mlp([784, 100, 200, 10], learning_rate=0.1, init=run["init"],
                                     seed=args.seed, backend=be)
        optimizer = run["optimizer"]()
        callbacks = [PrintEpoch(name)]
        schedule = get_schedule(run["schedule"], epochs=args.epochs)
        if schedule is not None:
            callbacks.insert(0, LearningRateScheduler(schedule, optimizer))
        t0 = time.perf_counter()
        hist = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                         seed=args.seed, validation_data=(X_val, y_val),
                         optimizer=optimizer, callbacks=callbacks,
                         train_accuracy=args.train_accuracy)
        results[name] = {
            "label": run["label"],
            "val_acc": hist["val_acc"],
            "loss": hist["loss"],
            "train_acc": hist["train_acc"] if "train_acc" in hist else None,
            "test_acc": model.evaluate(X_test, y_test)["accuracy"],
            "seconds": time.perf_counter() - t0,
        }

    print("\nvalidation accuracy per epoch")
    print("epoch  " + "  ".join(f"{n:>8s}" for n in results))
    for e in range(args.epochs):
        print(f"{e + 1:5d}  " + "  ".join(f"{r['val_acc'][e]:8.4f}" for r in results.values()))
    for name, r in results.items():
        print(f"{name}: best val {max(r['val_acc']):.4f}, final val {r['val_acc'][-1]:.4f}, "
              f"test {r['test_acc']:.4f}, {r['seconds']:.0f} s")

    plot(results, args.out, args.epochs, be)
    json_path = os.path.splitext(args.out)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump({"backend": repr(be), "epochs": args.epochs, "batch_size": args.batch_size,
                   "seed": args.seed, "runs": results}, f, indent=2)
    print(f"wrote {args.out} and {json_path}")
    return results


if __name__ == "__main__":
    main()
