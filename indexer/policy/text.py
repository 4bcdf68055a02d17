"""Detect references to children (people under 16) in a query or a caption.

The same functions serve training's legal filter, indexing and querying. Recall comes first (a
legal requirement): every word whose ordinary meaning is a child is found, in English and in
Russian, whatever its case, accents, punctuation, spacing, zero-width characters, fullwidth
forms or Cyrillic/Greek look-alike letters; only listed idioms ("baby blue", "kid gloves") and
young animals ("baby elephant") pass. The rules are in ``docs/policy.md`` and the lexicons.

>>> find_child_terms("A little girl and her Kids' toys")
['girl', 'kids']
>>> is_about_children("kidney beans on a plate")
False
>>> is_about_children("ｋｉ\u200bｄｓ")  # fullwidth letters with a zero-width space
True
>>> find_child_terms("мальчик с ёлкой и детьми")
['мальчик', 'детьми']
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache, lru_cache

from pixsearch.indexer.policy import lexicon_en, lexicon_ru, variants
from pixsearch.indexer.policy.confusables import INVISIBLE_LETTERS, latin_lookalike, latin_table

__all__ = ["find_child_terms", "is_about_children", "normalize"]

# --- normalisation --------------------------------------------------------------------------

# Apostrophes are deleted ("child's" -> "childs"); every other non-alphanumeric character
# becomes a space. Only ASCII needs a table: non-ASCII punctuation is handled by _NON_WORD.
_APOSTROPHES = "'`\u00b4\u2018\u2019\u201b\u02bc\u02b9\u2032\uff07"
_ASCII_TABLE = {ord(c): " " for c in map(chr, range(128)) if not c.isalnum()}
_ASCII_TABLE.update({ord(c): None for c in _APOSTROPHES})
_ASCII_TABLE.update({i: None for i in [*range(32), 127] if not chr(i).isspace()})  # controls
_APOSTROPHE_TABLE = {ord(c): None for c in _APOSTROPHES}
_NON_WORD = re.compile(r"[\W_]+")

# Latin letters outside ASCII that look like ASCII ones (small capitals, IPA, dotless i).
_LATIN_LOOKALIKES = str.maketrans(
    "ıȷɑɡɩʏᴀʙᴄᴅᴇɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡᴢ",
    "ijagiyabcdeghijklmnoprstuvwz",
)
# Cyrillic and Greek letters that look like Latin ones, for words with at least one Latin
# letter ("kіd" with a Cyrillic "і") and for non-Russian Cyrillic words ("ѕоn").
_TO_LATIN = str.maketrans(
    "АаВвЕеКкМмНнОоРрСсТтУуХхЅѕІіЇїЈјԀԁԚԛԜԝҺһЬьпгиҮүӀӏΑαΒβγΕεΖΗηΙιΚκΜΝνΟοΡρΤτΥυΧχωϲϹϳ",
    "AaBbEeKkMmHhOoPpCcTtYyXxSsIiIiJjDdQqWwHhbbnruYyllAaBbyEeZHnIiKkMNvOoPpTtYuXxwcCj",
)
# Latin letters that look like Cyrillic ones, for Russian words with a Latin letter inside
# ("peбенок" with a Latin "p" and "e").
_TO_CYRILLIC = str.maketrans(
    "AaBbCcEeHhKkMmOoPpTtXxYyun",
    "АаВьСсЕеНнКкМмОоРрТтХхУуип",
)
_RUSSIAN_LETTERS = frozenset("абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ")
_LETTERS = re.compile(r"[^\W\d_]+")
_CYRILLIC = re.compile(r"[\u0400-\u052f]")
_LATIN = re.compile(r"[A-Za-z]")
# Greek, and Cyrillic letters that Russian does not use (after "ё" -> "е", "й" -> "и").
_NON_RUSSIAN = re.compile(r"[\u0370-\u03ff\u0400-\u040f\u0450-\u052f]")
# Three or more single letters in a row ("k i d s", "k.i.d", "c-h-i-l-d" after normalising).
_SPACED_LETTERS = re.compile(r"\b(?:[^\W\d_] ){2,}[^\W\d_]\b")


def _is_latin(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"


@cache
def _to_latin() -> dict[int, str]:
    """The hand-written Cyrillic/Greek map, completed with the TR39 data for those scripts."""
    table = {
        ord(char): latin
        for char, latin in latin_table().items()
        if _script(char) in ("CYRILLIC", "GREEK")
    }
    table.update({code: chr(latin) for code, latin in _TO_LATIN.items() if isinstance(latin, int)})
    return table


def _latin_word(match: re.Match[str]) -> str:
    word = match.group()
    if any(_is_latin(c) for c in word) or not set(word) <= _RUSSIAN_LETTERS:
        return word.translate(_to_latin())
    return word  # a Russian word: left for the Russian lexicon


def _cyrillic_word(match: re.Match[str]) -> str:
    word = match.group()
    if _CYRILLIC.search(word) and any(_is_latin(c) for c in word):
        return word.translate(_TO_CYRILLIC)
    return word


def _finish(text: str) -> str:
    """Casefold, drop apostrophes, turn the rest of the punctuation into single spaces."""
    text = _NON_WORD.sub(" ", text.casefold().translate(_APOSTROPHE_TABLE)).strip()
    return _join_spaced(text)


def _join_spaced(text: str) -> str:
    """Keep the text, add the joined words: "k i d s" -> "k i d s kids".

    A run may include a one-letter word before or after it ("a k i d s", "д е т и в"): the
    run is also read without its first and without its last letter.
    """
    runs = [run.replace(" ", "") for run in _SPACED_LETTERS.findall(text)]
    if not runs:
        return text
    return " ".join([text, *runs, *(r[1:] for r in runs), *(r[:-1] for r in runs)])


_DROPPED = frozenset({"Cf", "Mn", "Me", "Cc"})
_CLEAN_CACHE_LIMIT = 65536  # distinct characters remembered; rarer ones are looked up each time


class _CleanTable(dict[int, str | None]):
    """A ``str.translate`` table filled on first sight of each character.

    It drops format and control characters (zero-width spaces and joiners, soft hyphens, BOM;
    whitespace stays) and combining marks (accents; after decomposition also "ё" -> "е" and
    "й" -> "и"), maps Latin look-alikes to ASCII, and keeps every other character.
    """

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        if _is_invisible(char):
            value = None
        else:
            value = char.translate(_LATIN_LOOKALIKES)
            if not value.isascii() and value.isalpha() and _script(value) not in _KEPT_SCRIPTS:
                value = latin_lookalike(value) or value
        if len(self) < _CLEAN_CACHE_LIMIT:
            self[code] = value
        return value


def _is_invisible(char: str) -> bool:
    return char in INVISIBLE_LETTERS or (
        unicodedata.category(char) in _DROPPED and not char.isspace()
    )


def _script(char: str) -> str:
    return unicodedata.name(char, "").partition(" ")[0]


# Cyrillic and Greek letters are decided word by word (_latin_word); Latin ones are kept.
_KEPT_SCRIPTS = frozenset({"CYRILLIC", "GREEK", "LATIN"})

_CLEAN = _CleanTable()


class _InvisibleToSpace(dict[int, str]):
    """A ``str.translate`` table: format characters and invisible letters become spaces."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        invisible = char in INVISIBLE_LETTERS or unicodedata.category(char) in ("Cf", "Cc")
        value = " " if invisible and not char.isspace() else char
        if len(self) < _CLEAN_CACHE_LIMIT:
            self[code] = value
        return value


_INVISIBLE_TO_SPACE = _InvisibleToSpace()

# Symbols read as letters inside a word ("k!ds", "b@by", "ch|ld"), "@" and "$" also at its
# start ("$on"); not at its end ("kids!") nor "!" and "|" at its start ("!kids").
_LEET_SYMBOLS = re.compile(r"(?<=\w)[@$!|](?=\w)|(?<!\S)[@$](?=\w)")
_LEET_SYMBOL_LETTERS = {"@": "a", "$": "s", "!": "i", "|": "l"}


def _symbols_as_letters(text: str) -> str:
    if not any(c in text for c in "@$!|"):
        return text
    return _LEET_SYMBOLS.sub(lambda m: _LEET_SYMBOL_LETTERS[m.group()], text)


def _views(text: str) -> tuple[str, str]:
    """The normalised text as seen by the English and by the Russian lexicon."""
    text = _symbols_as_letters(text)
    if text.isascii():
        return _join_spaced(" ".join(text.lower().translate(_ASCII_TABLE).split())), ""
    # NFKC folds fullwidth and styled letters; NFD splits accents off to be dropped.
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text)).translate(_CLEAN)
    if not _CYRILLIC.search(text):  # Latin, maybe with Greek look-alikes
        return _finish(text.translate(_to_latin())), ""
    if not _LATIN.search(text) and not _NON_RUSSIAN.search(text):  # plain Russian
        plain = _finish(text)
        return plain, plain
    # Scripts mixed in the text: decide word by word.
    latin = _finish(_LETTERS.sub(_latin_word, text))
    cyrillic = _finish(_LETTERS.sub(_cyrillic_word, text))
    return latin, cyrillic


def normalize(text: str) -> str:
    """The text as the English lexicon sees it: one space between words, lower case, no accents.

    >>> normalize("  The CHILD'S 6-year-old   Baby-Sitter!")
    'the childs 6 year old baby sitter'
    >>> normalize("Ｋ\u200bｉｄ")
    'kid'
    """
    return _views(text)[0]


# --- matching -------------------------------------------------------------------------------

_WORDS = lexicon_en.WORDS
_SUFFIXES = lexicon_en.SUFFIXES
_ANIMALS = lexicon_en.ANIMALS
_ANIMAL_MODIFIERS = lexicon_en.ANIMAL_MODIFIERS
_PHRASE_RE = lexicon_en.PHRASE_RE
_PHRASE_TRIGGERS = lexicon_en.PHRASE_TRIGGERS
_RU_RE = lexicon_ru.RU_RE
_RU_TRANSLIT_RE = lexicon_ru.RU_TRANSLIT_RE


def _idiom_index() -> dict[str, tuple[tuple[int, tuple[str, ...]], ...]]:
    """For each term, the idioms containing it and the term's position in each."""
    index: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
    for idiom in lexicon_en.IDIOMS:
        for offset, token in enumerate(idiom):
            if token in _WORDS:
                index.setdefault(token, []).append((offset, idiom))
    return {term: tuple(entries) for term, entries in index.items()}


_IDIOMS = _idiom_index()


def _is_term(tokens: list[str], i: int) -> bool:
    token = tokens[i]
    if token not in _WORDS:
        return token.endswith(_SUFFIXES)
    for offset, idiom in _IDIOMS.get(token, ()):
        start = i - offset
        if start >= 0 and tuple(tokens[start : start + len(idiom)]) == idiom:
            return False
    return not (token in _ANIMAL_MODIFIERS and i + 1 < len(tokens) and tokens[i + 1] in _ANIMALS)


def find_child_terms(text: str) -> list[str]:
    """The child terms found in ``text``, normalised, each once, in order of appearance.

    English terms come first, then Russian ones. A reworded spelling is reported as the
    lexicon word it stands for.

    >>> find_child_terms("Two KIDS and a 6-year-old on a baby-blue slide")
    ['kids', '6 year old']
    >>> find_child_terms("Ребёнок и дети")
    ['ребенок', 'дети']
    >>> find_child_terms("a young man in kid gloves")
    []
    >>> find_child_terms("k1ds and a litle gril, rebenok")
    ['kids', 'girl', 'ребенок']
    """
    terms = _terms(text)
    if not text.isascii():  # invisible characters also read as spaces: "kids\u200bplaying"
        spaced = text.translate(_INVISIBLE_TO_SPACE)
        if spaced != text:
            terms = list(dict.fromkeys([*terms, *_terms(spaced)]))
    return terms


def _canonical(token: str) -> str:
    """``token``, or the lexicon word it is a reworded spelling of (leetspeak, one edit...)."""
    if token in _WORDS or token.endswith(_SUFFIXES):
        return token
    return variants.english_term(token, _WORDS) or token


@lru_cache(maxsize=65536)
def _transliterated_term(token: str) -> str | None:
    """The Russian term that a Latin-script word spells (``rebenok`` -> ``ребенок``)."""
    if not token.isascii():
        return None
    for candidate in variants.translit_candidates(token):
        match = _RU_TRANSLIT_RE.fullmatch(candidate)
        if match:
            return match.group()
    return None


def _terms(text: str) -> list[str]:
    latin, cyrillic = _views(text)
    found: list[tuple[int, str]] = []
    if latin:
        written = latin.split()
        tokens = [_canonical(token) for token in written]
        position = 0
        for i, token in enumerate(tokens):
            if _is_term(tokens, i):
                found.append((position, token))
            position += len(written[i]) + 1
        if not _PHRASE_TRIGGERS.isdisjoint(tokens) or any(c.isdigit() for c in latin):
            found.extend((m.start(), m.group()) for m in _PHRASE_RE.finditer(latin))
        found.sort()
        # Latin-script Russian ("rebenok", "malchik"), read back in Cyrillic
        found.extend((0, term) for term in map(_transliterated_term, written) if term)
    if cyrillic:
        found.extend((0, m.group()) for m in _RU_RE.finditer(cyrillic))
        for token in cyrillic.split():
            for candidate in variants.russian_candidates(token):  # "реб3нок"
                if _RU_RE.fullmatch(candidate):
                    found.append((0, candidate))
                    break
    return list(dict.fromkeys(term for _, term in found))


def is_about_children(text: str) -> bool:
    """Whether ``text`` refers to children (people under 16).

    >>> is_about_children("A BOY, jumping!"), is_about_children("Boyle street at night")
    (True, False)
    >>> is_about_children("дочерняя компания"), is_about_children("сынок")
    (False, True)
    """
    return bool(find_child_terms(text))
