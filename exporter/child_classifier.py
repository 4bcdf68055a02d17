"""The child-photo classifier of the content policy (issue #4): train, pick a threshold, export.

Users' photos have no captions, so the policy needs an image classifier. Labels come from the
captioned training photos: a photo *shows a child* when at least 2 of its 5 captions are about
children (:func:`pixsearch.indexer.policy.is_about_children`). The classifier reads the image
encoder's pooled ``features [N,1280]`` (:func:`pixsearch.exporter.features.image_features`), so
indexing costs one small matrix product more per photo.

The rule has two stages: ``restricted = person_present AND child_score >= t``. A *person*
classifier (a photo shows a person when a caption names one: :data:`PERSON_WORDS`, or is about
children) gates at a very high recall for people (:data:`DEFAULT_PERSON_RECALL` on validation),
so photos without people (a cat, the moon, a brick wall) are not restricted whatever their
child score; the child classifier decides among the rest. One ONNX model computes both::

    score = sigmoid(min(z_person - logit(t_person), z_child - logit(t_child)))

(``z`` the logit of each stage), so ``score >= 0.5`` exactly when both stages pass; the
manifest's threshold is that boundary read off the ONNX scores (0.5 up to float32 rounding).

Steps (``pixsearch train-policy DATA``):

1. labels (child, person) and photo groups (byte-identical photos share a group) -> a seeded
   split grouped by photo: train / validation (model choice and thresholds) / test (untouched,
   reported only);
2. child candidates (logistic regression, a one-hidden-layer MLP) fit on train, each scored on
   validation by its false-positive rate at the recall target, then ROC-AUC;
3. person candidates (logistic regression) fit on train; each gate's threshold keeps the person
   recall on validation, and the child threshold under it the recall target of the combined
   rule; the lowest combined false-positive rate wins;
4. the winners are written as one ONNX model (``features float32 [N,1280]`` -> ``scores float32
   [N]``, the standard scalers folded into the first layers), compared with scikit-learn on the
   validation and test features (:class:`ParityError` past :data:`PARITY_MAX_ABS`);
   the threshold is the highest score that keeps the recall target on validation, chosen on the
   ONNX scores that the indexer will compute;
5. :func:`~pixsearch.exporter.bundle_update.add_to_bundle` adds ``child_classifier.onnx`` and the
   manifest section ``policy.child_classifier``; a model card (Markdown) and ``metrics.json``
   go to the report folder.

scikit-learn is imported inside the functions that fit models; everything else is numpy.

The work is split by job: data (``child_data``), training (``child_train``), ONNX export and
the bundle section (``child_export``), model card (``child_report``); this module runs them
(:func:`run_train_policy`) and re-exports their public names.

>>> import numpy as np
>>> threshold_for_recall(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), np.array([1, 1, 0, 1, 0]), 0.6)
0.8
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pixsearch.exporter.child_data import (
    CUSTOMER_FOLDER,
    DEFAULT_PERSON_RECALL,
    DEFAULT_RECALL,
    DEFAULT_SEED,
    LABELS_TEXT,
    MIN_CHILD_CAPTIONS,
    MIN_PERSON_CAPTIONS,
    PERSON_LABELS_TEXT,
    PERSON_WORDS,
    PHOTO_FOLDERS,
    TEST_SIZE,
    VAL_SIZE,
    PhotoLabels,
    grouped_three_way_split,
    load_photo_labels,
    mentions_person,
)
from pixsearch.exporter.child_export import (
    ONNX_FILE,
    PARITY_MAX_ABS,
    Layers,
    Stage,
    check_parity,
    layers_reference,
    layers_to_onnx,
    onnx_scores,
    stages_reference,
    stages_to_onnx,
    write_to_bundle,
)
from pixsearch.exporter.child_report import (
    PolicyTrainReport,
    customer_figures,
    model_card,
    write_model_card,
)
from pixsearch.exporter.child_train import (
    Candidate,
    Log,
    TrainedClassifier,
    _log_nothing,
    binary_metrics,
    default_candidates,
    model_logits,
    person_candidates,
    pipeline_layers,
    roc_auc,
    threshold_for_recall,
    train_child_classifier,
)
from pixsearch.exporter.parity import ParityError

__all__ = [
    "CUSTOMER_FOLDER",
    "DEFAULT_PERSON_RECALL",
    "DEFAULT_RECALL",
    "DEFAULT_SEED",
    "LABELS_TEXT",
    "MIN_CHILD_CAPTIONS",
    "MIN_PERSON_CAPTIONS",
    "ONNX_FILE",
    "PARITY_MAX_ABS",
    "PERSON_LABELS_TEXT",
    "PERSON_WORDS",
    "PHOTO_FOLDERS",
    "TEST_SIZE",
    "VAL_SIZE",
    "Candidate",
    "Layers",
    "Log",
    "ParityError",
    "PhotoLabels",
    "PolicyTrainReport",
    "Stage",
    "TrainedClassifier",
    "binary_metrics",
    "check_parity",
    "customer_figures",
    "default_candidates",
    "grouped_three_way_split",
    "layers_reference",
    "layers_to_onnx",
    "load_photo_labels",
    "mentions_person",
    "model_card",
    "model_logits",
    "onnx_scores",
    "person_candidates",
    "pipeline_layers",
    "roc_auc",
    "run_train_policy",
    "stages_reference",
    "stages_to_onnx",
    "threshold_for_recall",
    "train_child_classifier",
    "write_model_card",
    "write_to_bundle",
]


def run_train_policy(
    data_dir: str | Path,
    *,
    bundle_dir: str | Path | None = None,
    out_dir: str | Path | None = Path("policy-report"),
    target_recall: float = DEFAULT_RECALL,
    seed: int = DEFAULT_SEED,
    cache_dir: str | Path | None = None,
    write_bundle: bool = True,
    candidates: Sequence[Candidate] | None = None,
    person_recall: float | None = DEFAULT_PERSON_RECALL,
    log: Log = _log_nothing,
) -> PolicyTrainReport:
    """Labels -> features -> train/choose/export -> bundle section -> model card.

    ``person_recall=None`` trains the child classifier alone (no person gate)."""
    from pixsearch.exporter.features import image_features
    from pixsearch.indexer.models import ModelBundle
    from pixsearch.indexer.rows import feature_source

    bundle = ModelBundle.load(bundle_dir)
    log("reading captions and hashing photos")
    labels = load_photo_labels(data_dir)
    log(
        f"{len(labels)} photos, {int(labels.labels.sum())} labelled as showing a child, "
        f"{int(labels.person_labels.sum())} a person"
    )
    features = image_features(
        labels.paths,
        bundle,
        cache_dir,
        progress=lambda done, total: (
            log(f"encoded {done}/{total} photos") if done == total else None
        ),
    )
    train, val, test = grouped_three_way_split(labels.groups, seed=seed)
    classifier = train_child_classifier(
        features,
        labels.labels,
        train,
        val,
        test,
        target_recall=target_recall,
        candidates=candidates,
        seed=seed,
        person_labels=labels.person_labels if person_recall is not None else None,
        person_recall=person_recall if person_recall is not None else DEFAULT_PERSON_RECALL,
        log=log,
    )
    scores = onnx_scores(classifier.onnx_bytes, features)
    parts = {"train": train, "validation": val, "test": test}
    customer = customer_figures(labels, scores, classifier.threshold, parts)
    no_person = labels.person_labels == 0
    classifier.no_person_flagged = {
        name: {
            "photos": int(no_person[part].sum()),
            "flagged": int((scores[part][no_person[part]] >= classifier.threshold).sum()),
        }
        for name, part in parts.items()
    }
    report = PolicyTrainReport(
        classifier=classifier,
        photos=len(labels),
        positives=int(labels.labels.sum()),
        missing_photos=labels.missing_photos,
        customer=customer,
        seed=seed,
        bundle_dir=str(bundle.path),
        bundle_id=None,
        feature_source=feature_source(bundle),
    )
    if write_bundle:
        report.bundle_id = write_to_bundle(report, bundle.path)
        log(f"added {ONNX_FILE} to {bundle.path} (bundle id {report.bundle_id})")
    if out_dir is not None:
        report.card_path = write_model_card(report, Path(out_dir))
        log(f"wrote {report.card_path}")
    return report
