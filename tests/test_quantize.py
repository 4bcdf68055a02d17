"""Static int8 quantization of the image encoder (exporter/quantize.py) on the real model and
real photos: what is kept in fp32, and that the quantized encoder stays close to fp32."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_demo_photos

pytest.importorskip("onnx", reason='needs onnx (the [train] extra): pip install "pixsearch[train]"')

from pixsearch.exporter import quantize
from pixsearch.indexer.models import default_bundle_dir

pytestmark = pytest.mark.slow
ENCODER = default_bundle_dir() / "image_encoder.onnx"


def test_fp32_nodes_keep_the_input_normalisation_and_the_chosen_convolutions() -> None:
    import onnx

    graph = onnx.load(str(ENCODER)).graph
    kinds = {node.name: node.op_type for node in graph.node}
    convs = [node.name for node in graph.node if node.op_type == "Conv"]
    kept = quantize.fp32_nodes(ENCODER, first=False, last=True, first_convs=7)
    assert Counter(kinds[name] for name in kept) == Counter(
        {"Conv": 7, "Gemm": 1, "Transpose": 1, "Cast": 1, "Sub": 1, "Div": 1}
    )
    assert set(convs[:7]) <= set(kept) and convs[7] not in kept
    depthwise = quantize.fp32_nodes(ENCODER, first=False, last=False, depthwise=True)
    assert sum(kinds[name] == "Conv" for name in depthwise) == 16


def test_quantized_encoder_is_int8_and_close_to_fp32(tmp_path: Path) -> None:
    """Calibrated on 6 real photos, checked on 2 others: QDQ nodes around the quantized
    convolutions, none on the first 7, and features close to fp32 (the shipping bar, cosine
    >= 0.99 on held-out photos, is measured on 200 Flickr photos: docs/performance.md)."""
    import onnx

    photos = sorted(copy_demo_photos(tmp_path / "photos").iterdir())
    pixels = quantize.photo_pixels(photos)
    target = quantize.quantize_image_encoder(
        ENCODER, tmp_path / "int8.onnx", pixels[:6], keep_first=True, first_convs=7
    )
    graph = onnx.load(str(target)).graph
    ops = Counter(node.op_type for node in graph.node)
    assert ops["QuantizeLinear"] > 40 and ops["DequantizeLinear"] > 80
    first_conv = next(node for node in graph.node if node.op_type == "Conv")
    assert not any("DequantizeLinear" in str(i) for i in first_conv.input)
    assert target.stat().st_size < 0.6 * ENCODER.stat().st_size  # int8 weights
    held_out = pixels[6:8]
    cos = quantize.cosines(
        quantize.features(ENCODER, held_out), quantize.features(target, held_out)
    )
    assert cos.shape == (2,) and np.all(cos > 0.95), cos
