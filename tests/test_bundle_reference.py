"""Each model of the committed bundle against a reference that does not come from the bundle.

The golden outputs (``tests/golden``) were made by the runtime they check, so they catch
change, not error. Here each model meets something independent: the PyTorch model it was
exported from (the encoders, under the ``train`` extra), or what its manifest section says it
computes, re-derived in numpy from the documented formula (the heads, the calibrator, the
child classifier).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from test_bundle import golden

from pixsearch.indexer.models import ModelBundle

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "indexer" / "bundle"


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.load(BUNDLE_DIR)


@pytest.fixture(scope="module")
def features(bundle: ModelBundle) -> np.ndarray:
    """Real encoder features: the golden images and the demo-like scenes of the export."""
    rng = np.random.default_rng(7)
    pixels = np.concatenate(
        [golden.golden_pixels(), rng.integers(0, 256, (6, 224, 224, 3), dtype=np.uint8)]
    )
    return bundle.image_encoder.encode(pixels)[0]


def _initializers(path: Path) -> dict[str, np.ndarray]:
    onnx = pytest.importorskip("onnx", reason="reading initializers needs onnx (train extra)")
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


_CONV_BN = {"_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2"}


def _folded(conv: object, bn: object) -> tuple[np.ndarray, np.ndarray]:
    """A convolution followed by an eval-mode batch norm, as one convolution's weight and bias."""
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
    weight = conv.weight.detach().numpy() * scale[:, None, None, None]
    return weight, bn.bias.detach().numpy() - bn.running_mean.detach().numpy() * scale


def _conv_pairs(net: object) -> dict[str, tuple[object, object]]:
    """ONNX initializer name -> (conv, batch norm) of EfficientNet-Lite0, stem to head."""
    pairs = {"net._conv_stem.weight": (net._conv_stem, net._bn0)}
    for index, block in enumerate(net._blocks):
        for conv, bn in _CONV_BN.items():
            if hasattr(block, conv):
                pairs[f"net._blocks.{index}.{conv}.weight"] = (
                    getattr(block, conv),
                    getattr(block, bn),
                )
    pairs["net._conv_head.weight"] = (net._conv_head, net._bn1)
    return pairs


# -- encoders: the PyTorch models they were exported from -----------------------------------
@pytest.mark.train
def test_image_encoder_is_efficientnet_lite0_with_imagenet_or_fine_tuned_weights(
    bundle: ModelBundle,
) -> None:
    """The ONNX encoder computes PyTorch's EfficientNet-Lite0 with the weights it holds; those
    are ImageNet's, except the blocks that ``train-tower`` fine-tuned (manifest) and only them.

    The reference network is the package's architecture with every batch norm folded by hand
    into the convolution before it (the exporter folds them too), loaded from the ONNX file.
    """
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs the [train] extra")
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [train] extra")
    from pixsearch.exporter import _sources as sources

    manifest = bundle.manifest["models"]["image_encoder"]
    tuned_from = manifest.get("fine_tuned", {}).get("config", {}).get("train_from", 99)
    stored = _initializers(BUNDLE_DIR / "image_encoder.onnx")
    imagenet, net = sources.load_image_model(), sources.load_image_model()
    changed = set()
    original = _conv_pairs(imagenet)
    with torch.no_grad():
        for name, (conv, bn) in _conv_pairs(net).items():
            weight, bias = _folded(*original[name])
            if not (
                np.allclose(stored[name], weight, atol=1e-6)
                and np.allclose(stored[f"{name}_bias"], bias, atol=1e-6)
            ):
                changed.add(name)
            conv.weight.copy_(torch.from_numpy(stored[name].copy()))
            bn.weight.fill_(1.0), bn.running_mean.zero_(), bn.running_var.fill_(1.0 - bn.eps)
            bn.bias.copy_(torch.from_numpy(stored[f"{name}_bias"].copy()))
    block = [int(n.split(".")[2]) for n in changed if "_blocks." in n]
    assert all(b >= tuned_from for b in block), f"blocks before {tuned_from} changed: {block}"
    assert ("net._conv_head.weight" in changed) == (tuned_from < 99)
    np.testing.assert_array_equal(stored["net._fc.weight"], imagenet._fc.weight.detach().numpy())
    pixels = golden.golden_pixels()
    with torch.inference_mode():
        x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.0) / 128.0
        pooled = torch.flatten(net._avg_pooling(net.extract_features(x)), 1).numpy()
        logits = net(x).numpy()  # the package's own forward, classifier included
    features, onnx_logits = bundle.image_encoder.encode(pixels)
    np.testing.assert_allclose(features, pooled, rtol=0, atol=1e-3)
    np.testing.assert_allclose(onnx_logits, logits, rtol=0, atol=1e-3)


@pytest.mark.train
def test_image_encoder_matches_pytorch_efficientnet(bundle: ModelBundle, tmp_path: Path) -> None:
    """ImageNet's own Lite0 (batch norms unfolded): equal unless fine-tuned, then the ImageNet
    classes it predicts mostly agree (the tower's distillation keeps the label bridge working)."""
    torch = pytest.importorskip("torch", reason="the PyTorch reference needs the [train] extra")
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [train] extra")
    from pixsearch.exporter import _sources as sources

    pixels = golden.golden_pixels()
    net = sources.load_image_model()
    with torch.inference_mode():
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float()
        x = (x - 127.0) / 128.0  # the manifest's pixel_mean / pixel_std, written out
        pooled = torch.flatten(net._avg_pooling(net.extract_features(x)), 1).numpy()
        logits = net(x).numpy()  # the package's own forward, classifier included
    features, onnx_logits = bundle.image_encoder.encode(pixels)
    if "fine_tuned" in bundle.manifest["models"]["image_encoder"]:
        # real photos (the demo's 14): 12 of 14 keep their ImageNet class with the tower
        # retrained by `pixsearch retrain` (seed 42), the moon and the motorcycle change
        from helpers import copy_demo_photos

        from pixsearch.indexer.preprocess import load_photo

        folder = copy_demo_photos(tmp_path / "photos")
        pixels = np.stack([load_photo(p).pixels for p in sorted(folder.iterdir())])
        with torch.inference_mode():
            x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - 127.0) / 128.0
            logits = net(x).numpy()
        same_class = np.argmax(bundle.image_encoder.encode(pixels)[1], axis=1) == np.argmax(
            logits, axis=1
        )
        assert same_class.mean() >= 0.75, same_class
        return
    np.testing.assert_allclose(features, pooled, rtol=0, atol=1e-3)
    np.testing.assert_allclose(onnx_logits, logits, rtol=0, atol=1e-3)
    assert np.argmax(onnx_logits, axis=1).tolist() == np.argmax(logits, axis=1).tolist()


@pytest.mark.train
def test_text_encoder_matches_pytorch_minilm(bundle: ModelBundle) -> None:
    pytest.importorskip("transformers", reason="the PyTorch reference needs the [train] extra")
    from pixsearch.exporter import _sources as sources

    reference = sources.torch_text_embeddings(sources.load_text_model(), golden.TEXTS)
    text = bundle.text_encoder.encode(golden.TEXTS)
    # int8 weights and int8 compute (docs/bundle.md): the export's own tolerance
    assert np.max(np.abs(text - reference)) <= 0.01
    assert np.min(_cosines(text, reference)) >= 0.998


# -- heads, calibrator, classifier: what the manifest says they compute ----------------------
def test_image_head_is_the_documented_mix(bundle: ModelBundle, features: np.ndarray) -> None:
    """``[sqrt(mix) * joint, sqrt(1 - mix) * label bridge]``: the bridge part re-derived in
    numpy from the classifier weights and class embeddings (softmax, top k, weighted mean)."""
    from pixsearch.exporter._onnx_tools import bridge_from_logits

    space = bundle.manifest["space"]
    mix, top_k, joint_dim = (space["params"][k] for k in ("mix", "top_k", "joint_dim"))
    weights = _initializers(BUNDLE_DIR / space["files"]["image_head"])
    logits = features.astype(np.float64) @ weights["fc_weight_t"] + weights["fc_bias"]
    bridge = bridge_from_logits(logits, weights["class_embeddings"], top_k)
    vectors = bundle.space.image_vectors(features)
    assert vectors.shape == (len(features), space["dim"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    joint, tail = vectors[:, :joint_dim], vectors[:, joint_dim:]
    np.testing.assert_allclose(np.linalg.norm(joint, axis=1), math.sqrt(mix), atol=1e-5)
    np.testing.assert_allclose(tail / math.sqrt(1 - mix), bridge, atol=1e-4)


@pytest.mark.train
def test_the_label_bridge_is_efficientnets_own_classifier() -> None:
    """The head's classifier weights are the PyTorch model's ``_fc`` (not a copy that drifted)."""
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs the [train] extra")
    from pixsearch.exporter import _sources as sources

    net = sources.load_image_model()
    weights = _initializers(BUNDLE_DIR / "image_head.onnx")
    np.testing.assert_array_equal(weights["fc_weight_t"], net._fc.weight.detach().numpy().T)
    np.testing.assert_array_equal(weights["fc_bias"], net._fc.bias.detach().numpy())


def test_text_head_keeps_the_embedding_as_its_bridge_part(bundle: ModelBundle) -> None:
    space = bundle.manifest["space"]
    mix, joint_dim = space["params"]["mix"], space["params"]["joint_dim"]
    embeddings = bundle.text_encoder.encode([*golden.TEXTS, "a red car", "a cup of coffee"])
    vectors = bundle.space.text_vectors(embeddings)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        np.linalg.norm(vectors[:, :joint_dim], axis=1), math.sqrt(mix), atol=1e-5
    )
    np.testing.assert_allclose(vectors[:, joint_dim:] / math.sqrt(1 - mix), unit, atol=1e-5)


def test_reranker_is_the_calibrator_its_manifest_names(bundle: ModelBundle) -> None:
    """``sigmoid(a * similarity + b)`` with a and b as printed in the manifest (4 decimals)."""
    section = bundle.manifest["reranker"]
    if section.get("kind") != "calibrator":
        pytest.fail(f"a {section.get('kind')!r} reranker needs its own reference here")
    a, b = (
        float(v)
        for v in re.fullmatch(
            r"calibrator sigmoid\(([-\d.]+) \* similarity \+ ([-\d.]+)\)", section["model"]
        ).groups()
    )
    rng = np.random.default_rng(3)
    sims = np.linspace(-1, 1, 41).astype(np.float32)
    text = rng.normal(size=384).astype(np.float32)
    feats = rng.random((len(sims), 1280), dtype=np.float32) * 6
    scores = bundle.reranker.score(text, feats, sims)
    expected = 1 / (1 + np.exp(-(a * sims.astype(np.float64) + b)))
    np.testing.assert_allclose(scores, expected, atol=1e-4)  # a, b rounded to 4 decimals
    # as documented: only the similarity matters, and the order is kept
    np.testing.assert_allclose(bundle.reranker.score(text * 0, feats * 0, sims), scores, atol=1e-7)
    assert np.all(np.diff(scores) > 0)


def test_child_classifier_is_the_documented_two_stage_rule(
    bundle: ModelBundle, features: np.ndarray
) -> None:
    """``sigmoid(min(z_person - logit(t_person), z_child - logit(t_child)))`` re-derived in
    numpy from the stage weights; ``restricted`` exactly when both stages pass."""
    section = bundle.manifest["policy"]["child_classifier"]
    weights = _initializers(BUNDLE_DIR / section["file"])
    stages = sorted({name.split("_")[0] for name in weights if re.fullmatch(r"s\d+_w0", name)})
    assert stages == (["s0", "s1"] if section.get("person_gate") else [])  # person, child
    rng = np.random.default_rng(5)
    x = np.concatenate([features, rng.random((64, features.shape[1]), dtype=np.float32) * 3])
    x64 = x.astype(np.float64)
    if stages:
        z = np.min([x64 @ weights[f"{s}_w0"] + weights[f"{s}_b0"] for s in stages], axis=0)[:, 0]
    else:
        z = (x64 @ weights["w0"] + weights["b0"])[:, 0]
    expected = 1 / (1 + np.exp(-z))
    scores = bundle.child_classifier.scores(x)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    far = np.abs(z) > 1e-4  # away from the float32 boundary
    restricted = bundle.child_classifier.restricted(x)
    assert restricted[far].tolist() == (z[far] >= 0).tolist()
