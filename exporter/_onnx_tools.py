"""Small ONNX helpers for the exporter: single-file saving, hashing, the label-bridge head graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.indexer.models import sha256_file as sha256_file  # re-exported for the exporter

OPSET = 18


def float_graph_bytes(
    nodes: list[Any],
    name: str,
    inputs: list[tuple[str, list[Any]]],
    outputs: list[tuple[str, list[Any]]],
    initializers: list[Any],
) -> bytes:
    """A hand-built float32 graph as checked, deterministic ONNX bytes (opset ``OPSET``, IR 8).

    ``inputs``/``outputs`` are ``(name, shape)`` pairs, e.g. ``[("features", ["batch", 1280])]``.
    """
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pixsearch-export"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def save_single_file(source: Path, target: Path) -> None:
    """Re-save an ONNX model with every weight inside the one ``.onnx`` file.

    The dynamo exporter and optimum may write weights to a side ``.data`` file; the bundle ships
    single files only. Producer fields are pinned and exporter metadata (stack traces with the
    exporting machine's file paths) is dropped, so the bytes depend on the graph alone.
    """
    import onnx

    model = onnx.load(str(source), load_external_data=True)
    onnx.external_data_helper.convert_model_from_external_data(model)
    model.producer_name = "pixsearch-export"
    model.producer_version = ""
    strip_metadata(model)
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    target.write_bytes(data)


def strip_metadata(model: object) -> object:
    """Drop doc strings and metadata properties from an ONNX model, its graph, nodes and values.

    These carry only provenance (the exporter's stack traces hold absolute source paths), so a
    model exported on another machine or folder differs in them alone; the graph, weights and
    outputs stay exactly the same.
    """
    model.doc_string = ""  # type: ignore[attr-defined]
    del model.metadata_props[:]  # type: ignore[attr-defined]
    graphs = [model.graph]  # type: ignore[attr-defined]
    while graphs:
        graph = graphs.pop()
        graph.doc_string = ""
        del graph.metadata_props[:]
        for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
            value.doc_string = ""
            del value.metadata_props[:]
        for node in graph.node:
            node.doc_string = ""
            del node.metadata_props[:]
            graphs.extend(attribute.g for attribute in node.attribute if attribute.HasField("g"))
            for attribute in node.attribute:
                graphs.extend(attribute.graphs)
    return model


def label_bridge_head(
    fc_weight: np.ndarray, fc_bias: np.ndarray, class_embeddings: np.ndarray, top_k: int
) -> bytes:
    """The zero-shot label-bridge head as serialised ONNX bytes.

    ``features [N,1280]`` -> classifier logits -> softmax -> keep the ``top_k`` probabilities,
    renormalised to sum 1 -> weighted sum of the class-name text embeddings -> L2 -> ``vectors
    [N,d]``. ``fc_weight`` is ``[classes, features]`` as in ``torch.nn.Linear``.
    """
    import onnx
    from onnx import helper, numpy_helper

    classes, feature_dim = fc_weight.shape
    dim = class_embeddings.shape[1]
    if class_embeddings.shape[0] != classes or fc_bias.shape != (classes,):
        raise ValueError("classifier and class embeddings disagree on the number of classes")
    if not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be in 1..{classes}, got {top_k}")

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.ascontiguousarray(value), name)

    initializers = [
        const("fc_weight_t", fc_weight.T.astype(np.float32)),
        const("fc_bias", fc_bias.astype(np.float32)),
        const("class_embeddings", class_embeddings.astype(np.float32)),
        const("k", np.array([top_k], dtype=np.int64)),
        const("axis_1", np.array([1], dtype=np.int64)),
        const("axis_last", np.array([-1], dtype=np.int64)),
        const("eps", np.array(1e-12, dtype=np.float32)),
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "fc_weight_t"], ["fc_mm"]),
        helper.make_node("Add", ["fc_mm", "fc_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("TopK", ["probs", "k"], ["top_p", "top_i"], axis=-1, largest=1, sorted=1),
        helper.make_node("ReduceSum", ["top_p", "axis_last"], ["top_sum"], keepdims=1),
        helper.make_node("Div", ["top_p", "top_sum"], ["weights"]),
        helper.make_node("Gather", ["class_embeddings", "top_i"], ["picked"], axis=0),
        helper.make_node("Unsqueeze", ["weights", "axis_last"], ["weights_3d"]),
        helper.make_node("Mul", ["picked", "weights_3d"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis_1"], ["mixed"], keepdims=0),
        helper.make_node("ReduceL2", ["mixed", "axis_last"], ["norm"], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["safe_norm"]),
        helper.make_node("Div", ["mixed", "safe_norm"], ["vectors"]),
    ]
    return float_graph_bytes(
        nodes,
        "label_bridge_head",
        [("features", ["batch", feature_dim])],
        [("vectors", ["batch", dim])],
        initializers,
    )


def label_bridge_reference(
    features: np.ndarray,
    fc_weight: np.ndarray,
    fc_bias: np.ndarray,
    class_embeddings: np.ndarray,
    top_k: int,
) -> np.ndarray:
    """The same head in float64 numpy (the parity reference, and the evaluation's sweep)."""
    logits = features.astype(np.float64) @ fc_weight.T.astype(np.float64) + fc_bias
    return bridge_from_logits(logits, class_embeddings, top_k)


def bridge_from_logits(logits: np.ndarray, class_embeddings: np.ndarray, top_k: int) -> np.ndarray:
    """Label-bridge vectors from classifier logits (see :func:`label_bridge_head`)."""
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    if top_k < probs.shape[1]:
        cut = np.partition(probs, -top_k, axis=1)[:, -top_k][:, None]
        probs = np.where(probs >= cut, probs, 0.0)
    probs /= probs.sum(axis=1, keepdims=True)
    mixed = probs @ class_embeddings.astype(np.float64)
    return (mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)).astype(
        np.float32
    )


def int8_matmuls(model: Any, block_size: int, accuracy_level: int) -> Any:
    """``model`` (an ``onnx.ModelProto``) with its MatMul weights in symmetric 8-bit blocks of
    ``block_size`` (``MatMulNBits``; ``accuracy_level`` 4 computes in int8); the new model."""
    import logging

    # matmul_nbits_quantizer calls logging.basicConfig(level=INFO) when imported, which would
    # make every library log each node; put the root logger back as it was.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root.setLevel(level)
    for handler in root.handlers[len(handlers) :]:
        root.removeHandler(handler)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(
        model, bits=8, block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level
    )
    quantizer.process()
    return quantizer.model.model
