"""Data-parallel plumbing: process-group setup, a differentiable gather, a backend-agnostic
synchronised BatchNorm, and gradient averaging for parameters outside DDP. Shared by the vision
stack and the ``distributed`` option of the linear/toy learners (:mod:`ncspec.reference.global_batch`).

The learner sees the *global* batch of embeddings (gathered with gradient), so a closed-form
predictor's correlation, a loss averaged over the batch and a contrastive learner's negatives are
those of the single-process run on the global batch. With every rank computing the same global
loss ``L``, backward through the gather sums ``W`` copies of ``∂L/∂z_r`` and DDP's average divides
by ``W``: the update is ``∂L/∂θ`` exactly (the "distributed gradient off by 1/world_size" bug
class is what the tests check against).
"""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
from torch import Tensor, nn


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device_type: str) -> tuple[int, int, int]:
    """Join the process group torchrun (or :func:`spawn`) describes in the environment.

    Returns ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` without a launcher.
    """
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        rank, ws = world()
        parts = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        g = g.contiguous().clone()
        dist.all_reduce(g)                        # Σ over ranks of ∂L_q/∂(global batch)
        return g[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


class _AllReduceSum(torch.autograd.Function):
    """``Σ_ranks x`` with gradient ``Σ_ranks g`` (every rank's loss depends on the sum)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        g = g.contiguous().clone()
        dist.all_reduce(g)
        return g


def gather(x: Tensor | None) -> Tensor | None:
    """Concatenate ``x`` (B, ...) over ranks in rank order, keeping the gradient path."""
    if x is None or world()[1] == 1:
        return x
    if not x.requires_grad:
        parts = [torch.empty_like(x) for _ in range(world()[1])]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)
    return _Gather.apply(x)


def average_gradients(params) -> None:
    """All-reduce (mean) the gradients of parameters that DDP does not own."""
    ws = world()[1]
    if ws == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(ws)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch with differentiable all-reduces (any backend, e.g. gloo
    on CPU, where ``nn.SyncBatchNorm`` refuses to run). Same statistics and running-average rule
    as ``nn.BatchNorm`` on the concatenated batch."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or world()[1] == 1:
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        xf = x.to(torch.promote_types(x.dtype, torch.float32))   # bf16/fp16 upcast; float64 kept
        n_local = torch.tensor(float(xf.numel() // xf.shape[1]), device=x.device)
        stats = torch.cat([xf.sum(dims), xf.pow(2).sum(dims), n_local.view(1)])
        stats = _AllReduceSum.apply(stats)
        C = x.shape[1]
        n = stats[-1]
        mean = stats[:C] / n
        var = stats[C:2 * C] / n - mean.pow(2)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        shape = [1, C] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """``nn.SyncBatchNorm`` on CUDA; :class:`GlobalBatchNorm` elsewhere."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, device_type))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(rank: int, world_size: int, port: int, fn, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        fn(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(fn, args=(), nprocs: int = 2) -> None:
    """Run ``fn(*args)`` in ``nprocs`` processes with the environment torchrun would set."""
    import torch.multiprocessing as mp
    mp.spawn(_spawned, args=(nprocs, free_port(), fn, args), nprocs=nprocs, join=True)
