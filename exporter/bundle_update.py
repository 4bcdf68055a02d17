"""Add trained models to an existing bundle: copy files, edit the manifest, re-hash, new id.

``pixsearch export`` writes the pretrained encoders and the zero-shot space; training commands
then add what they learn (the joint space, the reranker, the child-photo classifier) with
:func:`add_to_bundle`, so every file stays listed with its sha256 and the bundle id changes
whenever any file does (a database built with the old bundle then asks for ``pixsearch reindex``).

>>> bundle_id({"a.onnx": "00", "b.onnx": "11"}) == bundle_id({"b.onnx": "11", "a.onnx": "00"})
True
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixsearch.exporter._onnx_tools import sha256_file
from pixsearch.indexer.errors import ModelBundleError
from pixsearch.indexer.models import MANIFEST_NAME, MAX_FILE_BYTES, default_bundle_dir


def bundle_id(files: dict[str, str]) -> str:
    """16 hex digits of sha256 over the sorted ``name:sha256`` lines: same files, same id."""
    lines = "".join(f"{name}:{digest}\n" for name, digest in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def check_file_size(path: Path) -> None:
    """Raise ``ModelBundleError`` when ``path`` is not under :data:`MAX_FILE_BYTES`."""
    size = Path(path).stat().st_size
    if size >= MAX_FILE_BYTES:
        raise ModelBundleError(
            f"{Path(path).name} is {size / 1e6:.1f} MB, over the bundle's "
            f"{MAX_FILE_BYTES / 1e6:.0f} MB limit per file; nothing was written"
        )


def add_to_bundle(
    files: dict[str, Path],
    update: Callable[[dict[str, Any]], None],
    bundle_dir: Path | None = None,
    *,
    remove: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Copy ``files`` (bundle name → source path) into the bundle and rewrite its manifest.

    ``update(manifest)`` edits the manifest in place (e.g. sets ``manifest["space"]``); then
    ``files`` hashes are recomputed for every listed file, ``remove`` names are dropped, and
    ``bundle_id`` is derived again. The manifest is replaced atomically.

    >>> add_to_bundle({"head.onnx": Path("head.onnx")},
    ...               lambda m: m.setdefault("extra", {}))        # doctest: +SKIP
    """
    folder = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for source in files.values():
        check_file_size(source)
    for name, source in files.items():
        if Path(source).resolve() != (folder / name).resolve():
            # a new file replaces the name (a link to another bundle's file is not written
            # through: tests link the committed files into temporary bundles)
            with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
                pass
            shutil.copyfile(source, tmp.name)
            os.replace(tmp.name, folder / name)
    update(manifest)
    listed = {name for name in manifest["files"] if name not in remove} | set(files)
    for name in remove:
        (folder / name).unlink(missing_ok=True)
    manifest["files"] = {name: sha256_file(folder / name) for name in sorted(listed)}
    manifest["bundle_id"] = bundle_id(manifest["files"])
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, manifest_path)
    return manifest


def add_policy_model(
    name: str, file_name: str, onnx_bytes: bytes, section: dict[str, Any], bundle_dir: Path | None
) -> str:
    """Install ``onnx_bytes`` as the bundle's ``file_name`` and ``section`` as the manifest's
    ``policy.<name>`` (with :func:`add_to_bundle`); the new bundle id.

    >>> section = {"file": "query_classifier.onnx", "threshold": 0.8}
    >>> add_policy_model("query_classifier", section["file"], data, section, None)  # doctest: +SKIP
    """

    def update(manifest: dict[str, Any]) -> None:
        manifest.setdefault("policy", {})[name] = section

    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / file_name
        source.write_bytes(onnx_bytes)
        manifest = add_to_bundle({file_name: source}, update, bundle_dir)
    return str(manifest["bundle_id"])
