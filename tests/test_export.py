"""``pixsearch export`` end to end: a fresh export reproduces the committed bundle (needs torch)."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

pytest.importorskip(
    "torch", reason='the [train] extra is not installed: pip install "pixsearch[train]"'
)
pytest.importorskip("optimum.exporters.onnx", reason="optimum (the [train] extra) is not installed")

pytestmark = [pytest.mark.train, pytest.mark.slow]

COMMITTED = Path(__file__).resolve().parents[1] / "indexer" / "bundle" / "manifest.json"


@pytest.mark.train
@pytest.mark.slow
def test_export_reproduces_the_committed_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch", reason='needs the [train] extra: pip install "pixsearch[train]"')
    pytest.importorskip("optimum.exporters.onnx", reason="needs optimum (the [train] extra)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pixsearch.exporter.export_bundle import export_bundle

    manifest = export_bundle(tmp_path, check_parity=True, log=lambda _: None)  # ~1 minute
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))

    # Parity was enforced (export_bundle raises ParityError otherwise) and recorded.
    assert set(manifest["parity"]) <= set(committed["parity"])  # training adds its own entries
    written = {p.name for p in tmp_path.iterdir()} - {"manifest.json"}
    # The committed bundle may also hold what training added (add_to_bundle); export writes
    # the rest.
    assert written == set(manifest["files"]) and written <= set(committed["files"])

    trained_space = committed["space"].get("kind") != "label-bridge"
    # train-tower replaces export's ImageNet encoder with a fine-tuned one (docs/tower.md);
    # tests/test_bundle_reference.py checks that one against PyTorch.
    fine_tuned = "fine_tuned" in committed["models"]["image_encoder"]
    compared = sorted(
        name
        for name in written
        if not (trained_space and name in committed["space"]["files"].values())
        and not (fine_tuned and name == "image_encoder.onnx")
    )  # training replaced export's zero-shot head (docs/bundle.md)
    # Every tool version: the fresh export computes what the committed bundle computes.
    _same_outputs(tmp_path, COMMITTED.parent, compared)
    # The exporting tools of the committed bundle (pinned in the train extra, but onnxruntime
    # and tokenizers are runtime dependencies with floor pins): byte-identical files too.
    tooling = {name: metadata.version(name) for name in committed["tooling"]}
    if tooling != committed["tooling"]:
        print(f"outputs compared; bytes not: tools {tooling} vs {committed['tooling']}")
        return
    for name in compared:
        if manifest["files"][name] == committed["files"][name]:
            continue
        # Older exports kept the exporter's provenance metadata (stack traces with absolute
        # paths of the exporting checkout); the graph and weights must still be identical.
        assert name.endswith(".onnx"), f"{name} differs from the committed bundle"
        assert _graph_bytes(tmp_path / name) == _graph_bytes(COMMITTED.parent / name), name


def _same_outputs(fresh_dir: Path, committed_dir: Path, names: list[str]) -> None:
    """The two bundles' files compute the same outputs on the export's parity inputs, within
    twice each model's parity tolerance (each side is within it of the same PyTorch model)."""
    import numpy as np
    from tokenizers import Tokenizer

    from pixsearch.exporter.export_bundle import PARITY_SENTENCES, TOLERANCES, parity_images
    from pixsearch.indexer.models import ModelBundle

    fresh, shipped = ModelBundle.load(fresh_dir), ModelBundle.load(committed_dir)

    def close(name: str, a: np.ndarray, b: np.ndarray) -> None:
        tol = TOLERANCES[name]
        assert a.shape == b.shape, name
        assert np.max(np.abs(a - b)) <= 2 * tol.max_abs, name
        cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert np.min(cos) >= 1 - 2 * (1 - tol.min_cosine), name

    seen = set()
    if "image_encoder.onnx" in names:
        pixels = parity_images()
        for which, a, b in zip(
            ("features", "logits"),
            fresh.image_encoder.encode(pixels),
            shipped.image_encoder.encode(pixels),
            strict=True,
        ):
            close(f"image_encoder.{which}", a, b)
        seen.add("image_encoder.onnx")
    if "text_encoder.onnx" in names:
        close(
            "text_encoder.int8",
            fresh.text_encoder.encode(PARITY_SENTENCES),
            shipped.text_encoder.encode(PARITY_SENTENCES),
        )
        seen.add("text_encoder.onnx")
    if "tokenizer.json" in names:
        a, b = (Tokenizer.from_file(str(d / "tokenizer.json")) for d in (fresh_dir, committed_dir))
        assert [e.ids for e in a.encode_batch(PARITY_SENTENCES)] == [
            e.ids for e in b.encode_batch(PARITY_SENTENCES)
        ]
        seen.add("tokenizer.json")
    if "image_head.onnx" in names:
        features = fresh.image_encoder.encode(parity_images())[0]
        close(
            "image_head", fresh.space.image_vectors(features), shipped.space.image_vectors(features)
        )
        seen.add("image_head.onnx")
    for name in set(names) - seen:  # data files (class names): equal content
        assert json.loads((fresh_dir / name).read_text(encoding="utf-8")) == json.loads(
            (committed_dir / name).read_text(encoding="utf-8")
        ), name


def _graph_bytes(path: Path) -> bytes:
    import onnx

    from pixsearch.exporter._onnx_tools import strip_metadata

    model = strip_metadata(onnx.load(str(path)))
    model.producer_name, model.producer_version = "", ""
    return model.SerializeToString(deterministic=True)


def test_export_cli_is_registered_without_importing_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, typer\n"
        "from pixsearch.exporter.export_cli import register\n"
        "app = typer.Typer(); register(app)\n"
        "assert not {'torch', 'transformers', 'optimum'} & set(sys.modules), sys.modules.keys()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_export_text_encoder_only_replaces_it_and_keeps_what_was_trained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pixsearch export --text-encoder-only`` into a copy of the committed bundle: the text
    encoder is exported and quantized again (int8 compute, parity-checked), every other file
    and the trained sections stay, and the bundle id follows the new file list."""
    import shutil

    import onnx
    from typer.testing import CliRunner

    from pixsearch.exporter.export_bundle import INT8_ACCURACY_LEVEL, bundle_id
    from pixsearch.indexer.models import ModelBundle
    from pixsearch.search.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "bundle"
    shutil.copytree(COMMITTED.parent, folder, ignore=shutil.ignore_patterns("__*"))
    before = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "text_encoder.onnx").write_bytes(b"stale")  # must be replaced, not kept

    result = CliRunner().invoke(app, ["export", "--out", str(folder), "--text-encoder-only"])

    assert result.exit_code == 0, result.output
    after = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert f"bundle_id {after['bundle_id']}" in result.output
    assert after["bundle_id"] == bundle_id(after["files"])
    for name, digest in before["files"].items():
        if name != "text_encoder.onnx":
            assert after["files"][name] == digest, name
    for section in ("space", "reranker", "policy", "models"):
        assert after[section] == before[section], section
    assert after["parity"]["text_encoder.int8"]["min_cosine"] >= 0.998
    model = onnx.load(str(folder / "text_encoder.onnx"))
    matmuls = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert matmuls and all(
        onnx.helper.get_attribute_value(a) == INT8_ACCURACY_LEVEL
        for n in matmuls
        for a in n.attribute
        if a.name == "accuracy_level"
    )
    bundle = ModelBundle.load(folder)
    vector = bundle.text_encoder.encode("a dog runs on the beach")
    assert vector.shape == (1, 384) and abs(float((vector**2).sum()) - 1) < 1e-5
    if after["files"]["text_encoder.onnx"] != before["files"]["text_encoder.onnx"]:
        # only with other tool versions than the committed bundle's: same graph, other bytes
        assert _graph_bytes(folder / "text_encoder.onnx") == _graph_bytes(
            COMMITTED.parent / "text_encoder.onnx"
        )


def test_export_text_encoder_only_needs_an_existing_bundle(tmp_path: Path) -> None:
    from pixsearch.exporter.export_bundle import replace_text_encoder
    from pixsearch.indexer.errors import ModelBundleError

    with pytest.raises(ModelBundleError, match="pixsearch export"):
        replace_text_encoder(tmp_path)
