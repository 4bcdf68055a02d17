"""Fine-tuned image tower variants vs frozen features, on held-out photos (issue #13).

Each variant fine-tunes EfficientNet-Lite0's tail (``pixsearch.exporter.tower_train``), then
retrains the shipped joint space and child classifier on its features and prints their
held-out figures (``pixsearch.exporter.tower_eval``); ``--baseline`` measures the frozen
features the same way. Results are appended to ``--out`` (JSON lines).

    flock /work/heavy.lock python benchmarks/tower_variants.py ../shared/data --baseline
    flock /work/heavy.lock python benchmarks/tower_variants.py ../shared/data --epochs 8
    python benchmarks/tower_variants.py ../shared/data --epochs 8 --train-from 14 --child-weight 1
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path


def scaffold_recall(prepared, trained, photo) -> dict:
    """Held-out R@K of the towers trained together with the tail (joint only, and mixed 0.6
    with the label bridge as shipped)."""
    import numpy as np

    from pixsearch.exporter.space_eval import recall_table, retrieval_ranks, val_queries

    corpus, val = prepared.corpus, prepared.space_val
    rows, owners = val_queries(corpus, val)
    img, txt = trained.joint_vectors(photo[val], corpus.text_features[rows])
    out = {"joint_only": recall_table(retrieval_ranks(img, txt, owners))}
    bridge = prepared.bridge.vectors(photo[val])
    emb = corpus.text_features[rows]
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for mix in (0.6, 0.8):
        a, b = np.sqrt(mix), np.sqrt(1 - mix)
        out[f"mix_{mix}"] = recall_table(
            retrieval_ranks(
                np.concatenate([a * img, b * bridge], 1),
                np.concatenate([a * txt, b * emb], 1),
                owners,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--baseline", action="store_true", help="measure the frozen features")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-from", type=int, default=None)
    parser.add_argument("--child-weight", type=float, default=None)
    parser.add_argument("--distill-weight", type=float, default=None)
    parser.add_argument("--lr-tail", type=float, default=None)
    parser.add_argument("--views", default=None, help="comma-separated, default all cached")
    parser.add_argument("--tta", action="store_true", help="also measure photo+mirror averaged")
    parser.add_argument(
        "--wise",
        default=None,
        help="comma-separated alphas: also measure the weights interpolated between ImageNet's "
        "(0) and the fine-tuned ones (1), as WiSE-FT does",
    )
    parser.add_argument("--out", type=Path, default=Path("tower-variants.jsonl"))
    args = parser.parse_args()

    from pixsearch.exporter import _sources as sources
    from pixsearch.exporter.tower_eval import VIEWS, measure_features, prepare
    from pixsearch.exporter.tower_train import (
        TowerConfig,
        tail_features,
        train_tower,
        wise_interpolation,
    )
    from pixsearch.indexer.models import ModelBundle

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    bundle = ModelBundle.load()
    views = tuple(args.views.split(",")) if args.views else VIEWS
    prepared = prepare(args.data, bundle, views=views, log=log)
    record: dict = {"views": list(views)}
    if args.baseline:
        record["variant"] = "frozen"
        record.update(measure_features(prepared, prepared.corpus.features, log=log))
    else:
        overrides = {
            k: v
            for k, v in {
                "epochs": args.epochs,
                "train_from": args.train_from,
                "child_weight": args.child_weight,
                "distill_weight": args.distill_weight,
                "lr_tail": args.lr_tail,
            }.items()
            if v is not None
        }
        config = TowerConfig(**overrides)
        net = sources.load_image_model()
        imagenet = {k: v.detach().clone() for k, v in net.state_dict().items()}
        trained = train_tower(net, prepared.tower_data, config, log=log)
        record["variant"] = "fine-tuned"
        record["config"] = asdict(config)
        record["train_seconds"] = trained.seconds
        record["history"] = trained.history
        photo = tail_features(net, prepared.tower_data.views[0].activations)
        hflip = tail_features(net, prepared.tower_data.views[1].activations)
        record["scaffold"] = scaffold_recall(prepared, trained, photo)
        log(f"scaffold towers (trained with the tail): {record['scaffold']}")
        record.update(measure_features(prepared, photo, hflip=hflip, log=log))
        if args.tta:
            mean = (photo + hflip) / 2
            record["tta"] = measure_features(prepared, mean, hflip=hflip, log=log)
        if args.wise:
            tuned = {k: v.detach().clone() for k, v in net.state_dict().items()}
            record["wise"] = {}
            for alpha in (float(a) for a in args.wise.split(",")):
                net.load_state_dict(wise_interpolation(tuned, imagenet, alpha))
                log(f"WiSE-FT alpha {alpha}")
                record["wise"][str(alpha)] = measure_features(
                    prepared,
                    tail_features(net, prepared.tower_data.views[0].activations),
                    hflip=tail_features(net, prepared.tower_data.views[1].activations),
                    log=log,
                )
            net.load_state_dict(tuned)
    with open(args.out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
