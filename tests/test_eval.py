"""``pixsearch eval``: query-file format, metrics, a real run over a handful of photos through
the runtime (policy included), the --show page, RMSE of scored pairs, and a run on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import copy_demo_photos
from typer.testing import CliRunner

from pixsearch.db.errors import InvalidInputError
from pixsearch.exporter.evaluate import (
    evaluate_search,
    metrics_from_ranks,
    read_queries,
    score_pairs_rmse,
)

KEYS = {
    "recall@1",
    "recall@5",
    "recall@10",
    "median_rank",
    "ndcg@10",
    "n_queries",
    "n_images",
    "blocked",
}
QUERIES = [
    ("q1", "a cat", "chelsea.png"),
    ("q2", "a cup of coffee", "coffee.png"),
    ("q3", "a motorcycle", "motorcycle_left.png"),
    ("q4", "a rocket launch", "rocket.jpg"),
    ("q5", "a toddler playing with a ball", "chelsea.png"),  # blocked under strict
]


def write_queries(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["|query_id|query_text|image"]
    lines += [f"{i}|{qid}|{text}|{image}" for i, (qid, text, image) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_metrics_from_ranks() -> None:
    m = metrics_from_ranks([1, 1, 4, 12], n_images=20)
    assert (m["recall@1"], m["recall@5"], m["recall@10"], m["median_rank"]) == (
        50.0,
        75.0,
        75.0,
        2.5,
    )
    assert m["ndcg@10"] == pytest.approx((1 + 1 + 1 / 2.321928) / 4, abs=1e-4)


def test_query_file_format(tmp_path: Path) -> None:
    queries, _issues = read_queries(write_queries(tmp_path / "q.csv", QUERIES[:2]))
    assert [(q.query_id, q.text, q.image) for q in queries] == [
        (a, b, c) for a, b, c in QUERIES[:2]
    ]
    (tmp_path / "bad.csv").write_text("query_id|query_text|image\nq|a|b.jpg\n")
    with pytest.raises(InvalidInputError, match=r"bad_header|wrong_column_count"):
        read_queries(tmp_path / "bad.csv")
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_queries(tmp_path / "missing.csv")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return copy_demo_photos(tmp_path_factory.mktemp("eval") / "photos")


def test_eval_through_the_runtime_counts_blocked_queries(photos: Path, tmp_path: Path) -> None:
    queries = write_queries(tmp_path / "test_queries.csv", QUERIES)
    strict = evaluate_search(queries, photos, policy="strict")
    assert set(strict.metrics) >= KEYS
    assert strict.metrics["blocked"] == 1 and strict.metrics["n_queries"] == 4
    assert strict.metrics["n_images"] == len(list(photos.iterdir()))
    none = evaluate_search(queries, photos, policy="none")
    assert none.metrics["blocked"] == 0 and none.metrics["n_queries"] == 5
    ranks = {q["query_id"]: q["rank"] for q in none.per_query}
    assert [ranks[q] for q in ("q1", "q2", "q3", "q4")] == [1, 1, 1, 1]  # the demo queries
    assert none.metrics["recall@1"] >= 80.0
    # Under strict, photos the child classifier flags are never returned: their queries rank
    # n_images + 1 (a miss); excluding photos can only lift every other query's own photo.
    n = strict.metrics["n_images"]
    strict_ranks = {q["query_id"]: q["rank"] for q in strict.per_query if not q["blocked"]}
    assert all(r == n + 1 or r <= ranks[qid] for qid, r in strict_ranks.items()), strict_ranks
    hits = sum(r <= 10 for r in strict_ranks.values())
    assert strict.metrics["recall@10"] == pytest.approx(100.0 * hits / len(strict_ranks))
    # Measured with the bundle of eac5a69: 50.0 (the cat and the rocket photos are restricted;
    # the cup and the motorcycle rank first). The floor leaves one more restricted photo.
    assert strict.metrics["recall@10"] >= 25.0, strict.per_query


def test_eval_cli_json_show_page_and_pairs(photos: Path, tmp_path: Path) -> None:
    from pixsearch.search.cli import app

    queries = write_queries(tmp_path / "test_queries.csv", QUERIES)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "image,query_text,score\nchelsea.png,a cat,1.0\ncoffee.png,a cat,0.0\n"
        "coffee.png,a cup of coffee,1\nrocket.jpg,a cup of coffee,0\n"
    )
    page = tmp_path / "show.html"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--queries",
            str(queries),
            "--images",
            str(photos),
            "--json",
            "--show",
            "5",
            "--html",
            str(page),
            "--pairs",
            str(pairs),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(payload) >= KEYS and payload["blocked"] == 1
    assert 0 <= payload["rmse"] <= 1 and payload["n_pairs"] == 4
    text = page.read_text()
    assert "data:image/jpeg;base64," in text and "toddler" in text
    assert "unavailable" in text or "disclaimer" in text
    table = CliRunner().invoke(app, ["eval", "--queries", str(queries), "--images", str(photos)])
    assert table.exit_code == 0 and "Recall@10" in table.stdout
    bad = CliRunner().invoke(
        app, ["eval", "--queries", str(queries), "--images", str(photos), "--show", "3"]
    )
    assert bad.exit_code == 2 and "--html" in bad.output


def test_scored_pairs_need_their_photos(photos: Path, tmp_path: Path) -> None:
    pairs = tmp_path / "p.csv"
    pairs.write_text("image,query_text,score\nnope.png,a cat,1\n")
    with pytest.raises(InvalidInputError, match="not in"):
        score_pairs_rmse(pairs, photos)


@pytest.mark.data
@pytest.mark.slow
def test_real_eval_on_shared_data_subset(shared_data: Path, tmp_path: Path) -> None:
    """25 customer photos, their captions that are not about children as queries.

    Most of these photos trained the shipped space: this checks the command end to end on real
    data, it is not a measurement (the model card has those).
    """
    import csv
    import shutil

    from pixsearch.indexer.policy import is_about_children

    source = shared_data / "practicum" / "train_images"
    names = sorted(p.name for p in source.glob("*.jpg"))[:25]
    folder = tmp_path / "test_images"
    folder.mkdir()
    for name in names:
        shutil.copyfile(source / name, folder / name)
    rows = []
    with open(shared_data / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["image"] in names and not is_about_children(row["caption"]):
                rows.append((f"{row['image']}#{row['caption_idx']}", row["caption"], row["image"]))
    queries = write_queries(tmp_path / "test_queries.csv", rows)
    result = evaluate_search(queries, folder, policy="none")
    m = result.metrics
    assert m["n_images"] == 25 and m["n_queries"] == len(rows)
    # chance is 40% R@10 among 25 photos; the shipped space is far above it
    assert m["recall@10"] > 70, m
