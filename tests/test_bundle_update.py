"""``add_to_bundle``: trained additions keep the bundle's rules (per-file size limit, new id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixsearch.exporter.bundle_update import add_to_bundle, bundle_id
from pixsearch.indexer.errors import ModelBundleError
from pixsearch.indexer.models import MAX_FILE_BYTES


def _bundle(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.onnx").write_bytes(b"a")
    manifest = {"files": {"a.onnx": "x"}, "bundle_id": "old"}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_an_addition_gets_hashed_and_a_new_id(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "bundle")
    (tmp_path / "head.onnx").write_bytes(b"head")
    manifest = add_to_bundle({"head.onnx": tmp_path / "head.onnx"}, lambda m: None, folder)
    assert sorted(manifest["files"]) == ["a.onnx", "head.onnx"]
    assert manifest["bundle_id"] == bundle_id(manifest["files"]) != "old"


def test_a_file_over_the_limit_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "bundle")
    before = (folder / "manifest.json").read_text(encoding="utf-8")
    big = tmp_path / "big.onnx"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES)  # sparse: no 40 MB written
    with pytest.raises(ModelBundleError, match="over the bundle's 40 MB limit"):
        add_to_bundle({"big.onnx": big}, lambda m: None, folder)
    assert not (folder / "big.onnx").exists()
    assert (folder / "manifest.json").read_text(encoding="utf-8") == before
