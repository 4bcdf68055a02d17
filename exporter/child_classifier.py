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

>>> threshold_for_recall(np.array([0.9, 0.8, 0.7, 0.2, 0.1]), np.array([1, 1, 0, 1, 0]), 0.6)
0.8
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.db.errors import InvalidInputError, ModelBundleError

ONNX_FILE = "child_classifier.onnx"
MIN_CHILD_CAPTIONS = 2
"""A photo shows a child when at least this many of its captions are about children."""
DEFAULT_RECALL = 0.95
DEFAULT_SEED = 42
VAL_SIZE = 0.15
TEST_SIZE = 0.15
PARITY_MAX_ABS = 1e-4
"""Largest allowed |ONNX score - scikit-learn probability| on the parity features."""
LABELS_TEXT = (
    "a photo shows a child when at least 2 of its 5 Flickr8k captions are about children "
    "(pixsearch.indexer.policy.is_about_children)"
)
DEFAULT_PERSON_RECALL = 0.99
"""Recall of the person gate on the validation photos that show people."""
MIN_PERSON_CAPTIONS = 1
"""A photo shows a person when at least this many of its captions name one."""
_PERSON_WORDS_TEXT = """
    man men woman women person persons people guy guys lady ladies gentleman gentlemen adults
    male males female females someone somebody everyone crowd crowds audience spectator spectators
    fan fans team teams family couple couples friend friends mother mom mommy father dad daddy
    parent parents son daughter brother sister grandmother grandfather grandma grandpa wife
    husband bride groom boy boys girl girls child children kid kids baby babies toddler toddlers
    teen teens teenager teenagers student students tourist tourists pedestrian pedestrians
    shopper shoppers worker workers vendor vendors police policeman policemen officer officers
    soldier soldiers fireman firemen cowboy cowboys cowgirl clown clowns artist artists
    photographer photographers dancer dancers musician musicians singer singers guitarist
    guitarists drummer drummers band performer performers cheerleader cheerleaders marcher
    marchers protester protesters player players athlete athletes referee umpire goalie batter
    pitcher catcher jockey wrestler wrestlers boxer boxers fighter fighters lifeguard lifeguards
    skier skiers snowboarder snowboarders surfer surfers skateboarder skateboarders skater skaters
    blader rollerblader wakeboarder wakeboarders waterskier waterskiers skiier kiteboarder
    parasailer windsurfer boarder boarders biker bikers cyclist cyclists bicyclist bicyclists
    rider riders motorcyclist motorcyclists racer racers driver drivers climber climbers hiker
    hikers runner runners jogger joggers swimmer swimmers diver divers kayaker kayakers canoeist
    paddler paddlers rower rowers sailor sailors fisherman fishermen
"""
PERSON_WORDS = frozenset(_PERSON_WORDS_TEXT.split())
"""Words that name a person in Flickr8k captions (curated from the caption vocabulary; not
pronouns, which captions also use for dogs, nor ``adult``, used for animals)."""
PERSON_LABELS_TEXT = (
    "a photo shows a person when at least 1 of its captions names one (PERSON_WORDS in "
    "pixsearch.exporter.child_classifier) or is about children"
)
PHOTO_FOLDERS = ("flickr8k/images", "practicum/train_images")
CUSTOMER_FOLDER = "practicum/train_images"

Log = Callable[[str], None]


class ParityError(ModelBundleError):
    """The exported ONNX classifier does not reproduce the scikit-learn model."""


def _log_nothing(_: str) -> None:
    return None


_WORD = re.compile(r"[a-z]+")


def mentions_person(caption: str) -> bool:
    """Whether a caption names a person (:data:`PERSON_WORDS`) or is about children.

    >>> mentions_person("A man rides a bike"), mentions_person("A dog runs after his toy")
    (True, False)
    >>> mentions_person("A toddler in the sand"), mentions_person("An adult horse and a foal")
    (True, False)
    """
    from pixsearch.indexer.policy import is_about_children

    text = (caption or "").lower()
    return not PERSON_WORDS.isdisjoint(_WORD.findall(text)) or is_about_children(caption)


# -- data ------------------------------------------------------------------------------------
@dataclass
class PhotoLabels:
    """One row per captioned photo found on disk."""

    images: list[str]
    paths: list[Path]
    child_captions: np.ndarray
    """How many of the photo's captions are about children."""
    captions: np.ndarray
    """How many captions the photo has (5 in Flickr8k)."""
    groups: np.ndarray
    """Group id per photo: byte-identical files share one (they must not straddle the split)."""
    missing_photos: int = 0
    """Captioned images with no file in either photo folder (left out)."""
    person_captions: np.ndarray | None = None
    """How many of the photo's captions name a person (:func:`mentions_person`)."""

    @property
    def labels(self) -> np.ndarray:
        return (self.child_captions >= MIN_CHILD_CAPTIONS).astype(np.int64)

    @property
    def person_labels(self) -> np.ndarray | None:
        """1 where the photo shows a person (``None`` when person captions were not counted)."""
        if self.person_captions is None:
            return None
        return (self.person_captions >= MIN_PERSON_CAPTIONS).astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)


def load_photo_labels(
    data_dir: str | Path,
    *,
    predicate: Callable[[str], bool] | None = None,
    person_predicate: Callable[[str], bool] | None = mentions_person,
    workers: int = 4,
) -> PhotoLabels:
    """Read ``flickr8k/captions.tsv`` and find each photo in :data:`PHOTO_FOLDERS`.

    ``predicate`` says a caption is about children, ``person_predicate`` that it names a person
    (``None``: person captions are not counted)."""
    from pixsearch.exporter.features import sha256_file

    if predicate is None:
        from pixsearch.indexer.policy import is_about_children as predicate
    data = Path(data_dir)
    captions_path = data / "flickr8k" / "captions.tsv"
    if not captions_path.is_file():
        raise InvalidInputError(f"{captions_path} not found: give the shared data folder")
    child: dict[str, int] = {}
    person: dict[str, int] = {}
    total: dict[str, int] = {}
    with open(captions_path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            image, caption = row["image"], row["caption"] or ""
            total[image] = total.get(image, 0) + 1
            child[image] = child.get(image, 0) + int(bool(predicate(caption)))
            if person_predicate is not None:
                person[image] = person.get(image, 0) + int(bool(person_predicate(caption)))
    images, paths, missing = [], [], 0
    for image in sorted(total):
        found = next(
            (data / f / image for f in PHOTO_FOLDERS if (data / f / image).is_file()), None
        )
        if found is None:
            missing += 1
            continue
        images.append(image)
        paths.append(found)
    if not images:
        raise InvalidInputError(f"no captioned photo of {captions_path} found in {PHOTO_FOLDERS}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(pool.map(sha256_file, paths))
    _, groups = np.unique(np.asarray(hashes), return_inverse=True)
    return PhotoLabels(
        images=images,
        paths=paths,
        child_captions=np.array([child[i] for i in images], dtype=np.int64),
        captions=np.array([total[i] for i in images], dtype=np.int64),
        groups=groups.astype(np.int64),
        missing_photos=missing,
        person_captions=(
            np.array([person[i] for i in images], dtype=np.int64)
            if person_predicate is not None
            else None
        ),
    )


def grouped_three_way_split(
    groups: np.ndarray,
    *,
    val_size: float = VAL_SIZE,
    test_size: float = TEST_SIZE,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions ``(train, validation, test)``; a group lies in one part only.

    The shares are of groups (photos), drawn with ``numpy.random.default_rng(seed)``.

    >>> train, val, test = grouped_three_way_split(np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
    ...                                             val_size=0.2, test_size=0.2, seed=0)
    >>> sorted(np.concatenate([train, val, test]).tolist()) == list(range(10))
    True
    >>> bool(({0, 1} <= set(train)) or ({0, 1} <= set(val)) or ({0, 1} <= set(test)))
    True
    """
    groups = np.asarray(groups)
    if not (0 < val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
        raise InvalidInputError("val_size and test_size must be shares that leave a train part")
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    n_val = max(1, round(len(unique) * val_size))
    n_test = round(len(unique) * test_size)
    val_groups = set(order[:n_val].tolist())
    test_groups = set(order[n_val : n_val + n_test].tolist())
    part = np.array(
        [1 if g in val_groups else 2 if g in test_groups else 0 for g in groups.tolist()]
    )
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2)


# -- metrics ---------------------------------------------------------------------------------
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half).

    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # average rank (1-based) of each distinct score
    ends = np.cumsum(counts)
    average = ends - (counts - 1) / 2.0
    ranks = average[inverse]
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def threshold_for_recall(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold ``t`` with recall of ``scores >= t`` at least ``target``."""
    if not 0 < target <= 1:
        raise InvalidInputError(f"the recall target must be in (0, 1], not {target!r}")
    positives = np.sort(np.asarray(scores)[np.asarray(labels).astype(bool)])[::-1]
    if len(positives) == 0:
        raise InvalidInputError("no positive example to choose a threshold on")
    needed = math.ceil(target * len(positives) - 1e-9)
    return float(positives[needed - 1])


def binary_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Counts and rates of ``scores >= threshold`` against ``labels``, plus ROC-AUC."""
    labels = np.asarray(labels).astype(bool)
    flagged = np.asarray(scores) >= threshold
    tp = int((flagged & labels).sum())
    fp = int((flagged & ~labels).sum())
    fn = int((~flagged & labels).sum())
    tn = int((~flagged & ~labels).sum())
    return {
        "photos": len(labels),
        "positives": int(labels.sum()),
        "roc_auc": round(roc_auc(scores, labels), 4),
        "recall": round(tp / max(tp + fn, 1), 4),
        "false_positive_rate": round(fp / max(fp + tn, 1), 4),
        "precision": round(tp / max(tp + fp, 1), 4),
        "flagged_share": round(int(flagged.sum()) / max(len(labels), 1), 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


# -- models ----------------------------------------------------------------------------------
Layers = list[tuple[np.ndarray, np.ndarray]]
"""Dense layers ``(W [in,out], b [out])``: ReLU between them, a sigmoid after the last one."""


@dataclass
class Candidate:
    """One model configuration to try: ``make()`` returns an unfitted scikit-learn pipeline."""

    name: str
    make: Callable[[], Any]


def default_candidates(seed: int = DEFAULT_SEED) -> list[Candidate]:
    """Logistic regressions over a range of ``C`` and two small MLPs (all on scaled features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def logreg(c: float) -> Candidate:
        return Candidate(
            f"logistic regression C={c:g}",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)),
        )

    def mlp(hidden: int, alpha: float) -> Candidate:
        return Candidate(
            f"MLP {hidden} ReLU alpha={alpha:g}",
            lambda: make_pipeline(
                StandardScaler(),
                MLPClassifier(
                    hidden_layer_sizes=(hidden,),
                    alpha=alpha,
                    early_stopping=True,
                    validation_fraction=0.1,
                    n_iter_no_change=10,
                    max_iter=300,
                    random_state=seed,
                ),
            ),
        )

    return [
        logreg(0.0003),
        logreg(0.001),
        logreg(0.003),
        logreg(0.01),
        mlp(256, 1.0),
        mlp(256, 10.0),
    ]


def pipeline_layers(pipeline: Any) -> Layers:
    """Dense layers of a fitted ``StandardScaler`` + ``LogisticRegression``/``MLPClassifier``
    pipeline, with the scaler folded into the first layer (float64)."""
    steps = [step for _, step in pipeline.steps]
    scaler, model = (steps[0], steps[-1]) if len(steps) == 2 else (None, steps[-1])
    if hasattr(model, "coefs_"):
        if model.activation != "relu" or model.out_activation_ != "logistic":
            raise InvalidInputError("only ReLU MLPs with a logistic output can be exported")
        layers = [
            (np.asarray(w, np.float64), np.asarray(b, np.float64))
            for w, b in zip(model.coefs_, model.intercepts_, strict=True)
        ]
    elif hasattr(model, "coef_"):
        if model.coef_.shape[0] != 1:
            raise InvalidInputError("only binary logistic regression can be exported")
        layers = [(np.asarray(model.coef_.T, np.float64), np.asarray(model.intercept_, np.float64))]
    else:
        raise InvalidInputError(f"cannot export a {type(model).__name__}")
    if scaler is not None:
        mean = np.asarray(scaler.mean_, np.float64)
        scale = np.asarray(scaler.scale_, np.float64)
        w, b = layers[0]
        layers[0] = (w / scale[:, None], b - (mean / scale) @ w)
    return layers


def person_candidates() -> list[Candidate]:
    """Logistic regressions for the person gate (on scaled features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def logreg(c: float) -> Candidate:
        return Candidate(
            f"person logistic regression C={c:g}",
            lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)),
        )

    return [logreg(0.001), logreg(0.003), logreg(0.01)]


Stage = tuple[Layers, float]
"""One stage of the rule: its dense layers and the logit its threshold sits at."""


def _logit(p: float | np.ndarray) -> Any:
    p = np.clip(np.asarray(p, np.float64), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def model_logits(model: Any, features: np.ndarray) -> np.ndarray:
    """Float64 logits of a fitted scikit-learn classifier (decision function when it has one)."""
    if hasattr(model, "decision_function"):
        try:
            return np.asarray(model.decision_function(features), np.float64).reshape(-1)
        except AttributeError:  # a pipeline whose last step has no decision function (MLP)
            pass
    return _logit(model.predict_proba(features)[:, 1])


def _layers_logit(features: np.ndarray, layers: Layers) -> np.ndarray:
    x = np.asarray(features, np.float64)
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x[:, 0]


def stages_reference(features: np.ndarray, stages: Sequence[Stage]) -> np.ndarray:
    """``sigmoid(min_i(z_i - shift_i))`` in float64 numpy (the exported graph's reference)."""
    z = np.min([_layers_logit(features, layers) - shift for layers, shift in stages], axis=0)
    return 1.0 / (1.0 + np.exp(-z))


def layers_reference(features: np.ndarray, layers: Layers) -> np.ndarray:
    """The exported network in float64 numpy (the parity reference for hand-made layers)."""
    return stages_reference(features, [(layers, 0.0)])


def stages_to_onnx(stages: Sequence[Stage], feature_dim: int = 1280) -> bytes:
    """Serialised ONNX: ``features float32 [N,feature_dim]`` -> ``scores float32 [N]``, the
    sigmoid of the smallest shifted stage logit (one stage with shift 0: a plain classifier)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pixsearch.exporter._onnx_tools import OPSET

    if not stages:
        raise InvalidInputError("at least one stage is needed")
    initializers, nodes, outputs = [], [], []
    for s, (layers, shift) in enumerate(stages):
        if layers[0][0].shape[0] != feature_dim or layers[-1][0].shape[1] != 1:
            raise InvalidInputError("layers must map [N,feature_dim] to one logit")
        prefix = f"s{s}_" if len(stages) > 1 else ""
        current = "features"
        for i, (w, b) in enumerate(layers):
            bias = np.asarray(b, np.float64) - (shift if i == len(layers) - 1 else 0.0)
            initializers += [
                numpy_helper.from_array(np.ascontiguousarray(w, np.float32), f"{prefix}w{i}"),
                numpy_helper.from_array(np.ascontiguousarray(bias, np.float32), f"{prefix}b{i}"),
            ]
            nodes += [
                helper.make_node("MatMul", [current, f"{prefix}w{i}"], [f"{prefix}mm{i}"]),
                helper.make_node("Add", [f"{prefix}mm{i}", f"{prefix}b{i}"], [f"{prefix}z{i}"]),
            ]
            current = f"{prefix}z{i}"
            if i < len(layers) - 1:
                nodes.append(helper.make_node("Relu", [current], [f"{prefix}h{i}"]))
                current = f"{prefix}h{i}"
        outputs.append(current)
    if len(outputs) > 1:
        nodes.append(helper.make_node("Min", outputs, ["logit"]))
        current = "logit"
    initializers.append(numpy_helper.from_array(np.array([-1], np.int64), "flat"))
    nodes += [
        helper.make_node("Sigmoid", [current], ["prob"]),
        helper.make_node("Reshape", ["prob", "flat"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "child_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", feature_dim])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch"])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pixsearch-export"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def layers_to_onnx(layers: Layers, feature_dim: int = 1280) -> bytes:
    """Serialised ONNX of one classifier: ``features float32 [N,feature_dim]`` -> ``scores``."""
    return stages_to_onnx([(layers, 0.0)], feature_dim)


def onnx_scores(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Run serialised ONNX classifier bytes with onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (scores,) = session.run(["scores"], {"features": np.ascontiguousarray(features, np.float32)})
    return scores


def check_parity(
    reference: np.ndarray, exported: np.ndarray, max_abs: float = PARITY_MAX_ABS
) -> dict[str, float]:
    """Max abs difference of the exported scores; raises :class:`ParityError` past ``max_abs``."""
    reference = np.asarray(reference, np.float64)
    exported = np.asarray(exported, np.float64)
    if reference.shape != exported.shape:
        raise ParityError(f"child classifier: ONNX shape {exported.shape} != {reference.shape}")
    diff = float(np.max(np.abs(reference - exported))) if len(reference) else 0.0
    if not diff <= max_abs:  # also catches NaN
        raise ParityError(
            f"child classifier drifts from scikit-learn: max abs diff {diff:.3g} "
            f"(allowed {max_abs:g}); nothing was written"
        )
    return {"max_abs_diff": float(f"{diff:.2e}"), "rows": len(reference)}


# -- training --------------------------------------------------------------------------------
@dataclass
class TrainedClassifier:
    """What :func:`train_child_classifier` chose and measured."""

    name: str
    onnx_bytes: bytes
    threshold: float
    target_recall: float
    validation: dict[str, Any]
    test: dict[str, Any] | None
    train: dict[str, Any]
    candidates: list[dict[str, Any]]
    parity: dict[str, float]
    seconds: float
    split: dict[str, int] = field(default_factory=dict)
    person: dict[str, Any] | None = None
    """The person gate (``None``: one stage): model, recall target, probability thresholds of
    both stages, and its candidates."""
    no_person_flagged: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per split: photos whose captions name no person, and how many of them are flagged."""


def _fit_candidates(
    candidates: Sequence[Candidate],
    features: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    target: float,
    log: Log,
) -> tuple[list[dict[str, Any]], list[tuple[Any, Candidate, dict[str, Any]]]]:
    rows, fitted = [], []
    for candidate in candidates:
        t0 = time.perf_counter()
        model = candidate.make().fit(features[train], labels[train])
        scores = model.predict_proba(features[val])[:, 1]
        metrics = binary_metrics(
            scores, labels[val], threshold_for_recall(scores, labels[val], target)
        )
        row = {
            "model": candidate.name,
            "val_roc_auc": metrics["roc_auc"],
            "val_fpr_at_target": metrics["false_positive_rate"],
            "val_recall": metrics["recall"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        rows.append(row)
        fitted.append((model, candidate, metrics))
        log(f"{candidate.name}: {row}")
    return rows, fitted


def train_child_classifier(
    features: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    test: np.ndarray | None = None,
    *,
    target_recall: float = DEFAULT_RECALL,
    candidates: Sequence[Candidate] | None = None,
    seed: int = DEFAULT_SEED,
    person_labels: np.ndarray | None = None,
    person_recall: float = DEFAULT_PERSON_RECALL,
    person_models: Sequence[Candidate] | None = None,
    log: Log = _log_nothing,
) -> TrainedClassifier:
    """Fit the candidates on ``train``, choose models and thresholds on ``val``, export to ONNX.

    The child model: lowest validation false-positive rate at the recall target, then highest
    ROC-AUC. With ``person_labels`` a person gate is added (module docstring): each of
    ``person_models`` keeps ``person_recall`` of the validation photos with people, the child
    threshold under it keeps ``target_recall`` of the combined rule, and the lowest combined
    false-positive rate wins. ``test`` (rows never looked at while choosing) is only measured.
    """
    started = time.perf_counter()
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels).astype(np.int64)
    if len(np.unique(labels[train])) < 2 or labels[val].sum() == 0:
        raise InvalidInputError("train needs both classes and validation needs positives")
    candidates = list(candidates) if candidates is not None else default_candidates(seed)
    rows, fitted = _fit_candidates(candidates, features, labels, train, val, target_recall, log)
    model, chosen, _ = min(fitted, key=lambda f: (f[2]["false_positive_rate"], -f[2]["roc_auc"]))
    check_rows = np.concatenate([val, test]) if test is not None else val
    child_layers = pipeline_layers(model)
    name = chosen.name
    person: dict[str, Any] | None = None
    if person_labels is None:
        stages: list[Stage] = [(child_layers, 0.0)]
        reference = model.predict_proba(features[check_rows])[:, 1]
    else:
        person_labels = np.asarray(person_labels).astype(np.int64)
        if len(np.unique(person_labels[train])) < 2 or person_labels[val].sum() == 0:
            raise InvalidInputError("the person gate needs both classes in train and validation")
        if (labels & (1 - person_labels)).any():
            raise InvalidInputError("every photo labelled as showing a child must show a person")
        zc_val = model_logits(model, features[val])
        options = []
        for candidate in person_models if person_models is not None else person_candidates():
            t0 = time.perf_counter()
            gate_model = candidate.make().fit(features[train], person_labels[train])
            zp_val = model_logits(gate_model, features[val])
            person_shift = threshold_for_recall(zp_val, person_labels[val], person_recall)
            gated = np.where(zp_val >= person_shift, zc_val, -np.inf)
            child_shift = threshold_for_recall(gated, labels[val], target_recall)
            if not np.isfinite(child_shift):
                raise InvalidInputError("the person gate drops too many child photos")
            combined = binary_metrics(gated, labels[val], child_shift)
            row = {
                "model": candidate.name,
                "person_val_roc_auc": round(roc_auc(zp_val, person_labels[val]), 4),
                "gate_person_recall": round(
                    float((zp_val[person_labels[val] == 1] >= person_shift).mean()), 4
                ),
                "gate_pass_share": round(float((zp_val >= person_shift).mean()), 4),
                "gate_child_recall": round(
                    float((zp_val[labels[val] == 1] >= person_shift).mean()), 4
                ),
                "val_fpr_at_target": combined["false_positive_rate"],
                "val_recall": combined["recall"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            log(f"{candidate.name}: {row}")
            options.append((row, gate_model, candidate, person_shift, child_shift))
        row, gate_model, gate, person_shift, child_shift = min(
            options, key=lambda o: (o[0]["val_fpr_at_target"], -o[0]["person_val_roc_auc"])
        )
        stages = [(pipeline_layers(gate_model), person_shift), (child_layers, child_shift)]
        z = np.minimum(
            model_logits(gate_model, features[check_rows]) - person_shift,
            model_logits(model, features[check_rows]) - child_shift,
        )
        reference = 1.0 / (1.0 + np.exp(-z))
        name = f"{gate.name} (recall {person_recall:g}) AND child {chosen.name}"
        person = {
            "model": gate.name,
            "child_model": chosen.name,
            "labels": PERSON_LABELS_TEXT,
            "target_recall": person_recall,
            "person_threshold": float(1.0 / (1.0 + np.exp(-person_shift))),
            "child_threshold": float(1.0 / (1.0 + np.exp(-child_shift))),
            "chosen": row,
            "candidates": [o[0] for o in options],
        }
    onnx_bytes = stages_to_onnx(stages, feature_dim=features.shape[1])
    parity = check_parity(reference, onnx_scores(onnx_bytes, features[check_rows]))
    # The threshold and every reported figure come from the ONNX scores the indexer computes.
    val_scores = onnx_scores(onnx_bytes, features[val])
    threshold = threshold_for_recall(val_scores, labels[val], target_recall)
    result = TrainedClassifier(
        name=name,
        onnx_bytes=onnx_bytes,
        threshold=threshold,
        target_recall=target_recall,
        validation=binary_metrics(val_scores, labels[val], threshold),
        test=(
            binary_metrics(onnx_scores(onnx_bytes, features[test]), labels[test], threshold)
            if test is not None and len(test)
            else None
        ),
        train=binary_metrics(onnx_scores(onnx_bytes, features[train]), labels[train], threshold),
        candidates=rows,
        parity=parity,
        seconds=0.0,
        split={
            "train": len(train),
            "validation": len(val),
            "test": len(test) if test is not None else 0,
        },
        person=person,
    )
    result.seconds = round(time.perf_counter() - started, 1)
    return result


# -- the command -----------------------------------------------------------------------------
@dataclass
class PolicyTrainReport:
    """What ``pixsearch train-policy`` did: the classifier, the data, the customer photos."""

    classifier: TrainedClassifier
    photos: int
    positives: int
    missing_photos: int
    customer: dict[str, Any]
    seed: int
    bundle_dir: str | None
    bundle_id: str | None
    feature_source: str
    card_path: Path | None = None

    def manifest_metrics(self) -> dict[str, Any]:
        c = self.classifier
        keys = ("roc_auc", "recall", "false_positive_rate", "precision", "photos", "positives")
        return {
            "target_recall": c.target_recall,
            "validation": {k: c.validation[k] for k in keys},
            "test": {k: c.test[k] for k in keys} if c.test else None,
            "customer_photos_flagged": self.customer.get("flagged"),
            "customer_photos": self.customer.get("photos"),
            "no_person_photos_flagged": c.no_person_flagged,
            "split": {**c.split, "seed": self.seed, "grouped_by": "photo file sha256"},
        }


def customer_figures(
    labels: PhotoLabels,
    scores: np.ndarray,
    threshold: float,
    parts: dict[str, np.ndarray],
    folder: str = CUSTOMER_FOLDER,
) -> dict[str, Any]:
    """How many of the customer's photos (``practicum/train_images``) the classifier flags."""
    is_customer = np.array([folder in p.as_posix() for p in labels.paths])
    rows = np.flatnonzero(is_customer)
    flagged = scores[rows] >= threshold
    caption_child = labels.labels[rows].astype(bool)
    persons = labels.person_labels
    by_part = {}
    for name, part in parts.items():
        inside = np.isin(rows, part)
        by_part[name] = {"photos": int(inside.sum()), "flagged": int(flagged[inside].sum())}
    return {
        "photos": len(rows),
        "flagged": int(flagged.sum()),
        "caption_labelled_child": int(caption_child.sum()),
        "flagged_and_caption_child": int((flagged & caption_child).sum()),
        "missed_caption_child": int((~flagged & caption_child).sum()),
        "caption_no_person": int((persons[rows] == 0).sum()) if persons is not None else None,
        "flagged_and_caption_no_person": (
            int((flagged & (persons[rows] == 0)).sum()) if persons is not None else None
        ),
        "by_split": by_part,
    }


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
    from pixsearch.indexer.pipeline import feature_source

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


def write_to_bundle(report: PolicyTrainReport, bundle_dir: Path) -> str:
    """Add the ONNX file and ``policy.child_classifier`` with ``add_to_bundle``; the new id."""
    import tempfile

    from pixsearch.exporter.bundle_update import add_to_bundle

    c = report.classifier
    section = {
        "file": ONNX_FILE,
        "threshold": c.threshold,
        "model": c.name + " on standardised features (scalers folded into the first layers)",
        "rule": (
            "restricted = person_present AND child_score >= t: scores = sigmoid(min(z_person - "
            "logit(person_threshold), z_child - logit(child_threshold))), so scores >= 0.5 "
            "exactly when both stages pass (threshold: that boundary on the ONNX scores)"
            if c.person
            else "restricted = child_score >= threshold"
        ),
        "inputs": {"features": "float32 [N,1280] image_encoder features"},
        "outputs": {"scores": "float32 [N] in [0,1]; restricted = scores >= threshold"},
        "feature_source": report.feature_source,
        "labels": LABELS_TEXT,
        "person_gate": (
            {
                k: c.person[k]
                for k in ("model", "labels", "target_recall", "person_threshold", "child_threshold")
            }
            if c.person
            else None
        ),
        "metrics": report.manifest_metrics(),
        "parity": c.parity,
        "command": "pixsearch train-policy DATA"
        + (f" --recall {c.target_recall:g}" if c.target_recall != DEFAULT_RECALL else "")
        + (f" --seed {report.seed}" if report.seed != DEFAULT_SEED else "")
        + (
            ""
            if c.person and c.person["target_recall"] == DEFAULT_PERSON_RECALL
            else f" --person-recall {c.person['target_recall']:g}"
            if c.person
            else " --no-person-gate"
        ),
    }

    def update(manifest: dict[str, Any]) -> None:
        manifest.setdefault("policy", {})["child_classifier"] = section

    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / ONNX_FILE
        source.write_bytes(c.onnx_bytes)
        manifest = add_to_bundle({ONNX_FILE: source}, update, bundle_dir)
    return str(manifest["bundle_id"])


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def model_card(report: PolicyTrainReport) -> str:
    """The model card (Markdown) with every figure of the run."""
    c = report.classifier
    v, t, cu = c.validation, c.test, report.customer
    lines = [
        "# Child-photo classifier (content policy, issue #4)",
        "",
        f"Labels: {LABELS_TEXT}. Inputs: the image encoder's pooled features "
        f"(`image_encoder.onnx` sha256 `{report.feature_source[:16]}…`). Output: a score in "
        "[0,1]; the indexer sets `restricted = score >= threshold`, and a restricting profile "
        "excludes restricted photos inside the vector search.",
        "",
        f"Photos: {report.photos} ({report.positives} labelled as showing a child, "
        f"{_percent(report.positives / max(report.photos, 1))}); {report.missing_photos} "
        f"captioned images without a file. Split grouped by photo content (seed {report.seed}): "
        f"train {c.split['train']}, validation {c.split['validation']} (model choice and "
        f"threshold), test {c.split['test']} (untouched until the end).",
        "",
        f"**Chosen: {c.name}**, threshold **{c.threshold:.6f}** (the highest that keeps recall "
        f">= {c.target_recall:g} on validation).",
        "",
        "| split | photos | with a child | ROC-AUC | recall | false-positive rate | precision |"
        " flagged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in (("validation", v), ("test", t), ("train", c.train)):
        if m is None:
            continue
        lines.append(
            f"| {name} | {m['photos']} | {m['positives']} | {m['roc_auc']:.4f} | "
            f"{_percent(m['recall'])} ({m['tp']}/{m['tp'] + m['fn']}) | "
            f"{_percent(m['false_positive_rate'])} ({m['fp']}/{m['fp'] + m['tn']}) | "
            f"{_percent(m['precision'])} | {_percent(m['flagged_share'])} |"
        )
    lines += [
        "",
        f"Customer photos (`{CUSTOMER_FOLDER}`): **{cu['flagged']} of {cu['photos']} flagged**; "
        f"{cu['caption_labelled_child']} are labelled as showing a child by their captions, "
        f"{cu['flagged_and_caption_child']} of them flagged, {cu['missed_caption_child']} missed. "
        "By split (photos in train were fitted on, so their figure is optimistic): "
        + ", ".join(f"{k} {p['flagged']}/{p['photos']}" for k, p in cu["by_split"].items())
        + ".",
        "",
    ]
    if c.no_person_flagged:
        lines += [
            "Photos whose captions name no person, flagged: "
            + ", ".join(f"{k} {p['flagged']}/{p['photos']}" for k, p in c.no_person_flagged.items())
            + (
                f"; customer photos {cu['flagged_and_caption_no_person']}/"
                f"{cu['caption_no_person']}."
                if cu.get("caption_no_person") is not None
                else "."
            ),
            "",
        ]
    if c.person:
        g = c.person
        lines += [
            "## Person gate",
            "",
            f"Rule: `restricted = person_present AND child_score >= t`. Person labels: "
            f"{g['labels']}. Gate: {g['model']}, probability threshold "
            f"{g['person_threshold']:.6f} (keeps {g['target_recall']:g} of the validation photos "
            f"with people); child probability threshold {g['child_threshold']:.6f}. The ONNX "
            "score is `sigmoid(min(z_person - logit(person_threshold), z_child - "
            "logit(child_threshold)))`: it reaches 0.5 exactly when both stages pass.",
            "",
            "| person model | person ROC-AUC | gate recall (people) | gate recall (children) |"
            " passes the gate | combined FPR at the recall target |",
            "|---|---|---|---|---|---|",
        ]
        for row in g["candidates"]:
            mark = " (chosen)" if row["model"] == g["model"] else ""
            lines.append(
                f"| {row['model']}{mark} | {row['person_val_roc_auc']:.4f} | "
                f"{_percent(row['gate_person_recall'])} | {_percent(row['gate_child_recall'])} | "
                f"{_percent(row['gate_pass_share'])} | {_percent(row['val_fpr_at_target'])} |"
            )
        lines.append("")
    lines += [
        "## Child candidates (fit on train, scored on validation, alone)",
        "",
        "| model | ROC-AUC | false-positive rate at the recall target | seconds |",
        "|---|---|---|---|",
    ]
    for row in c.candidates:
        mark = " (chosen)" if row["model"] == c.name else ""
        lines.append(
            f"| {row['model']}{mark} | {row['val_roc_auc']:.4f} | "
            f"{_percent(row['val_fpr_at_target'])} | {row['seconds']} |"
        )
    lines += [
        "",
        f"ONNX parity with scikit-learn on {c.parity['rows']} validation + test photos: max abs "
        f"diff {c.parity['max_abs_diff']:.2e} (allowed {PARITY_MAX_ABS:g}).",
        "",
        "## Limits",
        "",
        "- Labels come from captions: a child that no caption mentions is a negative, and "
        "captions that call adults `girls`/`boys` make positives (the text rule favours recall).",
        "- Recall was set on a validation part of a few hundred photos with children; on the "
        "test part it lands near the target, not above it for sure. Photos unlike Flickr8k "
        "(studio portraits, drawings, crowds far away) are not measured.",
        "- A restricted photo is excluded under `strict`; a missed child photo is shown.",
        "- The person gate is as good as its captions: a person no caption names is a negative.",
        "",
        f"Reproduce: `pixsearch train-policy DATA --recall {c.target_recall:g} --seed "
        f"{report.seed}"
        + (f" --person-recall {c.person['target_recall']:g}" if c.person else " --no-person-gate")
        + f"` ({c.seconds} s of training after the features are cached).",
        "",
    ]
    return "\n".join(lines)


def write_model_card(report: PolicyTrainReport, out_dir: Path) -> Path:
    """Write ``model_card.md`` and ``metrics.json`` into ``out_dir``; returns the card's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    card = out_dir / "model_card.md"
    card.write_text(model_card(report), encoding="utf-8")
    c = report.classifier
    metrics = {
        "model": c.name,
        "threshold": c.threshold,
        "target_recall": c.target_recall,
        "validation": c.validation,
        "test": c.test,
        "train": c.train,
        "candidates": c.candidates,
        "person_gate": c.person,
        "no_person_flagged": c.no_person_flagged,
        "parity": c.parity,
        "customer": report.customer,
        "photos": report.photos,
        "positives": report.positives,
        "seed": report.seed,
        "bundle_id": report.bundle_id,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return card
