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

from ..files import atomic_write
from ..predictors import eigen_predictor_kernel
from . import augment as aug
from .data import ImageDataset
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
    eigen_predictor_kernel(C, 0.5, 0.1, True, "after")
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        eigen_predictor_kernel(C, 0.5, 0.1, True, "after")
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


def lightly_transforms(views, mean, std):
    """lightly's own ``SimCLRViewTransform`` for the two views (CIFAR settings: 32 px, jitter
    0.4/0.4/0.2/0.1 p 0.8, grayscale 0.2, no blur unless the view has it), or ``None`` without lightly."""
    try:
        from lightly.transforms import SimCLRViewTransform
    except ImportError:
        return None
    norm = {"mean": list(mean), "std": list(std)}
    return tuple(SimCLRViewTransform(input_size=v.size, cj_prob=v.jitter_p, cj_strength=1.0, cj_bright=v.brightness,
                                     cj_contrast=v.contrast, cj_sat=v.saturation, cj_hue=v.hue, min_scale=v.scale[0],
                                     random_gray_scale=v.gray_p, gaussian_blur=v.blur_p, hf_prob=v.flip_p,
                                     normalize=norm) for v in views)


def lightly_style(cfg: TrainConfig, ds: ImageDataset, workers: int, batches: int = 30) -> dict:
    """The lightly-style pipeline: the same model and learner fed by lightly's ``SimCLRViewTransform``
    (torchvision transforms on PIL images; :func:`ncspec.reference.vision.augment.pil_pipeline`, the same
    recipe, without lightly) in DataLoader workers, bf16 autocast, eager."""
    from dataclasses import replace
    tr = Trainer(replace(cfg, compile=False, channels_last=False, bf16=cfg.device != "cpu" and cfg.bf16), dataset=ds)
    x = ds.x_train.permute(0, 2, 3, 1).contiguous().numpy()
    ts = lightly_transforms(tr.views, tr.mean, tr.std)
    t1, t2 = ts if ts is not None else (aug.pil_pipeline(v) for v in tr.views)
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
                s_per_50k_epoch=sec_per_step * 50_000 / tr.batch,
                transforms="lightly.transforms.SimCLRViewTransform" if ts is not None else "torchvision (pil_pipeline)")


def bench(*, backbone="resnet18", method="simsiam", batch=512, n=50_000, epochs=2, device="auto",
          bf16=True, channels_last=True, compile=True, compile_backend="inductor", width="full", learner="auto",
          ema=False, proj_hidden=2048, proj_out=256, baseline=False, workers=None, dataset: ImageDataset | None = None,
          baseline_batches: int = 30, log=print) -> dict:
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
               gflop_per_view_image=flops / 1e9, achieved_tflops=achieved / 1e12,
               fraction_of_peak=achieved / PEAK_FLOPS,
               step_ms=step_ms, eig_ms=e_ms, eig_calls_per_step=2 if cfg.symmetric else 1,
               eig_fraction_of_step=(2 if cfg.symmetric else 1) * e_ms / step_ms,
               warmup_epoch_s=warm["epoch_time_s"],
               target_s_per_epoch=TARGET_S_PER_EPOCH.get(backbone) if width == "full" and dev.type == "cuda" else None)
    if baseline:
        w = workers if workers is not None else max(0, min(15, (os.cpu_count() or 1) - 1))
        b = lightly_style(cfg, ds.to("cpu"), w, baseline_batches)
        out["lightly_style"] = b
        out["speedup_vs_lightly_style"] = b["s_per_50k_epoch"] / s50k
    out["speedup_vs_lightly_anchor"] = LIGHTLY_H100_S_PER_EPOCH / s50k if dev.type == "cuda" else None
    return out


# --- the GPU acceptance: one prepared command, one JSON ----------------------------------------------

ACCEPTANCE_SCHEMA = "ncspec.acceptance/1"
ACCEPTANCE_LIMIT_S = 540.0      # the whole command on one H100/H200: ≤ 9 minutes
#: the targets, recorded beside the figures: (figure, comparison, bound)
ACCEPTANCE_TARGETS = {
    "resnet18_s_per_50k_epoch": ("<=", 0.85),
    "resnet18_speedup_vs_lightly_style": (">=", 10.0),
    "vgg11_s_per_50k_epoch": ("<=", 0.5),
    "directpred_eig_fraction_of_step": ("<=", 0.10),
    "wall_time_s": ("<=", ACCEPTANCE_LIMIT_S),
}


def _size(dry_run: bool) -> dict:
    """Full size on the GPU; a tiny model on a few hundred images on the CPU (plumbing only)."""
    if dry_run:
        return dict(n=64, batch=32, epochs=1, device="cpu", width="tiny", proj_hidden=64, proj_out=32,
                    bf16=False, channels_last=False, compile=False, compile_backend="eager", baseline_batches=2)
    return dict(n=50_000, batch=512, epochs=2, device="cuda", width="full", proj_hidden=2048, proj_out=256,
                bf16=True, channels_last=True, compile=True, compile_backend="inductor", baseline_batches=30)


def _target_rows(figures: dict) -> dict:
    rows = {}
    for key, (op, bound) in ACCEPTANCE_TARGETS.items():
        v = figures.get(key)
        met = None if v is None else (v <= bound if op == "<=" else v >= bound)
        rows[key] = dict(measured=v, target=f"{op} {bound}", met=met)
    return rows


def ddp_smoke(backend: str, steps: int = 3) -> dict:
    """Inside ``torchrun``: a process group on ``backend`` (NCCL on the GPU), a small CIFAR ResNet-18 under
    DDP for a few SGD steps, an all-reduce checked against the world size."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from .models import make_encoder
    dist.init_process_group(backend=backend)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if backend == "nccl" else torch.device("cpu")
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.manual_seed(0)
        net = make_encoder("resnet18", 64, 32, "tiny").to(dev)
        model = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(16, 3, 32, 32, device=dev)
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            model(x).pow(2).mean().backward()
            opt.step()
            _sync(dev)
            times.append(time.perf_counter() - t)
        one = torch.ones((), device=dev)
        dist.all_reduce(one)
        nccl = ".".join(map(str, torch.cuda.nccl.version())) if backend == "nccl" else None
        return dict(ok=bool(float(one) == world), backend=backend, world_size=world, rank=rank,
                    step_ms=1e3 * statistics.median(times), nccl_version=nccl)
    finally:
        dist.destroy_process_group()


def _run_ddp_smoke(out: str, dry_run: bool, log) -> dict:
    import subprocess
    import sys
    backend = "gloo" if dry_run else "nccl"
    path = os.path.join(out, "ddp_smoke.json")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "ncspec.reference.vision.bench", "--ddp-smoke", backend, path]
    log(f"acceptance: DDP smoke ({backend}): {' '.join(cmd[1:])}")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode or not os.path.exists(path):
        return dict(ok=False, backend=backend, error=(p.stderr or p.stdout)[-2000:])
    import json
    r = json.loads(open(path).read())
    if dry_run:
        r["note"] = "dry run: gloo on the CPU; NCCL needs a GPU (skipped here)"
    return r


def _run_deep_tier(out: str, data: str | None, dry_run: bool, log) -> dict:
    """``ncspec check --tier deep`` in a subprocess: gpu scale on the given images (the CIFAR-10 fragment);
    the dry run uses the smoke scale on a few synthetic images (plumbing only: its claims mean nothing)."""
    import json
    import subprocess
    import sys
    if data is None:
        if not dry_run:
            return dict(skipped="no --data-root: pass the CIFAR-10 fragment (.npz) or a CIFAR-10 root")
        data = os.path.join(out, "dry_images.npz")
        ds = synthetic(256, seed=1)
        np.savez(data, x_train=ds.x_train.permute(0, 2, 3, 1).numpy(), y_train=ds.y_train.numpy(),
                 x_test=ds.x_test[:64].permute(0, 2, 3, 1).numpy(), y_test=ds.y_test[:64].numpy())
    report = os.path.join(out, "deep_tier.json")
    cmd = [sys.executable, "-m", "ncspec.conformance.cli", "check", "--tier", "deep", "--scale",
           "dry" if dry_run else "gpu", "--data-root", data, "--json", report, "--report",
           os.path.join(out, "deep_tier.md"), "--no-progress"]
    log(f"acceptance: deep tier: {' '.join(cmd[2:])}")
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if not os.path.exists(report):
        return dict(exit_code=p.returncode, wall_s=wall, error=(p.stderr or p.stdout)[-2000:])
    r = json.loads(open(report).read())
    deep = [c for c in r["claims"] if c["id"].startswith("N")]
    return dict(exit_code=p.returncode, wall_s=wall, scale="dry" if dry_run else "gpu", data=data,
                summary={c["id"]: c["status"] for c in deep},
                reasons={c["id"]: [t["reason"] for t in c["tests"] if t["reason"]] for c in deep},
                report=report, stdout_tail=p.stdout[-3000:])


def acceptance(out: str, *, data: str | None = None, dry_run: bool = False, log=print) -> dict:
    """The GPU acceptance as one command: every part below, timed, into ``out/acceptance.json``.

    1. CIFAR ResNet-18 SimSiam end to end (augmentation on the device included): s per 50,000-image
       epoch, fraction of the FLOP ceiling, and the lightly-style pipeline (lightly's transforms in
       DataLoader workers, the same model) timed in the same run, with the ratio; this run is also the
       compiled bf16 channels_last step;
    2. VGG11 SimSiam, the same measurements;
    3. DirectPred (ResNet-18): the eigendecomposition's share of a step;
    4. the deep tier at gpu scale on ``data`` (the CIFAR-10 fragment);
    5. a one-GPU ``torchrun`` DDP smoke with NCCL.

    ``dry_run``: every part end to end at a tiny size on the CPU (figures meaningless; the DDP smoke
    on gloo). A part that raises is recorded with its error and the others still run.
    """
    import json
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    if not dry_run and not torch.cuda.is_available():
        raise RuntimeError("the acceptance command needs a CUDA GPU (one H100/H200); on a CPU run it with "
                           "--dry-run, which checks every part end to end at a tiny size.")
    sz = _size(dry_run)
    common = {k: sz[k] for k in ("n", "batch", "epochs", "device", "width", "proj_hidden", "proj_out", "bf16",
                                 "channels_last", "compile", "compile_backend", "baseline_batches")}
    parts: dict = {}

    def part(name, fn):
        t = time.perf_counter()
        log(f"acceptance: {name} …")
        try:
            parts[name] = fn()
        except Exception as e:                      # record and go on: one broken part must not hide the rest
            parts[name] = dict(error=f"{type(e).__name__}: {e}")
        parts[name]["part_wall_s"] = time.perf_counter() - t
        log(f"acceptance: {name} done in {parts[name]['part_wall_s']:.1f} s")

    workers = 1 if dry_run else max(1, min(15, (os.cpu_count() or 2) - 1))
    part("resnet18_simsiam", lambda: bench(backbone="resnet18", method="simsiam", baseline=True, workers=workers,
                                           log=log, **common))
    part("vgg11_simsiam", lambda: bench(backbone="vgg11", method="simsiam", log=log, **common))
    part("directpred_resnet18", lambda: bench(backbone="resnet18", method="directpred", learner="fast", log=log,
                                              **{**common, "epochs": 1}))
    part("deep_tier_gpu_scale", lambda: _run_deep_tier(out, data, dry_run, log))
    part("ddp_smoke", lambda: _run_ddp_smoke(out, dry_run, log))
    r18, vgg, dp = parts["resnet18_simsiam"], parts["vgg11_simsiam"], parts["directpred_resnet18"]
    if dry_run:   # the compiled bf16 channels_last path on its own, tiny (Dynamo traces; no code generation)
        part("compiled_bf16_channels_last_step", lambda: bench(
            backbone="vgg11", method="simsiam", log=log, **{**common, "bf16": True, "channels_last": True,
                                                             "compile": True, "compile_backend": "eager"}))
    else:         # on the GPU, the ResNet-18 run above is that step (inductor)
        parts["compiled_bf16_channels_last_step"] = dict(
            ok="error" not in r18, compile_backend=sz["compile_backend"], step_ms=r18.get("step_ms"),
            first_epoch_s_incl_compilation=r18.get("warmup_epoch_s"), source="resnet18_simsiam")
    wall = time.perf_counter() - t0
    figures = dict(resnet18_s_per_50k_epoch=r18.get("s_per_50k_epoch"),
                   resnet18_fraction_of_peak=r18.get("fraction_of_peak"),
                   lightly_style_s_per_50k_epoch=r18.get("lightly_style", {}).get("s_per_50k_epoch"),
                   resnet18_speedup_vs_lightly_style=r18.get("speedup_vs_lightly_style"),
                   vgg11_s_per_50k_epoch=vgg.get("s_per_50k_epoch"),
                   vgg11_fraction_of_peak=vgg.get("fraction_of_peak"),
                   directpred_eig_fraction_of_step=dp.get("eig_fraction_of_step"),
                   wall_time_s=wall)
    doc = dict(schema=ACCEPTANCE_SCHEMA, dry_run=dry_run, device=r18.get("device", sz["device"]),
               torch=torch.__version__, size=sz, figures=figures,
               targets=None if dry_run else _target_rows(figures),
               note=("dry run on the CPU at a tiny size: the figures say nothing about the targets" if dry_run
                     else "targets on one H100/H200"), parts=parts)
    path = os.path.join(out, "acceptance.json")
    atomic_write(path, json.dumps(doc, indent=1, default=str))
    return doc


if __name__ == "__main__":          # torchrun … -m ncspec.reference.vision.bench --ddp-smoke BACKEND OUT.json
    import json
    import sys
    if len(sys.argv) == 4 and sys.argv[1] == "--ddp-smoke":
        result = ddp_smoke(sys.argv[2])
        if result["rank"] == 0:
            with open(sys.argv[3], "w") as f:
                json.dump(result, f)
        sys.exit(0 if result["ok"] else 1)
    sys.exit("usage: python -m ncspec.reference.vision.bench --ddp-smoke gloo|nccl OUT.json (under torchrun)")
