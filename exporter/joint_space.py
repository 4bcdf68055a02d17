"""A trained joint text-image space on frozen encoder features (issue #3).

Photos are EfficientNet-Lite0 pooled ``features [1280]``, texts MiniLM ``embeddings [384]``,
both read from the feature cache (``pixsearch.exporter.features``). Two small towers map them
into one ``dim``-d space, trained with a symmetric InfoNCE loss whose temperature is learned;
every caption of a photo is a positive of it (multi-positive loss). The photo tower also reads the
zero-shot *label-bridge* vector of the photo (EfficientNet classifier -> softmax -> top-k class
names' text embeddings), which it computes from the features itself, so the runtime still stores
only ``features``.

What is shipped is a *mix*: the image vector is ``[sqrt(a) * joint_image, sqrt(1 - a) *
bridge_image]`` and the text vector ``[sqrt(a) * joint_text, sqrt(1 - a) * text_embedding]``;
both have unit length, and their dot product is ``a * cos_joint + (1 - a) * cos_bridge``. The
bridge share keeps the ImageNet objects (rockets, coffee cups, motorcycles) that Flickr8k's
people-and-dogs captions never teach the towers.

The work is split by job: data (``space_data``: bridge, corpus, split), training
(``space_train``), measuring (``space_eval``), export (``space_export``) and the model card
(``space_report``). This module runs them in order (:func:`run_train_space`, ``pixsearch
train-space``) and re-exports their public names.

>>> from pixsearch.exporter.joint_space import JointConfig, run_train_space
>>> JointConfig().mix
0.6
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter.onnx_graph import GraphBuilder, run_onnx
from pixsearch.exporter.parity import ParityError, parity
from pixsearch.exporter.space_data import (
    Bridge,
    Corpus,
    Predicate,
    judged_pairs,
    load_corpus,
    read_manifest,
    split_photos,
)
from pixsearch.exporter.space_eval import (
    BridgeSpace,
    evaluate,
    recall_table,
    rerank_ranks,
    retrieval_ranks,
    val_queries,
)
from pixsearch.exporter.space_export import (
    SPACE_NAME,
    export_heads,
    image_head_bytes,
    text_head_bytes,
)
from pixsearch.exporter.space_report import json_dumps, results_table, space_model_card
from pixsearch.exporter.space_train import (
    JointConfig,
    JointModel,
    build_towers,
    config_dict,
    train_joint,
)

__all__ = [
    "SPACE_NAME",
    "Bridge",
    "BridgeSpace",
    "Corpus",
    "GraphBuilder",
    "JointConfig",
    "JointModel",
    "ParityError",
    "Predicate",
    "SpaceResult",
    "build_towers",
    "config_dict",
    "evaluate",
    "export_heads",
    "image_head_bytes",
    "json_dumps",
    "judged_pairs",
    "load_corpus",
    "parity",
    "read_manifest",
    "recall_table",
    "rerank_ranks",
    "results_table",
    "retrieval_ranks",
    "run_onnx",
    "run_train_space",
    "space_model_card",
    "split_photos",
    "text_head_bytes",
    "train_joint",
    "val_queries",
]


@dataclass
class SpaceResult:
    """What ``run_train_space`` measured and wrote."""

    rows: list[dict[str, Any]]
    """The comparison table: label bridge, joint alone, shipped mix, + reranker."""
    reranker_metrics: dict[str, Any]
    filter_counts: dict[str, int]
    parity: dict[str, dict[str, float]]
    seconds: dict[str, float]
    files: dict[str, Path]
    manifest: dict[str, Any] | None
    card: Path
    val_images: list[str]
    top_n: int


def _rerank_pairs(
    corpus: Corpus,
    models: list[tuple[JointModel, np.ndarray]],
    train_photos: np.ndarray,
    *,
    hard: int = 2,
    random_neg: int = 1,
    pool: int = 30,
    seed: int = 42,
) -> tuple[Any, dict[int, float]]:
    """Caption pairs for the reranker with *out-of-fold* similarities.

    ``models`` are ``(model, photos it was NOT trained on)``; each scores the captions of its
    held-out photos against those photos: own photo -> target 1, ``hard`` negatives drawn from
    its ``pool`` best other photos and ``random_neg`` random ones -> 0. Returns the pairs and,
    for the judged pairs later, nothing else (their similarities are computed the same way).
    """
    from pixsearch.exporter.reranker import PairData

    rng = np.random.default_rng(seed)
    t_idx, i_idx, sims, target = [], [], [], []
    for model, photos in models:
        rows, owners = val_queries(corpus, photos)
        img = model.image_vectors(corpus.features[photos])
        for start in range(0, len(rows), 2048):
            r = rows[start : start + 2048]
            o = owners[start : start + 2048]
            s = model.text_vectors(corpus.text_features[r]) @ img.T
            best = np.argsort(-s, axis=1)[:, : pool + 1]
            for q in range(len(r)):
                chosen = [int(o[q])]
                others = [int(p) for p in best[q] if p != o[q]][:pool]
                chosen += rng.choice(others, size=min(hard, len(others)), replace=False).tolist()
                chosen += rng.integers(0, len(photos), size=random_neg).tolist()
                for k, p in enumerate(chosen):
                    if k > 0 and p == o[q]:
                        continue
                    t_idx.append(int(r[q]))
                    i_idx.append(int(photos[p]))
                    sims.append(float(s[q, p]))
                    target.append(1.0 if k == 0 else 0.0)
    n = len(t_idx)
    return PairData(
        corpus.text_features,
        corpus.features,
        np.asarray(t_idx),
        np.asarray(i_idx),
        np.asarray(sims, np.float32),
        np.asarray(target),
        np.ones(n),
        np.full(n, "caption"),
    ), {}


def _timed(seconds: dict[str, float], key: str, started: float) -> None:
    seconds[key] = round(time.perf_counter() - started, 1)


def run_train_space(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    bundle_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    config: JointConfig | None = None,
    reranker_config: Any = None,
    n_val: int = 900,
    seed: int = 42,
    top_n: int = 50,
    install: bool = True,
    max_images: int | None = None,
    predicate: Predicate | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> SpaceResult:
    """Train the joint space and the reranker, measure them, write the model card, install.

    Steps: corpus (legal filter) -> seeded photo split (``n_val`` photos held out) -> label
    bridge baseline -> two out-of-fold joint models (similarities for the reranker's training
    pairs) -> the joint model on every training photo -> reranker on judged + caption pairs ->
    R@K with and without reranking, RMSE and ECE on held-out judged pairs -> ONNX export with
    parity checks -> ``add_to_bundle`` (unless ``install`` is False).
    """
    from pixsearch.exporter.regression import rmse
    from pixsearch.exporter.reranker import (
        Calibrator,
        PairData,
        RerankerConfig,
        calibration,
        export_reranker,
        train_reranker,
    )
    from pixsearch.indexer.models import ModelBundle

    if predicate is None:
        from pixsearch.exporter.legal_filter import children_predicate

        predicate = children_predicate()
    cfg = config or JointConfig(seed=seed)
    rcfg = reranker_config or RerankerConfig(seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    bundle = ModelBundle.load(bundle_dir)
    bridge = Bridge.from_bundle(bundle)
    started = time.perf_counter()
    corpus = load_corpus(
        data_dir,
        bundle,
        cache_dir=cache_dir,
        predicate=predicate,
        flip=cfg.augment > 0,
        crop_views=cfg.crop_views if cfg.augment > 0 else 0,
        max_images=max_images,
        seed=seed,
        text_views=cfg.text_augment > 0,
        log=log,
    )
    _timed(seconds, "features", started)
    train_photos, val_photos = split_photos(len(corpus.images), n_val, seed)
    val_rows, _ = val_queries(corpus, val_photos)
    log(
        f"split: {len(train_photos)} training photos, {len(val_photos)} validation photos "
        f"({len(val_rows)} validation queries, none about children)"
    )

    rows: list[dict[str, Any]] = []
    rows.append(
        {
            "model": "label bridge (zero-shot, shipped before)",
            **evaluate(BridgeSpace(bridge), corpus, val_photos),
        }
    )

    started = time.perf_counter()
    fold_rng = np.random.default_rng(seed + 1)
    shuffled = fold_rng.permutation(train_photos)
    halves = [np.sort(shuffled[: len(shuffled) // 2]), np.sort(shuffled[len(shuffled) // 2 :])]
    fold_models = []
    for k in range(2):
        log(f"out-of-fold joint model {k + 1}/2")
        fold_models.append((train_joint(corpus, halves[k], bridge, cfg, log=log), halves[1 - k]))
    _timed(seconds, "joint_oof", started)

    started = time.perf_counter()
    log("joint model on every training photo")
    model = train_joint(corpus, train_photos, bridge, cfg, val_photos=val_photos, log=log)
    _timed(seconds, "joint", started)
    rows.append(
        {
            "model": f"joint space alone (towers, dim {cfg.dim})",
            **evaluate(model, corpus, val_photos, mix=1.0),
        }
    )
    rows.append(
        {
            "model": f"shipped space: {cfg.mix:g} joint + {1 - cfg.mix:g} label bridge",
            **evaluate(model, corpus, val_photos),
        }
    )

    # ---- reranker data: caption pairs (out-of-fold sims) + judged pairs
    started = time.perf_counter()
    captions, _ = _rerank_pairs(corpus, fold_models, train_photos, seed=seed)
    judged, judged_info = judged_pairs(Path(data_dir), corpus, bundle, cache_dir, predicate)
    val_set = set(val_photos.tolist())
    in_val = judged["image_row"].isin(val_set).to_numpy()
    # similarities of judged pairs: the fold model that did not see the photo; the full model
    # for validation photos (as at run time)
    owner_model = {}
    for fold, (_, held) in enumerate(fold_models):
        for p in held.tolist():
            owner_model[p] = fold
    jt = judged_info["features"]
    sims = np.zeros(len(judged), np.float32)
    rows_of = judged["image_row"].to_numpy()
    fold_of = np.array([-1 if p in val_set else owner_model.get(p, 0) for p in rows_of.tolist()])
    for fold, m in [(-1, model), (0, fold_models[0][0]), (1, fold_models[1][0])]:
        sel = np.flatnonzero(fold_of == fold)
        if sel.size:
            img_v = m.image_vectors(corpus.features[rows_of[sel]])
            sims[sel] = np.sum(img_v * m.text_vectors(jt[sel]), axis=1)
    offset = len(corpus.text_features)
    all_text = np.concatenate([corpus.text_features, jt])
    y = judged["score"].to_numpy(np.float64)
    judged_pd = PairData(
        all_text,
        corpus.features,
        offset + np.arange(len(judged)),
        judged["image_row"].to_numpy(np.int64),
        sims,
        y,
        np.full(len(judged), rcfg.judged_weight),
        np.full(len(judged), "judged"),
    )
    captions.text_features = all_text
    tr = np.flatnonzero(~in_val)
    va = np.flatnonzero(in_val)
    judged_train, judged_val = judged_pd.subset(tr), judged_pd.subset(va)
    train_pairs = _concat_pairs(captions, judged_train)
    log(
        f"reranker: {len(captions)} caption pairs, {len(tr)} judged pairs for training, "
        f"{len(va)} judged pairs held out"
    )
    reranker = train_reranker(train_pairs, rcfg, log=log)
    _timed(seconds, "reranker", started)

    # ---- reranker metrics: the MLP, and the calibrator fitted on the same judged pairs
    mlp_metrics = _scorer_metrics(
        reranker, judged_train, judged_val, corpus, model, val_photos, seed
    )
    calibrator = Calibrator.fit(judged_train.similarity, judged_train.target)
    cal_metrics = _scorer_metrics(
        calibrator, judged_train, judged_val, corpus, model, val_photos, seed
    )
    pred_val = calibrator.predict(judged_val)
    ece, table = calibration(pred_val, judged_val.target)
    cap_val, _ = _rerank_pairs(corpus, [(model, val_photos)], val_photos, seed=seed + 7)
    pred_cap = calibrator.predict(cap_val)
    ece_cap, table_cap = calibration(pred_cap, cap_val.target)
    from pixsearch.exporter.regression import LinearModel  # noqa: F401  (sklearn present)

    sim_only = _sim_calibrated_rmse(judged_train, judged_val)
    metrics = {
        "judged_val_pairs": len(va),
        "judged_val_photos": int(judged.loc[in_val, "image"].nunique()),
        "rmse": round(rmse(judged_val.target, pred_val), 4),
        "rmse_constant": round(
            rmse(judged_val.target, np.full(len(va), judged_train.target.mean())), 4
        ),
        "rmse_similarity_only": round(sim_only, 4),
        "ece": round(ece, 4),
        "reliability": table,
        "caption_val_pairs": len(cap_val),
        "ece_captions": round(ece_cap, 4),
        "reliability_captions": table_cap,
        "share_above_0.5": {
            "positives": round(float(np.mean(pred_cap[cap_val.target == 1] > 0.5)), 4),
            "negatives": round(float(np.mean(pred_cap[cap_val.target == 0] > 0.5)), 4),
        },
        "judged_filter": judged_info["filter"],
        "shipped": f"calibrator sigmoid({calibrator.a:.4f} * similarity + {calibrator.b:.4f})",
        "mlp": mlp_metrics,
        "calibrator": cal_metrics,
    }
    rerank_rows = []
    for n in (10, 20, 50, 100):
        if n > len(val_photos):
            continue
        t0 = time.perf_counter()
        ranks = rerank_ranks(model, reranker, corpus, val_photos, n)
        rerank_rows.append(
            {
                "model": f"shipped space + MLP reranker (top {n})",
                **recall_table(ranks),
                "top_n": n,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    rows += rerank_rows
    rows.append(
        {
            "model": "shipped space + shipped calibrator (any top n: order kept)",
            **cal_metrics["top10"],
        }
    )
    metrics["timing_ms_per_query"] = _reranker_timing(
        reranker, corpus, [r["top_n"] for r in rerank_rows]
    )

    # ---- export
    started = time.perf_counter()
    files_dir = out / "bundle_files"
    check_f = corpus.features[val_photos[:64]]
    check_t = corpus.text_features[val_rows[:64]]
    parity_report = export_heads(model, files_dir, check_f, check_t, half=True)
    check_s = np.sum(model.image_vectors(check_f) * model.text_vectors(check_t), axis=1)
    parity_report["reranker"] = export_reranker(
        calibrator, files_dir / "reranker.onnx", check_t, check_f, check_s
    )
    _timed(seconds, "export", started)
    files = {
        name: files_dir / name for name in ("image_head.onnx", "text_head.onnx", "reranker.onnx")
    }
    val_images = [corpus.images[p] for p in val_photos.tolist()]
    (out / "validation_images.txt").write_text("\n".join(val_images) + "\n")
    summary = {
        "rows": rows,
        "reranker": metrics,
        "filter": corpus.filter_counts,
        "excluded": corpus.excluded,
        "parity": parity_report,
        "seconds": seconds,
        "config": asdict(cfg),
        "reranker_config": asdict(rcfg),
        "seed": seed,
        "n_val": n_val,
        "history": model.history,
    }
    (out / "results.json").write_text(json_dumps(summary))
    manifest = None
    if install:
        from pixsearch.exporter.bundle_update import add_to_bundle

        shipped = rows[2]

        def update(m: dict[str, Any]) -> None:
            m["space"] = {
                "name": SPACE_NAME,
                "kind": "joint",
                "dim": cfg.dim + bridge.class_embeddings.shape[1],
                "files": {"image_head": "image_head.onnx", "text_head": "text_head.onnx"},
                "params": {
                    "joint_dim": cfg.dim,
                    "mix": cfg.mix,
                    "top_k": bridge.top_k,
                    "vector": "[sqrt(mix) * joint, sqrt(1 - mix) * label bridge], unit length",
                    "weights": "float16 matrices, cast to float32 in the graph",
                },
                "training": {
                    "command": "pixsearch train-space DATA",
                    "seed": seed,
                    "data": "Flickr8k captions (legal filter: texts about children dropped)",
                    "validation": {
                        "photos": len(val_photos),
                        "queries": len(val_rows),
                        "split": f"seeded permutation (seed {seed}) of the corpus photos; "
                        "list in the model card / validation_images.txt",
                        **{k: shipped[k] for k in ("R@1", "R@5", "R@10", "median_rank")},
                    },
                    "filter": corpus.filter_counts,
                },
            }
            m["models"]["image_head"] = {
                "file": "image_head.onnx",
                "inputs": {"features": "float32 [N,1280]"},
                "outputs": {"vectors": f"float32 [N,{cfg.dim + 384}] L2-normalised"},
            }
            m["models"]["text_head"] = {
                "file": "text_head.onnx",
                "inputs": {"text_embeddings": "float32 [N,384]"},
                "outputs": {"vectors": f"float32 [N,{cfg.dim + 384}] L2-normalised"},
            }
            m["reranker"] = {
                "file": "reranker.onnx",
                "top_n": top_n,
                "inputs": {
                    "text_embeddings": "float32 [N,384] the query embedding, repeated per photo",
                    "features": "float32 [N,1280] stored image features",
                    "similarities": "float32 [N] cosine of query and photo in the space",
                },
                "outputs": {"scores": "float32 [N] relevance in [0,1] (calibrated)"},
                "kind": "calibrator",
                "model": metrics["shipped"],
                "reorders": False,
                "note": "monotone in the similarity: reranking keeps the space's order; the "
                "MLP reranker was trained and measured but hurt R@K (model card)",
                "metrics": {
                    k: metrics[k] for k in ("rmse", "ece", "ece_captions", "judged_val_pairs")
                },
            }
            m.setdefault("parity", {}).update(parity_report)

        manifest = add_to_bundle(files, update, Path(bundle_dir) if bundle_dir else None)
        log(f"installed into the bundle: new id {manifest['bundle_id']}")
    card = out / "model_card.md"
    result = SpaceResult(
        rows,
        metrics,
        corpus.filter_counts,
        parity_report,
        seconds,
        files,
        manifest,
        card,
        val_images,
        top_n,
    )
    card.write_text(space_model_card(result, cfg, summary))
    return result


def _scorer_metrics(
    scorer: Any,
    train: Any,
    val: Any,
    corpus: Corpus,
    model: JointModel,
    val_photos: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """RMSE and ECE of a pair scorer on held-out judged pairs, and R@K after reranking."""
    from pixsearch.exporter.regression import rmse
    from pixsearch.exporter.reranker import calibration

    pred = scorer.predict(val)
    ece, _table = calibration(pred, val.target)
    out: dict[str, Any] = {"rmse": round(rmse(val.target, pred), 4), "ece": round(ece, 4)}
    for n in (10,):
        out[f"top{n}"] = recall_table(rerank_ranks(model, scorer, corpus, val_photos, n))
    return out


def _concat_pairs(a: Any, b: Any) -> Any:
    from pixsearch.exporter.reranker import PairData

    assert a.text_features is b.text_features and a.image_features is b.image_features
    return PairData(
        a.text_features,
        a.image_features,
        np.concatenate([a.text_index, b.text_index]),
        np.concatenate([a.image_index, b.image_index]),
        np.concatenate([a.similarity, b.similarity]),
        np.concatenate([a.target, b.target]),
        np.concatenate([a.weight, b.weight]),
        np.concatenate([a.source, b.source]),
    )


def _sim_calibrated_rmse(train: Any, val: Any) -> float:
    """RMSE of the similarity alone, calibrated by a 1-input linear fit on the training pairs."""
    from pixsearch.exporter.regression import rmse

    slope, intercept = np.polyfit(train.similarity.astype(np.float64), train.target, 1)
    return rmse(val.target, np.clip(slope * val.similarity + intercept, 0, 1))


def _reranker_timing(reranker: Any, corpus: Corpus, top_ns: list[int]) -> dict[str, float]:
    """Milliseconds per query for scoring ``n`` candidates with the exported ONNX reranker."""
    import onnxruntime as ort

    from pixsearch.exporter.reranker import reranker_bytes

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        reranker_bytes(reranker), sess_options=options, providers=["CPUExecutionProvider"]
    )
    timing = {}
    for n in top_ns:
        feeds = {
            "text_embeddings": np.repeat(corpus.text_features[:1], n, axis=0),
            "features": corpus.features[:n],
            "similarities": np.zeros(n, np.float32),
        }
        session.run(None, feeds)
        t0 = time.perf_counter()
        for _ in range(20):
            session.run(None, feeds)
        timing[str(n)] = round(1000 * (time.perf_counter() - t0) / 20, 2)
    return timing
