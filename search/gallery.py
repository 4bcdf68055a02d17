"""Result galleries: one self-contained HTML page per search (``pixsearch search --html``).

Thumbnails are embedded as ``data:`` URIs, so the page can be mailed or opened anywhere; the
page loads nothing and runs no script (its Content-Security-Policy forbids both). Every
string that comes from a file name, a caption or a query is escaped. A photo whose file no
longer holds the bytes that were indexed gets no thumbnail and no link: its card says that it
changed since indexing (``pixsearch index`` refreshes it), so the page never shows pixels the
content policy did not judge.

>>> from pixsearch.search.results import SearchResponse
>>> page = render_gallery(SearchResponse("a <b>cat</b>", False, None, []))
>>> "a &lt;b&gt;cat&lt;/b&gt;" in page and "<b>cat" not in page
True
>>> "unavailable" in render_gallery(SearchResponse("a boy", True, "unavailable here", []))
True
"""

from __future__ import annotations

import html
import os
import shlex
import tempfile
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePath

from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.errors import PhotoChangedError
from pixsearch.indexer.fingerprint import open_indexed
from pixsearch.search.results import SearchResponse, SearchResult
from pixsearch.search.thumbnails import ThumbnailCache, data_uri

GALLERY_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'"
"""The saved page may show embedded images and its own styles; nothing else, no script."""

STYLE = """
:root { color-scheme: light dark; --muted: #6b7280; --card: #f6f7f9; --accent: #2563eb; }
@media (prefers-color-scheme: dark) { :root { --card: #1f2329; --muted: #9aa3ae; } }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1280px; padding: 1rem; }
header h1 { font-size: 1.35rem; margin: 0 0 .25rem; }
.meta, .path, .facts { color: var(--muted); font-size: .85rem; }
.grid { display: grid; gap: 1rem; list-style: none; padding: 0;
        grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); }
.card { background: var(--card); border-radius: 10px; overflow: hidden; }
.card .thumb { height: 190px; display: flex; align-items: center; justify-content: center;
               background: #0001; }
.card img { max-width: 100%; max-height: 190px; object-fit: contain; display: block; }
.card .body { padding: .5rem .7rem .7rem; }
.card .name { font-weight: 600; overflow-wrap: anywhere; }
.path { overflow-wrap: anywhere; }
.rank { font-weight: 700; color: var(--accent); margin-right: .35rem; }
.score { font-variant-numeric: tabular-nums; }
.badge { font-size: .75rem; border: 1px solid currentColor; border-radius: 4px; padding: 0 .3rem; }
.disclaimer { border-left: 4px solid #d97706; background: #d9770622; padding: 1rem;
              border-radius: 6px; font-size: 1.05rem; }
.empty, .error { padding: 1rem; border-radius: 6px; background: var(--card); }
.error { border-left: 4px solid #dc2626; }
.card .changed { padding: 1rem; text-align: center; color: #b45309; font-size: .85rem; }
.warnings { color: #b45309; }
form.search { display: flex; flex-wrap: wrap; gap: .5rem; align-items: end; margin: .5rem 0 1rem; }
form.search label { display: flex; flex-direction: column; font-size: .8rem; color: var(--muted); }
form.search input[name=q] { min-width: 22rem; font-size: 1rem; padding: .4rem .5rem; }
form.search input, form.search select, form.search button { font: inherit; padding: .35rem .5rem; }
.more { font-size: .8rem; margin-top: .3rem; overflow-wrap: anywhere; }
.detail img { max-width: 100%; max-height: 75vh; display: block; margin: .5rem 0; }
.detail dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
.detail dt { color: var(--muted); }
.detail dd { margin: 0; overflow-wrap: anywhere; }
"""

ThumbnailSource = Callable[[SearchResult], str | None]
"""Gives the ``src`` of a result's thumbnail (a ``data:`` URI or a URL), or None; raises
``PhotoChangedError`` when the photo must not be shown (the card says why instead)."""


def esc(value: object) -> str:
    """Text made safe for HTML content and quoted attributes (also unpaired surrogates).

    >>> esc('<script>alert("1")</script>.jpg')
    '&lt;script&gt;alert(&quot;1&quot;)&lt;/script&gt;.jpg'
    """
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    return html.escape(text, quote=True)


def human_size(size: int) -> str:
    """File size for people.

    >>> human_size(999), human_size(123_456), human_size(5_500_000)
    ('999 B', '121 KB', '5.2 MB')
    """
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def photo_name(path: str) -> str:
    """The file name of a stored path (works for POSIX and Windows paths).

    >>> photo_name("/photos/2024/cat.jpg"), photo_name("C:\\\\photos\\\\cat.jpg")
    ('cat.jpg', 'cat.jpg')
    """
    return PurePath(path.replace("\\", "/")).name or path


def facts(result: SearchResult) -> str:
    """One line of key metadata: size in pixels, format, file size, modified date.

    >>> from datetime import datetime, UTC
    >>> when = datetime(2024, 5, 1, tzinfo=UTC)
    >>> facts(SearchResult("/p/a.png", 0.3, "1", 640, 480, "PNG", 2048, when, when))
    '640×480 · PNG · 2 KB · modified 2024-05-01'
    """
    return (
        f"{result.width}×{result.height} · {result.format} · {human_size(result.size)}"
        f" · modified {result.modified:%Y-%m-%d}"
    )


def result_card(
    rank: int,
    result: SearchResult,
    *,
    image_src: str | None,
    href: str | None = None,
    more_like: str = "",
    unavailable: str | None = None,
) -> str:
    """One result as an ``<li>`` card: thumbnail, rank, score, name, path and metadata;
    ``more_like`` is its "more like this" HTML (:func:`like_link`, :func:`like_command`).

    ``unavailable`` (why the photo is not shown, e.g. it changed since indexing) replaces the
    thumbnail and the links to the photo.
    """
    name = esc(photo_name(result.path))
    if unavailable:
        image = f'<span class="changed" role="note">{esc(unavailable)}</span>'
        href = None
    elif image_src:
        image = f'<img src="{esc(image_src)}" alt="{name}" loading="lazy">'
    else:
        image = '<span class="meta">no preview</span>'
    link_open, link_close = (f'<a href="{esc(href)}">', "</a>") if href else ("", "")
    caption = f'<div class="caption">{esc(result.caption)}</div>' if result.caption else ""
    restricted = ' <span class="badge">restricted</span>' if result.restricted else ""
    return (
        f'<li class="card" data-rank="{rank}" data-id="{esc(result.id)}">'
        f'<div class="thumb">{link_open}{image}{link_close}</div>'
        f'<div class="body"><div><span class="rank">#{rank}</span>'
        f'<span class="score" title="cosine similarity">{result.score:.3f}</span>{restricted}</div>'
        f'<div class="name">{link_open}{name}{link_close}</div>'
        f'<div class="path">{esc(result.path)}</div>'
        f'<div class="facts">{esc(facts(result))}</div>{caption}{more_like}</div></li>'
    )


def like_link(href: str) -> str:
    """A "more like this" link (a server's search for photos like a result).

    >>> like_link("/?like=ab12&k=10")
    '<a class="more" href="/?like=ab12&amp;k=10">more like this</a>'
    """
    return f'<a class="more" href="{esc(href)}">more like this</a>'


def like_command(path: str, db: str | None = None) -> str:
    """A saved page cannot search: its "more like this" is the command that does.

    >>> "<code>pixsearch search --like &#x27;/p/my cat.png&#x27; --db /db</code>" in like_command(
    ...     "/p/my cat.png", "/db"
    ... )
    True
    """
    command = f"pixsearch search --like {shlex.quote(path)}"
    if db:
        command += f" --db {shlex.quote(db)}"
    return f'<div class="more">more like this: <code>{esc(command)}</code></div>'


def results_section(
    response: SearchResponse,
    thumbnail: ThumbnailSource,
    href: Callable[[SearchResult], str | None] | None = None,
    more_like: Callable[[SearchResult], str] | None = None,
) -> str:
    """The disclaimer (blocked query), a 'no photos' note, or the grid of result cards.

    ``thumbnail`` gives each card's image ``src``, ``href`` (optional) the target of its link,
    ``more_like`` (optional) its "more like this" HTML.
    """
    if response.blocked:
        return f'<p class="disclaimer" role="alert">{esc(response.message)}</p>'
    warnings = "".join(f'<p class="warnings">{esc(w)}</p>' for w in response.warnings)
    if not response.results:
        return f'{warnings}<p class="empty">No photos match.</p>'
    cards = "".join(
        _card(rank, result, thumbnail, href, more_like)
        for rank, result in enumerate(response.results, start=1)
    )
    return f'{warnings}<ol class="grid" id="results">{cards}</ol>'


def _card(
    rank: int,
    result: SearchResult,
    thumbnail: ThumbnailSource,
    href: Callable[[SearchResult], str | None] | None,
    more_like: Callable[[SearchResult], str] | None,
) -> str:
    like = more_like(result) if more_like else ""
    try:
        src = thumbnail(result)
    except PhotoChangedError as error:
        return result_card(rank, result, image_src=None, more_like=like, unavailable=str(error))
    return result_card(
        rank, result, image_src=src, href=href(result) if href else None, more_like=like
    )


def page(title: str, body: str, *, csp: str = GALLERY_CSP) -> str:
    """A complete HTML document with the shared styles; ``title`` is escaped, ``body`` not."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def render_gallery(
    response: SearchResponse,
    thumbnail: ThumbnailSource | None = None,
    *,
    generated_at: datetime | None = None,
    db: str | None = None,
) -> str:
    """The self-contained HTML page of one search response.

    ``thumbnail`` gives each result's image ``src`` (normally a ``data:`` URI; see
    :func:`embedded_thumbnails`); without it the cards show no preview. Each card shows the
    "more like this" command (with ``--db db`` when given).
    """
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    count = "blocked" if response.blocked else f"{len(response.results)} photos"
    header = (
        f"<header><h1>pixsearch: “{esc(response.query)}”</h1>"
        f'<p class="meta">{esc(count)} · policy {esc(response.policy)} · {esc(when)}</p></header>'
    )
    body = header + results_section(
        response,
        thumbnail or _no_preview,
        lambda result: _file_uri(result.path),
        lambda result: like_command(result.path, db),
    )
    return page(f"pixsearch: {response.query}", f"<main>{body}</main>")


def embedded_thumbnails(cache: ThumbnailCache | None = None) -> ThumbnailSource:
    """A thumbnail source that embeds each photo as a ``data:`` URI (None if undecodable);
    raises ``PhotoChangedError`` for a photo whose file is not the one indexed."""
    cache = cache or ThumbnailCache()

    def source(result: SearchResult) -> str | None:
        jpeg = cache.get(result.path, result.fingerprint)
        return data_uri(jpeg) if jpeg is not None else None

    return source


def save_gallery(
    response: SearchResponse,
    path: str | os.PathLike[str],
    *,
    cache: ThumbnailCache | None = None,
    db: str | None = None,
) -> Path:
    """Write the gallery page of ``response`` to ``path``; returns the absolute path.

    ``db``: the database searched (named in each card's "more like this" command). Raises
    ``InvalidInputError`` when the file cannot be written.
    """
    target = Path(path).expanduser().absolute()
    text = render_gallery(response, embedded_thumbnails(cache), db=db)
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InvalidInputError(
            f"cannot write the gallery to {target}: {error.strerror or error}"
        ) from error
    return target


def temporary_page() -> Path:
    """A new empty ``.html`` file in the temporary folder (for ``--open`` without ``--html``)."""
    handle, name = tempfile.mkstemp(prefix="pixsearch-", suffix=".html")
    os.close(handle)
    return Path(name)


def open_in_browser(path: Path, opener: Callable[[str], object] | None = None) -> str:
    """Open a saved page in the default browser (``webbrowser.open``); returns its URI."""
    uri = path.absolute().as_uri()
    (opener or webbrowser.open)(uri)
    return uri


def _no_preview(result: SearchResult) -> None:
    """No thumbnail, but the card links to the file only when it is still the one indexed."""
    with open_indexed(result.path, result.fingerprint):
        return None


def _file_uri(path: str) -> str | None:
    try:
        return Path(path).as_uri()
    except ValueError:  # a relative or odd path: no link rather than a wrong one
        return None


__all__ = [
    "GALLERY_CSP",
    "embedded_thumbnails",
    "esc",
    "like_command",
    "like_link",
    "open_in_browser",
    "page",
    "render_gallery",
    "result_card",
    "save_gallery",
    "temporary_page",
]
