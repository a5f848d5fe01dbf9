"""Throughput of the training loop (``ncspec bench``), against figures measured on one H100.

End to end: uint8 images resident on the device, per-sample augmentation of both views, the
training step (encoder, learner, readout, optimiser), exactly the loop ``train`` runs — on
synthetic CIFAR-shaped data (50,000 images by default) unless a data set is named. Reported:
images/s and view-images/s, seconds per 50,000-image epoch, FLOPs per view-image of a training
step (torch's FlopCounterMode), the achieved FLOP rate as a fraction of the 800 TFLOP/s bf16 matmul
peak measured on the H100, the eigendecomposition's share of the step, and optionally the
lightly-style pipeline (torchvision transforms on PIL images in DataLoader workers, same model).
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch

from . import augment as aug
from .data import ImageDataset
from .siamese import _eigen_predictor
from .train import TrainConfig, Trainer

PEAK_FLOPS = 800e12             # bf16 matmul peak measured on one H100 (PyTorch 2.11)
LIGHTLY_H100_S_PER_EPOCH = 8.42  # measured on one H100: lightly-style pipeline, CIFAR ResNet-18 SimSiam, batch 512
TARGET_S_PER_EPOCH = {"resnet18": 0.85, "vgg11": 0.5, "vgg11_nobn": 0.5}


def synthetic(n: int, size: int = 32, classes: int = 10, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    m = min(n, 1000)
    return ImageDataset("synthetic", x, y, x[:m].clone(), y[:m].clone(), classes)


def step_flops(tr: Trainer) -> float:
    """FLOPs of one training step (forward + backward, both views) per view-image."""
    from torch.utils.flop_counter import FlopCounterMode
    perm, gen = tr.epoch_generators(10_000)
    v1, v2, y = tr.views_for(0, 0, gen, perm)
    pair = tr.pair
    tr.pair = getattr(pair, "_orig_mod", pair)          # count on the eager module
    try:
        with FlopCounterMode(display=False) as fc:
            tr.step(v1, v2, y, 0.0, 0.0, 0.0 if tr.ema else None, apply=False)
    finally:
        tr.pair = pair
    return fc.get_total_flops() / (2 * v1.shape[0] * tr.world)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def eig_ms(M: int, device, reps: int = 20) -> float:
    """Milliseconds of the closed-form predictor (float64 eigh of an M×M correlation)."""
    z = torch.randn(4 * M, M, device=device)
    C = z.T @ z / z.shape[0]
    _eigen_predictor(C, 0.5, 0.1, True, "after")
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        _eigen_predictor(C, 0.5, 0.1, True, "after")
    _sync(device)
    return (time.perf_counter() - t) / reps * 1e3


class _PILPairs(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray, t1, t2):
        self.x, self.y, self.t1, self.t2 = x, y, t1, t2

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        from PIL import Image
        img = Image.fromarray(self.x[i])
        return self.t1(img), self.t2(img), int(self.y[i])


def lightly_style(cfg: TrainConfig, ds: ImageDataset, workers: int, batches: int = 30) -> dict:
    """The lightly-style pipeline: the same model and learner fed by torchvision (v1) transforms on PIL
    images in DataLoader workers, bf16 autocast, eager (what lightly's SimCLRTransform composes)."""
    from dataclasses import replace
    tr = Trainer(replace(cfg, compile=False, channels_last=False, bf16=cfg.device != "cpu" and cfg.bf16), dataset=ds)
    x = ds.x_train.permute(0, 2, 3, 1).contiguous().numpy()
    t1, t2 = (aug.pil_pipeline(v) for v in tr.views)
    dl = torch.utils.data.DataLoader(_PILPairs(x, ds.y_train.numpy(), t1, t2), batch_size=tr.batch, shuffle=True,
                                     num_workers=workers, drop_last=True, pin_memory=tr.device.type == "cuda",
                                     persistent_workers=workers > 0)
    def cycle():
        while True:
            yield from dl
    it = cycle()
    dev = tr.device
    times = []
    for k in range(batches + 3):
        t = time.perf_counter()
        v1, v2, y = next(it)
        v1, v2, y = v1.to(dev, non_blocking=True), v2.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        tr.step(v1, v2, y, 0.01, 0.01, 0.99 if tr.ema else None)
        _sync(dev)
        if k >= 3:
            times.append(time.perf_counter() - t)
    sec_per_step = statistics.median(times)
    return dict(workers=workers, batches_timed=len(times), s_per_step=sec_per_step,
                s_per_50k_epoch=sec_per_step * 50_000 / tr.batch)


def bench(*, backbone="resnet18", method="simsiam", batch=512, n=50_000, epochs=2, device="auto",
          bf16=True, channels_last=True, compile=True, compile_backend="inductor", width="full", learner="auto", ema=False,
          proj_hidden=2048, proj_out=256, baseline=False, workers=None, dataset: ImageDataset | None = None,
          log=print) -> dict:
    ds = dataset or synthetic(n)
    cfg = TrainConfig(dataset="synthetic", method=method, backbone=backbone, width=width, proj_hidden=proj_hidden,
                      proj_out=proj_out, batch_size=batch, epochs=epochs + 1, device=device, bf16=bf16,
                      channels_last=channels_last, compile=compile, compile_backend=compile_backend,
                      learner=learner, ema=ema, eval_every=0,
                      probe=False, progress=False)
    tr = Trainer(cfg, dataset=ds)
    dev = tr.device
    flops = step_flops(tr)
    t = time.perf_counter()
    warm = tr.run_epoch(0)                                   # compilation happens here
    log(f"warm-up epoch (incl. compilation): {time.perf_counter() - t:.2f} s")
    rows = [tr.run_epoch(e) for e in range(1, epochs + 1)]
    sec = statistics.median(r["epoch_time_s"] for r in rows)
    imgs = tr.steps_per_epoch * tr.batch
    s50k = sec * 50_000 / imgs
    view_rate = 2 * imgs / sec
    achieved = view_rate * flops
    step_ms = sec / tr.steps_per_epoch * 1e3
    e_ms = eig_ms(cfg.proj_out, dev)
    out = dict(device=(torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"), backbone=backbone,
               width=width, method=method, learner=tr.learner_impl, ema=ema, batch=tr.batch, images=imgs,
               bf16=bf16, channels_last=channels_last, compile=compile,
               s_per_epoch_measured=sec, s_per_50k_epoch=s50k, images_per_s=imgs / sec, view_images_per_s=view_rate,
               gflop_per_view_image=flops / 1e9, achieved_tflops=achieved / 1e12, fraction_of_peak=achieved / PEAK_FLOPS,
               step_ms=step_ms, eig_ms=e_ms, eig_calls_per_step=2 if cfg.symmetric else 1,
               eig_fraction_of_step=(2 if cfg.symmetric else 1) * e_ms / step_ms,
               warmup_epoch_s=warm["epoch_time_s"],
               target_s_per_epoch=TARGET_S_PER_EPOCH.get(backbone) if width == "full" and dev.type == "cuda" else None)
    if baseline:
        w = workers if workers is not None else max(0, min(15, (os.cpu_count() or 1) - 1))
        b = lightly_style(cfg, ds.to("cpu"), w)
        out["lightly_style"] = b
        out["speedup_vs_lightly_style"] = b["s_per_50k_epoch"] / s50k
    out["speedup_vs_lightly_anchor"] = LIGHTLY_H100_S_PER_EPOCH / s50k if dev.type == "cuda" else None
    return out
