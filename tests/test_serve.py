"""``pixsearch serve``: the JSON API against its own OpenAPI schema, image serving by row id
only (traversal attempts, restricted rows), escaping of hostile file names and queries."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers import copy_demo_photos
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pixsearch.search import ImageSearch
from pixsearch.search.cli import app as cli_app

fastapi = pytest.importorskip("fastapi", reason="the serve tests need the [serve] extra")
jsonschema = pytest.importorskip("jsonschema", reason="the API tests validate with jsonschema")
from fastapi.testclient import TestClient  # noqa: E402

from pixsearch.search.serve import background_server, create_app  # noqa: E402
from pixsearch.search.thumbnails import CACHE_FOLDER  # noqa: E402

HOSTILE_DIR = "<script>alert(1)<"
"""This folder + the file ``script>.png`` make the path ``.../<script>alert(1)</script>.png``."""
HOSTILE_FILES = ("<img src=x onerror=alert(2)>.png", "\"'& quote.png")
RESTRICTED = "astronaut.png"
"""Flagged ``restricted`` in the fixture database (as if it showed a child)."""


def build_indexed_db(root: Path) -> tuple[Path, Path, dict[str, str]]:
    """Demo photos + hostile names indexed into ``root/db``; astronaut.png flagged restricted.

    Returns ``(photos, db, ids)`` with ``ids``: file name → row id.
    """
    photos = copy_demo_photos(root / "photos")
    (photos / HOSTILE_DIR).mkdir()
    shutil.copyfile(photos / "coffee.png", photos / HOSTILE_DIR / "script>.png")
    for name in HOSTILE_FILES:
        shutil.copyfile(photos / "moon.png", photos / name)
    engine = ImageSearch(root / "db")
    report = engine.index(photos)
    assert not report.failed, report.failed
    rows = engine.store.scan(["id", "path"]).to_pylist()
    ids = {Path(row["path"]).name: row["id"] for row in rows}
    # The web layer is under test, not the image classifier: exactly one photo is restricted.
    engine.store.update_where(None, {"restricted": False})
    engine.store.update_where(f"id = '{ids[RESTRICTED]}'", {"restricted": True})
    return photos, root / "db", ids


class TagCollector(HTMLParser):
    """Every start tag and attribute of a page, to prove that no script or handler got in."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_inert(page: str) -> None:
    """No script element, no event-handler attribute, no javascript: URL in ``page``."""
    collector = TagCollector()
    collector.feed(page)
    for tag, attrs in collector.tags:
        assert tag != "script", page
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, attrs)
            assert not (value or "").strip().lower().startswith("javascript:"), (tag, attrs)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    return build_indexed_db(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def engine(indexed) -> ImageSearch:
    return ImageSearch(indexed[1])


@pytest.fixture(scope="module")
def client(engine: ImageSearch) -> TestClient:
    return TestClient(create_app(engine))


@pytest.fixture(scope="module")
def open_client(engine: ImageSearch) -> TestClient:
    """A server whose operator lets visitors choose any policy (--allow-policy-override)."""
    return TestClient(create_app(engine, allow_override=True))


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def check_documented(openapi: dict[str, Any], path: str, response: Any) -> None:
    """The status code is documented for ``path`` and the JSON body matches its schema."""
    responses = openapi["paths"][path]["get"]["responses"]
    assert str(response.status_code) in responses, (response.status_code, response.text)
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": openapi["components"]},
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(response.json())


# -- JSON API -------------------------------------------------------------------------------
def test_api_search_matches_the_cli_json_and_the_schema(client, openapi, engine) -> None:
    response = client.get("/api/search", params={"q": "a cat", "k": 3})
    assert response.status_code == 200
    check_documented(openapi, "/api/search", response)
    payload = response.json()
    assert payload["results"][0]["path"].endswith("chelsea.png")
    assert payload == engine.search("a cat", k=3).to_dict()
    runner_output = CliRunner().invoke(
        cli_app, ["search", "a cat", "-k", "3", "--db", engine.uri, "--json"]
    )
    assert runner_output.exit_code == 0
    cli = json.loads(runner_output.stdout)
    assert cli.keys() == payload.keys()
    assert [r.keys() for r in cli["results"]] == [r.keys() for r in payload["results"]]
    assert [r["path"] for r in cli["results"]] == [r["path"] for r in payload["results"]]


def test_api_models_cover_every_result_field(openapi) -> None:
    schemas = openapi["components"]["schemas"]
    from datetime import UTC, datetime

    from pixsearch.search.results import SearchResponse, SearchResult

    now = datetime.now(UTC)
    result = SearchResult("/p.png", 0.5, "ab", 1, 1, "PNG", 1, now, now)
    assert set(schemas["Photo"]["properties"]) == set(result.to_dict())
    assert set(schemas["Photo"]["required"]) == set(result.to_dict())
    response = SearchResponse("q", False, None, [result])
    assert set(schemas["SearchAnswer"]["properties"]) == set(response.to_dict())
    assert schemas["Photo"]["additionalProperties"] is False


def test_api_blocked_query_is_451_with_the_disclaimer(client, open_client, openapi) -> None:
    response = client.get("/api/search", params={"q": "a little boy"})
    assert response.status_code == 451
    check_documented(openapi, "/api/search", response)
    payload = response.json()
    assert payload["blocked"] is True and payload["results"] == []
    assert "unavailable" in payload["message"]
    refused = client.get("/api/search", params={"q": "a little boy", "policy": "none"})
    assert refused.status_code == 403  # a visitor cannot lift the server's policy
    check_documented(openapi, "/api/search", refused)
    lifted = open_client.get("/api/search", params={"q": "a little boy", "policy": "none"})
    assert lifted.status_code == 200 and lifted.json()["results"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"q": "a cat", "where": "colour=red"}, 400),
        ({"q": "a cat", "where": "width>=abc"}, 400),
        ({"q": "a cat", "where": "width<3000000000"}, 400),
        ({"q": "a cat", "min_score": "nan"}, 400),
        ({"q": "\u200b \x00"}, 400),
        ({"q": "a cat", "k": 0}, 422),
        ({"q": "a cat", "k": "ten"}, 422),
        ({"q": "a cat", "policy": "lenient"}, 422),
        ({}, 400),  # neither q nor like
    ],
)
def test_api_errors_are_documented(client, openapi, params, status) -> None:
    response = client.get("/api/search", params=params)
    assert response.status_code == status, response.text
    check_documented(openapi, "/api/search", response)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    q=st.text(max_size=40),
    k=st.integers(min_value=-2, max_value=1002),
    where=st.lists(
        st.sampled_from(["width>=100", "format=PNG", "path~<script>", "x", "size<'1'", ""]),
        max_size=2,
    ),
    policy=st.sampled_from([None, "strict", "none", "STRICT", "x"]),
)
def test_api_answers_only_documented_shapes(client, openapi, q, k, where, policy) -> None:
    """A small schemathesis: arbitrary parameters give a documented status and body."""
    params: dict[str, Any] = {"q": q, "k": k, "where": where}
    if policy is not None:
        params["policy"] = policy
    response = client.get("/api/search", params=params)
    assert response.status_code in (200, 400, 403, 422, 451), response.text
    check_documented(openapi, "/api/search", response)


def test_api_photo_metadata(client, openapi, indexed) -> None:
    ids = indexed[2]
    response = client.get(f"/api/photos/{ids['chelsea.png']}")
    assert response.status_code == 200
    check_documented(openapi, "/api/photos/{photo_id}", response)
    assert response.json()["path"].endswith("chelsea.png")
    missing = client.get("/api/photos/0000000000000000")
    assert missing.status_code == 404
    check_documented(openapi, "/api/photos/{photo_id}", missing)


def test_openapi_documents_the_api_and_hides_the_pages(openapi) -> None:
    assert {"/api/search", "/api/photos/{photo_id}", "/photos/{photo_id}"} <= set(openapi["paths"])
    assert "/" not in openapi["paths"]
    parameters = {p["name"] for p in openapi["paths"]["/api/search"]["get"]["parameters"]}
    assert parameters == {"q", "like", "k", "where", "policy", "min_score"}


# -- images by row id only ------------------------------------------------------------------
def test_photo_and_thumbnail_served_by_id(client, indexed) -> None:
    photos, db, ids = indexed
    photo = client.get(f"/photos/{ids['chelsea.png']}")
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"
    assert photo.content == (photos / "chelsea.png").read_bytes()
    assert photo.headers["x-content-type-options"] == "nosniff"
    thumb = client.get(f"/thumbnails/{ids['chelsea.png']}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.content[:3] == b"\xff\xd8\xff" and len(thumb.content) < len(photo.content)
    assert list((db / CACHE_FOLDER).glob("*.jpg")), "thumbnail not cached on disk"


TRAVERSALS = [
    "/photos/../../etc/passwd",
    "/photos/..%2F..%2F..%2Fetc%2Fpasswd",
    "/photos/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/photos/%252e%252e%252fetc%252fpasswd",
    "/photos/....//....//etc/passwd",
    "/photos/%2Fetc%2Fpasswd",
    "/photos/..%5c..%5cetc%5cpasswd",
    "/photos/%00",
    "/photos/0000000000000000",
    "/photos/x' OR '1'='1",
    "/thumbnails/..%2F..%2Fetc%2Fpasswd",
    "/thumbnails/0000000000000000",
    "/photo/..%2F..%2Fetc%2Fpasswd",
    "/api/photos/..%2F..%2Fetc%2Fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_are_404(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, (path, response.status_code)
    assert b"root:" not in response.content


def test_traversal_over_real_http_with_raw_paths(engine) -> None:
    """Paths sent byte for byte (no client-side normalisation) to a real uvicorn server."""
    with background_server(create_app(engine)) as url:
        address = urlsplit(url)
        for path in [*TRAVERSALS, "/photos/../../../../etc/passwd", "/photos/.."]:
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
            connection.putrequest("GET", path.replace(" ", "%20"), skip_accept_encoding=True)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read()
            connection.close()
            assert response.status in (400, 404), (path, response.status)
            assert b"root:" not in body


def test_restricted_photo_never_served_under_strict(client, open_client, indexed) -> None:
    photo_id = indexed[2][RESTRICTED]
    for path in (f"/photos/{photo_id}", f"/thumbnails/{photo_id}", f"/api/photos/{photo_id}"):
        assert client.get(path).status_code == 404, path
        assert client.get(path, params={"policy": "strict"}).status_code == 404, path
        assert client.get(path, params={"policy": "none"}).status_code == 403, path
        assert open_client.get(path).status_code == 404, path
        assert open_client.get(path, params={"policy": "none"}).status_code == 200, path
    assert client.get(f"/photo/{photo_id}").status_code == 404
    query = {"q": "an astronaut in a space suit", "k": 20}
    strict = client.get("/api/search", params=query).json()["results"]
    assert strict and all(r["id"] != photo_id for r in strict)
    lifted = open_client.get("/api/search", params={**query, "policy": "none"}).json()["results"]
    assert photo_id in [r["id"] for r in lifted]


def test_locked_policy_refuses_none(engine, indexed) -> None:
    locked = TestClient(create_app(engine, policies=["strict"]))
    photo_id = indexed[2][RESTRICTED]
    assert locked.get(f"/photos/{photo_id}", params={"policy": "none"}).status_code == 403
    refused = locked.get("/api/search", params={"q": "a little boy", "policy": "none"})
    assert refused.status_code == 403
    assert 'name="policy"' in locked.get("/").text  # a hidden field, no choice offered
    assert "<select" not in locked.get("/").text


def test_changed_file_is_not_served(client, indexed) -> None:
    """The bytes decide, not the mtime: a touched file is served, an edited one is not."""
    photos, _, ids = indexed
    grass = photos / "grass.png"
    before, data = grass.stat(), grass.read_bytes()
    os.utime(grass, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    try:
        assert client.get(f"/photos/{ids['grass.png']}").status_code == 200
        grass.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit, same size
        for route in (f"/photos/{ids['grass.png']}", f"/thumbnails/{ids['grass.png']}"):
            response = client.get(route)
            assert response.status_code == 404 and "changed" in response.json()["detail"]
    finally:
        grass.write_bytes(data)
        os.utime(grass, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert client.get(f"/photos/{ids['grass.png']}").status_code == 200


def test_other_host_names_are_refused(engine) -> None:
    guarded = TestClient(create_app(engine, allowed_hosts=["127.0.0.1", "localhost"]))
    assert guarded.get("/", headers={"host": "evil.example"}).status_code == 400
    assert guarded.get("/", headers={"host": "127.0.0.1:8765"}).status_code == 200


# -- pages ----------------------------------------------------------------------------------
def test_search_page_lists_results_with_thumbnails_and_links(client, indexed) -> None:
    page = client.get("/", params={"q": "a cat", "k": 4})
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    first = page.text.index('data-rank="1"')
    assert f'data-id="{indexed[2]["chelsea.png"]}"' in page.text[first : first + 80]
    assert page.text.count('<li class="card"') == 4
    assert f'src="/thumbnails/{indexed[2]["chelsea.png"]}?policy=strict"' in page.text
    assert_inert(page.text)


def test_search_page_blocked_shows_disclaimer(client) -> None:
    page = client.get("/", params={"q": "a little boy"})
    assert page.status_code == 451
    assert "This content is unavailable in your country due to local law" in page.text
    assert '<li class="card"' not in page.text


def test_search_page_bad_filter_shows_the_error(client) -> None:
    page = client.get("/", params={"q": "a cat", "where": "colour=red"})
    assert page.status_code == 400 and "valid fields" in page.text
    assert 'value="colour=red"' in page.text


def test_hostile_names_and_queries_are_escaped(client, indexed) -> None:
    ids = indexed[2]
    for where in ("path~script", "path~onerror", "path~quote"):
        page = client.get("/", params={"q": "a photo", "where": where, "k": 50})
        assert page.status_code == 200
        assert_inert(page.text)
    page = client.get("/", params={"q": "a photo", "where": "path~script", "k": 50}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page
    assert "<script>alert(1)" not in page
    attack = '"><script>alert(3)</script><img src=x onerror=alert(4)>'
    # The learned query detector happens to flag this markup (451, the disclaimer page): the
    # page must be inert and echo the query escaped whatever the policy decides.
    hostile = client.get("/", params={"q": attack})
    assert hostile.status_code in (200, 451)
    assert_inert(hostile.text)
    assert "&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in hostile.text
    results = client.get("/", params={"q": f"a dog {attack}"})
    assert results.status_code == 200
    assert_inert(results.text)
    assert "&quot;&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in results.text
    detail = client.get(f"/photo/{ids['script>.png']}", params={"q": "</a><script>alert(5)"})
    assert detail.status_code == 200
    assert_inert(detail.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in detail.text
    onerror = client.get(f"/photo/{ids['<img src=x onerror=alert(2)>.png']}")
    assert_inert(onerror.text)
    assert "&lt;img src=x onerror=alert(2)&gt;.png" in onerror.text


def test_detail_page_shows_photo_and_metadata(client, indexed) -> None:
    photo_id = indexed[2]["chelsea.png"]
    page = client.get(f"/photo/{photo_id}", params={"q": "a cat", "k": 3, "policy": "strict"})
    assert page.status_code == 200
    assert "<h2>chelsea.png</h2>" in page.text
    assert f'src="/photos/{photo_id}?policy=strict"' in page.text
    assert 'href="/?q=a+cat&amp;k=3&amp;policy=strict"' in page.text
    for label in ("Path", "Format", "File size", "Modified", "Restricted"):
        assert f"<dt>{label}</dt>" in page.text


# -- the command ----------------------------------------------------------------------------
def test_serve_help_and_lazy_import() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0 and "--port" in result.output and "Example" in result.output
    code = "import sys, pixsearch.search.cli; print('fastapi' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_serve_without_the_extra_exits_7(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(cli_app, ["serve", "--db", str(tmp_path)])
    assert result.exit_code == 7 and "pixsearch[serve]" in result.output


@pytest.mark.slow
def test_serve_command_end_to_end(indexed) -> None:
    """The installed console script serves a search, as a user runs it."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = shutil.which("pixsearch") or str(Path(sys.executable).with_name("pixsearch"))
    process = subprocess.Popen(
        [exe, "serve", "--db", str(indexed[1]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                connection.request("GET", "/api/search?q=a+cup+of+coffee&k=1")
                response = connection.getresponse()
                break
            except ConnectionRefusedError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status == 200
        # coffee.png or its byte-identical copy under the hostile name: the same vector
        first = json.loads(response.read())["results"][0]["path"]
        assert first.endswith(("/coffee.png", "/script>.png")), first
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/" in output
