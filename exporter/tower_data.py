"""The image tower's training data: frozen trunk activations of every photo view, cached.

Fine-tuning EfficientNet-Lite0 end to end on 2 CPU cores is slow (~17 photos/s forward in
PyTorch). Its first 12 blocks are generic; only the last ones (``TRAINABLE_FROM``: the
7x7 stage, blocks 12-15, and the 1x1 head) are trained. So the frozen trunk runs once per
photo and view, in onnxruntime, and its activations ``[192, 7, 7]`` are cached (float16, 18 KB
per view); each training step runs only the tail. The trunk's ONNX model also returns the
frozen pooled ``features [1280]`` of each view: the teacher of the label bridge's distillation
(:mod:`pixsearch.exporter.tower_train`).

Views: ``"photo"`` (the photo itself) and the augmented views of
:func:`pixsearch.exporter.features.augment_view` (``"hflip"``, ``"crop1"``, ...), seeded by the
photo's content hash, so a cached view is always the same view. Cache layout::

    <cache_dir>/tower-<trunk sha256[:16]>/<view>.npz   keys, activations, features

>>> TRAINABLE_FROM
12
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter._onnx_tools import OPSET
from pixsearch.exporter.features import augment_view, default_cache_dir

TRAINABLE_FROM = 12
"""First EfficientNet-Lite0 block that is trained; blocks before it stay frozen (cached)."""

Log = Callable[[str], None]


@dataclass
class ViewActivations:
    """One view of every photo: trunk activations and the frozen pooled features."""

    view: str
    activations: np.ndarray
    """``float16 [I, 192, 7, 7]``: output of block ``TRAINABLE_FROM - 1``."""
    features: np.ndarray
    """``float32 [I, 1280]``: the frozen encoder's pooled features of the same view."""


def trunk_module(net: Any) -> Any:
    """``uint8 NHWC pixels -> (activations, frozen pooled features)`` as one torch module."""
    import torch

    from pixsearch.exporter._sources import normalised_pixels

    class Trunk(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = normalised_pixels(pixels)
            x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
            cut = None
            for index, block in enumerate(self.net._blocks):
                if index == TRAINABLE_FROM:
                    cut = x
                x = block(x)
            x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
            return cut, torch.flatten(self.net._avg_pooling(x), 1)

    return Trunk().eval()


def trunk_key(weights_path: Path) -> str:
    """``tower-`` + the first 16 hex digits of the frozen checkpoint's sha256 (and the cut)."""
    digest = hashlib.sha256(Path(weights_path).read_bytes()).hexdigest()
    return f"tower-{digest[:16]}-b{TRAINABLE_FROM}"


def _export_trunk(net: Any, target: Path) -> None:
    import torch

    example = torch.zeros(2, 224, 224, 3, dtype=torch.uint8)
    torch.onnx.export(
        trunk_module(net),
        (example,),
        str(target),
        input_names=["pixels"],
        output_names=["activations", "features"],
        opset_version=OPSET,
        dynamo=False,
        dynamic_axes={"pixels": {0: "batch"}},
    )


def _pixels(path: Path, key: str, view: str) -> np.ndarray:
    from pixsearch.indexer.preprocess import load_photo

    pixels = load_photo(path).pixels
    return pixels if view == "photo" else augment_view(pixels, view, key)


def view_activations(
    paths: Sequence[Path],
    keys: Sequence[str],
    views: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    log: Log = lambda message: None,
) -> list[ViewActivations]:
    """Trunk activations of every photo for each view, from the cache or computed (and cached).

    ``keys`` are the photos' content hashes (they seed the augmented views and key the cache).
    """
    from pixsearch.exporter import _sources as sources
    from pixsearch.indexer.models import OnnxModel

    weights = sources.image_weights_path()
    folder = Path(cache_dir or default_cache_dir()) / trunk_key(weights)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = np.asarray(keys, dtype="U64")
    out: list[ViewActivations] = []
    session = None
    with tempfile.TemporaryDirectory() as work, ThreadPoolExecutor(max_workers=2) as pool:
        for view in views:
            path = folder / f"{view}.npz"
            if path.is_file():
                with np.load(path) as data:
                    if data["keys"].shape == wanted.shape and (data["keys"] == wanted).all():
                        out.append(ViewActivations(view, data["activations"], data["features"]))
                        continue
            if session is None:
                model = Path(work) / "trunk.onnx"
                _export_trunk(sources.load_image_model(), model)
                session = OnnxModel(model).session
            acts = np.zeros((len(paths), 192, 7, 7), dtype=np.float16)
            feats = np.zeros((len(paths), 1280), dtype=np.float32)
            for start in range(0, len(paths), batch_size):
                stop = min(start + batch_size, len(paths))
                pixels = np.stack(
                    list(
                        pool.map(
                            _pixels, paths[start:stop], keys[start:stop], [view] * (stop - start)
                        )
                    )
                )
                a, f = session.run(None, {"pixels": pixels})
                acts[start:stop] = a.astype(np.float16)
                feats[start:stop] = f
                if stop % (batch_size * 20) == 0 or stop == len(paths):
                    log(f"trunk {view}: {stop}/{len(paths)} photos")
            tmp = folder / f".{view}.partial.npz"
            np.savez(tmp, keys=wanted, activations=acts, features=feats)
            os.replace(tmp, path)
            out.append(ViewActivations(view, acts, feats))
    return out
