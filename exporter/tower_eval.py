"""Fine-tune the image tower and measure it the way the bundle will use it (issue #13).

:func:`prepare` reads the corpus (legal filter), the child labels and both splits, and the
cached trunk activations; :func:`measure_features` retrains the shipped joint space
(``JointConfig()``, mix 0.6) and the child classifier (person gate, recall 0.95) on a set of
pooled features and reports what ships would score on the held-out photos:

- ranking: the joint space's validation split (900 photos held out by photo, seed 42), text ->
  image R@1/5/10 and median rank among those 900 photos;
- child detector: recall and false-positive rate at the threshold chosen on the child split's
  validation photos, on its test photos (never seen by any training step).

The tower is fine-tuned on the joint space's training photos minus the child split's test
photos; the child head sees only the child split's training labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter.tower_data import view_activations
from pixsearch.exporter.tower_train import TowerData

Log = Callable[[str], None]

VIEWS = ("photo", "hflip", "crop1", "crop2", "crop3", "crop4", "crop5", "crop6")
"""Cached views a fine-tuning step draws from: the photo, its mirror, six random resized crops
(with two crops: the same ranking within the seed spread, child ROC-AUC 0.895 against 0.901;
docs/tower.md)."""


@dataclass
class Prepared:
    corpus: Any
    bridge: Any
    labels: Any
    """``PhotoLabels`` of the child split."""
    label_rows: np.ndarray
    """Corpus row of each ``labels`` photo."""
    child_parts: tuple[np.ndarray, np.ndarray, np.ndarray]
    """Child split (train, validation, test) as positions in ``labels``."""
    space_train: np.ndarray
    space_val: np.ndarray
    tower_data: TowerData
    """What fine-tuning reads (its ``views`` are the cached trunk activations)."""


def prepare(
    data_dir: str | Path,
    bundle: Any,
    *,
    cache_dir: str | Path | None = None,
    views: Sequence[str] = VIEWS,
    seed: int = 42,
    n_val: int = 900,
    log: Log = lambda m: None,
) -> Prepared:
    """Corpus, labels, splits and trunk activations (see the module docstring)."""
    from pixsearch.exporter.child_data import grouped_three_way_split, load_photo_labels
    from pixsearch.exporter.features import sha256_file
    from pixsearch.exporter.space_data import Bridge, load_corpus, read_manifest, split_photos

    corpus = load_corpus(
        data_dir, bundle, cache_dir=cache_dir, flip=False, text_views=True, log=log
    )
    bridge = Bridge.from_bundle(bundle)
    space_train, space_val = split_photos(len(corpus.images), n_val, seed)
    labels = load_photo_labels(data_dir)
    _, duplicate_of, _ = read_manifest(Path(data_dir))
    row_of = {name: i for i, name in enumerate(corpus.images)}
    label_rows = np.array(
        [row_of.get(duplicate_of.get(n, n), -1) for n in labels.images], dtype=np.int64
    )
    keep = label_rows >= 0  # the damaged photo is in neither
    child_train, child_val, child_test = grouped_three_way_split(labels.groups, seed=seed)
    child_labels = np.full(len(corpus.images), -1, dtype=np.int64)
    train_rows = label_rows[child_train][keep[child_train]]
    child_labels[train_rows] = labels.labels[child_train][keep[child_train]]
    test_rows = set(label_rows[child_test][keep[child_test]].tolist())
    tower_photos = np.array([p for p in space_train.tolist() if p not in test_rows])
    keys = [sha256_file(p) for p in corpus.paths]
    data = TowerData(
        views=view_activations(corpus.paths, keys, views, cache_dir=cache_dir, log=log),
        caption_image=corpus.caption_image,
        text_features=corpus.text_features,
        train_photos=tower_photos,
        child_labels=child_labels,
        # the label bridge's classifier is ImageNet's own (tests/test_bundle_reference.py)
        fc_weight=bridge.fc_weight_t.T,
        fc_bias=bridge.fc_bias,
    )
    log(
        f"tower training photos {len(tower_photos)} (child labels on "
        f"{int((child_labels[tower_photos] >= 0).sum())}), space validation {len(space_val)}"
    )
    return Prepared(
        corpus,
        bridge,
        labels,
        label_rows,
        (child_train, child_val, child_test),
        space_train,
        space_val,
        data,
    )


def measure_features(
    prepared: Prepared,
    features: np.ndarray,
    *,
    hflip: np.ndarray | None = None,
    seed: int = 42,
    threads: int = 2,
    log: Log = lambda m: None,
) -> dict[str, Any]:
    """Retrain the shipped joint space and child classifier on ``features``; held-out figures."""
    from pixsearch.exporter.child_train import train_child_classifier
    from pixsearch.exporter.space_eval import evaluate
    from pixsearch.exporter.space_train import JointConfig, train_joint

    corpus = replace(
        prepared.corpus,
        features=features,
        view_features=[hflip] if hflip is not None else prepared.corpus.view_features,
    )
    model = train_joint(
        corpus, prepared.space_train, prepared.bridge, JointConfig(seed=seed, threads=threads)
    )
    out: dict[str, Any] = {
        "space_mix_0.6": evaluate(model, corpus, prepared.space_val, mix=0.6),
        "space_joint_only": evaluate(model, corpus, prepared.space_val, mix=1.0),
        "bridge_only": evaluate(model, corpus, prepared.space_val, mix=0.0),
    }
    log(f"space: {out['space_mix_0.6']} (joint only {out['space_joint_only']})")
    rows = prepared.label_rows
    keep = rows >= 0
    parts = [p[keep[p]] for p in prepared.child_parts]
    remap = np.cumsum(keep) - 1
    train, val, test = (remap[p] for p in parts)
    labels = prepared.labels
    classifier = train_child_classifier(
        features[rows[keep]],
        labels.labels[keep],
        train,
        val,
        test,
        seed=seed,
        person_labels=labels.person_labels[keep],
    )
    out["child_validation"] = {
        k: classifier.validation[k] for k in ("recall", "false_positive_rate", "roc_auc")
    }
    out["child_test"] = {
        k: classifier.test[k] for k in ("recall", "false_positive_rate", "roc_auc")
    }
    out["child_model"] = classifier.name
    log(f"child: validation {out['child_validation']}, test {out['child_test']}")
    return out
