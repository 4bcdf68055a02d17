"""Reporting the joint space: the R@K table, the model card, JSON that holds numpy values.

>>> print(results_table([{"model": "m", "R@1": 10.0, "R@5": 20.0, "R@10": 30.0,
...                       "median_rank": 4.0}]))
| model | R@1 | R@5 | R@10 | median rank |
|---|---|---|---|---|
| m | 10.0 | 20.0 | 30.0 | 4 |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pixsearch.exporter.reranker import reliability_markdown
from pixsearch.exporter.space_export import SPACE_NAME

if TYPE_CHECKING:
    from pixsearch.exporter.joint_space import SpaceResult
    from pixsearch.exporter.space_train import JointConfig


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(
        value, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
    )


def results_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of R@1/5/10 and the median rank."""
    lines = ["| model | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | "
        f"{r['median_rank']:g} |"
        for r in rows
    ]
    return "\n".join(lines)


def space_model_card(result: SpaceResult, cfg: JointConfig, summary: dict[str, Any]) -> str:
    """The Markdown model card of the joint space and the reranker."""
    m = result.reranker_metrics
    f = result.filter_counts
    seconds = result.seconds
    bundle_id = result.manifest["bundle_id"] if result.manifest else "(not installed)"
    lines = [
        f"# Model card: joint space `{SPACE_NAME}` and the relevance reranker",
        "",
        f"Written by `pixsearch train-space` (seed {summary['seed']}); bundle `{bundle_id}`.",
        "",
        "## Data and legal filter",
        "",
        f"Flickr8k `captions.tsv` over the photos of `manifest.csv`: {f.get('photos_read')} "
        "photos, "
        f"{f.get('captions_read')} captions read. Damaged photos left out: "
        f"{f.get('photos_damaged')} ({', '.join(summary['excluded']['damaged'])}); byte-identical "
        f"duplicates merged into one photo: {f.get('photos_duplicate_merged')}.",
        "",
        f"Legal filter (`pixsearch.indexer.policy.is_about_children`): "
        f"**{f.get('captions_about_children')} captions dropped** "
        f"({100 * f.get('captions_about_children', 0) / max(1, f.get('captions_read', 1)):.1f}%), "
        f"{f.get('captions_kept')} kept; {f.get('photos_with_only_child_captions')} photos lost "
        "every caption (they stay as gallery photos, never as training positives). "
        "Validation queries are only captions that are not about children: under the default "
        "strict policy such queries are blocked, so measuring them would measure nothing "
        "users see.",
        "",
        "## Split",
        "",
        f"A seeded permutation (seed {summary['seed']}) of the {f.get('photos_kept')} corpus "
        f"photos; the first {len(result.val_images)} are the validation photos (all their "
        "captions), the rest train. Every choice below was tuned on this split only. The list "
        "is at the end of this card (and in `validation_images.txt`).",
        "",
        "## Text -> image retrieval on the validation photos",
        "",
        f"Each validation caption is a query; its own photo must rank first among the "
        f"{len(result.val_images)} validation photos.",
        "",
        results_table(result.rows),
        "",
        f"Shipped: the mixed space, reranker `top_n` = {result.top_n}.",
        "",
        "## Reranker",
        "",
        f"Held-out judged pairs (photos in the validation split): {m['judged_val_pairs']} pairs on "
        f"{m['judged_val_photos']} photos. RMSE **{m['rmse']:.4f}** (constant: "
        f"{m['rmse_constant']:.4f}; the space's cosine calibrated by a linear fit: "
        f"{m['rmse_similarity_only']:.4f}). ECE **{m['ece']:.4f}**.",
        "",
        reliability_markdown(m["reliability"]),
        "",
        f"Shipped scorer: {m['shipped']} (fitted on the judged training pairs with "
        "out-of-fold similarities). The MLP reranker trained on the same judged pairs plus "
        f"caption pairs scored RMSE {m['mlp']['rmse']:.4f}, ECE {m['mlp']['ece']:.4f} and "
        "lowered R@K (table above), so it is not shipped.",
        "",
        f"Caption pairs on validation photos (own photo = 1; 2 hard + 1 random negatives = 0): "
        f"{m['caption_val_pairs']} pairs, ECE {m['ece_captions']:.4f}; share scored above 0.5: "
        f"positives {m['share_above_0.5']['positives']:.3f}, negatives "
        f"{m['share_above_0.5']['negatives']:.3f}.",
        "",
        reliability_markdown(m["reliability_captions"]),
        "",
        "Reranking time (ONNX, one query, ms): "
        + ", ".join(f"top {n}: {ms}" for n, ms in m["timing_ms_per_query"].items()),
        "",
        "## Models",
        "",
        "- `image_head.onnx`: features -> standardise"
        + (" -> concat label-bridge vector" if cfg.bridge_input else "")
        + " -> MLP "
        f"({cfg.image_hidden} hidden, GELU) -> {cfg.dim}-d -> L2; concat with the bridge vector "
        f"weighted sqrt({cfg.mix:g}) / sqrt({1 - cfg.mix:g}). Output dim {cfg.dim + 384}.",
        f"- `text_head.onnx`: MiniLM embedding -> MLP ({cfg.text_hidden} hidden) -> "
        f"{cfg.dim}-d -> L2; concat with the embedding itself, same weights.",
        "- `reranker.onnx`: (query embedding, features, cosine) -> projections to "
        f"{summary['reranker_config']['hidden']}-d, [a, b, a*b, |a-b|, cosine] -> MLP -> sigmoid.",
        "",
        "Training: " + ", ".join(f"{k}={v}" for k, v in summary["config"].items()) + ".",
        "",
        "Parity (ONNX vs PyTorch on 64 validation rows): "
        + "; ".join(
            f"{k}: max abs {v['max_abs_diff']}, min cos {v['min_cosine']}"
            for k, v in result.parity.items()
        ),
        "",
        "Seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()),
        "",
        "## Validation photos",
        "",
        "<details><summary>the " + str(len(result.val_images)) + " photos</summary>",
        "",
        " ".join(result.val_images),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"
