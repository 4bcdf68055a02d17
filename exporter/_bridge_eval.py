"""Measure the label bridge and the quantized variants: text -> image Recall@1/5/10.

Each photo's five Flickr8k captions are queries; a query hits when its own photo ranks in the
top K among the set's photos (1000 photos, 5000 queries). Two photo sets:

- ``practicum``: the 1000 ``practicum/train_images`` (the validation split that picks the prompt
  and ``top_k``);
- ``flickr``: the first 1000 ``flickr8k/images`` by name, disjoint from it (a check that the
  choice was not fitted to one set).

Commands (figures in docs/bundle.md)::

    python -m pixsearch.exporter._bridge_eval sweep --set practicum
    python -m pixsearch.exporter._bridge_eval sweep --set flickr
    python -m pixsearch.exporter._bridge_eval variants --set practicum   # needs [train]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from pixsearch.exporter._onnx_tools import bridge_from_logits
from pixsearch.indexer.models import ImageEncoder, ModelBundle, OnnxModel, TextEncoder
from pixsearch.indexer.preprocess import load_photo

PROMPTS = ["{name}", "a photo of a {name}", "a photo of a {name}.", "a picture of a {name}"]
TOP_KS = [1, 3, 5, 10, 20, 50, 1000]


def data_dir() -> Path:
    """$PIXSEARCH_DATA, else ``shared/data`` beside the checkout."""
    env = os.environ.get("PIXSEARCH_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def photo_set(name: str, data: Path, count: int = 1000) -> tuple[list[Path], list[list[str]]]:
    """Photo paths and their captions for the ``practicum`` or ``flickr`` set."""
    captions: dict[str, list[str]] = defaultdict(list)
    with open(data / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            captions[row["image"]].append(row["caption"])
    if name == "practicum":
        paths = sorted((data / "practicum" / "train_images").glob("*.jpg"))
    else:
        practicum = {p.name for p in (data / "practicum" / "train_images").glob("*.jpg")}
        paths = [
            p
            for p in sorted((data / "flickr8k" / "images").glob("*.jpg"))
            if p.name not in practicum and len(captions[p.name]) == 5
        ][:count]
    return paths, [captions[p.name] for p in paths]


def recall(image_vectors: np.ndarray, query_vectors: np.ndarray, owners: np.ndarray) -> dict:
    """R@1/5/10 (percent) of queries whose own photo ranks in the top K.

    Ties (photos with identical vectors, common when ``top_k`` is 1) are broken at random, in
    expectation: a photo tied with ``e`` others behind ``g`` better ones is in the top K with
    probability ``clip((K - g) / (e + 1), 0, 1)``.
    """
    scores = query_vectors @ image_vectors.T
    own = scores[np.arange(len(owners)), owners][:, None]
    greater = (scores > own).sum(axis=1)
    tied = (scores == own).sum(axis=1)  # includes the photo itself
    return {
        f"R@{k}": round(100.0 * float(np.mean(np.clip((k - greater) / tied, 0.0, 1.0))), 1)
        for k in (1, 5, 10)
    }


def load_set(name: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(uint8 pixels [N,224,224,3], captions, caption -> photo index) of a photo set."""
    paths, captions = photo_set(name, data_dir())
    pixels = np.stack([load_photo(p).pixels for p in paths])
    texts = [c for group in captions for c in group]
    owners = np.repeat(np.arange(len(paths)), [len(g) for g in captions])
    print(f"{name}: {len(paths)} photos, {len(texts)} captions")
    return pixels, texts, owners


def sweep(set_name: str) -> None:
    """Prompt x top_k table of R@1/5/10 on one set, then the shipped head's figures."""
    bundle = ModelBundle.load()
    pixels, texts, owners = load_set(set_name)
    features, logits = bundle.image_encoder.encode(pixels)
    queries = bundle.text_encoder.encode(texts)
    names = bundle.class_names
    print(f"{'prompt':28s} " + " ".join(f"k={k:<15}" for k in TOP_KS))
    for prompt in PROMPTS:
        classes = bundle.text_encoder.encode([prompt.format(name=n) for n in names])
        cells = []
        for k in TOP_KS:
            r = recall(bridge_from_logits(logits, classes, k), queries, owners)
            cells.append(f"{r['R@1']:4.1f}/{r['R@5']:4.1f}/{r['R@10']:4.1f}")
        print(f"{prompt!r:28s} " + "  ".join(cells), flush=True)
    shipped = recall(
        bundle.space.image_vectors(features), bundle.space.text_vectors(queries), owners
    )
    params = bundle.manifest["space"]["params"]
    print(f"shipped head ({params['prompt']!r}, top_k={params['top_k']}): {shipped}")


def variants(set_name: str) -> None:
    """Cosine to fp32 and R@1/5/10 for fp32 / int8 / fp16 variants of each encoder."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from pixsearch.exporter import export_bundle as eb
    from pixsearch.exporter._onnx_tools import save_single_file

    bundle = ModelBundle.load()
    params = bundle.manifest["space"]["params"]
    tokenizer = bundle.path / "tokenizer.json"
    with tempfile.TemporaryDirectory(prefix="pixsearch-variants-") as tmp:
        work = Path(tmp)
        text_fp32 = eb._export_text(work, print)
        image_fp32 = bundle.path / "image_encoder.onnx"
        files = {
            "text fp32": text_fp32,
            "text int8 weight-only (shipped)": work / "t_wo.onnx",
            "text int8 dynamic per-tensor": work / "t_dt.onnx",
            "text int8 dynamic per-channel": work / "t_dc.onnx",
            "image fp32 (shipped)": image_fp32,
            "image int8 dynamic per-channel": work / "i_dc.onnx",
            "image fp16 (io float32/uint8)": work / "i_16.onnx",
        }
        eb.quantize_int8(text_fp32, files["text int8 weight-only (shipped)"])
        quantize_dynamic(
            str(text_fp32), str(files["text int8 dynamic per-tensor"]), weight_type=QuantType.QInt8
        )
        quantize_dynamic(
            str(text_fp32),
            str(files["text int8 dynamic per-channel"]),
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        quantize_dynamic(
            str(image_fp32),
            str(files["image int8 dynamic per-channel"]),
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        half = convert_float_to_float16(onnx.load(str(image_fp32)), keep_io_types=True)
        onnx.save(half, str(work / "i_16_raw.onnx"))
        save_single_file(work / "i_16_raw.onnx", files["image fp16 (io float32/uint8)"])

        def text(path: Path) -> TextEncoder:
            return TextEncoder(OnnxModel(path), tokenizer, None, 256)

        pixels, texts, owners = load_set(set_name)
        base_f, base_l = ImageEncoder(OnnxModel(image_fp32)).encode(pixels)
        base_text = text(text_fp32)
        base_q = base_text.encode(texts)
        prompts = [params["prompt"].format(name=n) for n in bundle.class_names]
        base_classes = base_text.encode(prompts)
        k = params["top_k"]
        for label, path in files.items():
            f, lg, q, classes = base_f, base_l, base_q, base_classes
            start = time.perf_counter()
            if label.startswith("text"):
                encoder = text(path)
                q, classes = encoder.encode(texts), encoder.encode(prompts)
                a, b = q, base_q
            else:
                f, lg = ImageEncoder(OnnxModel(path)).encode(pixels)
                a = f / np.linalg.norm(f, axis=1, keepdims=True)
                b = base_f / np.linalg.norm(base_f, axis=1, keepdims=True)
            seconds = time.perf_counter() - start
            cos = np.sum(a * b, axis=1)
            r = recall(bridge_from_logits(lg, classes, k), q, owners)
            size = path.stat().st_size / 1e6
            print(
                f"{label:34s} {size:5.1f} MB  cos to fp32 min {cos.min():.4f} mean "
                f"{cos.mean():.5f}  {r}  (encode {seconds:.0f} s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["sweep", "variants"])
    parser.add_argument("--set", default="practicum", choices=["practicum", "flickr"])
    args = parser.parse_args()
    (sweep if args.command == "sweep" else variants)(args.set)


if __name__ == "__main__":
    main()
