"""Vector helpers shared by the losses, methods, metrics and the closed-form theory."""
from __future__ import annotations

from torch import Tensor


def unit(z: Tensor, eps: float = 1e-12) -> Tensor:
    """``ẑ = z / ‖z‖`` along the last dimension (``F.normalize`` with the same ``eps``): (..., M) → (..., M)."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(eps)
