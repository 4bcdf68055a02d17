"""Joint space (issue #3): feature-cache keys, training on synthetic features, ONNX parity of
the heads, golden outputs of the committed heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pixsearch.exporter.features import encoder_key, text_features

GOLDEN = Path(__file__).parent / "golden" / "joint_heads_golden.npz"


class _Encoder:
    def __init__(self) -> None:
        self.items = 0

    def encode(self, texts):  # type: ignore[no-untyped-def]
        self.items += len(texts)
        return np.array([[len(t), 1.0] for t in texts], np.float32)


class _Bundle:
    def __init__(self, bundle_id: str) -> None:
        self.id = bundle_id
        self.manifest = {"models": {"text_encoder": {"file": "t.onnx"}}}
        self.files = {"t.onnx": "cd" * 32, "image_head.onnx": bundle_id}
        self.text_encoder = _Encoder()


def test_cache_key_is_the_encoder_file_not_the_bundle_id(tmp_path: Path) -> None:
    first, second = _Bundle("bundle-a"), _Bundle("bundle-b")  # same encoder, other heads
    assert encoder_key(first, "text_encoder") == encoder_key(second, "text_encoder")
    text_features(["a dog", "a cat"], first, tmp_path)
    text_features(["a dog", "a cat"], second, tmp_path)
    assert first.text_encoder.items == 2 and second.text_encoder.items == 0
    assert (tmp_path / ("enc-" + "cd" * 8) / "text").is_dir()


def synthetic_corpus(n_images: int = 240, seed: int = 0):  # type: ignore[no-untyped-def]
    """Photos and captions that share a hidden 12-d meaning, plus a random label bridge."""
    from pixsearch.exporter.joint_space import Bridge, Corpus

    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_images, 12)).astype(np.float32)
    to_image = rng.normal(size=(12, 48)).astype(np.float32)
    to_text = rng.normal(size=(12, 24)).astype(np.float32)
    features = np.maximum(latent @ to_image + 0.3 * rng.normal(size=(n_images, 48)), 0)
    owner = np.repeat(np.arange(n_images), 5)
    text = latent[owner] @ to_text + 0.5 * rng.normal(size=(len(owner), 24))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    bridge = Bridge(
        (0.1 * rng.normal(size=(48, 10))).astype(np.float32),
        np.zeros(10, np.float32),
        rng.normal(size=(10, 24)).astype(np.float32),
        top_k=3,
    )
    corpus = Corpus(
        [f"{i}.jpg" for i in range(n_images)],
        [Path(f"{i}.jpg") for i in range(n_images)],
        features.astype(np.float32),
        [features[:, ::-1].astype(np.float32).copy()],
        [str(i) for i in range(len(owner))],
        owner,
        text.astype(np.float32),
    )
    return corpus, bridge


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="training needs the [train] extra")
    from pixsearch.exporter.joint_space import JointConfig, split_photos, train_joint

    corpus, bridge = synthetic_corpus()
    train, val = split_photos(len(corpus.images), 60, seed=0)
    cfg = JointConfig(
        dim=16,
        image_hidden=32,
        text_hidden=32,
        batch_photos=64,
        epochs=12,
        mix=0.8,
        seed=0,
        text_augment=0.0,  # one text encoder here
    )
    return corpus, bridge, train, val, train_joint(corpus, train, bridge, cfg)


def test_training_beats_the_label_bridge_on_held_out_photos(trained) -> None:  # type: ignore[no-untyped-def]
    from pixsearch.exporter.joint_space import BridgeSpace, evaluate

    corpus, bridge, _train, val, model = trained
    baseline = evaluate(BridgeSpace(bridge), corpus, val)
    joint = evaluate(model, corpus, val, mix=1.0)
    assert joint["R@10"] > baseline["R@10"] + 20, (joint, baseline)
    assert joint["median_rank"] < baseline["median_rank"]
    assert 0.0 < model.history[-1]["temperature"] < 1.0


def test_shipped_vectors_are_unit_length_and_mix_the_cosines(trained) -> None:  # type: ignore[no-untyped-def]
    corpus, bridge, _train, val, model = trained
    img = model.image_vectors(corpus.features[val[:5]])
    txt = model.text_vectors(corpus.text_features[:3])
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    a = model.config.mix
    joint = (
        model.joint_text(corpus.text_features[:3]) @ model.joint_image(corpus.features[val[:5]]).T
    )
    unit = corpus.text_features[:3] / np.linalg.norm(
        corpus.text_features[:3], axis=1, keepdims=True
    )
    zero_shot = unit @ bridge.vectors(corpus.features[val[:5]]).T
    assert np.allclose(txt @ img.T, a * joint + (1 - a) * zero_shot, atol=1e-5)


@pytest.mark.parametrize("half", [False, True])
def test_onnx_heads_match_pytorch(trained, tmp_path: Path, half: bool) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnx", reason="export needs the [train] extra")
    from pixsearch.exporter.joint_space import export_heads
    from pixsearch.indexer.models import OnnxHeadSpace, OnnxModel

    corpus, _bridge, _train, val, model = trained
    report = export_heads(
        model, tmp_path, corpus.features[val], corpus.text_features[:50], half=half
    )
    assert report["image_head"]["min_cosine"] > 0.9999
    # the runtime class reads the files with the names it expects
    space = OnnxHeadSpace(
        "t",
        16 + 24,
        OnnxModel(tmp_path / "image_head.onnx"),
        OnnxModel(tmp_path / "text_head.onnx"),
        feature_dim=48,
        text_dim=24,
    )
    got = space.image_vectors(corpus.features[val[:7]])
    assert np.allclose(
        got, model.image_vectors(corpus.features[val[:7]]), atol=2e-3 if half else 1e-5
    )
    assert np.allclose(
        space.text_vectors(corpus.text_features[:4]),
        model.text_vectors(corpus.text_features[:4]),
        atol=2e-3 if half else 1e-5,
    )


def test_parity_refuses_a_drifting_export() -> None:
    from pixsearch.exporter.joint_space import ParityError, parity

    a = np.eye(3, dtype=np.float32)
    assert parity(a, a + 1e-7, "x")["min_cosine"] == 1.0
    with pytest.raises(ParityError, match="drifts"):
        parity(a, a[::-1], "x")


def test_split_is_seeded_and_disjoint() -> None:
    from pixsearch.exporter.joint_space import split_photos

    first, second = split_photos(100, 10, seed=3), split_photos(100, 10, seed=3)
    assert np.array_equal(first[1], second[1]) and len(first[1]) == 10
    assert set(first[0].tolist()).isdisjoint(first[1].tolist())


def test_committed_heads_match_their_golden_outputs() -> None:
    """Fixed seeded inputs -> stored outputs of the committed ``joint`` heads (atol 1e-5)."""
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    if bundle.manifest["space"].get("kind") != "joint":
        pytest.skip("the bundle's space is not a trained joint space")
    golden = np.load(GOLDEN)
    assert str(golden["image_head_sha256"]) == bundle.files["image_head.onnx"], (
        "image_head.onnx changed: run python tests/golden/regenerate_joint.py and review"
    )
    image = bundle.space.image_vectors(golden["features"])
    text = bundle.space.text_vectors(golden["text_embeddings"])
    np.testing.assert_allclose(image, golden["image_vectors"], atol=1e-5)
    np.testing.assert_allclose(text, golden["text_vectors"], atol=1e-5)
    assert image.shape[1] == bundle.vector_dim


def test_augmented_views_change_what_training_sees() -> None:
    """With ``augment`` the towers train on the views too: different weights, still learning."""
    pytest.importorskip("torch", reason="training needs the [train] extra")
    from pixsearch.exporter.joint_space import (
        BridgeSpace,
        JointConfig,
        evaluate,
        split_photos,
        train_joint,
    )

    corpus, bridge = synthetic_corpus()
    noisy = corpus.features + np.random.default_rng(5).normal(0, 0.3, corpus.features.shape)
    corpus.view_features = [np.maximum(noisy, 0).astype(np.float32)]
    train, val = split_photos(len(corpus.images), 60, seed=0)
    small = dict(dim=16, image_hidden=32, text_hidden=32, batch_photos=64, epochs=12, seed=0)
    small["text_augment"] = 0.0
    plain = train_joint(corpus, train, bridge, JointConfig(**small, augment=0.0))
    augmented = train_joint(corpus, train, bridge, JointConfig(**small, augment=0.5))
    a = augmented.joint_image(corpus.features[val[:5]])
    assert not np.allclose(a, plain.joint_image(corpus.features[val[:5]]), atol=1e-4)
    baseline = evaluate(BridgeSpace(bridge), corpus, val)["R@10"]
    assert evaluate(augmented, corpus, val, mix=1.0)["R@10"] > baseline + 20


def test_crop_views_are_cached_and_reproducible(tmp_path: Path) -> None:
    from helpers import copy_demo_photos

    from pixsearch.exporter.features import augment_view, image_features
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    paths = sorted(copy_demo_photos(tmp_path / "photos").iterdir())[:3]
    first = image_features(paths, bundle, tmp_path / "cache", view="crop1")
    again = image_features(paths, bundle, tmp_path / "cache", view="crop1")
    plain = image_features(paths, bundle, tmp_path / "cache")
    assert np.array_equal(first, again)
    assert not np.allclose(first, plain, atol=1e-3)
    assert {p.name for p in (tmp_path / "cache").glob("*/*")} == {"image", "image-crop1"}
    with pytest.raises(ValueError, match="unknown augmented view"):
        augment_view(np.zeros((4, 4, 3), np.uint8), "rotate")


def test_text_views_teach_the_text_tower_a_second_encoder() -> None:
    """With ``text_augment`` the text tower also trains on another encoder's embeddings of the
    captions (the multilingual path): queries from that encoder then find their photos."""
    pytest.importorskip("torch", reason="training needs the [train] extra")
    from dataclasses import replace

    from pixsearch.exporter.joint_space import JointConfig, evaluate, split_photos, train_joint

    corpus, bridge = synthetic_corpus()
    rotation, _ = np.linalg.qr(np.random.default_rng(7).normal(size=(24, 24)))
    other = (corpus.text_features @ rotation).astype(np.float32)  # the second encoder's space
    corpus.text_view_features = [other]
    train, val = split_photos(len(corpus.images), 60, seed=0)
    small = dict(dim=16, image_hidden=32, text_hidden=32, batch_photos=64, epochs=30, seed=0)
    plain = train_joint(corpus, train, bridge, JointConfig(**small, text_augment=0.0))
    both = train_joint(corpus, train, bridge, JointConfig(**small, text_augment=0.5))
    asked_other = replace(corpus, text_features=other)
    plain_other = evaluate(plain, asked_other, val, mix=1.0)["R@10"]  # 13 here, chance 17
    assert evaluate(both, asked_other, val, mix=1.0)["R@10"] > plain_other + 40  # 71 here
    assert evaluate(both, corpus, val, mix=1.0)["R@10"] > 45  # the first encoder still works
    corpus.text_view_features = []
    with pytest.raises(ValueError, match="text views"):
        train_joint(corpus, train, bridge, JointConfig(**small, text_augment=0.5))


def test_multilingual_text_views_are_the_multilingual_encoders_and_cached(tmp_path: Path) -> None:
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    captions = ["a dog runs on the beach", "two men ride bicycles"]
    views = text_features(captions, bundle, tmp_path, encoder="text_encoder_multilingual")
    expected = bundle.text_encoder.multilingual.encode(captions)
    np.testing.assert_allclose(views, expected, atol=1e-6)
    minilm = text_features(captions, bundle, tmp_path)
    assert float(np.max(np.sum(views * minilm, axis=1))) < 0.99  # another encoder's embeddings
    assert len(list(tmp_path.glob("enc-*/text"))) == 2
