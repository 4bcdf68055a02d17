"""The MLP relevance reranker: a (query, photo) pair -> a calibrated relevance in [0, 1].

Inputs per pair: the query's text embedding ``[384]``, the photo's encoder ``features [1280]``
and the cosine ``similarity`` of the two in the shipped space. The net (the seed project's fully
connected scorer, grown up) projects photo and text to ``hidden``-d and reads
``[a, b, a*b, |a-b|, similarity]`` -> GELU MLP -> sigmoid.

Targets, one loss (binary cross-entropy with soft targets, so the output is a probability-like
score on the experts' scale):

- the customer's judged pairs: the merged relevance (``pixsearch.exporter.scores``);
- Flickr8k caption pairs: a caption and its own photo -> 1; the caption and a *hard negative*
  (a photo the joint space ranks high for it, not its own) or a random photo -> 0.

>>> import numpy as np
>>> ece, table = calibration(np.array([0.1, 0.9, 0.8]), np.array([0.0, 1.0, 1.0]), bins=2)
>>> round(ece, 3), [row["n"] for row in table]
(0.133, [1, 2])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pixsearch.exporter._torch import require_torch, seeded_torch
from pixsearch.exporter.onnx_graph import GraphBuilder, run_onnx
from pixsearch.exporter.parity import parity


@dataclass
class RerankerConfig:
    hidden: int = 128
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 256
    epochs: int = 8
    judged_weight: float = 3.0
    """Loss weight of a customer-judged pair relative to a caption pair."""
    seed: int = 42
    threads: int = 1


@dataclass
class PairData:
    """Pairs as rows of feature tables: text row, photo row, similarity, target, weight."""

    text_features: np.ndarray
    image_features: np.ndarray
    text_index: np.ndarray
    image_index: np.ndarray
    similarity: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="U8"))

    def __len__(self) -> int:
        return len(self.text_index)

    def subset(self, rows: np.ndarray) -> PairData:
        return PairData(
            self.text_features,
            self.image_features,
            self.text_index[rows],
            self.image_index[rows],
            self.similarity[rows],
            self.target[rows],
            self.weight[rows],
            self.source[rows] if len(self.source) else self.source,
        )


def build_net(feature_dim: int, text_dim: int, cfg: RerankerConfig) -> Any:
    torch = require_torch()
    nn = torch.nn
    h = cfg.hidden

    class RerankNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("img_mu", torch.zeros(feature_dim))
            self.register_buffer("img_sd", torch.ones(feature_dim))
            self.register_buffer("sim_mu", torch.zeros(1))
            self.register_buffer("sim_sd", torch.ones(1))
            self.image_proj = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(feature_dim, h))
            self.text_proj = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(text_dim, h))
            self.head = nn.Sequential(
                nn.Linear(4 * h + 1, h), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(h, 1)
            )

        def logit(self, txt: Any, img: Any, sim: Any) -> Any:
            a = self.image_proj((img - self.img_mu) / self.img_sd)
            b = self.text_proj(txt * math.sqrt(txt.shape[1]))
            s = ((sim - self.sim_mu) / self.sim_sd)[:, None]
            return self.head(torch.cat([a, b, a * b, (a - b).abs(), s], dim=1)).squeeze(1)

        def forward(self, txt: Any, img: Any, sim: Any) -> Any:
            return torch.sigmoid(self.logit(txt, img, sim))

    return RerankNet()


@dataclass
class Reranker:
    """A trained reranker (torch) with a numpy ``predict``."""

    net: Any
    config: RerankerConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def predict(self, pairs: PairData, batch_size: int = 8192) -> np.ndarray:
        torch = require_torch()
        self.net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                sl = slice(start, start + batch_size)
                out.append(
                    self.net(
                        torch.from_numpy(pairs.text_features[pairs.text_index[sl]]),
                        torch.from_numpy(pairs.image_features[pairs.image_index[sl]]),
                        torch.from_numpy(pairs.similarity[sl].astype(np.float32)),
                    ).numpy()
                )
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def score(self, text: np.ndarray, features: np.ndarray, sims: np.ndarray) -> np.ndarray:
        """Score pairs given directly as rows (``text [N,384]``, ``features [N,1280]``, ``[N]``)."""
        n = len(features)
        pairs = PairData(
            np.asarray(text, np.float32),
            np.asarray(features, np.float32),
            np.arange(n),
            np.arange(n),
            np.asarray(sims, np.float32),
            np.zeros(n),
            np.ones(n),
        )
        return self.predict(pairs)


def train_reranker(
    train: PairData,
    config: RerankerConfig | None = None,
    *,
    log: Callable[[str], None] = lambda message: None,
) -> Reranker:
    """Fit on ``train`` (weighted BCE on soft targets, AdamW); the last epoch's weights are kept."""
    torch = require_torch()
    cfg = config or RerankerConfig()
    started = time.perf_counter()
    with seeded_torch(seed=cfg.seed, threads=cfg.threads):
        net = build_net(train.image_features.shape[1], train.text_features.shape[1], cfg)
        used = np.unique(train.image_index)
        net.img_mu.copy_(torch.from_numpy(train.image_features[used].mean(0)))
        net.img_sd.copy_(torch.from_numpy(train.image_features[used].std(0) + 1e-4))
        net.sim_mu.fill_(float(train.similarity.mean()))
        net.sim_sd.fill_(float(train.similarity.std() + 1e-6))
        optimiser = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        txt_all = torch.from_numpy(train.text_features)
        img_all = torch.from_numpy(train.image_features)
        sim = torch.from_numpy(train.similarity.astype(np.float32))
        target = torch.from_numpy(train.target.astype(np.float32))
        weight = torch.from_numpy(train.weight.astype(np.float32))
        t_idx = torch.from_numpy(train.text_index)
        i_idx = torch.from_numpy(train.image_index)
        generator = torch.Generator().manual_seed(cfg.seed)
        steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=cfg.lr, total_steps=max(1, steps), pct_start=0.1
        )
        history = []
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = torch.randperm(len(train), generator=generator)
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                rows = order[start : start + cfg.batch_size]
                logit = net.logit(txt_all[t_idx[rows]], img_all[i_idx[rows]], sim[rows])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logit, target[rows], weight=weight[rows]
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += float(loss.detach()) * len(rows)
            history.append({"epoch": epoch, "loss": total / len(train)})
            log(f"reranker epoch {epoch}: loss {total / len(train):.4f}")
        net.eval()
    return Reranker(net, cfg, history, time.perf_counter() - started)


# ------------------------------------------------------------------------------ metrics
def calibration(
    predicted: np.ndarray, target: np.ndarray, bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error and the reliability table (equal-width bins of the score).

    Works for soft targets too: each bin compares the mean score with the mean target.
    """
    predicted = np.asarray(predicted, np.float64)
    target = np.asarray(target, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(predicted, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        mean_p, mean_t = float(predicted[mask].mean()), float(target[mask].mean())
        ece += mask.mean() * abs(mean_p - mean_t)
        table.append(
            {
                "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                "n": int(mask.sum()),
                "mean_score": round(mean_p, 3),
                "mean_target": round(mean_t, 3),
            }
        )
    return float(ece), table


def reliability_markdown(table: list[dict[str, float]]) -> str:
    lines = ["| score bin | pairs | mean score | mean target |", "|---|---|---|---|"]
    lines += [
        f"| {r['bin']} | {r['n']} | {r['mean_score']:.3f} | {r['mean_target']:.3f} |" for r in table
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ ONNX export
def reranker_bytes(model: Reranker) -> bytes:
    """``text_embeddings [N,384]``, ``features [N,1280]``, ``similarities [N]`` -> ``scores``."""
    net = model.net
    g = GraphBuilder()
    mu = net.img_mu.numpy().astype(np.float64)
    sd = net.img_sd.numpy().astype(np.float64)
    wi = net.image_proj[1].weight.detach().numpy().astype(np.float64)
    bi = net.image_proj[1].bias.detach().numpy().astype(np.float64)
    wi_f = wi / sd[None, :]
    a = g.linear("features", wi_f.astype(np.float32), (bi - wi_f @ mu).astype(np.float32))
    d_t = net.text_proj[1].weight.shape[1]
    wt = net.text_proj[1].weight.detach().numpy() * math.sqrt(d_t)
    b = g.linear("text_embeddings", wt.astype(np.float32), net.text_proj[1].bias.detach().numpy())
    product = g.node("Mul", [a, b])
    absdiff = g.node("Abs", [g.node("Sub", [a, b])])
    s_mu, s_sd = float(net.sim_mu), float(net.sim_sd)
    s = g.node(
        "Div",
        [
            g.node("Sub", ["similarities", g.const(np.array(s_mu, np.float32))]),
            g.const(np.array(s_sd, np.float32)),
        ],
    )
    s2 = g.node("Unsqueeze", [s, g.const(np.array([1], np.int64))])
    z = g.node("Concat", [a, b, product, absdiff, s2], axis=1)
    z = g.tower(z, net.head)
    logit = g.node("Squeeze", [z, g.const(np.array([1], np.int64))])
    g.node("Sigmoid", [logit], ["scores"])
    n_feat = len(mu)
    return g.model(
        "pixsearch_reranker",
        [
            ("text_embeddings", ["batch", d_t]),
            ("features", ["batch", n_feat]),
            ("similarities", ["batch"]),
        ],
        [("scores", ["batch"])],
    )


def export_reranker(
    model: Reranker, path: Any, text: np.ndarray, features: np.ndarray, sims: np.ndarray
) -> dict[str, float]:
    """Write ``reranker.onnx`` after a parity check against PyTorch (raises on drift)."""
    from pathlib import Path

    data = calibrator_bytes(model) if isinstance(model, Calibrator) else reranker_bytes(model)
    onnx_scores = run_onnx(
        data,
        {
            "text_embeddings": text.astype(np.float32),
            "features": features.astype(np.float32),
            "similarities": sims.astype(np.float32),
        },
    )[0]
    report = parity(
        model.score(text, features, sims)[:, None], onnx_scores[:, None], "reranker", max_abs=1e-4
    )
    Path(path).write_bytes(data)
    return report


def config_dict(cfg: RerankerConfig) -> dict[str, Any]:
    return asdict(cfg)


# ------------------------------------------------------------------------------ calibrator
@dataclass
class Calibrator:
    """``sigmoid(a * similarity + b)``: the space's cosine mapped onto the experts' scale.

    Monotone in the similarity, so reranking by it keeps the space's order; it only makes the
    score meaningful on its own ("only above 0.5"). Same inputs as the MLP reranker (the text
    embedding and features are accepted and ignored), so the runtime cannot tell them apart.

    >>> c = Calibrator.fit(np.array([0.1, 0.2, 0.6, 0.7]), np.array([0.0, 0.1, 0.9, 1.0]))
    >>> bool(c.a > 0), [round(float(v)) for v in c.predict_sims(np.array([0.0, 0.8]))]
    (True, [0, 1])
    """

    a: float
    b: float
    config: Any = None

    @classmethod
    def fit(
        cls, sims: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None
    ) -> Calibrator:
        """Weighted logistic fit on soft targets (Newton steps on the cross-entropy)."""
        x = np.asarray(sims, np.float64)
        y = np.asarray(target, np.float64)
        w = np.ones_like(x) if weight is None else np.asarray(weight, np.float64)
        a, b = 1.0, 0.0
        for _ in range(100):
            p = 1.0 / (1.0 + np.exp(-(a * x + b)))
            g = np.array([np.sum(w * (p - y) * x), np.sum(w * (p - y))])
            h = p * (1 - p) * w
            hess = np.array([[np.sum(h * x * x), np.sum(h * x)], [np.sum(h * x), np.sum(h)]])
            step = np.linalg.solve(hess + 1e-9 * np.eye(2), g)
            a, b = a - step[0], b - step[1]
            if np.max(np.abs(step)) < 1e-10:
                break
        return cls(float(a), float(b))

    def predict_sims(self, sims: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * np.asarray(sims, np.float64) + self.b)))

    def predict(self, pairs: PairData) -> np.ndarray:
        return self.predict_sims(pairs.similarity)

    def score(self, text: np.ndarray, features: np.ndarray, sims: np.ndarray) -> np.ndarray:
        return self.predict_sims(sims)


def calibrator_bytes(model: Calibrator, feature_dim: int = 1280, text_dim: int = 384) -> bytes:
    """The calibrator as ONNX with the reranker's inputs and output."""
    g = GraphBuilder()
    # the unused inputs are read (times zero) so every runtime keeps them in the graph
    zero = g.const(np.array(0.0, np.float32))
    text_sum = g.node(
        "ReduceSum", ["text_embeddings", g.const(np.array([1], np.int64))], keepdims=0
    )
    feat_sum = g.node("ReduceSum", ["features", g.const(np.array([1], np.int64))], keepdims=0)
    unused = g.node("Mul", [g.node("Add", [text_sum, feat_sum]), zero])
    z = g.node(
        "Add",
        [
            g.node("Mul", ["similarities", g.const(np.array(model.a, np.float32))]),
            g.const(np.array(model.b, np.float32)),
        ],
    )
    g.node("Sigmoid", [g.node("Add", [z, unused])], ["scores"])
    return g.model(
        "pixsearch_calibrator",
        [
            ("text_embeddings", ["batch", text_dim]),
            ("features", ["batch", feature_dim]),
            ("similarities", ["batch"]),
        ],
        [("scores", ["batch"])],
    )
