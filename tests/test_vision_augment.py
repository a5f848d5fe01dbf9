"""The batched SimCLR augmentation: independent per-sample parameters that follow the recipe, and
pixel operations equal to torchvision's for the same parameters."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T2
import torchvision.transforms.v2.functional as TF
from ncspec.reference.vision import augment as A

N = 20_000


@pytest.fixture(scope="module")
def params():
    return A.sample_params(A.AugmentConfig(size=32, solarize_p=0.2, blur_p=0.5), N, 32, 32,
                           torch.Generator().manual_seed(0))


def _binom_ok(k: torch.Tensor, p: float) -> bool:
    """Frequency within 5 binomial standard deviations (false-alarm rate < 1e-6)."""
    return abs(float(k.float().mean()) - p) <= 5 * math.sqrt(p * (1 - p) / k.numel())


def test_bernoulli_parameters_follow_the_recipe(params):
    assert _binom_ok(params["flip"], 0.5)
    assert _binom_ok(params["jitter"], 0.8)
    assert _binom_ok(params["gray"], 0.2)
    assert _binom_ok(params["solarize"], 0.2)
    assert _binom_ok(params["blur"], 0.5)


def test_jitter_factors_are_uniform_on_the_recipe_ranges(params):
    for key, lo, hi in (("brightness", 0.6, 1.4), ("contrast", 0.6, 1.4), ("saturation", 0.8, 1.2), ("hue", -0.1, 0.1)):
        v = params[key]
        assert lo <= float(v.min()) and float(v.max()) <= hi
        q = torch.quantile(v, torch.tensor([0.1, 0.5, 0.9]))
        expect = torch.tensor([lo + 0.1 * (hi - lo), (lo + hi) / 2, lo + 0.9 * (hi - lo)])
        assert torch.allclose(q, expect, atol=0.02 * (hi - lo)), key      # DKW: 0.0136 at N = 20k, 1e-6
    sigma = params["sigma"]
    assert 0.1 <= float(sigma.min()) and float(sigma.max()) <= 2.0
    # ColorJitter's random order: every op equally likely in every slot
    counts = torch.stack([(params["order"][:, s:s + 1] == torch.arange(4)).float().mean(0) for s in range(4)])
    assert torch.allclose(counts, torch.full((4, 4), 0.25), atol=5 * math.sqrt(0.25 * 0.75 / N))


def test_crop_boxes_follow_torchvision_random_resized_crop(params):
    """Same distribution of (area fraction, aspect ratio) as torchvision's RandomResizedCrop.get_params."""
    import torchvision.transforms as T1
    torch.manual_seed(1)
    img = torch.zeros(3, 32, 32)
    n = 4000
    hw = np.array([T1.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])[2:] for _ in range(n)], float)
    ours_area, ours_logr = params["area"].numpy(), torch.log(params["crop_w"] / params["crop_h"]).numpy()
    ref_area, ref_logr = hw[:, 0] * hw[:, 1] / 1024, np.log(hw[:, 1] / hw[:, 0])
    qs = [0.1, 0.25, 0.5, 0.75, 0.9]
    # two-sample DKW (n = 4k vs 20k): sup|F1 − F2| < 0.04 with probability > 1 − 1e-4; the densities
    # are ≥ ~1 on these ranges, so quantiles move by < 0.04 — 0.05 leaves room for the integer grid
    assert np.all(np.abs(np.quantile(ours_area, qs) - np.quantile(ref_area, qs)) < 0.05)
    assert np.all(np.abs(np.quantile(ours_logr, qs) - np.quantile(ref_logr, qs)) < 0.05)
    assert float(params["crop_found"].float().mean()) > 0.95          # the fallback is rare at 32 px
    assert (params["crop_h"] >= 1).all() and (params["crop_i"] + params["crop_h"] <= 32).all()
    assert (params["crop_j"] + params["crop_w"] <= 32).all() and (params["crop_i"] >= 0).all()
    s = params["scale"]                        # drawn U(0.08, 1), thinned near 1 by boxes that do not fit
    assert 0.08 <= float(s.min()) and float(s.max()) <= 1.0


def test_parameters_are_independent_per_sample():
    """One call, one batch of copies of the same image: every sample gets its own draw (torchvision's v2
    transforms on a batch share one draw)."""
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(256, -1, -1, -1).contiguous()
    out, p = A.augment(x, A.AugmentConfig(), torch.Generator().manual_seed(0), return_params=True)
    flat = out.flatten(1)
    assert torch.unique(flat, dim=0).shape[0] == 256
    assert torch.unique(torch.stack([p["crop_i"], p["crop_j"], p["crop_h"], p["crop_w"]], 1), dim=0).shape[0] > 200
    for key in ("scale", "brightness", "hue"):
        v = p[key]
        r = np.corrcoef(v[:-1].numpy(), v[1:].numpy())[0, 1]           # neighbours uncorrelated
        assert abs(r) < 0.25 and float(v.std()) > 0
    # torchvision v2 on the same batch: one crop for all (the behaviour this module exists to avoid)
    torch.manual_seed(0)
    tv = T2.RandomResizedCrop(32)(x.float())
    assert torch.unique(tv.flatten(1), dim=0).shape[0] == 1


def test_crop_and_flip_equal_torchvision_resized_crop():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(64, 3, 32, 32, generator=g)
    p = A.sample_params(A.AugmentConfig(), 64, 32, 32, g)
    out = A.crop_flip(x, p, 32)
    for k in range(64):
        i, j, h, w = (int(p[n][k]) for n in ("crop_i", "crop_j", "crop_h", "crop_w"))
        ref = TF.resized_crop(x[k], i, j, h, w, [32, 32], antialias=False)
        ref = ref.flip(-1) if p["flip"][k] else ref
        assert torch.allclose(out[k], ref, atol=1e-5)


def test_colour_operations_equal_torchvision():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(8, 3, 16, 16, generator=g)
    x[0] = 0.5                                                       # gray pixels: hue undefined
    f = torch.linspace(0.55, 1.45, 8)
    h = torch.linspace(-0.5, 0.5, 8)
    for ours, ref, fac in ((A.adjust_brightness, TF.adjust_brightness, f), (A.adjust_contrast, TF.adjust_contrast, f),
                           (A.adjust_saturation, TF.adjust_saturation, f), (A.adjust_hue, TF.adjust_hue, h)):
        o = ours(x, fac)
        r = torch.stack([ref(x[k], float(fac[k])) for k in range(8)])
        assert torch.allclose(o, r, atol=1e-5), ours.__name__
    assert torch.allclose(A.grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6)
    sig = torch.tensor([0.5, 1.0, 1.7, 2.0, 0.1, 0.8, 1.2, 1.9])
    o = A._blur(x, sig, 9)
    r = torch.stack([TF.gaussian_blur(x[k], [9, 9], [float(sig[k])] * 2) for k in range(8)])
    assert torch.allclose(o, r, atol=1e-5)


def test_full_pipeline_applies_each_stage_to_the_drawn_samples():
    cfg = A.AugmentConfig(size=24, solarize_p=0.5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    out, p = A.augment(x, cfg, torch.Generator().manual_seed(6), return_params=True, dtype=torch.bfloat16,
                       channels_last=True)
    assert out.shape == (64, 3, 24, 24) and out.dtype == torch.bfloat16
    assert out.is_contiguous(memory_format=torch.channels_last)
    y = out.float() * 0.25 + 0.5                                     # undo the normalisation
    gray = (y[:, 0] - y[:, 1]).abs().amax((1, 2)) < 0.02
    assert torch.equal(gray[p["gray"]], torch.ones_like(gray[p["gray"]]))
    solar_only = p["solarize"] & ~p["jitter"] & ~p["gray"]
    plain = ~p["solarize"] & ~p["jitter"] & ~p["gray"]
    crop = A.crop_flip(x.float() / 255, p, 24)
    assert torch.allclose(y[plain], crop[plain], atol=0.02)
    assert torch.allclose(y[solar_only], torch.where(crop >= 0.5, 1 - crop, crop)[solar_only], atol=0.02)


def test_views_are_asymmetric_and_stl_gets_blur():
    v1, v2 = A.simclr_views("cifar10", 32)
    assert (v1.solarize_p, v2.solarize_p, v1.blur_p) == (0.0, 0.2, 0.0)
    s1, s2 = A.simclr_views("stl10", 96)
    assert s1.blur_p == s2.blur_p == 0.5 and s1.blur_kernel == 9
    assert (v1.brightness, v1.contrast, v1.saturation, v1.hue, v1.jitter_p, v1.gray_p) == (0.4, 0.4, 0.2, 0.1, 0.8, 0.2)
