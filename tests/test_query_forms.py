"""A photo as the query (``search_like`` / ``--like``) and refinements (``add``/``sub``, ``--add``/
``--sub``), with the real bundle, real LanceDB and scikit-image's real photos.

The demo database has one photo restricted by its caption (``coins.png.txt`` says it shows
children), as a user's sidecar would restrict it; the bundle's child classifier flags others
(its recall is bought with false positives: a cat, the moon).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_demo_photos, noise_image
from typer.testing import CliRunner

from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.errors import ImageDecodeError
from pixsearch.indexer.policy import DEFAULT_DISCLAIMER
from pixsearch.search import ImageSearch, PhotoId, exit_codes
from pixsearch.search.cli import app
from pixsearch.search.query import QueryPart, as_parts, combine, describe, parse_part

runner = CliRunner()
RESTRICTED = "coins.png"
"""Restricted by its caption only (the classifier lets it pass)."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[ImageSearch, Path]:
    """The 14 demo photos, indexed; ``coins.png`` restricted by its sidecar caption."""
    root = tmp_path_factory.mktemp("like")
    photos = copy_demo_photos(root / "photos")
    (photos / f"{RESTRICTED}.txt").write_text("my kids' coin collection", "utf-8")
    engine = ImageSearch(root / "db", policy="none")
    report = engine.index(photos)
    assert report.added == 14 and not report.failed
    rows = engine.store.scan(["path", "restricted", "caption"]).to_pylist()
    by_caption = [Path(r["path"]).name for r in rows if r["restricted"] and r["caption"]]
    assert by_caption == [RESTRICTED]
    return engine, photos


def _flagged(engine: ImageSearch) -> list[str]:
    """Photos the child classifier flags (restricted without a caption)."""
    rows = engine.store.scan(["path", "restricted", "caption"]).to_pylist()
    names = sorted(Path(r["path"]).name for r in rows if r["restricted"] and not r["caption"])
    assert names, "the bundle's child classifier flags none of the demo photos any more"
    return names


def _allowed(engine: ImageSearch) -> set[str]:
    rows = engine.store.scan(["path", "restricted"]).to_pylist()
    return {Path(r["path"]).name for r in rows if not r["restricted"]}


# -- a photo as the query --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png", "rocket.jpg", "moon.png"])
def test_like_returns_the_photo_itself_first(demo, name: str) -> None:
    engine, photos = demo
    response = engine.search_like(photos / name, k=5)
    assert not response.blocked and len(response) == 5
    assert response.results[0].path == str(photos / name), response.paths
    assert response.results[0].score == pytest.approx(1.0, abs=1e-4)
    assert response.results[1].score < 0.99  # the others are other photos


def test_like_by_id_is_like_by_path(demo) -> None:
    engine, photos = demo
    by_path = engine.search_like(str(photos / "coffee.png"), k=6)
    by_id = engine.search_like(by_path.results[0].id, k=6)
    assert by_id.paths == by_path.paths


def test_a_photo_outside_the_database_is_encoded_on_the_fly(demo, tmp_path: Path) -> None:
    """A copy elsewhere is read and encoded as indexing would: its twin in the database comes
    first at similarity 1; a new photo (noise) gets results ranked by cosine."""
    engine, photos = demo
    copy = shutil.copyfile(photos / "motorcycle_left.png", tmp_path / "bike.png")
    response = engine.search_like(copy, k=3)
    assert response.results[0].path == str(photos / "motorcycle_left.png")
    assert response.results[0].score == pytest.approx(1.0, abs=1e-3)
    noise = engine.search_like(noise_image(tmp_path / "noise.jpg", seed=3), k=3)
    scores = [r.score for r in noise.results]
    assert len(noise) == 3 and scores == sorted(scores, reverse=True) and scores[0] < 0.99


def test_a_changed_indexed_photo_is_encoded_again(tmp_path: Path) -> None:
    """The stored vector is reused only while the file is unchanged (size, mtime, caption)."""
    photos = copy_demo_photos(tmp_path / "all")
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("brick.png", "coins.png"):
        shutil.copyfile(photos / name, folder / name)
    engine = ImageSearch(tmp_path / "db", policy="none")
    engine.index(folder)
    assert engine.search_like(folder / "brick.png", k=1).paths == [str(folder / "brick.png")]
    shutil.copyfile(photos / "coins.png", folder / "brick.png")  # now holds the coins photo
    response = engine.search_like(folder / "brick.png", k=2)
    assert response.paths == [str(folder / "coins.png"), str(folder / "brick.png")]
    assert response.results[0].score == pytest.approx(1.0, abs=1e-3)


def test_a_photo_id_is_never_read_as_a_file(demo, tmp_path: Path, monkeypatch) -> None:
    """``PhotoId`` (what serve passes on) is only looked up in the database."""
    engine, photos = demo
    shutil.copyfile(photos / "coffee.png", tmp_path / "0123456789abcdef")
    monkeypatch.chdir(tmp_path)
    as_path = engine.search_like("0123456789abcdef", k=1)  # a file here: read as a photo
    assert as_path.paths == [str(photos / "coffee.png")]
    with pytest.raises(InvalidInputError, match="no indexed photo has the id"):
        engine.search_like(PhotoId("0123456789abcdef"))
    coffee = _id(engine, "coffee.png")
    assert engine.search_like(PhotoId(coffee), k=1).paths == [str(photos / "coffee.png")]


def test_bad_query_photos_are_typed_errors(demo, tmp_path: Path) -> None:
    engine, photos = demo
    with pytest.raises(InvalidInputError, match="neither a photo file nor the id"):
        engine.search_like(tmp_path / "missing.jpg")
    with pytest.raises(InvalidInputError, match="neither a photo file nor the id"):
        engine.search_like("0123456789abcdef")  # an id's shape, but not in the database
    with pytest.raises(InvalidInputError, match="not a photo file"):
        engine.search_like(photos)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageDecodeError, match="cannot search by"):
        engine.search_like(broken)


# -- the content policy ---------------------------------------------------------------------
def test_a_restricted_query_photo_gets_the_disclaimer_under_strict(demo) -> None:
    """Restricted by its caption or flagged by the classifier, by path or by id."""
    engine, photos = demo
    flagged = _flagged(engine)[0]
    for photo in (photos / RESTRICTED, _id(engine, RESTRICTED), photos / flagged):
        strict = engine.search_like(photo, k=5, policy="strict")
        assert strict.blocked and strict.results == [] and strict.message == DEFAULT_DISCLAIMER
        loose = engine.search_like(photo, k=5, policy="none")
        assert not loose.blocked and loose.results[0].path in (str(photo), str(photos / RESTRICTED))


def test_a_query_photo_restricted_on_the_fly_gets_the_disclaimer(demo, tmp_path: Path) -> None:
    """Outside the database, the photo's own caption and the child classifier decide."""
    engine, photos = demo
    name = sorted(_allowed(engine))[0]  # a photo the child classifier does not flag
    copy = shutil.copyfile(photos / name, tmp_path / "cup.png")
    allowed = engine.search_like(copy, policy="strict")
    assert not allowed.blocked and Path(allowed.paths[0]).name == name
    (tmp_path / "cup.png.txt").write_text("a boy's cup of cocoa", "utf-8")
    assert engine.search_like(copy, policy="strict").blocked
    flagged = shutil.copyfile(photos / _flagged(engine)[0], tmp_path / "flagged.png")
    assert engine.search_like(flagged, policy="strict").blocked
    assert not engine.search_like(flagged, policy="none").blocked


def test_restricted_photos_are_never_returned_under_strict(demo) -> None:
    engine, photos = demo
    allowed = _allowed(engine)
    for name in sorted(allowed):
        strict = engine.search_like(photos / name, k=14, policy="strict")
        assert strict.paths[0] == str(photos / name)
        assert {Path(p).name for p in strict.paths} == allowed
        assert len(engine.search_like(photos / name, k=14, policy="none")) == 14


@pytest.mark.parametrize("option", ["add", "sub"])
def test_a_refinement_about_children_gets_the_disclaimer_under_strict(demo, option) -> None:
    engine, _ = demo
    strict = engine.search("a cup of coffee", k=3, policy="strict", **{option: ["kids"]})
    assert strict.blocked and strict.results == [] and strict.message == DEFAULT_DISCLAIMER
    loose = engine.search("a cup of coffee", k=3, policy="none", **{option: ["kids"]})
    assert not loose.blocked and len(loose) == 3


# -- refinements ------------------------------------------------------------------------------
def test_parts_are_parsed_as_rclip_reads_them(demo) -> None:
    _, photos = demo
    assert parse_part("snow:0.5") == QueryPart.of_text("snow", 0.5)
    assert parse_part("people", -1) == QueryPart.of_text("people", -1.0)
    assert parse_part("dinner at 19:30") == QueryPart.of_text("dinner at 19:30")
    assert parse_part(str(photos / "coins.png")) == QueryPart.of_photo(photos / "coins.png")
    assert parse_part(f"{photos / 'coins.png'}:2", -1) == QueryPart.of_photo(
        photos / "coins.png", -2.0
    )
    assert parse_part("coins.png") == QueryPart.of_text("coins.png")  # no such file here
    assert as_parts([("snow", 0.25), QueryPart.of_text("ice", 3)], -1) == [
        QueryPart.of_text("snow", -0.25),
        QueryPart.of_text("ice", -3.0),
    ]
    for bad in ("snow:0", ("snow", -1), ("snow", True)):
        with pytest.raises(InvalidInputError, match="weight"):
            as_parts([bad], 1)
    line = describe([QueryPart.of_text("a beach"), parse_part("sunset:2"), parse_part("dog", -1)])
    assert line == "a beach + sunset:2 - dog"


def test_the_combined_vector_is_the_weighted_sum(demo) -> None:
    engine, _ = demo
    space, encoder = engine.bundle.space, engine.bundle.text_encoder
    cat, grass = space.text_vectors(encoder.encode(["a cat", "grass"]))
    expected = (cat - 0.5 * grass) / np.linalg.norm(cat - 0.5 * grass)
    np.testing.assert_allclose(combine(np.stack([cat, grass]), [1, -0.5]), expected, atol=1e-5)
    response = engine.search("a cat", k=14, sub=["grass:0.5"])
    stored = {
        r["path"]: np.asarray(r["vector"])
        for r in engine.store.scan(["path", "vector"]).to_pylist()
    }
    for result in response.results:
        assert result.score == pytest.approx(float(stored[result.path] @ expected), abs=1e-4)


def test_sub_removes_the_concept_added(demo) -> None:
    """Adding a photo pulls it up; subtracting the same photo pushes it down the list."""
    engine, photos = demo
    plain = engine.search("a photo", k=14).paths
    coins = str(photos / "coins.png")
    assert engine.search("a photo", k=14, add=[coins]).paths[0] == coins
    assert engine.search("a photo", k=14, sub=[coins]).paths[-1] == coins
    assert plain.index(coins) not in (0, 13)  # neither end without the refinement


def test_like_with_refinements(demo) -> None:
    """``search_like`` takes add/sub too: the query photo stays first while the rest moves."""
    engine, photos = demo
    plain = engine.search_like(photos / "chelsea.png", k=5)
    refined = engine.search_like(photos / "chelsea.png", k=5, add=["a cup of coffee:2"])
    assert refined.paths[0] == plain.paths[0] == str(photos / "chelsea.png")
    assert refined.paths[1] == str(photos / "coffee.png") != plain.paths[1]
    assert refined.query == f"photo:{photos / 'chelsea.png'} + a cup of coffee:2"


def test_parts_that_cancel_out_are_refused(demo) -> None:
    engine, _ = demo
    with pytest.raises(InvalidInputError, match="cancel out"):
        engine.search("a cat", sub=["a cat"])
    with pytest.raises(InvalidInputError, match="empty"):
        engine.search("a cat", add=["  "])


# -- the command line ------------------------------------------------------------------------
def _cli(engine: ImageSearch, *args: str):
    return runner.invoke(app, ["search", *args, "--db", engine.uri, "--policy", "none"])


def test_cli_like_prints_the_photo_first(demo) -> None:
    engine, photos = demo
    result = _cli(engine, "--like", str(photos / "rocket.jpg"), "-k", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split()[2] == str(photos / "rocket.jpg")
    by_id = _cli(engine, "--like", _id(engine, "rocket.jpg"), "-k", "3", "--paths-only")
    assert by_id.stdout.splitlines() == [line.split()[2] for line in result.stdout.splitlines()]


def test_cli_like_with_text_adds_the_text(demo) -> None:
    engine, photos = demo
    chelsea = str(photos / "chelsea.png")
    result = _cli(engine, "a cup of coffee", "--like", chelsea, "--add", "coffee:1", "--json")
    payload = json.loads(result.stdout)
    assert payload["query"] == f"photo:{chelsea} + a cup of coffee + coffee"
    assert [Path(r["path"]).name for r in payload["results"][:2]] == ["chelsea.png", "coffee.png"]


def test_cli_add_and_sub_with_weights_and_photos(demo) -> None:
    engine, photos = demo
    coins = str(photos / "coins.png")
    added = _cli(engine, "a photo", "--add", coins, "-a", "a rocket:0.1", "--json", "-k", "14")
    payload = json.loads(added.stdout)
    assert added.exit_code == 0 and payload["results"][0]["path"] == coins
    assert payload["query"] == f"a photo + photo:{coins} + a rocket:0.1"
    subtracted = _cli(
        engine, "a photo", "--sub", coins, "-s", "grass:0.5", "--paths-only", "-k", "14"
    )
    assert subtracted.exit_code == 0 and subtracted.stdout.splitlines()[-1] == coins


def test_cli_errors_and_the_policy(demo, tmp_path: Path) -> None:
    engine, photos = demo
    assert _cli(engine).exit_code == exit_codes.BAD_INPUT  # neither TEXT nor --like
    missing = _cli(engine, "--like", str(tmp_path / "nope.jpg"))
    assert missing.exit_code == exit_codes.BAD_INPUT and "neither a photo file" in missing.output
    assert _cli(engine, "a cat", "--sub", "a cat").exit_code == exit_codes.BAD_INPUT
    assert _cli(engine, "a cat", "--add", "snow:0").exit_code == exit_codes.BAD_INPUT
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert _cli(engine, "--like", str(broken)).exit_code == 8
    strict = ["--policy", "strict"]
    for args in (
        ["--like", str(photos / RESTRICTED)],
        ["a beach", "--sub", "kids"],
        ["a beach", "--add", "kids:0.2"],
    ):
        result = runner.invoke(app, ["search", *args, "--db", engine.uri, *strict])
        assert result.exit_code == exit_codes.BLOCKED, (args, result.output)
        assert DEFAULT_DISCLAIMER in result.output


def _id(engine: ImageSearch, name: str) -> str:
    rows = engine.store.scan(["id", "path"]).to_pylist()
    return next(row["id"] for row in rows if Path(row["path"]).name == name)


# -- does --sub remove a concept? (real Flickr8k photos) -------------------------------------
DOG = {"dog", "dogs", "puppy"}
CONCEPTS = {
    "grass": {"grass", "grassy", "field", "lawn"},
    "snow": {"snow", "snowy"},
    "water": {"water", "pool", "lake", "river", "ocean", "sea", "beach", "surf", "waves"},
}


@pytest.fixture(scope="module")
def dogs(shared_data: Path, tmp_path_factory) -> tuple[ImageSearch, dict[str, set[str]]]:
    """The customer's photos of dogs whose captions name each concept (20 per concept) and
    none (20): all show dogs, so "a dog" alone ranks them without regard to the concept."""
    import csv
    import re
    from collections import defaultdict

    words: dict[str, set[str]] = defaultdict(set)
    with open(shared_data / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            words[row["image"]] |= set(re.findall("[a-z]+", row["caption"].lower()))
    source = shared_data / "practicum" / "train_images"
    names = sorted(p.name for p in source.iterdir() if words[p.name] & DOG)
    any_concept = set().union(*CONCEPTS.values())
    chosen = [n for n in names if not words[n] & any_concept][:20]
    for concept_words in CONCEPTS.values():
        chosen += [n for n in names if words[n] & concept_words and n not in chosen][:20]
    root = tmp_path_factory.mktemp("dogs")
    (root / "photos").mkdir()
    for name in chosen:
        shutil.copyfile(source / name, root / "photos" / name)
    engine = ImageSearch(root / "db", policy="none")
    assert engine.index(root / "photos").added == len(chosen) == 80
    return engine, {name: words[name] for name in chosen}


@pytest.mark.data
@pytest.mark.parametrize("query", ["a dog", "a dog running"])
def test_sub_removes_a_concept_from_the_top_results(dogs, query: str) -> None:
    """Measured by captions: the share of the top 20 whose captions name the subtracted concept
    drops (summed over grass, snow and water, by at least half), and on the whole ranking the
    concept's photos sink (their mean rank among 80 moves down by at least 10 places)."""
    engine, words = dogs

    def named(paths: list[str], concept: str) -> list[int]:
        return [i for i, p in enumerate(paths) if words[Path(p).name] & CONCEPTS[concept]]

    top_before = top_after = 0
    for concept in CONCEPTS:
        before = engine.search(query, k=80).paths
        after = engine.search(query, k=80, sub=[concept]).paths
        top_before += sum(i < 20 for i in named(before, concept))
        top_after += sum(i < 20 for i in named(after, concept))
        sink = np.mean(named(after, concept)) - np.mean(named(before, concept))
        assert sink >= 10, (concept, sink)
    assert top_after <= top_before / 2, (top_before, top_after)
