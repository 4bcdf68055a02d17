"""Exporting the joint space: the image and text heads as hand-written ONNX, parity-checked.

The shipped image vector is ``[sqrt(a) * joint_image, sqrt(1 - a) * bridge_image]`` and the text
vector ``[sqrt(a) * joint_text, sqrt(1 - a) * text_embedding]`` (``a`` = ``JointConfig.mix``);
both have unit length. The towers' input standardisation is folded into their first layers.

>>> SPACE_NAME
'joint-v1'
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixsearch.exporter.onnx_graph import GraphBuilder, run_onnx
from pixsearch.exporter.parity import parity

if TYPE_CHECKING:
    from pixsearch.exporter.space_train import JointModel


SPACE_NAME = "joint-v1"


def _folded_first_linear(
    sequential: Any, scale: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the first Linear with ``(x - shift) * scale`` folded in (per input column)."""
    first = next(layer for layer in sequential if hasattr(layer, "weight"))
    w = first.weight.detach().numpy().astype(np.float64)
    b = first.bias.detach().numpy().astype(np.float64)
    w_new = w * scale[None, :]
    b_new = b - w_new @ shift
    return w_new.astype(np.float32), b_new.astype(np.float32)


def _tower_after_first(
    x: str, g: GraphBuilder, sequential: Any, w: np.ndarray, b: np.ndarray
) -> str:
    import torch

    layers = [layer for layer in sequential if not isinstance(layer, torch.nn.Dropout)]
    x = g.linear(x, w, b)
    return g.tower(x, torch.nn.Sequential(*layers[1:]))


def image_head_bytes(model: JointModel, *, half: bool = False) -> bytes:
    """``features [N,1280]`` -> ``vectors [N, dim + 384]`` (the mixed, unit-length vector)."""
    cfg, net = model.config, model.net
    g = GraphBuilder(half)
    bridge_vec = g.bridge("features", model.bridge)
    mu = net.img_mu.numpy().astype(np.float64)
    sd = net.img_sd.numpy().astype(np.float64)
    n_feat = len(mu)
    if cfg.bridge_input:
        d_b = model.bridge.class_embeddings.shape[1]
        scale = np.concatenate([1 / sd, np.full(d_b, math.sqrt(d_b))])
        shift = np.concatenate([mu, np.zeros(d_b)])
        x = g.node("Concat", ["features", bridge_vec], axis=1)
    else:
        scale, shift, x = 1 / sd, mu, "features"
    w, b = _folded_first_linear(net.image_tower, scale, shift)
    joint = g.l2(_tower_after_first(x, g, net.image_tower, w, b))
    a = cfg.mix
    left = g.node("Mul", [joint, g.const(np.array(math.sqrt(a), np.float32))])
    right = g.node("Mul", [bridge_vec, g.const(np.array(math.sqrt(1 - a), np.float32))])
    g.node("Concat", [left, right], ["vectors"], axis=1)
    dim = cfg.dim + model.bridge.class_embeddings.shape[1]
    return g.model(
        "joint_image_head", [("features", ["batch", n_feat])], [("vectors", ["batch", dim])]
    )


def text_head_bytes(model: JointModel, *, half: bool = False) -> bytes:
    """``text_embeddings [N,384]`` -> ``vectors [N, dim + 384]``."""
    cfg, net = model.config, model.net
    g = GraphBuilder(half)
    d_t = model.bridge.class_embeddings.shape[1]
    unit = g.l2("text_embeddings")
    w, b = _folded_first_linear(net.text_tower, np.full(d_t, math.sqrt(d_t)), np.zeros(d_t))
    joint = g.l2(_tower_after_first("text_embeddings", g, net.text_tower, w, b))
    a = cfg.mix
    left = g.node("Mul", [joint, g.const(np.array(math.sqrt(a), np.float32))])
    right = g.node("Mul", [unit, g.const(np.array(math.sqrt(1 - a), np.float32))])
    g.node("Concat", [left, right], ["vectors"], axis=1)
    return g.model(
        "joint_text_head",
        [("text_embeddings", ["batch", d_t])],
        [("vectors", ["batch", cfg.dim + d_t])],
    )


def export_heads(
    model: JointModel,
    out_dir: Path,
    check_features: np.ndarray,
    check_texts: np.ndarray,
    *,
    half: bool = False,
) -> dict[str, dict[str, float]]:
    """Write ``image_head.onnx`` and ``text_head.onnx``; parity-checked against PyTorch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tol = {"max_abs": 2e-3, "min_cos": 0.9999} if half else {"max_abs": 1e-4, "min_cos": 0.99999}
    image = image_head_bytes(model, half=half)
    text = text_head_bytes(model, half=half)
    report = {
        "image_head": parity(
            model.image_vectors(check_features),
            run_onnx(image, {"features": check_features.astype(np.float32)})[0],
            "image_head",
            **tol,
        ),
        "text_head": parity(
            model.text_vectors(check_texts),
            run_onnx(text, {"text_embeddings": check_texts.astype(np.float32)})[0],
            "text_head",
            **tol,
        ),
    }
    (out_dir / "image_head.onnx").write_bytes(image)
    (out_dir / "text_head.onnx").write_bytes(text)
    return report
