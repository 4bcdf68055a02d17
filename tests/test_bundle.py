"""The committed model bundle at run time (onnxruntime only, no torch): hashes, golden outputs,
integrity errors, text and image sanity."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pixsearch.db.environment import reload_environment
from pixsearch.db.errors import InvalidInputError
from pixsearch.indexer import preprocess
from pixsearch.indexer.errors import ModelBundleError
from pixsearch.indexer.models import (
    MAX_FILE_BYTES,
    EmbeddingSpace,
    ModelBundle,
    default_bundle_dir,
)

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "indexer" / "bundle"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"

_spec = importlib.util.spec_from_file_location("golden_regenerate", GOLDEN_DIR / "regenerate.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

# Explicit tolerances of the golden comparison. The outputs were made on one x86 CPU; other
# instruction sets (AVX-512, ARM) reorder float sums, which moves values by ~1e-5.
IMAGE_ATOL = 2e-3  # features are ReLU6 means in [0, 6]; logits are around +-20
# The text encoder computes in int8 (MatMulNBits accuracy level 4), whose kernels differ by
# instruction set: on an AVX512-VNNI CPU the committed golden (made elsewhere) is off by up to
# 3.5e-3, min cosine 0.99969 (the export's int8 parity allows 0.01 / 0.998 against PyTorch,
# which tests/test_bundle_reference.py checks).
TEXT_ATOL = 5e-3
TEXT_MIN_COSINE = 0.9995
HEAD_ATOL = 1e-4


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.load(BUNDLE_DIR)


@pytest.fixture(scope="module")
def expected(bundle: ModelBundle) -> dict[str, np.ndarray]:
    data = dict(np.load(GOLDEN_DIR / "bundle_golden.npz"))
    pinned = json.loads(str(data["files"]))
    current = {name: bundle.files.get(name) for name in pinned}
    if current != pinned:
        pytest.fail(
            f"golden outputs are for {pinned}, the committed bundle has {current}: after an "
            "intended re-export run python tests/golden/regenerate.py"
        )
    return data


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_committed_files_match_manifest(bundle: ModelBundle) -> None:
    assert bundle.files, "manifest lists no files"
    for name, digest in bundle.files.items():
        assert _sha256(BUNDLE_DIR / name) == digest, f"{name} differs from its manifest sha256"
    shipped = {p.name for p in BUNDLE_DIR.iterdir() if p.suffix in {".onnx", ".json", ".npy"}}
    assert shipped - {"manifest.json"} == set(bundle.files)


def test_bundle_id_is_derived_from_file_hashes(bundle: ModelBundle) -> None:
    lines = "".join(f"{n}:{d}\n" for n, d in sorted(bundle.files.items()))
    assert bundle.id == hashlib.sha256(lines.encode()).hexdigest()[:16]


def test_query_classifier_reads_this_text_encoder(bundle: ModelBundle) -> None:
    """The query classifier was trained on this text encoder's embeddings: a swapped encoder
    must be followed by `pixsearch train-policy DATA --only queries`."""
    section = bundle.manifest["policy"]["query_classifier"]
    text_file = bundle.manifest["models"]["text_encoder"]["file"]
    assert section["feature_source"] == bundle.files[text_file], (
        "the text encoder changed since the query classifier was trained: run "
        "`pixsearch train-policy ../shared/data --only queries`"
    )
    assert bundle.query_classifier is not None
    assert bundle.query_classifier.threshold == section["threshold"]
    scores = bundle.query_classifier.scores(np.zeros((3, bundle.text_dim), np.float32))
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


def test_every_file_is_under_40_mb(bundle: ModelBundle) -> None:
    for name in bundle.files:
        assert (BUNDLE_DIR / name).stat().st_size < MAX_FILE_BYTES, name


def test_manifest_describes_preprocessing_and_space(bundle: ModelBundle) -> None:
    prep = bundle.manifest["preprocessing"]
    assert prep["image_size"] == preprocess.IMAGE_SIZE
    assert prep["resize"] == preprocess.RESIZE_RULE
    assert prep["pixel_mean"] == preprocess.PIXEL_MEAN
    assert prep["pixel_std"] == preprocess.PIXEL_STD
    assert prep["text_max_tokens"] == 256
    assert (bundle.text_dim, bundle.feature_dim) == (384, 1280)
    assert bundle.vector_dim == bundle.manifest["space"]["dim"]
    assert bundle.space.dim == bundle.vector_dim
    assert bundle.space.name == bundle.manifest["space"]["name"]
    assert isinstance(bundle.space, EmbeddingSpace)
    for figures in bundle.manifest["parity"].values():
        assert "failed" not in figures


def test_class_names(bundle: ModelBundle) -> None:
    names = bundle.class_names
    assert len(names) == 1000 and names[0] == "tench" and all(names)


def test_sessions_are_lazy_and_reused() -> None:
    fresh = ModelBundle.load(BUNDLE_DIR)
    assert fresh.image_encoder.model._session is None
    fresh.image_encoder.encode(np.zeros((1, 224, 224, 3), np.uint8))
    session = fresh.image_encoder.model._session
    assert session is not None and fresh.text_encoder.model._session is None
    fresh.image_encoder.encode(np.zeros((224, 224, 3), np.uint8))
    assert fresh.image_encoder.model._session is session


def test_default_dir_and_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PIXSEARCH_BUNDLE", raising=False)
    reload_environment()
    import pixsearch.indexer.models as models

    # The installed package's own bundle (the checkout's folder under an editable install).
    assert default_bundle_dir() == Path(models.__file__).resolve().with_name("bundle")
    monkeypatch.setenv("PIXSEARCH_BUNDLE", str(tmp_path))
    assert default_bundle_dir() != tmp_path  # read once per process
    reload_environment()
    assert default_bundle_dir() == tmp_path
    with pytest.raises(ModelBundleError, match=r"manifest\.json"):
        ModelBundle.load()


def test_golden_image_encoder(bundle: ModelBundle, expected: dict) -> None:
    features, logits = bundle.image_encoder.encode(golden.golden_pixels())
    assert features.dtype == np.float32 and features.shape == (2, 1280)
    np.testing.assert_allclose(features, expected["features"], rtol=0, atol=IMAGE_ATOL)
    np.testing.assert_allclose(logits, expected["logits"], rtol=0, atol=IMAGE_ATOL)


def test_golden_text_encoder(bundle: ModelBundle, expected: dict) -> None:
    text = bundle.text_encoder.encode(golden.TEXTS)
    np.testing.assert_allclose(text, expected["text"], rtol=0, atol=TEXT_ATOL)
    assert np.min(np.sum(text * expected["text"], axis=1)) > TEXT_MIN_COSINE


def test_golden_image_head(bundle: ModelBundle, expected: dict) -> None:
    vectors = bundle.space.image_vectors(expected["features"])
    np.testing.assert_allclose(vectors, expected["image_vectors"], rtol=0, atol=HEAD_ATOL)


def test_text_vectors_are_unit_norm_and_ordered(bundle: ModelBundle) -> None:
    texts = ["a dog", "", "Zwei Kinder spielen Fußball ⚽", "a man riding a wave on a surfboard"]
    vectors = bundle.space.text_vectors(bundle.text_encoder.encode(texts, batch_size=2))
    assert vectors.shape == (4, bundle.vector_dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate(
        [bundle.space.text_vectors(bundle.text_encoder.encode([t])) for t in texts]
    )
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-4)
    assert bundle.text_encoder.encode([]).shape == (0, 384)


def test_long_text_is_truncated_and_counted(bundle: ModelBundle) -> None:
    encoder = bundle.text_encoder
    long = " ".join(["people walking along a busy street"] * 80)
    assert encoder.token_count("a dog") == 4  # [CLS] a dog [SEP]
    assert encoder.token_count(long) > encoder.max_tokens == 256
    longer = long + " and a very different ending about penguins on the ice"
    np.testing.assert_allclose(encoder.encode(long), encoder.encode(longer), atol=1e-6)


def test_truncation_is_the_tokenizers_own(bundle: ModelBundle) -> None:
    """One tokenizer instance encodes and counts: its truncation (tokens cut, then [CLS] and
    [SEP] added) gives what the tokenizer's built-in truncation gives, at and around the
    limit, and counts are taken before truncation."""
    from tokenizers import Tokenizer

    encoder = bundle.text_encoder
    builtin = Tokenizer.from_file(str(encoder.tokenizer_path))
    builtin.enable_truncation(max_length=encoder.max_tokens)
    plain = Tokenizer.from_file(str(encoder.tokenizer_path))
    plain.no_truncation()  # tokenizer.json carries a truncation setting of its own
    words = "a dog runs on the beach while two children (élan, naïve) play 東京 ball"
    texts = [
        "",
        "a",
        *(" ".join(words.split()[i % 14] for i in range(n)) for n in range(10, 320, 3)),
    ]
    lengths = {len(plain.encode(t).ids) for t in texts}
    assert {254, 255, 256, 257, 258} & lengths and max(lengths) > 300  # around the limit
    for text, mine in zip(texts, encoder._encodings(texts), strict=True):
        theirs = builtin.encode(text)
        assert (mine.ids, mine.attention_mask) == (theirs.ids, theirs.attention_mask), text
        assert encoder.token_count(text) == len(plain.encode(text).ids)


def test_image_vectors_are_unit_norm(bundle: ModelBundle) -> None:
    features, _ = bundle.image_encoder.encode(golden.golden_pixels())
    vectors = bundle.space.image_vectors(features)
    assert vectors.shape == (2, bundle.vector_dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_bad_inputs_raise_invalid_input(bundle: ModelBundle) -> None:
    with pytest.raises(InvalidInputError, match="uint8"):
        bundle.image_encoder.encode(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(InvalidInputError):
        bundle.image_encoder.encode(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(InvalidInputError):
        bundle.space.image_vectors(np.zeros((1, 384), np.float32))


def _copy_bundle(tmp_path: Path) -> Path:
    """A bundle folder in tmp_path: the manifest copied, the big files linked."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    for path in BUNDLE_DIR.iterdir():
        if path.name == "manifest.json":
            shutil.copyfile(path, folder / path.name)
        elif path.suffix in {".onnx", ".json"}:
            (folder / path.name).symlink_to(path)
    return folder


def test_changed_file_raises_naming_it(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    head = folder / "image_head.onnx"
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.unlink()
    head.write_bytes(bytes(data))
    bundle = ModelBundle.load(folder)
    bundle.image_encoder.encode(np.zeros((1, 224, 224, 3), np.uint8))  # untouched file: fine
    with pytest.raises(ModelBundleError, match=r"image_head\.onnx.*sha256.*pixsearch export"):
        bundle.space.image_vectors(np.zeros((1, 1280), np.float32))


def test_missing_file_raises_naming_it(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    (folder / "tokenizer.json").unlink()
    bundle = ModelBundle.load(folder)
    with pytest.raises(ModelBundleError, match=r"tokenizer\.json is missing"):
        bundle.text_encoder.encode(["a dog"])
    with pytest.raises(ModelBundleError, match=r"tokenizer\.json"):
        bundle.verify()


def test_malformed_manifest_raises(tmp_path: Path) -> None:
    folder = _copy_bundle(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["space"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelBundleError, match="malformed"):
        ModelBundle.load(folder)


def test_real_picture_sanity(bundle: ModelBundle) -> None:
    """A real photo (scikit-image's cat, stretched as at index time) is seen as a cat, and
    the query "a cat" finds it before unrelated queries."""
    data = pytest.importorskip(
        "skimage.data", reason="scikit-image (the [dev] extra) not installed"
    )
    from PIL import Image

    pixels = np.stack(
        [
            preprocess.to_pixels(Image.fromarray(data.chelsea())),
            preprocess.to_pixels(Image.fromarray(data.coffee())),
        ]
    )
    features, logits = bundle.image_encoder.encode(pixels)
    top5 = [set(np.argsort(-row)[:5].tolist()) for row in logits]
    cats, coffee = (
        set(range(281, 286)),
        {504, 967, 968},
    )  # ImageNet: domestic cats; mug, espresso, cup
    assert top5[0] & cats, [bundle.class_names[i] for i in top5[0]]
    assert top5[1] & coffee, [bundle.class_names[i] for i in top5[1]]
    images = bundle.space.image_vectors(features)
    queries = bundle.space.text_vectors(
        bundle.text_encoder.encode(["a cat", "a cup of coffee", "a red sports car"])
    )
    scores = queries @ images.T
    assert scores[0, 0] > scores[0, 1] and scores[1, 1] > scores[1, 0]
    assert scores[0, 0] > scores[2, 0] and scores[1, 1] > scores[2, 1]
