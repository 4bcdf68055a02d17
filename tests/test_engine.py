"""ImageSearch end to end with the real ONNX bundle, real LanceDB and real photos."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import copy_demo_photos, make_old_bundle_table, noise_image, unflagged_photo
from PIL import Image

from pixsearch.db.errors import (
    BundleMismatchError,
    DatabaseError,
    DatabaseLockedError,
    InvalidInputError,
    SchemaVersionError,
)
from pixsearch.db.schema import TABLE_NAME, photo_schema
from pixsearch.db.store import PhotoStore
from pixsearch.search import Filter, ImageSearch
from pixsearch.search.demo import DEMO_QUERIES


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory) -> ImageSearch:
    root = tmp_path_factory.mktemp("demo")
    photos = copy_demo_photos(root / "photos")
    # Ranking is under test here, not the content policy (tests/test_policy_enforcement.py).
    engine = ImageSearch(root / "db", policy="none")
    report = engine.index(photos)
    assert report.added == len(os.listdir(photos)) and not report.failed
    return engine


@pytest.mark.parametrize(("query", "expected"), DEMO_QUERIES)
def test_obvious_query_finds_the_right_photo_first(demo_engine, query, expected) -> None:
    response = demo_engine.search(query, k=3)
    assert not response.blocked
    assert Path(response.results[0].path).name == expected, response.paths


def test_results_are_typed_sorted_and_json_shaped(demo_engine) -> None:
    response = demo_engine.search("a cup of coffee", k=5)
    scores = [result.score for result in response.results]
    assert len(response) == 5 and scores == sorted(scores, reverse=True)
    payload = response.to_dict()
    assert list(payload)[:4] == ["query", "blocked", "message", "results"]
    assert set(payload["results"][0]) >= {"path", "score", "width", "height", "format"}


def test_filters_are_prefilters(demo_engine) -> None:
    jpegs = demo_engine.search("a rocket", k=10, filters=["format=JPEG"])
    assert jpegs.results and {result.format for result in jpegs.results} == {"JPEG"}
    wide = demo_engine.search("a rocket", k=10, filters=[Filter("width", ">=", 600)])
    assert all(result.width >= 600 for result in wide.results)
    assert demo_engine.search("a cat", k=3, min_score=2.0).results == []


def test_a_one_search_engine_drops_its_models_before_the_vector_search(demo_engine) -> None:
    """``keep_models=False`` (the CLI's search): once the query is encoded, the text models
    are gone (their memory is not held while the vector index loads); the results are the
    same, and a second search loads the models again."""
    engine = ImageSearch(demo_engine.uri, policy="none", keep_models=False)
    expected = demo_engine.search("a cup of coffee", k=5, filters=["width>=100"])
    first = engine.search("a cup of coffee", k=5, filters=["width>=100"])
    encoder = engine.bundle.text_encoder
    assert encoder.model._session is None and encoder._tokenizer is None
    assert engine.bundle.space.text_head is None or engine.bundle.space.text_head._session is None
    assert first.to_dict() == expected.to_dict() and len(first) == 5
    assert engine.search("a cup of coffee", k=5, filters=["width>=100"]).paths == first.paths
    assert demo_engine.bundle.text_encoder.model._session is not None  # the default keeps them


def test_stats(demo_engine) -> None:
    stats = demo_engine.stats()
    assert stats.photos == 14 and stats.bundle_id == demo_engine.bundle.id
    assert stats.formats["PNG"] > 0 and stats.formats["JPEG"] > 0


@pytest.mark.parametrize("query", ["", "   ", "\x00\u200b\t"])
def test_empty_query_is_a_clear_error(demo_engine, query) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        demo_engine.search(query)


@pytest.mark.parametrize("k", [0, -1, 1001, 2.5, True])
def test_bad_k_is_rejected(demo_engine, k) -> None:
    with pytest.raises(InvalidInputError, match="k must be"):
        demo_engine.search("a cat", k=k)


def test_long_query_is_truncated_with_a_warning(demo_engine) -> None:
    response = demo_engine.search("a cat sitting on a mat " * 5000, k=1)
    assert response.results and "tokens long" in response.warnings[0]


def test_incremental_index_rename_duplicate_modify_delete(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(5):
        noise_image(photos / f"n{seed}.png", seed)
    engine = ImageSearch(tmp_path / "db")
    first = engine.index(photos)
    assert (first.added, first.encoded) == (5, 5)

    second = engine.index(photos)
    assert (second.unchanged, second.encoded, second.added) == (5, 0, 0)

    os.rename(photos / "n0.png", photos / "renamed.png")
    shutil.copyfile(photos / "n1.png", photos / "copy.png")
    noise_image(photos / "n2.png", seed=99)  # new content, same name
    os.remove(photos / "n3.png")
    third = engine.index(photos)
    assert third.renamed == 1 and third.reused == 2 and third.updated == 1
    # a rename is counted once (issue #19): n3 was removed, n0 was renamed, not also removed
    assert third.removed == 1 and third.encoded == 1 and third.added == 1
    rows = engine.store.scan(["path"]).column("path").to_pylist()
    assert sorted(Path(p).name for p in rows) == [
        "copy.png",
        "n1.png",
        "n2.png",
        "n4.png",
        "renamed.png",
    ]
    assert engine.store.count() == 5


def test_bad_files_are_reported_and_others_indexed(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "good.jpg", 1)
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "random.jpg").write_bytes(os.urandom(2000))
    (photos / "text.png").write_text("not a png")
    good = (photos / "good.jpg").read_bytes()
    (photos / "truncated.jpg").write_bytes(good[: len(good) // 2])
    report = ImageSearch(tmp_path / "db").index(photos)
    failed = dict((Path(p).name, reason) for p, reason in report.failed)
    assert {"empty.jpg", "random.jpg", "text.png"} <= set(failed)
    assert all(reason for reason in failed.values())
    assert report.added >= 1


def test_exif_rotated_photo_matches_upright(tmp_path: Path) -> None:
    from pixsearch.indexer.preprocess import load_photo

    upright = Image.open(noise_image(tmp_path / "up.png", 3, size=(80, 40)))
    rotated = upright.rotate(90, expand=True)  # stored sideways, EXIF says turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(tmp_path / "rot.jpg", exif=exif, quality=100)
    upright.save(tmp_path / "up.jpg", quality=100)
    a, b = load_photo(tmp_path / "up.jpg"), load_photo(tmp_path / "rot.jpg")
    assert (b.width, b.height) == (80, 40)
    assert abs(a.pixels.astype(int) - b.pixels.astype(int)).mean() < 12


def test_bundle_mismatch_names_reindex_and_reindex_fixes_it(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "a.png", 1)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    make_old_bundle_table(engine)
    fresh = ImageSearch(tmp_path / "db")
    with pytest.raises(BundleMismatchError, match="pixsearch reindex"):
        fresh.search("noise")
    report = fresh.reindex()
    assert report.updated == 1 and report.encoded == 1  # another encoder: photos read again
    assert fresh.search("noise", k=1, policy="none").results  # the reindex under test


def test_reindex_reprojects_stored_features_without_decoding(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    noise_image(photos / "a.png", 1)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    os.remove(photos / "a.png")  # decoding is impossible now
    report = engine.reindex()
    assert report.updated == 1 and report.encoded == 0
    assert engine.store.count() == 1


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    import lancedb

    engine = ImageSearch(tmp_path / "db")
    schema = photo_schema(
        vector_dim=engine.bundle.vector_dim, feature_dim=1280, bundle_id=engine.bundle.id, space="x"
    )
    newer = schema.with_metadata({**schema.metadata, b"pixsearch.schema_version": b"99"})
    lancedb.connect(tmp_path / "db").create_table(TABLE_NAME, schema=newer)
    version = PhotoStore(tmp_path / "db").version()
    noise_image(tmp_path / "a.png", 1)
    with pytest.raises(SchemaVersionError, match="newer pixsearch"):
        engine.index(tmp_path / "a.png")
    assert PhotoStore(tmp_path / "db").version() == version


def test_second_writer_fails_clearly(tmp_path: Path) -> None:
    engine = ImageSearch(tmp_path / "db")
    noise_image(tmp_path / "a.png", 1)
    with engine.store.writer_lock(), pytest.raises(DatabaseLockedError, match="another"):
        ImageSearch(tmp_path / "db").index(tmp_path / "a.png")


def test_search_before_index_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="pixsearch index"):
        ImageSearch(tmp_path / "db").search("a cat")


def test_remove_by_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "p" / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "sub/b.png", "sub/c.png"]):
        noise_image(tmp_path / "p" / name, i)
    engine = ImageSearch(tmp_path / "db")
    engine.index(tmp_path / "p")
    assert engine.remove([tmp_path / "p" / "a.png"]) == 1
    assert engine.remove([tmp_path / "p" / "sub"]) == 2
    assert engine.store.count() == 0


def test_captions_about_children_restrict_the_photo(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    unflagged_photo(photos / "beach.png")  # only captions restrict it
    noise_image(photos / "party.png", 2)
    (photos / "party.png.txt").write_text("Two little boys at a birthday party\n")
    exif = Image.Exif()
    exif[0x010E] = "A girl on a swing"
    Image.open(noise_image(photos / "swing.png", 3)).convert("RGB").save(
        photos / "swing.jpg", exif=exif
    )
    os.remove(photos / "swing.png")
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    rows = {
        Path(r["path"]).name: r
        for r in engine.store.scan(["path", "caption", "restricted"]).to_pylist()
    }
    assert rows["party.png"]["caption"] == "Two little boys at a birthday party"
    assert rows["party.png"]["restricted"] and rows["swing.jpg"]["restricted"]
    assert not rows["beach.png"]["restricted"]
    strict = engine.search("noise", k=3)
    assert [Path(p).name for p in strict.paths] == ["beach.png"]
    assert len(engine.search("noise", k=3, policy="none")) == 3


def test_database_default_policy(tmp_path: Path) -> None:
    noise_image(tmp_path / "a.png", 1)
    engine = ImageSearch(tmp_path / "db")
    engine.index(tmp_path / "a.png")
    assert engine.default_policy == "strict"
    assert engine.search("a little boy").blocked
    engine.set_default_policy("none")
    reopened = ImageSearch(tmp_path / "db")
    assert reopened.default_policy == "none" and not reopened.search("a little boy").blocked
    assert ImageSearch(tmp_path / "db", policy="strict").search("a little boy").blocked
    with pytest.raises(InvalidInputError, match="strict"):
        engine.set_default_policy("lenient")


def test_learned_policy_blocks_a_reworded_query_the_lexicon_misses(tmp_path: Path) -> None:
    """The query classifier reads the embedding search computes; strict blocks, none runs."""
    noise_image(tmp_path / "a.png", 1)
    engine = ImageSearch(tmp_path / "db")
    engine.index(tmp_path / "a.png")
    query = "little people on a carousel"
    blocked = engine.search(query)
    assert blocked.blocked and blocked.results == [] and blocked.message
    assert len(engine.search(query, policy="none")) == 1
    assert not engine.search("a carousel at a fair").blocked


def test_default_policy_changed_elsewhere_is_seen_by_a_running_search(tmp_path: Path) -> None:
    """The settings are cached per version of their table: a change made through another
    handle (another process, e.g. an admin running the CLI) applies to the next search."""
    noise_image(tmp_path / "a.png", 1)
    server = ImageSearch(tmp_path / "db")
    server.index(tmp_path / "a.png")
    assert server.search("a little boy").blocked  # strict, now cached
    ImageSearch(tmp_path / "db").set_default_policy("none")
    assert server.default_policy == "none" and not server.search("a little boy").blocked
    ImageSearch(tmp_path / "db").set_default_policy("strict")
    assert server.search("a little boy").blocked
