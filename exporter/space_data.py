"""The joint space's data: the label bridge's parameters, the captioned corpus, the photo split.

Photos are EfficientNet-Lite0 pooled ``features [1280]``, texts MiniLM ``embeddings [384]``,
both read from the feature cache (``pixsearch.exporter.features``); captions about children
are dropped here (the legal filter), before any training sees them.

>>> tr, va = split_photos(10, 3, seed=0)
>>> len(tr), len(va)
(7, 3)
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.indexer.errors import ModelBundleError

Predicate = Callable[[str], bool]


@dataclass
class Bridge:
    """The label-bridge parameters: EfficientNet's classifier and the class-name embeddings."""

    fc_weight_t: np.ndarray
    """``[1280, 1000]``: features @ fc_weight_t + fc_bias = ImageNet logits."""
    fc_bias: np.ndarray
    class_embeddings: np.ndarray
    """``[1000, 384]`` text embeddings of the class-name prompts."""
    top_k: int = 20

    @classmethod
    def from_bundle(cls, bundle: Any) -> Bridge:
        """Read the parameters from the bundle's image head (the label bridge or a joint head
        made here: both name their initializers ``fc_weight_t``, ``fc_bias``,
        ``class_embeddings``)."""
        import onnx
        from onnx import numpy_helper

        space = bundle.manifest["space"]
        model = onnx.load(str(Path(bundle.path) / space["files"]["image_head"]))
        weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        top_k = int(space.get("params", {}).get("top_k", space.get("bridge", {}).get("top_k", 20)))
        missing = {"fc_weight_t", "fc_bias", "class_embeddings"} - set(weights)
        if missing:
            raise ModelBundleError(
                f"the bundle's image head has no label-bridge weights ({sorted(missing)}); "
                'run "pixsearch export" to rebuild the bundle'
            )
        return cls(
            weights["fc_weight_t"].astype(np.float32),
            weights["fc_bias"].astype(np.float32),
            weights["class_embeddings"].astype(np.float32),
            top_k,
        )

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float32) @ self.fc_weight_t + self.fc_bias

    def vectors(self, features: np.ndarray) -> np.ndarray:
        """Label-bridge image vectors ``[N, 384]`` (float32, unit length)."""
        from pixsearch.exporter._onnx_tools import bridge_from_logits

        return bridge_from_logits(self.logits(features), self.class_embeddings, self.top_k)


@dataclass
class Corpus:
    """Captioned photos with cached features; captions about children already removed."""

    images: list[str]
    """Unique photos (a byte-identical duplicate keeps the first name; its captions merge)."""
    paths: list[Path]
    features: np.ndarray
    """``[I, 1280]``."""
    view_features: list[np.ndarray]
    """Augmented views for training, each ``[I, 1280]``: the mirrored photos, then random
    resized crops (``augment_view``); empty without augmentation."""
    captions: list[str]
    caption_image: np.ndarray
    """``[C]`` index of each caption's photo in ``images``."""
    text_features: np.ndarray
    """``[C, 384]``."""
    filter_counts: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    text_view_features: list[np.ndarray] = field(default_factory=list)
    """Other embeddings of the captions for training, each ``[C, 384]``: the multilingual
    encoder's (the path a Russian query takes); empty unless asked for."""


def read_manifest(data_dir: Path) -> tuple[list[tuple[str, Path]], dict[str, str], list[str]]:
    """``(photos, duplicate_of, damaged)`` from ``flickr8k/manifest.csv``.

    A note ``byte-identical duplicate of X`` merges the photo into ``X`` (the name sorting first
    is kept); any other note marks the photo as damaged (left out of training and validation).
    """
    manifest = data_dir / "flickr8k" / "manifest.csv"
    photos: list[tuple[str, Path]] = []
    duplicate_of: dict[str, str] = {}
    damaged: list[str] = []
    with open(manifest, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            name, note = row["image"], (row.get("note") or "").strip()
            photos.append((name, data_dir / row["folder"] / name))
            if "duplicate of" in note:
                other = note.rsplit(" ", 1)[-1]
                keep = min(name, other)
                if name != keep:
                    duplicate_of[name] = keep
            elif note:
                damaged.append(name)
    return photos, duplicate_of, damaged


def load_corpus(
    data_dir: str | Path,
    bundle: Any,
    *,
    cache_dir: str | Path | None = None,
    predicate: Predicate | None = None,
    flip: bool = True,
    crop_views: int = 0,
    max_images: int | None = None,
    seed: int = 42,
    text_views: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Corpus:
    """Photos of ``manifest.csv`` + ``captions.tsv``, legal filter applied, features cached."""
    from pixsearch.exporter.features import image_features, text_features

    if predicate is None:
        from pixsearch.exporter.legal_filter import children_predicate

        predicate = children_predicate()
    data_dir = Path(data_dir)
    photos, duplicate_of, damaged = read_manifest(data_dir)
    by_image: dict[str, list[str]] = {}
    with open(data_dir / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            by_image.setdefault(row["image"], []).append(row["caption"])
    n_captions = sum(len(v) for v in by_image.values())
    dropped_damaged = set(damaged)
    keep = [(n, p) for n, p in photos if n not in dropped_damaged and n not in duplicate_of]
    if max_images is not None and max_images < len(keep):
        rng = np.random.default_rng(seed)
        keep = [keep[i] for i in sorted(rng.choice(len(keep), max_images, replace=False))]
    merged: dict[str, list[str]] = {n: list(by_image.get(n, [])) for n, _ in keep}
    for dup, target in duplicate_of.items():
        if target in merged:
            merged[target] += by_image.get(dup, [])
    counts = {"captions_read": n_captions, "photos_read": len(photos)}
    verdict: dict[str, bool] = {}
    images, paths, captions, owner = [], [], [], []
    removed_captions = 0
    photos_all_child = []
    for name, path in keep:
        texts = merged[name]
        kept = []
        for text in texts:
            if text not in verdict:
                verdict[text] = bool(predicate(text))
            if verdict[text]:
                removed_captions += 1
            else:
                kept.append(text)
        if texts and not kept:
            photos_all_child.append(name)
        index = len(images)
        images.append(name)
        paths.append(path)
        captions += kept
        owner += [index] * len(kept)
    counts.update(
        captions_about_children=removed_captions,
        captions_kept=len(captions),
        photos_damaged=len(dropped_damaged),
        photos_duplicate_merged=len(duplicate_of),
        photos_with_only_child_captions=len(photos_all_child),
        photos_kept=len(images),
    )
    log(
        f"{len(images)} photos, {len(captions)} captions kept; {removed_captions} captions about "
        f"children dropped ({len(photos_all_child)} photos left with no caption)"
    )
    feats = image_features(paths, bundle, cache_dir, workers=2)
    views = [f"crop{i}" for i in range(1, crop_views + 1)]
    views = (["hflip"] if flip else []) + views
    view_features = [image_features(paths, bundle, cache_dir, workers=2, view=v) for v in views]
    texts = text_features(captions, bundle, cache_dir)
    text_view_features = (
        [text_features(captions, bundle, cache_dir, encoder="text_encoder_multilingual")]
        if text_views
        else []
    )
    return Corpus(
        images,
        paths,
        feats,
        view_features,
        captions,
        np.asarray(owner, dtype=np.int64),
        texts,
        counts,
        {
            "damaged": sorted(dropped_damaged),
            "duplicates": sorted(duplicate_of),
            "only_child_captions": photos_all_child,
        },
        text_view_features,
    )


def split_photos(n_images: int, n_val: int = 900, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Seeded photo split: ``(train_photo_indices, val_photo_indices)``, both sorted.

    >>> tr, va = split_photos(10, 3, seed=0)
    >>> len(tr), len(va), set(tr.tolist()).isdisjoint(va.tolist())
    (7, 3, True)
    """
    order = np.random.default_rng(seed).permutation(n_images)
    n_val = min(n_val, n_images - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def judged_pairs(
    data_dir: Path,
    corpus: Corpus,
    bundle: Any,
    cache_dir: Any,
    predicate: Predicate,
) -> tuple[Any, dict[str, Any]]:
    """The customer's judged pairs (merged score, legal filter applied) as reranker rows.

    Returns ``(frame with image_row and text features, filter report)``; photos not in the
    corpus (damaged) are dropped.
    """
    from pixsearch.exporter.features import text_features
    from pixsearch.exporter.workflow import prepare_pairs

    _data, _scored, kept, report = prepare_pairs(data_dir, predicate=predicate, decode_photos=False)
    position = {name: i for i, name in enumerate(corpus.images)}
    kept = kept[kept["image"].isin(position)].reset_index(drop=True)
    kept["image_row"] = kept["image"].map(position)
    feats = text_features(kept["query_text"].tolist(), bundle, cache_dir)
    return kept, {"features": feats, "filter": asdict(report)}
