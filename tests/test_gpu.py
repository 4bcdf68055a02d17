"""Where the models run: onnxruntime's CUDA provider for the batch models when it is there
(``pip install "pixsearch[gpu]"``), the CPU otherwise or when ``PIXSEARCH_DEVICE=cpu``; on a
GPU the outputs match the CPU's within the bundle's parity tolerance (skipped without one)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer import models
from pixsearch.indexer.errors import ModelBundleError
from pixsearch.indexer.models import ModelBundle, providers

IMAGE_ATOL = 2e-3  # the parity tolerance of tests/test_bundle.py
TEXT_ATOL = 1e-3
BOTH = ["CUDAExecutionProvider", "CPUExecutionProvider"]
CPU = ["CPUExecutionProvider"]


def _has_gpu() -> tuple[bool, str]:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "onnxruntime has no CUDA provider (pip install 'pixsearch[gpu]')"
    if shutil.which("nvidia-smi") is None:
        return False, "no NVIDIA GPU on this machine (nvidia-smi not found)"
    return True, ""


def test_device_setting_picks_the_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(models.DEVICE_ENV, raising=False)
    assert providers(batch=True, available=BOTH) == BOTH
    assert providers(batch=False, available=BOTH) == CPU  # a query's text stays on the CPU
    assert providers(batch=True, available=CPU) == CPU
    monkeypatch.setenv(models.DEVICE_ENV, "cpu")
    assert providers(batch=True, available=BOTH) == CPU
    monkeypatch.setenv(models.DEVICE_ENV, " CUDA ")
    assert providers(batch=False, available=BOTH) == BOTH
    with pytest.raises(ModelBundleError, match=r"pixsearch\[gpu\]"):
        providers(batch=True, available=CPU)
    monkeypatch.setenv(models.DEVICE_ENV, "gpu0")
    with pytest.raises(InvalidInputError, match="auto, cpu, cuda"):
        providers(batch=True, available=BOTH)


def test_sessions_run_where_the_setting_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """On this machine's onnxruntime: CPU forced -> CPU only; auto -> CUDA first for the image
    encoder exactly when the provider is there, and the text encoder on the CPU."""
    import onnxruntime as ort

    monkeypatch.setenv(models.DEVICE_ENV, "cpu")
    assert ModelBundle.load().image_encoder.model.providers == CPU
    monkeypatch.setenv(models.DEVICE_ENV, "auto")
    bundle = ModelBundle.load()
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert (bundle.image_encoder.model.providers[0] == "CUDAExecutionProvider") == cuda
    assert bundle.text_encoder.model.providers == CPU


def _golden_pixels() -> np.ndarray:
    """The golden photos of tests/golden (what the bundle's parity tests encode)."""
    path = Path(__file__).resolve().parent / "golden" / "regenerate.py"
    spec = importlib.util.spec_from_file_location("golden_regenerate", path)
    golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(golden)
    return golden.golden_pixels()


@pytest.mark.skipif(not _has_gpu()[0], reason=_has_gpu()[1])
def test_cuda_outputs_match_cpu_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model of the bundle on CUDA against the same model on the CPU."""
    pixels = _golden_pixels()
    texts = ["a dog catches a frisbee", "two children play on a beach at sunset"]
    outputs = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setenv(models.DEVICE_ENV, device)
        bundle = ModelBundle.load()
        features, logits = bundle.image_encoder.encode(pixels)
        text = bundle.text_encoder.encode(texts)
        outputs[device] = (features, logits, bundle.space.image_vectors(features), text)
        expected = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        assert bundle.image_encoder.model.providers[0] == expected
    for cpu, cuda in zip(outputs["cpu"][:3], outputs["cuda"][:3], strict=True):
        np.testing.assert_allclose(cuda, cpu, rtol=0, atol=IMAGE_ATOL)
    np.testing.assert_allclose(outputs["cuda"][3], outputs["cpu"][3], rtol=0, atol=TEXT_ATOL)
