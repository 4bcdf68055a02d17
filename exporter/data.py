"""Load and validate the customer's data in its real formats.

Files read (all under one data folder ``DATA``):

- ``practicum/train_dataset.csv``: comma, header ``image,query_id,query_text``, quoted fields.
- ``practicum/ExpertAnnotations.tsv``: TAB, no header: ``image, query_id, e1, e2, e3`` (1..4).
- ``practicum/CrowdAnnotations.tsv``: TAB, no header: ``image, query_id, share_yes, n_yes, n_no``.
- ``practicum/train_images/``: the photos.
- ``flickr8k/captions.tsv`` (optional): TAB, header ``image, caption_idx, caption``; a query id
  is ``<image>#<caption_idx>``. Query texts come from here and from ``train_dataset.csv``.
- held-out form (``load_heldout``): ``test_queries.csv`` (``|``-separated, header
  ``|query_id|query_text|image``, the first unnamed column a row index), ``test_images.csv``
  (header ``image``) and ``test_images/``.

Every fault gets a name and a count in a :class:`ValidationReport`. Faults that make the file
unreadable as a whole (a missing file, a wrong column count, a non-numeric score) fail the run
with :class:`DataValidationError`; row-level faults (missing image file, unknown query id,
duplicate pair, score out of range, unreadable photo) exclude the row and are counted, or, with
``strict=True``, fail the run too. Nothing is dropped silently.

>>> report = ValidationReport()
>>> report.add("duplicate_pair", "a.jpg / b.jpg#0 (line 7)")
>>> report.count("duplicate_pair"), report.ok
(1, True)
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixsearch.db.errors import InvalidInputError

if TYPE_CHECKING:
    import pandas as pd


class DataValidationError(InvalidInputError):
    """The customer's data breaks a rule that makes the run meaningless; the message says which."""


# kind -> (what happens to the rows, one-line meaning). "error" kinds fail the run.
ISSUE_KINDS: dict[str, tuple[str, str]] = {
    "missing_file": ("error", "a required file or folder is absent"),
    "wrong_column_count": ("error", "a line has another number of fields than the format"),
    "bad_header": ("error", "the header line is not the documented one"),
    "non_numeric_score": ("error", "a score field is not a number"),
    "missing_image_file": ("excluded", "the pair's photo is not in the images folder"),
    "unreadable_photo": ("excluded", "the photo file cannot be decoded"),
    "unknown_query_id": ("excluded", "the query id has no text in any caption source"),
    "duplicate_pair": ("excluded", "the same (image, query_id) pair appears again in a file"),
    "score_out_of_range": ("excluded", "an expert vote outside 1..4 or a crowd share outside 0..1"),
    "empty_text": ("excluded", "a query text is empty"),
    "crowd_count_mismatch": ("kept", "crowd share differs from n_yes / (n_yes + n_no)"),
    "text_mismatch": ("kept", "train_dataset.csv text differs from captions.tsv (csv wins)"),
    "dataset_pair_without_expert": ("excluded", "a train_dataset.csv pair has no expert votes"),
    "expert_pair_not_in_dataset": ("kept", "an expert pair is missing from train_dataset.csv"),
    "short_text": ("kept", "a caption of fewer than 3 words (e.g. 'A', 'a cyclist')"),
    "unknown_image": ("excluded", "a held-out query's image is not in test_images.csv"),
}


@dataclass
class Issue:
    """One named fault: how often it happened and the first few examples."""

    kind: str
    count: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def action(self) -> str:
        """``error`` (fails the run), ``excluded`` (rows left out) or ``kept`` (noted only)."""
        return ISSUE_KINDS[self.kind][0]


@dataclass
class ValidationReport:
    """Counts of every fault found while loading, plus row counts per file.

    >>> r = ValidationReport()
    >>> r.add("wrong_column_count", "x.tsv line 3: 4 fields, expected 5")
    >>> r.ok
    False
    >>> print(r.to_markdown().splitlines()[2])
    | wrong_column_count | 1 | error | x.tsv line 3: 4 fields, expected 5 |
    """

    issues: dict[str, Issue] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    max_examples: int = 3

    def add(self, kind: str, example: str = "", n: int = 1) -> None:
        """Count ``n`` occurrences of ``kind``; keep ``example`` if there is room."""
        if kind not in ISSUE_KINDS:
            raise KeyError(f"unknown issue kind {kind!r}; add it to ISSUE_KINDS")
        issue = self.issues.setdefault(kind, Issue(kind))
        issue.count += n
        if example and len(issue.examples) < self.max_examples:
            issue.examples.append(example)

    def count(self, kind: str) -> int:
        """How many times ``kind`` was found (0 if never)."""
        return self.issues[kind].count if kind in self.issues else 0

    @property
    def ok(self) -> bool:
        """True when no fault of the ``error`` kind was found."""
        return not any(issue.action == "error" for issue in self.issues.values())

    def raise_if_failed(self, strict: bool = False) -> None:
        """Raise ``DataValidationError`` on error kinds (on any row exclusion too if strict)."""
        failing = [
            issue
            for issue in self.issues.values()
            if issue.action == "error" or (strict and issue.action == "excluded")
        ]
        if failing:
            lines = [f"{i.kind} x{i.count}: {'; '.join(i.examples)}" for i in failing]
            raise DataValidationError(
                "the data does not pass validation: "
                + " | ".join(lines)
                + ". Fix the files (or drop strict mode to exclude bad rows and go on)."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON: ``{"rows": {...}, "issues": {kind: {count, action, examples}}}``."""
        return {
            "rows": dict(self.rows),
            "issues": {
                k: {"count": i.count, "action": i.action, "examples": list(i.examples)}
                for k, i in sorted(self.issues.items())
            },
        }

    def to_markdown(self) -> str:
        """A Markdown table of the faults (``no faults found`` when clean)."""
        head = "| fault | count | action | examples |\n|---|---|---|---|"
        if not self.issues:
            return head + "\n| (no faults found) | 0 | | |"
        body = [
            f"| {i.kind} | {i.count} | {i.action} | {'; '.join(i.examples).replace('|', '/')} |"
            for i in sorted(self.issues.values(), key=lambda i: (i.action, i.kind))
        ]
        return "\n".join([head, *body])


@dataclass
class PracticumData:
    """The validated customer data.

    ``pairs`` has one row per judged (image, query_id) pair with columns ``image, query_id,
    query_text, e1, e2, e3, share_yes, n_yes, n_no, has_expert, has_crowd`` (votes are NaN
    where absent). ``captions`` has ``query_id, image, caption_idx, caption`` for every known
    caption. ``images_dir`` holds the photos.
    """

    pairs: pd.DataFrame
    captions: pd.DataFrame
    images_dir: Path
    report: ValidationReport
    flickr_images_dir: Path | None = None

    def image_path(self, image: str) -> Path:
        """Where a photo named in the pairs or captions lies."""
        path = self.images_dir / image
        if not path.exists() and self.flickr_images_dir is not None:
            alt = self.flickr_images_dir / image
            if alt.exists():
                return alt
        return path


def _require(path: Path, report: ValidationReport) -> Path:
    if not path.exists():
        report.add("missing_file", str(path))
        report.raise_if_failed()
    return path


def read_rows(
    path: Path,
    *,
    delimiter: str,
    n_fields: int,
    report: ValidationReport,
    header: Sequence[str] | None = None,
) -> list[tuple[int, list[str]]]:
    """Read a delimited text file; returns ``(line_number, fields)`` for each data row.

    Quoted fields follow CSV rules (``""`` is one quote). A row with another field count is
    counted as ``wrong_column_count`` with its line number; a header other than ``header``
    is ``bad_header``. Blank lines are skipped.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "t.tsv"
    >>> _ = p.write_text("a,b\\n'x ''y'' z',2\\n".replace("'", chr(34)), encoding="utf-8")
    >>> read_rows(p, delimiter=",", n_fields=2, report=ValidationReport(), header=["a", "b"])
    [(2, ['x "y" z', '2'])]
    """
    report.rows.setdefault(path.name, 0)
    out: list[tuple[int, list[str]]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        for fields in reader:
            line = reader.line_num
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if header is not None and not out and line == 1:
                if [f.strip() for f in fields] != list(header):
                    report.add("bad_header", f"{path.name}: {fields!r}, expected {list(header)!r}")
                continue
            if len(fields) != n_fields:
                report.add(
                    "wrong_column_count",
                    f"{path.name} line {line}: {len(fields)} fields, expected {n_fields}",
                )
                continue
            out.append((line, fields))
    report.rows[path.name] = len(out)
    return out


def _number(value: str, where: str, report: ValidationReport) -> float:
    try:
        number = float(value)
    except ValueError:
        report.add("non_numeric_score", f"{where}: {value!r}")
        return math.nan
    if math.isnan(number):
        report.add("non_numeric_score", f"{where}: {value!r}")
    return number


def load_captions(path: Path, report: ValidationReport) -> dict[str, tuple[str, str, int]]:
    """Read ``captions.tsv`` into ``{query_id: (caption, image, caption_idx)}``."""
    rows = read_rows(
        path, delimiter="\t", n_fields=3, report=report, header=["image", "caption_idx", "caption"]
    )
    captions: dict[str, tuple[str, str, int]] = {}
    for line, (image, idx, caption) in rows:
        query_id = f"{image}#{idx}"
        if query_id in captions:
            report.add("duplicate_pair", f"{path.name} line {line}: caption {query_id} again")
            continue
        captions[query_id] = (caption, image, int(idx) if idx.isdigit() else -1)
    return captions


def check_photos(paths: Iterable[Path], report: ValidationReport, workers: int = 4) -> set[Path]:
    """Decode each photo once (thread pool); returns the unreadable ones (counted in report)."""
    from pixsearch.indexer.preprocess import ImageDecodeError, open_rgb

    def bad(path: Path) -> Path | None:
        try:
            open_rgb(path, draft_size=64)
        except ImageDecodeError:
            return path
        return None

    unique = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        broken = {p for p in pool.map(bad, unique) if p is not None}
    for path in sorted(broken):
        report.add("unreadable_photo", path.name)
    return broken


def load_practicum(
    data_dir: str | Path,
    *,
    strict: bool = False,
    decode_photos: bool = True,
    report: ValidationReport | None = None,
) -> PracticumData:
    """Load and validate ``DATA/practicum`` (+ ``DATA/flickr8k/captions.tsv`` when present).

    Raises ``DataValidationError`` on file-level faults (and on any excluded row if
    ``strict``); everything else is counted in ``result.report``.
    """
    import numpy as np
    import pandas as pd

    data_dir = Path(data_dir)
    report = report if report is not None else ValidationReport()
    practicum = data_dir / "practicum" if (data_dir / "practicum").is_dir() else data_dir
    images_dir = _require(practicum / "train_images", report)
    dataset_rows = read_rows(
        _require(practicum / "train_dataset.csv", report),
        delimiter=",",
        n_fields=3,
        report=report,
        header=["image", "query_id", "query_text"],
    )
    expert_rows = read_rows(
        _require(practicum / "ExpertAnnotations.tsv", report),
        delimiter="\t",
        n_fields=5,
        report=report,
    )
    crowd_rows = read_rows(
        _require(practicum / "CrowdAnnotations.tsv", report),
        delimiter="\t",
        n_fields=5,
        report=report,
    )
    captions_path = data_dir / "flickr8k" / "captions.tsv"
    captions = load_captions(captions_path, report) if captions_path.exists() else {}
    flickr_dir = data_dir / "flickr8k" / "images"

    # Query texts: train_dataset.csv first, then captions.tsv.
    texts: dict[str, str] = {}
    dataset_pairs: dict[tuple[str, str], int] = {}
    for line, (image, query_id, text) in dataset_rows:
        key = (image, query_id)
        if key in dataset_pairs:
            report.add("duplicate_pair", f"train_dataset.csv line {line}: {image} / {query_id}")
            continue
        dataset_pairs[key] = line
        known = captions.get(query_id)
        if known is not None and known[0] != text:
            report.add("text_mismatch", f"{query_id}: {text[:40]!r} vs {known[0][:40]!r}")
        texts.setdefault(query_id, text)
    for query_id, (caption, _, _) in captions.items():
        texts.setdefault(query_id, caption)

    records: dict[tuple[str, str], dict[str, Any]] = {}
    for line, (image, query_id, *votes) in expert_rows:
        key = (image, query_id)
        if key in records:
            report.add("duplicate_pair", f"ExpertAnnotations.tsv line {line}: {image} / {query_id}")
            continue
        values = [_number(v, f"ExpertAnnotations.tsv line {line}", report) for v in votes]
        if any(not math.isnan(v) and (v < 1 or v > 4 or v != int(v)) for v in values):
            report.add("score_out_of_range", f"ExpertAnnotations.tsv line {line}: {votes}")
            continue
        records[key] = {"image": image, "query_id": query_id, "e1": values[0]}
        records[key].update(e2=values[1], e3=values[2], has_expert=True, has_crowd=False)

    crowd_seen: set[tuple[str, str]] = set()
    for line, (image, query_id, share, n_yes, n_no) in crowd_rows:
        key = (image, query_id)
        if key in crowd_seen:
            report.add("duplicate_pair", f"CrowdAnnotations.tsv line {line}: {image} / {query_id}")
            continue
        crowd_seen.add(key)
        where = f"CrowdAnnotations.tsv line {line}"
        s, y, n = (_number(v, where, report) for v in (share, n_yes, n_no))
        if not (0 <= s <= 1) or y < 0 or n < 0:
            report.add("score_out_of_range", f"{where}: {share}, {n_yes}, {n_no}")
            continue
        if y + n > 0 and abs(y / (y + n) - s) > 1e-6:
            report.add("crowd_count_mismatch", f"{where}: {share} vs {n_yes}/{n_no}")
        record = records.setdefault(
            key,
            {"image": image, "query_id": query_id, "e1": np.nan, "e2": np.nan, "e3": np.nan},
        )
        record.setdefault("has_expert", False)
        record.update(share_yes=s, n_yes=y, n_no=n, has_crowd=True)

    for key, line in dataset_pairs.items():
        if key not in records or not records[key]["has_expert"]:
            report.add("dataset_pair_without_expert", f"train_dataset.csv line {line}: {key}")
    for key, record in records.items():
        if record["has_expert"] and key not in dataset_pairs:
            report.add("expert_pair_not_in_dataset", f"{key[0]} / {key[1]}")

    pairs = pd.DataFrame.from_records(list(records.values()))
    if pairs.empty:
        report.add("missing_file", "no annotated pairs in ExpertAnnotations/CrowdAnnotations")
        report.raise_if_failed(strict)
    for column in ("share_yes", "n_yes", "n_no"):
        if column not in pairs:
            pairs[column] = np.nan
    pairs["query_text"] = pairs["query_id"].map(texts)

    keep = pd.Series(True, index=pairs.index)
    unknown = pairs["query_text"].isna()
    for row in pairs[unknown].itertuples():
        report.add("unknown_query_id", f"{row.image} / {row.query_id}")
    empty = ~unknown & (pairs["query_text"].fillna("").str.strip() == "")
    for row in pairs[empty].itertuples():
        report.add("empty_text", f"{row.image} / {row.query_id}")
    keep &= ~unknown & ~empty

    image_names = pairs["image"].unique()
    present = {name for name in image_names if (images_dir / name).is_file()}
    missing = ~pairs["image"].isin(present)
    for name in sorted(set(image_names) - present):
        report.add("missing_image_file", f"{name} ({int((pairs['image'] == name).sum())} pairs)")
    keep &= ~missing
    if decode_photos:
        broken = check_photos((images_dir / name for name in present), report)
        keep &= ~pairs["image"].isin({p.name for p in broken})

    used_ids = set(pairs.loc[keep, "query_id"])
    for query_id in sorted(used_ids):
        if len(texts[query_id].split()) < 3:
            report.add("short_text", f"{query_id}: {texts[query_id]!r}")

    report.raise_if_failed(strict)
    pairs = pairs[keep].reset_index(drop=True)
    pairs["has_expert"] = pairs["has_expert"].astype(bool)
    pairs["has_crowd"] = pairs["has_crowd"].astype(bool)
    report.rows["pairs_kept"] = len(pairs)
    report.rows["pairs_with_expert"] = int(pairs["has_expert"].sum())
    report.rows["pairs_with_expert_and_crowd"] = int(
        (pairs["has_expert"] & pairs["has_crowd"]).sum()
    )
    caption_frame = pd.DataFrame(
        [(q, img, idx, text) for q, (text, img, idx) in captions.items()],
        columns=["query_id", "image", "caption_idx", "caption"],
    )
    return PracticumData(
        pairs=pairs,
        captions=caption_frame,
        images_dir=images_dir,
        report=report,
        flickr_images_dir=flickr_dir if flickr_dir.is_dir() else None,
    )


@dataclass
class HeldOutData:
    """The customer's held-out test set: ``queries`` (query_id, query_text, image), ``images``."""

    queries: pd.DataFrame
    images: list[str]
    images_dir: Path
    report: ValidationReport


def load_heldout(
    folder: str | Path, *, strict: bool = False, decode_photos: bool = True
) -> HeldOutData:
    """Load ``test_queries.csv`` (``|``-separated) and ``test_images.csv`` from ``folder``.

    The first, unnamed column of ``test_queries.csv`` is a row index and is dropped.
    """
    import pandas as pd

    folder = Path(folder)
    report = ValidationReport()
    images_dir = _require(folder / "test_images", report)
    query_rows = read_rows(
        _require(folder / "test_queries.csv", report),
        delimiter="|",
        n_fields=4,
        report=report,
        header=["", "query_id", "query_text", "image"],
    )
    image_rows = read_rows(
        _require(folder / "test_images.csv", report),
        delimiter=",",
        n_fields=1,
        report=report,
        header=["image"],
    )
    images: list[str] = []
    for line, (name,) in image_rows:
        if name in images:
            report.add("duplicate_pair", f"test_images.csv line {line}: {name} again")
            continue
        images.append(name)
    missing = {name for name in images if not (images_dir / name).is_file()}
    for name in sorted(missing):
        report.add("missing_image_file", name)
    broken: set[Path] = set()
    if decode_photos:
        broken = check_photos((images_dir / n for n in images if n not in missing), report)
    usable = [n for n in images if n not in missing and images_dir / n not in broken]

    records, seen = [], set()
    for line, (_, query_id, text, image) in query_rows:
        if query_id in seen:
            report.add("duplicate_pair", f"test_queries.csv line {line}: {query_id} again")
            continue
        seen.add(query_id)
        if not text.strip():
            report.add("empty_text", f"test_queries.csv line {line}: {query_id}")
            continue
        if image not in images:
            report.add("unknown_image", f"test_queries.csv line {line}: {image}")
            continue
        if image not in usable:
            continue  # counted above as missing_image_file / unreadable_photo
        records.append((query_id, text, image))
    report.raise_if_failed(strict)
    queries = pd.DataFrame(records, columns=["query_id", "query_text", "image"])
    report.rows["queries_kept"] = len(queries)
    report.rows["images_kept"] = len(usable)
    return HeldOutData(queries=queries, images=usable, images_dir=images_dir, report=report)
