"""Folder scanning: recursion, hidden entries, unsupported formats, broken and looping links."""

from __future__ import annotations

import os
from pathlib import Path

from pixsearch.indexer.scan import scan_photos


def names(result, root: Path) -> list[str]:
    return [Path(entry.path).relative_to(root).as_posix() for entry in result.files]


def test_scan_recurses_skips_hidden_and_reports_unsupported(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/one.jpg", "a/b/two.PNG", "a/b/three.webp", ".secret/x.jpg", "a/.h.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a" / "photo.heic").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    result = scan_photos(tmp_path)
    assert names(result, tmp_path) == ["a/b/three.webp", "a/b/two.PNG", "a/one.jpg"]  # by path
    assert [reason for _, reason in result.skipped] == ["unsupported format .heic"]
    with_hidden = scan_photos(tmp_path, include_hidden=True)
    assert ".secret/x.jpg" in names(with_hidden, tmp_path)


def test_scan_survives_broken_links_and_loops(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "p.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "missing.jpg", tmp_path / "real" / "broken.jpg")
    os.symlink(tmp_path, tmp_path / "real" / "loop")
    result = scan_photos(tmp_path)
    assert names(result, tmp_path) == ["real/p.jpg"]
    reasons = dict(result.skipped)
    assert reasons[str(tmp_path / "real" / "broken.jpg")] == "broken symbolic link"
    assert any("symlink loop" in reason for reason in reasons.values())


def test_scan_single_file(tmp_path: Path) -> None:
    photo = tmp_path / "x.jpg"
    photo.write_bytes(b"abc")
    result = scan_photos(photo)
    assert [entry.path for entry in result.files] == [str(photo)]
    assert result.files[0].size == 3
