"""skl2onnx registration of :class:`xpnet.sklearn.MLPClassifier` and ``MLPRegressor``.

The converter does not write ONNX operators by hand: it takes the graph
:func:`xpnet.onnx_graph.estimator_onnx_model` traces (the layers' own forward on
ndonnx arrays, labels mapped to ``classes_``), in the dtype of the input
skl2onnx gives it, renames every value with a prefix unique in the pipeline's
graph, and copies its nodes and initializers into skl2onnx's container
between the operator's input and outputs. So ``skl2onnx.to_onnx(pipeline)``
and ``estimator_to_onnx(est)`` are one export path.

Imported by :func:`xpnet.export.register_skl2onnx` only (it needs the
``[onnx]`` extra).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)

from .onnx_graph import estimator_onnx_model

__all__ = ["register"]

_INPUT_DTYPES = {FloatTensorType: "float32", DoubleTensorType: "float64"}


def _input_dtype(operator: Any) -> str:
    kind = type(operator.inputs[0].type)
    if kind not in _INPUT_DTYPES:
        raise TypeError(f"{operator.raw_operator!r} takes float or double input, got "
                        f"{operator.inputs[0].type!r}; cast the input first")
    return _INPUT_DTYPES[kind]


# --------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------

def _label_type(est: Any, batch: Any) -> Any:
    if est.out_activation_ == "logistic" and est.n_outputs_ > 1:  # multilabel: a 0/1 matrix
        return Int64TensorType([batch, est.n_outputs_])
    if np.asarray(est.classes_).dtype.kind in "UO":
        return StringTensorType([batch])
    return Int64TensorType([batch])


def _n_proba(est: Any) -> int:
    """Columns of ``predict_proba``: one per class, per label (multilabel), or 2 (binary)."""
    if est.out_activation_ == "softmax" or est.n_outputs_ > 1:
        return est.n_outputs_
    return 2 if len(est.classes_) == 2 else 1


def _shapes(operator: Any) -> None:
    """The output types: label and probabilities (classifier) or the predictions."""
    est = operator.raw_operator
    batch = operator.inputs[0].get_first_dimension()
    float_type = type(operator.inputs[0].type)
    if hasattr(est, "classes_"):
        operator.outputs[0].type = _label_type(est, batch)
        operator.outputs[1].type = float_type([batch, _n_proba(est)])
    else:
        operator.outputs[0].type = float_type([batch, est.n_outputs_])


# --------------------------------------------------------------------------
# Inlining the traced graph
# --------------------------------------------------------------------------

def _all_names(graph: Any, names: set) -> set:
    """Every value name defined or used in ``graph`` and its subgraphs."""
    for value in (*graph.input, *graph.output, *graph.initializer, *graph.value_info):
        names.add(value.name)
    for node in graph.node:
        names.update(n for n in (*node.input, *node.output) if n)
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _all_names(sub, names)
    return names


def _rename(graph: Any, mapping: dict) -> None:
    """Rename every value of ``graph`` and its subgraphs through ``mapping``, in place."""
    for value in (*graph.input, *graph.output, *graph.initializer, *graph.value_info):
        value.name = mapping[value.name]
    for node in graph.node:
        node.input[:] = [mapping[n] if n else n for n in node.input]
        node.output[:] = [mapping[n] if n else n for n in node.output]
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename(sub, mapping)


def _add_initializer(container: Any, tensor: Any) -> None:
    value = numpy_helper.to_array(tensor)
    if tensor.data_type == TensorProto.STRING:
        content = [v.decode() if isinstance(v, bytes) else str(v) for v in value.ravel()]
    else:
        content = numpy_helper.from_array(value)  # raw bytes, as add_initializer copies them
    container.add_initializer(tensor.name, tensor.data_type, list(value.shape), content)


def _add_graph(container: Any, graph: Any) -> None:
    for tensor in graph.initializer:
        _add_initializer(container, tensor)
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        container.add_node(node.op_type, list(node.input), list(node.output),
                           op_domain=node.domain, name=node.name or None, **attrs)


def _convert(scope: Any, operator: Any, container: Any) -> None:
    """Trace the estimator in the input's dtype and splice its graph into the container."""
    est = operator.raw_operator
    names = ("label", "probabilities") if hasattr(est, "classes_") else ("variable",)
    graph = estimator_onnx_model(est, dtype=_input_dtype(operator), output_names=names).graph
    prefix = scope.get_unique_variable_name("xpnet") + "_"
    _rename(graph, {n: prefix + n for n in _all_names(graph, set())})
    _add_graph(container, graph)
    container.add_node("Identity", [operator.inputs[0].full_name], [graph.input[0].name],
                       name=scope.get_unique_operator_name("xpnet_input"))
    for value, out in zip(graph.output, operator.outputs):
        container.add_node("Identity", [value.name], [out.full_name],
                           name=scope.get_unique_operator_name("xpnet_output"))


def register() -> None:
    """Register both estimators with skl2onnx (idempotent)."""
    from .sklearn import MLPClassifier, MLPRegressor

    # skl2onnx's classifier parser passes zipmap and nocl=False (labels are classes_'
    # values: the graph always maps them, so nocl=True is not offered).
    update_registered_converter(MLPClassifier, "XpnetMLPClassifier", _shapes, _convert,
                                options={"zipmap": [True, False, "columns"], "nocl": [False]})
    update_registered_converter(MLPRegressor, "XpnetMLPRegressor", _shapes, _convert)
