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

    # Byte-identical files need the same exporting tool versions as the committed bundle.
    tooling = {name: metadata.version(name) for name in committed["tooling"]}
    if tooling != committed["tooling"]:
        pytest.skip(f"tool versions {tooling} differ from the bundle's {committed['tooling']}")
    trained_space = committed["space"].get("kind") != "label-bridge"
    for name in sorted(written):
        if trained_space and name in committed["space"]["files"].values():
            continue  # training replaced export's zero-shot head (docs/bundle.md)
        if manifest["files"][name] == committed["files"][name]:
            continue
        # Older exports kept the exporter's provenance metadata (stack traces with absolute
        # paths of the exporting checkout); the graph and weights must still be identical.
        assert name.endswith(".onnx"), f"{name} differs from the committed bundle"
        assert _graph_bytes(tmp_path / name) == _graph_bytes(COMMITTED.parent / name), name


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
