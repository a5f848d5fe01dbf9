"""Batch statistics over a process group for the linear/toy learners (option ``distributed=True``).

Methods whose loss uses batch statistics — Barlow Twins' cross-correlation, VICReg's variance
and covariance, SimCLR's negatives, DirectPred's correlation estimate — must see the *global*
batch when trained data-parallel, or their gradient is not the single-process one. The reference
does it the simplest exact way: the encoder's output is gathered over ranks *with* its gradient
(:func:`ncspec.reference.data_parallel.gather`), so every rank evaluates the same global loss ``L``.
Backward through the gather sums the ranks' ``∂L/∂z_r``; DDP's (or
:func:`~ncspec.reference.data_parallel.average_gradients`') mean over ranks then leaves exactly ``∂L/∂θ``.
"""
from __future__ import annotations

from torch import Tensor, nn

from .data_parallel import gather, world


def gather_batch(z: Tensor) -> Tensor:
    """Concatenate ``z`` (..., B, M) over ranks along the batch dimension ``-2``, with gradient."""
    if world()[1] == 1:
        return z
    return gather(z.movedim(-2, 0).contiguous()).movedim(0, -2)


class GatheredEncoder(nn.Module):
    """``encoder`` followed by the gather: views of the local shard → embeddings of the global batch.

    ``gather`` is an attribute so a broken variant can be swapped in (the mutant
    ``gather_without_autograd`` of :mod:`ncspec.conformance.mutants.catalogue`).
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.inner = encoder
        self.gather = gather_batch

    def forward(self, x: Tensor) -> Tensor:
        return self.gather(self.inner(x))

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)   # e.g. LinearEncoder.W, MLP.replicas
