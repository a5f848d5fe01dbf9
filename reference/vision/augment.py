"""The SimCLR augmentation recipe as one batched pipeline with per-sample random parameters.

torchvision's v2 transforms applied to a batch draw ONE set of parameters for the
whole batch; here every sample gets its own draw, batched on the
device the images live on:

1. random resized crop (area scale U(0.08, 1), log aspect ratio U(log ¾, log 4⁄3),
   torchvision's 10-tries-then-centre-crop rule) and horizontal flip (p 0.5), both as
   one ``affine_grid`` + ``grid_sample`` (bilinear, taps clamped to the crop: this is
   ``resized_crop(..., antialias=False)`` to rounding);
2. colour jitter with p 0.8: brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1,
   in a per-sample random order (as ``ColorJitter``), each op torchvision's formula;
3. grayscale with p 0.2; 4. Gaussian blur (STL-10; σ ~ U(0.1, 2)); 5. solarisation;
6. normalisation, output dtype and memory format of the caller's choice.

:func:`sample_params` draws the parameters (returned so that tests can check their
distributions); :func:`apply` is a pure tensor function of images and parameters
(what ``torch.compile`` gets).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY = (0.2989, 0.587, 0.114)          # torchvision's rgb_to_grayscale weights


@dataclass(frozen=True)
class AugmentConfig:
    size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    random_order: bool = True
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def blur_kernel(self) -> int:
        """10 % of the image side, odd (SimCLR)."""
        return max(3, int(0.1 * self.size) // 2 * 2 + 1)


def simclr_views(dataset: str, size: int, mean=None, std=None, *, blur: bool | None = None,
                 solarize: tuple[float, float] = (0.0, 0.2)) -> tuple[AugmentConfig, AugmentConfig]:
    """The two (asymmetric) view recipes of the IsoLoss authors' configs: solarisation p 0 / 0.2,
    blur only for STL-10 (p 0.5 on both views)."""
    blur = dataset.startswith("stl") if blur is None else blur
    base = AugmentConfig(size=size, blur_p=0.5 if blur else 0.0, mean=mean, std=std)
    return replace(base, solarize_p=solarize[0]), replace(base, solarize_p=solarize[1])


# --- parameters -----------------------------------------------------------------------------

def _u(n, lo, hi, g, device, k=None):
    shape = (n,) if k is None else (n, k)
    return torch.rand(shape, generator=g, device=device) * (hi - lo) + lo


def sample_params(cfg: AugmentConfig, n: int, height: int, width: int, generator: torch.Generator | None = None,
                  device=None) -> dict[str, Tensor]:
    """Independent parameters for ``n`` samples (every entry has leading dimension ``n``)."""
    g, dev = generator, device if device is not None else (generator.device if generator is not None else "cpu")
    area = float(height * width)
    # random resized crop: torchvision's get_params, batched — 10 tries, the first that fits wins
    s = _u(n, cfg.scale[0], cfg.scale[1], g, dev, 10)
    logr = _u(n, math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), g, dev, 10)
    ar = torch.exp(logr)
    w = torch.round(torch.sqrt(area * s * ar))
    h = torch.round(torch.sqrt(area * s / ar))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(1, keepdim=True)
    found = ok.any(1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    scale_drawn, logr_drawn = s.gather(1, first)[:, 0], logr.gather(1, first)[:, 0]
    in_ratio = width / height                                  # fallback: the central crop
    if in_ratio < cfg.ratio[0]:
        fw, fh = width, round(width / cfg.ratio[0])
    elif in_ratio > cfg.ratio[1]:
        fw, fh = round(height * cfg.ratio[1]), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    ui, uj = _u(n, 0, 1, g, dev), _u(n, 0, 1, g, dev)
    i = torch.where(found, torch.floor(ui * (height - h + 1)), torch.floor((height - h) / 2))
    j = torch.where(found, torch.floor(uj * (width - w + 1)), torch.floor((width - w) / 2))
    p = dict(crop_i=i, crop_j=j, crop_h=h, crop_w=w, crop_found=found,
             scale=scale_drawn, log_ratio=logr_drawn, area=h * w / area)
    p["flip"] = torch.rand(n, generator=g, device=dev) < cfg.flip_p
    p["jitter"] = torch.rand(n, generator=g, device=dev) < cfg.jitter_p
    p["brightness"] = _u(n, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness, g, dev)
    p["contrast"] = _u(n, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast, g, dev)
    p["saturation"] = _u(n, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation, g, dev)
    p["hue"] = _u(n, -cfg.hue, cfg.hue, g, dev)
    order = torch.rand(n, 4, generator=g, device=dev).argsort(1)
    p["order"] = order if cfg.random_order else torch.arange(4, device=dev).expand(n, 4).clone()
    p["gray"] = torch.rand(n, generator=g, device=dev) < cfg.gray_p
    p["blur"] = torch.rand(n, generator=g, device=dev) < cfg.blur_p
    p["sigma"] = _u(n, cfg.blur_sigma[0], cfg.blur_sigma[1], g, dev)
    p["solarize"] = torch.rand(n, generator=g, device=dev) < cfg.solarize_p
    return p


# --- pixel operations (torchvision's formulas, per-sample factors) ----------------------------

def _col(f: Tensor) -> Tensor:
    return f.view(-1, 1, 1, 1)


def grayscale(x: Tensor) -> Tensor:
    """(B, 3, H, W) → (B, 1, H, W), torchvision's weights."""
    return x[:, 0:1] * GRAY[0] + x[:, 1:2] * GRAY[1] + x[:, 2:3] * GRAY[2]


def adjust_brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * _col(f)).clamp(0, 1)


def adjust_contrast(x: Tensor, f: Tensor) -> Tensor:
    mean = grayscale(x).mean((1, 2, 3), keepdim=True)
    return (x * _col(f) + (1 - _col(f)) * mean).clamp(0, 1)


def adjust_saturation(x: Tensor, f: Tensor) -> Tensor:
    return (x * _col(f) + (1 - _col(f)) * grayscale(x)).clamp(0, 1)


def adjust_hue(x: Tensor, f: Tensor) -> Tensor:
    """Rotate the hue by ``f`` (fraction of a turn): RGB → HSV, shift, HSV → RGB."""
    maxc, _ = x.max(1, keepdim=True)
    minc, _ = x.min(1, keepdim=True)
    rng = maxc - minc
    eq = rng == 0
    s = rng / torch.where(eq, torch.ones_like(maxc), maxc)
    d = torch.where(eq, torch.ones_like(rng), rng)
    rc, gc, bc = ((maxc - x) / d).unbind(1)
    r, g, _ = x.unbind(1)
    mx = maxc[:, 0]
    is_r, is_g = mx == r, (mx == g) & (mx != r)
    h = torch.where(is_r, bc - gc, torch.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(eq[:, 0], torch.zeros_like(h), h)
    h = (h / 6.0 + 1.0) % 1.0
    h = ((h + f.view(-1, 1, 1)) % 1.0).unsqueeze(1)               # (B, 1, H, W)
    n = torch.arange(5, 0, -2, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)     # 5, 3, 1
    k = (n + h * 6.0) % 6.0
    return (maxc - maxc * s * torch.clamp(torch.minimum(k, 4.0 - k), 0, 1)).clamp(0, 1)


def _blur(x: Tensor, sigma: Tensor, k: int) -> Tensor:
    """Separable Gaussian blur with a per-sample σ (reflect padding, as torchvision)."""
    B, C, H, W = x.shape
    t = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    ker = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1).to(x.dtype)) ** 2)
    ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(C, 0)          # (B·C, k)
    y = F.pad(x.reshape(1, B * C, H, W), (k // 2, k // 2, k // 2, k // 2), mode="reflect")
    y = F.conv2d(y, ker.view(B * C, 1, 1, k), groups=B * C)
    y = F.conv2d(y, ker.view(B * C, 1, k, 1), groups=B * C)
    return y.view(B, C, H, W)


def crop_flip(x: Tensor, p: dict[str, Tensor], size: int) -> Tensor:
    """Resized crop + flip of float images (B, C, H, W) → (B, C, size, size) via one grid_sample."""
    B, _, H, W = x.shape
    h, w = p["crop_h"].to(x.dtype), p["crop_w"].to(x.dtype)
    i, j = p["crop_i"].to(x.dtype), p["crop_j"].to(x.dtype)
    sx = torch.where(p["flip"], -w / W, w / W)
    theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sx
    theta[:, 0, 2] = (2 * j + w) / W - 1
    theta[:, 1, 1] = h / H
    theta[:, 1, 2] = (2 * i + h) / H - 1
    grid = F.affine_grid(theta, [B, x.shape[1], size, size], align_corners=False)
    # keep the bilinear taps inside the crop (resized_crop's edge clamping)
    lo = torch.stack([(2 * j + 1) / W - 1, (2 * i + 1) / H - 1], -1).view(B, 1, 1, 2)
    hi = torch.stack([(2 * (j + w) - 1) / W - 1, (2 * (i + h) - 1) / H - 1], -1).view(B, 1, 1, 2)
    grid = torch.maximum(torch.minimum(grid, hi), lo)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


_JITTER = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
_JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")


def color_jitter(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    """The four jitter ops in each sample's own order ``p["order"]`` (B, 4).

    Static shapes (what ``torch.compile`` and CUDA streams want): every op on the whole batch in every
    slot, the sample's op picked by ``where`` — 16 op evaluations. Eager on the CPU, where the
    arithmetic is the cost (hue is most of it): each op on exactly the samples that have it in that slot,
    4 op evaluations per sample; the same values."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        for slot in range(4):
            which = _col(p["order"][:, slot])
            out = x
            for k, (op, key) in enumerate(zip(_JITTER, _JITTER_KEYS)):
                out = torch.where(which == k, op(x, p[key]), out)
            x = out
        return x
    x = x.clone()
    for slot in range(4):
        for k, (op, key) in enumerate(zip(_JITTER, _JITTER_KEYS)):
            idx = (p["order"][:, slot] == k).nonzero()[:, 0]
            if idx.numel():
                x[idx] = op(x[idx], p[key][idx])
    return x


def apply(x: Tensor, p: dict[str, Tensor], cfg: AugmentConfig, *, dtype=torch.float32,
          channels_last: bool = False) -> Tensor:
    """Augment uint8 (or [0, 1] float) images (B, 3, H, W) with the parameters ``p``."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = crop_flip(x, p, cfg.size)
    x = torch.where(_col(p["jitter"]), color_jitter(x, p), x)
    x = torch.where(_col(p["gray"]), grayscale(x).expand_as(x), x)
    if cfg.blur_p > 0:
        x = torch.where(_col(p["blur"]), _blur(x, p["sigma"], cfg.blur_kernel), x)
    if cfg.solarize_p > 0:
        x = torch.where(_col(p["solarize"]) & (x >= cfg.solarize_threshold), 1.0 - x, x)
    if cfg.mean is not None:
        x = _normalize(x, cfg.mean, cfg.std)
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment(x: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None, *,
            dtype=torch.float32, channels_last: bool = False, return_params: bool = False, apply_fn=None):
    """Sample per-sample parameters and apply them; ``apply_fn`` may be a compiled :func:`apply`."""
    p = sample_params(cfg, x.shape[0], x.shape[-2], x.shape[-1], generator, device=x.device)
    out = (apply_fn or apply)(x, p, cfg, dtype=dtype, channels_last=channels_last)
    return (out, p) if return_params else out


def _normalize(x: Tensor, mean, std) -> Tensor:
    """Per-channel ``(x − mean)/std`` with Python floats: no host→device copy (which would
    synchronise a CUDA stream at every step)."""
    return torch.cat([(x[:, c:c + 1] - m) / s for c, (m, s) in enumerate(zip(mean, std))], 1)


def normalize(x: Tensor, mean, std, *, dtype=torch.float32, channels_last: bool = False) -> Tensor:
    """uint8 images → normalised float (no augmentation; for evaluation)."""
    x = _normalize(x.float() / 255.0, mean, std).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def pil_pipeline(cfg: AugmentConfig):
    """The same recipe as torchvision v1 transforms on PIL images, one sample at a time (what
    lightly's ``SimCLRTransform`` composes); the baseline ``ncspec bench`` compares against."""
    import torchvision.transforms as T
    ops = [T.RandomResizedCrop(cfg.size, scale=cfg.scale, ratio=cfg.ratio),
           T.RandomHorizontalFlip(cfg.flip_p),
           T.RandomApply([T.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)], p=cfg.jitter_p),
           T.RandomGrayscale(cfg.gray_p)]
    if cfg.blur_p > 0:
        ops.append(T.RandomApply([T.GaussianBlur(cfg.blur_kernel, cfg.blur_sigma)], p=cfg.blur_p))
    if cfg.solarize_p > 0:
        ops.append(T.RandomSolarize(int(cfg.solarize_threshold * 255), p=cfg.solarize_p))
    ops.append(T.ToTensor())
    if cfg.mean is not None:
        ops.append(T.Normalize(cfg.mean, cfg.std))
    return T.Compose(ops)
