"""The multilingual text path: USE multilingual v3 + an adapter into the text encoder's space.

``pixsearch train-multilingual DATA`` (issue #15) trains a small adapter (MLP, 512 -> 1024 ->
384) that maps the Universal Sentence Encoder's embedding of an English caption onto the
bundle's own text embedding of it (all-MiniLM-L6-v2: cosine distillation on the captions of the
training photos). USE was trained so that a sentence and its translation embed alike, so a
Russian query lands where its English translation would, and everything that reads text
embeddings (the joint space's text head, the label bridge, the reranker, the query policy) works
unchanged. The model (USE + adapter) is exported with ``torch.onnx`` (dense weights int8,
token table 6-bit as shipped) and installed as ``text_encoder_multilingual.onnx`` with its
tokenizer; the runtime routes queries with Cyrillic letters to it and keeps MiniLM for the
rest, because MiniLM stays better on English (figures in docs/multilingual.md).

>>> AdapterConfig().hidden
1024
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter import use_m3
from pixsearch.exporter._onnx_tools import OPSET, int8_matmuls, save_single_file
from pixsearch.exporter._torch import require_torch, seeded_torch
from pixsearch.exporter.parity import parity

FILE = "text_encoder_multilingual.onnx"
TOKENIZER_FILE = "tokenizer_multilingual.json"
SECTION = "text_encoder_multilingual"
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4
"""Dense layers as ``MatMulNBits`` 8-bit, blocks of 32, int8 compute: 36.9 MB -> parity vs the
package min cosine 0.99928 at 0.35 ms per query (blocks of 16: 0.99957, 37.4 MB; fp32 compute
0.99966 but 3.6 ms; fp32 weights: 46.7 MB, over the per-file limit)."""
PARITY_TEXTS = [
    "A black dog and a spotted dog are fighting",
    "two men in red jackets ride bicycles down a snowy mountain trail",
    "a photo of a golden retriever",
    "Две собаки играют в воде на пляже",
    "кошка",
    "чашка кофе",
    "Женщина в чёрной шляпе с американским флагом смотрит в камеру.",
    "«Обама» — № 5, ёлка…",
    "a dog on a пляж",
    "",
    "x",
    " ".join(["a long caption about a crowded street market with many people"] * 40),
]
"""English, Russian, mixed, odd and long texts, all in the kept scripts (``use_m3``)."""
TOLERANCE_USE = {"max_abs": 0.01, "min_cos": 0.998}
TOLERANCE_ADAPTER = {"max_abs": 0.02, "min_cos": 0.998}


@dataclass
class AdapterConfig:
    """Hyper-parameters of the adapter (defaults: the shipped one)."""

    hidden: int = 1024
    dropout: float = 0.1
    epochs: int = 30
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 42
    threads: int = 1


def build_adapter(cfg: AdapterConfig, n_in: int = use_m3.DIM, n_out: int = 384) -> Any:
    torch = require_torch()
    nn = torch.nn
    return nn.Sequential(
        nn.Linear(n_in, cfg.hidden),
        nn.GELU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, n_out),
    )


def train_adapter(
    sentence: np.ndarray, teacher: np.ndarray, cfg: AdapterConfig | None = None
) -> Any:
    """Fit the adapter: ``normalize(adapter(sqrt(512) * sentence))`` ≈ ``teacher`` (cosine)."""
    cfg = cfg or AdapterConfig()
    with seeded_torch(seed=cfg.seed, threads=cfg.threads) as torch:
        net = build_adapter(cfg, sentence.shape[1], teacher.shape[1])
        x = torch.from_numpy(np.ascontiguousarray(sentence, np.float32)) * math.sqrt(
            sentence.shape[1]
        )
        y = torch.from_numpy(np.ascontiguousarray(teacher, np.float32))
        steps = max(1, len(x) // cfg.batch)
        optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, cfg.lr, total_steps=steps * cfg.epochs
        )
        for _epoch in range(cfg.epochs):
            net.train()
            order = torch.randperm(len(x))
            for step in range(steps):
                rows = order[step * cfg.batch : (step + 1) * cfg.batch]
                out = torch.nn.functional.normalize(net(x[rows]), dim=1)
                loss = (1 - (out * y[rows]).sum(1)).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        net.eval()
    return net


def encoder_module(use: Any, adapter: Any) -> Any:
    """USE + adapter: ``(input_ids, attention_mask) -> (text_embeddings [N,384] unit,
    sentence_embedding [N,512] unit)``."""
    torch = require_torch()

    first, last = adapter[0], adapter[-1]

    def weight(linear: Any) -> Any:
        # as x @ W: plain MatMuls in the graph, which the 8-bit quantizer takes (not Gemm)
        return torch.nn.Parameter(linear.weight.detach().T.contiguous(), requires_grad=False)

    class MultilingualTextEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.use = use
            self.w1, self.b1 = weight(first), first.bias
            self.w2, self.b2 = weight(last), last.bias

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
            sentence = self.use(input_ids, attention_mask)
            hidden = torch.nn.functional.gelu(
                (sentence * math.sqrt(sentence.shape[1])) @ self.w1 + self.b1
            )
            mapped = hidden @ self.w2 + self.b2
            return torch.nn.functional.normalize(mapped, dim=1), sentence

    return MultilingualTextEncoder().eval()


def sentence_embeddings(
    use: Any, tokenizer: Any, texts: Sequence[str], batch: int = 256
) -> np.ndarray:
    """USE embeddings of ``texts`` with the PyTorch module (length-sorted batches)."""
    torch = require_torch()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), use_m3.DIM), np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            ids, mask = use_m3.batch_ids(tokenizer, [texts[i] for i in rows])
            out[rows] = use(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    return out


def export_onnx(module: Any, tokenizer: Any, target: Path) -> None:
    """``torch.onnx`` (dynamo) export with dynamic batch and token axes, then the dense MatMuls
    as 8-bit ``MatMulNBits`` (the packed token table is left as it is)."""

    import onnx

    torch = require_torch()
    ids, mask = use_m3.batch_ids(tokenizer, ["a dog runs", "собака бежит по пляжу"])
    batch = torch.export.Dim("batch", min=1, max=4096)
    tokens = torch.export.Dim("tokens", min=1, max=8192)
    with tempfile.TemporaryDirectory(prefix="pixsearch-ml-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(
            module,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(raw),
            input_names=["input_ids", "attention_mask"],
            output_names=["text_embeddings", "sentence_embedding"],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes={
                "input_ids": {0: batch, 1: tokens},
                "attention_mask": {0: batch, 1: tokens},
            },
        )
        single = Path(tmp) / "single.onnx"
        save_single_file(raw, single)
        staged = Path(tmp) / "int8.onnx"
        onnx.save(int8_matmuls(onnx.load(str(single)), BLOCK_SIZE, ACCURACY_LEVEL), str(staged))
        save_single_file(staged, target)


def _run(path: Path, tokenizer: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ids, mask = use_m3.batch_ids(tokenizer, texts)
    mapped, sentence = session.run(None, {"input_ids": ids, "attention_mask": mask})
    return mapped, sentence


@dataclass
class Exported:
    """What :func:`make_encoder` staged, with its figures."""

    onnx_path: Path
    tokenizer_path: Path
    parity: dict[str, dict[str, float]]
    pieces_kept: int
    pieces_total: int
    seconds: dict[str, float]


def make_encoder(
    train_texts: Sequence[str],
    teacher: np.ndarray,
    work: Path,
    cfg: AdapterConfig | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> tuple[Exported, Any, Any]:
    """Build USE (pruned vocabulary), train the adapter on ``(train_texts, teacher)``, export and
    parity-check; returns ``(exported, torch module, tokenizer)``."""
    from tokenizers import Tokenizer

    torch = require_torch()
    cfg = cfg or AdapterConfig()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    weights = use_m3.load_weights()
    pieces, scores, charsmap = use_m3.sentencepiece_model()
    keep = use_m3.kept_pieces(pieces)
    text = use_m3.tokenizer_json(pieces, scores, charsmap, keep)
    tokenizer_path = work / TOKENIZER_FILE
    tokenizer_path.write_text(text, encoding="utf-8")
    tokenizer = Tokenizer.from_str(text)
    use = use_m3.build_model(weights, keep).eval()
    log(f"USE multilingual v3: {len(keep)} of {len(pieces)} pieces kept (ASCII, Cyrillic, marks)")
    with seeded_torch(seed=cfg.seed, threads=cfg.threads):
        sentence = sentence_embeddings(use, tokenizer, list(train_texts))
    seconds["encode_train_texts"] = round(time.perf_counter() - started, 1)
    took = seconds["encode_train_texts"]
    log(f"encoded {len(train_texts)} training captions with USE in {took} s")
    started = time.perf_counter()
    adapter = train_adapter(sentence, teacher, cfg)
    seconds["train_adapter"] = round(time.perf_counter() - started, 1)
    log(f"adapter trained in {seconds['train_adapter']} s")
    module = encoder_module(use, adapter)
    onnx_path = work / FILE
    started = time.perf_counter()
    export_onnx(module, tokenizer, onnx_path)
    seconds["export"] = round(time.perf_counter() - started, 1)
    mapped, exported_sentence = _run(onnx_path, tokenizer, PARITY_TEXTS)
    ids, mask = use_m3.batch_ids(tokenizer, PARITY_TEXTS)
    with torch.inference_mode():
        torch_mapped, _ = module(torch.from_numpy(ids), torch.from_numpy(mask))
    figures = {
        "text_encoder_multilingual.use": parity(
            use_m3.reference_embeddings(PARITY_TEXTS),
            exported_sentence,
            "USE multilingual (ONNX vs the package's numpy forward)",
            **TOLERANCE_USE,
        ),
        "text_encoder_multilingual.adapter": parity(
            torch_mapped.numpy(),
            mapped,
            "multilingual text encoder (ONNX vs PyTorch)",
            **TOLERANCE_ADAPTER,
        ),
    }
    log(f"parity {figures}")
    return (
        Exported(onnx_path, tokenizer_path, figures, len(keep), len(pieces), seconds),
        module,
        tokenizer,
    )


def config_dict(cfg: AdapterConfig) -> dict[str, Any]:
    return asdict(cfg)


def runtime_encoder(onnx_path: Path, tokenizer_path: Path, max_tokens: int = 256) -> Any:
    """The staged model as the runtime reads it (:class:`~pixsearch.indexer.models.TextEncoder`
    in pooled mode, no routing)."""
    from pixsearch.indexer.models import OnnxModel, TextEncoder

    return TextEncoder(
        OnnxModel(onnx_path, arena=False, batch=False),
        tokenizer_path,
        None,
        max_tokens,
        pooled_output="text_embeddings",
        empty_ids=EMPTY_IDS,
    )


EMPTY_IDS = [1, 0, 2]
"""``<s> <unk> </s>``: what the package encodes for a text with no pieces."""


def manifest_section(exported: Exported, cfg: AdapterConfig, extra: dict[str, Any]) -> dict:
    """The manifest's ``models.text_encoder_multilingual``."""
    return {
        "file": FILE,
        "tokenizer": TOKENIZER_FILE,
        "source": {
            "model": use_m3.MODEL_NAME,
            "package": use_m3.PACKAGE,
            "version": _version(use_m3.PACKAGE),
        },
        "exported_with": "torch.onnx.export (dynamo), dynamic batch and tokens; dense MatMuls "
        f"MatMulNBits 8-bit (blocks of {BLOCK_SIZE}, accuracy level {ACCURACY_LEVEL}); token "
        "table 6-bit packed as shipped",
        "pieces_kept": exported.pieces_kept,
        "pieces_total": exported.pieces_total,
        "route": "texts with a Cyrillic letter (U+0400-U+052F); the rest go to text_encoder",
        "inputs": {"input_ids": "int64 [N,T] (<s> ... </s>)", "attention_mask": "int64 [N,T]"},
        "output": "text_embeddings",
        "outputs": {
            "text_embeddings": "float32 [N,384] unit length, in text_encoder's space (adapter)",
            "sentence_embedding": "float32 [N,512] USE multilingual v3, unit length",
        },
        "empty_ids": EMPTY_IDS,
        "parity": exported.parity,
        "adapter": {
            "training": "cosine distillation onto text_encoder's embeddings of the "
            "English captions of the training photos",
            **config_dict(cfg),
            **extra,
        },
        "dim": 384,
    }


def _version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


def run_train_multilingual(
    data_dir: Path,
    *,
    bundle_dir: Path | None = None,
    cache_dir: Path | None = None,
    queries: Path | None = None,
    config: AdapterConfig | None = None,
    n_val: int = 900,
    seed: int = 42,
    install: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, export, measure and (``install``) add the multilingual encoder to the bundle.

    Returns ``{"parity", "figures", "seconds", "size_bytes", "manifest"?}``; ``figures`` are
    R@1/5/10 among the validation photos for the bundle's English encoder alone ("before")
    and with the multilingual route ("after"), on the validation captions and on the Russian
    test set (``queries``, default ``tests/data/ru_queries.tsv``) in both languages.
    """
    from pixsearch.exporter.bundle_update import add_to_bundle
    from pixsearch.exporter.multilingual_eval import DEFAULT_QUERIES, figures, read_queries
    from pixsearch.exporter.space_data import load_corpus, split_photos
    from pixsearch.indexer.models import ModelBundle

    cfg = config or AdapterConfig(seed=seed)
    bundle = ModelBundle.load(bundle_dir)
    corpus = load_corpus(data_dir, bundle, cache_dir=cache_dir, log=log)
    train, val = split_photos(len(corpus.images), n_val, seed)
    in_train = np.isin(corpus.caption_image, train)
    rows = np.flatnonzero(in_train)
    texts = [corpus.captions[r] for r in rows]
    teacher = corpus.text_features[rows]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pixsearch-ml-") as tmp:
        exported, _module, _tok = make_encoder(texts, teacher, Path(tmp), cfg, log)
        staged = runtime_encoder(exported.onnx_path, exported.tokenizer_path)
        english = bundle.text_encoder
        english_only = english.multilingual is None

        def before(batch: list[str]) -> np.ndarray:
            return english._encode_own(batch, 64)

        def after(batch: list[str]) -> np.ndarray:
            from pixsearch.indexer.models import needs_multilingual

            routed = np.array([needs_multilingual(t) for t in batch], dtype=bool)
            out = np.zeros((len(batch), english.dim), np.float32)
            for mask, encode in ((routed, staged.encode), (~routed, before)):
                if mask.any():
                    out[mask] = encode([t for t, m in zip(batch, mask, strict=True) if m])
            return out

        test = read_queries(queries or DEFAULT_QUERIES)
        result["figures"] = figures(
            bundle.space,
            corpus,
            val,
            test,
            {
                "text_encoder (MiniLM) alone": before,
                "multilingual encoder for every query": lambda batch: staged.encode(batch),
                "routed (Cyrillic -> multilingual)": after,
            },
        )
        log(f"figures {result['figures']}")
        result.update(
            parity=exported.parity,
            seconds=exported.seconds,
            size_bytes=exported.onnx_path.stat().st_size,
            replaced_existing=not english_only,
        )
        if install:
            section = manifest_section(
                exported,
                cfg,
                {
                    "train_captions": len(texts),
                    "split": f"seeded permutation (seed {seed}), {n_val} validation photos",
                    "figures": result["figures"],
                },
            )

            def update(manifest: dict[str, Any]) -> None:
                manifest["models"][SECTION] = section
                manifest.setdefault("parity", {}).update(exported.parity)

            result["manifest"] = add_to_bundle(
                {FILE: exported.onnx_path, TOKENIZER_FILE: exported.tokenizer_path},
                update,
                bundle_dir,
            )
            log(f"installed {FILE}; bundle {result['manifest']['bundle_id']}")
    return result
