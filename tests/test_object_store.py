"""A database and photos on object storage: every PhotoStore path, the s3 photo source, the
API and the CLI, against a local S3-compatible server (moto's server mode on 127.0.0.1).

The server and helpers here are imported by ``test_batch_reindex.py``.
"""

from __future__ import annotations

import io
import json
import logging
import pickle
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from helpers import noise_image
from PIL import Image

from pixsearch.db.schema import photo_schema
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.sources import PhotoSource, open_source, s3_filesystem
from pixsearch.search import ImageSearch


@dataclass
class S3Server:
    """A running local S3 server: its endpoint, LanceDB storage options and a boto3 client."""

    endpoint: str
    client: Any

    @property
    def options(self) -> dict[str, str]:
        """``storage_options`` for LanceDB and for :class:`PhotoSource`."""
        return {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_region": "us-east-1",
            "aws_endpoint": self.endpoint,
            "allow_http": "true",
        }

    @property
    def env(self) -> dict[str, str]:
        """The same settings as environment variables (what the CLI and Ray workers read)."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def bucket(self, name: str) -> str:
        """Create a bucket; returns ``s3://name``."""
        self.client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def put(self, uri: str, data: bytes) -> None:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def put_photos(self, prefix: str, count: int, *, seed: int = 0) -> list[str]:
        """Upload ``count`` small generated JPEGs under ``prefix``; returns their URIs."""
        uris = []
        for i in range(count):
            uri = f"{prefix.rstrip('/')}/{i // 100:02d}/photo-{i:04d}.jpg"
            self.put(uri, jpeg_bytes(seed + i))
            uris.append(uri)
        return uris


def jpeg_bytes(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small seeded noise JPEG."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 and a free port, for the whole session."""
    server_module = pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    boto3 = pytest.importorskip("boto3", reason="boto3 is in the dev extra")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        yield S3Server(endpoint, client)
    finally:
        server.stop()


_bucket_counter = iter(range(1_000_000))


@pytest.fixture
def bucket(s3: S3Server) -> str:
    """A fresh bucket for one test (``s3://name``)."""
    return s3.bucket(f"test-{next(_bucket_counter)}")


def _rows(schema: pa.Schema, ids: list[str]) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "id": ids,
            "path": [f"s3://b/{i}.jpg" for i in ids],
            "content_hash": ids,
            "size": [1] * n,
            "mtime_ns": [1] * n,
            "width": [4] * n,
            "height": [3] * n,
            "format": ["JPEG"] * n,
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.tile([1.0, 0.0], n).astype(np.float32)), 2
            ),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(np.ones(3 * n, np.float16)), 3),
            "caption": [None] * n,
            "caption_source": [""] * n,
            "child_score": pa.array([0.0] * n, pa.float32()),
            "restricted": [False] * n,
            "indexed_at": [datetime.now(UTC)] * n,
        }
    ).cast(schema)


def test_every_store_path_works_on_s3(s3: S3Server, bucket: str) -> None:
    schema = photo_schema(vector_dim=2, feature_dim=3, bundle_id="b1", space="t")
    store = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    assert not store.is_local and store.table_info() is None and store.count() == 0
    with store.writer_lock():  # no lock file on object storage: one writer job at a time
        store.ensure_table(schema)
        store.upsert(_rows(schema, ["a", "b", "c"]))
        store.add(_rows(schema, ["d"]))
        store.upsert(_rows(schema, ["a"]))  # replaces, no duplicate
    assert store.count() == 4 and store.count("id = 'a'") == 1
    assert [r["id"] for r in store.search(np.array([1.0, 0.0]), k=2, where="id != 'a'")]
    assert store.rows_by_id(["b"], ["id", "width"]).to_pylist() == [{"id": "b", "width": 4}]
    store.update_where("id = 'b'", {"restricted": True})
    assert store.count("restricted = true") == 1
    assert store.delete_ids(["c"]) == 1 and store.count() == 3
    store.optimize()  # scalar indexes and clean-up on s3
    store.set_setting("policy.default_profile", "none")
    reopened = PhotoStore(f"{bucket}/db", storage_options=s3.options)
    assert reopened.get_setting("policy.default_profile") == "none"
    assert reopened.table_info() is not None and reopened.table_info().bundle_id == "b1"
    staging = PhotoStore(f"{bucket}/db", storage_options=s3.options, table="photos_staging_x")
    staging.ensure_table(schema)
    staging.add(_rows(schema, ["x", "y"]))
    version = store.version()
    store.replace_all(staging.batches(), schema)  # streamed, one commit
    assert store.version() == version + 1
    assert sorted(store.scan(["id"]).column("id").to_pylist()) == ["x", "y"]
    staging.drop()
    assert staging.table_info() is None and store.count() == 2


def test_store_reads_the_environment_without_storage_options(
    s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    schema = photo_schema(vector_dim=2, feature_dim=3, bundle_id="b1", space="t")
    store = PhotoStore(f"{bucket}/db")
    store.ensure_table(schema)
    store.upsert(_rows(schema, ["a"]))
    assert PhotoStore(f"{bucket}/db").count() == 1
    assert [e.path for e in open_source(f"{bucket}/db").list().files] == []  # no photos there


def test_s3_source_lists_reads_and_pickles(s3: S3Server, bucket: str) -> None:
    s3.put(f"{bucket}/photos/a/cat.jpg", jpeg_bytes(1))
    s3.put(f"{bucket}/photos/a/cat.jpg.txt", b"my cat on the sofa")
    s3.put(f"{bucket}/photos/b/dog.PNG", jpeg_bytes(2))  # content sniffed, not the suffix
    s3.put(f"{bucket}/photos/.hidden/x.jpg", jpeg_bytes(3))
    s3.put(f"{bucket}/photos/raw.heic", b"heic")
    s3.put(f"{bucket}/photos/notes.txt", b"not a photo")
    s3.put(f"{bucket}/photos2/elsewhere.jpg", jpeg_bytes(4))
    source = PhotoSource(f"{bucket}/photos/", storage_options=s3.options)
    listing = source.list()
    assert [e.path for e in listing.files] == [
        f"{bucket}/photos/a/cat.jpg",
        f"{bucket}/photos/b/dog.PNG",
    ]
    assert listing.skipped == [(f"{bucket}/photos/raw.heic", "unsupported format .heic")]
    cat = listing.files[0]
    assert cat.size == len(jpeg_bytes(1)) and cat.mtime_ns > 0
    assert cat.sidecar == f"{bucket}/photos/a/cat.jpg.txt"
    assert source.sidecar_caption(cat) == "my cat on the sofa"
    read = source.read(cat.path)
    assert read.data == jpeg_bytes(1) and read.entry.etag and read.entry.size == cat.size
    assert source.contains(cat.path) and not source.contains(f"{bucket}/photos2/elsewhere.jpg")
    clone = pickle.loads(pickle.dumps(source))  # what a Ray worker gets
    assert clone.read(cat.path).data == read.data
    with pytest.raises(OSError):
        source.read(f"{bucket}/photos/missing.jpg")


def test_s3_filesystem_takes_lancedb_style_options(s3: S3Server) -> None:
    fs = s3_filesystem(s3.options)
    assert fs.region == "us-east-1"


def test_index_a_local_folder_into_an_s3_database_and_search(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    for i in range(3):
        noise_image(tmp_path / f"n{i}.png", i)
    engine = ImageSearch(f"{bucket}/db", storage_options=s3.options)
    report = engine.index(tmp_path)
    assert report.added == 3 and engine.stats().photos == 3
    assert len(engine.search("noise", k=2, policy="none").results) == 2
    (tmp_path / "n0.png").unlink()
    assert engine.index(tmp_path).removed == 1
    assert engine.remove([tmp_path / "n1.png"]) == 1


def test_cli_reindexes_an_s3_prefix_into_an_s3_database(
    s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    s3.put_photos(f"{bucket}/photos", 5)
    runner = CliRunner()
    db = f"{bucket}/db"
    result = runner.invoke(app, ["reindex", f"{bucket}/photos/", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["added"] == 5 and payload["engine"] == "local" and payload["mode"] == "in-place"
    shown = runner.invoke(app, ["reindex", f"{bucket}/photos/", "--db", db])
    assert shown.exit_code == 0 and "unchanged 5" in shown.stdout
    assert "reindex [local]: 5/5 photos (100%)" in shown.stderr
    found = runner.invoke(app, ["search", "noise", "--db", db, "--json", "--policy", "none"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["results"][0]["path"].startswith(f"{bucket}/photos/")
