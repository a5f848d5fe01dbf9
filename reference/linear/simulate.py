"""One simulator for every claim: gradient steps on a learner, batched over replicas.

``simulate`` runs plain gradient descent ``W ← W − η ∇_W loss`` on a learner
(any object of the adapter protocol) around a :class:`LinearEncoder`, drawing
views from ``views(step)``. With :func:`population_views` this is the Euler
discretisation of the expected-gradient flow; with :func:`gaussian_views` it is
minibatch SGD. It records what the claims measure: the eigenvalues of the
population correlation ``C = (1+σ²) W Wᵀ``, ``‖W‖²_F`` and ``‖∇_W‖²_F``.

The same loop trains a *nonlinear* encoder on the same data (Halvagal et al. 2022, appendix
Fig. 2: a ReLU network): any replica-batched module whose parameters carry the
replica dimension first (e.g. :class:`ncspec.reference.encoders.MLPEncoder`),
with ``eval_views`` — a fixed batch of views on which ``C = E[z zᵀ]`` and the
covariance ``Σ = C − μμᵀ`` (``μ = E[z]``) are estimated at every record, since
there is no closed form. Every parameter then takes the step ``θ ← θ − η ∇_θ``.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import _checks
from .data import second_moment
from .model import LinearEncoder


@dataclass
class Trajectory:
    """Recorded quantities; ``steps`` (K,), per-replica arrays (K, S, ...)."""

    steps: Tensor        # (K,) step index of each record
    t: Tensor            # (K,) time η·step of the gradient flow
    eig_C: Tensor        # (K, S, M) ascending eigenvalues of C = W (I + X′) Wᵀ
    sq_norm: Tensor      # (K, S)   ‖W‖²_F
    grad_sq: Tensor      # (K, S)   ‖∇_W loss‖²_F of the step taken from that record
    W: Tensor | None     # (S, M, N) final weights (linear encoder; None for a nonlinear one)
    probes: dict         # name → (K, ...) tensors recorded by ``probe(learner, encoder)``
    eig_cov: Tensor | None = None   # (K, S, M) ascending eigenvalues of Σ = C − μμᵀ (nonlinear encoder)


_NO_PATH = ("the loss has no gradient path to the encoder weights W; did you detach both "
            "branches? The online branch must keep its gradient (only the target may be SG'd)")


def _check_protocol(learner, encoder, views, eval_views) -> None:
    missing = [m for m in ("loss", "after_step") if not callable(getattr(learner, m, None))]
    if missing:
        raise TypeError(f"learner must follow the adapter protocol (loss(view1, view2) -> scalar, "
                        f"after_step()), got {type(learner).__name__} without "
                        f"{', '.join(missing)}; build one with ncspec.reference.methods.build(...).")
    if eval_views is not None:
        _check_nonlinear(encoder, eval_views)
    else:
        _check_linear(encoder)
    if not callable(views):
        raise TypeError(f"views must be a callable step -> (view1, view2), got "
                        f"{type(views).__name__}; e.g. views=lambda k: (x1, x2).")


def _check_linear(encoder) -> None:
    W = getattr(encoder, "W", None)
    if not isinstance(W, Tensor) or W.dim() != 3:
        got = (f"W of shape {tuple(W.shape)}" if isinstance(W, Tensor)
               else f"{type(encoder).__name__} without a tensor W")
        raise TypeError(f"encoder must be a LinearEncoder with weights W of shape (S, M, N), got "
                        f"{got}; wrap the weights with LinearEncoder(W), or pass eval_views= to train a "
                        f"nonlinear encoder.")
    if not W.requires_grad:
        raise ValueError("encoder.W must require grad (simulate differentiates the loss w.r.t. "
                         "it), got requires_grad=False; call encoder.W.requires_grad_(True).")


def _check_nonlinear(encoder, eval_views) -> None:
    if not isinstance(encoder, torch.nn.Module):
        raise TypeError(f"with eval_views the encoder must be an nn.Module (e.g. MLPEncoder), got "
                        f"{type(encoder).__name__}.")
    S = getattr(encoder, "replicas", None)
    params = [p for p in encoder.parameters() if p.requires_grad]
    if not isinstance(S, int) or not params or any(p.dim() == 0 or p.shape[0] != S for p in params):
        raise TypeError(f"a nonlinear encoder must carry S replicas (attribute replicas) on the first "
                        f"dimension of every trainable parameter, got {type(encoder).__name__} with "
                        f"replicas={S!r}; use ncspec.reference.encoders.MLPEncoder(..., replicas=S).")
    _checks.tensor("eval_views", eval_views, min_dim=2, layout="(B, N) or (S, B, N)")


def _spectra(z: Tensor) -> tuple[Tensor, Tensor]:
    """Ascending eigenvalues of ``C = E[zzᵀ]`` and of ``Σ = C − μμᵀ`` over the batch dimension."""
    B = z.shape[-2]
    C = z.transpose(-1, -2) @ z / B
    mu = z.mean(-2)
    return torch.linalg.eigvalsh(C), torch.linalg.eigvalsh(C - mu.unsqueeze(-1) * mu.unsqueeze(-2))


def _per_replica_sq(tensors) -> Tensor:
    """``Σ ‖t‖²`` per replica (first dimension) over a list of tensors."""
    return sum(t.pow(2).flatten(1).sum(-1) for t in tensors)


def _check_views(pair) -> None:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(isinstance(x, Tensor) for x in pair)):
        got = (f"a {type(pair).__name__} of {len(pair)}" if isinstance(pair, (tuple, list))
               else type(pair).__name__)
        raise TypeError(f"views(step) must return a pair of tensors (view1, view2), got {got}; "
                        f"e.g. views=lambda k: population_views(N, sigma).")


def simulate(learner, encoder: LinearEncoder, views: Callable[[int], tuple[Tensor, Tensor]],
             *, lr: float, steps: int, sigma, record_every: int = 1,
             probe: Callable[[object, LinearEncoder], dict] | None = None,
             eval_views: Tensor | None = None) -> Trajectory:
    """Run ``steps`` gradient steps; record every ``record_every`` steps (and the last).

    Every parameter the learner exposes (the encoder's ``W`` and, e.g., a learned
    predictor) takes the step ``θ ← θ − lr ∇_θ loss``; learning-rate ratios and
    weight decay are the learner's business (see ``ncspec.reference.methods.learned``).
    ``sigma`` is the augmentation std, a number or one value per input coordinate.
    ``probe(learner, encoder)`` returns extra tensors to record (e.g. ``W_p``).
    ``eval_views`` (B, N): train a nonlinear encoder instead (module docstring); ``C``
    and ``Σ`` are then estimated on these views, ``sq_norm``/``grad_sq`` sum over
    every encoder parameter, and ``W`` is None.
    """
    _check_protocol(learner, encoder, views, eval_views)
    _checks.positive("lr", lr, hint="lr is the step size of W ← W − lr·∇W; use a small positive "
                     "value such as 0.01.")
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got steps={steps!r}; it is the number of "
                         f"gradient steps, e.g. steps=200.")
    if not (isinstance(record_every, int) and not isinstance(record_every, bool) and record_every > 0):
        raise ValueError(f"record_every must be an int > 0, got record_every={record_every!r}; "
                         f"use 1 to record every step.")
    linear = eval_views is None
    own = [encoder.W] if linear else [p for p in encoder.parameters() if p.requires_grad]
    ids = {id(p) for p in own}
    params = own + [p for p in learner.parameters() if id(p) not in ids and p.requires_grad]  # frozen: no step
    W = own[0]
    kappa = second_moment(sigma, W.shape[-1], dtype=W.dtype) if linear else None   # diag of I + X′
    rec_steps, eig, eig_cov, sqn, gsq, probes = [], [], [], [], [], {}

    def record(k: int, g_sq: Tensor) -> None:
        with torch.no_grad():
            rec_steps.append(k)
            if linear:
                eig.append(torch.linalg.eigvalsh((W * kappa) @ W.transpose(-1, -2)))
            else:
                ev_C, ev_cov = _spectra(encoder(eval_views))
                eig.append(ev_C)
                eig_cov.append(ev_cov)
            sqn.append(_per_replica_sq(own))
            gsq.append(g_sq)
            if probe is not None:
                for name, value in probe(learner, encoder).items():
                    probes.setdefault(name, []).append(value.detach().clone())

    for k in range(steps + 1):
        if k == steps:
            record(k, torch.full(W.shape[:1], float("nan"), dtype=W.dtype))   # S replicas first
            break
        pair = views(k)
        if k == 0:
            _check_views(pair)
        x1, x2 = pair
        loss = learner.loss(x1, x2)
        # Cheap (attribute reads only) before the one host sync of .item().
        if not isinstance(loss, Tensor):
            raise TypeError(f"learner.loss must return a torch.Tensor, got {type(loss).__name__} "
                            f"at step {k}; return the loss as a scalar tensor.")
        if loss.dim() != 0:
            raise ValueError(f"loss must be a scalar tensor, got shape {tuple(loss.shape)} at step "
                             f"{k}; reduce it over replicas with .sum() (each replica then keeps "
                             f"its own gradient) before returning it from learner.loss.")
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became non-finite ({value}) at step {k}: the "
                                     f"dynamics diverged; lower lr or shorten the run.")
        if not loss.requires_grad:
            raise ValueError(_NO_PATH + f" (step {k}: the loss does not require grad"
                             + ("; simulate is running under torch.no_grad()" if not
                                torch.is_grad_enabled() else "") + ").")
        try:
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        except RuntimeError as e:
            if "does not require grad" in str(e) or "not have been used in the graph" in str(e):
                raise ValueError(_NO_PATH + f" (step {k}).") from e
            raise
        mine = grads[:len(own)]
        if all(g is None for g in mine):
            raise ValueError(_NO_PATH + f" (step {k}: {'W was' if linear else 'no encoder parameter was'} "
                             f"used in the graph of the loss; does the learner wrap the same encoder that "
                             f"was passed to simulate?).")
        if k % record_every == 0:
            record(k, _per_replica_sq([g for g in mine if g is not None]))
        with torch.no_grad():
            for p, gp in zip(params, grads):
                if gp is not None:
                    p -= lr * gp
        learner.after_step()
    steps_t = torch.tensor(rec_steps)
    return Trajectory(steps=steps_t, t=lr * steps_t.to(W.dtype), eig_C=torch.stack(eig),
                      sq_norm=torch.stack(sqn), grad_sq=torch.stack(gsq),
                      W=W.detach().clone() if linear else None,
                      probes={k: torch.stack(v) for k, v in probes.items()},
                      eig_cov=torch.stack(eig_cov) if eig_cov else None)
