"""Image encoder alone: onnxruntime session options and batch sizes vs PyTorch eager.

    python benchmarks/encoder_options.py [--images 128] [--rounds 3] [--torch]

Every configuration encodes the same real photos (the practicum set when present, else random
pixels) in interleaved rounds, so a busy machine slows all of them alike; the median images/s
per configuration is printed. This is the measurement behind the session options in
``pixsearch.indexer.models.OnnxModel._create_session`` and the indexer's ``batch_size``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import PRACTICUM, emit, machine, median

ENCODER = Path(__file__).resolve().parents[1] / "indexer" / "bundle" / "image_encoder.onnx"


def photos(count: int) -> np.ndarray:
    from pixsearch.indexer.preprocess import load_photo

    files = sorted(PRACTICUM.glob("*.jpg"))[:count] if PRACTICUM.is_dir() else []
    if len(files) < count:
        return np.random.default_rng(0).integers(0, 256, (count, 224, 224, 3), dtype=np.uint8)
    return np.stack([load_photo(f).pixels for f in files])


def session(threads: int, spinning: bool, level: str = "all", arena: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }[level]
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(ENCODER), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--torch", action="store_true", help="also PyTorch eager (batch 32)")
    parser.add_argument("--batches", default="1,8,16,32,64")
    args = parser.parse_args()
    pixels = photos(args.images)
    configs: dict[str, Any] = {}
    for threads in (0, 1, 2):
        for spinning in (True, False):
            configs[f"threads={threads or 'default'} spin={int(spinning)}"] = (
                session(threads, spinning),
                32,
            )
    base = session(2, False)
    for batch in (int(b) for b in args.batches.split(",")):
        configs[f"threads=2 spin=0 batch={batch}"] = (base, batch)
    configs["threads=2 spin=0 level=extended"] = (session(2, False, "extended"), 32)
    configs["threads=2 spin=0 arena=0"] = (session(2, False, arena=False), 32)
    runners: dict[str, Any] = {}
    for name, (sess, batch) in configs.items():

        def run(sess: Any = sess, batch: int = batch) -> None:
            for start in range(0, len(pixels), batch):
                sess.run(None, {"pixels": pixels[start : start + batch]})

        runners[name] = run
    if args.torch:
        import torch

        from pixsearch.exporter._sources import load_image_model, pixel_encoder

        model = pixel_encoder(load_image_model())
        torch_pixels = torch.from_numpy(pixels)

        def run_torch() -> None:
            with torch.inference_mode():
                for start in range(0, len(pixels), 32):
                    model(torch_pixels[start : start + 32])

        runners[f"torch eager batch=32 threads={torch.get_num_threads()}"] = run_torch
    for run in runners.values():  # warm-up (session init, arena growth)
        run()
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            rates[name].append(len(pixels) / (time.perf_counter() - started))
    print(f"machine: {machine()}")
    for name, values in rates.items():
        print(
            f"{name:<40} {median(values):7.1f} images/s  (rounds: "
            + ", ".join(f"{v:.1f}" for v in values)
            + ")"
        )
        emit({"bench": "encoder", "config": name, "images_per_s": round(median(values), 1)})


if __name__ == "__main__":
    main()
