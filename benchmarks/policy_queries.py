"""The query policy on the reworded-query list: counts before and after, and the added latency.

    flock /work/heavy.lock python benchmarks/policy_queries.py [--before REV] [--runs 2000]

On ``tests/data/policy_obfuscations.tsv`` (queries to block and near misses to pass, English and
Russian) prints how many are blocked / passed by

1. the detector *before* issue #14 (``--before``, a git revision: its ``indexer/policy`` is
   exported with ``git archive`` into a temporary folder and run in a separate process);
2. the lexicon after (``find_child_terms``: normalisation, reworded spellings);
3. the lexicon **or** the learned query classifier (``check_query`` under ``strict`` with the
   query's embedding, as search runs it).

Then the latency the learned detector adds to one query: ``QueryClassifier.scores`` on the
embedding search has already computed (p50 and p90 over ``--runs`` calls, after a warm-up),
next to the lexicon check and the text encoding of the same query for scale.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_policy_text import load_obfuscations  # noqa: E402

# Before issue #14: the commit before "policy: reworded queries are read at the cause".
DEFAULT_BEFORE = "f07ddd7"

_OLD_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pixsearch.indexer.policy import is_about_children
queries = json.load(sys.stdin)
print(json.dumps([is_about_children(q) for q in queries]))
"""


def old_detector(revision: str, queries: list[str]) -> list[bool]:
    """``is_about_children`` of ``revision``, run in a separate process from a git archive."""
    archive = subprocess.run(
        ["git", "archive", revision, "indexer", "db"], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder) / "pixsearch"
        package.mkdir()
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(package, filter="data")
        result = subprocess.run(
            [sys.executable, "-c", _OLD_RUNNER, folder],
            input=json.dumps(queries),
            capture_output=True,
            text=True,
            check=True,
            cwd=folder,
        )
    return json.loads(result.stdout)


def counts(expect: list[str], blocked: list[bool]) -> str:
    want = [e == "block" for e in expect]
    hit = sum(b for b, w in zip(blocked, want, strict=True) if w)
    kept = sum(not b for b, w in zip(blocked, want, strict=True) if not w)
    return f"blocked {hit}/{sum(want)}, passed {kept}/{len(want) - sum(want)}"


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"p50 {statistics.median(ordered) * 1e6:.1f} us, p90 {p90 * 1e6:.1f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git revision of 'before'")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    from pixsearch.indexer.models import ModelBundle
    from pixsearch.indexer.policy import check_query, find_child_terms, get_profile

    rows = load_obfuscations()
    expect = [r[0] for r in rows]
    queries = [r[3] for r in rows]
    langs = {"en": [i for i, r in enumerate(rows) if r[1] == "en"]}
    langs["ru"] = [i for i, r in enumerate(rows) if r[1] == "ru"]
    bundle = ModelBundle.load()
    classifier = bundle.query_classifier
    if classifier is None:
        raise SystemExit(
            "the bundle has no query classifier: pixsearch train-policy --only queries"
        )
    embeddings = bundle.text_encoder.encode(queries)
    strict = get_profile("strict")
    before = old_detector(args.before, queries)
    lexicon = [bool(find_child_terms(q)) for q in queries]
    # as search runs it: texts routed to the multilingual encoder are left to the lexicon
    both = [
        check_query(q, strict, embedding=e, classifier=bundle.query_classifier_for(q)).blocked
        for q, e in zip(queries, embeddings, strict=True)
    ]
    learned = [
        bundle.query_classifier_for(q) is not None and bool(s >= classifier.threshold)
        for q, s in zip(queries, classifier.scores(embeddings), strict=True)
    ]
    print(
        f"list: {len(rows)} queries ({expect.count('block')} to block, "
        f"{expect.count('pass')} near misses)"
    )
    for name, decisions in (
        (f"before ({args.before})", before),
        ("lexicon after", lexicon),
        ("learned alone", learned),
        ("lexicon + learned", both),
    ):
        by_lang = "; ".join(
            f"{lang}: {counts([expect[i] for i in idx], [decisions[i] for i in idx])}"
            for lang, idx in langs.items()
        )
        print(f"{name:>24}: {counts(expect, decisions)}  ({by_lang})")
    wrong = [(r[0], r[2], r[3]) for r, b in zip(rows, both, strict=True) if b != (r[0] == "block")]
    print(f"lexicon + learned, wrong: {wrong}")

    query = "two children playing football on a beach at sunset"
    embedding = bundle.text_encoder.encode([query])[0]
    for _ in range(50):
        classifier.scores(embedding[None])
    learned_times, lexicon_times, encode_times = [], [], []
    for _ in range(args.runs):
        start = time.perf_counter()
        classifier.scores(embedding[None])
        learned_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        find_child_terms(query)
        lexicon_times.append(time.perf_counter() - start)
    for _ in range(min(args.runs, 200)):
        start = time.perf_counter()
        bundle.text_encoder.encode([query])
        encode_times.append(time.perf_counter() - start)
    print(f"learned detector, one query (embedding reused): {percentiles(learned_times)}")
    print(f"lexicon check, same query: {percentiles(lexicon_times)}")
    print(f"text encoding, same query (paid by search anyway): {percentiles(encode_times)}")


if __name__ == "__main__":
    main()
