"""The ONNX model bundle at run time: onnxruntime + tokenizers + numpy, no torch.

A bundle is a folder (``indexer/bundle/`` by default) written by ``pixsearch export``:
``manifest.json`` plus the ONNX models, the tokenizer and the ImageNet class names it lists.
Nothing heavy happens on :meth:`ModelBundle.load`: each ONNX session is created on first use,
after the file's sha256 has been checked against the manifest, and then reused.

>>> bundle = ModelBundle.load()
>>> bundle.text_dim, bundle.feature_dim, len(bundle.class_names)
(384, 1280, 1000)
>>> query = bundle.space.text_vectors(bundle.text_encoder.encode(["a dog on a beach"]))
>>> query.shape == (1, bundle.vector_dim)
True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pixsearch.db.environment import BUNDLE_ENV as _BUNDLE_ENV
from pixsearch.db.environment import DEVICE_ENV as _DEVICE_ENV
from pixsearch.db.environment import DEVICES as DEVICES
from pixsearch.db.environment import THREADS_ENV as _THREADS_ENV
from pixsearch.db.environment import Environment, environment
from pixsearch.db.errors import InvalidInputError
from pixsearch.db.memory import return_freed_memory
from pixsearch.indexer.errors import ModelBundleError

BUNDLE_ENV = _BUNDLE_ENV
"""Environment variable naming a bundle folder to use instead of the packaged one."""
THREADS_ENV = _THREADS_ENV
"""Environment variable capping onnxruntime's intra-op threads (default: all physical cores)."""
DEVICE_ENV = _DEVICE_ENV
"""Environment variable choosing where models run: ``auto`` (default: the batch models on CUDA
when onnxruntime has its CUDA provider, i.e. ``pip install "pixsearch[gpu]"`` on a machine with
an NVIDIA GPU; the rest on the CPU), ``cpu`` (everything on the CPU) or ``cuda`` (every model on
CUDA, an error when onnxruntime has no CUDA provider)."""
MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 40_000_000
"""Every bundle file stays under 40 MB (exports and trained additions refuse bigger files)."""

_FIX = 'reinstall pixsearch, or run "pixsearch export" to rebuild the bundle'


def default_bundle_dir() -> Path:
    """``$PIXSEARCH_BUNDLE`` if set, else the bundle folder installed with the package."""
    override = environment().bundle
    return Path(override) if override else Path(__file__).resolve().with_name("bundle")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified_bytes(path: Path, expected_sha256: str | None, *, keep: bool = True) -> bytes:
    """Read a bundle file, checking it against the manifest's sha256 when one is given.

    ``keep=False`` hashes the file in blocks and returns ``b""`` (for files onnxruntime loads
    from their path: a 25 MB model is then not held twice).
    """
    try:
        if keep:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
        else:
            data, digest = b"", sha256_file(path)
    except FileNotFoundError:
        raise ModelBundleError(
            f"model bundle file {path.name} is missing ({path}); {_FIX}"
        ) from None
    except OSError as error:
        raise ModelBundleError(
            f"model bundle file {path.name} cannot be read ({error}); {_FIX}"
        ) from error
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelBundleError(
            f"model bundle file {path.name} does not match its sha256 in {MANIFEST_NAME} "
            f"(changed or damaged: {path}); {_FIX}"
        )
    return data


def device_choice() -> str:
    """``$PIXSEARCH_DEVICE`` (``auto``, ``cpu`` or ``cuda``; default ``auto``).

    >>> os.environ[DEVICE_ENV] = "CPU"; device_choice()
    'cpu'
    >>> del os.environ[DEVICE_ENV]; device_choice()
    'auto'
    """
    return Environment.from_mapping(os.environ).device  # read now: tests and workers change it


def providers(*, batch: bool, available: Sequence[str] | None = None) -> list[str]:
    """onnxruntime execution providers for a model, most preferred first (CPU always last).

    ``batch`` models (image encoder, image head, child classifier: many photos per call) go
    to CUDA when the provider is there and ``$PIXSEARCH_DEVICE`` is not ``cpu``; query-time
    models (one short text per call) stay on the CPU unless it is ``cuda``, because starting
    CUDA costs seconds at a cold start and a 20-token query gains nothing from a GPU.

    >>> providers(batch=True, available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> providers(batch=False, available=["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CPUExecutionProvider']
    >>> providers(batch=True, available=["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    choice = device_choice()
    cuda = "CUDAExecutionProvider" in available
    if choice == "cuda" and not cuda:
        raise ModelBundleError(
            f"{DEVICE_ENV}=cuda, but this onnxruntime has no CUDA provider: "
            'pip install "pixsearch[gpu]" (onnxruntime-gpu, in place of onnxruntime) on a '
            f"machine with an NVIDIA GPU, or unset {DEVICE_ENV}"
        )
    if cuda and (choice == "cuda" or (choice == "auto" and batch)):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxModel:
    """One ONNX file of a bundle, its session created lazily (thread-safe) and then reused.

    >>> bundle = ModelBundle.load()
    >>> bundle.image_encoder.model.input_names
    ['pixels']
    """

    def __init__(
        self, path: Path, sha256: str | None = None, *, arena: bool = True, batch: bool = True
    ) -> None:
        self.path = Path(path)
        self.sha256 = sha256
        self.arena = arena
        self.batch = batch
        """Whether this model runs on many photos per call (may go to CUDA, see
        :func:`providers`)."""
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """The ``onnxruntime.InferenceSession``, created (after the hash check) on first use."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._create_session()
        return self._session

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on (after any fallback to the CPU)."""
        return list(self.session.get_providers())

    def _create_session(self) -> Any:
        import onnxruntime as ort

        # Checked, then loaded from the path: a session made from bytes keeps them (onnxruntime
        # holds them to re-create the session), 25 MB of RSS for the text encoder.
        _verified_bytes(self.path, self.sha256, keep=False)
        options = ort.SessionOptions()
        # Full graph optimisation (constant folding, node fusions); cheap for models this size.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One operator at a time: these graphs are chains, so parallelism is inside operators.
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        # 0 = onnxruntime's default (one thread per physical core); PIXSEARCH_THREADS caps it,
        # e.g. when decoding threads of the indexer share the machine.
        options.intra_op_num_threads = environment().threads
        # No busy-waiting between operators: spinning threads burn the cores that the indexer's
        # decode threads (and other processes) need. Measured on 2 shared cores
        # (benchmarks/encoder_options.py): the image encoder costs 23-26 CPU ms/photo spinning,
        # 19 without, at the same or better wall time. See docs/performance.md.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The CPU memory arena stays on for the image encoder (off was ~1.4x slower: activations
        # are reused per batch); the text encoder runs one short query at a time, where the
        # arena only holds memory (off: -20 MB resident, same speed).
        options.enable_cpu_mem_arena = self.arena
        options.log_severity_level = 3  # errors only: no warnings about unused initializers
        try:
            return ort.InferenceSession(
                str(self.path), sess_options=options, providers=providers(batch=self.batch)
            )
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise ModelBundleError(
                f"model bundle file {self.path.name} cannot be loaded by onnxruntime "
                f"({error}); {_FIX}"
            ) from error

    def run(self, outputs: list[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the session (``outputs=None`` returns every output)."""
        return self.session.run(outputs, feeds)

    def release(self) -> None:
        """Drop the session (e.g. after indexing); the next call creates it again."""
        with self._lock:
            self._session = None


class ImageEncoder:
    """EfficientNet-Lite0: ``uint8`` NHWC pixels -> pooled features and ImageNet logits.

    >>> bundle = ModelBundle.load()
    >>> pixels = np.zeros((2, 224, 224, 3), dtype=np.uint8)
    >>> features, logits = bundle.image_encoder.encode(pixels)
    >>> features.shape, logits.shape
    ((2, 1280), (2, 1000))
    """

    def __init__(
        self, model: OnnxModel, image_size: int = 224, feature_dim: int = 1280, classes: int = 1000
    ) -> None:
        self.model = model
        self.image_size = image_size
        self.feature_dim = feature_dim
        self.classes = classes

    def encode(self, pixels: np.ndarray, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Encode ``uint8`` pixels ``[N,224,224,3]`` (or one ``[224,224,3]`` photo).

        Returns ``(features [N,1280], logits [N,1000])`` as float32. Normalisation happens
        inside the graph; give the pixels exactly as :func:`pixsearch.indexer.preprocess.to_pixels`
        returns them. The graph runs ``batch_size`` photos at a time: the CPU arena keeps the
        activations of the largest run resident, ~400 MB at 32 photos and ~60 MB at 8, at the
        same speed per photo (10.8-15.9 against 7.3-11.7 ms on 2 busy cores, issue 19).
        """
        pixels = np.asarray(pixels)
        if pixels.ndim == 3:
            pixels = pixels[None]
        size = self.image_size
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (size, size, 3):
            raise InvalidInputError(
                f"image encoder expects uint8 pixels of shape [N,{size},{size},3], got "
                f"{pixels.dtype} {list(pixels.shape)}; use pixsearch.indexer.preprocess.to_pixels"
            )
        if len(pixels) == 0:
            return (
                np.zeros((0, self.feature_dim), np.float32),
                np.zeros((0, self.classes), np.float32),
            )
        features, logits = [], []
        for start in range(0, len(pixels), max(1, batch_size)):
            batch = np.ascontiguousarray(pixels[start : start + max(1, batch_size)])
            f, g = self.model.run(["features", "logits"], {"pixels": batch})
            features.append(f)
            logits.append(g)
        return np.concatenate(features), np.concatenate(logits)


class TextEncoder:
    """all-MiniLM-L6-v2: texts -> L2-normalised 384-d embeddings (mean pooling in numpy).

    Texts longer than ``max_tokens`` tokens (special tokens included) are truncated; use
    :meth:`token_count` to warn about it. With a ``multilingual`` encoder (a bundle with a
    ``text_encoder_multilingual`` model, issue #15), texts with a Cyrillic letter go to it
    instead (:func:`needs_multilingual`): it embeds them into the same 384-d space.

    >>> encoder = ModelBundle.load().text_encoder
    >>> vectors = encoder.encode(["a dog", "two children playing football"])
    >>> vectors.shape, round(float(np.linalg.norm(vectors[0])), 4)
    ((2, 384), 1.0)
    >>> encoder.token_count("a dog")
    4
    """

    def __init__(
        self,
        model: OnnxModel,
        tokenizer_path: Path,
        tokenizer_sha256: str | None = None,
        max_tokens: int = 256,
        dim: int = 384,
        *,
        pooled_output: str | None = None,
        empty_ids: Sequence[int] | None = None,
        multilingual: TextEncoder | None = None,
    ) -> None:
        self.model = model
        self.tokenizer_path = Path(tokenizer_path)
        self.tokenizer_sha256 = tokenizer_sha256
        self.max_tokens = max_tokens
        self.dim = dim
        self.pooled_output = pooled_output
        """Output name of a model that pools inside its graph (else mean pooling in numpy over
        ``last_hidden_state``)."""
        self.empty_ids = list(empty_ids) if empty_ids else None
        """Token ids for a text that tokenizes to nothing but its specials (e.g. ``""``)."""
        self.multilingual = multilingual
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load_tokenizer(self) -> Any:
        """The tokenizer, loaded once, without truncation or padding: :meth:`encode`
        truncates and pads itself, so that one instance also counts tokens (a second
        ``Tokenizer`` kept ~8 MB resident in every search process)."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    from tokenizers import Tokenizer

                    text = _verified_bytes(self.tokenizer_path, self.tokenizer_sha256).decode()
                    tokenizer = Tokenizer.from_str(text)
                    tokenizer.no_truncation()
                    tokenizer.no_padding()
                    self._tokenizer = tokenizer
        return self._tokenizer

    def release(self) -> None:
        """Drop the tokenizer and the session; the next call loads them again."""
        with self._lock:
            self._tokenizer = None
        self.model.release()
        if self.multilingual is not None:
            self.multilingual.release()

    def token_count(self, text: str) -> int:
        """Number of tokens of ``text`` before truncation, special tokens included (counted by
        the encoder that embeds it)."""
        if self.multilingual is not None and needs_multilingual(text):
            return self.multilingual.token_count(text)
        return len(self._load_tokenizer().encode(text).ids)

    def _encodings(self, texts: list[str]) -> list[Any]:
        """Token encodings of ``texts``, truncated to ``max_tokens`` as the tokenizer's own
        truncation does: the text's tokens are cut, then the special tokens added."""
        tokenizer = self._load_tokenizer()
        keep = self.max_tokens - tokenizer.num_special_tokens_to_add(False)
        encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
        for encoding in encodings:
            if len(encoding.ids) > keep:
                encoding.truncate(keep)
        return [tokenizer.post_process(encoding) for encoding in encodings]

    def encode(self, texts: str | Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts; returns float32 ``[N, 384]``, each row of unit length.

        Texts are batched by token length (less padding), and returned in the given order.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise InvalidInputError("text encoder expects strings")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if self.multilingual is not None:
            routed = np.array([needs_multilingual(t) for t in texts], dtype=bool)
            if routed.any():
                out[routed] = self.multilingual.encode(
                    [t for t, r in zip(texts, routed, strict=True) if r], batch_size
                )
                rest = np.flatnonzero(~routed)
                if len(rest):
                    out[rest] = self._encode_own([texts[i] for i in rest], batch_size)
                return out
        return self._encode_own(texts, batch_size)

    def _encode_own(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Embed with this encoder's own model (no routing)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._encodings(texts)  # truncated, not yet padded to a batch
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        step = max(1, batch_size)
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            tokens = [self._ids(encodings[i].ids) for i in rows]
            width = max(len(t) for t in tokens)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, row_ids in enumerate(tokens):
                ids[j, : len(row_ids)] = row_ids
                mask[j, : len(row_ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.model.input_names:
                feeds["token_type_ids"] = np.zeros_like(ids)  # one segment
            if self.pooled_output is not None:
                (pooled,) = self.model.run([self.pooled_output], feeds)
                out[rows] = pooled
            else:
                (hidden,) = self.model.run(["last_hidden_state"], feeds)
                out[rows] = _mean_pool_l2(hidden, mask)
        return out

    def _ids(self, ids: list[int]) -> list[int]:
        if self.empty_ids is not None and len(ids) <= 2:
            return self.empty_ids
        return ids


_CYRILLIC = re.compile("[\u0400-\u052f]")


def needs_multilingual(text: str) -> bool:
    """Whether a text goes to the multilingual encoder: it has a Cyrillic letter.

    >>> needs_multilingual("a cat"), needs_multilingual("кошка"), needs_multilingual("a кот")
    (False, True, True)
    """
    return _CYRILLIC.search(text) is not None


def _mean_pool_l2(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the real tokens' hidden states, then L2 normalisation (sentence-transformers)."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


@runtime_checkable
class EmbeddingSpace(Protocol):
    """Where photos and queries meet: stored image vectors and query vectors of one ``dim``.

    Callers only use these four members, so the zero-shot label bridge and a trained space
    (ONNX heads) are interchangeable.
    """

    name: str
    dim: int

    def image_vectors(self, features: np.ndarray) -> np.ndarray:
        """Image encoder ``features [N,1280]`` -> L2-normalised ``[N, dim]`` (stored in LanceDB)."""
        ...

    def text_vectors(self, text_embeddings: np.ndarray) -> np.ndarray:
        """Text encoder embeddings ``[N,384]`` -> L2-normalised query vectors ``[N, dim]``."""
        ...


class OnnxHeadSpace:
    """An :class:`EmbeddingSpace` made of ONNX heads: ``image_head`` (``features`` ->
    ``vectors``) and an optional ``text_head`` (``text_embeddings`` -> ``vectors``; absent =
    identity, as for the label bridge).

    >>> space = ModelBundle.load().space
    >>> space.image_vectors(np.zeros((1, 1280), np.float32)).shape == (1, space.dim)
    True
    """

    def __init__(
        self,
        name: str,
        dim: int,
        image_head: OnnxModel,
        text_head: OnnxModel | None = None,
        feature_dim: int = 1280,
        text_dim: int = 384,
    ) -> None:
        self.name = name
        self.dim = dim
        self.image_head = image_head
        self.text_head = text_head
        self.feature_dim = feature_dim
        self.text_dim = text_dim

    def image_vectors(self, features: np.ndarray) -> np.ndarray:
        features = _matrix(features, self.feature_dim, "image features")
        if len(features) == 0:
            return np.zeros((0, self.dim), np.float32)
        (vectors,) = self.image_head.run(["vectors"], {"features": features})
        return vectors

    def text_vectors(self, text_embeddings: np.ndarray) -> np.ndarray:
        embeddings = _matrix(text_embeddings, self.text_dim, "text embeddings")
        if self.text_head is None:
            return embeddings
        if len(embeddings) == 0:
            return np.zeros((0, self.dim), np.float32)
        (vectors,) = self.text_head.run(["vectors"], {"text_embeddings": embeddings})
        return vectors

    def __repr__(self) -> str:
        return f"OnnxHeadSpace(name={self.name!r}, dim={self.dim})"


class Reranker:
    """The relevance reranker: scores (query, photo) pairs in [0,1] (``reranker.onnx``).

    Inputs: the query's text embedding ``[384]`` (as :meth:`TextEncoder.encode` returns it),
    the photos' image encoder ``features [N,1280]`` (as stored per row) and ``similarities
    [N]``, the cosine of the query and each photo in the bundle's space (the search score).
    The score is calibrated on the customer's merged relevance, so it can be thresholded on its
    own ("only above 0.5"). Callers rerank the ``top_n`` best candidates of the vector search.
    Written by ``pixsearch train-space`` (manifest section ``reranker``); a bundle without that
    section has ``bundle.reranker is None``.

    >>> reranker = ModelBundle.load().reranker
    >>> query = np.zeros(384, np.float32)
    >>> scores = reranker.score(query, np.zeros((3, 1280), np.float32), np.zeros(3, np.float32))
    >>> scores.shape, bool(((scores >= 0) & (scores <= 1)).all()), reranker.top_n > 0
    ((3,), True, True)
    """

    def __init__(
        self, model: OnnxModel, top_n: int, feature_dim: int = 1280, text_dim: int = 384
    ) -> None:
        top_n = int(top_n)
        if top_n < 1:
            raise ValueError(f"reranker top_n must be at least 1, got {top_n}")
        self.model = model
        self.top_n = top_n
        self.feature_dim = feature_dim
        self.text_dim = text_dim

    def score(
        self, query_embedding: np.ndarray, features: np.ndarray, similarities: np.ndarray
    ) -> np.ndarray:
        """Relevance ``float32 [N]`` in [0,1] of one query against ``N`` photos."""
        query = _matrix(
            np.asarray(query_embedding).reshape(1, -1), self.text_dim, "query embedding"
        )
        features = _matrix(features, self.feature_dim, "image features")
        sims = np.ascontiguousarray(np.asarray(similarities, np.float32).reshape(-1))
        if len(sims) != len(features):
            raise InvalidInputError(
                f"{len(features)} photos but {len(sims)} similarities; give one per photo"
            )
        if len(features) == 0:
            return np.zeros(0, np.float32)
        feeds = {
            "text_embeddings": np.repeat(query, len(features), axis=0),
            "features": features,
            "similarities": sims,
        }
        (scores,) = self.model.run(["scores"], feeds)
        return np.asarray(scores, np.float32).reshape(-1)

    def __repr__(self) -> str:
        return f"Reranker(top_n={self.top_n})"


def _matrix(values: np.ndarray, width: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != width:
        raise InvalidInputError(f"{what} must have shape [N,{width}], got {list(array.shape)}")
    return np.ascontiguousarray(array)


class ChildClassifier:
    """The content policy's child-photo classifier: image ``features [N,1280]`` -> ``scores [N]``
    in [0,1]; a photo is restricted when its score is at least :attr:`threshold`.

    Written by ``pixsearch train-policy`` (manifest section ``policy.child_classifier``); a
    bundle without that section has ``bundle.child_classifier is None``.

    >>> classifier = ModelBundle.load().child_classifier
    >>> scores = classifier.scores(np.zeros((2, 1280), np.float32))
    >>> scores.shape, bool(((scores >= 0) & (scores <= 1)).all()), 0 < classifier.threshold < 1
    ((2,), True, True)
    """

    _what = "image features"

    def __init__(self, model: OnnxModel, threshold: float, feature_dim: int = 1280) -> None:
        threshold = float(threshold)
        if not 0.0 <= threshold <= 1.0:  # also refuses NaN
            raise ValueError(f"classifier threshold must be in [0, 1], got {threshold!r}")
        self.model = model
        self.threshold = threshold
        self.feature_dim = feature_dim

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Scores ``float32 [N]`` in [0,1] of image encoder features ``[N,1280]``."""
        features = _matrix(features, self.feature_dim, self._what)
        if len(features) == 0:
            return np.zeros(0, np.float32)
        (scores,) = self.model.run(["scores"], {"features": features})
        return np.asarray(scores, np.float32).reshape(-1)

    def restricted(self, features: np.ndarray) -> np.ndarray:
        """``bool [N]``: ``scores(features) >= threshold``."""
        return self.scores(features) >= self.threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold!r})"


class QueryClassifier(ChildClassifier):
    """The query policy's learned second opinion: a query's text embedding ``[N,384]`` ->
    ``scores [N]``; the query is about children when its score is at least :attr:`threshold`.

    Written by ``pixsearch train-policy --only queries`` (manifest section
    ``policy.query_classifier``); ``bundle.query_classifier is None`` without it. Its ONNX
    session is created on the first query checked.

    >>> classifier = ModelBundle.load().query_classifier
    >>> embedding = ModelBundle.load().text_encoder.encode(["two dogs in the snow"])
    >>> bool(classifier.restricted(embedding)[0]), 0 < classifier.threshold < 1
    (False, True)
    """

    _what = "text embeddings"


class ModelBundle:
    """A model bundle folder: its manifest, encoders and embedding space.

    Use :meth:`load`; nothing is read but ``manifest.json`` until a model is used.

    >>> bundle = ModelBundle.load()
    >>> len(bundle.id), bundle.space.name == bundle.manifest["space"]["name"]
    (16, True)
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest
        try:
            self.id: str = manifest["bundle_id"]
            self.files: dict[str, str] = manifest["files"]
            models = manifest["models"]
            space = manifest["space"]
            prep = manifest["preprocessing"]
            text, image = models["text_encoder"], models["image_encoder"]
            self.vector_dim: int = int(space["dim"])
            self.feature_dim: int = int(image["feature_dim"])
            self.text_dim: int = int(text["dim"])
            self.image_encoder = ImageEncoder(
                self._model(image["file"]),
                image_size=int(prep["image_size"]),
                feature_dim=self.feature_dim,
                classes=int(image["classes"]),
            )
            multi = models.get("text_encoder_multilingual")
            self.text_encoder = TextEncoder(
                self._model(text["file"], arena=False, batch=False),
                self.path / text["tokenizer"],
                self.files[text["tokenizer"]],
                max_tokens=int(prep["text_max_tokens"]),
                dim=self.text_dim,
                multilingual=TextEncoder(
                    self._model(multi["file"], arena=False, batch=False),
                    self.path / multi["tokenizer"],
                    self.files[multi["tokenizer"]],
                    max_tokens=int(prep["text_max_tokens"]),
                    dim=self.text_dim,
                    pooled_output=multi["output"],
                    empty_ids=multi["empty_ids"],
                )
                if multi
                else None,
            )
            text_head = space["files"].get("text_head")
            self.space: EmbeddingSpace = OnnxHeadSpace(
                name=space["name"],
                dim=self.vector_dim,
                image_head=self._model(space["files"]["image_head"]),
                text_head=self._model(text_head, batch=False) if text_head else None,
                feature_dim=self.feature_dim,
                text_dim=self.text_dim,
            )
            rerank = manifest.get("reranker")
            self.reranker: Reranker | None = (
                Reranker(
                    self._model(rerank["file"], batch=False),
                    rerank["top_n"],
                    feature_dim=self.feature_dim,
                    text_dim=self.text_dim,
                )
                if rerank
                else None
            )
            self._class_names_file: str = manifest["class_names"]
            child = (manifest.get("policy") or {}).get("child_classifier")
            self.child_classifier: ChildClassifier | None = (
                ChildClassifier(
                    self._model(child["file"]), child["threshold"], feature_dim=self.feature_dim
                )
                if child
                else None
            )
            query = (manifest.get("policy") or {}).get("query_classifier")
            self.query_classifier: QueryClassifier | None = (
                QueryClassifier(
                    self._model(query["file"], batch=False),
                    query["threshold"],
                    feature_dim=self.text_dim,
                )
                if query
                else None
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelBundleError(
                f"{self.path / MANIFEST_NAME} is incomplete or malformed ({error!r}); {_FIX}"
            ) from error
        self._class_names: list[str] | None = None

    def query_classifier_for(self, text: str) -> QueryClassifier | None:
        """The query classifier, when ``text`` is embedded by the English text encoder it was
        trained on; ``None`` for a text routed to the multilingual encoder (a Cyrillic
        letter: left to the lexicon) or without a classifier.

        >>> bundle = ModelBundle.load()
        >>> bundle.query_classifier_for("a cat") is bundle.query_classifier
        True
        """
        multilingual = self.text_encoder.multilingual is not None
        if multilingual and needs_multilingual(text):
            return None
        return self.query_classifier

    def _model(self, name: str, *, arena: bool = True, batch: bool = True) -> OnnxModel:
        if name not in self.files:
            raise ModelBundleError(f"{MANIFEST_NAME} has no sha256 for {name}; {_FIX}")
        return OnnxModel(self.path / name, self.files[name], arena=arena, batch=batch)

    @classmethod
    def load(cls, path: str | Path | None = None) -> ModelBundle:
        """Open a bundle folder (default: :func:`default_bundle_dir`); reads only the manifest."""
        folder = Path(path) if path is not None else default_bundle_dir()
        manifest_path = folder / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelBundleError(
                f"no model bundle at {folder} ({MANIFEST_NAME} missing); {_FIX}"
            ) from None
        except (OSError, ValueError) as error:
            raise ModelBundleError(f"{manifest_path} cannot be read ({error}); {_FIX}") from error
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        if version != FORMAT_VERSION:
            raise ModelBundleError(
                f"{manifest_path} has format_version {version!r}, this pixsearch reads "
                f"{FORMAT_VERSION}; {_FIX}"
            )
        return cls(folder, manifest)

    @property
    def class_names(self) -> list[str]:
        """The 1000 ImageNet class names, index = logit position (read and checked once)."""
        if self._class_names is None:
            name = self._class_names_file
            data = _verified_bytes(self.path / name, self.files.get(name))
            self._class_names = json.loads(data.decode("utf-8"))
        return self._class_names

    def release(self) -> None:
        """Drop every model session and the tokenizer, and give the freed memory back to the
        operating system (:func:`pixsearch.db.memory.return_freed_memory`); the next use
        loads them again.

        A process that runs one search (``pixsearch search``) calls this once the query is
        encoded, so the text models (~45 MB) are gone before the vector index is loaded.
        """
        self.text_encoder.release()
        models = [self.image_encoder.model, self.space.image_head, self.space.text_head]
        if self.reranker is not None:
            models.append(self.reranker.model)
        if self.child_classifier is not None:
            models.append(self.child_classifier.model)
        for model in models:
            if isinstance(model, OnnxModel):
                model.release()
        return_freed_memory()

    def verify(self) -> None:
        """Check every file of the manifest against its sha256 (raises ``ModelBundleError``)."""
        for name, digest in self.files.items():
            _verified_bytes(self.path / name, digest, keep=False)

    def __repr__(self) -> str:
        return f"ModelBundle(id={self.id!r}, path={str(self.path)!r}, space={self.space!r})"
