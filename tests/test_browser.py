"""The search page and the saved gallery in a real browser: headless Chromium (Debian's
package) driven by Playwright, against ``pixsearch serve`` on 127.0.0.1 with a free port.

Screenshots are written to ``test-artifacts/`` (gitignored). Skipped with a reason where
Chromium or playwright is missing, except in CI (``CI=true``), where that fails; the browser is
never downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PIXSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DISCLAIMER = "This content is unavailable in your country due to local law"

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
"""CI (``.ci/run`` sets ``CI=true``) installs Chromium and the dev extra: missing there is a
failure, not a skip."""


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
    _missing(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set PIXSEARCH_CHROMIUM)")
try:
    from playwright import sync_api
except ImportError:
    _missing("pip install playwright (dev extra)")
try:
    import fastapi  # noqa: F401
except ImportError:
    _missing("the browser tests need the [serve] extra")

from test_serve import build_indexed_db  # noqa: E402

from pixsearch.search import ImageSearch  # noqa: E402
from pixsearch.search.gallery import save_gallery  # noqa: E402
from pixsearch.search.serve import background_server, create_app  # noqa: E402


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    return build_indexed_db(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def base_url(indexed) -> Iterator[str]:
    # The operator lets visitors choose the policy (the page's menu is tested below).
    with background_server(create_app(ImageSearch(indexed[1]), allow_override=True)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page that records every dialog (alert) and every request to another origin."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


def search(page: Any, base_url: str, text: str) -> None:
    """Type ``text`` into the search box of the home page and press Enter."""
    page.goto(base_url + "/")
    page.fill("input[name=q]", text)
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("load")


def loaded_images(page: Any, selector: str) -> list[int]:
    """Natural widths of the images matching ``selector`` (0 = broken)."""
    return page.eval_on_selector_all(selector, "images => images.map(i => i.naturalWidth)")


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    page.screenshot(path=str(target), full_page=True)
    return target


def test_typed_query_shows_the_cat_first(page: Any, base_url: str) -> None:
    search(page, base_url, "a cat")
    assert page.url.startswith(base_url + "/?q=a+cat")
    cards = page.locator("#results li.card")
    assert cards.count() == 10
    assert cards.first.locator(".name").inner_text() == "chelsea.png"
    assert cards.first.locator(".rank").inner_text() == "#1"
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert all(width > 0 for width in loaded_images(page, "#results img"))
    assert screenshot(page, "browser-search-a-cat.png").stat().st_size > 10_000
    assert page.dialogs == []


def test_blocked_query_shows_the_disclaimer(page: Any, base_url: str) -> None:
    search(page, base_url, "a little boy")
    assert page.locator(".disclaimer").inner_text() == DISCLAIMER
    assert page.locator("#results").count() == 0
    screenshot(page, "browser-blocked-query.png")
    page.select_option("select[name=policy]", "none")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("load")
    assert page.locator(".disclaimer").count() == 0
    assert page.locator("#results li.card").count() > 0


def test_detail_view_of_a_result(page: Any, base_url: str) -> None:
    search(page, base_url, "a cat")
    page.locator("#results li.card").first.locator(".name a").click()
    page.wait_for_load_state("load")
    assert "/photo/" in page.url
    assert page.locator("h2").inner_text() == "chelsea.png"
    page.wait_for_function("() => document.querySelector('.detail img').naturalWidth > 0")
    assert loaded_images(page, ".detail img") == [451]  # chelsea.png is 451 × 300
    assert "451 × 300 pixels" in page.locator(".detail dl").inner_text()
    screenshot(page, "browser-detail-chelsea.png")
    page.click("#back")
    page.wait_for_load_state("load")
    assert page.locator("input[name=q]").input_value() == "a cat"
    assert page.locator("#results li.card .name").first.inner_text() == "chelsea.png"


def test_filter_control_and_hostile_names_stay_text(page: Any, base_url: str) -> None:
    page.goto(base_url + "/")
    page.fill("input[name=q]", "a photo")
    page.fill("input[name=where]", "path~<")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("load")
    paths = page.locator("#results .path").all_inner_texts()
    assert len(paths) == 2
    assert any(path.endswith("/<script>alert(1)</script>.png") for path in paths)
    assert any(path.endswith("/<img src=x onerror=alert(2)>.png") for path in paths)
    page.locator("#results li.card .name a", has_text="script>.png").click()
    page.wait_for_load_state("load")
    assert page.locator("h2").inner_text() == "script>.png"
    assert page.evaluate("() => document.scripts.length") == 0
    assert page.dialogs == []


def test_hostile_query_is_shown_not_run(page: Any, base_url: str) -> None:
    attack = '"><img src=x onerror=alert(1)><script>alert(2)</script>'
    search(page, base_url, attack)
    assert page.locator("input[name=q]").input_value() == attack
    assert page.evaluate("() => document.scripts.length") == 0
    assert page.dialogs == []


def test_saved_gallery_is_self_contained(page: Any, indexed, tmp_path: Path) -> None:
    """The --html page, opened from disk: images from data: URIs, no request anywhere."""
    engine = ImageSearch(indexed[1])
    target = save_gallery(engine.search("a cup of coffee", k=6), tmp_path / "coffee.html")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(target.as_uri())
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )
    assert len(loaded_images(page, "#results img")) == 6
    # script>.png is a byte-identical copy of coffee.png (the hostile name): the same score
    assert page.locator("#results li.card .name").first.inner_text() in (
        "coffee.png",
        "script>.png",
    )
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    screenshot(page, "browser-gallery-coffee.png")
