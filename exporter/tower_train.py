"""Fine-tune the image tower: EfficientNet-Lite0's last blocks, multi-task (issue #13).

What is trained, on the cached trunk activations (:mod:`pixsearch.exporter.tower_data`):

- the **tail** of EfficientNet-Lite0 (blocks ``TRAINABLE_FROM``..15 and the 1x1 head conv;
  batch norms keep their ImageNet statistics, only their scales and shifts learn), which
  makes the pooled ``features [1280]`` that indexing stores;
- **joint towers** (the joint space's MLPs: features -> 256, MiniLM embedding -> 256) with the
  symmetric multi-positive InfoNCE of :func:`pixsearch.exporter.space_train.train_joint`;
- a **child head** (logistic, on the standardised features) with the caption-derived labels
  of :mod:`pixsearch.exporter.child_data`, on the child split's training photos only;
- **distillation** of ImageNet's classifier: the KL divergence between the class
  distributions of the fine-tuned and of the frozen features (temperature 2), so the label
  bridge (ImageNet classes -> class-name embeddings), which reads the same features, keeps
  working.

Each step draws one cached view per photo (the photo, its mirror or a random resized crop).
The towers and the child head are scaffolding: after fine-tuning, the joint space and the child
classifier are retrained on the new features by their own commands (``train-space``,
``train-policy``), which choose and calibrate what ships.

>>> TowerConfig().epochs
8
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pixsearch.exporter._torch import require_torch, seeded_torch
from pixsearch.exporter.space_train import multi_positive_infonce, warmup_cosine
from pixsearch.exporter.tower_data import TRAINABLE_FROM, ViewActivations

Log = Callable[[str], None]


@dataclass
class TowerConfig:
    """Hyper-parameters of the fine-tuning (defaults: what ships)."""

    epochs: int = 8
    batch_photos: int = 128
    lr_tail: float = 2e-4
    lr_heads: float = 1e-3
    weight_decay: float = 0.05
    train_from: int = TRAINABLE_FROM
    """First trained block (``>= TRAINABLE_FROM``; later = fewer trained blocks)."""
    child_weight: float = 0.5
    distill_weight: float = 1.0
    distill_temperature: float = 2.0
    dim: int = 256
    hidden: int = 1024
    dropout: float = 0.2
    temperature: float = 0.05
    wise_alpha: float = 1.0
    """WiSE-FT: the shipped tail weights are ``alpha * fine-tuned + (1 - alpha) * ImageNet``
    (1 = the fine-tuned weights as trained)."""
    seed: int = 42
    threads: int = 2


def build_tail(net: Any, train_from: int = TRAINABLE_FROM) -> Any:
    """``activations [N,192,7,7] -> features [N,1280]``: the last blocks of ``net`` (shared)."""
    torch = require_torch()

    class Tail(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(net._blocks[TRAINABLE_FROM:])
            self.conv_head, self.bn1 = net._conv_head, net._bn1
            self.act = net._swish
            self.frozen = train_from - TRAINABLE_FROM

        def forward(self, x: Any) -> Any:
            for index, block in enumerate(self.blocks):
                if index < self.frozen:
                    with torch.no_grad():
                        x = block(x)
                else:
                    x = block(x)
            x = self.act(self.bn1(self.conv_head(x)))
            return x.mean(dim=(2, 3))

        def train(self, mode: bool = True) -> Any:
            # Batch norms keep their ImageNet running statistics (small batches, 7x7 maps).
            super().train(mode)
            for module in self.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
            return self

    tail = Tail()
    for index, block in enumerate(tail.blocks):
        block.requires_grad_(index >= tail.frozen)
    return tail


def _tower(nn: Any, n_in: int, cfg: TowerConfig) -> Any:
    return nn.Sequential(
        nn.Dropout(cfg.dropout),
        nn.Linear(n_in, cfg.hidden),
        nn.GELU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, cfg.dim),
    )


@dataclass
class TowerData:
    """What one fine-tuning run reads (indices are photo rows of the views' arrays)."""

    views: Sequence[ViewActivations]
    caption_image: np.ndarray
    """``[C]`` photo row of each caption (captions about children already removed)."""
    text_features: np.ndarray
    """``[C, 384]`` MiniLM embeddings."""
    train_photos: np.ndarray
    child_labels: np.ndarray
    """``[I]`` 1 child, 0 not, -1 unknown or not for training (validation/test photos)."""
    fc_weight: np.ndarray
    """ImageNet classifier ``[1000, 1280]`` (frozen; distillation target)."""
    fc_bias: np.ndarray


@dataclass
class TrainedTower:
    """The fine-tuned tail's weights (state dict of the Lite0 modules it replaces) and history."""

    state: dict[str, Any]
    """``net.state_dict()`` keys of the trained modules -> tensors."""
    config: TowerConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    towers: dict[str, Any] = field(default_factory=dict)
    """The scaffold trained with the tail: ``image``, ``text`` towers, ``mu``/``sd`` (feature
    standardisation), ``child`` head (torch modules and tensors, eval mode)."""

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def joint_vectors(self, features: np.ndarray, embeddings: np.ndarray) -> tuple[Any, Any]:
        """The scaffold's own unit vectors ``(images [N,dim], texts [M,dim])``."""
        torch = require_torch()
        t = self.towers
        with torch.inference_mode():
            z = (torch.from_numpy(np.ascontiguousarray(features, np.float32)) - t["mu"]) / t["sd"]
            img = torch.nn.functional.normalize(t["image"](z), dim=1)
            e = torch.from_numpy(np.ascontiguousarray(embeddings, np.float32))
            txt = torch.nn.functional.normalize(t["text"](e * math.sqrt(e.shape[1])), dim=1)
        return img.numpy(), txt.numpy()


def train_tower(
    net: Any, data: TowerData, config: TowerConfig | None = None, *, log: Log = lambda m: None
) -> TrainedTower:
    """Fine-tune ``net``'s tail in place (see the module docstring) and return its weights."""
    torch = require_torch()
    nn = torch.nn
    cfg = config or TowerConfig()
    started = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    with seeded_torch(seed=cfg.seed, threads=cfg.threads):
        tail = build_tail(net, cfg.train_from)
        frozen = data.views[0].features
        train_photos = np.asarray(data.train_photos)
        mu = torch.from_numpy(frozen[train_photos].mean(0).astype(np.float32))
        sd = torch.from_numpy((frozen[train_photos].std(0) + 1e-4).astype(np.float32))
        image_tower = _tower(nn, 1280, cfg)
        text_tower = _tower(nn, data.text_features.shape[1], cfg)
        child_head = nn.Linear(1280, 1)
        log_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature)))
        fc_w = torch.from_numpy(data.fc_weight.astype(np.float32))
        fc_b = torch.from_numpy(data.fc_bias.astype(np.float32))
        heads = [*image_tower.parameters(), *text_tower.parameters(), *child_head.parameters()]
        tail_params = [p for p in tail.parameters() if p.requires_grad]
        imagenet = {k: v.detach().clone() for k, v in net.state_dict().items()}
        optimiser = torch.optim.AdamW(
            [
                {"params": tail_params, "lr": cfg.lr_tail, "weight_decay": cfg.weight_decay},
                {"params": heads, "lr": cfg.lr_heads, "weight_decay": cfg.weight_decay},
                {"params": [log_scale], "lr": cfg.lr_heads, "weight_decay": 0.0},
            ]
        )
        caps_of: dict[int, list[int]] = {}
        for c, owner in enumerate(data.caption_image.tolist()):
            caps_of.setdefault(owner, []).append(c)
        # Every training photo: those whose captions were all about children (removed) still
        # teach the child head; the contrastive loss reads the captioned photos of a batch.
        photos = train_photos.astype(np.int64)
        labelled = data.child_labels >= 0
        positives = float((data.child_labels == 1).sum())
        pos_weight = torch.tensor(float(labelled.sum() - positives) / max(positives, 1.0))
        steps_per_epoch = max(1, len(photos) // cfg.batch_photos)
        total = steps_per_epoch * cfg.epochs
        schedule = warmup_cosine(optimiser, total)
        text_all = torch.from_numpy(np.ascontiguousarray(data.text_features, np.float32))
        temperature = cfg.distill_temperature
        history: list[dict[str, float]] = []
        log(
            f"fine-tuning blocks {cfg.train_from}-15 + head on {len(photos)} photos "
            f"({sum(p in caps_of for p in photos.tolist())} captioned), "
            f"{len(data.views)} views, {cfg.epochs} epochs x {steps_per_epoch} steps"
        )
        for epoch in range(1, cfg.epochs + 1):
            tail.train()
            image_tower.train()
            text_tower.train()
            order = rng.permutation(photos)
            sums = {"loss": 0.0, "contrastive": 0.0, "child": 0.0, "distill": 0.0}
            epoch_started = time.perf_counter()
            for step in range(steps_per_epoch):
                batch = order[step * cfg.batch_photos : (step + 1) * cfg.batch_photos]
                pick = rng.integers(0, len(data.views), len(batch))
                acts = np.empty((len(batch), 192, 7, 7), dtype=np.float32)
                teacher = np.empty((len(batch), 1280), dtype=np.float32)
                for v, view in enumerate(data.views):
                    rows = np.flatnonzero(pick == v)
                    acts[rows] = view.activations[batch[rows]]
                    teacher[rows] = view.features[batch[rows]]
                f = tail(torch.from_numpy(acts))
                z = (f - mu) / sd
                captioned = [i for i, p in enumerate(batch.tolist()) if p in caps_of]
                img = nn.functional.normalize(image_tower(z[captioned]), dim=1)
                cap_rows = [c for i in captioned for c in caps_of[int(batch[i])]]
                cap_owner = [j for j, i in enumerate(captioned) for _ in caps_of[int(batch[i])]]
                txt = nn.functional.normalize(
                    text_tower(text_all[cap_rows] * math.sqrt(text_all.shape[1])), dim=1
                )
                logits = log_scale.clamp(max=math.log(100.0)).exp() * txt @ img.T
                contrastive = multi_positive_infonce(logits, torch.tensor(cap_owner))
                known = labelled[batch]
                if known.any():
                    y = torch.from_numpy(data.child_labels[batch][known].astype(np.float32))
                    child = nn.functional.binary_cross_entropy_with_logits(
                        child_head(z[torch.from_numpy(known)]).squeeze(1), y, pos_weight=pos_weight
                    )
                else:
                    child = torch.zeros(())
                student = nn.functional.log_softmax((f @ fc_w.T + fc_b) / temperature, dim=1)
                target = nn.functional.softmax(
                    (torch.from_numpy(teacher) @ fc_w.T + fc_b) / temperature, dim=1
                )
                distill = (
                    nn.functional.kl_div(student, target, reduction="batchmean") * temperature**2
                )
                loss = contrastive + cfg.child_weight * child + cfg.distill_weight * distill
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                for key, value in (
                    ("loss", loss),
                    ("contrastive", contrastive),
                    ("child", child),
                    ("distill", distill),
                ):
                    sums[key] += float(value.detach())
            entry = {"epoch": float(epoch)}
            entry.update({k: round(v / steps_per_epoch, 4) for k, v in sums.items()})
            entry["seconds"] = round(time.perf_counter() - epoch_started, 1)
            history.append(entry)
            log(f"epoch {epoch}: {entry}")
        tail.eval()
        if cfg.wise_alpha != 1.0:
            net.load_state_dict(wise_interpolation(net.state_dict(), imagenet, cfg.wise_alpha))
            log(f"weights interpolated with ImageNet's: alpha {cfg.wise_alpha}")
        prefix = {id(m): name for name, m in net.named_modules()}
        state: dict[str, Any] = {}
        for module in [*tail.blocks, tail.conv_head, tail.bn1]:
            name = prefix[id(module)]
            for key, value in module.state_dict().items():
                state[f"{name}.{key}"] = value.detach().clone()
        image_tower.eval()
        text_tower.eval()
        towers = {"image": image_tower, "text": text_tower, "mu": mu, "sd": sd, "child": child_head}
    return TrainedTower(state, cfg, history, round(time.perf_counter() - started, 1), towers)


def wise_interpolation(
    tuned: dict[str, Any], start: dict[str, Any], alpha: float
) -> dict[str, Any]:
    """WiSE-FT: ``alpha * tuned + (1 - alpha) * start`` for every floating-point tensor of two
    state dicts of one model (integer buffers are taken from ``tuned``).

    >>> import torch
    >>> out = wise_interpolation({"w": torch.ones(2)}, {"w": torch.zeros(2)}, 0.25)
    >>> out["w"].tolist()
    [0.25, 0.25]
    """
    return {
        key: alpha * value + (1.0 - alpha) * start[key] if value.is_floating_point() else value
        for key, value in tuned.items()
    }


def tail_features(net: Any, activations: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Pooled ``features [N,1280]`` of ``net``'s (fine-tuned) tail for cached activations."""
    torch = require_torch()
    tail = build_tail(net).eval()
    out = np.empty((len(activations), 1280), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(activations), batch_size):
            chunk = np.asarray(activations[start : start + batch_size], dtype=np.float32)
            out[start : start + len(chunk)] = tail(torch.from_numpy(chunk)).numpy()
    return out
