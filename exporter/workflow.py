"""The customer's research workflow, step by step, as functions the CLI and tests call.

load + validate (``data``) -> one score (``scores``) -> legal filter (``legal_filter``) -> EDA
(``eda``) -> vectorise (``features``) -> grouped 80/20 split (``split``) -> constant / linear /
MLP on RMSE (``regression``) -> best photo for 10 random test queries (here) -> model card.

>>> import pandas as pd
>>> pairs = pd.DataFrame({"image": ["a.jpg", "a.jpg", "b.jpg"], "query_id": ["q1", "q2", "q2"],
...                       "query_text": ["a boy runs", "a dog", "a dog"], "score": [1.0, 0.0, 1.0]})
>>> kept, report = apply_legal_filter(pairs, predicate=lambda text: "boy" in text)
>>> len(kept), report.pairs_removed, report.queries_removed, report.images_removed
(2, 1, 1, 0)
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixsearch.exporter.legal_filter import (
    DEFAULT_DISCLAIMER,
    LegalFilterReport,
    Predicate,
    apply_legal_filter,
    children_predicate,
    policy_disclaimer,
)
from pixsearch.exporter.thumbnails import thumbnail_uri

if TYPE_CHECKING:
    import pandas as pd

    from pixsearch.exporter.data import PracticumData
    from pixsearch.exporter.regression import ModelResult, PairSet

__all__ = [  # the legal filter's names stay importable from here
    "DEFAULT_DISCLAIMER",
    "LegalFilterReport",
    "Predicate",
    "apply_legal_filter",
    "children_predicate",
    "policy_disclaimer",
    "prepare_pairs",
    "run_eda",
    "run_train",
]


def prepare_pairs(
    data_dir: str | Path,
    *,
    predicate: Predicate | None = None,
    include_crowd_only: bool = False,
    strict: bool = False,
    decode_photos: bool = True,
) -> tuple[PracticumData, pd.DataFrame, pd.DataFrame, LegalFilterReport]:
    """Load + validate, merge scores, apply the legal filter.

    Returns ``(data, scored_before_filter, kept, filter_report)``.
    """
    from pixsearch.exporter.data import load_practicum
    from pixsearch.exporter.scores import merge_scores

    data = load_practicum(data_dir, strict=strict, decode_photos=decode_photos)
    scored = merge_scores(data.pairs, include_crowd_only=include_crowd_only)
    kept, report = apply_legal_filter(scored, predicate, captions=data.captions)
    return data, scored, kept, report


def run_eda(
    data_dir: str | Path, out_dir: str | Path, *, predicate: Predicate | None = None, seed: int = 42
) -> Path:
    """Write ``OUT/eda.html`` (+ ``validation.json``); returns the HTML path."""
    from pixsearch.exporter.eda import write_eda_report

    data, scored, kept, filter_report = prepare_pairs(data_dir, predicate=predicate)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(data.report.to_dict(), indent=2))
    return write_eda_report(data, scored, kept, filter_report, out, seed=seed)


def pair_set(
    frame: pd.DataFrame,
    image_table: dict[str, int],
    text_table: dict[str, int],
    image_features: np.ndarray,
    text_features: np.ndarray,
    extra: np.ndarray | None = None,
) -> PairSet:
    """A ``PairSet`` for ``frame`` rows (columns image, query_text) over shared feature tables."""
    from pixsearch.exporter.regression import PairSet

    return PairSet(
        image_features,
        text_features,
        frame["image"].map(image_table).to_numpy(dtype=np.int64),
        frame["query_text"].map(text_table).to_numpy(dtype=np.int64),
        extra,
    )


def zero_shot_cosine(bundle: Any, pairs: PairSet) -> np.ndarray | None:
    """Per-pair cosine in the bundle's embedding space, ``[P, 1]`` (None without a space)."""
    space = getattr(bundle, "space", None)
    if space is None:
        return None
    img = np.asarray(space.image_vectors(pairs.image_features), np.float32)
    txt = np.asarray(space.text_vectors(pairs.text_features), np.float32)
    return np.sum(img[pairs.image_index] * txt[pairs.text_index], axis=1, keepdims=True)


@dataclass
class TrainResult:
    """Everything ``run_train`` measured; ``card`` is the model card path."""

    results: list[ModelResult]
    n_train_pairs: int
    n_val_pairs: int
    n_train_images: int
    n_val_images: int
    filter_report: LegalFilterReport
    validation: dict[str, Any]
    examples: list[dict[str, Any]]
    card: Path
    seconds: dict[str, float]


def run_train(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    bundle: Any = None,
    cache_dir: str | Path | None = None,
    predicate: Predicate | None = None,
    seed: int = 42,
    test_size: float = 0.2,
    include_crowd_only: bool = False,
    zero_shot_feature: bool = True,
    max_images: int | None = None,
    mlp_config: Any = None,
    n_examples: int = 10,
    log: Callable[[str], None] = lambda message: None,
) -> TrainResult:
    """The full workflow; writes ``OUT/model_card.md``, ``OUT/results.json``, ``OUT/examples.html``.

    ``max_images`` keeps a seeded random subset of photos (for quick runs and tests).
    ``bundle`` defaults to ``ModelBundle.load()``. With ``zero_shot_feature`` the bundle space's
    image-text cosine is one extra input column of the linear model and the MLP.
    """
    from pixsearch.exporter.features import image_features, text_features
    from pixsearch.exporter.regression import (
        ConstantModel,
        LinearModel,
        PairMLP,
        compare_models,
    )
    from pixsearch.exporter.split import grouped_split

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    data, _scored, kept, filter_report = prepare_pairs(
        data_dir, predicate=predicate, include_crowd_only=include_crowd_only
    )
    if max_images is not None:
        images = np.sort(kept["image"].unique())
        chosen = np.random.default_rng(seed).choice(
            images, size=min(max_images, len(images)), replace=False
        )
        kept = kept[kept["image"].isin(set(chosen))].reset_index(drop=True)
    seconds["load"] = time.perf_counter() - started
    log(f"pairs after validation and legal filter: {len(kept)}")

    if bundle is None:
        from pixsearch.indexer.models import ModelBundle

        bundle = ModelBundle.load()
    started = time.perf_counter()
    images = sorted(kept["image"].unique())
    texts = sorted(kept["query_text"].unique())
    log(f"vectorising {len(images)} photos and {len(texts)} texts (cached by content)")
    img_feats = image_features([data.image_path(i) for i in images], bundle, cache_dir)
    txt_feats = text_features(texts, bundle, cache_dir)
    seconds["features"] = time.perf_counter() - started
    image_table = {name: i for i, name in enumerate(images)}
    text_table = {text: i for i, text in enumerate(texts)}
    all_pairs = pair_set(kept, image_table, text_table, img_feats, txt_feats)
    if zero_shot_feature:
        all_pairs.extra = zero_shot_cosine(bundle, all_pairs)

    train_rows, val_rows = grouped_split(kept, test_size=test_size, seed=seed)
    if include_crowd_only:  # crowd-only pairs help training, but we score on expert pairs only
        val_rows = val_rows[kept["has_expert"].to_numpy()[val_rows]]
    y = kept["score"].to_numpy(dtype=np.float64)
    train, val = all_pairs.subset(train_rows), all_pairs.subset(val_rows)
    train_groups = all_pairs.image_index[train_rows]

    from pixsearch.exporter.regression import MLPConfig

    config = mlp_config or MLPConfig(seed=seed)
    models = [ConstantModel(), LinearModel(), LinearModel(alpha="cv"), PairMLP(config)]
    started = time.perf_counter()
    results = compare_models(
        models, train, y[train_rows], val, y[val_rows], train_groups=train_groups
    )
    seconds["models"] = time.perf_counter() - started
    best_index = int(np.argmin([r.rmse for r in results]))

    examples = best_photo_examples(
        models[best_index],
        kept.iloc[val_rows].reset_index(drop=True),
        all_pairs.subset(val_rows),
        data,
        bundle,
        n=n_examples,
        seed=seed,
        predicate=predicate,
        zero_shot_feature=zero_shot_feature,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = TrainResult(
        results=results,
        n_train_pairs=len(train_rows),
        n_val_pairs=len(val_rows),
        n_train_images=int(np.unique(all_pairs.image_index[train_rows]).size),
        n_val_images=int(np.unique(all_pairs.image_index[val_rows]).size),
        filter_report=filter_report,
        validation=data.report.to_dict(),
        examples=examples,
        card=out / "model_card.md",
        seconds=seconds,
    )
    write_examples_html(examples, data, out / "examples.html", best_model=results[best_index].name)
    (out / "results.json").write_text(
        json.dumps(
            {
                "results": [asdict(r) for r in results],
                "filter": asdict(filter_report),
                "validation": result.validation,
                "examples": examples,
                "seconds": seconds,
                "bundle_id": getattr(bundle, "id", None),
                "seed": seed,
            },
            indent=2,
            default=str,
        )
    )
    result.card.write_text(model_card(result, bundle_id=str(getattr(bundle, "id", "?")), seed=seed))
    return result


def best_photo_examples(
    model: Any,
    frame: pd.DataFrame,
    pairs: PairSet,
    data: PracticumData,
    bundle: Any,
    *,
    n: int = 10,
    seed: int = 42,
    predicate: Predicate | None = None,
    zero_shot_feature: bool = True,
) -> list[dict[str, Any]]:
    """For ``n`` random queries of ``frame``, rank every photo of ``frame`` with ``model``.

    Queries whose source photo (the one the caption was written for) is among the candidates
    are preferred. Each example: query, best photo, its predicted score, its merged score when
    judged, whether it is the source photo, and the source photo's rank. Queries about
    children get the policy disclaimer instead of a photo.
    """
    from pixsearch.exporter.regression import PairSet

    predicate = predicate or children_predicate()
    rng = np.random.default_rng(seed)
    queries = frame.drop_duplicates("query_id")
    # Prefer queries whose source photo is among the candidates, so a hit can be checked.
    sources = queries["query_id"].str.split("#").str[0]
    checkable = queries[sources.isin(set(frame["image"]))]
    if len(checkable) >= n:
        queries = checkable
    picked = queries.iloc[rng.choice(len(queries), size=min(n, len(queries)), replace=False)]
    image_rows = np.unique(pairs.image_index)
    row_to_name = dict(zip(pairs.image_index.tolist(), frame["image"].tolist(), strict=True))
    judged = {(r.image, r.query_id): float(r.score) for r in frame.itertuples()}
    examples = []
    for query in picked.itertuples():
        example: dict[str, Any] = {"query_id": query.query_id, "query_text": query.query_text}
        if predicate(query.query_text):
            example["disclaimer"] = policy_disclaimer()
            examples.append(example)
            continue
        text_row = int(pairs.text_index[frame.index[frame["query_id"] == query.query_id][0]])
        candidates = PairSet(
            pairs.image_features,
            pairs.text_features,
            image_rows,
            np.full(len(image_rows), text_row),
        )
        if zero_shot_feature and pairs.extra is not None:
            candidates.extra = zero_shot_cosine(bundle, candidates)
        predicted = model.predict(candidates)
        order = np.argsort(-predicted, kind="stable")
        names = [row_to_name[int(image_rows[i])] for i in order]
        source = str(query.query_id).split("#")[0]
        best = names[0]
        example.update(
            best_image=best,
            predicted=float(predicted[order[0]]),
            merged_score=judged.get((best, query.query_id)),
            is_source_photo=best == source,
            source_photo=source,
            source_rank=(names.index(source) + 1) if source in names else None,
            candidates=len(names),
        )
        examples.append(example)
    return examples


def write_examples_html(
    examples: list[dict[str, Any]], data: PracticumData, path: Path, *, best_model: str
) -> Path:
    """A page: each query, the photo the best model ranks first, and the judged truth."""
    rows = []
    for ex in examples:
        query = html.escape(ex["query_text"])
        if "disclaimer" in ex:
            rows.append(
                f"<tr><td>{query}</td><td colspan=3><i>{html.escape(ex['disclaimer'])}"
                "</i></td></tr>"
            )
            continue
        best = data.image_path(ex["best_image"])
        source = data.image_path(ex["source_photo"])
        merged = "not judged" if ex["merged_score"] is None else f"{ex['merged_score']:.2f}"
        rank = ex["source_rank"] if ex["source_rank"] is not None else "not in candidates"
        rows.append(
            f"<tr><td>{query}</td><td><img src='{thumbnail_uri(best)}'><br>{ex['best_image']}<br>"
            f"predicted {ex['predicted']:.2f}, merged {merged}</td>"
            f"<td><img src='{thumbnail_uri(source)}'><br>photo written for (rank {rank} of "
            f"{ex['candidates']})</td><td>{'yes' if ex['is_source_photo'] else 'no'}</td></tr>"
        )
    page = (
        "<!doctype html><meta charset='utf-8'><title>pixsearch: best photo per query</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:6px;"
        "border-bottom:1px solid #ddd}</style>"
        f"<h1>Best photo for {len(examples)} random validation queries</h1>"
        f"<p>Model: {html.escape(best_model)}; candidates: every validation photo.</p>"
        "<table><tr><th>query</th><th>ranked first</th><th>source photo</th><th>hit</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def model_card(result: TrainResult, *, bundle_id: str, seed: int) -> str:
    """The Markdown model card: data, filter, split, RMSE table, examples."""
    from pixsearch.exporter.regression import results_markdown
    from pixsearch.exporter.scores import EXPERT_WEIGHT

    hits = [e for e in result.examples if "best_image" in e]
    n_hit = sum(e["is_source_photo"] for e in hits)
    fr = result.filter_report
    lines = [
        "# Relevance regression: model card",
        "",
        f"Bundle `{bundle_id}`, seed {seed}. Target: the merged relevance in [0, 1] = mean of "
        f"three expert votes mapped 1..4 -> 0..1, blended {EXPERT_WEIGHT:g} expert + "
        f"{1 - EXPERT_WEIGHT:g} crowd share where a crowd label exists.",
        "",
        "## Data",
        "",
        f"Rows read: {result.validation['rows']}.",
        "",
        "| fault | count | action |",
        "|---|---|---|",
        *[
            f"| {k} | {v['count']} | {v['action']} |"
            for k, v in result.validation["issues"].items()
        ],
        "",
        "## Legal filter (texts about children)",
        "",
        fr.to_markdown(),
        "",
        f"Mean merged score {fr.mean_score_before:.3f} before, {fr.mean_score_after:.3f} after. "
        f"Kept photos whose own captions are mostly about children (not removed): "
        f"{fr.images_with_child_captions}.",
        "",
        "## Split",
        "",
        f"GroupShuffleSplit by photo: {result.n_train_pairs} training pairs on "
        f"{result.n_train_images} photos, {result.n_val_pairs} validation pairs on "
        f"{result.n_val_images} photos; no photo in both.",
        "",
        "## Models (RMSE on the validation part, predictions clipped to [0, 1])",
        "",
        results_markdown(result.results),
        "",
        f"## Best photo for {len(result.examples)} random validation queries",
        "",
        f"The best model put the photo the query was written for first in {n_hit} of "
        f"{len(hits)} queries (see examples.html).",
        "",
        "| query | ranked first | merged score | source photo rank |",
        "|---|---|---|---|",
    ]
    for ex in result.examples:
        text = ex["query_text"].replace("|", "/")
        if "disclaimer" in ex:
            lines.append(f"| {text} | (disclaimer shown) | | |")
            continue
        merged = "not judged" if ex["merged_score"] is None else f"{ex['merged_score']:.2f}"
        lines.append(
            f"| {text} | {ex['best_image']} | {merged} | {ex['source_rank']} of "
            f"{ex['candidates']} |"
        )
    return "\n".join(lines) + "\n"
