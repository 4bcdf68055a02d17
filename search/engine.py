"""``ImageSearch``: the Python API of pixsearch (index a folder, search it in plain words).

>>> from pixsearch.search import ImageSearch
>>> engine = ImageSearch(db=tmp_db)                       # doctest: +SKIP
>>> engine.index("~/Pictures").summary()                  # doctest: +SKIP
'added 812, updated 0, renamed 0, removed 0, ...'
>>> for hit in engine.search("a dog catching a frisbee", k=3):   # doctest: +SKIP
...     print(f"{hit.score:.3f} {hit.path}")
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from pixsearch.db.check import CheckReport
from pixsearch.db.errors import DatabaseError, InvalidInputError
from pixsearch.db.filters import Filter, combine
from pixsearch.db.store import PhotoStore
from pixsearch.indexer.policy.profiles import DEFAULT_PROFILE
from pixsearch.indexer.report import IndexReport, ProgressCallback
from pixsearch.indexer.rows import schema_for_bundle
from pixsearch.search.locations import resolve_db
from pixsearch.search.query import PartLike, QueryPart, as_parts, describe
from pixsearch.search.query import combine as combine_vectors
from pixsearch.search.results import DatabaseStats, SearchResponse, SearchResult

if TYPE_CHECKING:
    from pixsearch.indexer.models import ModelBundle

MAX_K = 1000
DEFAULT_POLICY = DEFAULT_PROFILE
POLICY_SETTING = "policy.default_profile"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")
_SPACES = re.compile(r"\s+")


def clean_query(text: str) -> str:
    """Normalise a query: NFC, control and zero-width characters removed, spaces collapsed.

    >>> clean_query("  a\\tcat\\x00 on a\\u200b mat  ")
    'a cat on a mat'
    """
    if not isinstance(text, str):
        raise InvalidInputError(f"a query must be text, not {type(text).__name__}")
    text = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
    text = _CONTROL.sub(" ", text.replace("\ufffd", " "))
    return _SPACES.sub(" ", text).strip()


class ImageSearch:
    """An embedded photo-search database.

    ``db`` is a folder or object-store URI (default: ``$PIXSEARCH_DB``, else
    ``~/.local/share/pixsearch/db``); ``policy`` is the content-policy profile applied when a
    call does not name one (``"strict"``: queries about children are blocked and photos flagged
    as showing children are never returned; ``"none"``: no restriction); left out, the
    database's default applies (``strict`` unless :meth:`set_default_policy` changed it).
    ``keep_models=False`` suits a process that runs one search (the CLI): the models are
    dropped once the query is encoded, before the vector index is read, which lowers the peak
    memory (by ~45 MB); a further search loads them again.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        bundle: ModelBundle | None = None,
        policy: str | None = None,
        storage_options: dict[str, str] | None = None,
        keep_models: bool = True,
    ):
        self.uri = resolve_db(db)
        self._keep_models = keep_models
        self.store = PhotoStore(self.uri, storage_options=storage_options)
        self._bundle = bundle
        self._policy = _profile(policy).name if policy is not None else None

    @property
    def default_policy(self) -> str:
        """The profile used when a call names none: the constructor's ``policy``, else the
        database's default (:meth:`set_default_policy`), else ``strict``."""
        if self._policy is not None:
            return self._policy
        return _profile(self.store.get_setting(POLICY_SETTING) or DEFAULT_POLICY).name

    def set_default_policy(self, policy: str) -> str:
        """Make ``policy`` this database's default profile (stored in the database)."""
        name = _profile(policy).name
        self.store.set_setting(POLICY_SETTING, name)
        return name

    @cached_property
    def bundle(self) -> ModelBundle:
        """The ONNX model bundle (loaded on first use; its sessions start lazily too)."""
        if self._bundle is not None:
            return self._bundle
        from pixsearch.indexer.models import ModelBundle

        return ModelBundle.load()

    # -- indexing ---------------------------------------------------------------------------
    def index(
        self,
        path: str | os.PathLike[str],
        *,
        remove_missing: bool = True,
        include_hidden: bool = False,
        progress: ProgressCallback | None = None,
        wait_seconds: float = 0.0,
        workers: int | None = None,
        write_batch: int | None = None,
    ) -> IndexReport:
        """Add or refresh every photo under ``path``; files gone from it are removed (except
        under folders that could not be read: :attr:`IndexReport.kept`). ``path`` is taken
        canonically: a symbolic link to an indexed folder is that folder. ``workers``: reader
        threads; ``write_batch``: rows per commit (default ``$PIXSEARCH_WRITE_BATCH`` or 512)."""
        from pixsearch.indexer.batch import run_index

        folder = os.path.expanduser(os.fspath(path))
        if not os.path.exists(folder):
            raise InvalidInputError(f"{folder} does not exist: give a folder or photo file")
        return run_index(
            self.store,
            self.bundle,
            folder,
            remove_missing=remove_missing,
            include_hidden=include_hidden,
            progress=progress,
            wait_seconds=wait_seconds,
            workers=workers,
            write_batch=write_batch,
        )

    def reindex(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        engine: str = "local",
        progress: ProgressCallback | None = None,
        status: Any = None,
        wait_seconds: float = 0.0,
        workers: int | None = None,
        shard_size: int | None = None,
        write_batch: int | None = None,
    ) -> IndexReport:
        """Re-encode the database with the current model bundle, as a batch job.

        With ``path`` (a folder or an ``s3://`` prefix) the photos under it are (re)indexed;
        without it, the photos already in the database are. ``engine`` is ``"local"`` (this
        process) or ``"ray"`` (Ray workers, ``pip install "pixsearch[ray]"``). A new
        bundle builds a staging table that replaces the old one in one commit: searches see
        the old or the new, never a mix; while the image encoder is unchanged, rows are
        re-projected from their stored features. An interrupted job resumes where it stopped.
        ``status`` gets a :class:`pixsearch.indexer.batch.JobStatus` (rate, ETA, failures).
        ``workers`` (Ray actors, or local reader threads), ``shard_size`` (photos per worker
        call and per written fragment) and ``write_batch`` (rows per commit) default to
        :func:`pixsearch.indexer.batch.run_reindex`'s.
        """
        from pixsearch.indexer.batch import run_reindex

        source = None if path is None else os.fspath(path)
        if source is None:
            self.store.require()  # re-encoding what a database holds needs a database
        if source is not None and "://" not in source:
            source = os.path.expanduser(source)
        return run_reindex(
            self.store,
            self.bundle,
            source,
            engine=engine,
            progress=progress,
            status=status,
            wait_seconds=wait_seconds,
            workers=workers,
            write_batch=write_batch,
            **({} if shard_size is None else {"shard_size": shard_size}),
        )

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Forget photos by path (a folder removes everything under it); returns rows removed.

        A path with no indexed photo at or under it raises ``InvalidInputError`` (a typo must
        not look like success) and nothing is removed.
        """
        given = [os.path.abspath(os.path.expanduser(os.fspath(p))) for p in paths]
        with self.store.writer_lock(create=False):
            before = self.store.count()
            rows = self.store.scan(["id", "path"]).to_pylist()
            ids: set[str] = set()
            unknown = []
            for named in given:
                found: set[str] = set()
                for target in _as_indexed(named):
                    prefix = target.rstrip(os.sep) + os.sep
                    found |= {row["id"] for row in rows if row["path"] == target}
                    found |= {row["id"] for row in rows if row["path"].startswith(prefix)}
                if not found:
                    unknown.append(named)
                ids |= found
            if unknown:
                raise InvalidInputError(
                    f"not in the database at {self.uri}: {', '.join(unknown)} (no indexed photo "
                    "at or under it); nothing was removed. `pixsearch info` shows what it holds"
                )
            self.store.delete_ids(sorted(ids))
            return before - self.store.count()

    # -- querying ---------------------------------------------------------------------------
    def search(
        self,
        text: str,
        k: int = 10,
        *,
        add: Iterable[PartLike] | PartLike | None = None,
        sub: Iterable[PartLike] | PartLike | None = None,
        filters: Sequence[Filter | str] = (),
        policy: str | None = None,
        min_score: float | None = None,
    ) -> SearchResponse:
        """The ``k`` photos that best match ``text``, best first.

        ``filters`` are ``Filter(field, op, value)`` objects or strings such as
        ``"width>=1000"``; under a restricting policy, photos flagged as showing children are
        excluded inside the database query, so ``k`` results still come back.

        ``add`` and ``sub`` refine the query (as rclip does): texts (``"snow:0.5"`` weighs
        0.5), photo files (an existing path) or ``(value, weight)`` pairs, added to or
        subtracted from the query in the search space. Each text passes the policy check. A
        refined query is scored by its cosine similarity (the reranker reads one text).

        >>> engine.search("a beach", add=["sunset"], sub=["people:0.5"])   # doctest: +SKIP
        """
        parts = [QueryPart.of_text(text), *as_parts(add, 1), *as_parts(sub, -1)]
        return self._search_parts(parts, k, filters, policy, min_score)

    def search_like(
        self,
        photo: str | os.PathLike[str],
        k: int = 10,
        *,
        add: Iterable[PartLike] | PartLike | None = None,
        sub: Iterable[PartLike] | PartLike | None = None,
        filters: Sequence[Filter | str] = (),
        policy: str | None = None,
        min_score: float | None = None,
    ) -> SearchResponse:
        """The ``k`` photos most like ``photo`` (a file path, or an indexed photo's id).

        An indexed, unchanged photo reuses its stored vector and comes first itself; any other
        file is encoded on the fly, as indexing would. The policy applies as for text: under
        ``strict`` a query photo that is restricted (its row, or the child classifier or its
        caption on the fly) gets the disclaimer, and restricted photos are never returned.
        ``add``/``sub`` refine it as in :meth:`search`. Scores are cosine similarities.

        >>> engine.search_like("~/Pictures/cat.jpg", k=5, sub=["grass"])  # doctest: +SKIP
        """
        if not isinstance(photo, str | os.PathLike) or not os.fspath(photo).strip():
            raise InvalidInputError(f"give a photo file or an indexed photo's id, not {photo!r}")
        parts = [QueryPart.of_photo(photo), *as_parts(add, 1), *as_parts(sub, -1)]
        return self._search_parts(parts, k, filters, policy, min_score)

    def _search_parts(
        self,
        parts: list[QueryPart],
        k: int,
        filters: Sequence[Filter | str],
        policy: str | None,
        min_score: float | None,
    ) -> SearchResponse:
        """Run a query made of ``parts``: policy checks, one vector, one filtered search."""
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise InvalidInputError(f"k must be a whole number from 1 to {MAX_K}, not {k!r}")
        if min_score is not None and not (
            isinstance(min_score, int | float) and math.isfinite(min_score)
        ):
            raise InvalidInputError(f"min_score must be a number (e.g. 0.5), not {min_score!r}")
        profile = _profile(policy or self.default_policy)
        parts = [_cleaned(part) for part in parts]
        query = describe(parts)
        where = combine([*filters, *_restriction_filters(profile)])
        for part in parts:
            decision = _check_query(part.text, profile) if part.text is not None else None
            if decision is not None and decision.blocked:
                return SearchResponse(query, True, decision.message, [], profile.name)
        warnings: list[str] = []
        encoder = self.bundle.text_encoder
        texts = [part.text for part in parts if part.text is not None]
        for text in texts:
            tokens = encoder.token_count(text)
            if tokens > encoder.max_tokens:
                warnings.append(
                    f"query is {tokens} tokens long; only the first {encoder.max_tokens} are used"
                )
        info = self.store.table_info()
        if info is None:
            raise DatabaseError(
                f"no photos indexed in {self.uri} yet: run `pixsearch index PATH` first"
            )
        self._check_bundle(info)
        if len(parts) == 1 and parts[0].text is not None:
            query_embedding = encoder.encode([query])
            # the learned second opinion reads the embedding search needs anyway
            if self._learned_blocks(query, query_embedding[0], profile):
                return SearchResponse(query, True, profile.disclaimer, [], profile.name)
            query_vector = self.bundle.space.text_vectors(query_embedding)[0]
            self._done_with_models()
            reranker = self.bundle.reranker
            if reranker is None:
                rows = self.store.search(query_vector, k=k, where=where)
            else:
                rows = self._reranked(reranker, query_embedding[0], query_vector, k, where)
        else:
            vectors = self._part_vectors(parts, profile)
            if vectors is None:
                return SearchResponse(query, True, profile.disclaimer, [], profile.name)
            query_vector = combine_vectors(vectors, [part.weight for part in parts])
            self._done_with_models()
            rows = self.store.search(query_vector, k=k, where=where)
        results = [SearchResult.from_row(row) for row in rows]
        if min_score is not None:
            results = [result for result in results if result.score >= min_score]
        return SearchResponse(query, False, None, results, profile.name, warnings)

    def _done_with_models(self) -> None:
        """The query is a vector: without ``keep_models`` the models go now, before the
        vector index is read (a one-search process's peak memory)."""
        if not self._keep_models:
            self.bundle.release()

    def _part_vectors(self, parts: list[QueryPart], profile: Any) -> np.ndarray | None:
        """Each part's vector in the search space, or None when a query photo is restricted
        and ``profile`` blocks queries about children."""
        from pixsearch.search.query_photo import resolve_photo

        vectors: list[np.ndarray | None] = []
        for part in parts:
            if part.photo is None:
                vectors.append(None)
                continue
            photo = resolve_photo(self.store, self.bundle, part.photo)
            if photo.restricted and profile.blocks_child_queries:
                return None
            vectors.append(photo.vector)
        texts = [part.text for part in parts if part.text is not None]
        if texts:
            embeddings = self.bundle.text_encoder.encode(texts)
            for text, embedding in zip(texts, embeddings, strict=True):
                if self._learned_blocks(text, embedding, profile):
                    return None
            encoded = iter(self.bundle.space.text_vectors(embeddings))
            vectors = [next(encoded) if v is None else v for v in vectors]
        return np.stack(vectors)

    def _learned_blocks(self, text: str, embedding: np.ndarray, profile: Any) -> bool:
        """Whether the query classifier blocks ``text`` (its embedding already computed)."""
        classifier = self.bundle.query_classifier_for(text)
        if classifier is None:
            return False
        return bool(_check_query(text, profile, embedding, classifier).blocked)

    def _reranked(
        self,
        reranker: Any,
        query_embedding: np.ndarray,
        query_vector: np.ndarray,
        k: int,
        where: str | None,
    ) -> list[dict[str, Any]]:
        """Vector search for the top ``max(k, top_n)``, then the MLP scores and re-sorts them."""
        rows = self.store.search(
            query_vector, k=max(k, reranker.top_n), where=where, extra_columns=["features"]
        )
        if not rows:
            return rows
        features = np.asarray([row.pop("features") for row in rows], dtype=np.float32)
        similarities = np.asarray([row["score"] for row in rows], dtype=np.float32)
        scores = reranker.score(query_embedding, features, similarities)
        for row, similarity, score in zip(rows, similarities, scores, strict=True):
            row["similarity"] = float(similarity)
            row["score"] = float(score)
        rows.sort(key=lambda row: -row["score"])
        return rows[:k]

    def _check_bundle(self, info: Any) -> None:
        """Refuse a table built with another bundle (``info``: its ``TableInfo``)."""
        from pixsearch.db.schema import table_info
        from pixsearch.db.store import check_compatible

        check_compatible(info, table_info(schema_for_bundle(self.bundle)), self.uri)

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify the database: schema and metadata, bundle, indexes, every row (streamed).

        With ``repair``, rows whose vectors or features are damaged are re-encoded from their
        photos (when the file still has the content that was indexed) and missing indexes are
        rebuilt; the returned report is a fresh check, with ``repaired`` saying what was done.
        A database made by another bundle or with a damaged schema is not touched.

        >>> report = ImageSearch(db=tmp_db).check()          # doctest: +SKIP
        >>> report.ok, report.summary()                      # doctest: +SKIP
        (True, 'checked /home/me/photos.db: 812 rows, no problems')
        """
        from pixsearch.db.check import check_store

        expected = schema_for_bundle(self.bundle)
        report = check_store(self.store, expected)
        fatal = {"missing", "metadata", "bundle", "schema"}
        if not repair or report.ok or any(p.kind in fatal for p in report.problems):
            return report
        with self.store.writer_lock(create=False):
            done = self._repair_rows(report) + self._repair_indexes(report)
        again = check_store(self.store, expected)
        again.repaired = done
        return again

    def _repair_rows(self, report: CheckReport) -> list[str]:
        """Re-encode the rows a check found damaged from their (unchanged) photos."""
        ids = sorted({i for p in report.problems if p.kind == "rows" for i in p.ids})
        if not ids:
            return []
        rows = []
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows += self.store.rows_by_id(part, ["path", "content_hash"]).to_pylist()
        paths = [row["path"] for row in rows if _file_sha256(row["path"]) == row["content_hash"]]
        encoded = self._encode_files(paths)
        done = [f"re-encoded {encoded} of {len(ids)} damaged rows from their photos"]
        if encoded < len(ids):
            done.append(
                f"{len(ids) - encoded} damaged rows left: their photo is gone or changed "
                "since it was indexed; `pixsearch index` on its folder refreshes or removes them"
            )
        return done

    def _encode_files(self, paths: list[str]) -> int:
        """Decode and encode these photo files into rows (upserted); returns the rows written."""
        from pixsearch.indexer.batch import ShardEncoder
        from pixsearch.indexer.scan import PhotoEntry, caption_key
        from pixsearch.indexer.sources import open_source

        if not paths:
            return 0
        source = open_source(os.sep, storage_options=self.store.storage_options)
        encoder = ShardEncoder(source=source, bundle=self.bundle)
        entries = []
        for path in paths:
            info = os.stat(path)
            key = caption_key(path)[1]
            entries.append(PhotoEntry(path, info.st_size, info.st_mtime_ns, caption_key=key))
        rows = encoder.encode([encoder.read(entry) for entry in entries]).rows
        self.store.upsert(rows)
        return rows.num_rows

    def _repair_indexes(self, report: CheckReport) -> list[str]:
        missing = [p.message for p in report.problems if p.kind == "index"]
        if not missing:
            return []
        self.store.optimize()
        return [f"rebuilt {len(missing)} missing indexes"]

    def hidden_by(self, policy: str = "strict") -> int:
        """How many indexed photos a search under ``policy`` never returns (0 when it hides none).

        Counted through the policy's own filters (``restriction_filters``), so it is what
        searches do."""
        filters = _restriction_filters(_profile(policy))
        if not filters:
            return 0
        return self.store.count() - self.store.count(combine(filters))

    def stats(self) -> DatabaseStats:
        """Counts and the model facts of the database (works without loading any model)."""
        info = self.store.table_info()
        formats: dict[str, int] = {}
        if info is not None:
            for value in self.store.scan(["format"]).column("format").to_pylist():
                formats[value] = formats.get(value, 0) + 1
        return DatabaseStats(
            uri=self.uri,
            photos=self.store.count(),
            restricted=self.store.count("restricted = true") if info else 0,
            hidden_by_strict=self.hidden_by("strict") if info else 0,
            bundle_id=info.bundle_id if info else None,
            space=info.space if info else None,
            vector_dim=info.vector_dim if info else None,
            schema_version=info.schema_version if info else None,
            table_version=self.store.version(),
            formats=dict(sorted(formats.items())),
            indexes=self.store.index_health() if info is not None else {},
        )


def _file_sha256(path: str) -> str | None:
    """SHA-256 of a file's bytes (read in chunks), or None when it cannot be read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _as_indexed(path: str) -> set[str]:
    """A path as given and as indexing names it (folders canonical, file names as named)."""
    parent, name = os.path.split(path)
    names = {path, os.path.join(os.path.realpath(parent), name)}
    if os.path.isdir(path):
        names.add(os.path.realpath(path))
    return names


def _cleaned(part: QueryPart) -> QueryPart:
    """A text part with its text cleaned (:func:`clean_query`); an empty one is refused."""
    if part.text is None:
        return part
    text = clean_query(part.text)
    if not text:
        raise InvalidInputError("the query is empty: describe the photo you are looking for")
    return QueryPart.of_text(text, part.weight)


def _profile(name: str) -> Any:
    from pixsearch.indexer.policy import get_profile

    return get_profile(name)


def _restriction_filters(profile: Any) -> list[Filter]:
    from pixsearch.indexer.policy import restriction_filters

    return restriction_filters(profile)


def _check_query(
    query: str, profile: Any, embedding: np.ndarray | None = None, classifier: Any = None
) -> Any:
    from pixsearch.indexer.policy import check_query

    return check_query(query, profile, embedding=embedding, classifier=classifier)
