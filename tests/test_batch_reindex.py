"""Batch reindexing (issue #7): the local and Ray engines, resume after a failure, and a model
upgrade that readers only see once the job completes.

The Ray tests start a local Ray (``num_cpus=2``) and skip with a reason without the [ray] extra.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pytest
from helpers import make_old_bundle_table, noise_image
from test_object_store import S3Server, bucket, s3  # noqa: F401  (fixtures)

from pixsearch.db.environment import reload_environment
from pixsearch.db.errors import ConcurrentWriteError, InvalidInputError, MissingExtraError
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.batch import STAGING_PREFIX, JobStatus, job_id, run_reindex
from pixsearch.indexer.scan import PhotoEntry
from pixsearch.indexer.sources import PhotoBytes, PhotoSource
from pixsearch.search import ImageSearch


class SimulatedCrash(BaseException):
    """Stops the job as Ctrl-C or a dying process would (an ``Exception`` is a photo's failure)."""


class CrashingSource(PhotoSource):
    """A source whose reads fail fatally (not a per-photo error) after ``reads_ok`` reads."""

    def __init__(self, uri: str, reads_ok: int, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.reads_ok = reads_ok

    def open(self, path: str) -> tuple[BinaryIO, PhotoEntry]:
        if self.reads_ok <= 0:
            raise SimulatedCrash("simulated crash: the job dies here")
        self.reads_ok -= 1
        return super().open(path)


def _photos(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noise_image(folder / f"p{i:03d}.png", i, size=(32, 24))
    return folder


def test_local_engine_in_place_is_incremental(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 12)
    engine = ImageSearch(tmp_path / "db")
    seen: list[JobStatus] = []
    report = engine.reindex(photos, status=seen.append)
    assert (report.mode, report.added, report.encoded, report.swapped) == (
        "in-place",
        12,
        12,
        False,
    )
    assert seen[-1].done == seen[-1].total == 12 and seen[-1].failed == 0
    assert engine.store.count() == 12
    again = engine.reindex(photos)
    assert again.unchanged == 12 and again.encoded == 0
    noise_image(photos / "p000.png", 99, size=(40, 30))  # changed
    (photos / "p001.png").unlink()  # gone
    (photos / "broken.jpg").write_bytes(b"junk")
    third = engine.reindex(photos)
    assert (third.encoded, third.updated, third.removed) == (1, 1, 1)
    assert [Path(p).name for p, _ in third.failed] == ["broken.jpg"]
    assert engine.store.count() == 11


class BoundedListingSource(PhotoSource):
    """A source that refuses to be listed whole, and whose walk stops the job (AssertionError)
    when it is asked for more than ``bound`` photos beyond the rows committed to ``store``."""

    def __init__(self, uri: str, store: PhotoStore, bound: int, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.store, self.bound, self.ahead = store, bound, 0

    def list(self) -> Any:
        raise AssertionError("the job asked for the whole listing at once")

    def walk(self, piece: int = 10) -> Any:
        listed = 0
        for part in super().walk(piece=min(piece, 10)):
            committed = self.store.count() if self.store.table_info() else 0
            self.ahead = max(self.ahead, listed - committed)
            assert listed - committed <= self.bound, f"listed {listed}, committed {committed}"
            listed += len(part.files)
            yield part


def test_the_plan_is_streamed_listing_chunk_by_chunk_never_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan takes the listing in chunks (here 20 photos) and commits as it goes, in place
    and in a rebuild: it never asks for the whole listing, never runs more than a chunk, a
    commit and the read-ahead ahead of its commits, and still removes the photos gone, a
    whole folder too. (The template's row lies outside the listing: the rebuild carries it.)"""
    from pixsearch.indexer import batch

    monkeypatch.setattr(batch, "PLAN_CHUNK", 20, raising=False)
    (tmp_path / "template").mkdir()
    template = noise_image(tmp_path / "template" / "photo.png", 1, size=(32, 24))
    photos = tmp_path / "photos"
    for i in range(300):  # 12 folders of 25 links to one photo: copies, rows copied, no decode
        (photos / f"{i // 25:02d}").mkdir(parents=True, exist_ok=True)
        (photos / f"{i // 25:02d}" / f"p{i:03d}.png").symlink_to(template)
    store = PhotoStore(tmp_path / "db")
    engine = ImageSearch(tmp_path / "db")
    run_reindex(store, engine.bundle, str(template))  # the one stored row the copies reuse
    bounded = BoundedListingSource(str(photos), store, bound=100)
    report = run_reindex(store, engine.bundle, bounded, shard_size=10, write_batch=20)
    assert (report.added, report.reused, report.encoded) == (300, 300, 0)
    assert report.commits >= 15 and 0 < bounded.ahead <= 100
    assert store.count() == 301
    for link in (photos / "04").iterdir():  # a whole folder gone: listed nowhere
        link.unlink()
    (photos / "04").rmdir()
    (photos / "09" / "p230.png").unlink()
    again = run_reindex(store, engine.bundle, bounded, shard_size=10, write_batch=20)
    assert (again.unchanged, again.removed, again.added) == (274, 26, 0)
    paths = store.scan(["path"]).column("path").to_pylist()
    assert len(paths) == 275 and not any("/04/" in p or p.endswith("p230.png") for p in paths)
    # a model upgrade (same image encoder): the rebuild's plan is streamed the same way
    make_old_bundle_table(engine, same_encoder=True)
    staging = PhotoStore(
        tmp_path / "db", table=STAGING_PREFIX + job_id(engine.bundle.id, bounded.uri)
    )
    bounded = BoundedListingSource(str(photos), staging, bound=100)
    upgrade = run_reindex(store, engine.bundle, bounded, shard_size=10, write_batch=20)
    assert (upgrade.mode, upgrade.reprojected, upgrade.encoded) == ("rebuild", 275, 0)
    assert 0 < bounded.ahead <= 100 and upgrade.swapped
    assert store.count() == 275 and store.table_info().bundle_id == engine.bundle.id


class CountedEntry:
    """A ``DirEntry`` whose live copies are counted (see ``BoundedScandir``)."""

    def __init__(self, entry: os.DirEntry[str], alive: weakref.WeakSet[Any]) -> None:
        self._entry = entry
        alive.add(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entry, name)


class BoundedScandir:
    """``os.scandir`` whose entries stop the walk (AssertionError) when more than ``bound`` of
    them are alive at once: a folder's listing held whole."""

    def __init__(self, bound: int) -> None:
        self.bound, self.most = bound, 0
        self.alive: weakref.WeakSet[Any] = weakref.WeakSet()
        self.scandir = os.scandir

    def __call__(self, folder: Any = ".") -> Any:
        @contextlib.contextmanager
        def entries() -> Iterator[Iterator[CountedEntry]]:
            with self.scandir(folder) as found:
                yield self._counted(found)

        return entries()

    def _counted(self, found: Iterator[os.DirEntry[str]]) -> Iterator[CountedEntry]:
        for entry in found:
            self.most = max(self.most, len(self.alive))
            assert len(self.alive) <= self.bound, f"{len(self.alive)} entries of a folder held"
            yield CountedEntry(entry, self.alive)


def test_a_huge_folder_is_listed_in_sorted_runs_never_held_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flat folder bigger than the in-memory sort bound (here 40 entries) is sorted in
    spilled runs and merged: its entries are never all alive at once, the walk stays in path
    order (names with a newline too), so the streamed plan adds, keeps and removes exactly."""
    from pixsearch.indexer import batch, scan

    monkeypatch.setattr(batch, "PLAN_CHUNK", 20)
    monkeypatch.setattr(scan, "FOLDER_SORT_BOUND", 40, raising=False)
    template = noise_image(tmp_path / "template.png", 1, size=(32, 24))
    photos = tmp_path / "photos"
    photos.mkdir()
    names = [f"p{i:03d}.png" for i in range(150)] + ["a\nnewline.png", "Z.png"]
    for name in names:
        (photos / name).symlink_to(template)
    listed = BoundedScandir(bound=60)
    with monkeypatch.context() as patched:
        patched.setattr(os, "scandir", listed)
        walked = [e.path for e in PhotoSource(str(photos)).list().files]
    assert walked == sorted(str(photos / n) for n in names) and 0 < listed.most <= 60
    store = PhotoStore(tmp_path / "db")
    bundle = ImageSearch(tmp_path / "db").bundle
    run_reindex(store, bundle, str(template))  # the one stored row the links copy
    assert run_reindex(store, bundle, str(photos), shard_size=10, write_batch=20).added == 152
    for gone in ("p007.png", "p099.png", "a\nnewline.png"):
        (photos / gone).unlink()
    again = run_reindex(store, bundle, str(photos), shard_size=10, write_batch=20)
    assert (again.unchanged, again.removed, again.added, again.kept) == (149, 3, 0, 0)
    assert store.count() == 150


def test_resume_after_a_crash_encodes_only_what_is_missing(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 40)
    store = PhotoStore(tmp_path / "db")
    engine = ImageSearch(tmp_path / "db")
    with pytest.raises(SimulatedCrash, match="simulated crash"):
        run_reindex(
            store,
            engine.bundle,
            CrashingSource(str(photos), reads_ok=25),
            shard_size=8,
            write_batch=8,
            workers=1,
        )
    committed = store.count()
    assert 8 <= committed <= 25  # whole shards committed before the crash, nothing more
    report = run_reindex(store, engine.bundle, str(photos), shard_size=8, write_batch=8)
    assert report.unchanged == committed and report.encoded == 40 - committed
    assert store.count() == 40


def test_upgrade_is_invisible_until_complete_and_resumes(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 30)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    old_rows = make_old_bundle_table(engine, same_encoder=False)
    reader = PhotoStore(tmp_path / "db")  # a search process beside the job
    version = reader.version()

    with pytest.raises(SimulatedCrash, match="simulated crash"):
        run_reindex(
            engine.store,
            engine.bundle,
            CrashingSource(str(photos), reads_ok=20),
            shard_size=5,
            write_batch=5,
            workers=1,
        )
    staging = PhotoStore(
        tmp_path / "db", table=STAGING_PREFIX + job_id(engine.bundle.id, str(photos))
    )
    staged = staging.count()
    assert 5 <= staged <= 20
    assert reader.table_info().bundle_id == "older-bundle" and reader.version() == version

    seen: list[tuple[int, str, int]] = []

    def look(state: JobStatus) -> None:  # a search process looks while the job runs
        seen.append((state.done, reader.table_info().bundle_id, reader.count()))

    report = run_reindex(
        engine.store, engine.bundle, str(photos), shard_size=5, write_batch=5, status=look
    )
    during = [(bundle_id, count) for done, bundle_id, count in seen[:-1]]
    assert len(during) >= 2 and set(during) == {("older-bundle", old_rows)}
    assert seen[-1] == (30, engine.bundle.id, 30)  # the final report, after the swap
    assert report.mode == "rebuild" and report.swapped
    assert report.resumed == staged and report.encoded == 30 - staged
    assert report.updated == 30 - staged and report.removed == 0
    assert reader.table_info().bundle_id == engine.bundle.id and reader.count() == 30
    assert PhotoStore(tmp_path / "db", table=staging.table_name).table_info() is None  # dropped
    assert engine.search("noise", k=3, policy="none").results


def test_rebuild_resumed_after_a_staged_photo_changed_stages_each_photo_once(
    tmp_path: Path,
) -> None:
    """A photo staged by a killed rebuild, then edited, is staged again, not twice."""
    photos = _photos(tmp_path / "photos", 20)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    make_old_bundle_table(engine, same_encoder=False)
    with pytest.raises(SimulatedCrash):
        run_reindex(
            engine.store,
            engine.bundle,
            CrashingSource(str(photos), reads_ok=12),
            shard_size=4,
            write_batch=4,
            workers=1,
        )
    staging = PhotoStore(
        tmp_path / "db", table=STAGING_PREFIX + job_id(engine.bundle.id, str(photos))
    )
    staged = staging.scan(["path"]).column("path").to_pylist()
    assert len(staged) >= 4
    noise_image(Path(staged[0]), 77, size=(40, 30))  # changed after it was staged
    report = run_reindex(engine.store, engine.bundle, str(photos), shard_size=4, write_batch=4)
    assert report.swapped and report.resumed == len(staged) - 1
    rows = engine.store.scan(["id", "path", "width"]).to_pylist()
    assert len(rows) == len({row["id"] for row in rows}) == 20
    assert [row["width"] for row in rows if row["path"] == staged[0]] == [40]


def test_a_rebuild_never_discards_rows_committed_after_it_planned(tmp_path: Path) -> None:
    """Another writer commits to ``photos`` while a rebuild runs: the swap is refused (typed
    error), the table keeps every row, the staged work stays for the rerun."""
    photos = _photos(tmp_path / "photos", 8)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    make_old_bundle_table(engine, same_encoder=False)
    other = PhotoStore(tmp_path / "db")  # another process's store, writing without the job's lock
    intruded: list[int] = []

    def intrude(state: JobStatus) -> None:
        if not intruded:
            row = other.scan(other.table.schema.names).slice(0, 1).to_pylist()[0]
            row.update(id="0000000000000000", path=str(tmp_path / "elsewhere.png"))
            other.add(pa.Table.from_pylist([row], schema=other.table.schema))
            intruded.append(other.version())

    with pytest.raises(ConcurrentWriteError, match="changed while the job ran"):
        run_reindex(engine.store, engine.bundle, str(photos), status=intrude)
    assert intruded
    assert other.table_info().bundle_id == "older-bundle" and other.count() == 9
    staging = PhotoStore(
        tmp_path / "db", table=STAGING_PREFIX + job_id(engine.bundle.id, str(photos))
    )
    assert staging.count() == 8  # the rerun resumes from here


def test_upgrade_with_the_same_encoder_reprojects_without_decoding(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 6)
    engine = ImageSearch(tmp_path / "db")
    engine.index(photos)
    make_old_bundle_table(engine, same_encoder=True)
    for photo in photos.iterdir():
        photo.unlink()  # decoding is impossible now
    report = engine.reindex()
    assert (report.reprojected, report.encoded, report.updated) == (6, 0, 6)
    assert engine.store.table_info().bundle_id == engine.bundle.id and engine.store.count() == 6


def test_unknown_engine_and_missing_ray_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = ImageSearch(tmp_path / "db")
    with pytest.raises(InvalidInputError, match="unknown engine"):
        engine.reindex(tmp_path, engine="spark")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(MissingExtraError, match=r'pip install "pixsearch\[ray\]"'):
        engine.reindex(tmp_path, engine="ray")


def test_the_job_caps_glibc_arenas_unless_the_environment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import platform

    from pixsearch.indexer.batch import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the user's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert limit_malloc_arenas() is (platform.libc_ver()[0] == "glibc")


def test_cli_sizes_reach_the_job(tmp_path: Path) -> None:
    """``--shard-size``/``--write-batch`` shape the reindex job; ``index`` takes
    ``--write-batch``/``--workers``; bad sizes are bad input (exit 2)."""
    import json

    import lance
    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    photos = _photos(tmp_path / "photos", 10)
    runner = CliRunner()
    args = ["reindex", str(photos), "--db", str(tmp_path / "db"), "--json", "--workers", "1"]
    result = runner.invoke(app, [*args, "--shard-size", "3", "--write-batch", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["shards"], report["commits"], report["added"]) == (4, 4, 10)
    bad = runner.invoke(app, [*args, "--shard-size", "0"])
    assert bad.exit_code == 2 and "--shard-size" in bad.output

    def versions(db: Path, *extra: str) -> int:
        done = runner.invoke(app, ["index", str(photos), "--db", str(db), "-q", *extra])
        assert done.exit_code == 0, done.output
        return len(lance.dataset(str(db / "photos.lance")).versions())

    # 3 commits instead of 1 (and more fragments to compact): more table versions
    assert versions(tmp_path / "a", "--write-batch", "4", "--workers", "2") > versions(
        tmp_path / "b"
    )


# -- Ray ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(s3: S3Server) -> Any:  # noqa: F811
    """A local Ray instance (2 CPUs); the workers inherit the S3 endpoint settings."""
    ray = pytest.importorskip(
        "ray", reason='the Ray engine needs the [ray] extra: pip install ".[ray]"'
    )
    import os

    saved = {key: os.environ.get(key) for key in s3.env}
    os.environ.update(s3.env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # CrashingSource lives in this test module, which the workers cannot import: ship it by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_from_s3_photos_into_an_s3_database_then_search(
    local_ray: Any,
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from helpers import copy_demo_photos

    demo = copy_demo_photos(tmp_path / "demo")
    for photo in demo.iterdir():
        s3.put(f"{bucket}/photos/demo/{photo.name}", photo.read_bytes())
    s3.put_photos(f"{bucket}/photos/generated", 286)
    monkeypatch.setenv("PIXSEARCH_WRITE_BATCH", "128")  # 300 rows: 3 commits (default 512: 1)
    reload_environment()
    engine = ImageSearch(f"{bucket}/db", storage_options=s3.options)
    seen: list[JobStatus] = []
    report = engine.reindex(f"{bucket}/photos/", engine="ray", status=seen.append)
    assert report.engine == "ray" and report.encoded == 300 and not report.failed
    assert report.shards == 5 and report.commits >= 2  # one commit per write batch
    assert seen[-1].done == 300 and seen[-1].rate > 0
    reader = ImageSearch(f"{bucket}/db", storage_options=s3.options)
    assert reader.stats().photos == 300
    hits = reader.search("a cat", k=3, filters=["path~/demo/"], policy="none").results
    assert hits[0].path == f"{bucket}/photos/demo/chelsea.png", [h.path for h in hits]


class WorkerKillingSource(PhotoSource):
    """Kills the Ray worker process that reads ``victim`` (SIGKILL: no Python exception, no
    cleanup), once: the first reader claims ``marker`` atomically and writes its pid there."""

    def __init__(self, uri: str, victim: str, marker: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.victim, self.marker = victim, marker

    def read(self, path: str) -> PhotoBytes:
        import os
        import signal

        if path.endswith(self.victim):
            try:
                handle = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(handle, str(os.getpid()).encode())
                os.close(handle)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().read(path)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_survives_a_killed_worker(
    local_ray: Any,
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A Ray worker process is killed mid-job: the job completes, or a rerun resumes it; either
    way every photo ends up in the table exactly once."""
    import os

    from pixsearch.indexer.models import ModelBundle

    s3.put_photos(f"{bucket}/photos", 96)
    store = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    bundle = ModelBundle.load()
    marker = tmp_path / "killed-worker.pid"
    killing = WorkerKillingSource(
        f"{bucket}/photos", "photo-0050.jpg", str(marker), storage_options=s3.options
    )
    try:
        report = run_reindex(store, bundle, killing, engine="ray", shard_size=16, write_batch=16)
        completed = True
    except Exception:  # the job may fail once its worker is gone; a rerun must then resume
        completed = False
    assert marker.exists(), "no worker read the victim photo: the test killed nothing"
    pid = int(marker.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the worker process is really gone
    if not completed:
        committed = store.count()
        report = run_reindex(store, bundle, f"{bucket}/photos", engine="ray", shard_size=16)
        assert report.unchanged == committed and report.encoded == 96 - committed
    paths = store.scan(["path"]).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == 96, f"completed in one run: {completed}"
    assert not report.failed
    print(f"worker {pid} killed; the job completed in one run: {completed}")


class ReadLoggingSource(PhotoSource):
    """Appends the path of every photo a worker opens to ``log`` (one line each)."""

    def __init__(self, uri: str, log: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.log = log

    def open(self, path: str) -> tuple[BinaryIO, PhotoEntry]:
        with open(self.log, "a") as handle:
            handle.write(path + "\n")
        return super().open(path)


_KILLED_DRIVER = """
import json, os, signal, sys
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.batch import run_reindex
from pixsearch.indexer.models import ModelBundle

db, photos, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def die(state):  # the driver dies (no Python clean-up) before its first commit
    if state.encoded >= 48:
        os.kill(os.getpid(), signal.SIGKILL)

store = PhotoStore(db, storage_options=options)
run_reindex(store, ModelBundle.load(), photos, engine="ray", shard_size=16,
            write_batch=1000, workers=2, status=die)
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_rerun_after_the_driver_died_commits_the_shards_workers_wrote_without_reading_them(
    local_ray: Any,
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The driver process is killed after Ray workers wrote 3+ shards' fragments and before any
    commit: each such shard left a done mark (named after the job and its photos). The rerun
    forms the same shards, commits those fragments without opening one of their photos, and
    encodes only the rest; every photo ends up in the table once; the marks are gone."""
    import json
    import os
    import subprocess

    from pixsearch.indexer.models import ModelBundle

    marks_prefix = "db/.pixsearch-shards/"  # <db>/.pixsearch-shards/<table>/<job id>/<name>.json
    s3.put_photos(f"{bucket}/photos", 96)
    db, photos = f"{bucket}/db", f"{bucket}/photos"
    env = {**os.environ, **s3.env, "RAY_ADDRESS": local_ray.get_runtime_context().gcs_address}
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_DRIVER, db, photos, json.dumps(s3.options)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    store = PhotoStore(db, storage_options=s3.options)
    assert store.count() == 0  # nothing committed
    listed = s3.client.list_objects_v2(
        Bucket=bucket.removeprefix("s3://"), Prefix=f"{marks_prefix}photos/"
    )
    assert len([o for o in listed.get("Contents", []) if o["Key"].endswith(".json")]) >= 3

    log = tmp_path / "opened.txt"
    log.touch()
    source = ReadLoggingSource(photos, str(log), storage_options=s3.options)
    report = run_reindex(
        store, ModelBundle.load(), source, engine="ray", shard_size=16, write_batch=1000
    )
    opened = log.read_text().splitlines()
    assert report.shards == 6 and report.shards_reused >= 3 and not report.failed
    assert len(opened) == len(set(opened)) == 96 - 16 * report.shards_reused
    assert report.added == 96
    ids = store.scan(["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 96
    left = s3.client.list_objects_v2(Bucket=bucket.removeprefix("s3://"), Prefix=marks_prefix)
    marks = [o["Key"] for o in left.get("Contents", []) if not o["Key"].endswith("/")]
    assert not marks, "the job's marks outlived it"  # (pyarrow leaves a folder marker)


class FailingPrefixSource(PhotoSource):
    """A source with a bug for the photos under one prefix: opening them raises RuntimeError."""

    def __init__(self, uri: str, bad: str, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.bad = bad

    def open(self, path: str) -> tuple[BinaryIO, PhotoEntry]:
        if f"/{self.bad}/" in path:
            raise RuntimeError("simulated bug reading this prefix")
        return super().open(path)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_job_completes_when_every_photo_of_a_shard_fails(
    local_ray: Any,
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    """Every photo of one shard fails with an unexpected error: the job completes, the other
    shards are written, each failure is reported with its reason."""
    from pixsearch.indexer.models import ModelBundle

    s3.put_photos(f"{bucket}/photos/bad", 16, seed=100)
    s3.put_photos(f"{bucket}/photos/good", 32)
    store = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    source = FailingPrefixSource(f"{bucket}/photos", "bad", storage_options=s3.options)
    report = run_reindex(
        store, ModelBundle.load(), source, engine="ray", shard_size=16, write_batch=16
    )
    assert report.shards == 3 and report.encoded == 32 and store.count() == 32
    assert sorted(path for path, _ in report.failed) == sorted(
        f"{bucket}/photos/bad/00/photo-{i:04d}.jpg" for i in range(16)
    )
    assert {reason for _, reason in report.failed} == {
        "unexpected error: RuntimeError: simulated bug reading this prefix"
    }


def test_a_second_job_on_an_s3_table_is_refused_and_the_table_stays_intact(
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    """A second job starts while the first writes the same S3 table: it is refused with a typed
    error (exit code 5) before writing anything; the first completes; a later job runs."""
    from pixsearch.indexer.models import ModelBundle
    from pixsearch.search.exit_codes import exit_code_for

    s3.put_photos(f"{bucket}/photos", 24)
    bundle = ModelBundle.load()
    outcomes: list[BaseException | None] = []

    def second_job(state: JobStatus) -> None:
        if outcomes:
            return
        other = PhotoStore(f"{bucket}/db", storage_options=s3.options)
        try:
            run_reindex(other, bundle, f"{bucket}/photos/", shard_size=8, write_batch=8)
        except ConcurrentWriteError as error:
            outcomes.append(error)
        else:
            outcomes.append(None)

    store = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    report = run_reindex(
        store, bundle, f"{bucket}/photos", shard_size=8, write_batch=8, status=second_job
    )
    assert isinstance(outcomes[0], ConcurrentWriteError), outcomes
    assert exit_code_for(outcomes[0]) == 5 and "another pixsearch job" in str(outcomes[0])
    assert report.added == 24 and not report.failed
    ids = store.scan(["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 24
    again = run_reindex(store, bundle, f"{bucket}/photos/", shard_size=8, write_batch=8)
    assert again.unchanged == 24 and again.encoded == 0


class FlakyListingSource(PhotoSource):
    """An object-store source whose listing of one sub-prefix fails."""

    def _list_prefix(self, prefix: str) -> Any:
        if prefix.endswith("/b"):
            return OSError("simulated listing failure")
        return super()._list_prefix(prefix)


def test_s3_prefixes_are_listed_apart_and_one_that_fails_keeps_its_rows(
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    """Sub-prefixes are listed one by one (in parallel): one that cannot be listed is reported
    incomplete and its rows are kept; the photos of the others are listed all the same."""
    from test_object_store import jpeg_bytes

    from pixsearch.indexer.models import ModelBundle

    s3.put_photos(f"{bucket}/photos/a", 5)
    s3.put_photos(f"{bucket}/photos/b", 4, seed=10)
    s3.put(f"{bucket}/photos/top.jpg", jpeg_bytes(99))
    store = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    bundle = ModelBundle.load()
    assert run_reindex(store, bundle, f"{bucket}/photos/", shard_size=8).added == 10
    flaky = FlakyListingSource(f"{bucket}/photos", storage_options=s3.options)
    listing = flaky.list()
    assert listing.incomplete == [f"{bucket}/photos/b"]
    assert [p.rsplit("/", 1)[1] for p in sorted(e.path for e in listing.files)] == [
        *(f"photo-{i:04d}.jpg" for i in range(5)),
        "top.jpg",
    ]
    report = run_reindex(store, bundle, flaky, shard_size=8)
    assert (report.kept, report.removed, report.unchanged) == (4, 0, 6)
    assert store.count() == 10


class PagedListingSource(PhotoSource):
    """An object-store source that counts the keys its listing requests returned, and stops the
    job (AssertionError) when they run more than ``bound`` keys ahead of the committed rows."""

    def __init__(self, uri: str, store: PhotoStore, bound: int, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.store, self.bound, self.listed, self.ahead = store, bound, 0, 0

    def walk(self, piece: int = 10) -> Any:
        return super().walk(piece=min(piece, 10))  # pieces of 10 photos: chunks of 20

    def _pages(self, path: str, *, recursive: bool) -> Any:
        for page in super()._pages(path, recursive=recursive):
            committed = self.store.count() if self.store.table_info() else 0
            self.listed += len(page)
            self.ahead = max(self.ahead, self.listed - committed)
            assert self.listed - committed <= self.bound, f"{self.listed} listed, {committed} in"
            yield page


class WholeListingSource(PhotoSource):
    """The same source listed through ``pyarrow.fs`` (no paginated client)."""

    def _client(self) -> Any:
        return None


def test_a_huge_s3_prefix_is_listed_page_by_page_with_its_captions(
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One sub-prefix of 200 photos (copies of one: rows copied, none decoded) and caption
    objects, listed 7 keys per request, 20 ahead: the listing never runs more than 100 keys
    ahead of the commits, yet each photo gets its caption objects (also across pages: before
    the photo or after it), as the whole listing gives them; edits and removals are exact."""
    from test_object_store import jpeg_bytes

    from pixsearch.indexer import batch, sources
    from pixsearch.indexer.models import ModelBundle

    monkeypatch.setattr(sources, "LIST_PAGE", 7, raising=False)
    monkeypatch.setattr(sources, "LIST_AHEAD_KEYS", 20, raising=False)
    monkeypatch.setattr(batch, "PLAN_CHUNK", 20)
    photo = jpeg_bytes(5)
    s3.put(f"{bucket}/template/t.jpg", photo)
    for i in range(200):
        s3.put(f"{bucket}/photos/big/p{i:03d}.jpg", photo)
    s3.put(f"{bucket}/photos/big/p005.jpg.txt", b"a red kite")
    s3.put(f"{bucket}/photos/big/p050.txt", b"a harbour at night")
    s3.put(f"{bucket}/photos/big/p120.webp", photo)  # its caption p120.txt comes before it
    s3.put(f"{bucket}/photos/big/p120.txt", b"a webp photo")
    s3.put(f"{bucket}/photos/big/p130.heic", b"x")
    s3.put(f"{bucket}/photos/top.jpg", photo)
    uri = f"{bucket}/photos"
    whole = WholeListingSource(uri, storage_options=s3.options).list()
    store = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    bundle = ModelBundle.load()
    run_reindex(store, bundle, f"{bucket}/template")  # the stored row the copies reuse
    paged = PagedListingSource(uri, store, bound=10**6, storage_options=s3.options)
    assert paged.list().files == whole.files and len(whole.files) == 202  # same entries
    assert paged.listed > 100  # it listed pages (more keys than it may hold ahead)
    paged.listed, paged.ahead, paged.bound = 0, 0, 100
    report = run_reindex(store, bundle, paged, shard_size=10, write_batch=20)
    assert (report.added, report.reused, report.encoded, report.failed) == (202, 202, 0, [])
    assert 0 < paged.ahead <= 100
    captions = {
        row["path"].rsplit("/", 1)[1]: row["caption"]
        for row in store.scan(["path", "caption"]).to_pylist()
    }
    assert (captions["p005.jpg"], captions["p050.jpg"], captions["p120.webp"]) == (
        "a red kite",
        "a harbour at night",
        "a webp photo",
    )
    s3.put(f"{bucket}/photos/big/p050.txt", b"a harbour at dawn")  # an edited caption
    s3.client.delete_object(Bucket=bucket.removeprefix("s3://"), Key="photos/big/p100.jpg")
    paged.listed = 0
    again = run_reindex(store, bundle, paged, shard_size=10, write_batch=20)
    assert (again.unchanged, again.updated, again.removed, again.added) == (200, 1, 1, 0)
    assert store.count() == 202


def test_the_s3_writer_lease_is_refused_while_held_and_taken_from_the_dead_or_expired(
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A live holder's lease refuses the CLI (exit 5, the holder named); a lease left by a
    killed process of this host, or an expired one, is taken over; a released one is gone."""
    import json
    import subprocess
    import time

    from typer.testing import CliRunner

    from pixsearch.db.lease import LEASE_NAME, WriterLease
    from pixsearch.search.cli import app

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    s3.put_photos(f"{bucket}/photos", 3)
    db = f"{bucket}/db"
    holder = WriterLease(db, s3.options, purpose="test holder")
    holder.acquire()
    try:
        refused = CliRunner().invoke(app, ["reindex", f"{bucket}/photos", "--db", db, "-q"])
    finally:
        holder.release()
    assert refused.exit_code == 5, refused.output
    assert "another pixsearch job is writing" in refused.output
    assert "test holder" in refused.output

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid of this host that no longer runs
    lease_key = f"{db.removeprefix('s3://')}/{LEASE_NAME}"
    for left in (
        {"token": "a", "host": holder.mine["host"], "pid": dead.pid, "expires": time.time() + 600},
        {"token": "b", "host": "elsewhere", "pid": 1, "expires": time.time() - 1},
    ):
        s3.put(f"s3://{lease_key}", json.dumps(left).encode())
        taker = WriterLease(db, s3.options)
        taker.acquire()  # would raise ConcurrentWriteError if the old lease counted
        taker.release()
    gone = s3.client.list_objects_v2(Bucket=bucket.removeprefix("s3://"), Prefix="db/")
    assert LEASE_NAME not in {item["Key"].rsplit("/", 1)[-1] for item in gone.get("Contents", [])}
    live = {"token": "c", "host": "elsewhere", "pid": 1, "expires": time.time() + 600}
    s3.put(f"s3://{lease_key}", json.dumps(live).encode())
    with pytest.raises(ConcurrentWriteError, match="elsewhere pid 1"):
        WriterLease(db, s3.options).acquire(wait_seconds=0.5)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_rebuild_of_an_s3_table_swaps_in_fragments_copied_by_the_workers(
    local_ray: Any,
    s3: S3Server,  # noqa: F811
    bucket: str,  # noqa: F811
) -> None:
    """A model upgrade on Ray + S3: workers write the staging table's fragments, then copy them
    into ``photos`` (Ray tasks); one overwrite commit swaps them in; the staging table goes."""
    s3.put_photos(f"{bucket}/photos", 20)
    engine = ImageSearch(f"{bucket}/db", storage_options=s3.options)
    assert engine.reindex(f"{bucket}/photos").added == 20
    make_old_bundle_table(engine, same_encoder=False)
    report = run_reindex(
        engine.store, engine.bundle, f"{bucket}/photos", engine="ray", shard_size=8, write_batch=8
    )
    assert report.mode == "rebuild" and report.swapped and report.encoded == 20
    reader = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    assert reader.table_info().bundle_id == engine.bundle.id
    ids = reader.scan(["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 20
    staging = STAGING_PREFIX + job_id(engine.bundle.id, f"{bucket}/photos/")  # same job
    gone = PhotoStore(f"{bucket}/db", storage_options=s3.options, table=staging)
    assert gone.table_info() is None
