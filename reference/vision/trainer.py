"""One training run's state and its steps (:class:`Trainer`): the data on the device, the encoder (DDP, compiled),
the learner, the optimisers and their schedules, the online readout, the collapse monitor, evaluation, checkpoints
and the metrics files. :func:`ncspec.reference.vision.train.train` is the recipe that drives it.
"""
from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data_parallel import average_gradients, convert_sync_batchnorm, gather, init_from_env
from ..files import atomic_write
from ..vectors import unit
from . import augment as aug
from .checkpoint import CKPT_SCHEMA, load_checkpoint_file, rng_state, set_rng_state
from .config import TrainConfig, resolve_device, resolve_method_options
from .data import ImageDataset, load_dataset
from .evaluate import embed, knn_accuracy_in_chunks, linear_probe, spectrum_metrics
from .models import make_encoder
from .optim import LARS, lr_at
from .served import EMA, FastClosedForm, Served, build_fast, learner_state, load_learner_state

OWN_TARGET = ("byol", "dino")            # reference learners that deep-copy their encoder for a target
MONITOR_SAMPLES = 256                    # the collapse monitor sees the first 256 samples of an observed batch

# --- small pieces ---------------------------------------------------------------------------

def _mix(*xs: int) -> int:
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


class Pair(nn.Module):
    """Both views through the online encoder in one call (one DDP forward)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, v1: Tensor, v2: Tensor):
        h1, z1 = self.encoder.forward_with_features(v1)
        h2, z2 = self.encoder.forward_with_features(v2)
        return h1, z1, h2, z2


def collapse_monitor(cfg: TrainConfig, total_steps: int):
    """The run's collapse monitor (``ncspec.reference.monitor``): training embeddings of both views every
    ``max(1, total_steps // 100)`` steps, judged at every epoch; kept for ``ncspec diagnose`` when the run writes
    files (``embeddings.pt``)."""
    from ..monitor import CollapseMonitor
    return CollapseMonitor(mode="record", every=max(1, total_steps // 100), method=cfg.method,
                           keep_embeddings=cfg.out is not None)


def move_learner(learner, device: torch.device) -> None:
    """Put what a learner built around its own heads (predictor MLPs, linear predictors) on the training
    device: builders create them on the CPU; the encoder a learner gets (``Served``) is already there."""
    for v in list(vars(learner).values()):
        if isinstance(v, nn.Module) and not isinstance(v, Served):
            v.to(device)
    with torch.no_grad():
        for p in learner.parameters():
            if p.device != device:
                p.data = p.data.to(device)


# --- the trainer ----------------------------------------------------------------------------

class Trainer:
    def __init__(self, cfg: TrainConfig, *, dataset: ImageDataset | None = None, builder=None):
        self.cfg = cfg
        dev = resolve_device(cfg.device)
        self.rank, self.world, local = init_from_env(dev.type)
        if dev.type == "cuda" and self.world > 1:
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        self.device = dev
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        ds = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.data_root, cfg.download,
                                                              unlabeled=cfg.unlabeled)
        self.ds = ds.limit(cfg.limit).to(dev)
        self.mean, self.std = self.ds.mean_std()
        self.x_ssl = self.ds.x_ssl
        n_unl = 0 if self.ds.x_unlabeled is None else self.ds.x_unlabeled.shape[0]
        self.y_ssl = torch.cat([self.ds.y_train, torch.full((n_unl,), -1, dtype=torch.int64, device=dev)])
        self.views = aug.simclr_views(self.ds.name, self.ds.image_size, self.mean, self.std)
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the world size {self.world}.")
        self.batch = min(cfg.batch_size, self.x_ssl.shape[0] // self.world * self.world)
        self.steps_per_epoch = self.x_ssl.shape[0] // self.batch
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)

        enc = make_encoder(cfg.backbone, cfg.proj_hidden, cfg.proj_out, cfg.width, cfg.proj_out_bn)
        if self.world > 1 and cfg.sync_bn:
            enc = convert_sync_batchnorm(enc, dev.type)
        self.encoder = enc.to(dev)
        if cfg.channels_last:
            self.encoder = self.encoder.to(memory_format=torch.channels_last)
        self.ema = EMA(self.encoder, cfg.ema_momentum) if cfg.ema else None
        self.readout = nn.Linear(self.encoder.feature_dim, self.ds.num_classes).to(dev)
        pair: nn.Module = Pair(self.encoder)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            pair = DDP(pair, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.pair = torch.compile(pair, backend=cfg.compile_backend) if cfg.compile else pair
        self.apply_aug = (torch.compile(aug.apply, backend=cfg.compile_backend, dynamic=False)
                          if cfg.compile else aug.apply)

        self.served = Served(self.encoder, cfg.proj_out, bf16=cfg.bf16)
        self.learner, self.learner_impl, self.notes = self._build_learner(builder)
        enc_ids = {id(p) for p in self.encoder.parameters()}
        self.extra_params = [p for p in self.learner.parameters() if id(p) not in enc_ids]
        params = list(self.encoder.parameters()) + self.extra_params
        if cfg.fix_pred_lr and self.extra_params:   # two groups: [encoder (scheduled), learner's own (fixed)]
            params = [dict(params=list(self.encoder.parameters())), dict(params=self.extra_params, fixed_lr=True)]
        base_lr = cfg.lr * self.batch / 256
        if cfg.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        elif cfg.optimizer == "lars":
            self.opt = LARS(params, lr=base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'sgd' or 'lars'.")
        self.base_lr = base_lr
        self.ro_base_lr = cfg.readout_lr * self.batch / 256
        self.ro_opt = torch.optim.SGD(self.readout.parameters(), lr=self.ro_base_lr, momentum=0.9)
        self.warmup = int(round(cfg.warmup_epochs * self.steps_per_epoch))
        self.state = dict(epoch=0, step=0, history=[], spectra=[], warnings=[], status="running")
        self.monitor = collapse_monitor(cfg, self.total_steps)
        self.out = Path(cfg.out) if cfg.out else None
        if self.out and self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)

    # -- construction
    def _build_learner(self, builder):
        cfg, notes = self.cfg, []
        method = cfg.method
        valid = None
        if builder is None:
            from ..methods import METHODS, option_names
            valid = option_names(method) if method in METHODS else None
        opts = resolve_method_options(method, cfg.ema, cfg.method_options, valid=valid)
        self.method_options = opts
        if cfg.ema and method in OWN_TARGET:
            raise ValueError(f"method {method!r} keeps its own EMA target network (momentum option "
                             f"of the learner); drop ema=True (--ema), which adds the trainer's.")
        if builder is None:
            from ..methods import build as builder_ref
            use_fast = cfg.learner == "fast" or (cfg.learner == "auto" and self.device.type == "cuda")
            if use_fast:
                fast = build_fast(method, self.served, cfg.proj_out, **opts)
                if fast is not None:
                    return fast, "fast", notes
                if cfg.learner == "fast":
                    raise ValueError(f"learner='fast' supports simsiam/isoloss/directset/directpred with options "
                                     f"{sorted(FastClosedForm.SUPPORTED)}; got {method!r} {opts}.")
            return builder_ref(method, self.served, cfg.proj_out, **opts), "reference", notes
        try:
            learner = builder(method, self.served, cfg.proj_out, **opts)
        except TypeError as e:   # an adapter's build rejecting an option key
            raise ValueError(f"the adapter's build({method!r}, ...) rejected the options {opts}: {e}") from e
        move_learner(learner, self.device)
        return learner, "adapter", notes

    # -- one optimisation step on this rank's slice of the global batch
    def step(self, v1: Tensor, v2: Tensor, y: Tensor, lr: float, ro_lr: float, m: float | None,
             *, apply: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        dev = self.device.type
        for g in self.opt.param_groups:
            g["lr"] = self.base_lr if g.get("fixed_lr") else lr
        for g in self.ro_opt.param_groups:
            g["lr"] = ro_lr
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            h1, z1, h2, z2 = self.pair(v1, v2)
            t1 = t2 = None
            if self.ema is not None:
                with torch.no_grad():
                    t1, t2 = self.ema.net(v1), self.ema.net(v2)
        z1, z2, t1, t2 = gather(z1), gather(z2), gather(t1), gather(t2)
        entries = [(v1, z1, t1), (v2, z2, t2)]
        self.served.serve(entries, target_view=v2 if self.ema is not None else None)
        loss = self.learner.loss(v1, v2)
        if self.cfg.symmetric:
            self.served.serve(entries, target_view=v1 if self.ema is not None else None)
            loss = 0.5 * (loss + self.learner.loss(v2, v1))
        self.served.serve([])
        logits = self.readout(torch.cat([h1, h2]).detach().float())
        yy = torch.cat([y, y])
        labelled = (yy >= 0).sum()
        ro_loss = F.cross_entropy(logits, yy, ignore_index=-1, reduction="sum") / labelled.clamp_min(1)
        self.opt.zero_grad(set_to_none=True)
        self.ro_opt.zero_grad(set_to_none=True)
        (loss + ro_loss).backward()
        average_gradients(self.extra_params + list(self.readout.parameters()))
        if apply:
            self.opt.step()
            self.ro_opt.step()
            self.learner.after_step()
            if self.ema is not None:
                self.ema.update(self.encoder, m)
        correct = ((logits.argmax(1) == yy) & (yy >= 0)).sum()
        z_std = unit(z1.detach().float()).std(0).mean()   # SimSiam's collapse monitor
        if apply:
            ema = dict(online=self.encoder, target=self.ema.net) if self.ema is not None else {}
            self.monitor.observe(z1.detach()[:MONITOR_SAMPLES], z2.detach()[:MONITOR_SAMPLES],
                                 step=self.state["step"], **ema)
        return loss.detach(), torch.stack([correct, labelled]), z_std

    def views_for(self, epoch: int, s: int, gen: torch.Generator, perm: Tensor):
        """This rank's slice of step ``s``'s global batch, augmented twice, and its labels."""
        B, b, H, W = self.batch, self.batch // self.world, self.x_ssl.shape[-2], self.x_ssl.shape[-1]
        idx = perm[s * B:(s + 1) * B][self.rank * b:(self.rank + 1) * b]
        x = self.x_ssl[idx]
        dtype = torch.bfloat16 if self.cfg.bf16 else torch.float32
        out = []
        for vc in self.views:
            p = aug.sample_params(vc, B, H, W, gen, device=self.device)
            p = {k: v[self.rank * b:(self.rank + 1) * b] for k, v in p.items()}
            out.append(self.apply_aug(x, p, vc, dtype=dtype, channels_last=self.cfg.channels_last))
        return out[0], out[1], self.y_ssl[idx]

    def epoch_generators(self, epoch: int):
        perm = torch.randperm(self.x_ssl.shape[0], generator=torch.Generator().manual_seed(_mix(self.cfg.seed, epoch)))
        gen = torch.Generator(device=self.device).manual_seed(_mix(self.cfg.seed, epoch, 1))
        return perm.to(self.device), gen

    def run_epoch(self, epoch: int, progress=None, task=None) -> dict:
        perm, gen = self.epoch_generators(epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        std_sum = torch.zeros((), device=self.device)
        acc = torch.zeros(2, device=self.device, dtype=torch.int64)
        steps = 0
        for s in range(self.steps_per_epoch):
            if self.state["step"] >= self.total_steps:
                break
            v1, v2, y = self.views_for(epoch, s, gen, perm)
            k = self.state["step"]
            lr = lr_at(k, self.total_steps, self.warmup, self.base_lr)
            ro_lr = lr_at(k, self.total_steps, 0, self.ro_base_lr)
            m = self.ema.momentum(k, self.total_steps) if self.ema is not None else None
            loss, c, z_std = self.step(v1, v2, y, lr, ro_lr, m)
            loss_sum += loss
            std_sum += z_std
            acc += c
            steps += 1
            self.state["step"] += 1
            if progress is not None:
                progress.advance(task)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        return dict(epoch=epoch + 1, step=self.state["step"], loss=float(loss_sum) / max(1, steps),
                    readout_train_acc=float(acc[0]) / max(1, float(acc[1])),
                    train_normalized_std=float(std_sum) / max(1, steps),
                    lr=lr_at(max(0, self.state["step"] - 1), self.total_steps, self.warmup, self.base_lr),
                    ema_momentum=(self.ema.momentum(self.state["step"], self.total_steps) if self.ema else None),
                    epoch_time_s=dt, images_per_s=steps * self.batch / dt if dt > 0 else None)

    # -- evaluation (rank 0)
    def evaluate(self, probe: bool = False) -> dict:
        cfg, ds = self.cfg, self.ds
        kw = dict(bf16=cfg.bf16, channels_last=cfg.channels_last)
        if not cfg.eval_knn and not probe:      # the spectrum only: embed just the images it uses
            ftr, ztr = embed(self.encoder, ds.x_train[:cfg.spectrum_samples], self.mean, self.std, **kw)
            out = {}
        else:
            ftr, ztr = embed(self.encoder, ds.x_train, self.mean, self.std, **kw)
            fte, _ = embed(self.encoder, ds.x_test, self.mean, self.std, **kw)
            out = dict(knn_acc=knn_accuracy_in_chunks(ftr, ds.y_train, fte, ds.y_test, ds.num_classes, cfg.knn_k,
                                                      cfg.knn_t))
            with torch.no_grad():
                out["readout_acc"] = float((self.readout(fte).argmax(1) == ds.y_test).float().mean())
        spec = spectrum_metrics(ztr[:cfg.spectrum_samples])
        from ..metrics import rankme
        out["feature_rankme"] = float(rankme(ftr[:cfg.spectrum_samples].double()))
        if probe:
            out["probe_acc"] = linear_probe(ftr, ds.y_train, fte, ds.y_test, ds.num_classes, cfg.probe_iters)
        return out, spec

    @torch.no_grad()
    def evaluate_initial(self, batches: int = 8) -> tuple[dict, dict]:
        """``evaluate()`` of the untrained network with its BatchNorm running statistics first set
        to the (cumulative) batch statistics of ``batches`` unaugmented training batches — at
        initialisation they are (0, 1), which makes every eval-mode embedding share one large common
        component (‖s‖ ≈ 1) that says nothing about the network. The statistics are put back
        afterwards, so training is the same with and without this evaluation."""
        bns = [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [(m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        was = self.encoder.training
        self.encoder.train()
        for i in range(min(batches, max(1, self.ds.x_train.shape[0] // self.batch))):
            x = self.ds.x_train[i * self.batch:(i + 1) * self.batch]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
                self.encoder(aug.normalize(x, self.mean, self.std, channels_last=self.cfg.channels_last))
        self.encoder.train(was)
        try:
            return self.evaluate()
        finally:
            for m, (momentum, state) in zip(bns, saved):
                m.momentum = momentum
                m.load_state_dict(state)

    # -- persistence
    def checkpoint(self) -> dict:
        return dict(schema=CKPT_SCHEMA, config=self.cfg.to_dict(), state=self.state,
                    encoder=self.encoder.state_dict(), ema=self.ema.net.state_dict() if self.ema else None,
                    readout=self.readout.state_dict(), opt=self.opt.state_dict(), ro_opt=self.ro_opt.state_dict(),
                    learner=learner_state(self.learner), rng=rng_state(self.device))

    def save_checkpoint(self) -> None:
        ck = self.checkpoint()
        atomic_write(self.out / "ckpt.pt", lambda p: torch.save(ck, p), keep_previous=True)

    def load_checkpoint(self, path: Path) -> None:
        ck = load_checkpoint_file(path, map_location=self.device)
        mine, theirs = self.cfg.to_dict(), ck["config"]
        allowed = {"resume", "out", "progress", "device", "data_root", "download", "epochs", "compile",
                   "compile_backend", "eval_every", "checkpoint_every"}
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if k not in allowed and theirs.get(k) != v}
        if diff:
            raise ValueError(f"cannot resume from {path}: the configuration differs in {diff} "
                             f"(checkpoint value, requested value).")
        if theirs["epochs"] != mine["epochs"]:
            raise ValueError(f"cannot resume from {path} with epochs={mine['epochs']}: the run was "
                             f"scheduled for {theirs['epochs']} epochs (the learning-rate schedule depends on it).")
        self.encoder.load_state_dict(ck["encoder"])
        if self.ema is not None:
            self.ema.net.load_state_dict(ck["ema"])
        self.readout.load_state_dict(ck["readout"])
        self.opt.load_state_dict(ck["opt"])
        self.ro_opt.load_state_dict(ck["ro_opt"])
        load_learner_state(self.learner, ck["learner"])
        self.state = ck["state"]
        set_rng_state(ck["rng"], self.device)

    def write_metrics(self, final: dict | None = None) -> dict:
        doc = dict(schema="ncspec.vision/1", config=self.cfg.to_dict(), method_options_used=self.method_options,
                   learner=self.learner_impl,
                   notes=self.notes, device=str(self.device), world_size=self.world,
                   batch_size=self.batch, steps_per_epoch=self.steps_per_epoch, status=self.state["status"],
                   history=self.state["history"], spectra=self.state["spectra"],
                   warnings=self.state["warnings"], initial=self.state.get("initial"), final=final or {},
                   monitor=self.monitor.summary())
        if self.out is None:
            return doc
        if self.monitor.keep_embeddings:
            atomic_write(self.out / "embeddings.pt", self.monitor.save)
        atomic_write(self.out / "metrics.json", lambda p: p.write_text(json.dumps(doc, indent=1)))
        keys = list(dict.fromkeys(k for row in self.state["history"] for k in row))

        def write_csv(p):
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, keys)
                w.writeheader()
                w.writerows(self.state["history"])
        atomic_write(self.out / "metrics.csv", write_csv)
        return doc
