"""Measuring a joint space: text -> image ranks, R@K, and ranks after reranking the top n.

>>> import numpy as np
>>> ranks = retrieval_ranks(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32),
...                         np.array([0, 1, 2]))
>>> ranks.tolist(), recall_table(ranks)["R@1"]
([1.0, 1.0, 1.0], 100.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pixsearch.exporter.space_data import Bridge, Corpus
    from pixsearch.exporter.space_train import JointModel


def retrieval_ranks(
    image_vectors: np.ndarray, query_vectors: np.ndarray, owners: np.ndarray
) -> np.ndarray:
    """1-based rank of each query's own photo (ties counted pessimistically halfway)."""
    scores = query_vectors @ image_vectors.T
    own = scores[np.arange(len(owners)), owners][:, None]
    greater = (scores > own).sum(axis=1)
    tied = (scores == own).sum(axis=1) - 1
    return (greater + 1 + tied / 2.0).astype(np.float64)


def recall_table(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent and the median rank."""
    return {
        "R@1": round(100.0 * float(np.mean(ranks <= 1)), 2),
        "R@5": round(100.0 * float(np.mean(ranks <= 5)), 2),
        "R@10": round(100.0 * float(np.mean(ranks <= 10)), 2),
        "median_rank": float(np.median(ranks)),
    }


def val_queries(corpus: Corpus, photos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(caption rows, owner position within photos)`` of the captions of ``photos``."""
    position = {int(p): i for i, p in enumerate(np.asarray(photos).tolist())}
    rows = np.array(
        [c for c, o in enumerate(corpus.caption_image.tolist()) if o in position], dtype=np.int64
    )
    owners = np.array([position[int(corpus.caption_image[c])] for c in rows], dtype=np.int64)
    return rows, owners


def evaluate(
    model: Any, corpus: Corpus, photos: np.ndarray, *, mix: float | None = None
) -> dict[str, float]:
    """Text -> image R@1/5/10 and median rank among ``photos`` for their own captions."""
    rows, owners = val_queries(corpus, photos)
    if mix is None:
        img = model.image_vectors(corpus.features[photos])
        txt = model.text_vectors(corpus.text_features[rows])
    else:
        img = model.image_vectors(corpus.features[photos], mix=mix)
        txt = model.text_vectors(corpus.text_features[rows], mix=mix)
    return recall_table(retrieval_ranks(img, txt, owners))


class BridgeSpace:
    """The label bridge alone, with the same helpers as ``JointModel`` (the baseline row)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def image_vectors(self, features: np.ndarray, mix: float | None = None) -> np.ndarray:
        return self.bridge.vectors(features)

    def text_vectors(self, embeddings: np.ndarray, mix: float | None = None) -> np.ndarray:
        return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def rerank_ranks(
    model: JointModel, reranker: Any, corpus: Corpus, photos: np.ndarray, top_n: int
) -> np.ndarray:
    """Ranks of each validation caption's own photo after reranking the top ``top_n``."""
    rows, owners = val_queries(corpus, photos)
    img = model.image_vectors(corpus.features[photos])
    feats = corpus.features[photos]
    ranks = np.zeros(len(rows))
    for start in range(0, len(rows), 1024):
        r, o = rows[start : start + 1024], owners[start : start + 1024]
        s = model.text_vectors(corpus.text_features[r]) @ img.T
        base = retrieval_ranks(img, model.text_vectors(corpus.text_features[r]), o)
        cand = np.argsort(-s, axis=1, kind="stable")[:, :top_n]
        q_rows = np.repeat(np.arange(len(r)), cand.shape[1])
        scores = reranker.score(
            corpus.text_features[r][q_rows],
            feats[cand.ravel()],
            s[q_rows, cand.ravel()],
        ).reshape(cand.shape)
        for q in range(len(r)):
            hit = np.flatnonzero(cand[q] == o[q])
            if hit.size:
                own = scores[q, hit[0]]
                ranks[start + q] = (
                    1 + np.sum(scores[q] > own) + 0.5 * (np.sum(scores[q] == own) - 1)
                )
            else:
                ranks[start + q] = base[q]
    return ranks
