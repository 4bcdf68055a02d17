"""Reworded spellings of a word read back as the lexicon word they stand for.

:mod:`pixsearch.indexer.policy.text` calls these on each word that is not a term as written:

- leetspeak and digits: ``k1ds``, ``ch1ld``, ``b0ys`` (digits read as the letters they imitate),
  ``kids123``, ``2kids`` (digits around a word), ``girlz``/``boyz`` (a ``z`` plural), and the
  same in Russian (``реб3нок``);
- stretched letters: ``kiiids``, ``baaaby``;
- one edit on longer lexicon words (``chlid``, ``childrn``, ``gril``, ``todlers``): one
  insertion, deletion, substitution or swap of two neighbours for words of 5 letters or more,
  an insertion or a swap for 4-letter words, nothing for shorter ones, never on the first
  letter (``whild`` is a typo of "while", not "child") -- and only when the word
  is not itself an English word (the ``pyspellchecker`` English word list, loaded on the first
  near match), so that ``chili``, ``chill``, ``gills``, ``miners``, ``rabies`` or ``laughter``
  pass;
- Latin-script Russian (``rebenok``, ``deti``, ``malchik``, ``devochka``) transliterated back to
  Cyrillic for the Russian lexicon.

>>> [english_term(word, {"kids", "child"}) for word in ("k1ds", "chlid", "chili")]
['kids', 'child', None]
>>> to_cyrillic("rebyonok malchik shkolnitsa")
'ребенок малчик школнитса'
"""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Callable, Collection
from functools import cache, lru_cache
from importlib import resources

__all__ = [
    "english_term",
    "english_word_frequencies",
    "is_english_word",
    "russian_candidates",
    "to_cyrillic",
    "translit_candidates",
]

# Digits and the Latin letters they imitate (several when it is ambiguous: 1 = i or l).
_LEET_EN: dict[str, tuple[str, ...]] = {
    "0": ("o",),
    "1": ("i", "l"),
    "2": ("z",),
    "3": ("e",),
    "4": ("a",),
    "5": ("s",),
    "6": ("b", "g"),
    "7": ("t",),
    "8": ("b",),
    "9": ("g",),
}
# Digits and the Cyrillic letters they imitate.
_LEET_RU: dict[str, tuple[str, ...]] = {
    "0": ("о",),
    "1": ("и", "л"),
    "3": ("е", "з"),
    "4": ("ч", "а"),
    "6": ("б",),
    "8": ("в",),
    "9": ("я",),
}
_MAX_CANDIDATES = 64


def _unleet(token: str, table: dict[str, tuple[str, ...]]) -> list[str]:
    """``token`` with its digits read as letters (every reading), then without them."""
    options = [table.get(c, (c,)) if c.isdigit() else (c,) for c in token]
    readings = itertools.islice(itertools.product(*options), _MAX_CANDIDATES)
    found = ["".join(r) for r in readings]
    letters = "".join(c for c in token if not c.isdigit())
    runs = "".join(c if not c.isdigit() else " " for c in token).split()
    return [*found, letters, *runs]


def _stretched(token: str) -> list[str]:
    """``kiiids`` -> ``kiids``, ``kids``: runs of three or more letters made two, then one."""
    out, previous, run = [], "", 0
    for char in token:
        run = run + 1 if char == previous else 1
        previous = char
        out.append((char, run))
    if max(run for _, run in out) < 3:
        return []
    two = "".join(c for c, r in out if r <= 2)
    one = "".join(c for c, r in out if r == 1)
    return [two] if is_english_word(two) else [two, one]


@cache
def english_word_frequencies() -> dict[str, int]:
    """English words and their frequencies (``pyspellchecker``'s list, loaded once)."""
    data = resources.files("spellchecker").joinpath("resources/en.json.gz").read_bytes()
    words: dict[str, int] = json.loads(gzip.decompress(data))
    return words


def is_english_word(word: str) -> bool:
    """Whether ``word`` is in the English word list."""
    return word in english_word_frequencies()


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _edits(token: str) -> set[str]:
    """Every string one insertion, deletion, substitution or swap away from ``token``."""
    splits = [(token[:i], token[i:]) for i in range(len(token) + 1)]
    return {
        *(a + b[1:] for a, b in splits if b),
        *(a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1),
        *(a + c + b[1:] for a, b in splits if b for c in _ALPHABET),
        *(a + c + b for a, b in splits for c in _ALPHABET),
    }


@cache
def _deletions(words: frozenset[str]) -> dict[str, frozenset[str]]:
    """Each lexicon word of 4+ letters, and each of its one-letter deletions -> the words."""
    index: dict[str, set[str]] = {}
    for word in words:
        if len(word) < 4:
            continue
        for i in range(len(word)):
            index.setdefault(word[:i] + word[i + 1 :], set()).add(word)
    return {key: frozenset(value) for key, value in index.items()}


def _one_edit(token: str, word: str) -> bool:
    """Whether ``token`` is ``word`` with one edit allowed for a word of its length."""
    if len(word) < 4 or token == word or token[0] != word[0]:
        return False
    short = len(word) == 4
    if len(token) == len(word):
        diff = [i for i, (a, b) in enumerate(zip(token, word, strict=True)) if a != b]
        swap = (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and token[diff[0]] == word[diff[1]]
            and token[diff[1]] == word[diff[0]]
        )
        return swap or (len(diff) == 1 and not short)
    if len(token) == len(word) + 1:  # one letter inserted
        return any(token[:i] + token[i + 1 :] == word for i in range(len(token)))
    if len(token) == len(word) - 1 and not short:  # one letter dropped
        return any(word[:i] + word[i + 1 :] == token for i in range(len(word)))
    return False


def _near(token: str, words: frozenset[str]) -> str | None:
    """The lexicon word ``token`` is one edit from, unless ``token`` is an English word."""
    if len(token) < 4 or not token.isalpha():
        return None
    index = _deletions(words)
    candidates = set(index.get(token, ()))
    for i in range(len(token)):
        shorter = token[:i] + token[i + 1 :]
        if shorter in words:
            candidates.add(shorter)
        candidates.update(index.get(shorter, ()))
    matches = [w for w in candidates if _one_edit(token, w)]
    if not matches or is_english_word(token):
        return None
    # The likeliest reading wins: "gril" is "girl" (more common than "grill"), but "ladys"
    # is "lady" (more common than "lads") and passes.
    frequency = english_word_frequencies()
    best = max(sorted(matches), key=lambda w: frequency.get(w, 0))
    rivals = (frequency[w] for w in _edits(token) if w in frequency and w not in words)
    return best if frequency.get(best, 0) >= max(rivals, default=0) else None


@lru_cache(maxsize=65536)
def _english_term(token: str, words: frozenset[str]) -> str | None:
    if any(c.isdigit() for c in token):
        if not any(c.isalpha() for c in token):
            return None
        for candidate in _unleet(token, _LEET_EN):
            for reading in (candidate, *_plural_z(candidate)):
                if reading in words:
                    return reading
        for candidate in _unleet(token, _LEET_EN):
            found = _near(candidate, words) if len(candidate) >= 5 else None
            if found is not None:
                return found
        return None
    readings = [token, *_plural_z(token), *_stretched(token)]
    for candidate in readings[1:]:
        if candidate in words:
            return candidate
    for candidate in readings:
        found = _near(candidate, words)
        if found is not None:
            return found
    return None


def _plural_z(token: str) -> list[str]:
    """``girlz`` -> ``girls``."""
    return [token[:-1] + "s"] if len(token) > 2 and token.endswith("z") else []


def english_term(token: str, words: Collection[str]) -> str | None:
    """The lexicon word (one of ``words``) that ``token`` is a reworded spelling of, or None.

    ``token`` is one normalised word that is not itself in ``words``.
    """
    return _english_term(token, words if isinstance(words, frozenset) else frozenset(words))


# Digits in Latin-script Russian chat ("rebeno4ek": 4 is "ch").
_LEET_TRANSLIT: dict[str, tuple[str, ...]] = {
    "0": ("o",),
    "1": ("i",),
    "3": ("e",),
    "4": ("ch",),
    "6": ("b",),
}


def translit_candidates(token: str) -> list[str]:
    """Readings of a Latin-script word for the Russian lexicon, in Cyrillic."""
    if token.isalpha():
        return [to_cyrillic(token)] if len(token) >= 3 else []
    if not any(c.isalpha() for c in token):
        return []
    return [to_cyrillic(t) for t in _unleet(token, _LEET_TRANSLIT) if len(t) >= 3]


def russian_candidates(token: str) -> list[str]:
    """Readings of a Cyrillic word containing digits (``реб3нок`` -> ``ребенок``, ...)."""
    if not any(c.isdigit() for c in token) or not any(c.isalpha() for c in token):
        return []
    return _unleet(token, _LEET_RU)


# Latin-script Russian: the common schemes (GOST, BGN, passport, informal), longest first.
_TRANSLIT: tuple[tuple[str, str], ...] = (
    ("shch", "щ"),
    ("sch", "щ"),
    ("yo", "е"),
    ("jo", "е"),
    ("yu", "ю"),
    ("ju", "ю"),
    ("iu", "ю"),
    ("ya", "я"),
    ("ja", "я"),
    ("ia", "я"),
    ("ye", "е"),
    ("je", "е"),
    ("ey", "еи"),
    ("iy", "ии"),
    ("oy", "ои"),
    ("ay", "аи"),
    ("uy", "уи"),
    ("yy", "ыи"),
    ("zh", "ж"),
    ("kh", "х"),
    ("ch", "ч"),
    ("sh", "ш"),
    ("tz", "ц"),
    ("a", "а"),
    ("b", "б"),
    ("c", "ц"),
    ("d", "д"),
    ("e", "е"),
    ("f", "ф"),
    ("g", "г"),
    ("h", "х"),
    ("i", "и"),
    ("j", "и"),
    ("k", "к"),
    ("l", "л"),
    ("m", "м"),
    ("n", "н"),
    ("o", "о"),
    ("p", "п"),
    ("q", "к"),
    ("r", "р"),
    ("s", "с"),
    ("t", "т"),
    ("u", "у"),
    ("v", "в"),
    ("w", "в"),
    ("x", "кс"),
    ("y", "ы"),
    ("z", "з"),
)


def _translit_step() -> Callable[[str], str]:
    import re

    pattern = re.compile("|".join(latin for latin, _ in _TRANSLIT))
    table = dict(_TRANSLIT)
    return lambda text: pattern.sub(lambda m: table[m.group()], text)


_TO_CYRILLIC = _translit_step()


def to_cyrillic(text: str) -> str:
    """Lower-case Latin-script Russian back to Cyrillic (soft signs cannot be recovered)."""
    return _TO_CYRILLIC(text)
