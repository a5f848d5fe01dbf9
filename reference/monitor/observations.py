"""Statistics of one observation of the collapse monitor: device tensors queued by ``observe`` (no host sync), moved
to the host in one transfer and turned into spectra in float64 there."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import Tensor

from ..metrics import (
    center_decomposition,
    normalized_std,
    participation_ratio_of_eigenvalues,
    rankme_of_singular_values,
)
from ..theory.centervector import invariance, unbiased_moments
from ..vectors import unit


def _gram(x: Tensor) -> Tensor:
    """The smaller of ``xᵀx`` and ``xxᵀ`` (same non-zero eigenvalues), in float32 or wider."""
    return x.transpose(-1, -2) @ x if x.shape[-2] >= x.shape[-1] else x @ x.transpose(-1, -2)


def _check_embeddings(z1, z2) -> tuple[Tensor, Tensor | None]:
    for name, z in (("z1", z1), ("z2", z2)):
        if z is None:
            continue
        if not isinstance(z, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of embeddings (B, M), got {type(z).__name__}; "
                            f"pass the projector's output, e.g. monitor.observe(z1, z2).")
        if z.dim() != 2:
            raise ValueError(f"{name} must be a batch of embeddings (B, M), got shape {tuple(z.shape)}; "
                             + ("flatten the feature map first, z.flatten(1)." if z.dim() > 2 else
                                "pass a batch of several samples, not one vector."))
        if z.shape[0] < 2:
            raise ValueError(f"{name} holds {z.shape[0]} sample(s); the monitor needs a batch of B >= 2 "
                             f"(statistics over the batch); observe whole batches.")
        if not z.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {z.dtype}; pass the embeddings, not labels.")
    if z2 is not None and z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must be the two views of the same batch, shapes (B, M), got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}.")
    if z2 is not None and z1.device != z2.device:
        raise ValueError(f"z1 and z2 live on different devices ({z1.device}, {z2.device}); move one.")
    return z1, z2


@torch.no_grad()
def observation(z1: Tensor, z2: Tensor | None = None, *, predictor: Tensor | None = None) -> dict:
    """Device tensors of one observation (no host sync): the queue entry :class:`CollapseMonitor` keeps."""
    z1, z2 = _check_embeddings(z1, z2)
    dt = torch.promote_types(z1.dtype, torch.float32)
    z1 = z1.detach().to(dt)
    views = z1.unsqueeze(0) if z2 is None else torch.stack([z1, z2.detach().to(dt)])     # (V, B, M)
    V, B, M = views.shape
    s, _ = center_decomposition(views)                                                     # s (M,)
    u = unit(views).reshape(V * B, M)                                                     # ẑ pooled
    u_mean = u.mean(0)
    uc = u - u_mean
    obs = dict(
        center_norm=s.norm(),
        normalized_std=normalized_std(views).mean(),
        z_norm=views.norm(dim=-1).mean(),
        nonfinite=(~torch.isfinite(views)).sum(),
        gram_raw=_gram(z1),                                          # RankMe as published: raw z of view 1
        gram_centred=_gram(uc) / (V * B),                            # eigenvalues of the centred Cov(ẑ)
        u_mean=u_mean,                                               # E ẑ: E ẑẑᵀ from Cov(ẑ) and E ẑ on the host
        n_samples=V * B, batch=B, dim=M,
        # how far view 1 is from batch-standardised features (mean 0, variance 1: a BatchNorm without affine
        # parameters at the output, as SimSiam's and lightly's projectors have)
        standardized_dev=torch.maximum(z1.mean(0).abs().max(), (z1.var(0, unbiased=False) - 1).abs().max()),
    )
    obs.update(_redundancy_stats(views))
    if V * B < M:   # the Gram is taken over samples: E ẑẑᵀ's spectrum needs (ẑ − E ẑ)·E ẑ as well
        obs["uc_dot_mean"] = uc @ u_mean
    if V == 2:
        s_sq_u, r_u = unbiased_moments(views)
        obs.update(center_sq_u=s_sq_u, residual_sq_u=r_u, invariance=(u[:B] - u[B:]).pow(2).sum(-1).mean(),
                   invariance_j1=invariance(s_sq_u, r_u))
    if predictor is not None:
        W = predictor.detach().to(dt)
        if W.shape != (M, M):
            raise ValueError(f"predictor must be the (M, M) = ({M}, {M}) matrix W_p of a linear or closed-form "
                             f"predictor, got shape {tuple(W.shape)}; leave it out for an MLP predictor.")
        F = z1.transpose(0, 1) @ z1 / B
        comm = F @ W - W @ F
        obs.update(predictor=0.5 * (W + W.transpose(0, 1)),
                   predictor_alignment=comm.norm() / (F.norm() * W.norm()).clamp_min(1e-30))
    return obs


def _redundancy_stats(views: Tensor) -> dict:
    """What the redundancy-reduction losses act on, on raw z (V, B, M), per view then averaged over the views:

    * ``feature_std``: mean_j √(Var_B z_j + 10⁻⁴) (unbiased), the std VICReg's variance term
      ``v(z) = mean_j relu(γ − √(Var z_j + ε))`` holds at γ = 1 (Bardes et al., ICLR 2022, eq. 1);
    * ``redundancy``: the mean squared off-diagonal entry of the features' correlation matrix
      ``R = aᵀa/B`` (a: batch-standardised z), ``(‖R‖²_F − Σ_j R_jj²)/(M(M − 1))``: what Barlow Twins'
      redundancy-reduction term ``λ Σ_{i≠j} C_ij²`` drives to 0 (Zbontar et al., ICML 2021, eq. 1), 1 when every
      feature is the same up to sign, about 1/B for independent features. ``‖aᵀa‖_F = ‖aaᵀ‖_F``: the Gram is
      taken on the smaller side."""
    V, B, M = views.shape
    std = (views.var(-2) + 1e-4).sqrt()                                          # (V, M)
    sd = views.std(-2, unbiased=False)
    a = (views - views.mean(-2, keepdim=True)) / sd.clamp_min(1e-12).unsqueeze(-2)
    a = torch.where((sd > 0).unsqueeze(-2), a, torch.zeros_like(a))              # a constant feature: no correlation
    R2 = torch.stack([_gram(a[v]).pow(2).sum() for v in range(V)]) / B**2           # ‖R‖²_F per view
    diag = (a.pow(2).sum(-2) / B).pow(2).sum(-1)                                    # Σ_j R_jj² per view
    red = ((R2 - diag) / max(M * (M - 1), 1)).mean()
    return dict(feature_std=std.mean(), redundancy=red)


def standardized(st: dict, tol: float = 0.05) -> bool:
    """Whether every feature of view 1's ``z`` has batch mean within ``tol`` of 0 and variance within ``tol`` of 1:
    the output of a BatchNorm without affine parameters (SimSiam's and lightly's projection heads)."""
    return st.get("standardized_dev", float("inf")) < tol


def standardized_floor(st: dict, tol: float = 0.05) -> float:
    """The smallest ``1 − ‖s‖²`` embeddings with batch-standardised features can reach: ``4(B − 1)/B²``, else 0.

    Each feature of ``z`` having mean 0 over the batch forbids one common point; the most collapsed batch puts
    B − 1 samples on one ray and one on the opposite ray (rank-1 ``z = u wᵀ`` with ``mean u = 0``), so
    ``‖s‖ ≤ 1 − 2/B``. Applied when every feature's batch mean is within ``tol`` of 0 and variance within ``tol``
    of 1 (a BatchNorm without affine parameters at the output: SimSiam's and lightly's projection heads).
    """
    if not standardized(st, tol):
        return 0.0
    B = st["batch"]
    return 4 * (B - 1) / B**2


def _params(x) -> list[Tensor]:
    if isinstance(x, torch.nn.Module):
        return [p.detach() for p in x.parameters()]
    return [p.detach() for p in x]


@torch.no_grad()
def ema_lag(online, target) -> tuple[Tensor, Tensor, bool]:
    """``(‖θ − ξ‖/‖θ‖, Σξ, same)``: the EMA target's relative lag (C2), a fingerprint of ξ that changes whenever
    ξ does, and whether the target shares its parameters' storage with the online network."""
    on, tg = _params(online), _params(target)
    if len(on) != len(tg) or any(a.shape != b.shape for a, b in zip(on, tg)):
        raise ValueError("online and target must hold the same parameters in the same order (the EMA target is a "
                         "copy of the online network); pass e.g. online=model.backbone, "
                         "target=model.backbone_momentum.")
    same = all(a.data_ptr() == b.data_ptr() for a, b in zip(on, tg))
    diff = torch.stack([(a.double() - b.double()).pow(2).sum() for a, b in zip(on, tg)]).sum()
    norm = torch.stack([a.double().pow(2).sum() for a in on]).sum()
    fingerprint = torch.stack([b.double().sum() for b in tg]).sum()
    return (diff / norm.clamp_min(1e-300)).sqrt(), fingerprint, same


# --- on the host ------------------------------------------------------------------------------------

@contextmanager
def one_thread():
    """Run the block with one intra-op CPU thread, then restore the count. The host statistics are many small
    float64 eigendecompositions (at most ``min(2B, M)``-square) that gain nothing from threads, and on a busy machine
    threads that wait for one another made them 20–200× slower (a 256-square spectrum: 6 ms on one thread, 0.3–2 s on
    two, on the shared 2-core dev machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@one_thread()
def _to_host(pending: list[dict]) -> list[dict]:
    """One device→host transfer of the queued tensors, then the spectra in float64 on the host (one thread)."""
    flat, index = [], []
    for i, obs in enumerate(pending):
        for k, v in obs.items():
            if isinstance(v, Tensor):
                flat.append(v.reshape(-1).double())
                index.append((i, k, tuple(v.shape)))
    host = torch.cat(flat).cpu() if flat else torch.empty(0)
    out = [{k: v for k, v in obs.items() if not isinstance(v, Tensor)} for obs in pending]
    at = 0
    for i, k, shape in index:
        n = math.prod(shape)
        out[i][k] = host[at:at + n].reshape(shape)
        at += n
    return [_host_stats(o) for o in out]


def _host_stats(o: dict) -> dict:
    st = {k: float(v) for k, v in o.items() if isinstance(v, Tensor) and v.dim() == 0}
    st.update({k: v for k, v in o.items() if not isinstance(v, Tensor)})
    st["nonfinite"] = int(st["nonfinite"])
    if st["nonfinite"] or not torch.isfinite(o["gram_raw"]).all() or not torch.isfinite(o["gram_centred"]).all():
        st["nonfinite"] = max(st["nonfinite"], 1)
        st.update(total_var=float("nan"), line_var=float("nan"), effective_rank=float("nan"),
                  participation_ratio=float("nan"), rankme=float("nan"), eig_cov=[], max_rank=0)
        return st
    eig_raw = torch.linalg.eigvalsh(o["gram_raw"]).flip(0).clamp_min(0)
    eig_cov = torch.linalg.eigvalsh(o["gram_centred"]).flip(0).clamp_min(0)
    st["rankme"] = float(rankme_of_singular_values(eig_raw.sqrt()))
    st["effective_rank"] = float(rankme_of_singular_values(eig_cov.sqrt())) if eig_cov.sum() > 0 else 0.0
    st["participation_ratio"] = float(participation_ratio_of_eigenvalues(eig_cov))
    st["total_var"] = float(eig_cov.sum())                         # = 1 − ‖s‖² (trace of Cov(ẑ), pooled)
    # mean squared distance of ẑ from the nearest line through the origin, 1 − λ_max(E ẑẑᵀ) ≤ 1 − ‖s‖²
    st["line_var"] = max(0.0, 1.0 - float(torch.linalg.eigvalsh(_second_moment(o))[-1]))
    st["max_rank"] = min(st["dim"], int(o["n_samples"]) - 1)     # rank bound of the centred pooled batch
    st["eig_cov"] = eig_cov.tolist()
    if "predictor" in o:
        omega = torch.linalg.eigvalsh(o["predictor"]).flip(0)
        st["predictor_eig"] = omega.tolist()
        st["predictor_fixed_point_gap"] = float((omega - 1).abs().max())   # H1: ω_m → 1 at the fixed point
    return st


def _second_moment(o: dict) -> Tensor:
    """E ẑẑᵀ (uncentred), or the sample Gram with the same non-zero spectrum, from the centred Gram and E ẑ = μ:
    (M, M): Cov(ẑ) + μμᵀ; (n, n) with ẑ_i = c_i + μ: [CCᵀ + a1ᵀ + 1aᵀ + ‖μ‖² 11ᵀ]/n, a = Cμ."""
    G, mu = o["gram_centred"], o["u_mean"]
    if "uc_dot_mean" not in o:
        return G + torch.outer(mu, mu)
    n = G.shape[-1]
    a, one = o["uc_dot_mean"], torch.ones(n, dtype=G.dtype)
    return G + (torch.outer(a, one) + torch.outer(one, a) + mu.dot(mu) * torch.outer(one, one)) / n


_SCALARS = ("step", "center_norm", "total_var", "line_var", "normalized_std", "live_dims", "max_rank", "effective_rank",
            "participation_ratio", "rankme",
            "z_norm", "center_sq_u", "residual_sq_u", "invariance", "invariance_j1", "predictor_alignment",
            "predictor_fixed_point_gap", "ema_lag", "nonfinite", "dim", "batch", "standardized_dev", "loss",
            "rank_ratio", "feature_std", "redundancy", "growth_z", "growth_loss", "near")


def _summary(st: dict) -> dict:
    return {k: st[k] for k in _SCALARS if k in st} | ({"eig_cov": st["eig_cov"]} if "eig_cov" in st else {})
