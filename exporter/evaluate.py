"""``pixsearch eval``: measure text -> photo search the way users get it.

The photos are indexed into a temporary database through the real runtime
(``ImageSearch(db=tmp).index(DIR)``) and every query goes through ``ImageSearch.search``, so the
figures include everything the runtime does (policy, space, reranker). A query hits at K when
the photo it was written for is among the first K results.

Queries come in the customer's held-out format (``test_queries.csv``: ``|``-separated, header
``|query_id|query_text|image``, the first unnamed column a row index). Under a restricting
policy, queries the policy blocks are counted (``blocked``) and left out of the figures.

>>> metrics_from_ranks([1, 2, 20], n_images=30)["recall@1"]
33.33
>>> round(metrics_from_ranks([1, 3], n_images=5)["ndcg@10"], 4)
0.75
"""

from __future__ import annotations

import html
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.db.errors import InvalidInputError


@dataclass
class EvalQuery:
    query_id: str
    text: str
    image: str


@dataclass
class EvalResult:
    """Figures (``metrics``) and one record per query (``per_query``)."""

    metrics: dict[str, Any]
    per_query: list[dict[str, Any]] = field(default_factory=list)
    issues: dict[str, Any] = field(default_factory=dict)


def read_queries(path: str | Path) -> tuple[list[EvalQuery], dict[str, Any]]:
    """Read a ``test_queries.csv``-format file; returns the queries and the fault report."""
    from pixsearch.exporter.data import ValidationReport, read_rows

    path = Path(path)
    report = ValidationReport()
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist: give a test_queries.csv-format file")
    rows = read_rows(
        path,
        delimiter="|",
        n_fields=4,
        report=report,
        header=["", "query_id", "query_text", "image"],
    )
    report.raise_if_failed()
    queries, seen = [], set()
    for line, (_, query_id, text, image) in rows:
        if query_id in seen:
            report.add("duplicate_pair", f"{path.name} line {line}: {query_id} again")
            continue
        seen.add(query_id)
        if not text.strip():
            report.add("empty_text", f"{path.name} line {line}: {query_id}")
            continue
        queries.append(EvalQuery(query_id, text, image))
    return queries, report.to_dict()


def metrics_from_ranks(ranks: list[float], n_images: int) -> dict[str, Any]:
    """Recall@1/5/10 (percent), median rank and nDCG@10 (one relevant photo per query)."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        nan = float("nan")
        return {
            "recall@1": nan,
            "recall@5": nan,
            "recall@10": nan,
            "median_rank": nan,
            "ndcg@10": nan,
        }
    ndcg = np.where(r <= 10, 1.0 / np.log2(r + 1.0), 0.0)
    return {
        "recall@1": round(100.0 * float(np.mean(r <= 1)), 2),
        "recall@5": round(100.0 * float(np.mean(r <= 5)), 2),
        "recall@10": round(100.0 * float(np.mean(r <= 10)), 2),
        "median_rank": float(np.median(r)),
        "ndcg@10": round(float(np.mean(ndcg)), 4),
    }


def evaluate_search(
    queries_file: str | Path,
    images_dir: str | Path,
    *,
    policy: str = "strict",
    bundle: Any = None,
    db: str | Path | None = None,
    show: int = 0,
    seed: int = 42,
    rank_depth: int = 100,
    log: Callable[[str], None] = lambda message: None,
) -> EvalResult:
    """Index ``images_dir`` into a temporary database (or ``db``), run every query, measure.

    A query's rank is the position of its photo in the first ``rank_depth`` results (each
    search asks for that many: deeper searches cost time per query); a photo not returned
    gets rank ``n_images + 1`` (deeper than ``rank_depth``, or restricted by the policy), so
    the median rank is exact while it is within ``rank_depth``. Queries whose photo is not in
    the folder are counted as ``unknown_image`` and left
    out.
    """
    from pixsearch.search.engine import MAX_K, ImageSearch

    queries, issues = read_queries(queries_file)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InvalidInputError(f"{images_dir} is not a folder of photos")
    with tempfile.TemporaryDirectory(prefix="pixsearch-eval-") as tmp:
        engine = ImageSearch(db=db or Path(tmp) / "db", bundle=bundle, policy=policy)
        started = time.perf_counter()
        report = engine.index(images_dir)
        index_seconds = time.perf_counter() - started
        n_images = engine.stats().photos
        log(f"indexed {n_images} photos in {index_seconds:.0f} s")
        names = {p.name for p in images_dir.rglob("*") if p.is_file()}
        indexed = _indexed_photos(engine)
        hides_restricted = _profile(policy).excludes_restricted_photos
        k = max(1, min(n_images, MAX_K, rank_depth))
        ranks: list[float] = []
        per_query: list[dict[str, Any]] = []
        blocked = unknown = 0
        started = time.perf_counter()
        for query in queries:
            if query.image not in names:
                unknown += 1
                continue
            response = engine.search(query.text, k=k)
            record: dict[str, Any] = {
                "query_id": query.query_id,
                "query_text": query.text,
                "image": query.image,
            }
            own_row = indexed.get(query.image)
            if own_row is not None:  # what --html may show of it (checked against the file)
                record.update(
                    own_path=own_row["path"],
                    own_fingerprint=(own_row["content_hash"], own_row["size"]),
                    own_hidden=bool(hides_restricted and own_row["restricted"]),
                )
            if response.blocked:
                blocked += 1
                record.update(blocked=True, message=response.message)
                per_query.append(record)
                continue
            paths = [Path(r.path).name for r in response.results]
            rank = paths.index(query.image) + 1 if query.image in paths else n_images + 1
            ranks.append(float(rank))
            best = response.results[0] if response.results else None
            record.update(
                blocked=False,
                rank=rank,
                best=best.path if best else None,
                best_fingerprint=(best.content_hash, best.size) if best else None,
                best_score=float(best.score) if best else None,
                own_score=next(
                    (float(r.score) for r in response.results if Path(r.path).name == query.image),
                    None,
                ),
            )
            per_query.append(record)
        search_seconds = time.perf_counter() - started
    metrics = metrics_from_ranks(ranks, n_images)
    metrics.update(
        n_queries=len(ranks),
        n_images=n_images,
        blocked=blocked,
        unknown_image=unknown,
        policy=policy,
        failed_photos=len(report.failed),
        index_seconds=round(index_seconds, 1),
        ms_per_query=round(1000 * search_seconds / max(1, len(ranks) + blocked), 1),
    )
    if unknown:
        issues.setdefault("issues", {})["unknown_image"] = {"count": unknown, "action": "excluded"}
    result = EvalResult(metrics, per_query, issues)
    if show:
        result.metrics["shown"] = [q["query_id"] for q in pick_shown(per_query, show, seed)]
    return result


def pick_shown(per_query: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` queries picked at random (seeded), in file order."""
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(per_query), size=min(n, len(per_query)), replace=False))
    return [per_query[i] for i in picked]


def _indexed_photos(engine: Any) -> dict[str, dict[str, Any]]:
    """File name -> the row's path, content hash, size and restricted flag."""
    columns = ["path", "content_hash", "size", "restricted"]
    return {Path(row["path"]).name: row for row in engine.store.scan(columns).to_pylist()}


def _profile(policy: str) -> Any:
    from pixsearch.indexer.policy import get_profile

    return get_profile(policy)


def _shown_thumbnail(path: str | None, fingerprint: Any, cache: Any) -> tuple[str | None, str]:
    """``(data URI, "")`` of an indexed photo, or ``(None, why not)``: a file that is not the
    one indexed (or has no record of it) is never shown."""
    from pixsearch.indexer.errors import PhotoChangedError
    from pixsearch.indexer.fingerprint import Fingerprint
    from pixsearch.search.thumbnails import data_uri

    if not path or not fingerprint:
        return None, "not indexed"
    try:
        jpeg = cache.get(path, Fingerprint(str(fingerprint[0]), int(fingerprint[1])))
    except PhotoChangedError as error:
        return None, str(error)
    return (data_uri(jpeg), "") if jpeg is not None else (None, "cannot be decoded")


def write_show_html(
    result: EvalResult, path: str | Path, images_dir: str | Path, n: int, seed: int = 42
) -> Path:
    """A self-contained page: for ``n`` random queries the best photo (embedded thumbnail,
    score, hit or miss); the policy's disclaimer instead of photos for a blocked query.

    Photos are shown only when their file still holds the bytes that were indexed (else the
    cell says it changed), and under a restricting policy a restricted photo written for a
    query is not shown either."""
    from pixsearch.search.thumbnails import ThumbnailCache

    cache = ThumbnailCache(size=200)
    rows = []
    for q in pick_shown(result.per_query, n, seed):
        text = html.escape(q["query_text"])
        if q.get("blocked"):
            rows.append(
                f"<tr><td>{text}</td><td colspan='2'><p class='disclaimer'>"
                f"{html.escape(q.get('message') or '')}</p></td></tr>"
            )
            continue
        best = q.get("best")
        thumb, why = _shown_thumbnail(best, q.get("best_fingerprint"), cache)
        if q.get("own_hidden"):
            own, own_why = None, f"hidden by policy {result.metrics['policy']}"
        else:
            own, own_why = _shown_thumbnail(q.get("own_path"), q.get("own_fingerprint"), cache)
        hit = "hit" if q["rank"] == 1 else f"miss (the photo written for it ranks {q['rank']})"
        if not best:
            best_cell = "no photo returned"
        elif thumb:
            best_cell = (
                f"<img alt='' src='{thumb}'><br>{html.escape(Path(best).name)}<br>"
                f"score {q['best_score']:.3f}"
            )
        else:
            best_cell = (
                f"<p class='changed'>{html.escape(why)}</p>{html.escape(Path(best).name)}<br>"
                f"score {q['best_score']:.3f}"
            )
        own_cell = (
            f"<img alt='' src='{own}'><br>{html.escape(q['image'])}"
            if own
            else f"<p class='changed'>{html.escape(own_why)}</p>{html.escape(q['image'])}"
        )
        rows.append(
            f"<tr><td>{text}<br><small>{hit}</small></td><td>{best_cell}</td>"
            f"<td>{own_cell}</td></tr>"
        )
    m = result.metrics
    page = (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">"
        "<title>pixsearch eval: best photo per query</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{vertical-align:top;padding:6px;"
        "border-bottom:1px solid #ddd}.disclaimer{border-left:4px solid #d97706;"
        "padding:.5em}</style>"
        f"<h1>Best photo for {len(rows)} random queries</h1>"
        f"<p>R@1 {m['recall@1']}, R@5 {m['recall@5']}, R@10 {m['recall@10']} over "
        f"{m['n_queries']} queries and {m['n_images']} photos (policy {html.escape(m['policy'])},"
        f" {m['blocked']} queries blocked).</p>"
        "<table><tr><th>query</th><th>ranked first</th><th>photo written for it</th></tr>"
        + "".join(rows)
        + "</table></html>"
    )
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out


def read_scored_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """A CSV with header ``image,query_text,score`` (score in [0, 1])."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path} does not exist: give a CSV image,query_text,score")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or set(reader.fieldnames) < {"image", "query_text", "score"}:
            raise InvalidInputError(f"{path}: the header must be image,query_text,score")
        pairs = []
        for line, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
            except ValueError:
                raise InvalidInputError(f"{path} line {line}: score {row['score']!r}") from None
            if not 0.0 <= score <= 1.0 or math.isnan(score):
                raise InvalidInputError(f"{path} line {line}: score {score} outside [0, 1]")
            pairs.append((row["image"], row["query_text"], score))
    return pairs


def score_pairs_rmse(
    pairs_file: str | Path, images_dir: str | Path, *, bundle: Any = None
) -> dict[str, Any]:
    """RMSE (and ECE) of the bundle's relevance score on scored pairs.

    The score is the reranker's (``bundle.reranker``); a bundle without one scores by the
    space's cosine clipped to [0, 1] (and says so under ``scorer``).
    """
    from pixsearch.exporter.reranker import calibration
    from pixsearch.indexer.models import ModelBundle
    from pixsearch.indexer.preprocess import load_photo

    bundle = bundle or ModelBundle.load()
    pairs = read_scored_pairs(pairs_file)
    images = sorted({p[0] for p in pairs})
    missing = [name for name in images if not (Path(images_dir) / name).is_file()]
    if missing:
        raise InvalidInputError(
            f"{len(missing)} photos of the pairs are not in {images_dir}, e.g. {missing[0]}"
        )
    pixels = np.stack([load_photo(Path(images_dir) / name).pixels for name in images])
    features, _ = bundle.image_encoder.encode(pixels)
    row = {name: i for i, name in enumerate(images)}
    texts = sorted({p[1] for p in pairs})
    text_row = {t: i for i, t in enumerate(texts)}
    emb = bundle.text_encoder.encode(texts)
    img_v = bundle.space.image_vectors(features)
    txt_v = bundle.space.text_vectors(emb)
    ii = np.array([row[p[0]] for p in pairs])
    tt = np.array([text_row[p[1]] for p in pairs])
    sims = np.sum(img_v[ii] * txt_v[tt], axis=1)
    reranker = bundle.reranker
    if reranker is not None:
        predicted = np.concatenate(
            [
                reranker.score(emb[t], features[ii[tt == t]], sims[tt == t])
                for t in range(len(texts))
            ]
        )
        order = np.concatenate([np.flatnonzero(tt == t) for t in range(len(texts))])
        scores = np.empty(len(pairs))
        scores[order] = predicted
        scorer = "reranker"
    else:
        scores, scorer = np.clip(sims, 0, 1), "cosine clipped to [0, 1] (bundle has no reranker)"
    target = np.array([p[2] for p in pairs])
    ece, table = calibration(scores, target)
    return {
        "rmse": round(float(np.sqrt(np.mean((scores - target) ** 2))), 4),
        "ece": round(ece, 4),
        "reliability": table,
        "n_pairs": len(pairs),
        "scorer": scorer,
    }
