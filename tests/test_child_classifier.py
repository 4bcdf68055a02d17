"""The child-photo classifier: threshold choice, person labels, training on synthetic features
(one stage and with the person gate), ONNX parity, the committed model's golden scores and its
two-stage rule, the runtime class and the ``train-policy`` command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.errors import ModelBundleError
from pixsearch.indexer.models import ChildClassifier, ModelBundle

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "indexer" / "bundle"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN_ATOL = 1e-5
"""Scores are sigmoids of one dot product per layer; other CPUs reorder the float32 sums, which
moves a score by ~1e-7."""

needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("onnx") is None,
    reason="needs the [train] extra (scikit-learn, onnx)",
)


def synthetic(n: int = 500, dim: int = 1280, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ReLU6-like features; positives are shifted on 16 of the dimensions (a separable signal)."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    features = rng.gamma(1.0, 0.5, size=(n, dim)).astype(np.float32)
    features[:, :16] += 0.5 * labels[:, None]
    return features, labels


def synthetic_with_people(
    n: int = 900, dim: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, child labels and person labels: a person signal on dims 0-7, a child signal
    (only among people) on dims 8-15; a few odd non-person photos score high on the child dims
    (what the gate is for)."""
    rng = np.random.default_rng(seed)
    person = (rng.random(n) < 0.7).astype(np.int64)
    child = person * (rng.random(n) < 0.4).astype(np.int64)
    features = rng.gamma(1.0, 0.5, size=(n, dim)).astype(np.float32)
    features[:, :8] += 1.0 * person[:, None]
    features[:, 8:16] += 0.6 * child[:, None]
    odd = (person == 0) & (rng.random(n) < 0.3)
    features[odd, 8:16] += 1.5
    return features, child, person


# -- labels -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("A man in a red shirt climbs a rock", True),
        ("Two skiers on a slope", True),
        ("A crowd watches the parade", True),
        ("A little girl plays", True),  # child terms count as people
        ("A 6-year-old on a swing", True),
        ("A black dog runs after his rope toy", False),  # pronouns are not people
        ("An adult horse approaching a foal", False),
        ("A boat on a lake", False),
        ("", False),
    ],
)
def test_mentions_person(caption: str, expected: bool) -> None:
    from pixsearch.exporter.child_classifier import mentions_person

    assert mentions_person(caption) is expected


def test_person_labels_count_captions(tmp_path: Path) -> None:
    from pixsearch.exporter.child_classifier import load_photo_labels

    data = tmp_path / "data"
    (data / "flickr8k" / "images").mkdir(parents=True)
    lines = ["image\tcaption_idx\tcaption"]
    captions = {
        "a.jpg": ["a dog runs"] * 4 + ["a man and his dog"],
        "b.jpg": ["a dog runs"] * 5,
        "c.jpg": ["a boy jumps"] * 2 + ["a man swims"] * 3,
    }
    for i, (image, texts) in enumerate(captions.items()):
        (data / "flickr8k" / "images" / image).write_bytes(bytes([i]))
        lines += [f"{image}\t{j}\t{t}" for j, t in enumerate(texts)]
    (data / "flickr8k" / "captions.tsv").write_text("\n".join(lines) + "\n")
    labels = load_photo_labels(data)
    assert labels.images == ["a.jpg", "b.jpg", "c.jpg"]
    assert labels.person_captions.tolist() == [1, 0, 5]
    assert labels.person_labels.tolist() == [1, 0, 1]
    assert labels.labels.tolist() == [0, 0, 1]
    assert load_photo_labels(data, person_predicate=None).person_labels is None


# -- threshold and metrics --------------------------------------------------------------------
def test_threshold_is_the_highest_that_keeps_the_recall() -> None:
    from pixsearch.exporter.child_classifier import binary_metrics, threshold_for_recall

    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 0])
    assert threshold_for_recall(scores, labels, 0.6) == 0.7  # 3 of 5 positives
    assert threshold_for_recall(scores, labels, 0.61) == 0.5  # needs 4 of 5
    assert threshold_for_recall(scores, labels, 1.0) == 0.2
    metrics = binary_metrics(scores, labels, 0.5)
    assert (metrics["tp"], metrics["fp"], metrics["fn"], metrics["tn"]) == (4, 2, 1, 3)
    assert metrics["recall"] == 0.8 and metrics["false_positive_rate"] == 0.4
    with pytest.raises(InvalidInputError):
        threshold_for_recall(scores, np.zeros(10), 0.9)
    with pytest.raises(InvalidInputError):
        threshold_for_recall(scores, labels, 0.0)


def test_threshold_keeps_recall_for_any_scores() -> None:
    from pixsearch.exporter.child_classifier import threshold_for_recall

    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        scores = rng.choice(rng.random(5), size=n)  # many ties
        labels = rng.integers(0, 2, n)
        labels[0] = 1
        target = float(rng.uniform(0.05, 1.0))
        t = threshold_for_recall(scores, labels, target)
        recall = ((scores >= t) & (labels == 1)).sum() / labels.sum()
        assert recall >= target - 1e-12
        above = scores[scores > t]
        if len(above):  # any higher threshold loses the target
            higher = above.min()
            assert ((scores >= higher) & (labels == 1)).sum() / labels.sum() < target


def test_roc_auc_matches_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    from pixsearch.exporter.child_classifier import roc_auc

    rng = np.random.default_rng(1)
    scores = np.round(rng.random(300), 2)  # ties
    labels = rng.integers(0, 2, 300)
    assert roc_auc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))


def test_split_is_grouped_seeded_and_complete() -> None:
    from pixsearch.exporter.child_classifier import grouped_three_way_split

    groups = np.repeat(np.arange(300), 2)[:-1]  # pairs of identical photos
    train, val, test = grouped_three_way_split(groups, seed=7)
    again = grouped_three_way_split(groups, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(groups)))
    parts = [set(groups[p].tolist()) for p in (train, val, test)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2])
    assert parts[1].isdisjoint(parts[2])
    assert len(parts[1]) == 45 and len(parts[2]) == 45  # 15% of 300 photos each
    other = grouped_three_way_split(groups, seed=8)[1]
    assert not np.array_equal(other, val)


# -- training and ONNX ------------------------------------------------------------------------
@needs_sklearn
def test_training_on_synthetic_features_reaches_the_recall_target() -> None:
    from pixsearch.exporter.child_classifier import (
        default_candidates,
        grouped_three_way_split,
        onnx_scores,
        train_child_classifier,
    )

    features, labels = synthetic()
    train, val, test = grouped_three_way_split(np.arange(len(labels)), seed=0)
    candidates = [c for c in default_candidates() if c.name.startswith("logistic")][:2]
    result = train_child_classifier(
        features, labels, train, val, test, target_recall=0.95, candidates=candidates
    )
    assert [row["model"] for row in result.candidates] == [c.name for c in candidates]
    assert result.validation["recall"] >= 0.95
    assert result.validation["roc_auc"] > 0.95 and result.test["roc_auc"] > 0.9
    assert 0.0 < result.threshold < 1.0
    scores = onnx_scores(result.onnx_bytes, features[val])
    assert scores.shape == (len(val),) and scores.dtype == np.float32
    assert (scores >= result.threshold).sum() == result.validation["tp"] + result.validation["fp"]
    assert result.parity["max_abs_diff"] <= 1e-4


@needs_sklearn
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_onnx_export_matches_scikit_learn(kind: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pixsearch.exporter.child_classifier import (
        check_parity,
        layers_reference,
        layers_to_onnx,
        onnx_scores,
        pipeline_layers,
    )

    features, labels = synthetic(n=300, dim=64)
    model = (
        LogisticRegression(C=0.1, max_iter=2000)
        if kind == "logistic"
        else MLPClassifier((16,), alpha=1.0, max_iter=400, random_state=0)
    )
    pipeline = make_pipeline(StandardScaler(), model).fit(features, labels)
    layers = pipeline_layers(pipeline)
    expected = pipeline.predict_proba(features)[:, 1]
    np.testing.assert_allclose(layers_reference(features, layers), expected, atol=1e-6)
    exported = onnx_scores(layers_to_onnx(layers, feature_dim=64), features)
    figures = check_parity(expected, exported)
    assert figures["max_abs_diff"] < 1e-5 and figures["rows"] == 300


@needs_sklearn
def test_two_stage_training_folds_both_stages_into_one_score() -> None:
    """score >= threshold exactly when the person gate and the child stage both pass; the
    combined rule keeps the recall target on validation; ONNX matches scikit-learn."""
    from pixsearch.exporter.child_classifier import (
        default_candidates,
        grouped_three_way_split,
        onnx_scores,
        person_candidates,
        train_child_classifier,
    )

    features, child, person = synthetic_with_people()
    train, val, test = grouped_three_way_split(np.arange(len(child)), seed=0)
    logistic = [c for c in default_candidates() if c.name.startswith("logistic")][1:2]
    one = train_child_classifier(
        features, child, train, val, test, target_recall=0.95, candidates=logistic
    )
    two = train_child_classifier(
        features,
        child,
        train,
        val,
        test,
        target_recall=0.95,
        candidates=logistic,
        person_labels=person,
        person_recall=0.99,
        person_models=person_candidates()[:2],
    )
    assert one.person is None
    gate = two.person
    assert gate["target_recall"] == 0.99 and len(gate["candidates"]) == 2
    assert gate["chosen"]["gate_person_recall"] >= 0.99
    assert two.threshold == pytest.approx(0.5, abs=1e-6)
    assert two.validation["recall"] >= 0.95 and two.parity["max_abs_diff"] <= 1e-4
    # the gate removes the odd non-person photos the child stage alone flags
    scores_one = onnx_scores(one.onnx_bytes, features[val])
    scores_two = onnx_scores(two.onnx_bytes, features[val])
    no_person = person[val] == 0
    assert (scores_two[no_person] >= two.threshold).sum() < (
        scores_one[no_person] >= one.threshold
    ).sum()
    assert two.validation["false_positive_rate"] < one.validation["false_positive_rate"]
    # the folded score against the two stages computed from its own weights
    person_logit, child_logit = stage_logits(two.onnx_bytes, features[val])
    both = (person_logit >= 0) & (child_logit >= 0)
    margin = np.minimum(np.abs(person_logit), np.abs(child_logit)) > 1e-5
    assert np.array_equal((scores_two >= two.threshold)[margin], both[margin])
    with pytest.raises(InvalidInputError, match="person"):
        train_child_classifier(features, child, train, val, person_labels=np.zeros_like(person))


def stage_logits(model_bytes: bytes, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shifted logits of the person stage (``s0``) and the child stage (``s1``) of a
    two-stage classifier, from its ONNX initializers (single-layer stages)."""
    import onnx
    from onnx import numpy_helper

    weights = {
        i.name: numpy_helper.to_array(i).astype(np.float64)
        for i in onnx.load_from_string(model_bytes).graph.initializer
    }
    x = np.asarray(features, np.float64)
    return tuple(  # type: ignore[return-value]
        (x @ weights[f"s{s}_w0"] + weights[f"s{s}_b0"])[:, 0] for s in (0, 1)
    )


@needs_sklearn
def test_stages_to_onnx_is_the_smallest_shifted_logit() -> None:
    from pixsearch.exporter.child_classifier import onnx_scores, stages_reference, stages_to_onnx

    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 8)).astype(np.float32)
    stages = [
        ([(rng.normal(size=(8, 4)), rng.normal(size=4)), (rng.normal(size=(4, 1)), [0.2])], 0.3),
        ([(rng.normal(size=(8, 1)), np.array([-0.1]))], -0.4),
    ]
    exported = onnx_scores(stages_to_onnx(stages, feature_dim=8), features)
    reference = stages_reference(features, stages)
    np.testing.assert_allclose(exported, reference, atol=1e-6)
    hidden = np.maximum(features @ stages[0][0][0][0] + stages[0][0][0][1], 0)
    z0 = (hidden @ stages[0][0][1][0])[:, 0] + 0.2 - 0.3
    z1 = (features @ stages[1][0][0][0])[:, 0] - 0.1 + 0.4
    np.testing.assert_allclose(reference, 1 / (1 + np.exp(-np.minimum(z0, z1))), atol=1e-9)


@needs_sklearn
def test_parity_check_raises_on_drift() -> None:
    from pixsearch.exporter.child_classifier import (
        ParityError,
        check_parity,
        layers_to_onnx,
        onnx_scores,
    )

    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(8, 1)), np.array([0.1])
    features = rng.normal(size=(20, 8)).astype(np.float32)
    reference = 1 / (1 + np.exp(-(features.astype(np.float64) @ w + b)[:, 0]))
    drifted = onnx_scores(layers_to_onnx([(w + 0.05, b)], feature_dim=8), features)
    with pytest.raises(ParityError, match="drifts"):
        check_parity(reference, drifted)
    with pytest.raises(ParityError):
        check_parity(reference, np.full(20, np.nan, np.float32))
    assert issubclass(ParityError, ModelBundleError)


# -- the committed classifier -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.load(BUNDLE_DIR)


def test_committed_bundle_has_the_classifier(bundle: ModelBundle) -> None:
    classifier = bundle.child_classifier
    assert isinstance(classifier, ChildClassifier)
    section = bundle.manifest["policy"]["child_classifier"]
    assert section["file"] == "child_classifier.onnx" and "child_classifier.onnx" in bundle.files
    assert classifier.threshold == section["threshold"] and 0 < classifier.threshold < 1
    assert section["metrics"]["validation"]["recall"] >= section["metrics"]["target_recall"]
    assert "captions" in section["labels"]
    # the two-stage rule: a person gate folded into the score, threshold at the 0.5 boundary
    gate = section["person_gate"]
    assert gate["target_recall"] >= 0.99 and "captions" in gate["labels"]
    assert 0 < gate["person_threshold"] < 1 and 0 < gate["child_threshold"] < 1
    assert classifier.threshold == pytest.approx(0.5, abs=1e-6)
    assert "person_present AND" in section["rule"]
    # the classifier reads the features of the bundle's own image encoder
    assert (
        section["feature_source"]
        == bundle.files[bundle.manifest["models"]["image_encoder"]["file"]]
    )
    assert classifier.model.input_names == ["features"]


def test_golden_scores_of_the_committed_classifier(bundle: ModelBundle) -> None:
    golden = dict(np.load(GOLDEN_DIR / "child_classifier_golden.npz"))
    if str(golden["sha256"]) != bundle.files["child_classifier.onnx"]:
        pytest.fail(
            "golden scores are for another child_classifier.onnx: after an intended retraining "
            "run python tests/golden/regenerate_child_classifier.py"
        )
    scores = bundle.child_classifier.scores(golden["features"])
    assert scores.dtype == np.float32 and scores.shape == golden["scores"].shape
    np.testing.assert_allclose(scores, golden["scores"], rtol=0, atol=GOLDEN_ATOL)
    assert ((scores >= 0) & (scores <= 1)).all()
    # the golden inputs span both sides of the threshold
    assert (scores >= bundle.child_classifier.threshold).any()
    assert (scores < bundle.child_classifier.threshold).any()


def test_committed_classifier_restricts_only_when_both_stages_pass(bundle: ModelBundle) -> None:
    """The shipped score is sigmoid(min(person logit - shift, child logit - shift)): restricted
    exactly when the person gate and the child stage both pass their manifest thresholds."""
    golden = dict(np.load(GOLDEN_DIR / "child_classifier_golden.npz"))
    rng = np.random.default_rng(5)
    features = np.concatenate(
        [golden["features"], rng.gamma(0.6, 0.6, (200, 1280)) * rng.uniform(0.2, 3, (200, 1))]
    ).astype(np.float32)
    model_bytes = (BUNDLE_DIR / "child_classifier.onnx").read_bytes()
    person_logit, child_logit = stage_logits(model_bytes, features)
    scores = bundle.child_classifier.scores(features)
    expected = 1 / (1 + np.exp(-np.minimum(person_logit, child_logit)))
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    both = (person_logit >= 0) & (child_logit >= 0)
    margin = np.minimum(np.abs(person_logit), np.abs(child_logit)) > 1e-4
    restricted = bundle.child_classifier.restricted(features)
    assert np.array_equal(restricted[margin], both[margin])
    # every way to fail: gate only, child only, both (the golden and random rows cover them)
    assert (person_logit < 0).any() and (child_logit < 0).any() and both.any()


def test_runtime_scores_shapes_and_errors(bundle: ModelBundle) -> None:
    classifier = bundle.child_classifier
    assert classifier.scores(np.zeros((0, 1280), np.float32)).shape == (0,)
    one = classifier.scores(np.ones(1280, np.float32))  # one row is accepted
    assert one.shape == (1,)
    batch = np.random.default_rng(0).gamma(1.0, 0.5, (5, 1280))  # float64 is converted
    assert np.array_equal(
        classifier.restricted(batch), classifier.scores(batch) >= classifier.threshold
    )
    with pytest.raises(InvalidInputError, match="1280"):
        classifier.scores(np.zeros((2, 1000), np.float32))


def _bundle_copy(tmp_path: Path, edit) -> Path:
    """A bundle folder of links to the committed files with an edited manifest."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    for path in BUNDLE_DIR.iterdir():
        if path.suffix in {".onnx", ".json"} and path.name != "manifest.json":
            (folder / path.name).symlink_to(path)
    manifest = json.loads((BUNDLE_DIR / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_bundle_without_policy_section_has_no_classifier(tmp_path: Path) -> None:
    folder = _bundle_copy(tmp_path, lambda m: m.pop("policy", None))
    assert ModelBundle.load(folder).child_classifier is None


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan"), "high"])
def test_bad_threshold_is_a_bundle_error(tmp_path: Path, threshold) -> None:
    def edit(manifest):
        manifest["policy"]["child_classifier"]["threshold"] = threshold

    with pytest.raises(ModelBundleError):
        ModelBundle.load(_bundle_copy(tmp_path, edit))


def test_changed_classifier_file_is_refused(tmp_path: Path) -> None:
    def edit(manifest):
        manifest["files"]["child_classifier.onnx"] = "0" * 64

    bundle = ModelBundle.load(_bundle_copy(tmp_path, edit))
    with pytest.raises(ModelBundleError, match=r"child_classifier\.onnx"):
        bundle.child_classifier.scores(np.zeros((1, 1280), np.float32))


# -- the command ------------------------------------------------------------------------------
def test_cli_module_imports_no_training_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pixsearch.exporter.policy_cli; "
        "print([m for m in ('torch', 'sklearn', 'onnx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_help_lists_the_command() -> None:
    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    result = CliRunner().invoke(app, ["train-policy", "--help"])
    assert result.exit_code == 0
    for option in ("--bundle", "--out", "--recall", "--person-recall", "--no-person-gate"):
        assert option in result.output


def test_cli_reports_missing_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    result = CliRunner().invoke(app, ["train-policy", str(tmp_path), "--no-write-bundle"])
    assert result.exit_code == 2 and "captions.tsv" in result.output


@needs_sklearn
def test_cli_trains_and_adds_to_a_bundle(tmp_path: Path) -> None:
    """Tiny fake data set (reddish photos captioned with children): the whole command."""
    from PIL import Image
    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    data = tmp_path / "data"
    photos = data / "flickr8k" / "images"
    customer = data / "practicum" / "train_images"
    photos.mkdir(parents=True)
    customer.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["image\tcaption_idx\tcaption"]
    for i in range(48):
        child = i % 3 == 0
        folder = customer if i % 4 == 0 else photos
        base = np.array([200, 60, 60] if child else [60, 90, 200])
        pixels = np.clip(base + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i:02d}.jpg")
        for j in range(5):
            text = "a little girl plays" if child and j < 3 else "a dog runs on grass"
            lines.append(f"p{i:02d}.jpg\t{j}\t{text}")
    (data / "flickr8k" / "captions.tsv").write_text("\n".join(lines) + "\n")
    folder = _bundle_copy(tmp_path, lambda m: m.pop("policy", None))
    (folder / "child_classifier.onnx").unlink(missing_ok=True)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "train-policy",
            str(data),
            "--bundle",
            str(folder),
            "--out",
            str(out),
            "--recall",
            "0.9",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((folder / "manifest.json").read_text())
    section = manifest["policy"]["child_classifier"]
    assert section["metrics"]["target_recall"] == 0.9
    assert section["person_gate"]["target_recall"] == 0.99
    assert section["threshold"] == pytest.approx(0.5, abs=1e-6)
    assert "child_classifier.onnx" in manifest["files"]
    # without --only, the query classifier is trained too; the committed file it was linked to
    # is replaced in the copy, never written through
    assert manifest["policy"]["query_classifier"]["file"] in manifest["files"]
    assert not (folder / "query_classifier.onnx").is_symlink()
    committed = json.loads((BUNDLE_DIR / "manifest.json").read_text())
    assert ModelBundle.load(BUNDLE_DIR).files == committed["files"]
    assert (
        manifest["bundle_id"] != json.loads((BUNDLE_DIR / "manifest.json").read_text())["bundle_id"]
    )
    loaded = ModelBundle.load(folder)
    assert loaded.child_classifier.threshold == section["threshold"]
    card = (out / "model_card.md").read_text()
    assert "ROC-AUC" in card and "of 12 flagged" in card and "## Person gate" in card
    assert json.loads((out / "metrics.json").read_text())["threshold"] == section["threshold"]
    # the child classifier alone, as before the person gate
    result = CliRunner().invoke(
        app,
        [
            "train-policy",
            str(data),
            "--no-write-bundle",
            "--no-person-gate",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["person_gate"] is None and "--no-person-gate" in (out / "model_card.md").read_text()
    )
