"""What an index or reindex run reports: counts for people and callers, and its progress.

>>> report = IndexReport(added=2, encoded=2, seconds=0.5)
>>> report.summary().startswith("added 2, updated 0, renamed 0, removed 0, unchanged 0")
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while photos are processed."""


@dataclass
class IndexReport:
    """What an index run did, for the CLI summary and for callers."""

    added: int = 0
    updated: int = 0
    renamed: int = 0
    reused: int = 0
    removed: int = 0
    unchanged: int = 0
    encoded: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kept: int = 0
    """Rows kept although their photo was not listed: its folder (or object-store prefix)
    could not be read completely (named in ``skipped``), so the photo is not known gone."""

    @property
    def images_per_second(self) -> float:
        """Photos decoded and encoded per second of the whole run."""
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for people: counts, time and rate."""
        return (
            f"added {self.added}, updated {self.updated}, renamed {self.renamed}, "
            f"removed {self.removed}, unchanged {self.unchanged}, skipped {len(self.skipped)}, "
            f"failed {len(self.failed)}; encoded {self.encoded} photos in {self.seconds:.1f} s "
            f"({self.images_per_second:.1f} images/s)"
            + (f"; kept {self.kept} under folders that could not be read" if self.kept else "")
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return {
            "added": self.added,
            "updated": self.updated,
            "renamed": self.renamed,
            "reused": self.reused,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "encoded": self.encoded,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 2),
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "kept": self.kept,
        }


@dataclass
class JobStatus:
    """Where a running job stands: photos done of total, rate, ETA, failures.

    >>> JobStatus(done=50, total=200, failed=1, encoded=40, elapsed=10.0, done_at_start=10).line()
    'reindex [local]: 50/200 photos (25%), 4.0 photos/s, ETA 38 s, 1 failed'
    """

    done: int
    total: int
    failed: int
    encoded: int
    elapsed: float
    done_at_start: int = 0
    """Photos found already done (resumed or unchanged) when the job started."""
    engine: str = "local"

    @property
    def rate(self) -> float:
        """Photos per second processed by this run."""
        work = self.done - self.done_at_start
        return work / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate (None before the first shard is done)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        """One line for people."""
        percent = 100 * self.done // self.total if self.total else 100
        eta = "ETA ?" if self.eta_seconds is None else f"ETA {_duration(self.eta_seconds)}"
        return (
            f"reindex [{self.engine}]: {self.done}/{self.total} photos ({percent}%), "
            f"{self.rate:.1f} photos/s, {eta}, {self.failed} failed"
        )


StatusCallback = Callable[[JobStatus], None]
"""Called as ``status(JobStatus)`` after each commit and once at the end."""


@dataclass
class BatchReport(IndexReport):
    """What a batch job did: the indexer's counts plus the job's own facts."""

    engine: str = "local"
    mode: str = "in-place"
    job_id: str = ""
    shards: int = 0
    commits: int = 0
    resumed: int = 0
    """Photos already written by an earlier, interrupted run of the same job (skipped)."""
    shards_reused: int = 0
    """Shards whose fragments an earlier, interrupted run wrote but never committed: committed
    now from their done marks, no photo of them read again (Ray engine)."""
    reprojected: int = 0
    """Rows made from stored features (same image encoder): no photo decoded."""
    swapped: bool = False
    """True when a staging table replaced ``photos`` (rebuild mode)."""

    def summary(self) -> str:
        """One line for people: the engine, counts, time and rate."""
        counts = (self.added, self.updated, self.renamed, self.removed, self.unchanged)
        if not any(counts) and not (self.resumed or self.kept or self.failed):
            return f"[{self.engine}] nothing to do"
        extra = f"; resumed {self.resumed}, reprojected {self.reprojected}, mode {self.mode}"
        return f"[{self.engine}] {super().summary()}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        data = super().to_dict()
        data.update(
            engine=self.engine,
            mode=self.mode,
            job_id=self.job_id,
            shards=self.shards,
            commits=self.commits,
            resumed=self.resumed,
            shards_reused=self.shards_reused,
            reprojected=self.reprojected,
            swapped=self.swapped,
        )
        return data

    def index_report(self) -> IndexReport:
        """The plain :class:`IndexReport` part (what ``ImageSearch.index`` returns)."""
        return IndexReport(**{f.name: getattr(self, f.name) for f in fields(IndexReport)})


def _duration(seconds: float) -> str:
    """``95`` -> ``'1m35s'``, ``38.2`` -> ``'38 s'``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"
