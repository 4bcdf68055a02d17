"""Regress the merged relevance score of (photo, text) pairs; compare models on RMSE.

Three models share one interface, ``fit(pairs, y) -> self`` and ``predict(pairs) -> [P]``:

- ``ConstantModel``: the training mean (the floor every model must beat);
- ``LinearModel``: scikit-learn ``LinearRegression`` (or ``Ridge``) on ``[image, text, extra]``;
- ``PairMLP``: a PyTorch net that projects image and text into one ``hidden``-d space and reads
  ``[a, b, a*b, |a-b|, extra]`` (the product is what lets it compare, which a linear model on a
  concatenation cannot: for it ``score = f(image) + g(text)``).

``PairSet`` keeps features once per photo and per text plus index arrays per pair, so the
8091 x 35k feature tables are never copied per pair. Predictions are clipped to [0, 1] (the
range of the target) before RMSE.

>>> import numpy as np
>>> pairs = PairSet(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32),
...                 np.array([0, 1, 0]), np.array([0, 1, 1]))
>>> ConstantModel().fit(pairs, np.array([0.0, 1.0, 0.5])).predict(pairs).tolist()
[0.5, 0.5, 0.5]
>>> pairs.design_matrix().shape
(3, 4)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pixsearch.exporter._torch import require_torch, seeded_torch


@dataclass
class PairSet:
    """Pairs as indices into per-photo and per-text feature tables (plus optional extras)."""

    image_features: np.ndarray
    """``[n_images, Di]`` float32."""
    text_features: np.ndarray
    """``[n_texts, Dt]`` float32."""
    image_index: np.ndarray
    """``[P]`` row of each pair's photo in ``image_features``."""
    text_index: np.ndarray
    """``[P]`` row of each pair's text in ``text_features``."""
    extra: np.ndarray | None = None
    """``[P, k]`` per-pair features (e.g. a zero-shot cosine), or None."""

    def __len__(self) -> int:
        return len(self.image_index)

    def subset(self, rows: np.ndarray) -> PairSet:
        """The pairs at ``rows`` (feature tables are shared, not copied)."""
        return PairSet(
            self.image_features,
            self.text_features,
            self.image_index[rows],
            self.text_index[rows],
            None if self.extra is None else self.extra[rows],
        )

    def design_matrix(self) -> np.ndarray:
        """``[P, Di + Dt (+ k)]``: the concatenation a linear model reads."""
        parts = [self.image_features[self.image_index], self.text_features[self.text_index]]
        if self.extra is not None:
            parts.append(self.extra)
        return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


class PairModel(Protocol):
    """What every model here offers."""

    name: str

    def fit(self, pairs: PairSet, y: np.ndarray) -> PairModel: ...

    def predict(self, pairs: PairSet) -> np.ndarray: ...


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error.

    >>> rmse(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    0.7071067811865476
    """
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return math.sqrt(float(np.mean(diff**2)))


class ConstantModel:
    """Predicts the training mean for every pair."""

    name = "constant (train mean)"

    def __init__(self) -> None:
        self.value = 0.0

    def fit(self, pairs: PairSet, y: np.ndarray) -> ConstantModel:
        self.value = float(np.mean(y))
        return self

    def predict(self, pairs: PairSet) -> np.ndarray:
        return np.full(len(pairs), self.value, dtype=np.float64)


RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


class LinearModel:
    """``LinearRegression`` (``alpha=None``) or ``Ridge`` on the standardised concatenation.

    ``alpha="cv"`` picks the ridge strength from ``RIDGE_ALPHAS`` by 3-fold cross-validation
    grouped by photo inside the training part (the validation part is never looked at).
    """

    def __init__(self, alpha: float | str | None = None) -> None:
        self.alpha = alpha
        self.chosen_alpha: float | None = None if alpha in (None, "cv") else float(alpha)
        self.model: Any = None

    @property
    def name(self) -> str:
        if self.alpha is None:
            return "linear regression"
        return f"ridge (alpha={self.chosen_alpha:g})" if self.chosen_alpha else "ridge"

    def _pipeline(self, alpha: float | None) -> Any:
        from sklearn.linear_model import LinearRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        head = LinearRegression() if alpha is None else Ridge(alpha=alpha)
        return make_pipeline(StandardScaler(), head)

    def fit(self, pairs: PairSet, y: np.ndarray) -> LinearModel:
        x = pairs.design_matrix()
        if self.alpha == "cv":
            from sklearn.model_selection import GroupKFold

            folds = list(GroupKFold(n_splits=3).split(x, y, groups=pairs.image_index))
            scores = {
                alpha: np.mean(
                    [
                        rmse(
                            y[b], np.clip(self._pipeline(alpha).fit(x[a], y[a]).predict(x[b]), 0, 1)
                        )
                        for a, b in folds
                    ]
                )
                for alpha in RIDGE_ALPHAS
            }
            self.chosen_alpha = min(scores, key=scores.__getitem__)
        self.model = self._pipeline(self.chosen_alpha).fit(x, y)
        return self

    def predict(self, pairs: PairSet) -> np.ndarray:
        return np.clip(self.model.predict(pairs.design_matrix()), 0.0, 1.0)


@dataclass
class MLPConfig:
    """Hyper-parameters of ``PairMLP`` (defaults fit ~5k pairs on a CPU in well under a minute)."""

    hidden: int = 128
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 8
    early_stop_share: float = 0.1
    """Share of the *training* photos held out for early stopping (never the validation part)."""
    seed: int = 42
    threads: int = 1
    """Torch CPU threads during fit/predict; fixed so results repeat bit for bit."""


def build_pair_net(image_dim: int, text_dim: int, extra_dim: int, config: MLPConfig) -> Any:
    """The torch module: ``forward(img, txt, extra) -> score in (0, 1)``."""
    torch = require_torch()
    nn = torch.nn
    h = config.hidden

    class PairNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.image_proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(image_dim, h))
            self.text_proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(text_dim, h))
            self.head = nn.Sequential(
                nn.Linear(4 * h + extra_dim, h),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(h, 1),
            )

        def forward(self, img: Any, txt: Any, extra: Any) -> Any:
            a, b = self.image_proj(img), self.text_proj(txt)
            z = torch.cat([a, b, a * b, (a - b).abs(), extra], dim=1)
            return torch.sigmoid(self.head(z)).squeeze(1)

    return PairNet()


class PairMLP:
    """PyTorch pair regressor; early-stops on a grouped slice of the training photos.

    ``fit`` standardises features with training statistics, trains with AdamW on MSE, and keeps
    the weights of the best early-stopping epoch. Seeded and deterministic on CPU.
    """

    name = "MLP (PyTorch)"

    def __init__(self, config: MLPConfig | None = None) -> None:
        self.config = config or MLPConfig()
        self.net: Any = None
        self.stats: dict[str, np.ndarray] = {}
        self.history: list[tuple[int, float, float]] = []
        self.best_epoch = 0

    def _tensors(self, pairs: PairSet) -> tuple[Any, Any, Any]:
        torch = require_torch()
        img = (pairs.image_features[pairs.image_index] - self.stats["img_mu"]) / self.stats[
            "img_sd"
        ]
        txt = (pairs.text_features[pairs.text_index] - self.stats["txt_mu"]) / self.stats["txt_sd"]
        extra = (
            np.zeros((len(pairs), 0), np.float32)
            if pairs.extra is None
            else (pairs.extra - self.stats["ext_mu"]) / self.stats["ext_sd"]
        )
        return (
            torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(txt, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(extra, dtype=np.float32)),
        )

    def fit(self, pairs: PairSet, y: np.ndarray, groups: np.ndarray | None = None) -> PairMLP:
        """Train; ``groups`` (one photo id per pair) picks the early-stopping slice.

        Without ``groups`` the pair's photo index is the group.
        """
        torch = require_torch()
        cfg = self.config
        groups = pairs.image_index if groups is None else groups
        rng = np.random.default_rng(cfg.seed)
        unique = np.unique(groups)
        n_hold = max(1, round(len(unique) * cfg.early_stop_share)) if len(unique) > 4 else 0
        held = set(rng.choice(unique, size=n_hold, replace=False).tolist()) if n_hold else set()
        is_held = np.array([g in held for g in groups.tolist()], dtype=bool)
        fit_rows, stop_rows = np.flatnonzero(~is_held), np.flatnonzero(is_held)

        def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return x.mean(0).astype(np.float32), (x.std(0) + 1e-6).astype(np.float32)

        fit_pairs = pairs.subset(fit_rows)
        self.stats["img_mu"], self.stats["img_sd"] = stats(
            pairs.image_features[np.unique(fit_pairs.image_index)]
        )
        self.stats["txt_mu"], self.stats["txt_sd"] = stats(
            pairs.text_features[np.unique(fit_pairs.text_index)]
        )
        if pairs.extra is not None:
            self.stats["ext_mu"], self.stats["ext_sd"] = stats(fit_pairs.extra)

        with seeded_torch(seed=cfg.seed, threads=cfg.threads):
            extra_dim = 0 if pairs.extra is None else pairs.extra.shape[1]
            self.net = build_pair_net(
                pairs.image_features.shape[1], pairs.text_features.shape[1], extra_dim, cfg
            )
            optimiser = torch.optim.AdamW(
                self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
            )
            img, txt, ext = self._tensors(fit_pairs)
            target = torch.from_numpy(np.asarray(y, np.float32)[fit_rows])
            stop_pairs = pairs.subset(stop_rows)
            stop_y = np.asarray(y, np.float64)[stop_rows]
            generator = torch.Generator().manual_seed(cfg.seed)
            best = (math.inf, 0, None)
            self.history = []
            for epoch in range(1, cfg.max_epochs + 1):
                self.net.train()
                order = torch.randperm(len(target), generator=generator)
                total = 0.0
                for start in range(0, len(order), cfg.batch_size):
                    rows = order[start : start + cfg.batch_size]
                    loss = torch.nn.functional.mse_loss(
                        self.net(img[rows], txt[rows], ext[rows]), target[rows]
                    )
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    total += float(loss.detach()) * len(rows)
                train_rmse = math.sqrt(total / max(1, len(target)))
                stop_rmse = rmse(stop_y, self.predict(stop_pairs)) if len(stop_rows) else train_rmse
                self.history.append((epoch, train_rmse, stop_rmse))
                if stop_rmse < best[0] - 1e-5:
                    state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
                    best = (stop_rmse, epoch, state)
                elif epoch - best[1] >= cfg.patience:
                    break
            if best[2] is not None:
                self.net.load_state_dict(best[2])
            self.best_epoch = best[1]
        return self

    def predict(self, pairs: PairSet, batch_size: int = 4096) -> np.ndarray:
        torch = require_torch()
        self.net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(pairs), batch_size):
                rows = np.arange(start, min(start + batch_size, len(pairs)))
                img, txt, ext = self._tensors(pairs.subset(rows))
                out.append(self.net(img, txt, ext).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros(0)


@dataclass
class ModelResult:
    """One row of the comparison table."""

    name: str
    rmse: float
    train_rmse: float
    fit_seconds: float
    notes: str = ""


def compare_models(
    models: list[Any],
    train: PairSet,
    y_train: np.ndarray,
    val: PairSet,
    y_val: np.ndarray,
    *,
    train_groups: np.ndarray | None = None,
) -> list[ModelResult]:
    """Fit each model on ``train`` and score RMSE on ``val`` (predictions clipped to [0, 1])."""
    results = []
    for model in models:
        started = time.perf_counter()
        if isinstance(model, PairMLP):
            model.fit(train, y_train, groups=train_groups)
        else:
            model.fit(train, y_train)
        seconds = time.perf_counter() - started
        val_pred = np.clip(model.predict(val), 0.0, 1.0)
        train_pred = np.clip(model.predict(train), 0.0, 1.0)
        notes = f"best epoch {model.best_epoch}" if isinstance(model, PairMLP) else ""
        results.append(
            ModelResult(
                model.name, rmse(y_val, val_pred), rmse(y_train, train_pred), seconds, notes
            )
        )
    return results


def results_markdown(results: list[ModelResult]) -> str:
    """The comparison as a Markdown table, best validation RMSE marked.

    >>> print(results_markdown([ModelResult("constant", 0.3, 0.29, 0.0)]).splitlines()[2])
    | **constant** | **0.3000** | 0.2900 | 0.0 |  |
    """
    best = min(r.rmse for r in results)
    lines = [
        "| model | validation RMSE | train RMSE | fit seconds | notes |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        name, score = (
            (f"**{r.name}**", f"**{r.rmse:.4f}**")
            if r.rmse == best
            else (
                r.name,
                f"{r.rmse:.4f}",
            )
        )
        lines.append(f"| {name} | {score} | {r.train_rmse:.4f} | {r.fit_seconds:.1f} | {r.notes} |")
    return "\n".join(lines)
