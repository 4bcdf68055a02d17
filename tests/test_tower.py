"""The fine-tuned image tower (issue #13): the trunk/tail cut, training, export parity."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip(
        "torch", reason='needs the [train] extra: pip install "pixsearch[train]"'
    )


def test_trunk_then_tail_is_the_whole_encoder(torch) -> None:
    """Cached activations + the trained tail compute exactly what the pixel encoder computes."""
    from pixsearch.exporter import _sources as sources
    from pixsearch.exporter.export_bundle import parity_images
    from pixsearch.exporter.tower_data import trunk_module
    from pixsearch.exporter.tower_train import build_tail

    net = sources.load_image_model()
    pixels = torch.from_numpy(parity_images()[:4])
    with torch.inference_mode():
        whole, _logits = sources.pixel_encoder(net)(pixels)
        activations, frozen = trunk_module(net)(pixels)
        tail = build_tail(net).eval()(activations)
    assert activations.shape == (4, 192, 7, 7)
    np.testing.assert_allclose(frozen.numpy(), whole.numpy(), atol=1e-5)
    np.testing.assert_allclose(tail.numpy(), whole.numpy(), atol=1e-5)


def test_tail_training_keeps_batch_norm_statistics_and_frozen_blocks(torch) -> None:
    from pixsearch.exporter import _sources as sources
    from pixsearch.exporter.tower_train import build_tail

    net = sources.load_image_model()
    tail = build_tail(net, train_from=14).train()
    before = net._bn1.running_mean.clone()
    tail(torch.randn(8, 192, 7, 7)).sum().backward()
    assert torch.equal(net._bn1.running_mean, before)  # eval-mode batch norms
    assert net._blocks[12]._expand_conv.weight.grad is None  # frozen (train_from=14)
    assert net._blocks[14]._expand_conv.weight.grad is not None
    assert net._conv_head.weight.grad is not None


@pytest.mark.parametrize("command", ["train-tower", "retrain"])
def test_train_tower_and_retrain_on_a_folder_without_data_exit_2(tmp_path, command) -> None:
    from typer.testing import CliRunner

    from pixsearch.search.cli import app

    result = CliRunner().invoke(app, [command, str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "flickr8k/manifest.csv" in result.stderr and "Traceback" not in result.stderr


def _tiny_tower_data(net, torch):  # type: ignore[no-untyped-def]
    """16 photos of real trunk activations (random pixels through the real trunk), 2 captions
    each, half labelled as showing a child."""
    from pixsearch.exporter.tower_data import ViewActivations, trunk_module
    from pixsearch.exporter.tower_train import TowerData

    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (16, 224, 224, 3), dtype=np.uint8))
    with torch.inference_mode():
        activations, features = trunk_module(net)(pixels)
    text = rng.normal(size=(32, 384)).astype(np.float32)
    fc = net._fc
    return TowerData(
        views=[ViewActivations("photo", activations.numpy(), features.numpy())],
        caption_image=np.repeat(np.arange(16), 2),
        text_features=text / np.linalg.norm(text, axis=1, keepdims=True),
        train_photos=np.arange(16),
        child_labels=np.tile([0, 1], 8),
        fc_weight=fc.weight.detach().numpy(),
        fc_bias=fc.bias.detach().numpy(),
    )


def test_wise_alpha_interpolates_the_tail_between_imagenet_and_fine_tuned(torch) -> None:
    from pixsearch.exporter import _sources as sources
    from pixsearch.exporter.tower_train import TowerConfig, train_tower

    imagenet = sources.load_image_model().state_dict()
    data = _tiny_tower_data(sources.load_image_model(), torch)
    small = dict(epochs=1, batch_photos=8, hidden=32, dim=16, threads=1)
    tuned = train_tower(sources.load_image_model(), data, TowerConfig(**small)).state
    half = train_tower(sources.load_image_model(), data, TowerConfig(**small, wise_alpha=0.5)).state
    name = "_blocks.14._expand_conv.weight"
    assert not torch.allclose(tuned[name], imagenet[name], atol=1e-6)  # training moved it
    for key, value in half.items():
        if value.is_floating_point() and "running" not in key:
            expected = 0.5 * tuned[key] + 0.5 * imagenet[key]
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-5, msg=key)
