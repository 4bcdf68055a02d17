"""What an index run compares with the table (issues #14, #19): caption files, unreadable
folders, object-store listings that fail, symlinked roots, index health, older tables.

Real photos (generated), the real bundle, real LanceDB tables in temporary folders.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import noise_image, unflagged_photo
from test_object_store import S3Server, bucket, s3  # noqa: F401  (fixtures)

from pixsearch.db.schema import SCHEMA_VERSION, table_info
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.batch import run_reindex
from pixsearch.indexer.sources import PhotoSource
from pixsearch.search import ImageSearch

ABOUT_CHILDREN = "my kids on a mountain trip"


def _photos(folder: Path, count: int, *, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise_image(folder / f"p{i}.png", seed + i, size=(40, 30))
    return folder


def _row(engine: ImageSearch, name: str) -> dict:
    rows = engine.store.scan(["path", "caption", "restricted"]).to_pylist()
    return next(row for row in rows if Path(row["path"]).name == name)


# -- captions (#14, leak 2) ---------------------------------------------------------------------
def test_a_caption_added_after_indexing_restricts_the_photo_without_reencoding(tmp_path):
    photos = _photos(tmp_path / "photos", 2)
    unflagged_photo(photos / "p0.png")
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    assert _row(engine, "p0.png")["restricted"] is False  # the classifier says no

    (photos / "p0.png.txt").write_text(ABOUT_CHILDREN)
    report = engine.index(photos)
    assert (report.updated, report.unchanged, report.encoded) == (1, 1, 0), report
    assert _row(engine, "p0.png") == {
        "path": str(photos / "p0.png"),
        "caption": ABOUT_CHILDREN,
        "restricted": True,
    }
    assert engine.index(photos).unchanged == 2  # remembered: nothing to redo

    (photos / "p0.png.txt").write_text("a mountain trip")  # edited
    edited = engine.index(photos)
    assert (edited.updated, edited.encoded) == (1, 0)
    assert _row(engine, "p0.png")["restricted"] is False

    (photos / "p0.png.txt").unlink()
    (photos / "p0.txt").write_text(ABOUT_CHILDREN)  # the other sidecar name counts too
    assert engine.index(photos).updated == 1 and _row(engine, "p0.png")["restricted"] is True
    (photos / "p0.txt").unlink()  # deleted: the photo's own (absent) description again
    deleted = engine.index(photos)
    assert (deleted.updated, deleted.encoded) == (1, 0)
    assert _row(engine, "p0.png") == {
        "path": str(photos / "p0.png"),
        "caption": None,
        "restricted": False,
    }


def test_reindex_re_evaluates_an_edited_caption_too(tmp_path):
    photos = _photos(tmp_path / "photos", 2)
    engine = ImageSearch(tmp_path / "db")
    engine.reindex(photos)
    (photos / "p1.png.txt").write_text(ABOUT_CHILDREN)
    report = engine.reindex(photos)
    assert (report.updated, report.encoded, report.unchanged) == (1, 0, 1)
    assert _row(engine, "p1.png")["restricted"] is True


def test_a_table_of_schema_1_still_opens_and_is_upgraded_in_place(tmp_path):
    photos = _photos(tmp_path / "photos", 3)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    current = engine.store.table.to_arrow()
    old_schema = current.schema.remove(current.schema.get_field_index("caption_source"))
    old_schema = old_schema.with_metadata(
        {**old_schema.metadata, b"pixsearch.schema_version": b"1"}
    )
    engine.store.replace_all(current.drop_columns(["caption_source"]), old_schema)
    reader = ImageSearch(tmp_path / "db")
    assert reader.store.table_info().schema_version == 1
    assert len(reader.search("noise", k=2, policy="none")) == 2  # read as it is

    (photos / "p2.png.txt").write_text(ABOUT_CHILDREN)
    report = ImageSearch(tmp_path / "db").index(photos)
    assert (report.unchanged, report.updated, report.encoded) == (2, 1, 0)
    store = PhotoStore(tmp_path / "db")
    assert store.table_info().schema_version == SCHEMA_VERSION == 2
    assert "caption_source" in store.table.schema.names
    assert _row(ImageSearch(tmp_path / "db"), "p2.png")["restricted"] is True


# -- unreadable folders (#19) -------------------------------------------------------------------
_CHILD = """
import json, os, sys
from pixsearch.search import ImageSearch
db, photos, secret = sys.argv[1:4]
try:
    os.listdir(secret)
    readable = True
except PermissionError:
    readable = False
report = ImageSearch(db).index(photos)
print(json.dumps({"secret_readable": readable, **report.to_dict()}))
"""


def _without_permission_override() -> None:
    """In the child, before exec: root loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its
    bounding set, so file permissions apply to it as to anyone (the executed interpreter gets
    no more capabilities than the bounding set allows)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_an_unreadable_subfolder_keeps_its_rows(tmp_path):
    photos = tmp_path / "photos"
    _photos(photos / "open", 2)
    secret = _photos(photos / "secret", 2, seed=10)
    db = tmp_path / "db"
    assert ImageSearch(db).index(photos).added == 4
    secret.chmod(0)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(db), str(photos), str(secret)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            preexec_fn=_without_permission_override,
            env={**os.environ, "LANCEDB_LOG": "error"},
        )
    finally:
        secret.chmod(0o755)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["secret_readable"] is False  # the folder really could not be listed
    assert (report["removed"], report.get("kept"), report["unchanged"]) == (0, 2, 2)
    assert {"path": str(secret), "reason": "cannot read folder: Permission denied"} in report[
        "skipped"
    ]
    assert ImageSearch(db).store.count() == 4
    assert ImageSearch(db).index(photos).removed == 0  # readable again: all there


def test_an_object_store_prefix_that_cannot_be_listed_keeps_its_rows(
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    s3.put_photos(f"{bucket}/photos", 3)
    engine = ImageSearch(tmp_path / "db")
    bundle = engine.bundle
    assert (
        run_reindex(
            engine.store, bundle, PhotoSource(f"{bucket}/photos/", storage_options=s3.options)
        ).added
        == 3
    )
    unreachable = {**s3.options, "aws_endpoint": "http://127.0.0.1:9"}  # nothing listens there
    report = run_reindex(
        engine.store, bundle, PhotoSource(f"{bucket}/photos/", storage_options=unreachable)
    )
    assert (report.removed, report.kept) == (0, 3)
    assert [path for path, _ in report.skipped] == [f"{bucket}/photos/"]
    assert "cannot list" in report.skipped[0][1]
    assert engine.store.count() == 3


# -- symbolic links and renames (#19) -----------------------------------------------------------
def test_a_symlinked_root_is_the_same_root(tmp_path):
    real = _photos(tmp_path / "real", 3)
    link = tmp_path / "plink"
    link.symlink_to(real, target_is_directory=True)
    engine = ImageSearch(tmp_path / "db")
    assert engine.index(real).added == 3
    again = engine.index(link)
    assert (again.unchanged, again.added, again.renamed, again.removed) == (3, 0, 0, 0)
    assert engine.store.count() == 3
    assert engine.reindex(link).unchanged == 3 and engine.store.count() == 3
    assert engine.remove([link / "p0.png"]) == 1  # a path through the link names the photo


def test_a_photo_has_one_path_however_its_folder_is_reached(tmp_path):
    elsewhere = _photos(tmp_path / "elsewhere", 2)
    root = tmp_path / "root"
    _photos(root, 1, seed=7)
    (root / "album").symlink_to(elsewhere, target_is_directory=True)
    engine = ImageSearch(tmp_path / "db")
    assert engine.index(root).added == 3
    again = engine.index(root / "album")  # the linked folder itself, by its link name
    assert (again.unchanged, again.added, again.renamed, again.removed) == (2, 0, 0, 0)
    assert engine.index(elsewhere).unchanged == 2 and engine.store.count() == 3
    (elsewhere / "p1.png").unlink()  # gone from a folder reached through the link
    assert engine.index(root).removed == 1 and engine.store.count() == 2


def test_a_rename_is_counted_once(tmp_path):
    photos = _photos(tmp_path / "photos", 2)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    (photos / "p0.png").rename(photos / "moved.png")
    report = engine.index(photos)
    assert (report.renamed, report.removed, report.added, report.encoded) == (1, 0, 0, 0)
    assert engine.store.count() == 2


# -- index health (#19) -------------------------------------------------------------------------
def test_indexes_missing_after_a_kill_before_optimize_are_built_by_the_next_run(
    tmp_path, monkeypatch
):
    photos = _photos(tmp_path / "photos", 4)
    db = tmp_path / "db"

    def killed(self, **_):  # the process dies after its last commit, before optimize
        raise SystemExit("killed before optimize")

    with monkeypatch.context() as patch:
        patch.setattr(PhotoStore, "optimize", killed)
        with pytest.raises(SystemExit):
            ImageSearch(db).index(photos)
    store = PhotoStore(db)
    assert store.count() == 4
    health = store.index_health()
    assert health and set(health.values()) == {"missing"}, health

    report = ImageSearch(db).index(photos)
    assert report.unchanged == 4 and report.encoded == 0
    assert set(PhotoStore(db).index_health().values()) == {"present"}
    assert ImageSearch(db).stats().indexes == PhotoStore(db).index_health()


def test_stale_indexes_are_refreshed_even_when_no_photo_changed(tmp_path):
    photos = _photos(tmp_path / "photos", 3)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    store = PhotoStore(tmp_path / "db")
    assert set(store.index_health().values()) == {"present"}
    extra = store.table.to_arrow().slice(0, 1)
    ids = pa.array(["0123456789abcdef"])
    store.add(extra.set_column(extra.schema.get_field_index("id"), "id", ids))  # no optimize
    assert "stale" in store.index_health().values()
    assert store.index_health(vector_index_min_rows=2)["vector"] == "missing"
    report = engine.index(photos, remove_missing=False)
    assert report.unchanged == 3
    assert set(PhotoStore(tmp_path / "db").index_health().values()) == {"present"}


def test_the_table_info_of_a_new_table_is_the_current_schema(tmp_path):
    engine = ImageSearch(tmp_path / "db")
    engine.index(_photos(tmp_path / "photos", 1))
    assert table_info(engine.store.table.schema).schema_version == SCHEMA_VERSION
