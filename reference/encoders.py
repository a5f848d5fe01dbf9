"""Small MLP encoders for the toy experiments of Jha et al. (2024), batched over replicas.

Every module here carries S independent replicas (seeds) on a leading dimension,
like :class:`ncspec.reference.linear.LinearEncoder`: weights are ``(S, fan_in, fan_out)``,
inputs are ``(B, N)`` (shared by all replicas) or ``(S, B, N)``, outputs ``(S, B, M)``.
Elementwise optimisers (SGD with momentum, Adam) then train each replica exactly
as if it ran alone, so a batch of seeds costs one run.

BatchNorm (``batchnorm=True``) normalises every feature over the batch dimension
(``-2``) of *the batch it is given* — training-mode statistics, biased variance,
``eps = 1e-5``, affine γ = 1, β = 0 at init, like ``nn.BatchNorm1d`` in training
mode. There are no running statistics: to evaluate, pass the whole data set as
one batch (its statistics are then the population's). That keeps the encoder
stateless between calls, which the center-vector claims rely on.

The module also holds the plumbing shared by the learners of
``reference/methods/{contrastive,redundancy,clustering,center}.py``: embedding a
pair of views with validation (:func:`embed_pair`), the replica shape of an
encoder (:func:`replica_shape`) and a ``build`` factory (:func:`make_build`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from . import _checks
from .vectors import unit  # noqa: F401  (re-exported: methods and mutants import it from here)

BN_EPS = 1e-5


def _linear_init(S: int, fan_in: int, fan_out: int, generator, dtype) -> tuple[Tensor, Tensor]:
    """``nn.Linear``'s default init: U(−1/√fan_in, 1/√fan_in) for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    W = (torch.rand((S, fan_in, fan_out), generator=generator, dtype=dtype) * 2 - 1) * bound
    b = (torch.rand((S, 1, fan_out), generator=generator, dtype=dtype) * 2 - 1) * bound
    return W, b


def batch_norm(h: Tensor, eps: float = BN_EPS, *, center: bool = True, unbiased: bool = False) -> Tensor:
    """``(h − mean_B h) / √(var_B h + eps)`` over the batch dimension ``-2`` (biased variance, ÷B).

    ``center=False`` skips the mean subtraction: ``h / √(mean_B h² + eps)`` (RMS scaling only).
    ``unbiased=True`` divides the sum of squares by ``B − 1`` (Bessel's correction), as some
    implementations' ``z.std(0)`` does: the standardised features then have ``mean_B h² = (B − 1)/B``.
    """
    if center:
        h = h - h.mean(-2, keepdim=True)
    B = h.shape[-2]
    return h / torch.sqrt(h.pow(2).sum(-2, keepdim=True) / (B - 1 if unbiased else B) + eps)


class MLP(nn.Module):
    """``Linear → [BN] → ReLU → … → Linear [→ BN]``, S replicas.

    Args:
        dims: layer widths ``(in, hidden…, out)``, at least two entries.
        replicas: S.
        batchnorm: BN (affine) after every hidden linear layer.
        out_bn: BN without affine parameters after the last layer (SimSiam's projector
            ends this way); off by default so the output keeps its center vector.
        generator, dtype: initialisation.
    """

    def __init__(self, dims: Sequence[int], *, replicas: int = 1, batchnorm: bool = True,
                 out_bn: bool = False, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        dims = tuple(dims)
        if len(dims) < 2 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
            raise ValueError(f"dims must list at least two positive ints (in, ..., out), got {dims!r}; "
                             f"e.g. dims=(2, 64, 16).")
        self.replicas = _checks.positive_int("replicas", replicas, hint="one per seed, e.g. replicas=5.")
        self.dims, self.batchnorm, self.out_bn = dims, bool(batchnorm), bool(out_bn)
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        self.gammas, self.betas = nn.ParameterList(), nn.ParameterList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            W, bias = _linear_init(self.replicas, a, b, generator, dtype)
            self.weights.append(nn.Parameter(W))
            self.biases.append(nn.Parameter(bias))
            if batchnorm and i < len(dims) - 2:
                self.gammas.append(nn.Parameter(torch.ones((self.replicas, 1, b), dtype=dtype)))
                self.betas.append(nn.Parameter(torch.zeros((self.replicas, 1, b), dtype=dtype)))

    @property
    def in_dim(self) -> int:
        return self.dims[0]

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        _checks.tensor("x", x, min_dim=2, layout="(B, N) or (S, B, N)")
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"input dimension {x.shape[-1]} does not match the MLP's input width "
                             f"{self.in_dim} (dims {self.dims}); x must be (B, {self.in_dim}) or "
                             f"(S, B, {self.in_dim}), got shape {tuple(x.shape)}.")
        if x.dim() > 3 or (x.dim() == 3 and x.shape[0] not in (1, self.replicas)):
            raise ValueError(f"x must be (B, N) shared by all replicas or (S, B, N) with S = "
                             f"{self.replicas}, got shape {tuple(x.shape)}.")
        if x.dtype != self.weights[0].dtype:
            raise ValueError(f"x has dtype {x.dtype} but the MLP's weights have dtype "
                             f"{self.weights[0].dtype}; convert the inputs with x.to({self.weights[0].dtype}).")
        h = x
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h.expand(self.replicas, *h.shape[-2:]), W)
            if i < last:
                if self.batchnorm:
                    h = batch_norm(h) * self.gammas[i] + self.betas[i]
                h = torch.relu(h)
            elif self.out_bn:
                h = batch_norm(h)
        return h


class MLPEncoder(nn.Module):
    """Backbone ``f`` (an :class:`MLP`) and optional projector ``g``: ``z = g(f(x))``.

    ``forward`` returns the embedding the SSL loss sees, ``z`` (S, B, M);
    :meth:`represent` returns the backbone representation ``f(x)`` used for
    evaluation (kNN). Without a projector the two coincide.

    Args:
        in_dim: N (2 for the toy sets).
        hidden: backbone hidden widths, e.g. ``(64, 64)``.
        out_dim: backbone output width (M when there is no projector).
        projector: hidden widths and output width of the projector, e.g. ``(64, 16)``;
            ``None`` for none.
        batchnorm: BN after the hidden layers of backbone and projector.
        replicas: S, independent seeds.
        generator, dtype: initialisation (replica s gets its own draw).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, *,
                 projector: Sequence[int] | None = None, batchnorm: bool = True, replicas: int = 1,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.backbone = MLP((in_dim, *tuple(hidden), out_dim), replicas=replicas, batchnorm=batchnorm,
                            generator=generator, dtype=dtype)
        self.projector = None
        if projector is not None:
            proj = tuple(projector)
            if not proj:
                raise ValueError("projector must list at least the output width, e.g. projector=(64, 16); "
                                 "pass projector=None for none.")
            self.projector = MLP((out_dim, *proj), replicas=replicas, batchnorm=batchnorm,
                                 generator=generator, dtype=dtype)
        self.replicas = self.backbone.replicas
        self.batchnorm = bool(batchnorm)

    @property
    def embed_dim(self) -> int:
        return (self.projector or self.backbone).out_dim

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype: a learner builds its heads in it."""
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def represent(self, x: Tensor) -> Tensor:
        """Backbone output ``f(x)`` (S, B, out_dim)."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        h = self.backbone(x)
        return h if self.projector is None else self.projector(h)


class Identity(nn.Module):
    """``z = x``: an encoder whose embeddings are the views themselves (M = N).

    For checking a learner's loss *value* on given embeddings (claims J1, J4): pass unit
    vectors as views and the learner's ``loss`` sees exactly them. ``replicas`` only
    declares the leading dimension (S) for learners that own per-replica parameters;
    ``dtype`` and ``device`` declare the views' (a parameterless encoder has no weights to
    read them from), so a learner builds its heads as for any harness encoder.
    """

    def __init__(self, dim: int, *, replicas: int = 1, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None):
        super().__init__()
        self.embed_dim = _checks.positive_int("dim", dim)
        self.replicas = _checks.positive_int("replicas", replicas)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}; e.g. torch.float64.")
        self.dtype = dtype
        self.device = torch.device("cpu" if device is None else device)

    def forward(self, x: Tensor) -> Tensor:
        _checks.tensor("x", x, min_dim=2, layout="(..., B, M)")
        if x.shape[-1] != self.embed_dim:
            raise ValueError(f"x has {x.shape[-1]} features but the identity encoder was built with "
                             f"dim = {self.embed_dim}; pass views of shape (..., B, {self.embed_dim}).")
        return x


# --- plumbing shared by the learners -----------------------------------------------------

_NONFINITE = ("the encoder output must be finite; the encoder weights or the views hold NaN/inf "
              "(a diverged run: lower the learning rate, or check the views).")


def encoder_dtype(encoder) -> torch.dtype:
    """The dtype a learner builds its heads in: ``encoder.dtype`` where the encoder declares it (a parameterless
    :class:`Identity` does), else its first weight's, else torch's default."""
    dtype = getattr(encoder, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    p = next(iter(encoder.parameters()), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def replica_shape(encoder) -> tuple[int, ...]:
    """``(S,)`` for a replica-batched encoder (attribute ``replicas``), else ``()``."""
    S = getattr(encoder, "replicas", None)
    return (int(S),) if isinstance(S, int) and S > 0 else ()


def check_encoder(encoder, embed_dim) -> None:
    if not callable(encoder) or not hasattr(encoder, "parameters"):
        raise TypeError(f"encoder must be an nn.Module mapping views (..., B, N) to embeddings "
                        f"(..., B, M), got {type(encoder).__name__}; pass e.g. "
                        f"ncspec.reference.encoders.MLPEncoder(2, (64, 64), 16).")
    if not (isinstance(embed_dim, int) and not isinstance(embed_dim, bool) and embed_dim > 0):
        raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}; pass the encoder's "
                         f"output dimension M.")
    M = getattr(encoder, "embed_dim", None)
    if isinstance(M, int) and M != embed_dim:
        raise ValueError(f"embed_dim = {embed_dim} does not match the encoder's output dimension "
                         f"M = {M}; pass embed_dim={M}.")


def embed_pair(encoder, view1: Tensor, view2: Tensor, embed_dim: int, *, min_batch: int = 1
               ) -> tuple[Tensor, Tensor]:
    """``z1, z2 = encoder(view1), encoder(view2)``, validated: (..., B, M) each, finite."""
    _checks.tensor("view1", view1, min_dim=2, layout="(..., B, N)")
    _checks.tensor("view2", view2, min_dim=2, layout="(..., B, N)")
    _checks.same_shape("view1", view1, "view2", view2)
    if view1.shape[-2] < min_batch:
        raise ValueError(f"the views must hold at least {min_batch} samples (B >= {min_batch} in "
                         f"(..., B, N)), got shape {tuple(view1.shape)}; this loss uses batch "
                         f"statistics. Pass a larger batch.")
    z1, z2 = encoder(view1), encoder(view2)
    for name, z in (("z1 = encoder(view1)", z1), ("z2 = encoder(view2)", z2)):
        _checks.tensor(name, z, min_dim=2, layout="(..., B, M)")
        if z.shape[-1] != embed_dim:
            raise ValueError(f"{name} has {z.shape[-1]} features but embed_dim = {embed_dim}; "
                             f"pass embed_dim={z.shape[-1]} to build(...).")
    _checks.all_finite((("z1 = encoder(view1)", z1), ("z2 = encoder(view2)", z2)), hint=_NONFINITE)
    return z1, z2


def make_build(methods: dict[str, tuple[Callable, dict]], options: dict[str, set]) -> Callable:
    """A ``build(method, encoder, embed_dim, **options)`` over ``methods`` (name → (class, presets)).

    ``options[class_name]`` lists the keyword options that class accepts; unknown ones raise
    a ``TypeError`` naming the valid options.
    """
    def build(method: str, encoder: nn.Module, embed_dim: int, **opts):
        _checks.choice("method", method, set(methods))
        cls, preset = methods[method]
        valid = options[cls.__name__]
        unknown = sorted(set(opts) - valid)
        if unknown:
            raise TypeError(f"unknown option(s) {unknown} for build({method!r}, ...); valid options "
                            f"are {sorted(valid)}.")
        check_encoder(encoder, embed_dim)
        return cls(encoder, embed_dim, **{**preset, **opts})
    build.__doc__ = f"Adapter-protocol constructor for {sorted(methods)}."
    return build


@torch.no_grad()
def set_output_spectrum(encoder: MLPEncoder, lam: Tensor, views: Tensor) -> MLPEncoder:
    """Give ``C = E[z zᵀ]`` on ``views`` the eigenvalues ``lam`` (S, M), keeping its eigenvectors.

    The last layer is linear, ``z = h W + b``; right-multiplying ``W`` and ``b`` by the symmetric
    ``T = U diag(√(λ_target/λ)) Uᵀ`` (``C = U diag(λ) Uᵀ``) maps ``C ↦ T C T = U diag(λ_target) Uᵀ``.
    How the nonlinear analogue of :func:`ncspec.reference.linear.weights_with_spectrum` sets a
    chosen initial spectrum (Halvagal et al. 2022's Fig. 1 starts from one). Returns the encoder.
    """
    last = (encoder.projector or encoder.backbone)
    _checks.tensor("lam", lam)
    S, M = encoder.replicas, encoder.embed_dim
    if lam.shape != (S, M) or (lam <= 0).any():
        raise ValueError(f"lam must hold {M} positive eigenvalues for each of the {S} replicas, shape ({S}, {M}), "
                         f"got shape {tuple(lam.shape)}{' with values <= 0' if lam.shape == (S, M) else ''}.")
    z = encoder(views)
    C = z.transpose(-1, -2) @ z / z.shape[-2]
    ev, U = torch.linalg.eigh(C)
    if (ev <= 0).any():
        raise ValueError("the encoder's correlation on these views is singular (a dead output); re-initialise "
                         "the encoder or use more views.")
    T = (U * (lam.to(ev.dtype) / ev).sqrt().unsqueeze(-2)) @ U.transpose(-1, -2)
    last.weights[-1].copy_(last.weights[-1] @ T)
    last.biases[-1].copy_(last.biases[-1] @ T)
    return encoder
