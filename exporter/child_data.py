"""The child classifier's data: caption labels (child, person), photo groups, a grouped split.

A photo *shows a child* when at least :data:`MIN_CHILD_CAPTIONS` of its Flickr8k captions are
about children (:func:`pixsearch.indexer.policy.is_about_children`), and *a person* when a caption
names one (:data:`PERSON_WORDS`) or is about children. Byte-identical photos share a group, so
they never straddle the split.

>>> mentions_person("A woman reads"), mentions_person("A cat sleeps")
(True, False)
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pixsearch.db.errors import InvalidInputError

MIN_CHILD_CAPTIONS = 2
"""A photo shows a child when at least this many of its captions are about children."""


DEFAULT_RECALL = 0.95


DEFAULT_SEED = 42


VAL_SIZE = 0.15


TEST_SIZE = 0.15


LABELS_TEXT = (
    "a photo shows a child when at least 2 of its 5 Flickr8k captions are about children "
    "(pixsearch.indexer.policy.is_about_children)"
)


DEFAULT_PERSON_RECALL = 0.99
"""Recall of the person gate on the validation photos that show people."""


MIN_PERSON_CAPTIONS = 1
"""A photo shows a person when at least this many of its captions name one."""


_PERSON_WORDS_TEXT = """
    man men woman women person persons people guy guys lady ladies gentleman gentlemen adults
    male males female females someone somebody everyone crowd crowds audience spectator spectators
    fan fans team teams family couple couples friend friends mother mom mommy father dad daddy
    parent parents son daughter brother sister grandmother grandfather grandma grandpa wife
    husband bride groom boy boys girl girls child children kid kids baby babies toddler toddlers
    teen teens teenager teenagers student students tourist tourists pedestrian pedestrians
    shopper shoppers worker workers vendor vendors police policeman policemen officer officers
    soldier soldiers fireman firemen cowboy cowboys cowgirl clown clowns artist artists
    photographer photographers dancer dancers musician musicians singer singers guitarist
    guitarists drummer drummers band performer performers cheerleader cheerleaders marcher
    marchers protester protesters player players athlete athletes referee umpire goalie batter
    pitcher catcher jockey wrestler wrestlers boxer boxers fighter fighters lifeguard lifeguards
    skier skiers snowboarder snowboarders surfer surfers skateboarder skateboarders skater skaters
    blader rollerblader wakeboarder wakeboarders waterskier waterskiers skiier kiteboarder
    parasailer windsurfer boarder boarders biker bikers cyclist cyclists bicyclist bicyclists
    rider riders motorcyclist motorcyclists racer racers driver drivers climber climbers hiker
    hikers runner runners jogger joggers swimmer swimmers diver divers kayaker kayakers canoeist
    paddler paddlers rower rowers sailor sailors fisherman fishermen
"""


PERSON_WORDS = frozenset(_PERSON_WORDS_TEXT.split())
"""Words that name a person in Flickr8k captions (curated from the caption vocabulary; not
pronouns, which captions also use for dogs, nor ``adult``, used for animals)."""


PERSON_LABELS_TEXT = (
    "a photo shows a person when at least 1 of its captions names one (PERSON_WORDS in "
    "pixsearch.exporter.child_classifier) or is about children"
)


PHOTO_FOLDERS = ("flickr8k/images", "practicum/train_images")


CUSTOMER_FOLDER = "practicum/train_images"


_WORD = re.compile(r"[a-z]+")


def mentions_person(caption: str) -> bool:
    """Whether a caption names a person (:data:`PERSON_WORDS`) or is about children.

    >>> mentions_person("A man rides a bike"), mentions_person("A dog runs after his toy")
    (True, False)
    >>> mentions_person("A toddler in the sand"), mentions_person("An adult horse and a foal")
    (True, False)
    """
    from pixsearch.indexer.policy import is_about_children

    text = (caption or "").lower()
    return not PERSON_WORDS.isdisjoint(_WORD.findall(text)) or is_about_children(caption)


@dataclass
class PhotoLabels:
    """One row per captioned photo found on disk."""

    images: list[str]
    paths: list[Path]
    child_captions: np.ndarray
    """How many of the photo's captions are about children."""
    captions: np.ndarray
    """How many captions the photo has (5 in Flickr8k)."""
    groups: np.ndarray
    """Group id per photo: byte-identical files share one (they must not straddle the split)."""
    missing_photos: int = 0
    """Captioned images with no file in either photo folder (left out)."""
    person_captions: np.ndarray | None = None
    """How many of the photo's captions name a person (:func:`mentions_person`)."""

    @property
    def labels(self) -> np.ndarray:
        return (self.child_captions >= MIN_CHILD_CAPTIONS).astype(np.int64)

    @property
    def person_labels(self) -> np.ndarray | None:
        """1 where the photo shows a person (``None`` when person captions were not counted)."""
        if self.person_captions is None:
            return None
        return (self.person_captions >= MIN_PERSON_CAPTIONS).astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)


def load_photo_labels(
    data_dir: str | Path,
    *,
    predicate: Callable[[str], bool] | None = None,
    person_predicate: Callable[[str], bool] | None = mentions_person,
    workers: int = 4,
) -> PhotoLabels:
    """Read ``flickr8k/captions.tsv`` and find each photo in :data:`PHOTO_FOLDERS`.

    ``predicate`` says a caption is about children, ``person_predicate`` that it names a person
    (``None``: person captions are not counted)."""
    from pixsearch.exporter.features import sha256_file

    if predicate is None:
        from pixsearch.indexer.policy import is_about_children as predicate
    data = Path(data_dir)
    captions_path = data / "flickr8k" / "captions.tsv"
    if not captions_path.is_file():
        raise InvalidInputError(f"{captions_path} not found: give the shared data folder")
    child: dict[str, int] = {}
    person: dict[str, int] = {}
    total: dict[str, int] = {}
    with open(captions_path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            image, caption = row["image"], row["caption"] or ""
            total[image] = total.get(image, 0) + 1
            child[image] = child.get(image, 0) + int(bool(predicate(caption)))
            if person_predicate is not None:
                person[image] = person.get(image, 0) + int(bool(person_predicate(caption)))
    images, paths, missing = [], [], 0
    for image in sorted(total):
        found = next(
            (data / f / image for f in PHOTO_FOLDERS if (data / f / image).is_file()), None
        )
        if found is None:
            missing += 1
            continue
        images.append(image)
        paths.append(found)
    if not images:
        raise InvalidInputError(f"no captioned photo of {captions_path} found in {PHOTO_FOLDERS}")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashes = list(pool.map(sha256_file, paths))
    _, groups = np.unique(np.asarray(hashes), return_inverse=True)
    return PhotoLabels(
        images=images,
        paths=paths,
        child_captions=np.array([child[i] for i in images], dtype=np.int64),
        captions=np.array([total[i] for i in images], dtype=np.int64),
        groups=groups.astype(np.int64),
        missing_photos=missing,
        person_captions=(
            np.array([person[i] for i in images], dtype=np.int64)
            if person_predicate is not None
            else None
        ),
    )


def grouped_three_way_split(
    groups: np.ndarray,
    *,
    val_size: float = VAL_SIZE,
    test_size: float = TEST_SIZE,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions ``(train, validation, test)``; a group lies in one part only.

    The shares are of groups (photos), drawn with ``numpy.random.default_rng(seed)``.

    >>> train, val, test = grouped_three_way_split(np.array([0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
    ...                                             val_size=0.2, test_size=0.2, seed=0)
    >>> sorted(np.concatenate([train, val, test]).tolist()) == list(range(10))
    True
    >>> bool(({0, 1} <= set(train)) or ({0, 1} <= set(val)) or ({0, 1} <= set(test)))
    True
    """
    groups = np.asarray(groups)
    if not (0 < val_size < 1 and 0 <= test_size < 1 and val_size + test_size < 1):
        raise InvalidInputError("val_size and test_size must be shares that leave a train part")
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    n_val = max(1, round(len(unique) * val_size))
    n_test = round(len(unique) * test_size)
    val_groups = set(order[:n_val].tolist())
    test_groups = set(order[n_val : n_val + n_test].tolist())
    part = np.array(
        [1 if g in val_groups else 2 if g in test_groups else 0 for g in groups.tolist()]
    )
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2)
