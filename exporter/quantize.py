"""Static int8 quantization of the image encoder, and the checks that decide whether it ships.

QDQ format, per-channel symmetric int8 weights, uint8 activations whose ranges are calibrated
on our own photos (``onnxruntime.quantization.quantize_static``); nodes can be kept in fp32
(the first convolution, the classifier). The bars for shipping (issue 18): features keep cosine
>= 0.99 to fp32 on held-out photos (mean and worst), validation R@10 drops <= 0.5 points, and
the encoder is >= 1.6x faster. Run from the command line (writes nothing into the bundle)::

    python -m pixsearch.exporter.quantize --data ../shared/data --out /tmp/q \\
        [--calibration 256] [--held-out 200] [--method minmax|percentile|entropy] [--recall]

Only the exporter imports this module (``onnx`` and onnxruntime's quantization tools).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.indexer.models import default_bundle_dir

METHODS = ("minmax", "percentile", "entropy")


def photo_pixels(paths: Sequence[Path]) -> np.ndarray:
    """Encoder-ready ``uint8 [N,224,224,3]`` pixels of ``paths`` (the runtime's decoding)."""
    from pixsearch.indexer.preprocess import load_photo

    return np.stack([load_photo(path).pixels for path in paths])


def _batches(pixels: np.ndarray, size: int) -> Iterator[dict[str, np.ndarray]]:
    for start in range(0, len(pixels), size):
        yield {"pixels": pixels[start : start + size]}


def fp32_nodes(
    model_path: Path,
    *,
    first: bool,
    last: bool,
    last_convs: int = 0,
    first_convs: int = 0,
    depthwise: bool = False,
) -> list[str]:
    """Names of the nodes to keep in fp32: the input normalisation always (uint8 in, it has
    nothing to gain), the first convolution (``first``), the classifier (``last``), the
    ``first_convs`` first and ``last_convs`` last convolutions, the depthwise ones."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    keep = [n.name for n in graph.node if n.op_type in ("Cast", "Sub", "Div", "Transpose")]
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    if first and convs:
        keep.append(convs[0])
    if last:
        keep += [n.name for n in graph.node if n.op_type == "Gemm"]
    if last_convs:
        keep += convs[-last_convs:]
    keep += convs[:first_convs]
    if depthwise:
        keep += [
            n.name
            for n in graph.node
            if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
        ]
    return sorted(set(keep))


def quantize_image_encoder(
    source: Path,
    target: Path,
    calibration: np.ndarray,
    *,
    method: str = "minmax",
    keep_first: bool = True,
    keep_last: bool = True,
    last_convs: int = 0,
    first_convs: int = 0,
    depthwise: bool = False,
    exclude: Sequence[str] = (),
) -> Path:
    """Write the statically quantized (QDQ) encoder to ``target``; returns it.

    ``calibration`` is ``uint8 [N,224,224,3]`` pixels of photos like the ones indexed.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = _batches(calibration, 16)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prepared = target.with_suffix(".prepared.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[method]
    extra: dict[str, Any] = {"WeightSymmetric": True, "ActivationSymmetric": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(prepared),
        str(target),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=calibrate,
        nodes_to_exclude=[
            *fp32_nodes(
                prepared,
                first=keep_first,
                last=keep_last,
                last_convs=last_convs,
                first_convs=first_convs,
                depthwise=depthwise,
            ),
            *exclude,
        ],
        extra_options=extra,
    )
    prepared.unlink(missing_ok=True)
    return target


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def features(path: Path, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    """Pooled features ``float32 [N,1280]`` of one encoder file."""
    session = _session(path)
    return np.concatenate(
        [session.run(["features"], feeds)[0] for feeds in _batches(pixels, batch)]
    )


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity.

    >>> cosines(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])).round(3).tolist()
    [0.707]
    """
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def speed(paths: Sequence[Path], pixels: np.ndarray, rounds: int = 3, batch: int = 32) -> dict:
    """Photos/s of each encoder file, rounds alternating between them (same load for both)."""
    sessions = {str(p): _session(p) for p in paths}
    for session in sessions.values():
        session.run(["features"], {"pixels": pixels[:batch]})
    best = dict.fromkeys(sessions, 0.0)
    for _ in range(rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            for feeds in _batches(pixels, batch):
                session.run(["features"], feeds)
            best[name] = max(best[name], len(pixels) / (time.perf_counter() - started))
    return {name: round(value, 1) for name, value in best.items()}


def split(data_dir: Path, n_calibration: int, n_held_out: int) -> tuple[list, list, list]:
    """``(calibration, held_out, validation)`` photo paths: calibration and held-out photos
    come from the joint space's *training* photos, validation is its 900-photo split."""
    from pixsearch.exporter.joint_space import read_manifest, split_photos

    photos, duplicate_of, damaged = read_manifest(data_dir)
    bad = set(damaged) | set(duplicate_of)
    kept = [path for name, path in photos if name not in bad]
    train, val = split_photos(len(kept))
    rng = np.random.default_rng(0)
    picked = rng.choice(train, n_calibration + n_held_out, replace=False)
    calibration = [kept[i] for i in picked[:n_calibration]]
    held_out = [kept[i] for i in picked[n_calibration:]]
    return calibration, held_out, [kept[i] for i in val]


def recall(data_dir: Path, fp32: Path, int8: Path, val_paths: Sequence[Path]) -> dict:
    """Text -> image R@1/5/10 over the validation photos with the shipped heads, on features
    of each encoder (the joint space's metric, docs/joint_space.md); and how the bundle's
    child-photo classifier (trained on fp32 features) judges the same photos from each."""
    from pixsearch.exporter.joint_space import recall_table, retrieval_ranks
    from pixsearch.exporter.workflow import children_predicate
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    names = {Path(p).name: i for i, p in enumerate(val_paths)}
    captions, owners = [], []
    predicate = children_predicate()
    import csv

    with open(data_dir / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["image"] in names and not predicate(row["caption"]):
                captions.append(row["caption"])
                owners.append(names[row["image"]])
    text = bundle.space.text_vectors(bundle.text_encoder.encode(captions))
    pixels = photo_pixels(val_paths)
    out: dict[str, Any] = {}
    child = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        found = features(path, pixels)
        vectors = bundle.space.image_vectors(found)
        out[name] = recall_table(retrieval_ranks(vectors, text, np.asarray(owners)))
        if bundle.child_classifier is not None:
            child[name] = (
                bundle.child_classifier.scores(found),
                bundle.child_classifier.restricted(found),
            )
    out["queries"] = len(captions)
    if child:
        out["child_flags_fp32"] = int(child["fp32"][1].sum())
        out["child_flags_int8"] = int(child["int8"][1].sum())
        out["child_flags_differ"] = int((child["fp32"][1] != child["int8"][1]).sum())
        out["child_flags_lost_int8"] = int((child["fp32"][1] & ~child["int8"][1]).sum())
        out["child_score_max_diff"] = round(
            float(np.abs(child["fp32"][0] - child["int8"][0]).max()), 4
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calibration", type=int, default=256)
    parser.add_argument("--held-out", type=int, default=200)
    parser.add_argument("--method", choices=METHODS, default="minmax")
    parser.add_argument("--quantize-first", action="store_true")
    parser.add_argument("--quantize-last", action="store_true")
    parser.add_argument("--fp32-last-convs", type=int, default=0)
    parser.add_argument("--fp32-first-convs", type=int, default=0)
    parser.add_argument("--fp32-depthwise", action="store_true")
    parser.add_argument("--recall", action="store_true", help="also validation R@10 (900 photos)")
    args = parser.parse_args(argv)
    source = default_bundle_dir() / "image_encoder.onnx"
    calibration, held_out, val = split(args.data, args.calibration, args.held_out)
    started = time.perf_counter()
    target = quantize_image_encoder(
        source,
        args.out / f"image_encoder.int8.{args.method}.{args.fp32_first_convs}"
        f".{args.fp32_last_convs}.{int(args.fp32_depthwise)}.onnx",
        photo_pixels(calibration),
        method=args.method,
        keep_first=not args.quantize_first,
        keep_last=not args.quantize_last,
        last_convs=args.fp32_last_convs,
        first_convs=args.fp32_first_convs,
        depthwise=args.fp32_depthwise,
    )
    quantized_s = time.perf_counter() - started
    pixels = photo_pixels(held_out)
    cos = cosines(features(source, pixels), features(target, pixels))
    report: dict[str, Any] = {
        "method": args.method,
        "fp32_last_convs": args.fp32_last_convs,
        "fp32_first_convs": args.fp32_first_convs,
        "fp32_depthwise": args.fp32_depthwise,
        "calibration_photos": len(calibration),
        "held_out_photos": len(held_out),
        "quantize_s": round(quantized_s, 1),
        "cosine_mean": round(float(cos.mean()), 4),
        "cosine_min": round(float(cos.min()), 4),
        "bytes": target.stat().st_size,
    }
    rates = speed([source, target], pixels[:128])
    report["photos_per_s_fp32"], report["photos_per_s_int8"] = (
        rates[str(source)],
        rates[str(target)],
    )
    report["speedup"] = round(rates[str(target)] / rates[str(source)], 2)
    if args.recall:
        report["recall"] = recall(args.data, source, target, val)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
