"""Issue 14: the content policy holds where pixels are shown and where a server is started.

Leak 1: a photo overwritten after indexing (same name, same size, mtime set back as ``touch -r``
does) is shown nowhere: not in a ``search --html`` gallery, not by ``serve`` (thumbnail, photo,
search page; also with a thumbnail cached before), not in ``eval --html``. Leak 3: ``serve``
applies the database's default policy, visitors cannot lower it unless the operator says so,
and ``--host ::1`` checks the Host header. Also: ``index`` and ``info`` say what ``strict`` hides.
Real photos (scikit-image's samples), the real bundle, real LanceDB; the CLI through CliRunner,
the server through TestClient.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import copy_demo_photos
from PIL import Image
from typer.testing import CliRunner

from pixsearch.search import ImageSearch
from pixsearch.search.cli import app as cli_app
from pixsearch.search.thumbnails import DEFAULT_SIZE, make_thumbnail

fastapi = pytest.importorskip("fastapi", reason="the serve tests need the [serve] extra")
from fastapi.testclient import TestClient  # noqa: E402

from pixsearch.search.serve import create_app  # noqa: E402
from pixsearch.search.thumbnails import ThumbnailCache  # noqa: E402

runner = CliRunner()
TARGET = "IMG_0001.jpg"
"""The indexed photo (scikit-image's rocket on its launch pad) that a camera later overwrites."""
QUERY = "a rocket launch"
DATA_IMG = re.compile(r'src="(data:image/jpeg;base64,[A-Za-z0-9+/=]+)"')


def overwrite_keeping_size_and_mtime(target: Path, source: Path) -> None:
    """Put ``source``'s picture into ``target`` as a JPEG of exactly ``target``'s size and with
    its mtime: what a size + mtime check cannot tell from the indexed file."""
    before = target.stat()
    with Image.open(source) as image:
        picture = image.convert("RGB")
    for quality in range(90, 10, -10):
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= before.st_size:
            break
    data = buffer.getvalue()
    assert len(data) <= before.st_size
    target.write_bytes(data + b"\0" * (before.st_size - len(data)))  # decoders stop at EOI
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = target.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def index_with_one_restricted(photos: Path, db: Path) -> dict[str, str]:
    """Index through the CLI; only astronaut.png restricted (the web and gallery layers are
    under test, not the classifier). Returns file name -> row id."""
    done = runner.invoke(cli_app, ["index", str(photos), "--db", str(db), "-q"])
    assert done.exit_code == 0, done.output
    engine = ImageSearch(db)
    ids = {Path(r["path"]).name: r["id"] for r in engine.store.scan(["id", "path"]).to_pylist()}
    engine.store.update_where(None, {"restricted": False})
    engine.store.update_where(f"id = '{ids['astronaut.png']}'", {"restricted": True})
    return ids


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = copy_demo_photos(tmp_path / "photos")
    (folder / "rocket.jpg").rename(folder / TARGET)
    return folder


# -- leak 1: pixels must be the indexed ones -------------------------------------------------------
def test_a_photo_overwritten_after_indexing_is_shown_nowhere(photos: Path, tmp_path: Path) -> None:
    from pixsearch.exporter.evaluate import evaluate_search, write_show_html

    db = tmp_path / "db"
    ids = index_with_one_restricted(photos, db)
    target_id = ids[TARGET]
    client = TestClient(create_app(ImageSearch(db), thumbnails=ThumbnailCache(tmp_path / "tc")))
    warm = client.get(f"/thumbnails/{target_id}")  # cached while the file is the indexed one
    assert warm.status_code == 200
    queries = tmp_path / "queries.csv"
    queries.write_text(f"|query_id|query_text|image\n0|q1|{QUERY}|{TARGET}\n", encoding="utf-8")
    evaluated = evaluate_search(queries, photos, policy="none")
    assert Path(evaluated.per_query[0]["best"]).name == TARGET

    overwrite_keeping_size_and_mtime(photos / TARGET, photos / "astronaut.png")
    new_pixels = make_thumbnail(photos / TARGET, DEFAULT_SIZE)

    # pixsearch search --html
    page_file = tmp_path / "x.html"
    found = runner.invoke(
        cli_app, ["search", QUERY, "--db", str(db), "-k", "5", "--html", str(page_file)]
    )
    assert found.exit_code == 0, found.output
    page = page_file.read_text("utf-8")
    card = page[page.index(f'data-id="{target_id}"') :].split("</li>")[0]
    assert "changed since it was indexed" in card and "<img" not in card, card
    assert "file://" not in card  # no link to the file either
    shown = [base64.b64decode(uri.split(",", 1)[1]) for uri in DATA_IMG.findall(page)]
    assert len(shown) == 4 and new_pixels not in shown

    # pixsearch serve: thumbnail (cached before), photo, search page, detail page
    for route in (f"/thumbnails/{target_id}", f"/photos/{target_id}"):
        refused = client.get(route)
        assert refused.status_code == 404, route
        assert "changed since it was indexed" in refused.json()["detail"]
    fresh = TestClient(create_app(ImageSearch(db), thumbnails=ThumbnailCache(tmp_path / "t2")))
    assert fresh.get(f"/thumbnails/{target_id}").status_code == 404
    results = fresh.get("/", params={"q": QUERY, "k": 5}).text
    assert f"/thumbnails/{target_id}" not in results and "changed since it was indexed" in results
    detail = fresh.get(f"/photo/{target_id}").text
    assert f"/photos/{target_id}" not in detail and "changed since it was indexed" in detail

    # pixsearch eval --html
    shown_page = write_show_html(evaluated, tmp_path / "eval.html", photos, 1)
    text = shown_page.read_text("utf-8")
    assert "changed since it was indexed" in text and "<img" not in text

    # after pixsearch index the new content is judged and shown (under the policy it gets)
    assert runner.invoke(cli_app, ["index", str(photos), "--db", str(db), "-q"]).exit_code == 0
    assert fresh.get(f"/thumbnails/{target_id}", params={"policy": "strict"}).status_code in (
        200,
        404,  # 404 only as "no such photo": the classifier may restrict it now
    )


# -- leak 3: serve applies the database's policy; visitors cannot lower it -------------------------
@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``pixsearch serve`` as run from the CLI, with uvicorn.run catching the app it built."""
    import uvicorn

    caught: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: caught.update(app=app, **options))
    return caught


def serve(served: dict[str, Any], *args: str) -> TestClient:
    result = runner.invoke(cli_app, ["serve", *args])
    assert result.exit_code == 0, result.output
    host = served.get("host", "127.0.0.1")
    return TestClient(served.pop("app"), base_url=f"http://{f'[{host}]' if ':' in host else host}")


def test_serve_applies_the_database_policy_and_visitors_cannot_lower_it(
    photos: Path, tmp_path: Path, served: dict[str, Any]
) -> None:
    db = tmp_path / "db"
    restricted = index_with_one_restricted(photos, db)["astronaut.png"]
    lift = {"q": "an astronaut in a space suit", "k": 14, "policy": "none"}

    client = serve(served, "--db", str(db))
    for route, params in (("/api/search", lift), (f"/photos/{restricted}", {"policy": "none"})):
        refused = client.get(route, params=params)
        assert refused.status_code == 403, route
        assert "--allow-policy-override" in refused.json()["detail"]
    assert client.get(f"/thumbnails/{restricted}", params={"policy": "none"}).status_code == 403
    page = client.get("/", params={**lift, "policy": "none"})
    assert page.status_code == 403 and restricted not in page.text
    assert "<select" not in client.get("/").text  # no policy to choose

    ImageSearch(db).set_default_policy("none")  # pixsearch policy none: the server follows it
    lenient = serve(served, "--db", str(db))
    answer = lenient.get("/api/search", params={k: v for k, v in lift.items() if k != "policy"})
    assert answer.json()["policy"] == "none"
    assert restricted in [r["id"] for r in answer.json()["results"]]
    assert lenient.get("/api/search", params={**lift, "policy": "strict"}).status_code == 200

    ImageSearch(db).set_default_policy("strict")
    opened = serve(served, "--db", str(db), "--allow-policy-override")
    assert opened.get(f"/photos/{restricted}", params={"policy": "none"}).status_code == 200
    assert "<select" in opened.get("/").text

    locked = serve(served, "--db", str(db), "--policy", "none", "--lock-policy")
    assert locked.get("/api/search", params={**lift, "policy": "strict"}).status_code == 403
    both = runner.invoke(
        cli_app, ["serve", "--db", str(db), "--lock-policy", "--allow-policy-override"]
    )
    assert both.exit_code == 2 and "contradict" in both.output


def test_serve_on_ipv6_loopback_checks_the_host_header(
    photos: Path, tmp_path: Path, served: dict[str, Any]
) -> None:
    db = tmp_path / "db"
    index_with_one_restricted(photos, db)
    client = serve(served, "--db", str(db), "--host", "::1")
    assert served["host"] == "::1"
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert client.get("/", headers={"host": "[::1]:8765"}).status_code == 200
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


# -- what the policy costs -------------------------------------------------------------------------
def test_index_and_info_say_how_many_photos_strict_hides(photos: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    done = runner.invoke(cli_app, ["index", str(photos), "--db", str(db), "-q"])
    assert done.exit_code == 0, done.output
    engine = ImageSearch(db)
    hidden = engine.store.count("restricted = true")
    line = f"policy strict (this database's default) hides {hidden} of 14 photos"
    assert line in done.stdout
    info = runner.invoke(cli_app, ["info", "--db", str(db), "--json"])
    assert json.loads(info.stdout)["hidden_by_strict"] == hidden
    assert re.search(
        rf"hidden_by_strict: {hidden}$",
        runner.invoke(cli_app, ["info", "--db", str(db)]).stdout,
        re.M,
    )
    # The count is the policy's, not a copy of its rule: flag two photos and it follows.
    engine.store.update_where(None, {"restricted": False})
    engine.store.update_where("path LIKE '%coffee%' OR path LIKE '%moon%'", {"restricted": True})
    again = runner.invoke(cli_app, ["index", str(photos), "--db", str(db), "--json"])
    assert json.loads(again.stdout)["hidden_by_strict"] == 2
    assert runner.invoke(cli_app, ["policy", "none", "--db", str(db)]).exit_code == 0
    lenient = runner.invoke(cli_app, ["index", str(photos), "--db", str(db), "-q"])
    assert "policy none (this database's default) hides none; strict would hide 2 of 14" in (
        lenient.stdout
    )
