"""Deploy anywhere: ONNX export of models and estimators, skl2onnx registration.

The graph is the model's own forward: xpnet's layers, written against the
array API, run on ndonnx arrays (an array-API namespace that records an ONNX
graph) with a symbolic batch axis; see :mod:`xpnet.onnx_graph` and
``docs/deploy.md``. Needs the ``[onnx]`` extra (``pip install "xpnet[onnx]"``:
ndonnx, onnx, onnxruntime, skl2onnx); none of it is imported by ``import xpnet``.

Examples
--------
>>> import os, tempfile, xpnet
>>> from xpnet.export import export_onnx
>>> model = xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
>>> export_onnx(model, path, output="proba")        # doctest: +SKIP
"""

from __future__ import annotations

from .onnx_graph import (
    OUTPUTS,
    estimator_onnx_model,
    estimator_to_onnx,
    export_onnx,
    onnx_model,
    trace_graph,
)

__all__ = ["export_onnx", "onnx_model", "estimator_to_onnx", "estimator_onnx_model",
           "trace_graph", "register_skl2onnx", "OUTPUTS"]


def register_skl2onnx() -> None:
    """Teach skl2onnx to convert :class:`xpnet.sklearn.MLPClassifier` and ``MLPRegressor``.

    Afterwards ``skl2onnx.to_onnx(pipeline, X[:1])`` converts pipelines that
    contain them (for instance ``make_pipeline(StandardScaler(), MLPClassifier())``)
    as it converts scikit-learn's own MLPs, through the same graph as
    :func:`estimator_to_onnx`. Calling it again is harmless.
    """
    from .skl2onnx_converter import register  # lazily: skl2onnx is in the [onnx] extra

    register()
