"""Russian and English queries (issue #15): R@1/5/10, query latency, bundle size.

    flock /work/heavy.lock python benchmarks/russian_queries.py ../shared/data [--bundle DIR]

Figures (all among the 900 validation photos of the joint space's split, seed 42):

- ``validation``: every English caption of those photos (3172 queries, the usual figures);
- ``en`` / ``ru``: the Russian test set ``tests/data/ru_queries.tsv`` (239 captions of
  validation photos and their hand translations);

for three ways of embedding the query: the English encoder alone (MiniLM: the bundle before
issue #15), the multilingual encoder for every query, and what ships: Cyrillic queries to the
multilingual encoder, the rest to MiniLM. Latency: ``encode`` + ``text_vectors`` of one query
at a time, warm, p50/p90 over 200 test-set queries per language, 1 thread. Photo features come
from the feature cache (``pixsearch train-space`` fills it; otherwise they are encoded once).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("PIXSEARCH_THREADS", "1")


def _latency(encode, space, texts: list[str]) -> dict[str, float]:
    for text in texts[:10]:
        space.text_vectors(encode([text]))
    took = []
    for text in texts:
        started = time.perf_counter()
        space.text_vectors(encode([text]))
        took.append(1000 * (time.perf_counter() - started))
    return {
        "p50_ms": round(float(np.percentile(took, 50)), 2),
        "p90_ms": round(float(np.percentile(took, 90)), 2),
    }


def _policy(bundle, queries: list[dict[str, str]]) -> None:
    """What the English-trained query classifier would say on multilingual embeddings (search
    does not ask it for a Cyrillic query: ``ModelBundle.query_classifier_for``)."""
    import re

    from pixsearch.indexer.models import needs_multilingual

    classifier = bundle.query_classifier
    if classifier is None:
        return
    listed = Path(__file__).resolve().parents[1] / "tests" / "data" / "policy_obfuscations.tsv"
    rows = []
    for line in listed.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if line.startswith("#") or len(parts) < 4 or parts[0] == "expect":
            continue
        text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), parts[3])
        if parts[1] == "ru" and needs_multilingual(text):
            rows.append((parts[0], text))

    def flagged(texts: list[str]) -> int:
        scores = classifier.scores(bundle.text_encoder.encode(texts))
        return int((scores >= classifier.threshold).sum())

    block = [t for kind, t in rows if kind == "block"]
    near = [t for kind, t in rows if kind == "pass"]
    print("query classifier (English-trained) on multilingual embeddings, if it were asked:")
    print(f"  Cyrillic queries to block (policy list): {flagged(block)}/{len(block)} flagged")
    print(f"  Cyrillic near misses (policy list): {flagged(near)}/{len(near)} flagged")
    ru = [q["ru"] for q in queries]
    en = [q["en"] for q in queries]
    print(f"  Russian test-set captions (none about children): {flagged(ru)}/{len(ru)} flagged")
    print(f"  the same captions in English: {flagged(en)}/{len(en)} flagged")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--bundle", type=Path, default=None)
    args = parser.parse_args()

    from pixsearch.exporter.multilingual_eval import figures, format_figures, read_queries
    from pixsearch.exporter.space_data import load_corpus, split_photos
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load(args.bundle)
    encoder = bundle.text_encoder
    if encoder.multilingual is None:
        raise SystemExit(
            "this bundle has no multilingual encoder: run pixsearch train-multilingual"
        )
    corpus = load_corpus(args.data, bundle)
    _train, val = split_photos(len(corpus.images), 900, 42)
    queries = read_queries()
    encoders = {
        "MiniLM alone (before)": lambda texts: encoder._encode_own(list(texts), 64),
        "multilingual for every query": lambda texts: encoder.multilingual.encode(list(texts)),
        "routed: Cyrillic -> multilingual (shipped)": lambda texts: encoder.encode(list(texts)),
    }
    result = figures(bundle.space, corpus, val, queries, encoders)
    print(format_figures(result))
    print()
    en = [q["en"] for q in queries[:200]]
    ru = [q["ru"] for q in queries[:200]]
    print("| query | encoder | p50 ms | p90 ms |")
    print("|---|---|---|---|")
    for label, texts, name in (
        ("English", en, "MiniLM alone (before)"),
        ("English", en, "routed: Cyrillic -> multilingual (shipped)"),
        ("Russian", ru, "routed: Cyrillic -> multilingual (shipped)"),
    ):
        lat = _latency(encoders[name], bundle.space, texts)
        print(f"| {label} | {name} | {lat['p50_ms']} | {lat['p90_ms']} |")
    print()
    _policy(bundle, queries)
    print()
    sizes = {name: (bundle.path / name).stat().st_size for name in bundle.files}
    total = sum(sizes.values())
    multi = sum(v for k, v in sizes.items() if "multilingual" in k)
    print(
        f"bundle: {total / 1e6:.1f} MB in {len(sizes)} files, of which the multilingual "
        f"encoder + tokenizer {multi / 1e6:.1f} MB (before: {(total - multi) / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
