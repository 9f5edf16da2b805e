"""ONNX export, the machinery: the model's own forward, run on ndonnx arrays, recorded as a graph.

Use it through :mod:`xpnet.export` (which also registers the estimators with
skl2onnx); this module is what ``Sequential.export_onnx``, the estimators'
``to_onnx`` and the skl2onnx converter call.

ndonnx is an array-API namespace whose arrays build an ONNX graph. Because
every xpnet layer is written against the array API, exporting needs no second
implementation: the layers are copied onto the ``ndonnx`` backend (their
parameters become the graph's initializers) and their ``_forward`` is run on a
symbolic input whose batch axis is named ``"N"``, so the file accepts any
batch size. The heads (probabilities, labels) are the very functions
``predict_proba``/``predict`` use.

Needs the ``[onnx]`` extra (``pip install "xpnet[onnx]"``: ndonnx, onnx,
onnxruntime, skl2onnx); nothing here is imported by ``import xpnet``.

Examples
--------
>>> import os, tempfile, xpnet
>>> model = xpnet.Sequential.mlp([4, 8, 3], backend="numpy", seed=0)
>>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
>>> model.export_onnx(path, output="proba")        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._io import atomic_write
from ._validation import check_int
from ._version import __version__
from .backends import Backend, get_backend
from .errors import ExportError
from .layers import Dense, ReLU, Sigmoid, Tanh
from .layers.base import Layer, layers_of
from .losses import BinaryCrossEntropy, MeanSquaredError, get_loss, log_softmax, sigmoid

__all__ = ["export_onnx", "onnx_model", "estimator_to_onnx", "estimator_onnx_model",
           "trace_graph", "OUTPUTS"]

#: What an exported model computes: ``predict_logits``, ``predict_proba`` or ``predict``.
OUTPUTS = ("logits", "proba", "label")
#: Name of the symbolic batch axis (any batch size at run time).
BATCH_AXIS = "N"

#: A head maps ``(xp, logits)`` to the graph's named outputs.
Head = Callable[[Any, Any], dict]


# --------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------

def _inference_layers(layers: list[Layer]) -> list[Layer]:
    """The layers ``predict_logits`` runs: Dropout (identity in eval) and a final
    Softmax (fused with the loss: the logits are its input) left out."""
    kept = [layer for layer in layers if not getattr(layer, "identity_in_eval", False)]
    if kept and kept[-1].fused_with_loss:
        kept = kept[:-1]
    return kept


def _on_graph(i: int, layer: Layer, be: Backend) -> Layer:
    """A copy of ``layer`` on the ndonnx backend (the original is untouched)."""
    twin = copy.copy(layer)
    twin.grads = {}
    try:
        return twin.to(be)
    except Exception as exc:
        raise _unsupported(i, layer, exc) from exc


def _unsupported(i: int, layer: Layer, exc: BaseException) -> ExportError:
    return ExportError(
        f"cannot export layer {i} ({layer!r}) to ONNX: its forward does not run on ndonnx "
        f"arrays ({type(exc).__name__}: {exc}). Exportable layers use the array API only "
        "(xpnet's Dense, ReLU, Sigmoid, Tanh, LeakyReLU, Softmax, Dropout, Flatten); nothing "
        "was written"
    )


def _trace(layers: list[Layer], be: Backend, x: Any) -> Any:
    """Run each layer's forward on the symbolic ``x``, naming the layer that fails."""
    out = x
    for i, layer in enumerate(layers):
        try:
            out = layer._forward(out)
        except Exception as exc:
            raise _unsupported(i, layer, exc) from exc
        if not be.owns(out):
            raise _unsupported(i, layer, TypeError(
                f"it returned a {type(out).__name__}, not an ndonnx array (a host read-back?)"))
    return out


def _sample_shape(layers: list[Layer], input_shape: Sequence[int] | None) -> tuple:
    """One sample's shape: ``input_shape`` or the first Dense layer's input size."""
    if input_shape is not None:
        if isinstance(input_shape, int):
            input_shape = (input_shape,)
        return tuple(check_int(s, "input_shape[i]", low=1) for s in input_shape)
    for layer in layers:
        units = getattr(layer, "input_units", None)
        if units is not None:
            return (units,)
    raise ExportError("the model has no Dense layer, so its input size is unknown; pass "
                      "input_shape=(n_features,) (or e.g. (28, 28) before a Flatten)")


def _batch_axis(batch_size: int | None) -> int | str:
    if batch_size is None:
        return BATCH_AXIS
    return check_int(batch_size, "batch_size", low=1)


def trace_graph(layers: list[Layer], head: Head, *, dtype: Any, input_shape: tuple,
                batch_size: int | None = None, input_name: str = "X") -> Any:
    """The ONNX ``ModelProto`` of ``head(xp, forward(layers, X))``, ``X`` of ``(batch, *input_shape)``.

    Parameters
    ----------
    layers : list of Layer
        The inference layers, on any backend (copied, never modified).
    head : callable
        ``head(xp, logits) -> {output name: ndonnx array}``.
    dtype : {"float32", "float64"}
        The graph's floating dtype (input, weights, outputs).
    input_shape : tuple of int
        One sample's shape.
    batch_size : int, optional
        A fixed batch size; default: the symbolic axis ``"N"`` (any size).
    input_name : str
        Name of the graph's input.
    """
    be = get_backend("ndonnx", dtype=dtype)
    on_graph = [_on_graph(i, layer, be) for i, layer in enumerate(layers)]
    xp = be.xp
    x = xp.argument(shape=(_batch_axis(batch_size), *input_shape), dtype=be.dtype)
    outputs = head(xp, _trace(on_graph, be, x))
    proto = xp.build({input_name: x}, outputs)
    _constants_to_initializers(proto.graph)
    proto.producer_name, proto.producer_version = "xpnet", __version__
    return proto


def _constants_to_initializers(graph: Any) -> None:
    """Move the graph's top-level ``Constant`` tensors (the weights) to initializers,
    where ONNX tools and runtimes expect parameters."""
    keep = []
    for node in graph.node:
        attrs = list(node.attribute)
        if node.op_type == "Constant" and node.domain == "" \
                and [a.name for a in attrs] == ["value"]:
            tensor = graph.initializer.add()
            tensor.CopyFrom(attrs[0].t)
            tensor.name = node.output[0]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)


# --------------------------------------------------------------------------
# Sequential models
# --------------------------------------------------------------------------

def _check_output(output: Any) -> str:
    if not isinstance(output, str) or output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}, got {output!r}")
    return output


def _model_head(loss: Any, output: str) -> Head:
    """What ``predict_logits``/``predict_proba``/``predict`` compute from the logits."""
    if output == "logits":
        return lambda xp, z: {"logits": z}
    if output == "label":
        return lambda xp, z: {"label": loss.predict(xp, z)}
    if isinstance(loss, MeanSquaredError):
        raise TypeError("output='proba' needs a classification loss; this model minimises the "
                        "mean squared error: export output='logits' (its predictions)")
    if isinstance(loss, BinaryCrossEntropy):
        return lambda xp, z: {"proba": sigmoid(xp, z)}
    return lambda xp, z: {"proba": xp.exp(log_softmax(z, xp=xp))}


def onnx_model(model: Any, *, output: str = "logits", batch_size: int | None = None,
               input_shape: Sequence[int] | None = None) -> Any:
    """The ONNX ``ModelProto`` of a model (see :func:`export_onnx`), in memory."""
    _check_output(output)
    layers = layers_of(model, "model")
    loss = get_loss(getattr(model, "loss", None) or "softmax_crossentropy")
    head = _model_head(loss, output)
    shape = _sample_shape(layers, input_shape)
    backend = getattr(model, "backend", None) or layers[0].backend
    return trace_graph(_inference_layers(layers), head, dtype=backend.dtype_name,
                       input_shape=shape, batch_size=batch_size)


def export_onnx(model: Any, path: str | os.PathLike[str], *, output: str = "logits",
                batch_size: int | None = None, input_shape: Sequence[int] | None = None) -> None:
    """Write ``model`` as an ONNX file that ONNX Runtime (or any ONNX runtime) runs.

    The graph is the model's own forward traced on ndonnx arrays: input ``"X"``
    of shape ``(N, n_features)`` in the model's dtype, ``N`` any batch size;
    the parameters are initializers; one output named after ``output``.

    Parameters
    ----------
    model : Sequential or list of Layer
    path : str or os.PathLike
        Destination, written atomically (nothing is written when export fails).
    output : {"logits", "proba", "label"}
        ``"logits"``: :meth:`~xpnet.Sequential.predict_logits` (the outputs of a
        regression model); ``"proba"``: :meth:`~xpnet.Sequential.predict_proba`;
        ``"label"``: :meth:`~xpnet.Sequential.predict` (the argmax, int64).
    batch_size : int, optional
        Fix the batch axis to this size; default: any size.
    input_shape : tuple of int, optional
        One sample's shape; default ``(n_inputs,)`` of the first Dense layer
        (give e.g. ``(28, 28)`` to feed images to a leading Flatten).

    Raises
    ------
    ExportError
        A layer whose forward does not run on ndonnx arrays (named).
    BackendUnavailableError
        ndonnx is not installed (an ``ImportError``).
    ValueError, TypeError
        A bad ``output``/``batch_size``/``input_shape``, ``output="proba"``
        for a regression model.
    OSError
        ``path`` cannot be written (no file is left behind).
    """
    _check_path(path)
    _write(onnx_model(model, output=output, batch_size=batch_size, input_shape=input_shape),
           path)


def _check_path(path: Any) -> None:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")


def _write(proto: Any, path: str | os.PathLike[str]) -> None:
    """Check the graph, then write it all at once (a failed write leaves nothing)."""
    import onnx  # ndonnx's own dependency (through spox)

    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    try:
        with atomic_write(path) as f:
            f.write(data)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write the ONNX file {os.fspath(path)!r}: "
                                   f"{exc.strerror or exc}") from exc


# --------------------------------------------------------------------------
# scikit-learn estimators (xpnet.sklearn and sklearn.neural_network alike)
# --------------------------------------------------------------------------

_ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "logistic": Sigmoid, "identity": None}


def _estimator_layers(est: Any, be: Backend) -> list[Layer]:
    """Dense layers from the fitted ``coefs_``/``intercepts_`` with ``activation`` between."""
    coefs, intercepts = getattr(est, "coefs_", None), getattr(est, "intercepts_", None)
    if coefs is None or intercepts is None:
        raise ValueError(f"{type(est).__name__} is not fitted (no coefs_/intercepts_): call "
                         "fit before exporting it")
    if est.activation not in _ACTIVATIONS:
        raise ExportError(f"cannot export activation={est.activation!r}; supported: "
                          f"{', '.join(_ACTIVATIONS)}")
    make_act = _ACTIVATIONS[est.activation]
    layers: list[Layer] = []
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        w, b = np.asarray(w), np.asarray(b)
        if i and make_act is not None:
            layers.append(make_act(backend=be))
        layers.append(Dense.from_config({"input_units": w.shape[0], "output_units": w.shape[1]},
                                        {"weights": w, "biases": b}, backend=be))
    return layers


def _class_table(xp: Any, classes: np.ndarray) -> Any:
    """``classes_`` as a graph constant: int64 for integers, strings as ONNX strings."""
    if classes.dtype.kind in "iub":
        return xp.asarray(classes.astype(np.int64))
    if classes.dtype.kind in "UO":
        return xp.asarray(classes.astype(str))
    raise ExportError(f"cannot export class labels of dtype {classes.dtype}: ONNX labels are "
                      "integers or strings")


def _classifier_head(est: Any, label: str, proba: str) -> Head:
    """``predict``/``predict_proba`` of a fitted MLP classifier, labels mapped to ``classes_``."""
    classes = np.asarray(est.classes_)
    if est.out_activation_ == "softmax":
        def head(xp, z):
            return {label: xp.take(_class_table(xp, classes), xp.argmax(z, axis=1), axis=0),
                    proba: xp.exp(log_softmax(z, xp=xp))}
    elif est.n_outputs_ == 1:  # binary: one logistic output, P(classes_[1])
        def head(xp, z):
            p = sigmoid(xp, z)
            idx = xp.minimum(xp.astype(z[:, 0] > 0, xp.int64), len(classes) - 1)
            return {label: xp.take(_class_table(xp, classes), idx, axis=0),
                    proba: xp.concat([1.0 - p, p], axis=1) if len(classes) == 2 else p}
    else:  # multilabel: one 0/1 decision per output
        def head(xp, z):
            return {label: xp.astype(z > 0, xp.int64), proba: sigmoid(xp, z)}
    return head


def _estimator_head(est: Any, names: Sequence[str]) -> Head:
    if hasattr(est, "classes_"):
        return _classifier_head(est, names[0], names[1])
    return lambda xp, z: {names[0]: z}


def estimator_onnx_model(est: Any, *, dtype: Any = None, output_names: Sequence[str] | None = None,
                         input_name: str = "X") -> Any:
    """The ONNX ``ModelProto`` of a fitted MLP estimator (see :func:`estimator_to_onnx`).

    ``dtype`` defaults to the dtype of ``coefs_``; ``output_names`` to
    ``("label", "probabilities")`` for a classifier and ``("variable",)`` for
    a regressor (skl2onnx's names).
    """
    coefs = getattr(est, "coefs_", None) or [np.zeros((0, 0))]  # unfitted: refused below
    host = get_backend("numpy", dtype=np.asarray(coefs[0]).dtype.name if dtype is None else dtype)
    layers = _estimator_layers(est, host)
    if output_names is None:
        output_names = ("label", "probabilities") if hasattr(est, "classes_") else ("variable",)
    return trace_graph(layers, _estimator_head(est, output_names), dtype=host.dtype_name,
                       input_shape=(np.asarray(coefs[0]).shape[0],), input_name=input_name)


def estimator_to_onnx(est: Any, path: str | os.PathLike[str], *, dtype: Any = None) -> None:
    """Write a fitted ``MLPClassifier``/``MLPRegressor`` as an ONNX file.

    Works for :class:`xpnet.sklearn.MLPClassifier`/``MLPRegressor`` and for
    scikit-learn's own MLPs (it reads the fitted ``coefs_``, ``intercepts_``,
    ``activation``, ``out_activation_``, ``classes_``, ``n_outputs_``). The
    graph, traced through the same layers as :func:`export_onnx`, has input
    ``"X"`` (``(N, n_features)``) and, for a classifier, the outputs
    ``"label"`` (``classes_``' values: int64 or strings; a 0/1 matrix for
    multilabel) and ``"probabilities"`` (``predict_proba``); for a regressor
    ``"variable"`` (``(N, n_outputs)``). Written atomically.

    Parameters
    ----------
    est : fitted MLP estimator
    path : str or os.PathLike
    dtype : {"float32", "float64"}, optional
        The graph's dtype; default: that of ``coefs_``.
    """
    _check_path(path)
    _write(estimator_onnx_model(est, dtype=dtype), path)
