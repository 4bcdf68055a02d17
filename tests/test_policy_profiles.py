"""Policy profiles: strict blocks child queries with the disclaimer, none lets them run."""

from __future__ import annotations

import dataclasses

import pytest

from pixsearch.db.environment import reload_environment
from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.policy import (
    DEFAULT_DISCLAIMER,
    DEFAULT_PROFILE,
    DISCLAIMER_ENV,
    PROFILES,
    PolicyDecision,
    PolicyProfile,
    check_query,
    default_disclaimer,
    get_profile,
)
from pixsearch.search.exit_codes import exit_code_for


@pytest.fixture(autouse=True)
def _no_disclaimer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISCLAIMER_ENV, raising=False)
    reload_environment()


def test_builtin_profiles() -> None:
    assert DEFAULT_PROFILE == "strict"
    assert {"strict", "none"} <= set(PROFILES)
    strict, none = get_profile("strict"), get_profile("none")
    assert strict.blocks_child_queries and strict.excludes_restricted_photos
    assert not none.blocks_child_queries and not none.excludes_restricted_photos
    assert strict.disclaimer == DEFAULT_DISCLAIMER
    assert DEFAULT_DISCLAIMER == "This content is unavailable in your country due to local law"
    assert get_profile() == strict
    assert get_profile("  STRICT ") == strict


def test_profiles_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("strict").blocks_child_queries = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        check_query("kids", get_profile()).blocked = False  # type: ignore[misc]


@pytest.mark.parametrize("query", ["two kids on a swing", "Маленький МАЛЬЧИК", "a 6-year-old"])
def test_strict_blocks_child_query_with_disclaimer(query: str) -> None:
    decision = check_query(query, get_profile("strict"))
    assert decision.blocked
    assert decision.message == DEFAULT_DISCLAIMER
    assert decision.terms


@pytest.mark.parametrize("query", ["a dog on the beach", "kidney beans", "baby blue car"])
def test_strict_lets_other_queries_run(query: str) -> None:
    assert check_query(query, get_profile("strict")) == PolicyDecision(False, None, [])


def test_none_lets_child_queries_run_and_reports_terms() -> None:
    decision = check_query("two kids on a swing", get_profile("none"))
    assert decision == PolicyDecision(blocked=False, message=None, terms=["kids"])


@pytest.mark.parametrize("name", ["lenient", "", "strictest"])
def test_unknown_profile_lists_valid_names(name: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        get_profile(name)
    message = str(caught.value)
    assert repr(name) in message
    for valid in PROFILES:
        assert valid in message
    assert exit_code_for(caught.value) == 2


def test_custom_disclaimer() -> None:
    text = "Nicht verfügbar in Ihrem Land"
    custom = PolicyProfile("strict-de", True, True, text)
    assert check_query("kids", custom).message == text
    assert check_query("kids", get_profile("strict", disclaimer=text)).message == text


def test_env_overrides_default_disclaimer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISCLAIMER_ENV, "  Not available here  ")
    reload_environment()
    assert default_disclaimer() == "Not available here"
    assert get_profile("strict").disclaimer == "Not available here"
    # also for the built-in definitions used directly
    assert check_query("kids", PROFILES["strict"]).message == "Not available here"
    # a profile built with its own text keeps it
    assert check_query("kids", PolicyProfile("x", True, True, "Own text")).message == "Own text"


def test_blank_env_keeps_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISCLAIMER_ENV, "   ")
    reload_environment()
    assert default_disclaimer() == DEFAULT_DISCLAIMER
    assert check_query("kids", get_profile()).message == DEFAULT_DISCLAIMER


# --- the learned second opinion (issue #14) ----------------------------------------------------

# Where the shipped detector is wrong on the list (strict xfails: a detector that gets one
# right makes the test ask for it to leave the set). Paraphrases neither the lexicon nor the
# learned detector blocks, and a near miss the learned detector flags (its threshold allows
# 0.3% of validation texts not about children to be flagged; docs/policy.md).
KNOWN_MISSES = {"small humans building a sandcastle", "young students raising their hands"}
KNOWN_FALSE_BLOCKS = {"a minor injury on the knee"}


@pytest.fixture(scope="module")
def bundle():
    from pixsearch.indexer.models import ModelBundle

    return ModelBundle.load()


@pytest.fixture(scope="module")
def list_embeddings(bundle) -> dict[str, object]:
    from test_policy_text import load_obfuscations

    queries = [row[3] for row in load_obfuscations()]
    return dict(zip(queries, bundle.text_encoder.encode(queries), strict=True))


def _list_params() -> list[object]:
    from test_policy_text import load_obfuscations

    return [
        pytest.param(
            expect,
            query,
            id=f"{expect}-{kind}-{query}",
            marks=[pytest.mark.xfail(strict=True, reason="known error")]
            if query in KNOWN_MISSES | KNOWN_FALSE_BLOCKS
            else [],
        )
        for expect, _, kind, query in load_obfuscations()
    ]


@pytest.mark.parametrize(("expect", "query"), _list_params())
def test_lexicon_or_learned_detector_decides_the_list(
    expect: str, query: str, bundle, list_embeddings
) -> None:
    """Every query of tests/data/policy_obfuscations.tsv is blocked, every near miss runs."""
    decision = check_query(
        query,
        get_profile("strict"),
        embedding=list_embeddings[query],
        classifier=bundle.query_classifier_for(query),
    )
    assert decision.blocked == (expect == "block"), decision


def test_learned_detector_blocks_what_the_lexicon_misses(bundle) -> None:
    query = "little people on a carousel"
    embedding = bundle.text_encoder.encode([query])[0]
    assert check_query(query, get_profile("strict")) == PolicyDecision(False, None, [])
    decision = check_query(
        query, get_profile("strict"), embedding=embedding, classifier=bundle.query_classifier
    )
    assert decision.blocked and decision.terms == [] and decision.message == DEFAULT_DISCLAIMER
    assert decision.learned_score is not None
    assert decision.learned_score >= bundle.query_classifier.threshold
    # under "none" the classifier is not asked
    free = check_query(
        query, get_profile("none"), embedding=embedding, classifier=bundle.query_classifier
    )
    assert not free.blocked and free.learned_score is None


def test_learned_detector_is_not_asked_when_the_lexicon_blocks(bundle) -> None:
    embedding = bundle.text_encoder.encode(["two kids"])[0]
    decision = check_query(
        "two kids", get_profile("strict"), embedding=embedding, classifier=bundle.query_classifier
    )
    assert decision.blocked and decision.terms == ["kids"] and decision.learned_score is None
