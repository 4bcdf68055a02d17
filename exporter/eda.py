"""Exploratory report of the customer's data: one self-contained HTML page with PNG plots.

``write_eda_report`` draws with matplotlib's Agg backend and embeds every plot and thumbnail
as base64, so the page can be mailed as one file. Sections: validation faults; expert votes;
expert disagreement; crowd shares; the merged score; expert vs crowd; pairs per image and per
query; caption lengths; sample photos with their best- and worst-scored captions; the legal
filter's effect.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixsearch.exporter.thumbnails import thumbnail_uri

if TYPE_CHECKING:
    import pandas as pd

    from pixsearch.exporter.data import PracticumData
    from pixsearch.exporter.legal_filter import LegalFilterReport


def _figure(width: float = 6.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure_html(src: str, title: str) -> str:
    label = html.escape(title)
    return f"<figure><img src='{src}' alt='{label}'><figcaption>{label}</figcaption></figure>"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(border=0, classes="t", float_format=lambda v: f"{v:.3f}")


def plot_expert_votes(expert: pd.DataFrame) -> str:
    """Grouped bars: how often each expert gave 1, 2, 3, 4."""
    fig, ax = _figure()
    width = 0.27
    for k, column in enumerate(["e1", "e2", "e3"]):
        counts = expert[column].value_counts().reindex([1, 2, 3, 4], fill_value=0)
        ax.bar(np.arange(1, 5) + (k - 1) * width, counts.to_numpy(), width, label=column)
    ax.set(
        xlabel="vote (1 = does not describe, 4 = describes exactly)",
        ylabel="pairs",
        title="Expert votes",
        xticks=[1, 2, 3, 4],
    )
    ax.legend()
    return _png(fig)


def plot_disagreement(expert: pd.DataFrame) -> str:
    """Bars of the vote spread (max - min) per pair."""
    fig, ax = _figure(5, 3)
    spread = expert["expert_spread"].value_counts().sort_index()
    ax.bar(spread.index.astype(int).astype(str), spread.to_numpy(), color="#c55")
    for x, v in zip(range(len(spread)), spread.to_numpy(), strict=True):
        ax.text(x, v, str(int(v)), ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="max vote - min vote", ylabel="pairs", title="Expert disagreement per pair")
    return _png(fig)


def plot_hist(
    values: np.ndarray, title: str, xlabel: str, bins: Any = 20, color: str = "#47a"
) -> str:
    """A plain histogram."""
    fig, ax = _figure(5, 3)
    ax.hist(values, bins=bins, color=color, edgecolor="white")
    ax.set(xlabel=xlabel, ylabel="count", title=title)
    return _png(fig)


def plot_expert_vs_crowd(both: pd.DataFrame) -> str:
    """Box plot of the crowd share per expert-mean bucket (pairs with both labels)."""
    fig, ax = _figure(5.5, 3.2)
    buckets = both.assign(bucket=both[["e1", "e2", "e3"]].mean(axis=1).round(2))
    groups = sorted(buckets["bucket"].unique())
    ax.boxplot(
        [buckets.loc[buckets.bucket == g, "share_yes"] for g in groups],
        tick_labels=[f"{g:.2f}" for g in groups],
    )
    ax.set(
        xlabel="expert mean vote",
        ylabel="crowd share 'matches'",
        title=f"Expert vs crowd on {len(both)} pairs with both",
    )
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    return _png(fig)


def plot_before_after(before: np.ndarray, after: np.ndarray) -> str:
    """Overlaid merged-score histograms before and after the legal filter."""
    fig, ax = _figure(5.5, 3.2)
    bins = np.linspace(0, 1, 21)
    ax.hist(before, bins=bins, alpha=0.5, label=f"before ({len(before)})")
    ax.hist(after, bins=bins, alpha=0.5, label=f"after ({len(after)})")
    ax.set(xlabel="merged score", ylabel="pairs", title="Merged score, legal filter")
    ax.legend()
    return _png(fig)


def sample_photos(
    data: PracticumData, scored: pd.DataFrame, n: int = 6, seed: int = 42
) -> list[dict[str, Any]]:
    """``n`` random photos with their best- and worst-scored judged captions."""
    rng = np.random.default_rng(seed)
    images = sorted(scored["image"].unique())
    picks = rng.choice(len(images), size=min(n, len(images)), replace=False)
    out = []
    for i in picks:
        rows = scored[scored["image"] == images[i]].sort_values("score", kind="stable")
        out.append(
            {
                "image": images[i],
                "best": (rows.iloc[-1]["query_text"], float(rows.iloc[-1]["score"])),
                "worst": (rows.iloc[0]["query_text"], float(rows.iloc[0]["score"])),
                "pairs": len(rows),
            }
        )
    return out


def write_eda_report(
    data: PracticumData,
    scored: pd.DataFrame,
    kept: pd.DataFrame,
    filter_report: LegalFilterReport,
    out_dir: str | Path,
    *,
    seed: int = 42,
) -> Path:
    """Write ``out_dir/eda.html``; returns its path.

    ``scored``: expert pairs with the merged ``score`` (before the filter); ``kept``: after it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expert = scored[scored["has_expert"]]
    crowd_all = data.pairs[data.pairs["has_crowd"]]
    both = expert[expert["has_crowd"]]
    three_way = int((expert[["e1", "e2", "e3"]].nunique(axis=1) == 3).sum())
    corr = (
        float(np.corrcoef(both["expert_score"], both["share_yes"])[0, 1])
        if len(both) > 2
        else float("nan")
    )
    parts: list[str] = []
    add = parts.append
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    saved: list[str] = []

    def _img(src: str, title: str) -> str:  # also keep each plot as a PNG file
        slug = "".join(c if c.isalnum() else "-" for c in title.lower())[:40]
        name = f"{len(saved):02d}-{slug}.png"
        (plots / name).write_bytes(base64.b64decode(src.split(",", 1)[1]))
        saved.append(name)
        return _figure_html(src, title)

    add("<h2>1. Validation</h2>")
    add(f"<p>Rows read per file: {html.escape(str(data.report.rows))}</p>")
    add(_markdown_table_html(data.report.to_markdown()))

    add("<h2>2. Expert votes</h2>")
    add(_img(plot_expert_votes(expert), "Votes per expert"))
    add(_img(plot_disagreement(expert), "Vote spread"))
    mean_votes = expert[["e1", "e2", "e3"]].mean().round(3).to_dict()
    add(
        f"<p>{len(expert)} expert pairs; mean vote per expert {mean_votes}. All three experts "
        f"disagree on {three_way} pairs; the vote spread is 0 on "
        f"{int((expert['expert_spread'] == 0).sum())} pairs.</p>"
    )

    add("<h2>3. Crowd shares</h2>")
    add(
        _img(
            plot_hist(
                crowd_all["share_yes"].to_numpy(),
                f"Crowd share, all {len(crowd_all)} crowd pairs",
                "share of workers saying 'matches'",
                bins=np.linspace(0, 1, 13),
            ),
            "crowd all",
        )
    )
    add(
        _img(
            plot_hist(
                both["share_yes"].to_numpy(),
                f"Crowd share on {len(both)} expert pairs",
                "share 'matches'",
                bins=np.linspace(0, 1, 13),
            ),
            "crowd on expert pairs",
        )
    )
    add(_img(plot_expert_vs_crowd(both), "expert vs crowd"))
    add(
        f"<p>Pearson correlation of the expert part (0..1) with the crowd share on pairs with "
        f"both labels: {corr:.3f}. Crowd workers per pair: "
        f"{(crowd_all['n_yes'] + crowd_all['n_no']).value_counts().sort_index().to_dict()}.</p>"
    )

    add("<h2>4. Merged score</h2>")
    add(
        _img(
            plot_hist(
                expert["score"].to_numpy(),
                "Merged relevance (expert pairs)",
                "score",
                bins=np.linspace(0, 1, 21),
                color="#4a7",
            ),
            "merged score",
        )
    )
    desc = expert["score"].describe().round(3).to_dict()
    add(
        f"<p>Summary: {desc}. Share of pairs with score ≥ 0.5: "
        f"{(expert['score'] >= 0.5).mean():.3f}. The target is heavily skewed to 0: most pairs are "
        "a photo with an unrelated caption.</p>"
    )

    add("<h2>5. Pairs per image and per query</h2>")
    per_image = expert.groupby("image").size().to_numpy()
    per_query = expert.groupby("query_id").size().to_numpy()
    add(
        _img(
            plot_hist(
                per_image,
                f"Pairs per image ({len(per_image)} images)",
                "pairs",
                bins=np.arange(0.5, per_image.max() + 1.5),
            ),
            "pairs per image",
        )
    )
    add(
        _img(
            plot_hist(
                per_query,
                f"Pairs per query ({len(per_query)} queries)",
                "pairs",
                bins=np.arange(0.5, per_query.max() + 1.5),
            ),
            "pairs per query",
        )
    )
    source = expert["query_id"].str.split("#").str[0]
    add(
        f"<p>Pairs per image: median {np.median(per_image):.0f}, max {per_image.max()}; per "
        f"query: median {np.median(per_query):.0f}, max {per_query.max()}. "
        f"{int((source == expert['image']).sum())} pairs show a photo with its own caption.</p>"
    )

    add("<h2>6. Caption lengths</h2>")
    words = expert.drop_duplicates("query_id")["query_text"].str.split().str.len().to_numpy()
    add(
        _img(
            plot_hist(
                words,
                "Query length (words), judged queries",
                "words",
                bins=np.arange(0.5, words.max() + 1.5),
            ),
            "query length",
        )
    )
    if len(data.captions):
        all_words = data.captions["caption"].str.split().str.len().to_numpy()
        add(
            _img(
                plot_hist(
                    all_words,
                    f"Caption length, all {len(all_words)} captions",
                    "words",
                    bins=np.arange(0.5, all_words.max() + 1.5),
                    color="#888",
                ),
                "captions",
            )
        )
        add(f"<p>Captions with fewer than 3 words: {int((all_words < 3).sum())} (e.g. 'A').</p>")

    add("<h2>7. Sample photos with their best and worst captions</h2><table class='t'>")
    add("<tr><th>photo</th><th>best-scored caption</th><th>worst-scored caption</th></tr>")
    for s in sample_photos(data, expert, seed=seed):
        thumb = thumbnail_uri(data.image_path(s["image"]))
        add(
            f"<tr><td><img src='{thumb}'><br>{s['image']} ({s['pairs']} pairs)</td>"
            f"<td>{html.escape(s['best'][0])}<br><b>{s['best'][1]:.2f}</b></td>"
            f"<td>{html.escape(s['worst'][0])}<br><b>{s['worst'][1]:.2f}</b></td></tr>"
        )
    add("</table>")

    add("<h2>8. Legal filter: texts about children</h2>")
    add(_markdown_table_html(filter_report.to_markdown()))
    kept_expert = kept[kept["has_expert"]]
    add(
        _img(
            plot_before_after(expert["score"].to_numpy(), kept_expert["score"].to_numpy()),
            "legal filter",
        )
    )
    add(
        f"<p>{filter_report.images_touched} photos lost at least one pair. Mean merged score "
        f"{filter_report.mean_score_before:.3f} before, "
        f"{filter_report.mean_score_after:.3f} after. "
        f"Kept photos whose own captions are mostly about children: "
        f"{filter_report.images_with_child_captions}. Removed texts, e.g.: "
        f"{html.escape('; '.join(filter_report.examples[:3]))}</p>"
    )

    page = (
        "<!doctype html><meta charset='utf-8'><title>pixsearch EDA</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1100px}figure{display:inline-block;"
        "margin:4px}figcaption{font-size:11px;color:#666}table.t td,table.t th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;vertical-align:top;font-size:13px}</style>"
        "<h1>pixsearch: customer data, exploratory report</h1>" + "\n".join(parts)
    )
    path = out / "eda.html"
    path.write_text(page, encoding="utf-8")
    return path


def _markdown_table_html(markdown: str) -> str:
    """Render the simple pipe tables this package writes as HTML."""
    lines = [line.strip().strip("|").split("|") for line in markdown.strip().splitlines()]
    head, body = lines[0], lines[2:]
    cells = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>"
        for row in body
    )
    return f"<table class='t'><tr>{cells}</tr>{rows}</table>"
