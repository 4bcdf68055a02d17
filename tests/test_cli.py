"""Every documented command, driven through typer's CliRunner, plus real subprocess runs.

Each command of the README has its help, a success and an error with its exit code here (the
research commands' runs live next to their code: test_workflow_steps, test_export,
test_joint_space, test_child_classifier, test_eval; serve's in test_serve).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import typer
from helpers import copy_demo_photos, noise_image
from typer.testing import CliRunner

from pixsearch.search import exit_codes
from pixsearch.search.cli import EXIT_BLOCKED, app
from pixsearch.search.cli_output import Progress

runner = CliRunner()
README = Path(__file__).resolve().parents[1] / "README.md"
EXE = shutil.which("pixsearch") or str(Path(sys.executable).with_name("pixsearch"))
RESEARCH = [
    "eda",
    "train",
    "export",
    "train-space",
    "train-multilingual",
    "train-policy",
    "train-tower",
    "retrain",
    "eval",
]
USER = ["index", "search", "info", "check", "policy", "reindex", "remove", "demo", "serve"]

# The README's commands and the tests that run each one (help is checked for all below).
TESTED = {
    "index": ["test_index_progress_lines_and_quiet", "test_index_failures_exit_1_printed_once"],
    "search": ["test_search_prints_ranked_paths", "test_search_without_results_exits_1"],
    "info": ["test_info_json_and_missing_database"],
    "check": ["test_check.py::test_an_overwritten_data_file_is_found_while_info_looks_healthy"],
    "policy": ["test_policy_command_shows_and_sets_the_default"],
    "reindex": ["test_reindex_and_remove"],
    "remove": ["test_reindex_and_remove"],
    "demo": ["test_demo_runs_offline"],
    "serve": ["test_serve.py::test_serve_without_the_extra_exits_7"],
    "eda": ["test_workflow_steps.py::test_cli_eda_reports_a_data_fault_with_its_exit_code"],
    "train": ["test_workflow_steps.py::test_cli_commands_registered_and_missing_torch_named"],
    "export": ["test_export_without_the_train_extra_exits_7"],
    "train-space": ["test_train_space_on_a_folder_without_data_exits_2"],
    "train-multilingual": ["test_multilingual.py::test_cli_on_a_folder_without_data_exits_2"],
    "train-policy": ["test_child_classifier.py::test_cli_reports_missing_data"],
    "train-tower": ["test_tower.py::test_train_tower_and_retrain_on_a_folder_without_data_exit_2"],
    "retrain": ["test_tower.py::test_train_tower_and_retrain_on_a_folder_without_data_exit_2"],
    "eval": ["test_eval.py"],
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    photos = copy_demo_photos(root / "photos")
    result = runner.invoke(app, ["index", str(photos), "--db", str(root / "db"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "added 14" in result.output
    # Ranking is under test here, not the content policy: this database defaults to none.
    assert runner.invoke(app, ["policy", "none", "--db", str(root / "db")]).exit_code == 0
    return photos, root / "db"


# -- help ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", USER + RESEARCH)
def test_every_command_has_plain_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "<bool>" not in result.output  # flags take no value
    typed = [line for line in result.output.splitlines() if re.match(r"^\s+-.*<[a-z ]+>", line)]
    assert not typed, f"options show a type label instead of a value name: {typed}"


def test_help_keeps_bracketed_text() -> None:
    """Rich markup used to eat "[default: ...]" and "pixsearch[serve]"."""
    index_help = runner.invoke(app, ["index", "--help"]).output
    assert "[default: $PIXSEARCH_DB, else" in index_help
    serve_help = runner.invoke(app, ["serve", "--help"]).output
    assert "pixsearch[serve]" in serve_help
    search_help = runner.invoke(app, ["search", "--help"]).output
    assert "[default: the" in search_help and "-0, --null" in search_help


def test_top_level_help_lists_user_commands_first_then_research_and_exit_codes() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    text = result.output
    research_at = text.index("Research commands")
    for command in USER:
        assert re.search(rf"^  {command} ", text[:research_at], re.M), command
    for command in RESEARCH:
        assert re.search(rf"^  {command} ", text[research_at:], re.M), command
    exits = text[text.index("Exit codes:") :]
    for code, meaning in exit_codes.TABLE:
        assert f"{code:<4} {meaning}" in exits


def test_readme_commands_are_registered_and_tested() -> None:
    readme = README.read_text("utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    named = {m for b in blocks for m in re.findall(r"(?:^|&& )pixsearch ([a-z-]+)", b, re.M)}
    registered = set(typer.main.get_command(app).commands)
    assert named <= registered and named == set(TESTED), named ^ set(TESTED)
    here = Path(__file__).parent
    for tests in TESTED.values():
        for test in tests:
            file, _, name = test.rpartition("::") if "::" in test else ("", "", test)
            if test.endswith(".py"):
                file, name = test, ""
            source = (here / (file or Path(__file__).name)).read_text("utf-8")
            assert not name or f"def {name}(" in source, test


def test_readme_lists_the_exit_codes_of_the_table() -> None:
    readme = README.read_text("utf-8")
    section = readme[readme.index("Exit codes") :]
    for code, meaning in exit_codes.TABLE:
        assert re.search(rf"^\| {code} \| {re.escape(meaning)} \|$", section, re.M), code


def test_stale_metadata_and_a_broken_plugin_are_reported_not_fatal(monkeypatch) -> None:
    import importlib.metadata as md

    from pixsearch.search.commands import ENTRY_POINT_GROUP, load_commands

    monkeypatch.setattr(md, "entry_points", lambda group: md.EntryPoints([]))
    assert "pip install -e ." in load_commands(typer.Typer())[0]
    broken = md.EntryPoint("broken", "pixsearch.search.no_such_module:register", ENTRY_POINT_GROUP)
    good = md.EntryPoint("serve", "pixsearch.search.serve_cli:register", ENTRY_POINT_GROUP)
    monkeypatch.setattr(md, "entry_points", lambda group: md.EntryPoints([broken, good]))
    app_ = typer.Typer()
    problems = load_commands(app_)
    assert len(problems) == 1 and problems[0].startswith("broken = ")
    assert [c.name for c in app_.registered_commands] == ["serve"]


def test_errors_carry_no_exit_codes() -> None:
    """The CLI owns the table: an ``exit_code`` attribute on an error class would be ignored."""
    root = Path(__file__).resolve().parents[1]
    found = [
        f"{path.relative_to(root)}:{number}"
        for folder in ("db", "indexer", "search", "exporter")
        for path in (root / folder).rglob("*.py")
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1)
        if re.match(r"\s+exit_code\s*[:=]", line)
    ]
    assert not found, f"exit codes belong in search/exit_codes.py (_BY_ERROR): {found}"


def test_help_is_cheap() -> None:
    """Listing the commands imports neither torch nor LanceDB nor the exporter's modules'
    dependencies (the entry points load only typer modules)."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from pixsearch.search.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "heavy = {'torch', 'lancedb', 'pandas', 'sklearn', 'fastapi'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- search ----------------------------------------------------------------------------------
def test_search_prints_ranked_paths(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "a cat", "--db", str(db), "-k", "2"])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0].split()
    assert first[0] == "1" and first[2].endswith("chelsea.png")


def test_search_json_shape(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "a motorcycle", "--db", str(db), "--json", "-k", "3"])
    payload = json.loads(result.stdout)
    assert payload["query"] == "a motorcycle" and payload["blocked"] is False
    assert payload["message"] is None and len(payload["results"]) == 3
    assert payload["results"][0]["path"].endswith("motorcycle_left.png")


@pytest.mark.parametrize("value", ["JPEG", "jpeg", "Jpg"])
def test_search_paths_only_and_where_format_any_case(indexed, value: str) -> None:
    _, db = indexed
    result = runner.invoke(
        app, ["search", "a photo", "--db", str(db), "--paths-only", "--where", f"format={value}"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and all(line.endswith(".jpg") for line in lines)


def test_search_without_results_exits_1(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "a cat", "--db", str(db), "--where", "width>99999"])
    assert result.exit_code == exit_codes.NOTHING_FOUND == 1
    assert "no photos match" in result.stderr and result.stdout == ""
    as_json = runner.invoke(
        app, ["search", "a cat", "--db", str(db), "-w", "width>99999", "--json"]
    )
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["results"] == []


def test_bad_filter_exits_2_with_field_list(indexed) -> None:
    _, db = indexed
    result = runner.invoke(app, ["search", "x", "--db", str(db), "--where", "colour=red"])
    assert result.exit_code == 2
    assert "valid fields" in result.output
    assert result.stderr.count("valid fields") == 1  # said once


def test_blocked_query_has_its_own_exit_code_and_json(indexed) -> None:
    _, db = indexed
    result = runner.invoke(
        app, ["search", "a little boy", "--db", str(db), "--json", "--policy", "strict"]
    )
    assert result.exit_code == EXIT_BLOCKED == 10
    payload = json.loads(result.stdout)
    assert payload["blocked"] is True and payload["results"] == []
    assert "unavailable" in payload["message"]
    open_result = runner.invoke(
        app, ["search", "a little boy", "--db", str(db), "--policy", "none", "--json"]
    )
    assert open_result.exit_code == 0 and json.loads(open_result.stdout)["results"]


def test_open_without_a_browser_says_where_the_gallery_is(indexed, tmp_path, monkeypatch) -> None:
    _, db = indexed
    monkeypatch.setattr("webbrowser.open", lambda uri, *a, **k: False)  # as on a headless box
    page = tmp_path / "g.html"
    result = runner.invoke(app, ["search", "a cat", "--db", str(db), "--html", str(page), "--open"])
    assert result.exit_code == 0, result.output
    assert "no web browser" in result.stderr and str(page) in result.stderr
    assert page.exists()


# -- file names ---------------------------------------------------------------------------------
ODD_NAMES = ["esc\x1b[31mred.jpg", "new\nline.jpg", "tab\tand space.jpg"]


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("odd")
    photos = root / "photos"
    photos.mkdir()
    demo = copy_demo_photos(root / "demo")
    for name, source in zip(ODD_NAMES, ["chelsea.png", "coffee.png", "rocket.jpg"], strict=True):
        shutil.copyfile(demo / source, photos / name)
    db = root / "db"
    result = runner.invoke(app, ["index", str(photos), "--db", str(db), "-q"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["policy", "none", "--db", str(db)]).exit_code == 0
    return photos, db


def test_paths_only_prints_exact_paths_into_a_pipe(odd_names) -> None:
    photos, db = odd_names
    result = runner.invoke(app, ["search", "a cat", "--db", str(db), "--paths-only", "-k", "3"])
    assert result.exit_code == 0
    assert f"{photos}/esc\x1b[31mred.jpg\n".encode() in result.stdout_bytes


def test_null_separates_paths_with_nul_bytes(odd_names) -> None:
    photos, db = odd_names
    result = runner.invoke(app, ["search", "a photo", "--db", str(db), "-0", "-k", "3"])
    assert result.exit_code == 0
    paths = result.stdout_bytes.split(b"\0")
    assert paths[-1] == b"" and sorted(paths[:-1]) == sorted(
        os.fsencode(photos / name) for name in ODD_NAMES
    )


def test_terminal_output_escapes_control_characters(odd_names) -> None:
    """A real terminal (a pty): names are shown escaped, never as escape sequences."""
    import pty

    _, db = odd_names
    leader, follower = pty.openpty()
    done = subprocess.run(
        [EXE, "search", "a photo", "--db", str(db), "-k", "3"],
        stdout=follower,
        stderr=subprocess.PIPE,
        timeout=120,
        check=False,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert done.returncode == 0, done.stderr
    text = out.decode()
    assert "\x1b[31m" not in text and "esc\\x1b[31mred.jpg" in text
    assert "new\\x0aline.jpg" in text and "tab\\x09and space.jpg" in text


def test_index_json_with_a_non_utf8_name_is_valid_and_round_trips(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    noise_image(Path(os.fsdecode(odd)), 1)
    noise_image(folder / "ok.png", 2)
    result = runner.invoke(app, ["index", str(folder), "--db", str(tmp_path / "db"), "--json"])
    raw = result.stdout_bytes
    payload = json.loads(raw.decode("utf-8"))  # strict UTF-8: raises on a raw 0xE9 byte
    assert "\\udce9" in raw.decode("utf-8")
    paths = [os.fsencode(entry["path"]) for entry in payload["failed"] + payload["skipped"]]
    assert paths == [odd]
    assert result.exit_code == 1  # the file could not be indexed: listed, exit 1


# -- index -----------------------------------------------------------------------------------
def test_index_progress_lines_and_quiet(tmp_path: Path) -> None:
    photos = copy_demo_photos(tmp_path / "photos")
    shown = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "db")])
    assert shown.exit_code == 0, shown.output
    lines = shown.stderr.splitlines()
    assert lines[0] == f"indexing: scanning {photos}"
    assert re.fullmatch(r"indexing: 14/14 photos \(100%\), [\d.]+ photos/s", lines[-1])
    assert "added 14" in shown.stdout
    quiet = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "db2"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_progress_on_a_terminal_redraws_one_line() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    ticks = iter([0.0, 0.05, 1.0, 2.0])
    progress = Progress("indexing", stream=out, clock=lambda: next(ticks))
    progress.start("scanning /photos")
    for done in (0, 5, 50, 100):
        progress(done, 100)
    progress.close()
    frames = out.getvalue().split("\r\x1b[K")
    assert frames[1] == "indexing: scanning /photos"
    assert frames[2] == "indexing: 0/100 photos (0%), ETA ?"  # 5 came within 0.1 s: skipped
    assert frames[3] == "indexing: 50/100 photos (50%), 50.0 photos/s, ETA 1 s"
    assert frames[4] == "indexing: 100/100 photos (100%), 50.0 photos/s"
    assert frames[5] == ""  # cleared for the summary
    early = Progress("indexing", stream=io.StringIO(), clock=iter([0.0]).__next__)
    early(0, 100)  # 30 photos read ahead in half a second promise no rate yet
    assert early.line(30, 100, 0.5) == "indexing: 30/100 photos (30%), ETA ?"
    unknown = Progress("reindex", stream=io.StringIO(), clock=iter([0.0, 4.0]).__next__)
    unknown(0, 0)
    assert unknown.line(40, 0, 4.0) == "reindex: 40 photos (total unknown), 10.0 photos/s"


def test_index_failures_exit_1_printed_once(tmp_path: Path) -> None:
    noise_image(tmp_path / "ok.png", 1)
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    result = runner.invoke(app, ["index", str(tmp_path), "--db", str(tmp_path / "db"), "-q"])
    assert result.exit_code == exit_codes.NOTHING_FOUND == 1
    assert result.stderr.count("bad.jpg") == 1, result.stderr
    as_json = runner.invoke(app, ["index", str(tmp_path), "--db", str(tmp_path / "db"), "--json"])
    assert as_json.exit_code == 1
    payload = json.loads(as_json.stdout)
    assert payload["unchanged"] == 1 and payload["failed"][0]["path"].endswith("bad.jpg")


def test_large_photo_warning_of_pillow_is_not_shown(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    noise_image(tmp_path / "big.png", 1, size=(200, 200))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # 40k pixels: warns, below 2x
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["index", str(tmp_path), "--db", str(tmp_path / "db"), "-q"])
    assert result.exit_code == 0, result.output
    assert "added 1" in result.stdout
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["index", str(tmp_path / "nope"), "--db", str(tmp_path / "d")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    empty = runner.invoke(app, ["search", "a cat", "--db", str(tmp_path / "d")])
    assert empty.exit_code == 2 and "no pixsearch database at" in empty.output
    assert "pixsearch index" in empty.output and not (tmp_path / "d").exists()
    assert empty.stderr.startswith("error: ") and empty.stderr.count("\n") == 1


@pytest.mark.data
@pytest.mark.slow
def test_ctrl_c_during_index_says_what_was_saved_and_the_rerun_resumes(
    shared_data: Path, tmp_path: Path
) -> None:
    photos = shared_data / "practicum" / "train_images"
    db = tmp_path / "db"
    command = [EXE, "index", str(photos), "--db", str(db)]
    env = {**os.environ, "LANCEDB_LOG": "error"}
    child = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert child.stderr is not None
    first = child.stderr.readline().decode()  # "indexing: scanning ...": shown at once
    assert first.startswith("indexing: scanning")
    counted = child.stderr.readline().decode()  # the first count, after the scan
    assert re.match(r"indexing: 0/1000 photos", counted), counted
    time.sleep(2.0)  # well before the end (1000 photos take 10 s and more)
    child.send_signal(signal.SIGINT)
    _, rest = child.communicate(timeout=120)
    assert child.returncode == 130, rest
    message = rest.decode().strip().splitlines()[-1]
    match = re.search(
        r"interrupted after (\d+)/1000 photos: (\d+) new photos saved, the database holds (\d+)",
        message,
    )
    assert match and "run the same command again to resume" in message, message
    saved = int(match.group(3))
    assert int(match.group(2)) == saved  # an empty database before
    assert saved < 1000
    resumed = subprocess.run([*command, "--json"], capture_output=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["unchanged"] == saved and report["added"] == 1000 - saved  # the message was true


# -- the other commands -------------------------------------------------------------------------
def test_info_json_and_missing_database(indexed, tmp_path: Path) -> None:
    _, db = indexed
    result = runner.invoke(app, ["info", "--db", str(db), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["photos"] == 14
    table = runner.invoke(app, ["info", "--db", str(db)])
    assert table.exit_code == 0 and re.search(r"photos: 14$", table.stdout, re.M)


def test_reindex_and_remove(indexed, tmp_path: Path) -> None:
    photos, db = indexed
    copy = tmp_path / "db"
    shutil.copytree(db, copy)
    result = runner.invoke(app, ["reindex", "--db", str(copy), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 14
    shown = runner.invoke(app, ["reindex", "--db", str(copy)])
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^reindex \[local\]: 14/14 photos \(100%\)", shown.stderr, re.M)
    bad = runner.invoke(app, ["reindex", "--db", str(copy), "--engine", "spark"])
    assert bad.exit_code == 2 and "spark" in bad.stderr
    result = runner.invoke(app, ["remove", str(photos / "coins.png"), "--db", str(copy)])
    assert result.exit_code == 0 and "removed 1" in result.output


def test_demo_runs_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert 'pixsearch search "a cat"' in result.output
    assert "Under the default policy `strict`" in result.output
    assert "1.  " in result.output and "chelsea.png" in result.output


def test_demo_upgrades_its_own_database_made_with_an_older_bundle(tmp_path: Path, monkeypatch):
    from helpers import make_old_bundle_table

    from pixsearch.search import ImageSearch

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert runner.invoke(app, ["demo"]).exit_code == 0
    db = tmp_path / "pixsearch" / "demo" / "db"
    make_old_bundle_table(ImageSearch(db))
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "re-encoding it" in result.output and "chelsea.png" in result.output
    assert ImageSearch(db).search("a cat", k=1, policy="none").results
    elsewhere = tmp_path / "mine"
    shutil.copytree(db, elsewhere)
    make_old_bundle_table(ImageSearch(elsewhere))
    mine = runner.invoke(app, ["demo", "--db", str(elsewhere)])  # a named database: not touched
    assert mine.exit_code == 4 and "pixsearch reindex" in mine.output


def test_policy_command_shows_and_sets_the_default(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    missing = runner.invoke(app, ["policy", "--db", db])  # a read creates nothing
    assert missing.exit_code == 2 and "no pixsearch database at" in missing.output
    assert not (tmp_path / "db").exists()
    changed = runner.invoke(app, ["policy", "none", "--db", db])
    assert changed.exit_code == 0 and changed.output.strip().endswith("none")
    shown = runner.invoke(app, ["policy", "--db", db])
    assert shown.exit_code == 0 and shown.output.strip().endswith("none")
    bad = runner.invoke(app, ["policy", "lenient", "--db", db])
    assert bad.exit_code == 2 and "strict" in bad.output


def test_export_without_the_train_extra_exits_7(monkeypatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "optimum" else real_find_spec(name, *a),
    )
    result = runner.invoke(app, ["export", "--out", "/nonexistent"])
    assert result.exit_code == 7, result.output
    assert 'pip install "pixsearch[train]"' in result.stderr and "Traceback" not in result.output


def test_train_space_on_a_folder_without_data_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train-space", str(tmp_path), "--no-install"])
    assert result.exit_code == 2, result.output
    assert "flickr8k/manifest.csv" in result.stderr and "Traceback" not in result.stderr


def test_a_bug_is_reported_once_with_exit_9(monkeypatch, tmp_path: Path) -> None:
    from pixsearch.search.engine import ImageSearch

    def broken(self, *args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(ImageSearch, "stats", broken)
    result = runner.invoke(app, ["info", "--db", str(tmp_path / "db")])
    assert result.exit_code == exit_codes.OTHER_ERROR == 9
    assert "a bug in pixsearch" in result.stderr and "Traceback" in result.stderr


def test_installed_command_end_to_end(indexed) -> None:
    """The console script itself, as a user runs it, in a fresh process."""
    _, db = indexed
    env = {**os.environ, "LANCEDB_LOG": "error"}
    done = subprocess.run(
        [EXE, "search", "a cup of coffee", "--db", str(db), "--json", "-k", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["results"][0]["path"].endswith("coffee.png")


LEAN_SEARCH = """
import atexit, json, sys
out = sys.argv.pop(1)
def report():
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pandas", "lancedb"))
    with open(out, "w") as handle:
        json.dump(loaded, handle)
atexit.register(report)
from pixsearch.search.cli import main
sys.argv[0] = "pixsearch"
main()
"""


def test_search_command_imports_neither_pandas_nor_lancedb(indexed, tmp_path: Path) -> None:
    """`pixsearch search` in a fresh process: `import lance` would pull in pandas (~36 MB
    resident, ~0.3 s, unused by a search); the results are those of the in-process run."""
    _, db = indexed
    loaded = tmp_path / "modules.json"
    argv = ["search", "a cup of coffee", "--db", str(db), "--json", "-k", "3"]
    done = subprocess.run(
        [sys.executable, "-c", LEAN_SEARCH, str(loaded), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(loaded.read_text()) == []
    expected = json.loads(runner.invoke(app, argv).stdout)
    assert json.loads(done.stdout) == expected and len(expected["results"]) == 3


def test_pandas_still_imports_after_a_search_kept_it_out() -> None:
    """The block lasts only while the search's modules are imported; pandas and pyarrow's and
    lance's pandas conversions work afterwards in the same process."""
    script = """
import sys
from pixsearch.db.imports import import_without_pandas
import_without_pandas("pixsearch.search.engine")
assert "pandas" not in sys.modules
import lance, pandas as pd, pyarrow as pa
frame = pd.DataFrame({"a": [1, 2], "c": pd.Categorical(["x", "y"])})
assert pa.table(frame).column("c").type == pa.dictionary(pa.int8(), pa.large_string())
assert pa.table({"a": [3]}).to_pandas()["a"].tolist() == [3]
assert lance.write_dataset(frame[["a"]], sys.argv[1]).count_rows() == 2
"""
    with_tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    target = with_tmp / f"pixsearch-pandas-{os.getpid()}.lance"
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(target)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(target, ignore_errors=True)
    assert done.returncode == 0, done.stderr
