"""A frozen ImageNet VGG-16 feature extractor with named layers, shared by perceptual / consistency losses."""
from __future__ import annotations

import logging
from typing import Iterable, Mapping

import torch
from torch import nn

from genfw.core.errors import GenfwError
from genfw.core.weights import ASSETS, VGG16_CONV_INDICES, load_tensors

log = logging.getLogger(__name__)

# torchvision's vgg16().features layout: (kind, channels) per block; 'M' = 2x2 max-pool
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> dict[str, int]:
    """Name -> index into torchvision's `features` Sequential (conv, relu, pool)."""
    names, idx, block, k = {}, 0, 1, 1
    for c in _CFG:
        if c == "M":
            names[f"pool{block}"] = idx
            idx += 1
            block, k = block + 1, 1
        else:
            names[f"conv{block}_{k}"] = idx
            names[f"relu{block}_{k}"] = idx + 1
            idx += 2
            k += 1
    return names


LAYERS = _layer_names()


class VGG16Features(nn.Module):
    """VGG-16 conv stack (13 convs, torchvision layout), returning the requested named activations.

    Input is N x C x H x W in `input_range` (default [0, 1], the batch contract; 1 channel is
    replicated); ImageNet normalisation happens inside. The network is frozen: eval mode, no
    parameter gradients (gradients still flow to the input), and it is cut after the deepest layer
    asked for. Weights come from the `vgg16-imagenet` asset; `allow_random=True` is an explicit,
    logged opt-in for smoke tests only.
    """

    def __init__(self, layers: Iterable[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
                 weights: str | Mapping[str, torch.Tensor] = "vgg16-imagenet", allow_random: bool = False,
                 path: str = "", input_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        self.layers = tuple(layers)
        if not self.layers:
            raise GenfwError("VGG16Features needs at least one layer name")
        from genfw.core.errors import suggest

        for name in self.layers:
            if name not in LAYERS:
                raise GenfwError(f"unknown VGG-16 layer {name!r}{suggest(name, LAYERS)}; "
                                 f"layers: {', '.join(LAYERS)}")
        last = max(LAYERS[n] for n in self.layers)
        mods: list[nn.Module] = []
        cin = 3
        for c in _CFG:
            if c == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU(inplace=False)]
                cin = c
        self.features = nn.Sequential(*mods[:last + 1])
        self._index_to_name = {LAYERS[n]: n for n in self.layers}
        lo, hi = input_range
        if hi <= lo:
            raise GenfwError(f"input_range must be (low, high) with low < high, got {input_range}")
        self.lo, self.span = float(lo), float(hi - lo)
        # non-persistent: constants, not weights, so checkpoints hold only the conv tensors
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.pretrained = self._load(weights, allow_random, path)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def _load(self, weights, allow_random: bool, path: str) -> bool:
        if isinstance(weights, Mapping):
            sd = dict(weights)
        else:
            name = str(weights)
            if name not in ASSETS and not path:
                # a config value like `vgg_weights = "~/vgg16-397923af.pth"`: a file of the VGG-16 asset
                name, path = "vgg16-imagenet", name
            try:
                sd = load_tensors(name, path)
            except GenfwError:
                if not allow_random:
                    raise
                log.warning("VGG16Features: pretrained weights %r not found; using RANDOM weights because "
                            "allow_random=True (smoke tests only: perceptual losses are meaningless)", weights)
                return False
        wanted = {k: v for k, v in sd.items()
                  if k.startswith("features.") and int(k.split(".")[1]) < len(self.features)}
        expected = {f"features.{i}.{t}" for i in VGG16_CONV_INDICES if i < len(self.features)
                    for t in ("weight", "bias")}
        missing = expected - set(wanted)
        if missing:
            raise GenfwError(f"VGG-16 weights lack {sorted(missing)[0]} (and {len(missing) - 1} more)")
        own = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        for k in expected:
            if tuple(wanted[k].shape) != tuple(own[k].shape):
                raise GenfwError(f"VGG-16 weight {k} has shape {tuple(wanted[k].shape)}, expected {tuple(own[k].shape)}")
        self.features.load_state_dict({k.removeprefix("features."): v.float() for k, v in wanted.items()
                                       if k in expected})
        return True

    def train(self, mode: bool = True) -> "VGG16Features":
        # frozen: stays in eval whatever the enclosing model does
        return super().train(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise GenfwError(f"VGG16Features expects 1 or 3 channels, got {x.shape[1]}")
        x01 = (x - self.lo) / self.span
        return (x01 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.normalize(x)
        out: dict[str, torch.Tensor] = {}
        for i, mod in enumerate(self.features):
            h = mod(h)
            name = self._index_to_name.get(i)
            if name is not None:
                out[name] = h
        return out
