"""Hand-written ONNX graphs for the trained heads, and running serialised models on the CPU.

Shared by the joint space (``space_export``), the reranker and the calibrator (``reranker``):
both sides import it, neither imports the other for it.

>>> import numpy as np
>>> g = GraphBuilder()
>>> _ = g.l2("x", "y")
>>> data = g.model("unit", [("x", ["batch", 2])], [("y", ["batch", 2])])
>>> run_onnx(data, {"x": np.array([[3.0, 4.0]], np.float32)})[0].astype(float).round(4).tolist()
[[0.6, 0.8]]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from pixsearch.exporter._onnx_tools import float_graph_bytes

if TYPE_CHECKING:
    from pixsearch.exporter.space_data import Bridge


class GraphBuilder:
    """A tiny helper that writes ONNX graphs by hand (MatMul/Add/Erf GELU/L2), opset 18.

    Hand-written graphs keep the heads small, free of exporter quirks and byte-reproducible.
    ``half=True`` stores weight matrices as float16 (cast to float32 inside the graph).
    """

    def __init__(self, half: bool = False) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.half = half
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, value: np.ndarray, name: str | None = None, *, weight: bool = False) -> str:
        from onnx import numpy_helper

        name = name or self.name("c")
        value = np.ascontiguousarray(value)
        if weight and self.half and value.dtype == np.float32 and value.ndim == 2:
            stored = name + "_f16"
            self.initializers.append(numpy_helper.from_array(value.astype(np.float16), stored))
            self.node("Cast", [stored], [name], to=1)
            return name
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(
        self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any
    ) -> str:
        from onnx import helper

        outputs = outputs or [self.name(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """``x @ weight.T + bias`` (weight as in ``torch.nn.Linear``: ``[out, in]``)."""
        w = self.const(weight.T.astype(np.float32), weight=True)
        return self.node("Add", [self.node("MatMul", [x, w]), self.const(bias.astype(np.float32))])

    def gelu(self, x: str) -> str:
        """Exact GELU: ``0.5 x (1 + erf(x / sqrt 2))``."""
        scaled = self.node("Mul", [x, self.const(np.array(1 / math.sqrt(2), np.float32))])
        erf = self.node("Erf", [scaled])
        one = self.node("Add", [erf, self.const(np.array(1.0, np.float32))])
        half = self.node("Mul", [x, self.const(np.array(0.5, np.float32))])
        return self.node("Mul", [half, one])

    def l2(self, x: str, output: str | None = None) -> str:
        axis = self.const(np.array([-1], np.int64))
        norm = self.node("ReduceL2", [x, axis], keepdims=1)
        safe = self.node("Max", [norm, self.const(np.array(1e-12, np.float32))])
        return self.node("Div", [x, safe], [output] if output else None)

    def bridge(self, features: str, bridge: Bridge) -> str:
        """The label bridge (same initializer names as the zero-shot head)."""
        w = self.const(bridge.fc_weight_t, "fc_weight_t")
        logits = self.node(
            "Add", [self.node("MatMul", [features, w]), self.const(bridge.fc_bias, "fc_bias")]
        )
        probs = self.node("Softmax", [logits], axis=-1)
        k = self.const(np.array([bridge.top_k], np.int64), "k")
        top_p, top_i = self.name("top_p"), self.name("top_i")
        self.node("TopK", [probs, k], [top_p, top_i], axis=-1, largest=1, sorted=1)
        last = self.const(np.array([-1], np.int64))
        total = self.node("ReduceSum", [top_p, last], keepdims=1)
        weights = self.node("Div", [top_p, total])
        picked = self.node(
            "Gather", [self.const(bridge.class_embeddings, "class_embeddings"), top_i], axis=0
        )
        weighted = self.node("Mul", [picked, self.node("Unsqueeze", [weights, last])])
        mixed = self.node("ReduceSum", [weighted, self.const(np.array([1], np.int64))], keepdims=0)
        return self.l2(mixed)

    def tower(self, x: str, sequential: Any) -> str:
        """A ``torch.nn.Sequential`` of Dropout / Linear / GELU layers (inference mode)."""
        import torch

        for layer in sequential:
            if isinstance(layer, torch.nn.Linear):
                x = self.linear(x, layer.weight.detach().numpy(), layer.bias.detach().numpy())
            elif isinstance(layer, torch.nn.GELU):
                x = self.gelu(x)
            elif not isinstance(layer, torch.nn.Dropout):
                raise TypeError(f"cannot export layer {layer!r}")
        return x

    def model(
        self, name: str, inputs: list[tuple[str, list[Any]]], outputs: list[tuple[str, list[Any]]]
    ) -> bytes:
        return float_graph_bytes(self.nodes, name, inputs, outputs, self.initializers)


def run_onnx(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run serialised ONNX ``data`` on ``feeds`` with onnxruntime on the CPU; all outputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
