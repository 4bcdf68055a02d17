"""``pixsearch serve``: a local search page and JSON API over one database (FastAPI).

Only the ``serve`` command imports this module (FastAPI and uvicorn come with the ``[serve]``
extra). Pages are rendered on the server and run no script; every string from a file name, a
caption or a query is escaped, and the Content-Security-Policy forbids scripts anyway.

Photos are addressed by their row id only (``/photos/{id}``, ``/thumbnails/{id}``): the id is
looked up in the index and the path stored there is served, never a path from the request.
Under a restricting policy, restricted photos are not found. A file that no longer holds the
bytes that were indexed is never shown (404 "changed since it was indexed"; the search page's
card says so): the policy judged the indexed photo, not what a name holds now.

The server applies the engine's default policy (the database's, ``pixsearch policy``, unless
the operator names one); a visitor may choose a stricter profile but not a laxer one (403)
unless the app is made with ``allow_override=True`` (``pixsearch serve --allow-policy-override``).

>>> from pixsearch.search import ImageSearch                            # doctest: +SKIP
>>> app = create_app(ImageSearch(db="photos.db"))                       # doctest: +SKIP
>>> with background_server(app) as url:                                 # doctest: +SKIP
...     print(url)
http://127.0.0.1:40213
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from pixsearch.db.errors import DatabaseError, InvalidInputError, PixsearchError
from pixsearch.db.schema import RESULT_COLUMNS
from pixsearch.indexer.errors import PhotoChangedError
from pixsearch.indexer.fingerprint import Fingerprint, open_indexed
from pixsearch.indexer.policy import PROFILES, PolicyProfile, get_profile
from pixsearch.search.engine import MAX_K, ImageSearch
from pixsearch.search.gallery import (
    esc,
    facts,
    human_size,
    like_link,
    page,
    photo_name,
    results_section,
)
from pixsearch.search.query import PhotoId, QueryPart
from pixsearch.search.results import SearchResponse, SearchResult
from pixsearch.search.thumbnails import ThumbnailCache, make_thumbnail

SERVE_CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
"""Pages may load their own images and styles and submit forms to this server; no script."""
ID_PATTERN = re.compile(r"[0-9A-Za-z_-]{1,64}")
"""Shape of a row id in a URL (the indexer writes 16 hex digits); anything else is a 404."""
BROWSER_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "AVIF": "image/avif",
}
"""Formats served as stored; other photos are served as a JPEG rendition."""
RENDITION_SIZE = 2048
SECURITY_HEADERS = {
    "Content-Security-Policy": SERVE_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
"""Host names a server on a loopback address answers to (``[::1]`` in a Host header)."""

PolicyName = Literal[tuple(sorted(PROFILES))]  # type: ignore[valid-type]
PolicyQuery = Annotated[
    PolicyName | None,  # type: ignore[valid-type]
    Query(description="Content-policy profile; default: the server's."),
]


class Photo(BaseModel):
    """One photo found (the shape of ``SearchResult.to_dict()``)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Absolute path of the photo file.")
    score: float = Field(
        description="How well the photo matches (higher is better): the reranker's calibrated "
        "relevance in [0, 1] when the bundle has one, else the cosine similarity."
    )
    id: str = Field(description="Row id; the photo is served at /photos/{id}.")
    width: int
    height: int
    format: str = Field(description="Image format as decoded, e.g. JPEG or PNG.")
    size: int = Field(description="File size in bytes.")
    modified: str = Field(json_schema_extra={"format": "date-time"})
    indexed_at: str = Field(json_schema_extra={"format": "date-time"})
    restricted: bool = Field(description="Flagged as showing children (hidden under strict).")
    child_score: float
    caption: str | None
    similarity: float | None = Field(
        description="Cosine similarity in the search space (set when a reranker made score)."
    )


class SearchAnswer(BaseModel):
    """The answer to one query: the shape of ``pixsearch search --json``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(description="The query as searched (normalised).")
    blocked: bool = Field(description="True when the content policy blocked the query.")
    message: str | None = Field(description="The disclaimer when blocked, else null.")
    results: list[Photo] = Field(description="Best first; empty when blocked.")
    policy: str = Field(description="The content-policy profile applied.")
    warnings: list[str]


class PhotoInfo(BaseModel):
    """A photo's stored metadata (``/api/photos/{id}``)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    id: str
    width: int
    height: int
    format: str
    size: int
    modified: str = Field(json_schema_extra={"format": "date-time"})
    indexed_at: str = Field(json_schema_extra={"format": "date-time"})
    restricted: bool
    child_score: float
    caption: str | None


class Problem(BaseModel):
    """An error: what went wrong and what to do."""

    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Bad query, filter or option."},
    403: {
        "model": Problem,
        "description": "This server does not allow that policy (a visitor cannot lower it).",
    },
    503: {"model": Problem, "description": "The database cannot be searched (e.g. empty)."},
}


def create_app(
    engine: ImageSearch,
    *,
    policies: Sequence[str] | None = None,
    allow_override: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    thumbnails: ThumbnailCache | None = None,
) -> FastAPI:
    """The web app over ``engine``: search page, photo pages, photo bytes and a JSON API.

    A request that names no policy gets the engine's default policy (the database's, unless
    the engine was made with one). ``policies`` are the profiles a request may choose; by
    default those at least as strict as the default policy, so a visitor cannot lift it;
    ``allow_override`` lets visitors choose any profile. ``allowed_hosts`` (e.g.
    ``["127.0.0.1", "localhost", "::1"]``) rejects requests for other host names, which stops
    DNS-rebinding pages from reading a local server. ``thumbnails`` defaults to a cache inside
    the database.
    """
    default_policy = engine.default_policy
    if policies:
        allowed = tuple(get_profile(name).name for name in policies)
    else:
        floor = get_profile(default_policy)
        allowed = tuple(
            name
            for name in sorted(PROFILES)
            if allow_override or is_at_least_as_strict(get_profile(name), floor)
        )
    if default_policy not in allowed:
        default_policy = allowed[0]
    cache = thumbnails or ThumbnailCache.for_database(engine.uri)
    lock = threading.Lock()  # one engine call at a time: its lazy state is not thread-safe
    app = FastAPI(
        title="pixsearch",
        summary="Search your photos in plain words, offline.",
        description=(
            "A local pixsearch database. `GET /api/search?q=a+red+car&k=5` answers with the "
            "shape of `pixsearch search --json`; `GET /api/search?like=ID` finds photos like "
            "an indexed one. A query blocked by the content policy answers "
            "451 with `blocked: true` and the disclaimer as `message`."
        ),
        version=_version(),
        docs_url=None,  # Swagger UI would load scripts from a CDN; the schema is /openapi.json
        redoc_url=None,
    )
    if allowed_hosts:
        hosts = {name.strip("[]").lower() for name in allowed_hosts}

        @app.middleware("http")
        async def trusted_host(request: Request, call_next: Callable[..., Any]) -> Response:
            if host_name(request.headers.get("host", "")) not in hosts:
                return Response("Invalid host header", status_code=400, media_type="text/plain")
            return await call_next(request)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def profile_for(name: str | None) -> PolicyProfile:
        chosen = (name or default_policy).strip().lower()
        if chosen not in PROFILES:
            raise HTTPException(400, f"unknown policy {name!r}: use one of {', '.join(allowed)}")
        if chosen not in allowed:
            raise HTTPException(
                403,
                f"this server applies the policy {default_policy} and allows "
                f"{', '.join(allowed)}; a visitor cannot choose {chosen} (its operator can "
                "start pixsearch serve --allow-policy-override)",
            )
        return get_profile(chosen)

    def run_search(
        q: str,
        k: int,
        where: list[str],
        profile: PolicyProfile,
        min_score: float | None,
        like: str | None = None,
    ) -> SearchResponse:
        options: dict[str, Any] = {
            "k": k,
            "filters": [w for w in where if w.strip()],
            "policy": profile.name,
            "min_score": min_score,
        }
        if like is not None:
            find_row(like, profile)  # unknown, or restricted under the profile: 404
            options["add"] = [QueryPart.of_text(q)] if q.strip() else []
        try:
            with lock:
                if like is not None:
                    return engine.search_like(PhotoId(like), **options)
                return engine.search(q, **options)
        except InvalidInputError as error:
            raise HTTPException(400, str(error)) from error
        except DatabaseError as error:
            raise HTTPException(503, str(error)) from error
        except PixsearchError as error:
            raise HTTPException(500, str(error)) from error

    def find_row(photo_id: str, profile: PolicyProfile) -> dict[str, Any]:
        """The row of ``photo_id``, or 404 (also for restricted rows under ``profile``)."""
        if not ID_PATTERN.fullmatch(photo_id):
            raise HTTPException(404, "no such photo")
        try:
            with lock:
                rows = engine.store.rows_by_id([photo_id], RESULT_COLUMNS).to_pylist()
        except DatabaseError as error:
            raise HTTPException(503, str(error)) from error
        if not rows or rows[0]["id"] != photo_id:
            raise HTTPException(404, "no such photo")
        row = rows[0]
        if profile.excludes_restricted_photos and row["restricted"]:
            raise HTTPException(404, "no such photo")  # not even its existence is revealed
        return row

    def changed(result: SearchResult) -> str | None:
        """Why the result's photo must not be shown (its file is not the one indexed), or None."""
        try:
            with open_indexed(result.path, result.fingerprint):
                return None
        except PhotoChangedError as error:
            return str(error)

    def thumbnail_src(result: SearchResult, profile: PolicyProfile) -> str:
        """The card's thumbnail URL; raises ``PhotoChangedError`` (the card says so instead)."""
        with open_indexed(result.path, result.fingerprint):
            return _url("thumbnails", result.id, {"policy": profile.name})

    # -- JSON API ---------------------------------------------------------------------------
    @app.get(
        "/api/search",
        response_model=SearchAnswer,
        responses={
            451: {"model": SearchAnswer, "description": "Query blocked by the policy."},
            404: {"model": Problem, "description": "like: no such photo (or not allowed)."},
        }
        | _ERRORS,
        tags=["api"],
        summary="Search photos by text, or photos like one",
    )
    def api_search(
        q: Annotated[
            str,
            Query(max_length=2000, description="What the photo shows (or with like: text added)."),
        ] = "",
        like: Annotated[
            str | None,
            Query(description="A photo's id: photos like it (more like this), itself first."),
        ] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="How many results.")] = 10,
        where: Annotated[
            list[str] | None,
            Query(description="Filter FIELD OP VALUE, repeatable (AND), e.g. width>=1000."),
        ] = None,
        policy: PolicyQuery = None,
        min_score: Annotated[float | None, Query(description="Drop results below.")] = None,
    ) -> Any:
        if not q.strip() and like is None:
            raise HTTPException(400, "give q (what the photo shows) or like (a photo's id)")
        response = run_search(q, k, where or [], profile_for(policy), min_score, like)
        return JSONResponse(response.to_dict(), status_code=451 if response.blocked else 200)

    @app.get(
        "/api/photos/{photo_id}",
        response_model=PhotoInfo,
        responses={404: {"model": Problem, "description": "No such photo."}} | _ERRORS,
        tags=["api"],
        summary="A photo's metadata",
    )
    def api_photo(photo_id: str, policy: PolicyQuery = None) -> Any:
        result = _result(find_row(photo_id, profile_for(policy)))
        info = result.to_dict()
        del info["score"], info["similarity"]  # query-dependent, not photo metadata
        return info

    # -- image bytes ------------------------------------------------------------------------
    @app.get(
        "/photos/{photo_id}",
        response_class=Response,
        responses={200: {"content": {"image/*": {}}}, 404: {"model": Problem}},
        tags=["images"],
        summary="The photo file",
    )
    def photo_file(photo_id: str, policy: PolicyQuery = None) -> Response:
        row = find_row(photo_id, profile_for(policy))
        headers = {"Cache-Control": "private, max-age=300"}
        media_type = BROWSER_FORMATS.get(row["format"])
        try:
            # The bytes sent are those proven to be the indexed ones (no second open).
            with open_indexed(row["path"], _fingerprint(row)) as handle:
                if media_type:
                    data = handle.read()
                else:
                    try:
                        data, media_type = make_thumbnail(handle, RENDITION_SIZE), "image/jpeg"
                    except (OSError, ValueError) as error:
                        raise HTTPException(404, "the photo cannot be decoded") from error
        except PhotoChangedError as error:
            raise HTTPException(404, str(error)) from error
        return Response(data, media_type=media_type, headers=headers)

    @app.get(
        "/thumbnails/{photo_id}",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Problem}},
        tags=["images"],
        summary="A small JPEG of the photo",
    )
    def thumbnail(photo_id: str, policy: PolicyQuery = None) -> Response:
        row = find_row(photo_id, profile_for(policy))
        try:
            jpeg = cache.get(row["path"], _fingerprint(row))
        except PhotoChangedError as error:
            raise HTTPException(404, str(error)) from error
        if jpeg is None:
            raise HTTPException(404, "the photo cannot be read")
        return Response(
            jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
        )

    # -- pages ------------------------------------------------------------------------------
    def form(q: str, k: int, where: list[str], policy: str) -> str:
        filters = [w for w in where if w.strip()] + [""]
        filter_inputs = "".join(
            f'<label>Filter <input name="where" value="{esc(w)}" '
            f'placeholder="width&gt;=1000 or path~holiday"></label>'
            for w in filters
        )
        if len(allowed) > 1:
            options = "".join(
                f'<option value="{esc(name)}"{" selected" if name == policy else ""}>'
                f"{esc(name)}</option>"
                for name in allowed
            )
            policy_control = f'<label>Policy <select name="policy">{options}</select></label>'
        else:
            policy_control = f'<input type="hidden" name="policy" value="{esc(policy)}">'
        return (
            '<form class="search" method="get" action="/" role="search">'
            f'<label>Describe the photo <input name="q" type="search" value="{esc(q)}" '
            'autofocus required maxlength="2000" placeholder="a dog catches a frisbee"></label>'
            f'<label>Results <input name="k" type="number" min="1" max="{MAX_K}" '
            f'value="{k}"></label>{filter_inputs}{policy_control}'
            '<button type="submit">Search</button></form>'
        )

    def html_page(title: str, body: str, status: int = 200) -> HTMLResponse:
        with lock:
            count = engine.store.count()
        header = (
            '<header><h1><a href="/">pixsearch</a></h1>'
            f'<p class="meta">{count} photos · {esc(engine.uri)}</p></header>'
        )
        return HTMLResponse(page(title, header + body, csp=SERVE_CSP), status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def search_page(
        q: str = "",
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        where: Annotated[list[str] | None, Query()] = None,
        policy: str | None = None,
        like: str | None = None,
    ) -> HTMLResponse:
        where = where or []
        try:
            profile = profile_for(policy)
        except HTTPException as error:
            return html_page(
                "pixsearch",
                form(q, k, where, default_policy) + _error(error.detail),
                error.status_code,
            )
        controls = form(q, k, where, profile.name)
        if not q.strip() and like is None:
            return html_page("pixsearch", controls)
        try:
            response = run_search(q, k, where, profile, None, like)
        except HTTPException as error:
            return html_page(f"pixsearch: {q}", controls + _error(error.detail), error.status_code)
        back = {"policy": profile.name, "q": q, "k": str(k), "where": where}
        subject = f"for “{esc(response.query)}”"
        if like is not None:
            back["like"] = like
            subject = "like this one" + (f" and “{esc(q.strip())}”" if q.strip() else "")
        summary = (
            ""
            if response.blocked
            else f'<p class="meta">{len(response.results)} photos {subject}'
            f" · policy {esc(profile.name)}</p>"
        )
        section = results_section(
            response,
            lambda result: thumbnail_src(result, profile),
            lambda result: _url("photo", result.id, back),
            lambda result: like_link(_like_url(result.id, k, where, profile.name)),
        )
        return html_page(
            f"pixsearch: {response.query}",
            f"{controls}{summary}<section id=answer>{section}</section>",
            451 if response.blocked else 200,
        )

    @app.get("/photo/{photo_id}", response_class=HTMLResponse, include_in_schema=False)
    def photo_page(
        photo_id: str,
        policy: str | None = None,
        q: str = "",
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        where: Annotated[list[str] | None, Query()] = None,
        like: str | None = None,
    ) -> HTMLResponse:
        try:
            profile = profile_for(policy)
            row = find_row(photo_id, profile)
        except HTTPException as error:
            return html_page("pixsearch: not found", _error(error.detail), error.status_code)
        result = _result(row)
        back = "/?" + urlencode(
            {"q": q, "k": k, "policy": profile.name, "where": where or []}
            | ({"like": like} if like else {}),
            doseq=True,
        )
        fields = [
            ("Path", result.path),
            ("Size", f"{result.width} × {result.height} pixels"),
            ("Format", result.format),
            ("File size", f"{human_size(result.size)} ({result.size} bytes)"),
            ("Modified", result.modified.isoformat()),
            ("Indexed", result.indexed_at.isoformat()),
            ("Caption", result.caption or "—"),
            ("Child score", f"{result.child_score:.3f}"),
            ("Restricted", "yes" if result.restricted else "no"),
            ("Id", result.id),
        ]
        details = "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in fields)
        src = esc(_url("photos", result.id, {"policy": profile.name}))
        why = changed(result)
        image = (
            f'<p class="changed" role="note">{esc(why)}</p>'
            if why
            else f'<a href="{src}"><img src="{src}" alt="{esc(photo_name(result.path))}"></a>'
        )
        body = (
            f'<article class="detail"><p><a href="{esc(back)}" id="back">← back to results</a></p>'
            f"<h2>{esc(photo_name(result.path))}</h2>"
            f'<p class="facts">{esc(facts(result))}</p>'
            f"{image}<dl>{details}</dl>"
            f"{like_link(_like_url(result.id, k, where or [], profile.name))}</article>"
        )
        return html_page(f"pixsearch: {photo_name(result.path)}", body)

    return app


def _result(row: dict[str, Any]) -> SearchResult:
    return SearchResult.from_row({**row, "score": 0.0})


def _fingerprint(row: dict[str, Any]) -> Fingerprint:
    return Fingerprint(row["content_hash"] or "", int(row["size"]))


def is_at_least_as_strict(profile: PolicyProfile, other: PolicyProfile) -> bool:
    """True when ``profile`` restricts everything ``other`` does (a visitor may choose it).

    >>> strict, none = get_profile("strict"), get_profile("none")
    >>> is_at_least_as_strict(strict, none), is_at_least_as_strict(none, strict)
    (True, False)
    """
    return (profile.blocks_child_queries or not other.blocks_child_queries) and (
        profile.excludes_restricted_photos or not other.excludes_restricted_photos
    )


def host_name(header: str) -> str:
    """The host of a Host header, lowercased, without port or IPv6 brackets ("" if malformed).

    >>> host_name("127.0.0.1:8765"), host_name("[::1]:8765"), host_name("LOCALHOST")
    ('127.0.0.1', '::1', 'localhost')
    >>> host_name("[::1"), host_name("evil.example:80")
    ('', 'evil.example')
    """
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :] if end > 0 else ""
        if end < 0 or (rest and not rest.startswith(":")):
            return ""
        return header[1:end]
    return header.split(":", 1)[0] if header.count(":") <= 1 else ""


def _url(kind: str, photo_id: str, params: dict[str, Any]) -> str:
    """``/kind/id?params`` (not yet HTML-escaped).

    >>> _url("photo", "ab12", {"policy": "none", "q": "a <cat>"})
    '/photo/ab12?policy=none&q=a+%3Ccat%3E'
    """
    return f"/{kind}/{quote(photo_id, safe='')}?{urlencode(params, doseq=True)}"


def _like_url(photo_id: str, k: int, where: list[str], policy: str) -> str:
    """The search page of photos like ``photo_id`` (not yet HTML-escaped).

    >>> _like_url("ab12", 10, ["width>=100"], "strict")
    '/?like=ab12&k=10&policy=strict&where=width%3E%3D100'
    """
    params = {"like": photo_id, "k": k, "policy": policy, "where": [w for w in where if w.strip()]}
    return "/?" + urlencode(params, doseq=True)


def _error(detail: object) -> str:
    return f'<p class="error" role="alert">{esc(detail)}</p>'


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pixsearch")
    except PackageNotFoundError:
        return "0"


@contextlib.contextmanager
def background_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, timeout: float = 30.0
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread; yields its base URL (a free port by default).

    For tests and notebooks; ``pixsearch serve`` runs uvicorn in the foreground.
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="pixsearch-serve", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = sock.getsockname()[1]
    try:
        yield f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
