"""Backbones for 32 px (CIFAR) and 96 px (STL-10) images, a projector, and the encoder.

* ``vgg11`` — VGG11 (Simonyan & Zisserman, configuration A: 8 convolutions 64-128-256-256-
  512-512-512-512 with five max-pools) with BatchNorm after every convolution, global
  average pooling → 512 features; ``vgg11_nobn`` without BN. The backbone of Halvagal et al. 2022, Table 1.
* ``resnet18`` — the CIFAR ResNet-18: 3×3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2],
  global average pooling → 512 features.
* projector — ``Linear → BN → ReLU → Linear [→ BN]`` (one hidden layer, as Halvagal et al. 2022, Table 1).

``width`` scales every channel count (``"tiny"`` = 1/8: CPU tests). The encoder maps images
(B, 3, H, W) to float32 embeddings (B, M) and exposes ``features(x)`` (B, F).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
WIDTHS = {"tiny": 0.125, "small": 0.25, "half": 0.5, "full": 1.0}
BACKBONES = ("vgg11", "vgg11_nobn", "resnet18")


def _width(width) -> float:
    if isinstance(width, str):
        if width not in WIDTHS:
            raise ValueError(f"unknown width {width!r}; use one of {sorted(WIDTHS)} or a float multiplier.")
        return WIDTHS[width]
    if not width > 0:
        raise ValueError(f"width must be positive, got {width!r}.")
    return float(width)


class VGG(nn.Module):
    def __init__(self, cfg=VGG11, width=1.0, batchnorm: bool = True):
        super().__init__()
        w, layers, c = _width(width), [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = max(4, int(round(v * w)))
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=not batchnorm)]
            layers += [nn.BatchNorm2d(out)] if batchnorm else []
            layers += [nn.ReLU(inplace=True)]
            c = out
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.body(x)), 1)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR ResNet-18: 3×3 stride-1 stem, no max-pool."""

    def __init__(self, width=1.0):
        super().__init__()
        w = _width(width)
        ch = [max(4, int(round(c * w))) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(3, ch[0], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(inplace=True)
        )
        layers, cin = [], ch[0]
        for i, c in enumerate(ch):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, c, stride), BasicBlock(c, c, 1)]
            cin = c
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = cin

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)


def make_backbone(name: str, width=1.0) -> nn.Module:
    if name == "vgg11":
        return VGG(VGG11, width, batchnorm=True)
    if name == "vgg11_nobn":
        return VGG(VGG11, width, batchnorm=False)
    if name == "resnet18":
        return ResNet18(width)
    raise ValueError(f"unknown backbone {name!r}; use one of {', '.join(BACKBONES)}.")


def projector(in_dim: int, hidden: int, out: int, out_bn: bool = True) -> nn.Sequential:
    """One hidden layer: ``Linear → BN → ReLU → Linear [→ BN without affine]``.

    ``out_bn`` ends with SimSiam's non-affine BatchNorm: zero-mean, unit-variance embedding
    dimensions over the batch. Without it, a tiny VGG11 on the CIFAR-10 fragment let one direction
    dominate within an epoch (participation ratio ≈ 1.0 for both losses; with it 2–4 and rising
    for IsoLoss, measured over 4 epochs)."""
    layers = [nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
              nn.Linear(hidden, out, bias=not out_bn)]
    return nn.Sequential(*layers, *([nn.BatchNorm1d(out, affine=False)] if out_bn else []))


class Encoder(nn.Module):
    """``images (B, 3, H, W) → projector(backbone(x))`` as float32 (B, M)."""

    def __init__(self, backbone: nn.Module, proj: nn.Module, embed_dim: int):
        super().__init__()
        self.backbone, self.projector, self.embed_dim = backbone, proj, embed_dim
        self.feature_dim = backbone.out_dim

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.backbone(x)).float()

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.backbone(x)
        return h, self.projector(h).float()


def make_encoder(backbone: str = "resnet18", proj_hidden: int = 2048, proj_out: int = 256, width=1.0,
                 out_bn: bool = True) -> Encoder:
    net = make_backbone(backbone, width)
    return Encoder(net, projector(net.out_dim, proj_hidden, proj_out, out_bn), proj_out)


def forward_flops(model: nn.Module, image_size: int, device="cpu") -> float:
    """FLOPs of one forward pass per image (torch's FlopCounterMode; 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.zeros(2, 3, image_size, image_size, device=device)
    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    model.train(was)
    return fc.get_total_flops() / 2
