"""Training the joint space: two small towers on frozen encoder features (issue #3).

Two towers map photo features and caption embeddings into one ``dim``-d space, trained with a
symmetric InfoNCE loss whose temperature is learned; every caption of a photo is a positive of
it (multi-positive loss). The photo tower can also read the zero-shot *label-bridge* vector of
the photo, computed from the features, so the runtime still stores only ``features``.

>>> JointConfig().dim, JointConfig(dim=64).mix
(256, 0.6)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pixsearch.exporter._torch import require_torch, seeded_torch
from pixsearch.exporter.space_eval import evaluate

if TYPE_CHECKING:
    from pixsearch.exporter.space_data import Bridge, Corpus


@dataclass
class JointConfig:
    """Hyper-parameters of the joint space (defaults: the shipped joint-v1)."""

    dim: int = 256
    image_hidden: int = 1024
    """0 = a linear image tower."""
    text_hidden: int = 1024
    """0 = a linear text tower."""
    bridge_input: bool = False
    """Feed the label-bridge vector to the image tower too."""
    dropout: float = 0.2
    temperature: float = 0.05
    learn_temperature: bool = True
    multi_positive: bool = True
    """All captions of a photo in the batch are positives (else one random caption per photo)."""
    augment: float = 0.0
    """Probability of using an augmented view's features (chosen uniformly among the mirror and
    ``crop_views`` random resized crops) instead of the photo's for a training step's photo."""
    crop_views: int = 0
    """Random-resized-crop views encoded per photo (cached) for ``augment``."""
    text_augment: float = 0.5
    """Probability of using the multilingual encoder's embedding of a caption (USE + adapter,
    the path of Russian queries) instead of MiniLM's for a training step's caption (0.5 from
    issue #13's retrain: Russian test-set R@10 53.1 -> 54.4, English validation 66.4 -> 66.5,
    docs/tower.md). Needs the corpus's text views: ``load_corpus(text_views=True)``."""
    batch_photos: int = 256
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.05
    ema: float = 0.0
    hard_batches: float = 0.0
    """Share of epochs whose batches group similar photos (k-means on the features): harder
    in-batch negatives."""
    """Exponential moving average of the weights (0 = off)."""
    mix: float = 0.6
    """Share ``a`` of the joint cosine in the shipped score (1 - a goes to the label bridge)."""
    seed: int = 42
    threads: int = 1


def build_towers(cfg: JointConfig, feature_dim: int, text_dim: int, bridge_dim: int) -> Any:
    """``JointNet``: ``image(features, bridge) -> [N,dim]``, ``text(emb) -> [N,dim]`` (L2)."""
    torch = require_torch()
    nn = torch.nn

    def tower(n_in: int, hidden: int) -> Any:
        if hidden <= 0:
            return nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_in, cfg.dim))
        return nn.Sequential(
            nn.Dropout(cfg.dropout),
            nn.Linear(n_in, hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(hidden, cfg.dim),
        )

    class JointNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            extra = bridge_dim if cfg.bridge_input else 0
            self.register_buffer("img_mu", torch.zeros(feature_dim))
            self.register_buffer("img_sd", torch.ones(feature_dim))
            self.image_tower = tower(feature_dim + extra, cfg.image_hidden)
            self.text_tower = tower(text_dim, cfg.text_hidden)
            self.log_scale = nn.Parameter(
                torch.tensor(math.log(1.0 / cfg.temperature)),
                requires_grad=cfg.learn_temperature,
            )

        def image(self, features: Any, bridge: Any) -> Any:
            x = (features - self.img_mu) / self.img_sd
            if cfg.bridge_input:
                x = torch.cat([x, bridge * math.sqrt(bridge.shape[1])], dim=1)
            return nn.functional.normalize(self.image_tower(x), dim=1)

        def text(self, embeddings: Any) -> Any:
            x = embeddings * math.sqrt(embeddings.shape[1])
            return nn.functional.normalize(self.text_tower(x), dim=1)

    return JointNet()


@dataclass
class JointModel:
    """A trained joint space (torch towers + the bridge) with numpy helpers."""

    net: Any
    bridge: Bridge
    config: JointConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def joint_image(self, features: np.ndarray) -> np.ndarray:
        torch = require_torch()
        self.net.eval()
        with torch.no_grad():
            f = torch.from_numpy(np.ascontiguousarray(features, np.float32))
            b = torch.from_numpy(self.bridge.vectors(features))
            return self.net.image(f, b).numpy()

    def joint_text(self, embeddings: np.ndarray) -> np.ndarray:
        torch = require_torch()
        self.net.eval()
        with torch.no_grad():
            return self.net.text(
                torch.from_numpy(np.ascontiguousarray(embeddings, np.float32))
            ).numpy()

    def image_vectors(self, features: np.ndarray, mix: float | None = None) -> np.ndarray:
        """The shipped image vectors ``[N, dim + 384]`` (see the module docstring)."""
        a = self.config.mix if mix is None else mix
        return np.concatenate(
            [
                math.sqrt(a) * self.joint_image(features),
                math.sqrt(1 - a) * self.bridge.vectors(features),
            ],
            axis=1,
        ).astype(np.float32)

    def text_vectors(self, embeddings: np.ndarray, mix: float | None = None) -> np.ndarray:
        a = self.config.mix if mix is None else mix
        emb = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return np.concatenate(
            [math.sqrt(a) * self.joint_text(embeddings), math.sqrt(1 - a) * emb], axis=1
        ).astype(np.float32)


def warmup_cosine(optimiser: Any, total: int) -> Any:
    """Linear warm-up over the first 5% of ``total`` steps, then cosine decay to 0."""
    torch = require_torch()
    warmup = max(1, total // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))),
    )


def multi_positive_infonce(logits: Any, owner: Any) -> Any:
    """Symmetric InfoNCE for ``logits [captions, photos]``; ``owner[c]`` is caption c's photo.

    Mean of caption -> photo cross-entropy and photo -> captions loss where every caption of
    the photo in the batch is a positive (log-sum-exp over them against all captions).
    """
    torch = require_torch()
    t2i = torch.nn.functional.cross_entropy(logits, owner)
    positive = torch.zeros_like(logits, dtype=torch.bool)
    positive[torch.arange(len(owner)), owner] = True
    col = logits.T  # photo -> captions
    log_all = torch.logsumexp(col, dim=1)
    log_pos = torch.logsumexp(col.masked_fill(~positive.T, -1e9), dim=1)
    return 0.5 * (t2i + (log_all - log_pos).mean())


def train_joint(
    corpus: Corpus,
    train_photos: np.ndarray,
    bridge: Bridge,
    config: JointConfig | None = None,
    *,
    val_photos: np.ndarray | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> JointModel:
    """Train the towers on the captions of ``train_photos`` (indices into ``corpus.images``).

    Each step takes ``batch_photos`` distinct photos (each replaced by one of its augmented
    views with probability ``augment``) and their captions (all of them with
    ``multi_positive``, else one random caption each); loss = mean of caption->photo and
    photo->captions InfoNCE. With ``val_photos`` the validation R@1/5/10 is logged per epoch
    (for the history only: the weights of the last epoch are kept, not the best, so the
    validation split is not tuned on per epoch).
    """
    torch = require_torch()
    cfg = config or JointConfig()
    started = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    with seeded_torch(seed=cfg.seed, threads=cfg.threads):
        feats = corpus.features
        bridge_all = bridge.vectors(feats)
        views = corpus.view_features if cfg.augment > 0 else []
        view_feats = np.stack([feats, *views])  # [1 + V, I, D]; 0 = the photo itself
        view_bridge = np.stack([bridge_all, *(bridge.vectors(v) for v in views)])
        net = build_towers(cfg, feats.shape[1], corpus.text_features.shape[1], bridge_all.shape[1])
        train_photos = np.asarray(train_photos)
        mu = feats[train_photos].mean(0)
        sd = feats[train_photos].std(0) + 1e-4
        net.img_mu.copy_(torch.from_numpy(mu.astype(np.float32)))
        net.img_sd.copy_(torch.from_numpy(sd.astype(np.float32)))
        caps_of: dict[int, list[int]] = {}
        for c, owner in enumerate(corpus.caption_image.tolist()):
            caps_of.setdefault(owner, []).append(c)
        photos = np.array([p for p in train_photos.tolist() if p in caps_of], dtype=np.int64)
        decay, no_decay = [], []
        for _name, param in net.named_parameters():
            (no_decay if param.ndim < 2 else decay).append(param)
        optimiser = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        steps_per_epoch = max(1, len(photos) // cfg.batch_photos)
        total = steps_per_epoch * cfg.epochs
        schedule = warmup_cosine(optimiser, total)
        ema_state = (
            {k: v.detach().clone() for k, v in net.state_dict().items()} if cfg.ema else None
        )
        text_views = corpus.text_view_features if cfg.text_augment > 0 else []
        if cfg.text_augment > 0 and not text_views:
            raise ValueError("text_augment needs the corpus's text views (load_corpus text_views)")
        text_all = torch.from_numpy(np.stack([corpus.text_features, *text_views]))
        clusters = _photo_clusters(feats[photos], cfg) if cfg.hard_batches > 0 else None
        history = []
        for epoch in range(1, cfg.epochs + 1):
            net.train()
            order = rng.permutation(photos)
            if clusters is not None and rng.random() < cfg.hard_batches:
                # photos of one cluster side by side: each batch holds a few similar groups
                keys = rng.permutation(clusters.max() + 1)[clusters] * 1.0 + rng.random(len(photos))
                order = photos[np.argsort(keys)]
            losses = []
            for step in range(steps_per_epoch):
                batch = order[step * cfg.batch_photos : (step + 1) * cfg.batch_photos]
                pick = np.where(
                    rng.random(len(batch)) < cfg.augment,
                    rng.integers(1, len(view_feats), len(batch)) if views else 0,
                    0,
                )
                f = view_feats[pick, batch]
                b = view_bridge[pick, batch]
                if cfg.multi_positive:
                    cap_rows = [c for p in batch.tolist() for c in caps_of[p]]
                    cap_owner = [i for i, p in enumerate(batch.tolist()) for _ in caps_of[p]]
                else:
                    cap_rows = [int(rng.choice(caps_of[p])) for p in batch.tolist()]
                    cap_owner = list(range(len(batch)))
                img = net.image(torch.from_numpy(f), torch.from_numpy(b))
                text_pick = np.zeros(len(cap_rows), dtype=np.int64)
                if text_views:  # the random stream is untouched without text views
                    swap = rng.random(len(cap_rows)) < cfg.text_augment
                    text_pick[swap] = rng.integers(1, len(text_all), int(swap.sum()))
                txt = net.text(text_all[torch.from_numpy(text_pick), torch.tensor(cap_rows)])
                logits = net.log_scale.clamp(max=math.log(100.0)).exp() * txt @ img.T
                loss = multi_positive_infonce(logits, torch.tensor(cap_owner))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                if ema_state is not None:
                    with torch.no_grad():
                        for k, v in net.state_dict().items():
                            if v.dtype.is_floating_point:
                                ema_state[k].mul_(cfg.ema).add_(v.detach(), alpha=1 - cfg.ema)
                            else:
                                ema_state[k].copy_(v)
                losses.append(float(loss.detach()))
            entry = {
                "epoch": epoch,
                "loss": float(np.mean(losses)),
                "temperature": float(1.0 / net.log_scale.detach().exp()),
            }
            if val_photos is not None and (epoch % 10 == 0 or epoch == cfg.epochs):
                model = JointModel(net, bridge, cfg)
                entry.update(evaluate(model, corpus, val_photos, mix=1.0))
                net.train()
            history.append(entry)
            if "R@10" in entry:
                log(
                    f"epoch {epoch}: loss {entry['loss']:.3f}, T {entry['temperature']:.4f}, "
                    f"joint R@1/5/10 {entry['R@1']}/{entry['R@5']}/{entry['R@10']}"
                )
        if ema_state is not None:
            net.load_state_dict(ema_state)
        net.eval()
    return JointModel(net, bridge, cfg, history, time.perf_counter() - started)


def _photo_clusters(features: np.ndarray, cfg: JointConfig) -> np.ndarray:
    """K-means cluster of each photo (about 32 photos per cluster), seeded."""
    from sklearn.cluster import MiniBatchKMeans

    k = max(2, len(features) // 32)
    x = (features - features.mean(0)) / (features.std(0) + 1e-4)
    return MiniBatchKMeans(k, random_state=cfg.seed, n_init=1, batch_size=1024).fit_predict(x)


def config_dict(cfg: JointConfig) -> dict[str, Any]:
    return asdict(cfg)
