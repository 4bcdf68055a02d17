"""``pixsearch search --html``: self-contained gallery pages, escaped, with embedded thumbnails;
and the thumbnail cache behind them."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import noise_image
from PIL import Image
from test_serve import RESTRICTED, assert_inert, build_indexed_db
from typer.testing import CliRunner

from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer.errors import PhotoChangedError
from pixsearch.search.cli import EXIT_BLOCKED, app
from pixsearch.search.gallery import (
    GALLERY_CSP,
    embedded_thumbnails,
    human_size,
    render_gallery,
    save_gallery,
)
from pixsearch.search.results import SearchResponse, SearchResult
from pixsearch.search.thumbnails import ThumbnailCache, make_thumbnail

runner = CliRunner()
WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DATA_IMG = re.compile(r'<img src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"')


def result(path: Path | str, score: float = 0.5, **fields: object) -> SearchResult:
    """A result for ``path`` as indexed now (its content hash and size, when the file exists)."""
    values = {"width": 64, "height": 48, "format": "PNG", "size": 1234, "caption": None}
    if Path(path).is_file():
        data = Path(path).read_bytes()
        values.update(content_hash=hashlib.sha256(data).hexdigest(), size=len(data))
    values.update(fields)
    return SearchResult(
        str(path),
        score,
        "id" + str(abs(hash(str(path))))[:8],
        modified=WHEN,
        indexed_at=WHEN,
        **values,
    )  # type: ignore[arg-type]


# -- rendering ------------------------------------------------------------------------------
def test_page_embeds_thumbnails_and_key_metadata(tmp_path: Path) -> None:
    first = noise_image(tmp_path / "first.png", 1, (640, 480))
    second = noise_image(tmp_path / "second.jpg", 2)
    response = SearchResponse(
        "a cat", False, None, [result(first, 0.4123), result(second, 0.3, format="JPEG")]
    )
    page = render_gallery(response, embedded_thumbnails(), generated_at=WHEN)
    images = DATA_IMG.findall(page)
    assert len(images) == 2
    thumb = Image.open(io.BytesIO(base64.b64decode(images[0])))
    assert thumb.format == "JPEG" and max(thumb.size) <= 256
    assert page.index("first.png") < page.index("second.jpg")
    size = human_size(first.stat().st_size)
    for text in ("#1", "#2", "0.412", str(first), f"64×48 · PNG · {size} · modified 2024-05-01"):
        assert text in page
    assert "2 photos · policy strict · 2024-05-01 12:00 UTC" in page
    assert f'content="{GALLERY_CSP}"'.replace("'", "&#x27;") in page
    assert 'src="http' not in page and "<link" not in page  # self-contained: loads nothing
    assert_inert(page)


def test_hostile_names_captions_and_queries_are_escaped(tmp_path: Path) -> None:
    folder = tmp_path / "<script>alert(1)<"
    folder.mkdir()
    hostile = noise_image(folder / "script>.png", 3)
    onerror = noise_image(tmp_path / "<img src=x onerror=alert(2)>.png", 4)
    response = SearchResponse(
        '"><script>alert(3)</script>',
        False,
        None,
        [result(hostile, caption="</div><script>alert(4)</script>"), result(onerror)],
        warnings=["<b>long</b>"],
    )
    page = render_gallery(response, embedded_thumbnails())
    assert_inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page
    assert "&lt;img src=x onerror=alert(2)&gt;.png" in page
    assert "&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "&lt;/div&gt;&lt;script&gt;alert(4)" in page and "&lt;b&gt;long" in page
    assert len(DATA_IMG.findall(page)) == 2


def test_blocked_query_shows_the_disclaimer_only() -> None:
    disclaimer = "This content is unavailable in your country due to local law"
    page = render_gallery(SearchResponse("a little boy", True, disclaimer, []))
    assert f'<p class="disclaimer" role="alert">{disclaimer}</p>' in page
    assert "<img" not in page and "blocked" in page


def test_no_results_and_unreadable_photos(tmp_path: Path) -> None:
    assert "No photos match." in render_gallery(SearchResponse("x", False, None, []))
    gone = SearchResponse("x", False, None, [result(tmp_path / "gone.png")])
    page = render_gallery(gone, embedded_thumbnails())
    assert "the photo file is gone: run pixsearch index" in page and "<img" not in page


def test_save_gallery_writes_utf8_and_reports_bad_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    photo = noise_image(tmp_path / "ünïcode €.png", 5)
    written = save_gallery(SearchResponse("ein Café", False, None, [result(photo)]), "g.html")
    assert written == tmp_path / "g.html"
    assert written.read_text("utf-8").count("ünïcode €.png") >= 2
    with pytest.raises(InvalidInputError, match="cannot write the gallery"):
        save_gallery(SearchResponse("x", False, None, []), tmp_path / "missing" / "g.html")


# -- thumbnails -----------------------------------------------------------------------------
def test_thumbnail_keeps_aspect_and_flattens_transparency(tmp_path: Path) -> None:
    Image.new("RGBA", (400, 100), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    thumb = Image.open(io.BytesIO(make_thumbnail(tmp_path / "clear.png", 128)))
    assert thumb.size == (128, 32) and thumb.mode == "RGB"
    assert thumb.getpixel((64, 16))[1] > 240  # transparent → white, not black


def test_cache_is_lru_in_memory_and_persists_on_disk(tmp_path: Path) -> None:
    photos = [noise_image(tmp_path / f"{i}.png", i) for i in range(3)]
    cache = ThumbnailCache(tmp_path / "cache", max_items=2)
    for photo in photos:
        assert cache.get(str(photo), result(photo).fingerprint) is not None
    assert len(cache) == 2 and len(list((tmp_path / "cache").glob("*.jpg"))) == 3
    # A fresh cache finds it on disk, keyed by the indexed content hash: the same file under
    # another name gets the same thumbnail.
    copy = tmp_path / "copy.png"
    copy.write_bytes(photos[0].read_bytes())
    fresh = ThumbnailCache(tmp_path / "cache")
    assert fresh.get(str(copy), result(photos[0]).fingerprint) == cache.get(
        str(photos[0]), result(photos[0]).fingerprint
    )
    # ...but a cached thumbnail is never returned for a file that is gone or changed.
    indexed = result(photos[0]).fingerprint
    photos[0].unlink()
    with pytest.raises(PhotoChangedError, match="gone"):
        fresh.get(str(photos[0]), indexed)
    cached = result(photos[1]).fingerprint  # its thumbnail is in memory and on disk
    data = photos[1].read_bytes()
    photos[1].write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(PhotoChangedError, match="changed since it was indexed"):
        cache.get(str(photos[1]), cached)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert cache.get(str(tmp_path / "junk.png"), result(tmp_path / "junk.png").fingerprint) is None


# -- the command ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    return build_indexed_db(tmp_path_factory.mktemp("gallery"))


def test_cli_html_gallery_for_a_real_query(indexed, tmp_path: Path) -> None:
    _, db, _ = indexed
    target = tmp_path / "cats.html"
    done = runner.invoke(app, ["search", "a cat", "--db", str(db), "-k", "3", "--html", target])
    assert done.exit_code == 0, done.output
    assert f"gallery: {target}" in done.output
    assert done.stdout.splitlines()[0].split()[2].endswith("chelsea.png")
    page = target.read_text("utf-8")
    assert len(DATA_IMG.findall(page)) == 3
    assert page.index("chelsea.png") < page.index('data-rank="2"')
    assert_inert(page)


def test_cli_html_escapes_hostile_names(indexed, tmp_path: Path) -> None:
    _, db, _ = indexed
    target = tmp_path / "hostile.html"
    args = ["search", "a photo", "--db", str(db), "--where", "path~<", "-k", "20"]
    done = runner.invoke(app, [*args, "--html", str(target)])
    assert done.exit_code == 0, done.output
    page = target.read_text("utf-8")
    assert page.count('<li class="card"') == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page
    assert "&lt;img src=x onerror=alert(2)&gt;.png" in page
    assert_inert(page)


def test_cli_html_hides_restricted_photos_under_strict(indexed, tmp_path: Path) -> None:
    _, db, _ = indexed
    args = ["search", "an astronaut in a space suit", "--db", str(db), "-k", "20", "--html"]
    assert runner.invoke(app, [*args, str(tmp_path / "strict.html")]).exit_code == 0
    assert RESTRICTED not in (tmp_path / "strict.html").read_text("utf-8")
    lifted = runner.invoke(app, [*args, str(tmp_path / "none.html"), "--policy", "none"])
    assert lifted.exit_code == 0
    assert RESTRICTED in (tmp_path / "none.html").read_text("utf-8")


def test_cli_html_blocked_query_writes_the_disclaimer(indexed, tmp_path: Path) -> None:
    _, db, _ = indexed
    target = tmp_path / "blocked.html"
    done = runner.invoke(app, ["search", "a little boy", "--db", str(db), "--html", str(target)])
    assert done.exit_code == EXIT_BLOCKED
    page = target.read_text("utf-8")
    assert "unavailable in your country" in page and "<img" not in page


def test_cli_open_uses_the_default_browser(indexed, tmp_path: Path, monkeypatch) -> None:
    _, db, _ = indexed
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda uri, *a, **k: opened.append(uri) or True)
    target = tmp_path / "open.html"
    args = ["search", "a cat", "--db", str(db), "-k", "1"]
    assert runner.invoke(app, [*args, "--html", str(target), "--open"]).exit_code == 0
    assert opened == [target.as_uri()]
    assert runner.invoke(app, [*args, "--open"]).exit_code == 0  # no --html: a temporary page
    temporary = Path(opened[1].removeprefix("file://"))
    try:
        assert "chelsea.png" in temporary.read_text("utf-8")
    finally:
        temporary.unlink()
