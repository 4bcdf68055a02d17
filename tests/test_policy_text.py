"""The child-reference detector: English and Russian positives, near misses, evasions."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pixsearch.indexer.policy import find_child_terms, is_about_children, normalize

# Each: (text, a term that must be among the terms found).
POSITIVES_EN: list[tuple[str, str]] = [
    ("child", "child"),
    ("a child's drawing", "childs"),
    ("Children playing", "children"),
    ("the children's corner", "childrens"),
    ("kid on a bike", "kid"),
    ("kids", "kids"),
    ("the kids' room", "kids"),
    ("kiddo", "kiddo"),
    ("boy", "boy"),
    ("a young boy", "boy"),
    ("little boy", "boy"),
    ("boys' football", "boys"),
    ("a girl", "girl"),
    ("young girl", "girl"),
    ("two girls", "girls"),
    ("baby", "baby"),
    ("babies in a crib", "babies"),
    ("baby's first bath", "babys"),
    ("toddler", "toddler"),
    ("toddlers", "toddlers"),
    ("infant", "infant"),
    ("newborn", "newborn"),
    ("new-born lamb and mother", "new born"),
    ("teen", "teen"),
    ("teenager", "teenager"),
    ("teenage skaters", "teenage"),
    ("pre-teen boys", "pre teen"),
    ("preteen", "preteen"),
    ("tweens at the mall", "tweens"),
    ("adolescent", "adolescent"),
    ("youngster", "youngster"),
    ("youth on a skateboard", "youth"),
    ("juvenile delinquent", "juvenile"),
    ("minors", "minors"),
    ("underage drinking", "underage"),
    ("under-age", "under age"),
    ("schoolboy", "schoolboy"),
    ("schoolgirl", "schoolgirl"),
    ("schoolkids", "schoolkids"),
    ("schoolchildren", "schoolchildren"),
    ("a preschooler", "preschooler"),
    ("pre-school class", "pre school"),
    ("highschoolers", "highschoolers"),
    ("kindergartner", "kindergartner"),
    ("kindergarten", "kindergarten"),
    ("son", "son"),
    ("father and son", "son"),
    ("daughter", "daughter"),
    ("grandchild", "grandchild"),
    ("grandchildren", "grandchildren"),
    ("granddaughter", "granddaughter"),
    ("grand-daughter", "daughter"),
    ("grandson", "grandson"),
    ("stepson", "stepson"),
    ("stepdaughter", "stepdaughter"),
    ("godchild", "godchild"),
    ("grandkids", "grandkids"),
    ("babysitter", "babysitter"),
    ("baby-sitter", "baby"),
    ("babysitting", "babysitting"),
    ("tomboy", "tomboy"),
    ("paperboy", "paperboy"),
    ("tots", "tots"),
    ("little ones", "little ones"),
    ("6-year-old", "6 year old"),
    ("a 6 year old", "6 year old"),
    ("ten years old", "ten years old"),
    ("a fifteen-year-old", "fifteen year old"),
    ("8yo", "8yo"),
    ("3 month old", "3 month old"),
    ("18-month-old", "18 month old"),
    ("aged 10", "aged 10"),
    ("ages 3-5", "ages 3"),
    ("under 12s", "under 12s"),
    ("u12 football team", "u12"),
    ("5th graders", "5th graders"),
    ("school-aged", "school aged"),
    ("little league game", "little league"),
    ("cub scouts", "cub scouts"),
    ("girl scouts selling cookies", "girl"),
    ("boy scout", "boy"),
    ("childern", "childern"),
    ("kid-sized chair", "kid"),
    ("a call girl", "girl"),
    ("youth softball game", "youth"),
    ("a baby with baby blue eyes", "baby"),
    ("oh boy, a boy on a bike", "boy"),
    ("jailbait", "jailbait"),
]

POSITIVES_RU: list[tuple[str, str]] = [
    ("ребёнок", "ребенок"),
    ("ребенок", "ребенок"),
    ("у ребёнка", "ребенка"),
    ("с ребенком", "ребенком"),
    ("о ребёночке", "ребеночке"),
    ("дети", "дети"),
    ("детей", "детеи"),
    ("детям", "детям"),
    ("с детьми", "детьми"),
    ("о детях", "детях"),
    ("детский сад", "детскии"),
    ("детская площадка", "детская"),
    ("детство", "детство"),
    ("детвора", "детвора"),
    ("детишки", "детишки"),
    ("детки", "детки"),
    ("мальчик", "мальчик"),
    ("мальчика", "мальчика"),
    ("мальчики", "мальчики"),
    ("мальчиков", "мальчиков"),
    ("мальчишка", "мальчишка"),
    ("мальчуган", "мальчуган"),
    ("девочка", "девочка"),
    ("девочки", "девочки"),
    ("девочек", "девочек"),
    ("девочкой", "девочкои"),
    ("девчонка", "девчонка"),
    ("малыш", "малыш"),
    ("малыши", "малыши"),
    ("малышей", "малышеи"),
    ("малышка", "малышка"),
    ("о малыше", "малыше"),
    ("подросток", "подросток"),
    ("подростки", "подростки"),
    ("подростков", "подростков"),
    ("школьник", "школьник"),
    ("школьница", "школьница"),
    ("школьники", "школьники"),
    ("дошкольник", "дошкольник"),
    ("первоклассник", "первоклассник"),
    ("сын", "сын"),
    ("сына", "сына"),
    ("сыновья", "сыновья"),
    ("сынок", "сынок"),
    ("сынишка", "сынишка"),
    ("дочь", "дочь"),
    ("дочери", "дочери"),
    ("дочерей", "дочереи"),
    ("дочка", "дочка"),
    ("доченька", "доченька"),
    ("младенец", "младенец"),
    ("младенцы", "младенцы"),
    ("младенцев", "младенцев"),
    ("карапуз", "карапуз"),
    ("карапузы", "карапузы"),
    ("ребятишки", "ребятишки"),
    ("ребята", "ребята"),
    ("внук", "внук"),
    ("внучка", "внучка"),
    ("пасынок", "пасынок"),
    ("новорождённый", "новорожденныи"),
    ("грудничок", "грудничок"),
    ("тинейджер", "тинеиджер"),
    ("пацаны", "пацаны"),
    ("несовершеннолетние", "несовершеннолетние"),
    ("малолетка", "малолетка"),
    ("годовалый", "годовалыи"),
    ("девочки-подростки", "подростки"),
]

NEGATIVES_EN: list[str] = [
    "kidney beans",
    "goatee",
    "Boyle street",
    "kidding",
    "just kidding around",
    "sonar",
    "Sonny",
    "girlfriend",
    "boyfriend",
    "young man",
    "young woman",
    "young lady",
    "young adults",
    "young people at a party",
    "teenage mutant ninja turtles",
    "kid gloves",
    "kid goat",
    "baby blue",
    "baby pink dress",
    "baby back ribs",
    "baby carrots",
    "baby shower",
    "baby boomers",
    "baby's breath bouquet",
    "baby elephant",
    "baby ducks and their mother",
    "juvenile eagle",
    "a 2-year-old dog",
    "Babylon",
    "babe",
    "cowboy",
    "cowgirl",
    "showgirl",
    "busboy",
    "playboy",
    "oh boy",
    "boy band",
    "infantry",
    "canteen",
    "between the trees",
    "a 30-year-old man",
    "sixteen year old",
    "age 20",
    "a minor injury",
    "in A minor",
    "minor league pitcher",
    "child's play",
    "child-proof lid",
    "childish",
    "youth hostel",
    "fountain of youth",
    "tater tots",
    "kiddie pool",
    "son of a gun",
    "Jackson",
    "Peterson",
    "person",
    "student",
    "a school building",
    "skid marks",
    "a dog on the beach",
    "",
]

NEGATIVES_RU: list[str] = [
    "сыр",
    "сырок",
    "дочерняя компания",
    "загорела дочерна",
    "детектив",
    "детали",
    "детонатор",
    "деть некуда",
    "детище",
    "детёныш жирафа",
    "малышева",
    "Елена Малышева",
    "Малышевой",
    "мальчишник",
    "подрост в лесу",
    "девушка",
    "юноша",
    "студент",
    "школьный автобус",
    "пятилетний план",
    "внутри",
    "тот самый",
    "собака на пляже",
]


@pytest.mark.parametrize(("text", "term"), POSITIVES_EN + POSITIVES_RU)
def test_positive_is_found(text: str, term: str) -> None:
    terms = find_child_terms(text)
    assert term in terms, terms
    assert is_about_children(text)


@pytest.mark.parametrize("text", NEGATIVES_EN + NEGATIVES_RU)
def test_near_miss_passes(text: str) -> None:
    assert find_child_terms(text) == []
    assert not is_about_children(text)


@pytest.mark.parametrize(
    "text",
    [
        "KIDS",
        "KiDs",
        "  kids  ",
        "kids!!!",
        "...kids?",
        "k i d s",
        "k.i.d.s",
        "c-h-i-l-d",
        "k\u200bi\u200cd\u200ds",  # zero-width space, non-joiner, joiner
        "ki\u00add",  # soft hyphen
        "\ufeffkid\u2060",  # byte-order mark, word joiner
        "ｋｉｄｓ",  # fullwidth
        "𝐤𝐢𝐝𝐬",  # mathematical bold
        "kі\u0501",  # Cyrillic і and ԁ
        "сhild",  # Cyrillic с
        "bоy",  # Cyrillic о
        "ΒΟΥ",  # Greek capitals
        "bαby",  # Greek alpha
        "ѕоn",  # all Cyrillic, with a non-Russian ѕ
        "ᴋɪᴅ",  # small capitals
        "chíld",
        "tòddler",
        "BABY\tSITTER",
        "little\n\n girl",
        "child’s",  # typographic apostrophe
        "peбенок",  # Latin p and e inside a Russian word
        "PEБEHOK",  # Latin capitals inside a Russian word
        "ребе\u0301нок",  # stress mark
        "Р Е Б Ё Н О К",
        "ДЕТИ",
    ],
)
def test_evasions_are_found(text: str) -> None:
    assert is_about_children(text), normalize(text)


def test_terms_are_normalised_unique_and_ordered() -> None:
    assert find_child_terms("Kids, KIDS and a Girl; kids again") == ["kids", "girl"]
    assert find_child_terms("Ребёнок") == ["ребенок"]
    assert find_child_terms("a 6-year-old") == ["6 year old"]


def test_idiom_passes_only_itself() -> None:
    assert find_child_terms("baby blue") == []
    assert find_child_terms("a baby in baby blue") == ["baby"]
    assert find_child_terms("kid gloves for the kid") == ["kid"]


def test_normalize() -> None:
    expected = "the childs 6 year old baby sitter"
    assert normalize("  The CHILD'S 6-year-old   Baby-Sitter!") == expected
    assert normalize("ｋ\u200bі\u0501") == "kid"


# --- properties --------------------------------------------------------------------------------

_POSITIVE_TEXTS = [text for text, _ in POSITIVES_EN + POSITIVES_RU]
_INVISIBLE = st.sampled_from(["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])


@settings(max_examples=300, deadline=None)
@given(
    text=st.sampled_from(_POSITIVE_TEXTS),
    data=st.data(),
)
def test_invisible_characters_never_unblock(text: str, data: st.DataObject) -> None:
    chars = list(text)
    for _ in range(data.draw(st.integers(1, 6))):
        chars.insert(data.draw(st.integers(0, len(chars))), data.draw(_INVISIBLE))
    assert is_about_children("".join(chars))


@settings(max_examples=300, deadline=None)
@given(text=st.sampled_from(_POSITIVE_TEXTS), flips=st.lists(st.booleans(), min_size=80))
def test_changing_case_never_unblocks(text: str, flips: list[bool]) -> None:
    changed = "".join(
        c.upper() if flip else c.lower() for c, flip in zip(text, flips, strict=False)
    )
    assert is_about_children(changed + text[len(flips) :])


@settings(max_examples=200, deadline=None)
@given(
    text=st.sampled_from(_POSITIVE_TEXTS),
    space=st.sampled_from([" ", "  ", "\t", "\n", " \u00a0", "\u3000"]),
    edge=st.sampled_from(["", " ", "!", "...", '"', "("]),
)
def test_spacing_and_punctuation_never_unblock(text: str, space: str, edge: str) -> None:
    assert is_about_children(edge + text.replace(" ", space) + edge[::-1])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_handled(text: str) -> None:
    terms = find_child_terms(text)
    assert is_about_children(text) == bool(terms)
    assert len(terms) == len(set(terms))


def test_typical_query_is_fast() -> None:
    queries = ["two dogs playing in the snow", "a man riding a bike", "собака бежит по пляжу"]
    runs = 2000
    start = time.perf_counter()
    for _ in range(runs):
        for query in queries:
            is_about_children(query)
    per_call = (time.perf_counter() - start) / (runs * len(queries))
    assert per_call < 500e-6  # a loose bound for slow CI; typical is ~10-30 µs


# --- reworded queries (issue #14) ----------------------------------------------------------------

OBFUSCATIONS = Path(__file__).parent / "data" / "policy_obfuscations.tsv"
_ESCAPE = re.compile(r"\\U([0-9a-fA-F]{8})|\\u([0-9a-fA-F]{4})")


def load_obfuscations() -> list[tuple[str, str, str, str]]:
    """``(expect, lang, kind, query)`` rows of the list, escapes decoded."""
    rows = []
    with OBFUSCATIONS.open(encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if not line.startswith("#")]
    for line in lines[1:]:
        expect, lang, kind, query = line.split("\t")
        query = _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), query)
        rows.append((expect, lang, kind, query))
    return rows


def test_obfuscation_list_is_big_enough() -> None:
    rows = load_obfuscations()
    blocked = [r for r in rows if r[0] == "block"]
    passed = [r for r in rows if r[0] == "pass"]
    assert len(blocked) >= 150 and len(passed) >= 100
    assert {r[1] for r in blocked} == {r[1] for r in passed} == {"en", "ru"}
    assert len({r[3] for r in rows}) == len(rows)  # no duplicates


@pytest.mark.parametrize(
    ("expect", "kind", "query"),
    [(e, k, q) for e, _, k, q in load_obfuscations() if k != "paraphrase"],
)
def test_lexicon_reads_reworded_queries(expect: str, kind: str, query: str) -> None:
    """Every reworded spelling in the list is read; the near misses pass.

    Paraphrases without any lexicon word are left to the learned detector
    (``tests/test_policy_profiles.py``).
    """
    assert is_about_children(query) == (expect == "block"), (kind, find_child_terms(query))


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("\u13e6\u13a5ds", "kids"),  # Cherokee
        ("b\u0585ys", "boys"),  # Armenian o
        ("t\u2c9fddler", "toddler"),  # Coptic o
        ("\u2c95id", "kid"),  # Coptic kapa, via Latin kra
        ("ki\u3164ds", "kids"),  # Hangul filler
        ("kids\u200bplaying", "kids"),  # a zero-width space between two words
        ("ch1ld", "child"),
        ("kids2024", "kids"),
        ("boyz", "boys"),
        ("kiiiids", "kids"),
        ("a litle gril", "girl"),
        ("todderz", "toddlers"),
        ("malchik", "малчик"),
        ("detskiy", "детскии"),
        ("rebeno4ek", "ребеночек"),
        ("реб3нок", "ребенок"),
        ("д е т и в парке", "дети"),
    ],
)
def test_reworded_spelling_reports_the_lexicon_word(text: str, term: str) -> None:
    assert term in find_child_terms(text)


@pytest.mark.parametrize(
    "text",
    [
        "whild",  # one edit from "child", but on the first letter (a typo of "while")
        "ladys",  # one edit from "lads", but "lady" is the likelier reading
        "chili",  # an English word one edit from "child"
        "gills",  # an English word one edit from "girls"
        "laughter",  # an English word one edit from "daughter"
        "sooon",  # stretched "soon", not "son"
        "tene",  # 4-letter words take no substitution or deletion
        "devushka",  # Latin-script Russian for a young woman
        "b2b",
    ],
)
def test_one_edit_and_leet_keep_near_misses(text: str) -> None:
    assert find_child_terms(text) == []


# --- the customer's captions -------------------------------------------------------------------


@pytest.mark.data
def test_flickr_captions_with_plain_child_words_are_all_flagged(shared_data) -> None:
    path = shared_data / "flickr8k" / "captions.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        captions = [row["caption"] for row in csv.DictReader(handle, delimiter="\t")]
    plain = {"boy", "boys", "girl", "girls", "child", "children", "kid", "kids", "toddler"}
    with_plain = [c for c in captions if plain & set(normalize(c).split())]
    missed = [c for c in with_plain if not is_about_children(c)]
    assert with_plain and missed == []
    share = sum(map(is_about_children, captions)) / len(captions)
    assert 0.2 < share < 0.4, share
