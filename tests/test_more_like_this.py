""" "More like this" on every result: ``serve``'s pages and API (``like=ID``) and the saved HTML
gallery (the command that searches), over the serve tests' database (astronaut.png restricted,
hostile file names)."""

from __future__ import annotations

import html
import re
import shlex
import shutil
from pathlib import Path

import pytest
from test_serve import RESTRICTED, assert_inert, build_indexed_db, check_documented
from typer.testing import CliRunner

from pixsearch.search import ImageSearch
from pixsearch.search.cli import app

pytest.importorskip("fastapi", reason="the serve tests need the [serve] extra")
from fastapi.testclient import TestClient

from pixsearch.search.serve import create_app

runner = CliRunner()
LIKE_LINK = re.compile(r'<a class="more" href="([^"]+)">more like this</a>')


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    return build_indexed_db(tmp_path_factory.mktemp("like-web"))


@pytest.fixture(scope="module")
def client(indexed) -> TestClient:
    return TestClient(create_app(ImageSearch(indexed[1]), allow_override=True))


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict:
    return client.get("/openapi.json").json()


def test_every_result_links_to_photos_like_it(client, indexed) -> None:
    ids = indexed[2]
    page = client.get("/", params={"q": "a cat", "k": 4, "where": "width>=10"})
    links = LIKE_LINK.findall(page.text)
    cards = re.findall(r'data-id="([^"]+)"', page.text)
    assert len(links) == len(cards) == 4
    for link, photo_id in zip(links, cards, strict=True):
        assert link == f"/?like={photo_id}&amp;k=4&amp;policy=strict&amp;where=width%3E%3D10"
    assert cards[0] == ids["chelsea.png"]
    followed = client.get(links[0].replace("&amp;", "&"))
    assert followed.status_code == 200
    assert re.findall(r'data-id="([^"]+)"', followed.text)[0] == ids["chelsea.png"]
    assert "photos like this one" in followed.text
    assert_inert(followed.text)


def test_the_photo_page_links_to_photos_like_it(client, indexed) -> None:
    photo_id = indexed[2]["coffee.png"]
    page = client.get(f"/photo/{photo_id}", params={"k": 6})
    assert LIKE_LINK.findall(page.text) == [f"/?like={photo_id}&amp;k=6&amp;policy=strict"]


def test_api_like_returns_the_photo_first(client, openapi, indexed) -> None:
    ids = indexed[2]
    response = client.get("/api/search", params={"like": ids["motorcycle_left.png"], "k": 3})
    assert response.status_code == 200
    check_documented(openapi, "/api/search", response)
    results = response.json()["results"]
    assert results[0]["id"] == ids["motorcycle_left.png"] and results[0]["score"] > 0.999
    refined = client.get("/api/search", params={"like": ids["chelsea.png"], "q": "coffee:2"})
    assert refined.json()["query"].endswith(" + coffee:2")  # q is added to the photo


def test_api_like_refuses_unknown_and_restricted_photos(client, openapi, indexed) -> None:
    restricted = indexed[2][RESTRICTED]
    for like in ("0000000000000000", "../../etc/passwd", restricted):
        response = client.get("/api/search", params={"like": like})
        assert response.status_code == 404, like  # a restricted photo's existence is not told
        check_documented(openapi, "/api/search", response)
    lifted = client.get("/api/search", params={"like": restricted, "policy": "none"})
    assert lifted.status_code == 200 and lifted.json()["results"][0]["id"] == restricted
    page = client.get("/", params={"like": restricted})
    assert page.status_code == 404 and '<li class="card"' not in page.text
    neither = client.get("/api/search")
    assert neither.status_code == 400 and "like" in neither.json()["detail"]


def test_a_like_id_is_never_read_as_a_file(client, indexed, tmp_path, monkeypatch) -> None:
    """A file in the server's folder named like an id is not a query photo."""
    photos = indexed[0]
    shutil.copyfile(photos / "coffee.png", tmp_path / "0123456789abcdef")
    monkeypatch.chdir(tmp_path)
    assert client.get("/api/search", params={"like": "0123456789abcdef"}).status_code == 404


def test_the_saved_gallery_gives_each_photo_its_command(indexed, tmp_path: Path) -> None:
    """A saved page cannot search: each card shows the shell command that does."""
    _, db, _ = indexed
    for query, name in (("a cat", "cats.html"), ("a photo", "hostile.html")):
        target = tmp_path / name
        args = ["search", query, "--db", str(db), "-k", "20", "--html", str(target)]
        assert runner.invoke(app, args).exit_code == 0
        page = target.read_text("utf-8")
        commands = [
            shlex.split(html.unescape(code))
            for code in re.findall(r'<div class="more">more like this: <code>(.+?)</code>', page)
        ]
        paths = [html.unescape(p) for p in re.findall(r'<div class="path">(.+?)</div>', page)]
        assert len(paths) == 16  # 17 photos, astronaut.png restricted, k=20
        assert commands == [
            ["pixsearch", "search", "--like", path, "--db", str(db)] for path in paths
        ]
        assert_inert(page)
