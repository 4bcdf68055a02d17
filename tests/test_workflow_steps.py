"""Each step of the research workflow on small hand-made data written into tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pixsearch.db.errors import InvalidInputError
from pixsearch.exporter.data import (
    DataValidationError,
    ValidationReport,
    load_heldout,
    load_practicum,
)
from pixsearch.exporter.features import FeatureCache, image_features, text_features
from pixsearch.exporter.scores import expert_relevance, merge_one, merge_scores
from pixsearch.exporter.split import grouped_split
from pixsearch.exporter.workflow import apply_legal_filter
from pixsearch.indexer.errors import ImageDecodeError

COLORS = {
    "red.jpg": (220, 30, 30),
    "green.jpg": (30, 200, 40),
    "blue.jpg": (20, 40, 220),
    "white.jpg": (240, 240, 240),
    "black.jpg": (10, 10, 10),
    "yellow.jpg": (230, 220, 20),
}
CAPTIONS = {
    "red.jpg": ["a red square", "something red", "a boy in red"],
    "green.jpg": ["kids on green grass", "a green field", "grass, green"],
    "blue.jpg": ["blue sky", "a blue wall", "deep blue sea"],
    "white.jpg": ["white snow", "a white sheet", "a white room"],
    "black.jpg": ["night, black", "a black cat", "a dark room"],
    "yellow.jpg": ["a yellow sun", "yellow paint", "a yellow taxi"],
}


def kid_predicate(text: str) -> bool:
    """A tiny stand-in for pixsearch.indexer.policy.is_about_children."""
    return any(word in text.lower().split() for word in ("boy", "kids", "child"))


def write_practicum(
    root: Path, *, extra_expert: list[str] = (), extra_crowd: list[str] = ()
) -> Path:
    """A complete 6-photo dataset in the customer's formats; every photo judged against all."""
    practicum = root / "practicum"
    (practicum / "train_images").mkdir(parents=True)
    for name, color in COLORS.items():
        Image.new("RGB", (40, 30), color).save(practicum / "train_images" / name)
    flickr = root / "flickr8k"
    flickr.mkdir()
    lines = ["image\tcaption_idx\tcaption"]
    for name, texts in CAPTIONS.items():
        lines += [f"{name}\t{i}\t{text}" for i, text in enumerate(texts)]
    (flickr / "captions.tsv").write_text("\n".join(lines) + "\n")
    dataset = ["image,query_id,query_text"]
    expert, crowd = [], []
    for image in COLORS:
        for source, texts in CAPTIONS.items():
            for i, text in enumerate(texts[:2]):
                qid = f"{source}#{i}"
                dataset.append(f'{image},{qid},"{text}"')
                vote = 4 if source == image else 1
                expert.append(f"{image}\t{qid}\t{vote}\t{vote}\t{max(1, vote - 1)}")
                if i == 0:
                    yes = 3 if source == image else 0
                    crowd.append(f"{image}\t{qid}\t{yes / 3}\t{yes}\t{3 - yes}")
    # one crowd-only pair using a flickr caption not in train_dataset.csv
    crowd.append("red.jpg\tred.jpg#2\t1.0\t3\t0")
    (practicum / "train_dataset.csv").write_text("\n".join(dataset) + "\n")
    (practicum / "ExpertAnnotations.tsv").write_text("\n".join([*expert, *extra_expert]) + "\n")
    (practicum / "CrowdAnnotations.tsv").write_text("\n".join([*crowd, *extra_crowd]) + "\n")
    return root


class FakeEncoder:
    """Counts calls; image features are the mean colour, text features a bag of colour words."""

    words = ("red", "green", "blue", "white", "black", "yellow")

    def __init__(self) -> None:
        self.calls = 0
        self.items = 0

    def encode(self, batch):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.items += len(batch)
        if isinstance(batch, np.ndarray):
            mean = batch.reshape(len(batch), -1, 3).mean(axis=1) / 255.0
            return np.concatenate([mean, mean**2], axis=1).astype(np.float32), np.zeros(
                (len(batch), 3), np.float32
            )
        return np.array([[float(w in t) for w in self.words] for t in batch], dtype=np.float32)


class FakeBundle:
    def __init__(self, bundle_id: str = "fake-1") -> None:
        self.id = bundle_id
        self.feature_dim = 6
        self.image_encoder = FakeEncoder()
        self.text_encoder = FakeEncoder()
        self.space = None


# ---------------------------------------------------------------- load and validate


def test_clean_data_loads_with_no_faults(tmp_path: Path) -> None:
    data = load_practicum(write_practicum(tmp_path))
    assert data.report.issues == {} or set(data.report.issues) == {"short_text"}
    assert data.report.rows["train_dataset.csv"] == 72
    assert data.report.rows["ExpertAnnotations.tsv"] == 72
    assert int(data.pairs["has_expert"].sum()) == 72
    assert int((data.pairs["has_expert"] & data.pairs["has_crowd"]).sum()) == 36
    crowd_only = data.pairs[~data.pairs["has_expert"]]
    assert crowd_only["query_text"].tolist() == ["a boy in red"]  # text from captions.tsv


@pytest.mark.parametrize(
    ("expert_line", "crowd_line", "kind"),
    [
        ("missing.jpg\tred.jpg#0\t1\t1\t1", "", "missing_image_file"),
        ("red.jpg\tnobody.jpg#9\t1\t1\t1", "", "unknown_query_id"),
        ("red.jpg\tred.jpg#0\t2\t2\t2", "", "duplicate_pair"),
        ("red.jpg\tblue.jpg#2\t1\t5\t1", "", "score_out_of_range"),
        ("", "red.jpg\tblue.jpg#2\t1.5\t3\t0", "score_out_of_range"),
        ("", "red.jpg\tgreen.jpg#2\t0.5\t3\t0", "crowd_count_mismatch"),
    ],
)
def test_row_faults_are_named_counted_and_excluded(
    tmp_path: Path, expert_line: str, crowd_line: str, kind: str
) -> None:
    root = write_practicum(
        tmp_path,
        extra_expert=[expert_line] if expert_line else [],
        extra_crowd=[crowd_line] if crowd_line else [],
    )
    data = load_practicum(root)
    assert data.report.count(kind) == 1
    if data.report.issues[kind].action == "excluded":
        assert int(data.pairs["has_expert"].sum()) == 72  # the bad row is not in the pairs
        with pytest.raises(DataValidationError, match=kind):
            load_practicum(root, strict=True)


def test_unreadable_photo_is_counted_and_its_pairs_excluded(tmp_path: Path) -> None:
    root = write_practicum(tmp_path)
    (root / "practicum" / "train_images" / "black.jpg").write_bytes(b"not a jpeg at all")
    data = load_practicum(root)
    assert data.report.count("unreadable_photo") == 1
    assert "black.jpg" not in set(data.pairs["image"])
    assert len(data.pairs[data.pairs["has_expert"]]) == 72 - 12


def test_wrong_column_count_fails_the_run_with_line_number(tmp_path: Path) -> None:
    root = write_practicum(tmp_path, extra_expert=["red.jpg\tred.jpg#0\t1\t1"])
    with pytest.raises(DataValidationError, match=r"wrong_column_count.*line 73"):
        load_practicum(root)
    assert issubclass(DataValidationError, InvalidInputError)


def test_non_numeric_vote_and_missing_file_fail(tmp_path: Path) -> None:
    root = write_practicum(tmp_path, extra_expert=["red.jpg\tblue.jpg#2\tx\t1\t1"])
    with pytest.raises(DataValidationError, match="non_numeric_score"):
        load_practicum(root)
    (root / "practicum" / "CrowdAnnotations.tsv").unlink()
    with pytest.raises(DataValidationError, match="missing_file"):
        load_practicum(root)


def test_quoted_csv_fields_keep_commas_and_quotes(tmp_path: Path) -> None:
    root = write_practicum(tmp_path)
    path = root / "practicum" / "train_dataset.csv"
    text = path.read_text().replace('"a red square"', '"a red, ""square"" thing"')
    path.write_text(text)
    data = load_practicum(root)
    assert 'a red, "square" thing' in set(data.pairs["query_text"])
    assert data.report.count("text_mismatch") >= 1  # differs from captions.tsv, reported


def test_heldout_format_is_read_and_faults_named(tmp_path: Path) -> None:
    folder = tmp_path / "test"
    (folder / "test_images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (8, 8), "red").save(folder / "test_images" / name)
    (folder / "test_images.csv").write_text("image\na.jpg\nb.jpg\nc.jpg\n")
    (folder / "test_queries.csv").write_text(
        "|query_id|query_text|image\n"
        "0|a.jpg#0|a red thing|a.jpg\n"
        "1|b.jpg#0|another red thing|b.jpg\n"
        "2|b.jpg#0|again|b.jpg\n"
        "3|z.jpg#0|who|z.jpg\n"
    )
    held = load_heldout(folder)
    assert held.queries["query_id"].tolist() == ["a.jpg#0", "b.jpg#0"]
    assert held.images == ["a.jpg", "b.jpg"]
    assert held.report.count("missing_image_file") == 1
    assert held.report.count("duplicate_pair") == 1
    assert held.report.count("unknown_image") == 1


def test_report_markdown_names_every_fault() -> None:
    report = ValidationReport()
    report.add("duplicate_pair", "x")
    report.add("duplicate_pair", "y")
    assert "| duplicate_pair | 2 | excluded | x; y |" in report.to_markdown()
    with pytest.raises(KeyError):
        report.add("made_up_kind")


# ---------------------------------------------------------------- one score


def test_merge_rule_on_hand_made_rows() -> None:
    assert expert_relevance(1, 1, 1) == 0.0
    assert expert_relevance(4, 4, 4) == 1.0
    assert merge_one((2, 3, 4), 0.0) == pytest.approx(0.6 * (2 / 3))
    assert merge_one((2, 3, 4), None) == pytest.approx(2 / 3)
    frame = pd.DataFrame(
        {
            "e1": [1, 4, 2, np.nan],
            "e2": [1, 4, 3, np.nan],
            "e3": [1, 4, 4, np.nan],
            "share_yes": [np.nan, 1.0, 1 / 3, 0.5],
        }
    )
    merged = merge_scores(frame)
    assert merged["score"].tolist() == pytest.approx([0.0, 1.0, 0.6 * 2 / 3 + 0.4 / 3])
    assert merged["expert_spread"].tolist() == [0, 0, 2]
    assert merged.attrs["dropped_crowd_only"] == 1
    assert merge_scores(frame, include_crowd_only=True)["score"].iloc[-1] == 0.5
    assert merged["score"].between(0, 1).all()


# ---------------------------------------------------------------- legal filter


def test_legal_filter_counts_pairs_queries_images(tmp_path: Path) -> None:
    data = load_practicum(write_practicum(tmp_path))
    scored = merge_scores(data.pairs, include_crowd_only=True)
    kept, report = apply_legal_filter(scored, kid_predicate, captions=data.captions)
    removed = scored[scored["query_text"].map(kid_predicate)]
    assert report.pairs_removed == len(removed) == len(scored) - len(kept)
    assert report.queries_removed == removed["query_id"].nunique() == 2  # "kids ...", "a boy ..."
    assert not kept["query_text"].map(kid_predicate).any()
    assert report.images_removed == 0 and report.images_before == 6
    assert report.images_touched >= 1


# ---------------------------------------------------------------- split


def test_grouped_split_never_shares_a_photo_and_is_seeded() -> None:
    frame = pd.DataFrame({"image": [f"img{i % 37}" for i in range(400)]})
    train, val = grouped_split(frame, seed=7)
    assert set(frame.image[train]).isdisjoint(set(frame.image[val]))
    assert len(train) + len(val) == len(frame)
    again = grouped_split(frame, seed=7)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert 0.1 < len(val) / len(frame) < 0.3


# ---------------------------------------------------------------- features and cache


def test_feature_cache_second_run_encodes_nothing(tmp_path: Path) -> None:
    root = write_practicum(tmp_path / "d")
    folder = root / "practicum" / "train_images"
    paths = sorted(folder.iterdir())
    copy = tmp_path / "copy_of_red.jpg"
    copy.write_bytes((folder / "red.jpg").read_bytes())
    bundle = FakeBundle()
    first = image_features([*paths, copy], bundle, tmp_path / "cache", batch_size=4)
    assert first.shape == (7, 6)
    assert bundle.image_encoder.items == 6  # the byte-identical copy is encoded once
    assert np.array_equal(first[-1], first[[p.name for p in paths].index("red.jpg")])
    again = image_features(list(reversed(paths)), bundle, tmp_path / "cache")
    assert bundle.image_encoder.items == 6  # all from the cache
    assert np.array_equal(again, first[:6][::-1])
    assert len(list((tmp_path / "cache" / "fake-1" / "image").glob("*.npz"))) == 1  # compacted

    other = FakeBundle("fake-2")  # another bundle id never reads these vectors
    image_features(paths[:2], other, tmp_path / "cache")
    assert other.image_encoder.items == 2

    texts = ["a red car", "blue sky", "a red car"]
    vectors = text_features(texts, bundle, tmp_path / "cache")
    assert vectors.shape == (3, 6) and bundle.text_encoder.items == 2
    text_features(texts, bundle, tmp_path / "cache")
    assert bundle.text_encoder.items == 2


def test_image_features_name_an_unreadable_photo(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    with pytest.raises(ImageDecodeError, match=r"bad\.jpg"):
        image_features([bad], FakeBundle(), tmp_path / "cache")


def test_damaged_cache_chunk_is_a_miss(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "b", "text")
    cache.put_many(["k1"], np.ones((1, 3)))
    (cache.folder / "zz-broken.npz").write_bytes(b"junk")
    fresh = FeatureCache(tmp_path, "b", "text")
    assert "k1" in fresh and len(fresh) == 1


# ---------------------------------------------------------------- models


def _synthetic_pairs(seed: int = 0):  # type: ignore[no-untyped-def]
    from pixsearch.exporter.regression import PairSet

    rng = np.random.default_rng(seed)
    img = rng.normal(size=(60, 8)).astype(np.float32)
    txt = rng.normal(size=(50, 8)).astype(np.float32)
    image_index = rng.integers(0, 60, 1500)
    text_index = rng.integers(0, 50, 1500)
    y = 1 / (1 + np.exp(-2 * np.sum(img[image_index] * txt[text_index], axis=1) / 3))
    return PairSet(img, txt, image_index, text_index), y


def test_constant_and_linear_models() -> None:
    from pixsearch.exporter.regression import ConstantModel, LinearModel, rmse

    pairs, y = _synthetic_pairs()
    constant = ConstantModel().fit(pairs, y)
    assert constant.value == pytest.approx(y.mean())
    linear = LinearModel().fit(pairs, y)
    prediction = linear.predict(pairs)
    assert prediction.min() >= 0 and prediction.max() <= 1
    assert rmse(y, prediction) <= rmse(y, constant.predict(pairs)) + 1e-9


@pytest.mark.train
def test_mlp_learns_an_interaction_and_repeats_exactly() -> None:
    pytest.importorskip("torch")
    from pixsearch.exporter.regression import (
        ConstantModel,
        LinearModel,
        MLPConfig,
        PairMLP,
        compare_models,
    )

    pairs, y = _synthetic_pairs()
    train_rows = np.flatnonzero(pairs.image_index < 48)
    val_rows = np.flatnonzero(pairs.image_index >= 48)
    config = MLPConfig(hidden=32, max_epochs=40, patience=10, seed=3, dropout=0.0)
    results = compare_models(
        [ConstantModel(), LinearModel(), PairMLP(config)],
        pairs.subset(train_rows),
        y[train_rows],
        pairs.subset(val_rows),
        y[val_rows],
    )
    constant, linear, mlp = (r.rmse for r in results)
    assert mlp < 0.8 * min(constant, linear)  # only the MLP can read the product
    a = PairMLP(config).fit(pairs.subset(train_rows), y[train_rows]).predict(pairs)
    b = PairMLP(config).fit(pairs.subset(train_rows), y[train_rows]).predict(pairs)
    assert np.array_equal(a, b)


# ---------------------------------------------------------------- workflow end to end


@pytest.mark.train
def test_run_train_and_eda_on_hand_made_data(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from pixsearch.exporter.regression import MLPConfig
    from pixsearch.exporter.workflow import run_eda, run_train

    root = write_practicum(tmp_path / "data")
    result = run_train(
        root,
        tmp_path / "out",
        bundle=FakeBundle(),
        cache_dir=tmp_path / "cache",
        predicate=kid_predicate,
        mlp_config=MLPConfig(hidden=8, max_epochs=5),
        n_examples=3,
        test_size=0.34,
    )
    names = [r.name for r in result.results]
    assert names[0].startswith("constant") and names[-1].startswith("MLP")
    card = result.card.read_text()
    assert "validation RMSE" in card and "Legal filter" in card
    assert (tmp_path / "out" / "examples.html").exists()
    assert len(result.examples) == 3
    assert result.filter_report.pairs_removed > 0

    page = run_eda(root, tmp_path / "eda", predicate=kid_predicate)
    html = page.read_text()
    assert html.count("data:image/png;base64") >= 10 and "Legal filter" in html


# ---------------------------------------------------------------- CLI


def test_cli_import_is_cheap() -> None:
    code = (
        "import sys, typer; from pixsearch.exporter import workflow_cli; "
        "app = typer.Typer(); workflow_cli.register(app); "
        "heavy = [m for m in ('torch', 'sklearn', 'pandas', 'matplotlib') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cli_commands_registered_and_missing_torch_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    runner = CliRunner()
    assert "--out" in runner.invoke(app, ["train", "--help"]).output
    assert "--out" in runner.invoke(app, ["eda", "--help"]).output

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "torch" else real_find_spec(name, *a),
    )
    outcome = runner.invoke(app, ["train", str(tmp_path)])
    assert outcome.exit_code == 7  # MissingExtraError, in pixsearch.search.exit_codes
    assert 'pip install "pixsearch[train]"' in outcome.output


def test_cli_eda_reports_a_data_fault_with_its_exit_code(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pixsearch.search.cli import app
    from pixsearch.search.exit_codes import exit_code_for

    root = write_practicum(tmp_path / "d", extra_expert=["red.jpg\tred.jpg#0"])
    outcome = CliRunner().invoke(app, ["eda", str(root), "--out", str(tmp_path / "o")])
    assert outcome.exit_code == exit_code_for(DataValidationError("x")) == 2
    assert "wrong_column_count" in outcome.output
