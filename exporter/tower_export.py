"""Export the fine-tuned image tower as the bundle's ``image_encoder.onnx`` (issue #13).

The architecture is EfficientNet-Lite0's, unchanged (the same graph as ``pixsearch export``
writes, so indexing costs the same); only the weights of the fine-tuned blocks differ. The
export is compared with the PyTorch model on the parity photos (``TOLERANCES`` of the encoder)
before anything is installed, and the manifest's ``models.image_encoder.fine_tuned`` records
how it was trained.

>>> FINE_TUNED_KEY
'fine_tuned'
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixsearch.exporter.tower_train import TrainedTower

FINE_TUNED_KEY = "fine_tuned"
"""Manifest key (under ``models.image_encoder``) of a fine-tuned encoder's training record."""

Log = Callable[[str], None]


def fine_tuned_net(trained: TrainedTower) -> Any:
    """EfficientNet-Lite0 with ImageNet weights, its tail replaced by the fine-tuned one."""
    from pixsearch.exporter import _sources as sources

    net = sources.load_image_model()
    state = net.state_dict()
    unknown = set(trained.state) - set(state)
    if unknown:
        raise KeyError(f"fine-tuned weights not in EfficientNet-Lite0: {sorted(unknown)[:3]}")
    state.update(trained.state)
    net.load_state_dict(state, strict=True)
    return net.eval()


def install_tower(
    trained: TrainedTower,
    bundle_dir: Path | None = None,
    *,
    log: Log = lambda m: None,
) -> dict[str, Any]:
    """Export, check parity, and replace the bundle's image encoder; returns the manifest."""
    import torch

    from pixsearch.exporter import _sources as sources
    from pixsearch.exporter.bundle_update import add_to_bundle
    from pixsearch.exporter.export_bundle import IMAGE_FILE, _export_image, compare, parity_images
    from pixsearch.indexer.models import ImageEncoder, OnnxModel

    net = fine_tuned_net(trained)
    with tempfile.TemporaryDirectory() as work:
        path = _export_image(net, Path(work), log)
        pixels = parity_images()
        with torch.inference_mode():
            reference = [t.numpy() for t in sources.pixel_encoder(net)(torch.from_numpy(pixels))]
        exported = ImageEncoder(OnnxModel(path)).encode(pixels, batch_size=3)
        # compare() raises ParityError past the encoder's tolerance: nothing is installed
        parity = {
            f"image_encoder.{which}": compare(f"image_encoder.{which}", ref, out)
            for which, ref, out in zip(("features", "logits"), reference, exported, strict=True)
        }

        def update(manifest: dict[str, Any]) -> None:
            entry = manifest["models"]["image_encoder"]
            entry["variant"] = "fp32, fine-tuned"
            entry[FINE_TUNED_KEY] = {
                "trained_blocks": f"{trained.config.train_from}-15 and the head conv",
                "config": trained.config_dict(),
                "seconds": trained.seconds,
                "history": trained.history,
            }
            manifest.setdefault("parity", {}).update(parity)

        manifest = add_to_bundle({IMAGE_FILE: path}, update, bundle_dir)
    log(f"installed the fine-tuned {IMAGE_FILE} (bundle {manifest['bundle_id']})")
    return manifest
