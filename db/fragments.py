"""Distributed writes in the Lance format: workers write fragments, one process commits them.

A :class:`FragmentWriter` (picklable, it travels to batch workers) writes rows as new data files
of a table; they stay invisible until the job's driver commits their metadata (JSON text, a few
hundred bytes per fragment) in one operation per checkpoint: an append, an upsert (the rows of
replaced ids deleted and the new fragments added in the same commit) or an overwrite (a rebuild
swapped in). No row passes through the driver.

>>> import tempfile, lancedb, pyarrow as pa
>>> folder = tempfile.mkdtemp()
>>> schema = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("v", pa.int64())])
>>> _ = lancedb.connect(folder).create_table("t", schema=schema)
>>> writer = FragmentWriter(f"{folder}/t.lance", schema)
>>> done = writer(pa.table({"id": ["a", "b"], "v": [1, 2]}))
>>> version = commit_fragments(writer.path, done)
>>> new = writer(pa.table({"id": ["b"], "v": [20]}))
>>> version = commit_fragments(writer.path, new, replaced_ids=["b"])
>>> import lance
>>> sorted(lance.dataset(writer.path).to_table().to_pylist(), key=lambda r: r["id"])
[{'id': 'a', 'v': 1}, {'id': 'b', 'v': 20}]
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pixsearch.db.errors import ConcurrentWriteError, DatabaseError

ROWS_PER_FILE = 1 << 20
"""Most rows in one data file (Lance's default); a shard's rows are one fragment."""
_DELETE_CHUNK = 500


@dataclass
class FragmentWriter:
    """Writes rows as uncommitted fragments of the table at ``path`` (``<db>/<table>.lance``).

    ``schema`` is the table's own schema (its field order), or with ``mode="overwrite"`` the
    schema the table will have once the fragments replace it; rows are cast to it.
    """

    path: str
    schema: pa.Schema
    storage_options: dict[str, str] | None = field(default=None)
    mode: str = "append"
    """``overwrite``: fragments of a new version of the table with ``schema`` (a swap)."""

    def __call__(self, rows: pa.Table | pa.RecordBatchReader) -> list[str]:
        """Write ``rows``; returns the new fragments' metadata as JSON texts (to commit)."""
        from lance.fragment import write_fragments

        if isinstance(rows, pa.Table):
            if rows.num_rows == 0:
                return []
            data: Any = rows.select(self.schema.names).cast(self.schema)
        else:
            data = pa.RecordBatchReader.from_batches(self.schema, self._cast(rows))
        try:
            fragments = write_fragments(
                data,
                self.path,
                schema=self.schema,
                mode=self.mode,
                max_rows_per_file=ROWS_PER_FILE,
                storage_options=self.storage_options,
            )
        except (OSError, RuntimeError, ValueError) as error:
            from pixsearch.db.errors import readable_error

            raise DatabaseError(f"could not write photos: {readable_error(error)}") from error
        return [json.dumps(fragment.to_json()) for fragment in fragments]

    def _cast(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        for batch in reader:
            table = pa.Table.from_batches([batch]).select(self.schema.names).cast(self.schema)
            yield from table.to_batches()


def _dataset(path: str, storage_options: dict[str, str] | None) -> Any:
    import lance

    return lance.dataset(path, storage_options=storage_options)


def _metadata(fragments: Sequence[str]) -> list[Any]:
    from lance.fragment import FragmentMetadata

    return [FragmentMetadata.from_json(text) for text in fragments]


def commit_fragments(
    path: str,
    fragments: Sequence[str],
    *,
    replaced_ids: Sequence[str] = (),
    storage_options: dict[str, str] | None = None,
) -> int:
    """Commit written ``fragments`` to the table in one operation; returns the new version.

    Rows whose ``id`` is in ``replaced_ids`` are deleted in the same commit (an upsert):
    readers see the old rows or the new ones, never both or neither.
    """
    import lance

    dataset = _dataset(path, storage_options)
    new = _metadata(fragments)
    if not replaced_ids:
        if not new:
            return int(dataset.version)
        operation: Any = lance.LanceOperation.Append(new)
    else:
        updated, removed = _delete_rows(dataset, list(replaced_ids))
        operation = lance.LanceOperation.Update(
            removed_fragment_ids=removed, updated_fragments=updated, new_fragments=new
        )
    committed = lance.LanceDataset.commit(
        dataset, operation, read_version=dataset.version, storage_options=storage_options
    )
    return int(committed.version)


def _delete_rows(dataset: Any, ids: list[str]) -> tuple[list[Any], list[int]]:
    """Deletion files for the rows with these ids (not committed): (updated, removed ids)."""
    touched: dict[int, list[str]] = {}
    for start in range(0, len(ids), _DELETE_CHUNK):
        part = ids[start : start + _DELETE_CHUNK]
        found = dataset.to_table(columns=["id"], filter=_id_filter(part), with_row_address=True)
        for row_id, address in zip(
            found.column("id").to_pylist(), found.column("_rowaddr").to_pylist(), strict=True
        ):
            touched.setdefault(int(address) >> 32, []).append(row_id)
    updated, removed = [], []
    for fragment_id, row_ids in sorted(touched.items()):
        result = dataset.get_fragment(fragment_id).delete(_id_filter(row_ids))
        if result is None:
            removed.append(fragment_id)
        else:
            updated.append(result)
    return updated, removed


def overwrite_with_fragments(
    path: str,
    fragments: Sequence[str],
    schema: pa.Schema,
    *,
    expected_version: int,
    storage_options: dict[str, str] | None = None,
) -> int:
    """Replace the whole table by ``fragments`` in one commit, unless the table moved past
    ``expected_version`` (raises :class:`ConcurrentWriteError`: its rows would be lost)."""
    import lance

    dataset = _dataset(path, storage_options)
    if int(dataset.version) != expected_version:
        raise ConcurrentWriteError(
            f"{path} changed while the job ran (version {expected_version} when it planned, "
            f"{dataset.version} now): another writer committed rows that the swap would "
            "discard. Nothing was replaced; run the job again: it resumes and includes them"
        )
    committed = lance.LanceDataset.commit(
        dataset,
        lance.LanceOperation.Overwrite(schema, _metadata(fragments)),
        read_version=expected_version,
        storage_options=storage_options,
    )
    return int(committed.version)


def copy_fragment(
    source_path: str,
    fragment_id: int,
    writer: FragmentWriter,
    source_storage_options: dict[str, str] | None = None,
) -> list[str]:
    """Copy one committed fragment of another table into ``writer``'s table (uncommitted);
    a worker's part of a rebuild's swap."""
    fragment = _dataset(source_path, source_storage_options).get_fragment(fragment_id)
    return writer(fragment.scanner(columns=writer.schema.names).to_reader())


def _id_filter(ids: Sequence[str]) -> str:
    return "id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"


SHARD_MARKS = ".pixsearch-shards"
"""Folder of a database (``<db>/.pixsearch-shards/<table>/<job id>/``) holding the done marks of
shards whose fragments were written but not committed yet."""


@dataclass
class ShardMarks:
    """Done marks of one job's shards (picklable: it travels to batch workers).

    A worker that wrote a shard's fragments leaves a mark named after the shard (a hash of the
    job id and the shard's photos: path, size, mtime, caption files), holding what it made of
    it: the fragments' metadata, their ids, the photos whose content was already stored. A
    rerun of the job after a crash forms the same shards from what is still to do, finds their
    marks and commits those fragments without reading a photo. The driver deletes the marks of
    a checkpoint *before* committing it (a mark never names committed fragments), and a job
    that completes removes its folder.

    >>> import tempfile
    >>> marks = ShardMarks(tempfile.mkdtemp() + "/marks")
    >>> name = ShardMarks.name("job", '[{"path": "/p/a.jpg"}]')
    >>> marks.get(name) is None
    True
    >>> marks.put(name, {"ids": ["a"]}); marks.get(name)
    {'ids': ['a']}
    >>> marks.delete([name]); marks.get(name) is None
    True
    """

    folder: str
    storage_options: dict[str, str] | None = field(default=None)
    _fs: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "storage_options": self.storage_options, "_fs": None}

    @staticmethod
    def name(job: str, shard: str) -> str:
        """The mark name of ``shard`` (its photos as JSON) in job ``job``."""
        import hashlib

        return hashlib.blake2b(f"{job}\0{shard}".encode(), digest_size=16).hexdigest()

    def _filesystem(self) -> tuple[Any, str]:
        """The filesystem of the marks (made once) and their folder in it."""
        if self._fs is None:
            self._fs = _filesystem_and_path(self.folder, self.storage_options)
        return self._fs

    def get(self, name: str) -> dict[str, Any] | None:
        """The mark ``name`` (None when absent or unreadable)."""
        fs, root = self._filesystem()
        try:
            with fs.open_input_stream(f"{root}/{name}.json") as stream:
                found = json.loads(stream.read())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def put(self, name: str, record: dict[str, Any]) -> None:
        """Leave the mark ``name`` (a local one appears whole: written aside, then renamed)."""
        fs, root = self._filesystem()
        data = json.dumps(record).encode()
        if "://" in self.folder and not self.folder.startswith("file://"):
            with fs.open_output_stream(f"{root}/{name}.json") as stream:  # a PUT: atomic
                stream.write(data)
            return
        fs.create_dir(root, recursive=True)
        partial = f"{root}/{name}.partial"
        with fs.open_output_stream(partial) as stream:
            stream.write(data)
        fs.move(partial, f"{root}/{name}.json")

    def delete(self, names: Sequence[str]) -> None:
        """Remove these marks (absent ones are fine)."""
        if not names:
            return
        fs, root = self._filesystem()
        for name in names:
            try:
                fs.delete_file(f"{root}/{name}.json")
            except (FileNotFoundError, OSError):
                continue

    def clear(self) -> None:
        """Remove every mark of the job (its folder)."""
        fs, root = self._filesystem()
        try:
            fs.delete_dir(root)
        except (FileNotFoundError, OSError):
            return


def fragments_present(
    path: str, fragments: Sequence[str], storage_options: dict[str, str] | None = None
) -> bool:
    """True when every data file of these uncommitted ``fragments`` of the table at ``path`` is
    still there with its size (a clean-up may have removed files nothing referenced)."""
    import pyarrow.fs as pafs

    fs, root = _filesystem_and_path(path, storage_options)
    wanted = {
        f"{root}/data/{item['path']}": item.get("file_size_bytes")
        for text in fragments
        for item in json.loads(text).get("files", [])
    }
    try:
        infos = fs.get_file_info(list(wanted))
    except OSError:
        return False
    return all(
        info.type == pafs.FileType.File and size in (None, info.size)
        for info, size in zip(infos, wanted.values(), strict=True)
    )


def _filesystem_and_path(uri: str, storage_options: dict[str, str] | None) -> tuple[Any, str]:
    """A ``pyarrow.fs`` filesystem for a local path or an object-store URI, and the path in it."""
    import pyarrow.fs as pafs

    if "://" in uri and not uri.startswith("file://"):
        from pixsearch.db.objectstore import filesystem_and_path

        return filesystem_and_path(uri, storage_options)
    return pafs.LocalFileSystem(), uri.removeprefix("file://").rstrip("/")
