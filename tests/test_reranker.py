"""The MLP relevance reranker: training on synthetic pairs, calibration metrics, ONNX parity,
the runtime class ``pixsearch.indexer.models.Reranker`` and the committed reranker's goldens."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from pixsearch.exporter.reranker import calibration
from pixsearch.indexer.models import ModelBundle, OnnxModel, Reranker

GOLDEN = Path(__file__).parent / "golden" / "joint_heads_golden.npz"


def test_calibration_table_and_ece() -> None:
    predicted = np.array([0.05, 0.15, 0.95, 0.85])
    target = np.array([0.0, 0.0, 1.0, 1.0])
    ece, table = calibration(predicted, target, bins=10)
    assert ece == pytest.approx(0.1)
    assert [row["n"] for row in table] == [1, 1, 1, 1]
    assert calibration(target, target)[0] == 0.0


def synthetic_pairs(n_text: int = 200, n_image: int = 100, seed: int = 0):  # type: ignore[no-untyped-def]
    """Relevance = 1 when a text's hidden class equals the photo's, else 0."""
    from pixsearch.exporter.reranker import PairData

    rng = np.random.default_rng(seed)
    text_class, image_class = rng.integers(0, 4, n_text), rng.integers(0, 4, n_image)
    text = np.eye(4)[text_class] @ rng.normal(size=(4, 12)) + 0.2 * rng.normal(size=(n_text, 12))
    image = np.eye(4)[image_class] @ rng.normal(size=(4, 20)) + 0.2 * rng.normal(size=(n_image, 20))
    t_idx, i_idx = rng.integers(0, n_text, 3000), rng.integers(0, n_image, 3000)
    target = (text_class[t_idx] == image_class[i_idx]).astype(np.float64)
    sims = (0.3 * target + 0.3 * rng.normal(size=3000)).astype(np.float32)
    return PairData(
        text.astype(np.float32), image.astype(np.float32), t_idx, i_idx, sims, target, np.ones(3000)
    )


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    pytest.importorskip("torch", reason="training needs the [train] extra")
    from pixsearch.exporter.reranker import RerankerConfig, train_reranker

    pairs = synthetic_pairs()
    train, val = pairs.subset(np.arange(2400)), pairs.subset(np.arange(2400, 3000))
    return train_reranker(
        train, RerankerConfig(hidden=16, epochs=30, lr=3e-3, dropout=0.0, seed=0)
    ), val


def test_trained_reranker_separates_and_is_calibrated(trained) -> None:  # type: ignore[no-untyped-def]
    model, val = trained
    scores = model.predict(val)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores[val.target == 1].mean() > scores[val.target == 0].mean() + 0.4
    assert calibration(scores, val.target)[0] < 0.12


def test_onnx_reranker_matches_pytorch_and_runs_in_the_runtime(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnx", reason="export needs the [train] extra")
    from pixsearch.exporter.reranker import export_reranker

    model, val = trained
    text = val.text_features[val.text_index[:40]]
    feats = val.image_features[val.image_index[:40]]
    report = export_reranker(model, tmp_path / "reranker.onnx", text, feats, val.similarity[:40])
    assert report["max_abs_diff"] < 1e-4
    runtime = Reranker(OnnxModel(tmp_path / "reranker.onnx"), top_n=5, feature_dim=20, text_dim=12)
    got = runtime.score(text[0], feats[:7], val.similarity[:7])
    expected = model.score(np.repeat(text[:1], 7, axis=0), feats[:7], val.similarity[:7])
    assert got.shape == (7,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert runtime.score(text[0], feats[:0], val.similarity[:0]).shape == (0,)
    with pytest.raises(Exception, match="similarities"):
        runtime.score(text[0], feats[:3], val.similarity[:2])


def test_bundle_without_reranker_section_has_none() -> None:
    bundle = ModelBundle.load()
    manifest = copy.deepcopy(bundle.manifest)
    manifest.pop("reranker", None)
    assert ModelBundle(bundle.path, manifest).reranker is None


def test_committed_reranker_matches_its_golden_scores() -> None:
    bundle = ModelBundle.load()
    if bundle.reranker is None:
        pytest.skip("the bundle has no reranker")
    golden = np.load(GOLDEN)
    assert str(golden["reranker_sha256"]) == bundle.files[bundle.manifest["reranker"]["file"]], (
        "reranker.onnx changed: run python tests/golden/regenerate_joint.py and review"
    )
    scores = bundle.reranker.score(
        golden["text_embeddings"][0], golden["features"], golden["similarities"]
    )
    np.testing.assert_allclose(scores, golden["reranker_scores"], atol=1e-5)
    assert bundle.reranker.top_n >= 1


def test_calibrator_keeps_the_order_and_exports(tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="export needs the [train] extra")
    from pixsearch.exporter.reranker import Calibrator, export_reranker

    rng = np.random.default_rng(0)
    sims = rng.uniform(-0.2, 0.9, 500)
    target = np.clip(sims + 0.1 * rng.normal(size=500), 0, 1)
    calibrator = Calibrator.fit(sims, target)
    assert calibrator.a > 0
    assert calibration(calibrator.predict_sims(sims), target)[0] < 0.05
    text = rng.normal(size=(8, 384)).astype(np.float32)
    feats = rng.normal(size=(8, 1280)).astype(np.float32)
    s = sims[:8].astype(np.float32)
    export_reranker(calibrator, tmp_path / "reranker.onnx", text, feats, s)
    runtime = Reranker(OnnxModel(tmp_path / "reranker.onnx"), top_n=10)
    scores = runtime.score(text[0], feats, s)
    np.testing.assert_allclose(scores, calibrator.predict_sims(s), atol=1e-6)
    assert np.array_equal(np.argsort(-scores), np.argsort(-s))  # reranking keeps the order
