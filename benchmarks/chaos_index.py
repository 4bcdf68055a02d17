"""Chaos: ``pixsearch index`` killed with SIGKILL at random moments loses and doubles nothing.

Copies ~300 practicum photos into a temporary folder, then runs ``pixsearch index`` on it 20
times, each killed with SIGKILL at a random moment: 0-0.6 s after its 0th-3rd commit of a new
table version (``PIXSEARCH_WRITE_BATCH=32``: a commit every 32 photos), so kills fall in
start-up, between, inside and after commits and inside ``optimize``; then once to the end.
Before each run photos are re-saved, touched, swapped, taken out and put back, so that every
run encodes, updates and removes (a run that completes before its kill is said so).
Prints the rows, duplicate ids and paths (must be 0), photos missing from the database and
rows of no photo (must be 0), and the indexes present against those a table of that size
must have (the scalar indexes from the first row; the vector index from
``VECTOR_INDEX_MIN_ROWS`` rows), then what ``pixsearch check`` says.

    python benchmarks/chaos_index.py                 # 300 photos, 20 kills
    python benchmarks/chaos_index.py --photos 100 --kills 5 --seed 1

Exits 1 when any figure that must be 0 is not, or an index is missing.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PRACTICUM, machine

os.environ.setdefault("LANCEDB_LOG", "error")
os.environ.setdefault("PIXSEARCH_WRITE_BATCH", "32")  # a commit every 32 photos: more to cut


def _versions(db: Path) -> int:
    """The photos table's latest version (0 before it exists); old manifests get cleaned up,
    so this reads the newest one's number (Lance's v2 names count down from 2**64 - 1)."""
    folder = db / "photos.lance" / "_versions"
    numbers = [int(p.stem) for p in folder.glob("*.manifest")] if folder.is_dir() else []
    return max((2**64 - 1 - n if n > 2**63 else n for n in numbers), default=0)


def _run(folder: Path, db: Path, kill: tuple[int, float] | None) -> tuple[str, float]:
    """One ``pixsearch index`` run; ``kill = (commits, seconds)``: SIGKILL it ``seconds`` after
    it committed ``commits`` new table versions (None: let it finish)."""
    pixsearch = shutil.which("pixsearch") or "pixsearch"
    started = time.perf_counter()
    before = _versions(db)
    process = subprocess.Popen(
        [pixsearch, "index", str(folder), "--db", str(db), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if kill is not None:
        commits, delay = kill
        while process.poll() is None and _versions(db) - before < commits:
            time.sleep(0.01)
        deadline = time.perf_counter() + delay
        while process.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.01)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return f"killed after {_versions(db) - before} commits", time.perf_counter() - started
    output, _ = process.communicate()
    lines = output.strip().splitlines()
    return f"finished: {lines[0] if lines else ''}", time.perf_counter() - started


def _disturb(folder: Path, held: Path, rng: random.Random) -> None:
    """Give the next run work of every kind: 40 photos re-saved (new content, re-encoded),
    5 touched (same content), 2 swapped, 5 taken out and the 5 taken out before put back."""
    from PIL import Image

    photos = sorted(folder.glob("*.jpg"))
    for path in rng.sample(photos, 40):
        with Image.open(path) as image:
            image.load()
        image.save(path, quality=rng.randint(70, 95))
    for path in rng.sample(photos, 5):
        os.utime(path, ns=(time.time_ns(), time.time_ns()))
    a, b = rng.sample(photos, 2)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    back = sorted(held.glob("*.jpg"))
    for path in rng.sample(sorted(folder.glob("*.jpg")), 5):
        path.rename(held / path.name)
    for path in back:
        path.rename(folder / path.name)


def verify(folder: Path, db: Path) -> tuple[list[str], bool]:
    """Lines describing the database against the folder, and whether all is well."""
    from pixsearch.db.store import _SCALAR_INDEXES, VECTOR_INDEX_MIN_ROWS, PhotoStore

    store = PhotoStore(db)
    rows = store.scan(["id", "path"]).to_pylist()
    ids = [row["id"] for row in rows]
    paths = [row["path"] for row in rows]
    on_disk = {str(path) for path in folder.glob("*.jpg")}
    present = {next(iter(index.columns)) for index in store.table.list_indices()}
    wanted = set(_SCALAR_INDEXES) if rows else set()
    if len(rows) >= VECTOR_INDEX_MIN_ROWS:
        wanted.add("vector")
    figures = {
        "rows": len(rows),
        "photos on disk": len(on_disk),
        "duplicate ids": len(ids) - len(set(ids)),
        "duplicate paths": len(paths) - len(set(paths)),
        "missing photos": len(on_disk - set(paths)),
        "rows of no photo": len(set(paths) - on_disk),
    }
    lines = [f"{name:>18}: {value}" for name, value in figures.items()]
    lines.append(
        f"{'indexes present':>18}: {', '.join(sorted(present)) or 'none'} "
        f"(a table of {len(rows)} rows needs: {', '.join(sorted(wanted))}; vector index from "
        f"{VECTOR_INDEX_MIN_ROWS:,} rows)"
    )
    missing_indexes = wanted - present
    lines.append(f"{'indexes missing':>18}: {', '.join(sorted(missing_indexes)) or 'none'}")
    healthy = (
        figures["rows"] == figures["photos on disk"]
        and not any(figures[k] for k in figures if k not in ("rows", "photos on disk"))
        and not missing_indexes
    )
    return lines, healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=19)
    args = parser.parse_args()
    if not PRACTICUM.is_dir():
        sys.exit(f"needs the practicum photos at {PRACTICUM}")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="pixsearch-chaos-"))
    folder, db, held = work / "photos", work / "db", work / "held"
    folder.mkdir()
    held.mkdir()
    for path in sorted(PRACTICUM.glob("*.jpg"))[: args.photos]:
        shutil.copyfile(path, folder / path.name)
    print(f"chaos: {args.photos} photos, {args.kills} SIGKILLs, seed {args.seed}, {machine()}")
    for run in range(1, args.kills + 1):
        if run > 1:
            _disturb(folder, held, rng)
        kill = (rng.randint(0, 3), rng.uniform(0.0, 0.6))
        outcome, seconds = _run(folder, db, kill)
        where = f"{kill[1]:.2f} s after commit {kill[0]}" if kill[0] else f"at {kill[1]:.2f} s"
        print(f"run {run:>2}: kill {where:>22} -> {outcome} ({seconds:.1f} s)")
    _disturb(folder, held, rng)
    outcome, seconds = _run(folder, db, None)
    print(f"final run: {outcome} ({seconds:.1f} s)")
    lines, healthy = verify(folder, db)
    print("\n".join(lines))
    check = subprocess.run(
        [shutil.which("pixsearch") or "pixsearch", "check", "--db", str(db)],
        capture_output=True,
        text=True,
    )
    print(f"pixsearch check (exit {check.returncode}):\n{check.stdout.strip()}")
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if healthy and check.returncode == 0 else 1)


if __name__ == "__main__":
    main()
