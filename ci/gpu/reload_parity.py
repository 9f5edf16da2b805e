"""Reload a saved model on several backends; compare predicted classes with the first.

usage: reload_parity.py MODEL.npz OUT.json SPEC...   (SPEC: numpy, cupy, torch:cuda, ...)

The images are MNIST's 10,000 test images from :func:`xpnet.datasets.load_mnist`
(the tutorial's split and scaling). The reference is the first SPEC (numpy).
A predicted class that differs from it is tolerated only at a near tie (top-2
logit margin at most 1e-4 of the logit scale), and counted. The relative logit
difference is the suite's ``tests/_helpers.rel_err``. Exits 1 unless every
backend loaded the model and predicted the same classes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

import xpnet
from xpnet.datasets import load_mnist

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from _helpers import rel_err  # noqa: E402

NEAR_TIE = 1e-4


def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    *_, images, labels = load_mnist(dtype="float64", download=False, progress=False)
    return np.asarray(images), np.asarray(labels, dtype=np.int64)


def logits_on(model_path: str, spec: str, images: np.ndarray) -> tuple[np.ndarray, dict]:
    """The model's logits (host float64) on backend ``spec``, and a report entry."""
    name, _, device = spec.partition(":")
    model = xpnet.Sequential.load(model_path, backend=name, device=device or None)
    backend = model.backend
    on_device = backend.asarray(images)
    model.predict_logits(on_device[:8, ...])  # warm-up: kernel compilation
    backend.synchronize()
    start = time.perf_counter()
    logits = backend.to_numpy(model.predict_logits(on_device)).astype(np.float64)
    return logits, {"predict_s": round(time.perf_counter() - start, 4), "backend": repr(backend)}


def compare(logits: np.ndarray, reference: np.ndarray, ref_spec: str) -> dict:
    """Class mismatches against ``reference``, and how many are not near ties."""
    ref_classes = reference.argmax(axis=1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    differ = np.flatnonzero(logits.argmax(axis=1) != ref_classes)
    scale = np.abs(reference).max()
    return {f"class_mismatches_vs_{ref_spec}": int(differ.size),
            "mismatches_not_near_tie": int((margin[differ] > NEAR_TIE * scale).sum()),
            "max_abs_logit_diff": float(np.abs(logits - reference).max()),
            "max_rel_logit_diff": rel_err(logits, reference)}


def main(model_path: str, out_json: str, *specs: str) -> int:
    images, labels = mnist_test_set()
    result = {"model": model_path, "n_test": int(labels.size), "backends": {}}
    logits = {}
    for spec in specs:
        try:
            logits[spec], entry = logits_on(model_path, spec, images)
            entry["accuracy"] = float((logits[spec].argmax(axis=1) == labels).mean())
        except Exception as exc:  # noqa: BLE001 - report it and go on with the others
            entry = {"error": f"{type(exc).__name__}: {exc}"}
        result["backends"][spec] = entry
    same = len(logits) == len(specs)
    ref = specs[0]
    for spec in specs[1:]:
        if ref in logits and spec in logits:
            entry = result["backends"][spec]
            entry |= compare(logits[spec], logits[ref], ref)
            same = same and entry["mismatches_not_near_tie"] == 0
    result["same_predictions"] = bool(same)
    for spec, entry in result["backends"].items():
        print(f"  {spec:<18} " + ", ".join(f"{k}={v}" for k, v in entry.items()))
    print(f"  same predicted classes on every backend: {same}")
    Path(out_json).write_text(json.dumps(result, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
