"""Texts for the query classifier: the Flickr8k captions, reworded copies and near misses.

Labels come from the lexicon (:func:`pixsearch.indexer.policy.is_about_children`) on the
captions, which is circular: a classifier trained only on that learns the lexicon's notion of
"about children" *in the text encoder's embedding space* (where misspellings land near the
words they misspell), and it learns that a paraphrase the lexicon misses is *not* about
children. Two things break part of the circle: a caption is also positive when at least 3 of
its photo's 5 captions are (``photo_votes``: "a young person in a red coat" describing a
child's photo), and the training part also holds

- **reworded copies** of captions: every lexicon word of a positive caption respelt
  (leetspeak, a swapped, dropped or doubled letter, a ``z`` plural, spaced letters, a
  look-alike letter of another script), labelled positive; one or two words of as many
  negative captions respelt the same way, labelled negative (so that odd spelling alone is
  not a sign of a child);
- **near misses** made from the lexicon itself: its idioms (``baby blue``, ``kid gloves``),
  young animals (``baby elephant``) and English words that contain a term without being one
  (``kidney``, ``cowboy``, ``girlfriend``: pyspellchecker's list), in a few sentence frames,
  labelled negative.

Captions are split by photo (seeded): train 80%, validation 10% (model and threshold), test
10% (reported once). Reworded copies and near misses follow the split of their caption or are
split the same way.

>>> import random
>>> respell("kids", random.Random(3)) != "kids"
True
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixsearch.db.errors import InvalidInputError

DEFAULT_SEED = 42
DEFAULT_PHOTO_VOTES = 3
"""A caption is also positive when at least this many of its photo's 5 captions are."""
SPLITS = ("train", "validation", "test")
_SPLIT_SHARES = (0.8, 0.1, 0.1)

LABELS_TEXT = (
    "a caption is about children when pixsearch.indexer.policy.is_about_children says so "
    "(the lexicon) or at least 3 of its photo's 5 captions are; reworded copies keep their "
    "caption's label; near misses are negatives"
)

_LEET = {"o": "0", "i": "1", "e": "3", "a": "4", "s": "5", "t": "7", "l": "1", "g": "9"}
_FRAMES = (
    "{}",
    "a {}",
    "a photo of a {}",
    "the {} on the table",
    "a man with a {}",
    "a woman next to the {}",
    "{} in the park",
    "close up of a {}",
)


@dataclass
class QueryTexts:
    """Texts with labels (1 = about children), split names and kinds (caption, reworded,
    near miss)."""

    texts: list[str]
    labels: np.ndarray
    splits: list[str]
    kinds: list[str]

    def mask(self, split: str, kind: str | None = None) -> np.ndarray:
        """Boolean mask of the rows of ``split`` (and ``kind`` when given)."""
        return np.array(
            [
                s == split and (kind is None or k == kind)
                for s, k in zip(self.splits, self.kinds, strict=True)
            ]
        )


def _leet(word: str, rng: random.Random) -> str:
    spots = [i for i, c in enumerate(word) if c.lower() in _LEET]
    if not spots:
        return word + str(rng.randint(1, 99))
    chosen = set(rng.sample(spots, rng.randint(1, min(2, len(spots)))))
    return "".join(_LEET[c.lower()] if i in chosen else c for i, c in enumerate(word))


def _swap(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _drop(word: str, rng: random.Random) -> str:
    if len(word) < 5:
        return word[0] + word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1 :]


def _double(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    return word[: i + 1] + word[i] * rng.randint(1, 2) + word[i + 1 :]


def _plural_z(word: str, rng: random.Random) -> str:
    return word[:-1] + "z" if word.endswith("s") else word + "z"


def _spaced(word: str, rng: random.Random) -> str:
    return rng.choice([" ", "-", "."]).join(word)


def _lookalike(word: str, rng: random.Random) -> str:
    """One letter replaced by a look-alike of another script (TR39 data: Cyrillic, Cherokee,
    Armenian, Greek, mathematical...)."""
    table = _lookalikes()
    spots = [i for i, c in enumerate(word) if c.lower() in table]
    if not spots:
        return word
    i = rng.choice(spots)
    return word[:i] + rng.choice(table[word[i].lower()]) + word[i + 1 :]


_LOOKALIKES: dict[str, list[str]] = {}


def _lookalikes() -> dict[str, list[str]]:
    if not _LOOKALIKES:
        from pixsearch.indexer.policy.confusables import latin_table

        for char, latin in sorted(latin_table().items()):
            if latin.islower() and char.isalpha():
                _LOOKALIKES.setdefault(latin, []).append(char)
    return _LOOKALIKES


_RESPELLINGS: tuple[Callable[[str, random.Random], str], ...] = (
    _leet,
    _swap,
    _drop,
    _double,
    _plural_z,
    _spaced,
    _lookalike,
)


def respell(word: str, rng: random.Random) -> str:
    """``word`` respelt one way, chosen by ``rng`` (leetspeak, swap, drop, double...)."""
    return rng.choice(_RESPELLINGS)(word, rng)


def _is_term_word(word: str) -> bool:
    from pixsearch.indexer.policy import is_about_children

    return word.isalpha() and is_about_children(word)


def reworded(caption: str, positive: bool, rng: random.Random) -> str:
    """The caption with its child words respelt (a positive) or one long word (a negative)."""
    words = caption.split()
    if positive:
        spots = [i for i, w in enumerate(words) if _is_term_word(w)]
    else:
        long = [i for i, w in enumerate(words) if len(w) >= 3 and w.isalpha()]
        spots = rng.sample(long, min(len(long), rng.randint(1, 2)))
    for i in spots:
        words[i] = respell(words[i], rng)
    return " ".join(words)


def near_miss_phrases() -> list[str]:
    """Phrases that contain a lexicon word without being about children, from the lexicon."""
    from pixsearch.indexer.policy import is_about_children, lexicon_en
    from pixsearch.indexer.policy.variants import english_word_frequencies

    phrases = {" ".join(idiom) for idiom in lexicon_en.IDIOMS}
    animals = sorted(a for a in lexicon_en.ANIMALS if not a.endswith("s"))
    phrases |= {f"{m} {a}" for m in sorted(lexicon_en.ANIMAL_MODIFIERS) for a in animals}
    stems = sorted(w for w in lexicon_en.WORDS if 3 <= len(w) <= 6)
    frequency = english_word_frequencies()
    common = [w for w, n in frequency.items() if n >= 500 and w.isalpha() and len(w) >= 5]
    phrases |= {w for w in common if any(s in w for s in stems)}
    return sorted(p for p in phrases if not is_about_children(p))


def _split_of(key: str, seed: int) -> str:
    value = random.Random(f"{seed}:{key}").random()
    if value < _SPLIT_SHARES[0]:
        return SPLITS[0]
    return SPLITS[1] if value < _SPLIT_SHARES[0] + _SPLIT_SHARES[1] else SPLITS[2]


def load_query_texts(
    data_dir: str | Path, seed: int = DEFAULT_SEED, photo_votes: int = DEFAULT_PHOTO_VOTES
) -> QueryTexts:
    """Captions, reworded copies and near misses, labelled and split (see the module doc)."""
    from pixsearch.indexer.policy import is_about_children

    path = Path(data_dir) / "flickr8k" / "captions.tsv"
    if not path.is_file():
        raise InvalidInputError(f"{path} not found: pass the shared data folder")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [(r["image"], r["caption"].strip()) for r in csv.DictReader(handle, delimiter="\t")]
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    splits: list[str] = []
    kinds: list[str] = []

    def add(text: str, label: int, split: str, kind: str) -> None:
        texts.append(text)
        labels.append(label)
        splits.append(split)
        kinds.append(kind)

    flags = [is_about_children(caption) for _, caption in rows]
    votes: dict[str, int] = {}
    for (image, _), flag in zip(rows, flags, strict=True):
        votes[image] = votes.get(image, 0) + flag
    # A caption of a photo most captions call a child's is about that child too ("a young
    # person in a red coat"): labelled positive, which breaks part of the circularity.
    labels_of = [
        flag or votes[image] >= photo_votes for (image, _), flag in zip(rows, flags, strict=True)
    ]
    # as many reworded negatives as reworded positives: odd spelling alone is no sign
    negative_share = sum(flags) / max(1, len(flags) - sum(flags))
    for (image, caption), flag, positive in zip(rows, flags, labels_of, strict=True):
        split = _split_of(image, seed)
        add(caption, int(positive), split, "caption")
        if flag or (not positive and rng.random() < negative_share):
            changed = reworded(caption, flag, rng)
            if changed != caption:
                add(changed, int(positive), split, "reworded")
    for phrase in near_miss_phrases():
        split = _split_of(phrase, seed)
        for frame in rng.sample(_FRAMES, 3):
            add(frame.format(phrase), 0, split, "near miss")
        add(reworded(phrase, False, rng), 0, split, "near miss")
    return QueryTexts(texts, np.array(labels, np.int8), splits, kinds)
