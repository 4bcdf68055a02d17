"""Image and text features from the project's ONNX encoders, cached on disk.

The cache is keyed by *content*: the sha256 of a photo file's bytes (or of a text's UTF-8
bytes) and the sha256 of the *encoder file* that made the vectors (``encoder_key``), so renamed
or copied photos cost nothing, a new encoder never reads stale vectors, and adding heads to the
bundle (which changes the bundle id) keeps every cached feature. Layout::

    <cache_dir>/<encoder_key>/<kind>/<chunk>.npz
    kind: "image" (1280-d), "image-<view>" (an augmented view, see ``augment_view``: "hflip"
    the photo mirrored left-right, "crop1".. random resized crops) or "text" (384-d)

``encoder_key`` is ``enc-`` + the first 16 hex digits of the encoder file's sha256 as listed in
the bundle manifest; a bundle-like object without a manifest (tests) falls back to its id.

Each chunk holds ``keys`` (hex sha256) and ``vectors`` (float32); chunks are written atomically
(temp file + rename) after every batch, so an interrupted run resumes where it stopped, and the
chunks of one call are merged into one file at its end. The default cache dir is
``~/.cache/pixsearch/features`` (``$PIXSEARCH_FEATURE_CACHE`` overrides it).

>>> import tempfile
>>> class Enc:
...     def encode(self, texts):
...         return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)
>>> class Bundle:
...     id, text_encoder = "fake", Enc()
>>> text_features(["a dog", "a cat", "a dog"], Bundle(), tempfile.mkdtemp()).tolist()
[[5.0, 1.0], [5.0, 1.0], [5.0, 1.0]]
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pixsearch.indexer.models import sha256_file


class _ImageEncoder(Protocol):
    def encode(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class _TextEncoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


def default_cache_dir() -> Path:
    """``$PIXSEARCH_FEATURE_CACHE`` or ``~/.cache/pixsearch/features``."""
    env = os.environ.get("PIXSEARCH_FEATURE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "pixsearch" / "features"


def sha256_text(text: str) -> str:
    """Hex sha256 of a text's UTF-8 bytes.

    >>> sha256_text("a")[:12]
    'ca978112ca1b'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FeatureCache:
    """Content-addressed vectors of one kind for one bundle (see the module docstring)."""

    def __init__(self, cache_dir: str | Path | None, bundle_id: str, kind: str) -> None:
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(bundle_id))
        self.folder = root / safe_id / kind
        self._index: dict[str, tuple[Path, int]] | None = None
        self._written: list[Path] = []

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = {}
            for chunk in sorted(self.folder.glob("*.npz")):
                try:
                    with np.load(chunk) as data:
                        keys = data["keys"]
                except (OSError, ValueError, KeyError):
                    continue  # a damaged chunk is a cache miss, not an error
                for row, key in enumerate(keys.tolist()):
                    self._index[str(key)] = (chunk, row)
        return self._index

    def __contains__(self, key: str) -> bool:
        return key in self._load_index()

    def __len__(self) -> int:
        return len(self._load_index())

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are simply absent)."""
        index = self._load_index()
        by_chunk: dict[Path, list[tuple[str, int]]] = {}
        for key in set(keys):
            if key in index:
                chunk, row = index[key]
                by_chunk.setdefault(chunk, []).append((key, row))
        found: dict[str, np.ndarray] = {}
        for chunk, wanted in by_chunk.items():
            with np.load(chunk) as data:
                vectors = data["vectors"]
            for key, row in wanted:
                found[key] = vectors[row]
        return found

    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store vectors (one row per key) as one new chunk file, atomically."""
        if len(keys) == 0:
            return
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{uuid.uuid4().hex}.npz"
        tmp = self.folder / f".{path.stem}.partial"
        with open(tmp, "wb") as handle:
            np.savez(
                handle, keys=np.asarray(keys, dtype="U64"), vectors=np.asarray(vectors, np.float32)
            )
        os.replace(tmp, path)
        self._written.append(path)
        index = self._load_index()
        for row, key in enumerate(keys):
            index[key] = (path, row)

    def compact(self) -> None:
        """Merge the chunks this object wrote into one file (fewer files to open next time)."""
        if len(self._written) < 2:
            return
        keys: list[str] = []
        parts: list[np.ndarray] = []
        for chunk in self._written:
            with np.load(chunk) as data:
                keys.extend(str(k) for k in data["keys"].tolist())
                parts.append(data["vectors"])
        old, self._written = self._written, []
        self.put_many(keys, np.concatenate(parts))
        for chunk in old:
            chunk.unlink(missing_ok=True)
        self._written = self._written[-1:]


def encoder_key(bundle: Any, model: str) -> str:
    """Cache key of one encoder (``"image_encoder"`` or ``"text_encoder"``) of ``bundle``.

    ``enc-<sha256[:16]>`` of the encoder file named in the manifest, so the key survives any
    change to the other bundle files; ``bundle.id`` when the bundle has no manifest entry.

    >>> class B:
    ...     id = "b1"
    ...     manifest = {"models": {"text_encoder": {"file": "t.onnx"}}}
    ...     files = {"t.onnx": "ab" * 32}
    >>> encoder_key(B(), "text_encoder"), encoder_key(B(), "image_encoder")
    ('enc-abababababababab', 'b1')
    """
    try:
        name = bundle.manifest["models"][model]["file"]
        return "enc-" + str(bundle.files[name])[:16]
    except (AttributeError, KeyError, TypeError):
        return str(bundle.id)


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def image_features(
    paths: Sequence[str | Path],
    bundle: Any,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 64,
    workers: int = 4,
    lookahead: int = 2,
    progress: Callable[[int, int], None] | None = None,
    view: str | None = None,
) -> np.ndarray:
    """Pooled image-encoder features, ``float32 [len(paths), feature_dim]``, in input order.

    With ``view`` each photo is augmented before encoding (``augment_view``; cached as its own
    kind, ``image-<view>``): training-time augmentation for the trained heads, e.g.
    ``view="hflip"``, the photo mirrored left-right.

    Files are hashed and decoded in a thread pool (``workers``) with at most ``lookahead``
    batches decoded ahead of the encoder; identical files are encoded once. An unreadable
    photo raises ``ImageDecodeError`` naming the file (validate the data first).
    ``progress(done, total)`` is called after each encoded batch.
    """
    from pixsearch.indexer.preprocess import load_photo

    paths = [Path(p) for p in paths]
    cache = FeatureCache(
        cache_dir, encoder_key(bundle, "image_encoder"), f"image-{view}" if view else "image"
    )
    with ThreadPoolExecutor(max_workers=workers) as pool:
        keys = list(pool.map(sha256_file, paths))
        found = cache.get_many(keys)
        todo: dict[str, Path] = {}
        for key, path in zip(keys, paths, strict=True):
            if key not in found and key not in todo:
                todo[key] = path
        todo_items = list(todo.items())
        batches = list(_batches(todo_items, batch_size))
        pending: deque[list[Future[Any]]] = deque()
        done = 0

        def submit(batch: Sequence[tuple[str, Path]]) -> list[Future[Any]]:
            return [pool.submit(load_photo, path) for _, path in batch]

        next_batch = 0
        while next_batch < len(batches) and len(pending) < lookahead:
            pending.append(submit(batches[next_batch]))
            next_batch += 1
        for batch in batches:
            futures = pending.popleft()
            if next_batch < len(batches):
                pending.append(submit(batches[next_batch]))
                next_batch += 1
            pixels = np.stack([future.result().pixels for future in futures])
            batch_keys = [key for key, _ in batch]
            if view:
                pixels = np.stack(
                    [augment_view(p, view, key) for p, key in zip(pixels, batch_keys, strict=True)]
                )
            features, _logits = bundle.image_encoder.encode(pixels)
            features = np.asarray(features, dtype=np.float32)
            cache.put_many(batch_keys, features)
            found.update(zip(batch_keys, features, strict=True))
            done += len(batch)
            if progress is not None:
                progress(done, len(todo_items))
    cache.compact()
    if not paths:
        return np.zeros((0, int(getattr(bundle, "feature_dim", 0))), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)


def augment_view(pixels: np.ndarray, view: str, key: str = "") -> np.ndarray:
    """One augmented view of preprocessed ``[H, W, 3]`` uint8 pixels, the same every time.

    ``"hflip"``: mirrored left-right. ``"cropN"``: a random resized crop (8-100% of the area,
    aspect 3/4-4/3, like torchvision's ``RandomResizedCrop``), mirrored with probability 0.5,
    resized back to ``H x W`` (bicubic); the randomness is seeded by ``key`` (the photo's
    content hash) and ``N``, so cached views stay valid.

    >>> pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    >>> augment_view(pixels, "hflip")[0, 0].tolist() == pixels[0, 2].tolist()
    True
    >>> a, b = augment_view(pixels, "crop1", "ab"), augment_view(pixels, "crop1", "ab")
    >>> a.shape, bool((a == b).all())
    ((2, 3, 3), True)
    """
    if view == "hflip":
        return np.ascontiguousarray(pixels[:, ::-1, :])
    if not view.startswith("crop") or not view[4:].isdigit():
        raise ValueError(f"unknown augmented view {view!r}: use 'hflip' or 'crop1', 'crop2', ...")
    from PIL import Image

    seed = int.from_bytes(hashlib.sha256(f"{key}/{view}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    height, width = pixels.shape[:2]
    for _ in range(10):
        area = height * width * rng.uniform(0.08, 1.0)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        w = round(float(np.sqrt(area * aspect)))
        h = round(float(np.sqrt(area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            break
    else:
        w, h = width, height
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    crop = Image.fromarray(pixels[top : top + h, left : left + w])
    out = np.asarray(crop.resize((width, height), Image.Resampling.BICUBIC))
    return np.ascontiguousarray(out[:, ::-1, :]) if rng.random() < 0.5 else out


def text_features(
    texts: Sequence[str],
    bundle: Any,
    cache_dir: str | Path | None = None,
    *,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    encoder: str = "text_encoder",
) -> np.ndarray:
    """Text-encoder embeddings, ``float32 [len(texts), 384]``, in input order (cached).

    ``encoder="text_encoder_multilingual"`` embeds every text with the multilingual encoder
    (USE + adapter), whatever its script: the joint space trains on those views of the English
    captions so that Russian queries, which take that path, land where their towers look."""
    texts = [str(t) for t in texts]
    if encoder == "text_encoder":
        encode = bundle.text_encoder.encode
    else:
        multilingual = getattr(bundle.text_encoder, "multilingual", None)
        if encoder != "text_encoder_multilingual" or multilingual is None:
            raise ValueError(f"the bundle has no text encoder {encoder!r}")
        encode = multilingual.encode
    cache = FeatureCache(cache_dir, encoder_key(bundle, encoder), "text")
    keys = [sha256_text(t) for t in texts]
    found = cache.get_many(keys)
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if key not in found and key not in todo:
            todo[key] = text
    todo_items = list(todo.items())
    done = 0
    for batch in _batches(todo_items, batch_size):
        vectors = np.asarray(encode([t for _, t in batch]), dtype=np.float32)
        batch_keys = [key for key, _ in batch]
        cache.put_many(batch_keys, vectors)
        found.update(zip(batch_keys, vectors, strict=True))
        done += len(batch)
        if progress is not None:
            progress(done, len(todo_items))
    cache.compact()
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)
