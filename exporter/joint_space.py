"""A trained joint text-image space on frozen encoder features (issue #3).

Photos are EfficientNet-Lite0 pooled ``features [1280]``, texts MiniLM ``embeddings [384]``,
both read from the feature cache (``pixsearch.exporter.features``). Two small towers map them
into one ``dim``-d space, trained with a symmetric InfoNCE loss whose temperature is learned;
every caption of a photo is a positive of it (multi-positive loss). The photo tower also reads the
zero-shot *label-bridge* vector of the photo (EfficientNet classifier -> softmax -> top-k class
names' text embeddings), which it computes from the features itself, so the runtime still stores
only ``features``.

What is shipped is a *mix*: the image vector is ``[sqrt(a) * joint_image, sqrt(1 - a) *
bridge_image]`` and the text vector ``[sqrt(a) * joint_text, sqrt(1 - a) * text_embedding]``;
both have unit length, and their dot product is ``a * cos_joint + (1 - a) * cos_bridge``. The
bridge share keeps the ImageNet objects (rockets, coffee cups, motorcycles) that Flickr8k's
people-and-dogs captions never teach the towers.

>>> import numpy as np
>>> ranks = retrieval_ranks(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32),
...                         np.array([0, 1, 2]))
>>> ranks.tolist(), recall_table(ranks)["R@1"]
([1, 1, 1], 100.0)
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.exporter._torch import require_torch, seeded_torch

Predicate = Callable[[str], bool]


# ------------------------------------------------------------------------------ bridge
@dataclass
class Bridge:
    """The label-bridge parameters: EfficientNet's classifier and the class-name embeddings."""

    fc_weight_t: np.ndarray
    """``[1280, 1000]``: features @ fc_weight_t + fc_bias = ImageNet logits."""
    fc_bias: np.ndarray
    class_embeddings: np.ndarray
    """``[1000, 384]`` text embeddings of the class-name prompts."""
    top_k: int = 20

    @classmethod
    def from_bundle(cls, bundle: Any) -> Bridge:
        """Read the parameters from the bundle's image head (the label bridge or a joint head
        made here: both name their initializers ``fc_weight_t``, ``fc_bias``,
        ``class_embeddings``)."""
        import onnx
        from onnx import numpy_helper

        space = bundle.manifest["space"]
        model = onnx.load(str(Path(bundle.path) / space["files"]["image_head"]))
        weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        top_k = int(space.get("params", {}).get("top_k", space.get("bridge", {}).get("top_k", 20)))
        missing = {"fc_weight_t", "fc_bias", "class_embeddings"} - set(weights)
        if missing:
            from pixsearch.db.errors import ModelBundleError

            raise ModelBundleError(
                f"the bundle's image head has no label-bridge weights ({sorted(missing)}); "
                'run "pixsearch export" to rebuild the bundle'
            )
        return cls(
            weights["fc_weight_t"].astype(np.float32),
            weights["fc_bias"].astype(np.float32),
            weights["class_embeddings"].astype(np.float32),
            top_k,
        )

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float32) @ self.fc_weight_t + self.fc_bias

    def vectors(self, features: np.ndarray) -> np.ndarray:
        """Label-bridge image vectors ``[N, 384]`` (float32, unit length)."""
        from pixsearch.exporter._onnx_tools import bridge_from_logits

        return bridge_from_logits(self.logits(features), self.class_embeddings, self.top_k)


# ------------------------------------------------------------------------------ corpus
@dataclass
class Corpus:
    """Captioned photos with cached features; captions about children already removed."""

    images: list[str]
    """Unique photos (a byte-identical duplicate keeps the first name; its captions merge)."""
    paths: list[Path]
    features: np.ndarray
    """``[I, 1280]``."""
    view_features: list[np.ndarray]
    """Augmented views for training, each ``[I, 1280]``: the mirrored photos, then random
    resized crops (``augment_view``); empty without augmentation."""
    captions: list[str]
    caption_image: np.ndarray
    """``[C]`` index of each caption's photo in ``images``."""
    text_features: np.ndarray
    """``[C, 384]``."""
    filter_counts: dict[str, int] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)


def read_manifest(data_dir: Path) -> tuple[list[tuple[str, Path]], dict[str, str], list[str]]:
    """``(photos, duplicate_of, damaged)`` from ``flickr8k/manifest.csv``.

    A note ``byte-identical duplicate of X`` merges the photo into ``X`` (the name sorting first
    is kept); any other note marks the photo as damaged (left out of training and validation).
    """
    manifest = data_dir / "flickr8k" / "manifest.csv"
    photos: list[tuple[str, Path]] = []
    duplicate_of: dict[str, str] = {}
    damaged: list[str] = []
    with open(manifest, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            name, note = row["image"], (row.get("note") or "").strip()
            photos.append((name, data_dir / row["folder"] / name))
            if "duplicate of" in note:
                other = note.rsplit(" ", 1)[-1]
                keep = min(name, other)
                if name != keep:
                    duplicate_of[name] = keep
            elif note:
                damaged.append(name)
    return photos, duplicate_of, damaged


def load_corpus(
    data_dir: str | Path,
    bundle: Any,
    *,
    cache_dir: str | Path | None = None,
    predicate: Predicate | None = None,
    flip: bool = True,
    crop_views: int = 0,
    max_images: int | None = None,
    seed: int = 42,
    log: Callable[[str], None] = lambda message: None,
) -> Corpus:
    """Photos of ``manifest.csv`` + ``captions.tsv``, legal filter applied, features cached."""
    from pixsearch.exporter.features import image_features, text_features

    if predicate is None:
        from pixsearch.exporter.workflow import children_predicate

        predicate = children_predicate()
    data_dir = Path(data_dir)
    photos, duplicate_of, damaged = read_manifest(data_dir)
    by_image: dict[str, list[str]] = {}
    with open(data_dir / "flickr8k" / "captions.tsv", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            by_image.setdefault(row["image"], []).append(row["caption"])
    n_captions = sum(len(v) for v in by_image.values())
    dropped_damaged = set(damaged)
    keep = [(n, p) for n, p in photos if n not in dropped_damaged and n not in duplicate_of]
    if max_images is not None and max_images < len(keep):
        rng = np.random.default_rng(seed)
        keep = [keep[i] for i in sorted(rng.choice(len(keep), max_images, replace=False))]
    merged: dict[str, list[str]] = {n: list(by_image.get(n, [])) for n, _ in keep}
    for dup, target in duplicate_of.items():
        if target in merged:
            merged[target] += by_image.get(dup, [])
    counts = {"captions_read": n_captions, "photos_read": len(photos)}
    verdict: dict[str, bool] = {}
    images, paths, captions, owner = [], [], [], []
    removed_captions = 0
    photos_all_child = []
    for name, path in keep:
        texts = merged[name]
        kept = []
        for text in texts:
            if text not in verdict:
                verdict[text] = bool(predicate(text))
            if verdict[text]:
                removed_captions += 1
            else:
                kept.append(text)
        if texts and not kept:
            photos_all_child.append(name)
        index = len(images)
        images.append(name)
        paths.append(path)
        captions += kept
        owner += [index] * len(kept)
    counts.update(
        captions_about_children=removed_captions,
        captions_kept=len(captions),
        photos_damaged=len(dropped_damaged),
        photos_duplicate_merged=len(duplicate_of),
        photos_with_only_child_captions=len(photos_all_child),
        photos_kept=len(images),
    )
    log(
        f"{len(images)} photos, {len(captions)} captions kept; {removed_captions} captions about "
        f"children dropped ({len(photos_all_child)} photos left with no caption)"
    )
    feats = image_features(paths, bundle, cache_dir, workers=2)
    views = [f"crop{i}" for i in range(1, crop_views + 1)]
    views = (["hflip"] if flip else []) + views
    view_features = [image_features(paths, bundle, cache_dir, workers=2, view=v) for v in views]
    texts = text_features(captions, bundle, cache_dir)
    return Corpus(
        images,
        paths,
        feats,
        view_features,
        captions,
        np.asarray(owner, dtype=np.int64),
        texts,
        counts,
        {
            "damaged": sorted(dropped_damaged),
            "duplicates": sorted(duplicate_of),
            "only_child_captions": photos_all_child,
        },
    )


def split_photos(n_images: int, n_val: int = 900, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Seeded photo split: ``(train_photo_indices, val_photo_indices)``, both sorted.

    >>> tr, va = split_photos(10, 3, seed=0)
    >>> len(tr), len(va), set(tr.tolist()).isdisjoint(va.tolist())
    (7, 3, True)
    """
    order = np.random.default_rng(seed).permutation(n_images)
    n_val = min(n_val, n_images - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# ------------------------------------------------------------------------------ metrics
def retrieval_ranks(
    image_vectors: np.ndarray, query_vectors: np.ndarray, owners: np.ndarray
) -> np.ndarray:
    """1-based rank of each query's own photo (ties counted pessimistically halfway)."""
    scores = query_vectors @ image_vectors.T
    own = scores[np.arange(len(owners)), owners][:, None]
    greater = (scores > own).sum(axis=1)
    tied = (scores == own).sum(axis=1) - 1
    return (greater + 1 + tied / 2.0).astype(np.float64)


def recall_table(ranks: np.ndarray) -> dict[str, float]:
    """R@1/5/10 in percent and the median rank."""
    return {
        "R@1": round(100.0 * float(np.mean(ranks <= 1)), 2),
        "R@5": round(100.0 * float(np.mean(ranks <= 5)), 2),
        "R@10": round(100.0 * float(np.mean(ranks <= 10)), 2),
        "median_rank": float(np.median(ranks)),
    }


# ------------------------------------------------------------------------------ training
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
        warmup = max(1, total // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser,
            lambda s: (
                min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
            ),
        )
        ema_state = (
            {k: v.detach().clone() for k, v in net.state_dict().items()} if cfg.ema else None
        )
        text_all = torch.from_numpy(corpus.text_features)
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
                txt = net.text(text_all[cap_rows])
                logits = net.log_scale.clamp(max=math.log(100.0)).exp() * txt @ img.T
                owner = torch.tensor(cap_owner)
                t2i = torch.nn.functional.cross_entropy(logits, owner)
                positive = torch.zeros_like(logits, dtype=torch.bool)
                positive[torch.arange(len(owner)), owner] = True
                col = logits.T  # photo -> captions
                log_all = torch.logsumexp(col, dim=1)
                log_pos = torch.logsumexp(col.masked_fill(~positive.T, -1e9), dim=1)
                i2t = (log_all - log_pos).mean()
                loss = 0.5 * (t2i + i2t)
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


def val_queries(corpus: Corpus, photos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(caption rows, owner position within photos)`` of the captions of ``photos``."""
    position = {int(p): i for i, p in enumerate(np.asarray(photos).tolist())}
    rows = np.array(
        [c for c, o in enumerate(corpus.caption_image.tolist()) if o in position], dtype=np.int64
    )
    owners = np.array([position[int(corpus.caption_image[c])] for c in rows], dtype=np.int64)
    return rows, owners


def evaluate(
    model: Any, corpus: Corpus, photos: np.ndarray, *, mix: float | None = None
) -> dict[str, float]:
    """Text -> image R@1/5/10 and median rank among ``photos`` for their own captions."""
    rows, owners = val_queries(corpus, photos)
    if mix is None:
        img = model.image_vectors(corpus.features[photos])
        txt = model.text_vectors(corpus.text_features[rows])
    else:
        img = model.image_vectors(corpus.features[photos], mix=mix)
        txt = model.text_vectors(corpus.text_features[rows], mix=mix)
    return recall_table(retrieval_ranks(img, txt, owners))


class BridgeSpace:
    """The label bridge alone, with the same helpers as ``JointModel`` (the baseline row)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def image_vectors(self, features: np.ndarray, mix: float | None = None) -> np.ndarray:
        return self.bridge.vectors(features)

    def text_vectors(self, embeddings: np.ndarray, mix: float | None = None) -> np.ndarray:
        return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def config_dict(cfg: JointConfig) -> dict[str, Any]:
    return asdict(cfg)


# ------------------------------------------------------------------------------ ONNX export
class GraphBuilder:
    """A tiny helper that writes ONNX graphs by hand (MatMul/Add/Erf GELU/L2), opset 18.

    Hand-written graphs keep the heads small, free of exporter quirks and byte-reproducible.
    ``half=True`` stores weight matrices as float16 (cast to float32 inside the graph).
    """

    def __init__(self, half: bool = False) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.half = half
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, value: np.ndarray, name: str | None = None, *, weight: bool = False) -> str:
        from onnx import numpy_helper

        name = name or self.name("c")
        value = np.ascontiguousarray(value)
        if weight and self.half and value.dtype == np.float32 and value.ndim == 2:
            stored = name + "_f16"
            self.initializers.append(numpy_helper.from_array(value.astype(np.float16), stored))
            self.node("Cast", [stored], [name], to=1)
            return name
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(
        self, op: str, inputs: list[str], outputs: list[str] | None = None, **attrs: Any
    ) -> str:
        from onnx import helper

        outputs = outputs or [self.name(op.lower())]
        self.nodes.append(helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray) -> str:
        """``x @ weight.T + bias`` (weight as in ``torch.nn.Linear``: ``[out, in]``)."""
        w = self.const(weight.T.astype(np.float32), weight=True)
        return self.node("Add", [self.node("MatMul", [x, w]), self.const(bias.astype(np.float32))])

    def gelu(self, x: str) -> str:
        """Exact GELU: ``0.5 x (1 + erf(x / sqrt 2))``."""
        scaled = self.node("Mul", [x, self.const(np.array(1 / math.sqrt(2), np.float32))])
        erf = self.node("Erf", [scaled])
        one = self.node("Add", [erf, self.const(np.array(1.0, np.float32))])
        half = self.node("Mul", [x, self.const(np.array(0.5, np.float32))])
        return self.node("Mul", [half, one])

    def l2(self, x: str, output: str | None = None) -> str:
        axis = self.const(np.array([-1], np.int64))
        norm = self.node("ReduceL2", [x, axis], keepdims=1)
        safe = self.node("Max", [norm, self.const(np.array(1e-12, np.float32))])
        return self.node("Div", [x, safe], [output] if output else None)

    def bridge(self, features: str, bridge: Bridge) -> str:
        """The label bridge (same initializer names as the zero-shot head)."""
        w = self.const(bridge.fc_weight_t, "fc_weight_t")
        logits = self.node(
            "Add", [self.node("MatMul", [features, w]), self.const(bridge.fc_bias, "fc_bias")]
        )
        probs = self.node("Softmax", [logits], axis=-1)
        k = self.const(np.array([bridge.top_k], np.int64), "k")
        top_p, top_i = self.name("top_p"), self.name("top_i")
        self.node("TopK", [probs, k], [top_p, top_i], axis=-1, largest=1, sorted=1)
        last = self.const(np.array([-1], np.int64))
        total = self.node("ReduceSum", [top_p, last], keepdims=1)
        weights = self.node("Div", [top_p, total])
        picked = self.node(
            "Gather", [self.const(bridge.class_embeddings, "class_embeddings"), top_i], axis=0
        )
        weighted = self.node("Mul", [picked, self.node("Unsqueeze", [weights, last])])
        mixed = self.node("ReduceSum", [weighted, self.const(np.array([1], np.int64))], keepdims=0)
        return self.l2(mixed)

    def tower(self, x: str, sequential: Any) -> str:
        """A ``torch.nn.Sequential`` of Dropout / Linear / GELU layers (inference mode)."""
        import torch

        for layer in sequential:
            if isinstance(layer, torch.nn.Linear):
                x = self.linear(x, layer.weight.detach().numpy(), layer.bias.detach().numpy())
            elif isinstance(layer, torch.nn.GELU):
                x = self.gelu(x)
            elif not isinstance(layer, torch.nn.Dropout):
                raise TypeError(f"cannot export layer {layer!r}")
        return x

    def model(
        self, name: str, inputs: list[tuple[str, list[Any]]], outputs: list[tuple[str, list[Any]]]
    ) -> bytes:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="pixsearch-export"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model.SerializeToString(deterministic=True)


def _folded_first_linear(
    sequential: Any, scale: np.ndarray, shift: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weights of the first Linear with ``(x - shift) * scale`` folded in (per input column)."""
    first = next(layer for layer in sequential if hasattr(layer, "weight"))
    w = first.weight.detach().numpy().astype(np.float64)
    b = first.bias.detach().numpy().astype(np.float64)
    w_new = w * scale[None, :]
    b_new = b - w_new @ shift
    return w_new.astype(np.float32), b_new.astype(np.float32)


def _tower_after_first(
    x: str, g: GraphBuilder, sequential: Any, w: np.ndarray, b: np.ndarray
) -> str:
    import torch

    layers = [layer for layer in sequential if not isinstance(layer, torch.nn.Dropout)]
    x = g.linear(x, w, b)
    return g.tower(x, torch.nn.Sequential(*layers[1:]))


def image_head_bytes(model: JointModel, *, half: bool = False) -> bytes:
    """``features [N,1280]`` -> ``vectors [N, dim + 384]`` (the mixed, unit-length vector)."""
    cfg, net = model.config, model.net
    g = GraphBuilder(half)
    bridge_vec = g.bridge("features", model.bridge)
    mu = net.img_mu.numpy().astype(np.float64)
    sd = net.img_sd.numpy().astype(np.float64)
    n_feat = len(mu)
    if cfg.bridge_input:
        d_b = model.bridge.class_embeddings.shape[1]
        scale = np.concatenate([1 / sd, np.full(d_b, math.sqrt(d_b))])
        shift = np.concatenate([mu, np.zeros(d_b)])
        x = g.node("Concat", ["features", bridge_vec], axis=1)
    else:
        scale, shift, x = 1 / sd, mu, "features"
    w, b = _folded_first_linear(net.image_tower, scale, shift)
    joint = g.l2(_tower_after_first(x, g, net.image_tower, w, b))
    a = cfg.mix
    left = g.node("Mul", [joint, g.const(np.array(math.sqrt(a), np.float32))])
    right = g.node("Mul", [bridge_vec, g.const(np.array(math.sqrt(1 - a), np.float32))])
    g.node("Concat", [left, right], ["vectors"], axis=1)
    dim = cfg.dim + model.bridge.class_embeddings.shape[1]
    return g.model(
        "joint_image_head", [("features", ["batch", n_feat])], [("vectors", ["batch", dim])]
    )


def text_head_bytes(model: JointModel, *, half: bool = False) -> bytes:
    """``text_embeddings [N,384]`` -> ``vectors [N, dim + 384]``."""
    cfg, net = model.config, model.net
    g = GraphBuilder(half)
    d_t = model.bridge.class_embeddings.shape[1]
    unit = g.l2("text_embeddings")
    w, b = _folded_first_linear(net.text_tower, np.full(d_t, math.sqrt(d_t)), np.zeros(d_t))
    joint = g.l2(_tower_after_first("text_embeddings", g, net.text_tower, w, b))
    a = cfg.mix
    left = g.node("Mul", [joint, g.const(np.array(math.sqrt(a), np.float32))])
    right = g.node("Mul", [unit, g.const(np.array(math.sqrt(1 - a), np.float32))])
    g.node("Concat", [left, right], ["vectors"], axis=1)
    return g.model(
        "joint_text_head",
        [("text_embeddings", ["batch", d_t])],
        [("vectors", ["batch", cfg.dim + d_t])],
    )


class ParityError(RuntimeError):
    """An exported ONNX model drifts from its PyTorch reference beyond the tolerance."""


def parity(
    reference: np.ndarray,
    exported: np.ndarray,
    what: str,
    *,
    max_abs: float = 1e-4,
    min_cos: float = 0.9999,
) -> dict[str, float]:
    """``{"max_abs_diff", "min_cosine"}`` of two outputs; raises ``ParityError`` on drift."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    out = np.asarray(exported, np.float64).reshape(len(exported), -1)
    diff = float(np.max(np.abs(ref - out))) if ref.size else 0.0
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cos = float(np.min(np.sum(ref * out, axis=1) / np.maximum(norms, 1e-12))) if ref.size else 1.0
    if ref.shape[1] == 1:  # scalar outputs: cosine is meaningless, compare values only
        cos = 1.0
    if diff > max_abs or cos < min_cos:
        raise ParityError(
            f"{what}: ONNX output drifts from PyTorch (max abs diff {diff:.3g} > {max_abs:g} or "
            f"min cosine {cos:.6f} < {min_cos}); not writing it"
        )
    return {"max_abs_diff": float(f"{diff:.3g}"), "min_cosine": round(cos, 6)}


def run_onnx(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def export_heads(
    model: JointModel,
    out_dir: Path,
    check_features: np.ndarray,
    check_texts: np.ndarray,
    *,
    half: bool = False,
) -> dict[str, dict[str, float]]:
    """Write ``image_head.onnx`` and ``text_head.onnx``; parity-checked against PyTorch."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tol = {"max_abs": 2e-3, "min_cos": 0.9999} if half else {"max_abs": 1e-4, "min_cos": 0.99999}
    image = image_head_bytes(model, half=half)
    text = text_head_bytes(model, half=half)
    report = {
        "image_head": parity(
            model.image_vectors(check_features),
            run_onnx(image, {"features": check_features.astype(np.float32)})[0],
            "image_head",
            **tol,
        ),
        "text_head": parity(
            model.text_vectors(check_texts),
            run_onnx(text, {"text_embeddings": check_texts.astype(np.float32)})[0],
            "text_head",
            **tol,
        ),
    }
    (out_dir / "image_head.onnx").write_bytes(image)
    (out_dir / "text_head.onnx").write_bytes(text)
    return report


# ------------------------------------------------------------------------------ orchestration
SPACE_NAME = "joint-v1"


@dataclass
class SpaceResult:
    """What ``run_train_space`` measured and wrote."""

    rows: list[dict[str, Any]]
    """The comparison table: label bridge, joint alone, shipped mix, + reranker."""
    reranker_metrics: dict[str, Any]
    filter_counts: dict[str, int]
    parity: dict[str, dict[str, float]]
    seconds: dict[str, float]
    files: dict[str, Path]
    manifest: dict[str, Any] | None
    card: Path
    val_images: list[str]
    top_n: int


def _rerank_pairs(
    corpus: Corpus,
    models: list[tuple[JointModel, np.ndarray]],
    train_photos: np.ndarray,
    *,
    hard: int = 2,
    random_neg: int = 1,
    pool: int = 30,
    seed: int = 42,
) -> tuple[Any, dict[int, float]]:
    """Caption pairs for the reranker with *out-of-fold* similarities.

    ``models`` are ``(model, photos it was NOT trained on)``; each scores the captions of its
    held-out photos against those photos: own photo -> target 1, ``hard`` negatives drawn from
    its ``pool`` best other photos and ``random_neg`` random ones -> 0. Returns the pairs and,
    for the judged pairs later, nothing else (their similarities are computed the same way).
    """
    from pixsearch.exporter.reranker import PairData

    rng = np.random.default_rng(seed)
    t_idx, i_idx, sims, target = [], [], [], []
    for model, photos in models:
        rows, owners = val_queries(corpus, photos)
        img = model.image_vectors(corpus.features[photos])
        for start in range(0, len(rows), 2048):
            r = rows[start : start + 2048]
            o = owners[start : start + 2048]
            s = model.text_vectors(corpus.text_features[r]) @ img.T
            best = np.argsort(-s, axis=1)[:, : pool + 1]
            for q in range(len(r)):
                chosen = [int(o[q])]
                others = [int(p) for p in best[q] if p != o[q]][:pool]
                chosen += rng.choice(others, size=min(hard, len(others)), replace=False).tolist()
                chosen += rng.integers(0, len(photos), size=random_neg).tolist()
                for k, p in enumerate(chosen):
                    if k > 0 and p == o[q]:
                        continue
                    t_idx.append(int(r[q]))
                    i_idx.append(int(photos[p]))
                    sims.append(float(s[q, p]))
                    target.append(1.0 if k == 0 else 0.0)
    n = len(t_idx)
    return PairData(
        corpus.text_features,
        corpus.features,
        np.asarray(t_idx),
        np.asarray(i_idx),
        np.asarray(sims, np.float32),
        np.asarray(target),
        np.ones(n),
        np.full(n, "caption"),
    ), {}


def judged_pairs(
    data_dir: Path,
    corpus: Corpus,
    bundle: Any,
    cache_dir: Any,
    predicate: Predicate,
) -> tuple[Any, dict[str, Any]]:
    """The customer's judged pairs (merged score, legal filter applied) as reranker rows.

    Returns ``(frame with image_row and text features, filter report)``; photos not in the
    corpus (damaged) are dropped.
    """
    from pixsearch.exporter.features import text_features
    from pixsearch.exporter.workflow import prepare_pairs

    _data, _scored, kept, report = prepare_pairs(data_dir, predicate=predicate, decode_photos=False)
    position = {name: i for i, name in enumerate(corpus.images)}
    kept = kept[kept["image"].isin(position)].reset_index(drop=True)
    kept["image_row"] = kept["image"].map(position)
    feats = text_features(kept["query_text"].tolist(), bundle, cache_dir)
    return kept, {"features": feats, "filter": asdict(report)}


def rerank_ranks(
    model: JointModel, reranker: Any, corpus: Corpus, photos: np.ndarray, top_n: int
) -> np.ndarray:
    """Ranks of each validation caption's own photo after reranking the top ``top_n``."""
    rows, owners = val_queries(corpus, photos)
    img = model.image_vectors(corpus.features[photos])
    feats = corpus.features[photos]
    ranks = np.zeros(len(rows))
    for start in range(0, len(rows), 1024):
        r, o = rows[start : start + 1024], owners[start : start + 1024]
        s = model.text_vectors(corpus.text_features[r]) @ img.T
        base = retrieval_ranks(img, model.text_vectors(corpus.text_features[r]), o)
        cand = np.argsort(-s, axis=1, kind="stable")[:, :top_n]
        q_rows = np.repeat(np.arange(len(r)), cand.shape[1])
        scores = reranker.score(
            corpus.text_features[r][q_rows],
            feats[cand.ravel()],
            s[q_rows, cand.ravel()],
        ).reshape(cand.shape)
        for q in range(len(r)):
            hit = np.flatnonzero(cand[q] == o[q])
            if hit.size:
                own = scores[q, hit[0]]
                ranks[start + q] = (
                    1 + np.sum(scores[q] > own) + 0.5 * (np.sum(scores[q] == own) - 1)
                )
            else:
                ranks[start + q] = base[q]
    return ranks


def _timed(seconds: dict[str, float], key: str, started: float) -> None:
    seconds[key] = round(time.perf_counter() - started, 1)


def run_train_space(
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    bundle_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    config: JointConfig | None = None,
    reranker_config: Any = None,
    n_val: int = 900,
    seed: int = 42,
    top_n: int = 50,
    install: bool = True,
    max_images: int | None = None,
    predicate: Predicate | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> SpaceResult:
    """Train the joint space and the reranker, measure them, write the model card, install.

    Steps: corpus (legal filter) -> seeded photo split (``n_val`` photos held out) -> label
    bridge baseline -> two out-of-fold joint models (similarities for the reranker's training
    pairs) -> the joint model on every training photo -> reranker on judged + caption pairs ->
    R@K with and without reranking, RMSE and ECE on held-out judged pairs -> ONNX export with
    parity checks -> ``add_to_bundle`` (unless ``install`` is False).
    """
    from pixsearch.exporter.regression import rmse
    from pixsearch.exporter.reranker import (
        Calibrator,
        PairData,
        RerankerConfig,
        calibration,
        export_reranker,
        train_reranker,
    )
    from pixsearch.indexer.models import ModelBundle

    if predicate is None:
        from pixsearch.exporter.workflow import children_predicate

        predicate = children_predicate()
    cfg = config or JointConfig(seed=seed)
    rcfg = reranker_config or RerankerConfig(seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    bundle = ModelBundle.load(bundle_dir)
    bridge = Bridge.from_bundle(bundle)
    started = time.perf_counter()
    corpus = load_corpus(
        data_dir,
        bundle,
        cache_dir=cache_dir,
        predicate=predicate,
        flip=cfg.augment > 0,
        crop_views=cfg.crop_views if cfg.augment > 0 else 0,
        max_images=max_images,
        seed=seed,
        log=log,
    )
    _timed(seconds, "features", started)
    train_photos, val_photos = split_photos(len(corpus.images), n_val, seed)
    val_rows, _ = val_queries(corpus, val_photos)
    log(
        f"split: {len(train_photos)} training photos, {len(val_photos)} validation photos "
        f"({len(val_rows)} validation queries, none about children)"
    )

    rows: list[dict[str, Any]] = []
    rows.append(
        {
            "model": "label bridge (zero-shot, shipped before)",
            **evaluate(BridgeSpace(bridge), corpus, val_photos),
        }
    )

    started = time.perf_counter()
    fold_rng = np.random.default_rng(seed + 1)
    shuffled = fold_rng.permutation(train_photos)
    halves = [np.sort(shuffled[: len(shuffled) // 2]), np.sort(shuffled[len(shuffled) // 2 :])]
    fold_models = []
    for k in range(2):
        log(f"out-of-fold joint model {k + 1}/2")
        fold_models.append((train_joint(corpus, halves[k], bridge, cfg, log=log), halves[1 - k]))
    _timed(seconds, "joint_oof", started)

    started = time.perf_counter()
    log("joint model on every training photo")
    model = train_joint(corpus, train_photos, bridge, cfg, val_photos=val_photos, log=log)
    _timed(seconds, "joint", started)
    rows.append(
        {
            "model": f"joint space alone (towers, dim {cfg.dim})",
            **evaluate(model, corpus, val_photos, mix=1.0),
        }
    )
    rows.append(
        {
            "model": f"shipped space: {cfg.mix:g} joint + {1 - cfg.mix:g} label bridge",
            **evaluate(model, corpus, val_photos),
        }
    )

    # ---- reranker data: caption pairs (out-of-fold sims) + judged pairs
    started = time.perf_counter()
    captions, _ = _rerank_pairs(corpus, fold_models, train_photos, seed=seed)
    judged, judged_info = judged_pairs(Path(data_dir), corpus, bundle, cache_dir, predicate)
    val_set = set(val_photos.tolist())
    in_val = judged["image_row"].isin(val_set).to_numpy()
    # similarities of judged pairs: the fold model that did not see the photo; the full model
    # for validation photos (as at run time)
    owner_model = {}
    for fold, (_, held) in enumerate(fold_models):
        for p in held.tolist():
            owner_model[p] = fold
    jt = judged_info["features"]
    sims = np.zeros(len(judged), np.float32)
    rows_of = judged["image_row"].to_numpy()
    fold_of = np.array([-1 if p in val_set else owner_model.get(p, 0) for p in rows_of.tolist()])
    for fold, m in [(-1, model), (0, fold_models[0][0]), (1, fold_models[1][0])]:
        sel = np.flatnonzero(fold_of == fold)
        if sel.size:
            img_v = m.image_vectors(corpus.features[rows_of[sel]])
            sims[sel] = np.sum(img_v * m.text_vectors(jt[sel]), axis=1)
    offset = len(corpus.text_features)
    all_text = np.concatenate([corpus.text_features, jt])
    y = judged["score"].to_numpy(np.float64)
    judged_pd = PairData(
        all_text,
        corpus.features,
        offset + np.arange(len(judged)),
        judged["image_row"].to_numpy(np.int64),
        sims,
        y,
        np.full(len(judged), rcfg.judged_weight),
        np.full(len(judged), "judged"),
    )
    captions.text_features = all_text
    tr = np.flatnonzero(~in_val)
    va = np.flatnonzero(in_val)
    judged_train, judged_val = judged_pd.subset(tr), judged_pd.subset(va)
    train_pairs = _concat_pairs(captions, judged_train)
    log(
        f"reranker: {len(captions)} caption pairs, {len(tr)} judged pairs for training, "
        f"{len(va)} judged pairs held out"
    )
    reranker = train_reranker(train_pairs, rcfg, log=log)
    _timed(seconds, "reranker", started)

    # ---- reranker metrics: the MLP, and the calibrator fitted on the same judged pairs
    mlp_metrics = _scorer_metrics(
        reranker, judged_train, judged_val, corpus, model, val_photos, seed
    )
    calibrator = Calibrator.fit(judged_train.similarity, judged_train.target)
    cal_metrics = _scorer_metrics(
        calibrator, judged_train, judged_val, corpus, model, val_photos, seed
    )
    pred_val = calibrator.predict(judged_val)
    ece, table = calibration(pred_val, judged_val.target)
    cap_val, _ = _rerank_pairs(corpus, [(model, val_photos)], val_photos, seed=seed + 7)
    pred_cap = calibrator.predict(cap_val)
    ece_cap, table_cap = calibration(pred_cap, cap_val.target)
    from pixsearch.exporter.regression import LinearModel  # noqa: F401  (sklearn present)

    sim_only = _sim_calibrated_rmse(judged_train, judged_val)
    metrics = {
        "judged_val_pairs": len(va),
        "judged_val_photos": int(judged.loc[in_val, "image"].nunique()),
        "rmse": round(rmse(judged_val.target, pred_val), 4),
        "rmse_constant": round(
            rmse(judged_val.target, np.full(len(va), judged_train.target.mean())), 4
        ),
        "rmse_similarity_only": round(sim_only, 4),
        "ece": round(ece, 4),
        "reliability": table,
        "caption_val_pairs": len(cap_val),
        "ece_captions": round(ece_cap, 4),
        "reliability_captions": table_cap,
        "share_above_0.5": {
            "positives": round(float(np.mean(pred_cap[cap_val.target == 1] > 0.5)), 4),
            "negatives": round(float(np.mean(pred_cap[cap_val.target == 0] > 0.5)), 4),
        },
        "judged_filter": judged_info["filter"],
        "shipped": f"calibrator sigmoid({calibrator.a:.4f} * similarity + {calibrator.b:.4f})",
        "mlp": mlp_metrics,
        "calibrator": cal_metrics,
    }
    rerank_rows = []
    for n in (10, 20, 50, 100):
        if n > len(val_photos):
            continue
        t0 = time.perf_counter()
        ranks = rerank_ranks(model, reranker, corpus, val_photos, n)
        rerank_rows.append(
            {
                "model": f"shipped space + MLP reranker (top {n})",
                **recall_table(ranks),
                "top_n": n,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    rows += rerank_rows
    rows.append(
        {
            "model": "shipped space + shipped calibrator (any top n: order kept)",
            **cal_metrics["top10"],
        }
    )
    metrics["timing_ms_per_query"] = _reranker_timing(
        reranker, corpus, [r["top_n"] for r in rerank_rows]
    )

    # ---- export
    started = time.perf_counter()
    files_dir = out / "bundle_files"
    check_f = corpus.features[val_photos[:64]]
    check_t = corpus.text_features[val_rows[:64]]
    parity_report = export_heads(model, files_dir, check_f, check_t, half=True)
    check_s = np.sum(model.image_vectors(check_f) * model.text_vectors(check_t), axis=1)
    parity_report["reranker"] = export_reranker(
        calibrator, files_dir / "reranker.onnx", check_t, check_f, check_s
    )
    _timed(seconds, "export", started)
    files = {
        name: files_dir / name for name in ("image_head.onnx", "text_head.onnx", "reranker.onnx")
    }
    val_images = [corpus.images[p] for p in val_photos.tolist()]
    (out / "validation_images.txt").write_text("\n".join(val_images) + "\n")
    summary = {
        "rows": rows,
        "reranker": metrics,
        "filter": corpus.filter_counts,
        "excluded": corpus.excluded,
        "parity": parity_report,
        "seconds": seconds,
        "config": asdict(cfg),
        "reranker_config": asdict(rcfg),
        "seed": seed,
        "n_val": n_val,
        "history": model.history,
    }
    (out / "results.json").write_text(json_dumps(summary))
    manifest = None
    if install:
        from pixsearch.exporter.bundle_update import add_to_bundle

        shipped = rows[2]

        def update(m: dict[str, Any]) -> None:
            m["space"] = {
                "name": SPACE_NAME,
                "kind": "joint",
                "dim": cfg.dim + bridge.class_embeddings.shape[1],
                "files": {"image_head": "image_head.onnx", "text_head": "text_head.onnx"},
                "params": {
                    "joint_dim": cfg.dim,
                    "mix": cfg.mix,
                    "top_k": bridge.top_k,
                    "vector": "[sqrt(mix) * joint, sqrt(1 - mix) * label bridge], unit length",
                    "weights": "float16 matrices, cast to float32 in the graph",
                },
                "training": {
                    "command": "pixsearch train-space DATA",
                    "seed": seed,
                    "data": "Flickr8k captions (legal filter: texts about children dropped)",
                    "validation": {
                        "photos": len(val_photos),
                        "queries": len(val_rows),
                        "split": f"seeded permutation (seed {seed}) of the corpus photos; "
                        "list in the model card / validation_images.txt",
                        **{k: shipped[k] for k in ("R@1", "R@5", "R@10", "median_rank")},
                    },
                    "filter": corpus.filter_counts,
                },
            }
            m["models"]["image_head"] = {
                "file": "image_head.onnx",
                "inputs": {"features": "float32 [N,1280]"},
                "outputs": {"vectors": f"float32 [N,{cfg.dim + 384}] L2-normalised"},
            }
            m["models"]["text_head"] = {
                "file": "text_head.onnx",
                "inputs": {"text_embeddings": "float32 [N,384]"},
                "outputs": {"vectors": f"float32 [N,{cfg.dim + 384}] L2-normalised"},
            }
            m["reranker"] = {
                "file": "reranker.onnx",
                "top_n": top_n,
                "inputs": {
                    "text_embeddings": "float32 [N,384] the query embedding, repeated per photo",
                    "features": "float32 [N,1280] stored image features",
                    "similarities": "float32 [N] cosine of query and photo in the space",
                },
                "outputs": {"scores": "float32 [N] relevance in [0,1] (calibrated)"},
                "kind": "calibrator",
                "model": metrics["shipped"],
                "reorders": False,
                "note": "monotone in the similarity: reranking keeps the space's order; the "
                "MLP reranker was trained and measured but hurt R@K (model card)",
                "metrics": {
                    k: metrics[k] for k in ("rmse", "ece", "ece_captions", "judged_val_pairs")
                },
            }
            m.setdefault("parity", {}).update(parity_report)

        manifest = add_to_bundle(files, update, Path(bundle_dir) if bundle_dir else None)
        log(f"installed into the bundle: new id {manifest['bundle_id']}")
    card = out / "model_card.md"
    result = SpaceResult(
        rows,
        metrics,
        corpus.filter_counts,
        parity_report,
        seconds,
        files,
        manifest,
        card,
        val_images,
        top_n,
    )
    card.write_text(space_model_card(result, cfg, summary))
    return result


def _scorer_metrics(
    scorer: Any,
    train: Any,
    val: Any,
    corpus: Corpus,
    model: JointModel,
    val_photos: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    """RMSE and ECE of a pair scorer on held-out judged pairs, and R@K after reranking."""
    from pixsearch.exporter.regression import rmse
    from pixsearch.exporter.reranker import calibration

    pred = scorer.predict(val)
    ece, _table = calibration(pred, val.target)
    out: dict[str, Any] = {"rmse": round(rmse(val.target, pred), 4), "ece": round(ece, 4)}
    for n in (10,):
        out[f"top{n}"] = recall_table(rerank_ranks(model, scorer, corpus, val_photos, n))
    return out


def json_dumps(value: Any) -> str:
    import json

    return json.dumps(
        value, indent=2, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)
    )


def _concat_pairs(a: Any, b: Any) -> Any:
    from pixsearch.exporter.reranker import PairData

    assert a.text_features is b.text_features and a.image_features is b.image_features
    return PairData(
        a.text_features,
        a.image_features,
        np.concatenate([a.text_index, b.text_index]),
        np.concatenate([a.image_index, b.image_index]),
        np.concatenate([a.similarity, b.similarity]),
        np.concatenate([a.target, b.target]),
        np.concatenate([a.weight, b.weight]),
        np.concatenate([a.source, b.source]),
    )


def _sim_calibrated_rmse(train: Any, val: Any) -> float:
    """RMSE of the similarity alone, calibrated by a 1-input linear fit on the training pairs."""
    from pixsearch.exporter.regression import rmse

    slope, intercept = np.polyfit(train.similarity.astype(np.float64), train.target, 1)
    return rmse(val.target, np.clip(slope * val.similarity + intercept, 0, 1))


def _reranker_timing(reranker: Any, corpus: Corpus, top_ns: list[int]) -> dict[str, float]:
    """Milliseconds per query for scoring ``n`` candidates with the exported ONNX reranker."""
    import onnxruntime as ort

    from pixsearch.exporter.joint_space import run_onnx  # noqa: F401
    from pixsearch.exporter.reranker import reranker_bytes

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(
        reranker_bytes(reranker), sess_options=options, providers=["CPUExecutionProvider"]
    )
    timing = {}
    for n in top_ns:
        feeds = {
            "text_embeddings": np.repeat(corpus.text_features[:1], n, axis=0),
            "features": corpus.features[:n],
            "similarities": np.zeros(n, np.float32),
        }
        session.run(None, feeds)
        t0 = time.perf_counter()
        for _ in range(20):
            session.run(None, feeds)
        timing[str(n)] = round(1000 * (time.perf_counter() - t0) / 20, 2)
    return timing


def results_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of R@1/5/10 and the median rank."""
    lines = ["| model | R@1 | R@5 | R@10 | median rank |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['model']} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | "
        f"{r['median_rank']:g} |"
        for r in rows
    ]
    return "\n".join(lines)


def space_model_card(result: SpaceResult, cfg: JointConfig, summary: dict[str, Any]) -> str:
    """The Markdown model card of the joint space and the reranker."""
    from pixsearch.exporter.reranker import reliability_markdown

    m = result.reranker_metrics
    f = result.filter_counts
    seconds = result.seconds
    bundle_id = result.manifest["bundle_id"] if result.manifest else "(not installed)"
    lines = [
        f"# Model card: joint space `{SPACE_NAME}` and the relevance reranker",
        "",
        f"Written by `pixsearch train-space` (seed {summary['seed']}); bundle `{bundle_id}`.",
        "",
        "## Data and legal filter",
        "",
        f"Flickr8k `captions.tsv` over the photos of `manifest.csv`: {f.get('photos_read')} "
        "photos, "
        f"{f.get('captions_read')} captions read. Damaged photos left out: "
        f"{f.get('photos_damaged')} ({', '.join(summary['excluded']['damaged'])}); byte-identical "
        f"duplicates merged into one photo: {f.get('photos_duplicate_merged')}.",
        "",
        f"Legal filter (`pixsearch.indexer.policy.is_about_children`): "
        f"**{f.get('captions_about_children')} captions dropped** "
        f"({100 * f.get('captions_about_children', 0) / max(1, f.get('captions_read', 1)):.1f}%), "
        f"{f.get('captions_kept')} kept; {f.get('photos_with_only_child_captions')} photos lost "
        "every caption (they stay as gallery photos, never as training positives). "
        "Validation queries are only captions that are not about children: under the default "
        "strict policy such queries are blocked, so measuring them would measure nothing "
        "users see.",
        "",
        "## Split",
        "",
        f"A seeded permutation (seed {summary['seed']}) of the {f.get('photos_kept')} corpus "
        f"photos; the first {len(result.val_images)} are the validation photos (all their "
        "captions), the rest train. Every choice below was tuned on this split only. The list "
        "is at the end of this card (and in `validation_images.txt`).",
        "",
        "## Text -> image retrieval on the validation photos",
        "",
        f"Each validation caption is a query; its own photo must rank first among the "
        f"{len(result.val_images)} validation photos.",
        "",
        results_table(result.rows),
        "",
        f"Shipped: the mixed space, reranker `top_n` = {result.top_n}.",
        "",
        "## Reranker",
        "",
        f"Held-out judged pairs (photos in the validation split): {m['judged_val_pairs']} pairs on "
        f"{m['judged_val_photos']} photos. RMSE **{m['rmse']:.4f}** (constant: "
        f"{m['rmse_constant']:.4f}; the space's cosine calibrated by a linear fit: "
        f"{m['rmse_similarity_only']:.4f}). ECE **{m['ece']:.4f}**.",
        "",
        reliability_markdown(m["reliability"]),
        "",
        f"Shipped scorer: {m['shipped']} (fitted on the judged training pairs with "
        "out-of-fold similarities). The MLP reranker trained on the same judged pairs plus "
        f"caption pairs scored RMSE {m['mlp']['rmse']:.4f}, ECE {m['mlp']['ece']:.4f} and "
        "lowered R@K (table above), so it is not shipped.",
        "",
        f"Caption pairs on validation photos (own photo = 1; 2 hard + 1 random negatives = 0): "
        f"{m['caption_val_pairs']} pairs, ECE {m['ece_captions']:.4f}; share scored above 0.5: "
        f"positives {m['share_above_0.5']['positives']:.3f}, negatives "
        f"{m['share_above_0.5']['negatives']:.3f}.",
        "",
        reliability_markdown(m["reliability_captions"]),
        "",
        "Reranking time (ONNX, one query, ms): "
        + ", ".join(f"top {n}: {ms}" for n, ms in m["timing_ms_per_query"].items()),
        "",
        "## Models",
        "",
        "- `image_head.onnx`: features -> standardise"
        + (" -> concat label-bridge vector" if cfg.bridge_input else "")
        + " -> MLP "
        f"({cfg.image_hidden} hidden, GELU) -> {cfg.dim}-d -> L2; concat with the bridge vector "
        f"weighted sqrt({cfg.mix:g}) / sqrt({1 - cfg.mix:g}). Output dim {cfg.dim + 384}.",
        f"- `text_head.onnx`: MiniLM embedding -> MLP ({cfg.text_hidden} hidden) -> "
        f"{cfg.dim}-d -> L2; concat with the embedding itself, same weights.",
        "- `reranker.onnx`: (query embedding, features, cosine) -> projections to "
        f"{summary['reranker_config']['hidden']}-d, [a, b, a*b, |a-b|, cosine] -> MLP -> sigmoid.",
        "",
        "Training: " + ", ".join(f"{k}={v}" for k, v in summary["config"].items()) + ".",
        "",
        "Parity (ONNX vs PyTorch on 64 validation rows): "
        + "; ".join(
            f"{k}: max abs {v['max_abs_diff']}, min cos {v['min_cosine']}"
            for k, v in result.parity.items()
        ),
        "",
        "Seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()),
        "",
        "## Validation photos",
        "",
        "<details><summary>the " + str(len(result.val_images)) + " photos</summary>",
        "",
        " ".join(result.val_images),
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"
