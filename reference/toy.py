"""Toy data sets, augmentation and the toy training loop of Jha et al. (2024, Figs. 3–4).

The seed evaluates SimSiam, its ablations and L_Simple on two 2-D toy sets,
"Blob" and "Moons", averaged over five seeds. Its exact generators and
augmentation are not in the seed text; what is reproduced here:

* :func:`blobs` — ``sklearn.datasets.make_blobs`` with its defaults (isotropic
  Gaussian clusters, std 1, centres uniform in the box [−10, 10]²), 4 clusters;
* :func:`moons` — ``sklearn.datasets.make_moons`` (two interleaving half circles,
  Gaussian noise 0.1);
* both standardised to zero mean and unit variance per coordinate (statistics of
  the train split), so that one augmentation scale fits both;
* ``nuisance`` extra input coordinates (default 8), i.i.d. N(0, 1), that carry no
  label information and that every augmentation redraws — a departure from the
  seed, which plots 2-D inputs only. Reason (measured, 3 seeds, k = 20): on the
  bare 2-D sets a *randomly initialised* MLP already reaches the kNN ceiling
  (Blob 0.975, Moons 0.993) and training, collapsed or not, moves it by at most
  ≈ 0.1 — mostly downwards — so kNN cannot rank methods; with nuisance
  coordinates the random network starts at ≈ 0.7 / 0.8 and a method must learn
  the invariance to improve. ``nuisance=0`` gives the bare 2-D sets;
* :func:`augment` — the augmentation ω: on the 2-D signal, random isotropic
  scaling ``u ↦ a·u, a ~ U[1−scale, 1+scale]`` followed by Gaussian jitter
  ``+ σ ε``; the nuisance coordinates are redrawn.

Labels (blob index, moon index) are used only for kNN evaluation.

Shapes: a :class:`ToySet` holds ``S`` replicas on the leading dimension — each
replica its own draw of the data (seed ``seed + s``), so that different seeds
see different samples; sets of the same input dimension can be concatenated
along replicas (:func:`concat`) and trained in one run, e.g. Blob and Moons ×
five seeds as S = 10 replicas.

:func:`train` is the one training loop of the toy claims and figures: Adam (or
SGD) on the learner's parameters, views from :func:`augment`, records of ‖s‖
(two augmented views of the test split), the residual, the normalised std and
kNN accuracy (backbone representation, train split as the memory bank).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import _checks, metrics

DATASETS = ("blob", "moons")


def blobs(n: int, *, centers: int = 4, cluster_std: float = 1.0, box: float = 10.0,
          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``make_blobs``: ``centers`` Gaussian clusters in 2-D, centres ~ U[−box, box]², labels 0…centers−1.

    Samples are split as evenly as possible over the clusters. Returns x (n, 2), y (n,).
    """
    _checks.positive_int("n", n)
    _checks.positive_int("centers", centers, hint="make_blobs uses 3 by default; the toy claims use 4.")
    _checks.positive("cluster_std", cluster_std)
    _checks.positive("box", box)
    c = (torch.rand((centers, 2), generator=generator, dtype=torch.float64) * 2 - 1) * box
    y = torch.arange(n) % centers
    x = c[y] + cluster_std * torch.randn((n, 2), generator=generator, dtype=torch.float64)
    return x, y


def moons(n: int, *, noise: float = 0.1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``make_moons``: upper half circle (label 0) and the lower one shifted by (1, 0.5) (label 1).

    Points are uniform in angle, half per moon; Gaussian noise of std ``noise``. Returns x (n, 2), y (n,).
    """
    _checks.positive_int("n", n)
    _checks.non_negative("noise", noise)
    y = torch.arange(n) % 2
    t = torch.rand(n, generator=generator, dtype=torch.float64) * math.pi
    upper = torch.stack([torch.cos(t), torch.sin(t)], -1)
    lower = torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], -1)
    x = torch.where((y == 0).unsqueeze(-1), upper, lower)
    return x + noise * torch.randn((n, 2), generator=generator, dtype=torch.float64), y


_GENERATORS = {"blob": blobs, "moons": moons}


@dataclass
class ToySet:
    """Train/test splits with S replicas: x (S, n, N), y (S, n); ``names[s]`` the data set of replica s.

    The last ``nuisance`` input coordinates are nuisance (redrawn by :func:`augment`).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    names: tuple[str, ...]
    nuisance: int = 0

    @property
    def replicas(self) -> int:
        return self.x_train.shape[0]

    @property
    def in_dim(self) -> int:
        return self.x_train.shape[-1]

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max().item(), self.y_test.max().item())) + 1


def make(name: str, *, replicas: int = 5, n_train: int = 512, n_test: int = 256, seed: int = 0,
         nuisance: int = 8, dtype: torch.dtype = torch.float32, **kwargs) -> ToySet:
    """``replicas`` independent draws of data set ``name`` ("blob" | "moons"), standardised.

    Replica s uses ``torch.Generator().manual_seed(seed + s)``; ``kwargs`` go to the
    generator (:func:`blobs`, :func:`moons`). ``nuisance`` N(0, 1) coordinates are
    appended (module docstring): inputs are (S, n, 2 + nuisance).
    """
    _checks.choice("name", name, set(DATASETS))
    _checks.positive_int("replicas", replicas)
    _checks.positive_int("n_train", n_train)
    _checks.positive_int("n_test", n_test)
    if not (isinstance(nuisance, int) and not isinstance(nuisance, bool) and nuisance >= 0):
        raise ValueError(f"nuisance must be an int >= 0 (extra input coordinates), got {nuisance!r}.")
    if not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}.")
    xs, ys = [], []
    for s in range(replicas):
        g = torch.Generator().manual_seed(seed + s)
        x, y = _GENERATORS[name](n_train + n_test, generator=g, **kwargs)
        perm = torch.randperm(n_train + n_test, generator=g)
        x = (x - x[perm[:n_train]].mean(0)) / x[perm[:n_train]].std(0)      # train-split statistics
        x = torch.cat([x, torch.randn((n_train + n_test, nuisance), generator=g, dtype=x.dtype)], -1)
        xs.append(x[perm])
        ys.append(y[perm])
    x, y = torch.stack(xs).to(dtype), torch.stack(ys)
    return ToySet(x[:, :n_train], y[:, :n_train], x[:, n_train:], y[:, n_train:], (name,) * replicas, nuisance)


def concat(*sets: ToySet) -> ToySet:
    """Stack toy sets along the replica dimension (same input dimension and split sizes)."""
    if not sets or not all(isinstance(s, ToySet) for s in sets):
        raise TypeError("concat takes one or more ToySet objects (from ncspec.reference.toy.make).")
    shapes = {(s.x_train.shape[1:], s.x_test.shape[1:], s.nuisance) for s in sets}
    if len(shapes) != 1:
        raise ValueError(f"the toy sets must share their split sizes and input dimension to be stacked, got "
                         f"{sorted((tuple(a), tuple(b), c) for a, b, c in shapes)}; pass the same "
                         f"n_train/n_test/nuisance.")
    return ToySet(*(torch.cat([getattr(s, f) for s in sets]) for f in ("x_train", "y_train", "x_test", "y_test")),
                  names=tuple(n for s in sets for n in s.names), nuisance=sets[0].nuisance)


def augment(x: Tensor, *, sigma: float = 0.1, scale: float = 0.2, nuisance: int = 0,
            generator: torch.Generator | None = None) -> Tensor:
    """One augmentation ω per sample: ``a·u + σ ε``, ``a ~ U[1−scale, 1+scale]``, ``ε ~ N(0, I)``,
    on the signal ``u`` (the first ``N − nuisance`` coordinates); the last ``nuisance``
    coordinates are replaced by fresh N(0, 1) draws.

    ``x`` (..., B, N); the same shape is returned.
    """
    _checks.tensor("x", x, min_dim=2, layout="(..., B, N)")
    _checks.non_negative("sigma", sigma, hint="the jitter std, e.g. 0.1 (inputs are standardised).")
    if not (isinstance(scale, (int, float)) and 0 <= scale < 1):
        raise ValueError(f"scale must be a number in [0, 1), got {scale!r}; the scaling factor is "
                         f"drawn from U[1−scale, 1+scale].")
    if not (isinstance(nuisance, int) and 0 <= nuisance < x.shape[-1]):
        raise ValueError(f"nuisance must be an int in [0, N = {x.shape[-1]}), got {nuisance!r}; it counts "
                         f"the trailing nuisance coordinates of x (ToySet.nuisance).")
    u = x[..., :x.shape[-1] - nuisance]
    a = 1 + scale * (2 * torch.rand((*u.shape[:-1], 1), generator=generator, dtype=x.dtype) - 1)
    u = a * u + sigma * torch.randn(u.shape, generator=generator, dtype=x.dtype)
    if not nuisance:
        return u
    return torch.cat([u, torch.randn((*x.shape[:-1], nuisance), generator=generator, dtype=x.dtype)], -1)


@dataclass
class ToyRun:
    """Records of :func:`train`: ``steps`` (K,), per-replica metrics (K, S)."""

    steps: Tensor
    center_norm: Tensor          # ‖s‖ of l2-normalised embeddings z, test split, two views
    residual_sq: Tensor          # E_x‖r_x‖² (same views)
    std: Tensor                  # normalised std of z
    knn: Tensor                  # kNN accuracy of the backbone representation
    loss: Tensor                 # training loss summed over replicas, (K,)
    names: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def final(self, metric: str, name: str | None = None) -> Tensor:
        """Last record of ``metric`` for the replicas of data set ``name`` (all if None)."""
        v = getattr(self, metric)[-1]
        if name is None:
            return v
        return v[torch.tensor([n == name for n in self.names])]


@torch.no_grad()
def evaluate(encoder, data: ToySet, *, generator: torch.Generator | None = None, sigma: float = 0.1,
             scale: float = 0.2, k: int = 200, temperature: float = 0.1) -> dict[str, Tensor]:
    """‖s‖, E‖r‖², normalised std (two augmented views of the test split) and kNN accuracy (S,)."""
    views = torch.stack([encoder(augment(data.x_test, sigma=sigma, scale=scale, nuisance=data.nuisance,
                                         generator=generator))
                         for _ in range(2)], -3)                              # (S, 2, T, M)
    s, r = metrics.center_decomposition(views)
    rep = getattr(encoder, "represent", encoder)
    knn = metrics.knn_accuracy(rep(data.x_train), data.y_train, rep(data.x_test), data.y_test,
                               k=k, temperature=temperature, num_classes=data.num_classes)
    return dict(center_norm=s.norm(dim=-1), residual_sq=r.pow(2).sum(-1).mean(-1),
                std=metrics.normalized_std(views[..., 0, :, :]), knn=knn)


def train(learner, encoder, data: ToySet, *, steps: int = 300, batch: int = 128, lr: float = 1e-3,
          optimizer: str = "adam", momentum: float = 0.9, weight_decay: float = 0.0, sigma: float = 0.1,
          scale: float = 0.2, record_every: int = 25, seed: int = 0, k: int = 200,
          temperature: float = 0.1, probe: Callable[[object, object], dict] | None = None) -> ToyRun:
    """Train ``learner`` (adapter protocol) around ``encoder`` on ``data``; record every ``record_every``.

    Each step draws, per replica, ``batch`` train samples without replacement, two
    augmentations of each (:func:`augment`), takes one optimiser step on
    ``learner.loss(view1, view2)`` and calls ``learner.after_step()``. Optimisers are
    elementwise (Adam; SGD with ``momentum``), so replicas stay independent.
    ``k``, ``temperature``: the kNN evaluation (:func:`ncspec.reference.metrics.knn_accuracy`).
    ``probe(learner, encoder)`` returns extra scalars/tensors to record.
    """
    if not (callable(getattr(learner, "loss", None)) and callable(getattr(learner, "after_step", None))
            and callable(getattr(learner, "parameters", None))):
        raise TypeError(f"learner must follow the adapter protocol (parameters(), loss(view1, view2), "
                        f"after_step()), got {type(learner).__name__}; build it with "
                        f"ncspec.reference.methods.build(...) or an adapter's build(...).")
    if not isinstance(data, ToySet):
        raise TypeError(f"data must be a ToySet (ncspec.reference.toy.make), got {type(data).__name__}.")
    S = getattr(encoder, "replicas", None)
    if S is not None and S != data.replicas:
        raise ValueError(f"the encoder has {S} replicas but the data {data.replicas}; build the encoder "
                         f"with replicas={data.replicas}.")
    _checks.positive_int("steps", steps)
    _checks.positive_int("batch", batch)
    if batch > data.x_train.shape[1]:
        raise ValueError(f"batch = {batch} exceeds the {data.x_train.shape[1]} train samples; lower it.")
    _checks.positive("lr", lr)
    _checks.choice("optimizer", optimizer, {"adam", "sgd"})
    _checks.positive_int("record_every", record_every)
    params = [p for p in learner.parameters() if p.requires_grad]
    if not params:
        raise ValueError("learner.parameters() yields no trainable tensor; the encoder's weights must "
                         "require grad.")
    # foreach: one batched update for all parameters (the same arithmetic; fewer small ops per step)
    opt = (torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True) if optimizer == "adam"
           else torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=True))
    g = torch.Generator().manual_seed(seed)
    g_eval = torch.Generator().manual_seed(seed + 1)
    rows, losses, rec_steps, extra = [], [], [], {}
    n = data.x_train.shape[1]

    def record(step, loss_value):
        ev = evaluate(encoder, data, generator=g_eval, sigma=sigma, scale=scale, k=k, temperature=temperature)
        rows.append(ev)
        losses.append(loss_value)
        rec_steps.append(step)
        if probe is not None:
            for key, v in probe(learner, encoder).items():
                extra.setdefault(key, []).append(torch.as_tensor(v).detach().clone())

    for step in range(steps):
        idx = torch.rand((data.replicas, n), generator=g).argsort(-1)[:, :batch]
        x = torch.gather(data.x_train, 1, idx.unsqueeze(-1).expand(-1, -1, data.in_dim))
        v1 = augment(x, sigma=sigma, scale=scale, nuisance=data.nuisance, generator=g)
        v2 = augment(x, sigma=sigma, scale=scale, nuisance=data.nuisance, generator=g)
        loss = learner.loss(v1, v2)
        if step % record_every == 0:
            record(step, loss.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        learner.after_step()
    record(steps, float("nan"))                  # the loss after the last step is not evaluated
    stack = lambda key: torch.stack([r[key] for r in rows])
    return ToyRun(torch.tensor(rec_steps), stack("center_norm"), stack("residual_sq"), stack("std"),
                  stack("knn"), torch.tensor(losses), data.names,
                  {k: torch.stack(v) for k, v in extra.items()})


#: The toy setting of the center-vector claims and figure (claims J2–J7): a 2-layer MLP
#: backbone with BN, 16-D embeddings (no projector), Adam, 300 steps of batch 64; kNN with
#: k = 20 (lightly's 200 is scaled down to the 512-sample bank) and temperature 0.1.
SETTING = dict(hidden=(32, 32), out_dim=16, encoder_bn=True, steps=300, batch=64, lr=2e-3,
               aug_sigma=0.1, aug_scale=0.2, knn_k=20, knn_temperature=0.1, record_every=25)


def run(build: Callable, method: str, data: ToySet, *, seed: int = 0, probe=None, **options) -> ToyRun:
    """Train ``build(method, encoder, M, **method_options)`` on ``data`` in the toy :data:`SETTING`.

    ``build`` is an adapter's ``build`` (or :func:`ncspec.reference.methods.build`); ``options``
    override :data:`SETTING` keys (``hidden``, ``out_dim``, ``encoder_bn``, ``steps``, …);
    every other option goes to the method. The encoder is an
    :class:`~ncspec.reference.encoders.MLPEncoder` with one replica per data replica, initialised
    from ``seed``; the batches and augmentations are drawn from ``seed`` too, and torch's global generator is
    seeded with it before ``build`` (heads an adapter initialises from it are the same whatever ran before).
    """
    from .encoders import MLPEncoder

    if not callable(build):
        raise TypeError(f"build must be callable (an adapter's build), got {type(build).__name__}.")
    setting = {**SETTING, **{k: v for k, v in options.items() if k in SETTING}}
    method_options = {k: v for k, v in options.items() if k not in SETTING}
    enc = MLPEncoder(data.in_dim, setting["hidden"], setting["out_dim"], batchnorm=setting["encoder_bn"],
                     replicas=data.replicas, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)      # a learner's own heads, initialised from torch's global generator, as lab code does
    learner = build(method, enc, enc.embed_dim, **method_options)
    return train(learner, enc, data, steps=setting["steps"], batch=setting["batch"], lr=setting["lr"],
                 sigma=setting["aug_sigma"], scale=setting["aug_scale"], k=setting["knn_k"],
                 temperature=setting["knn_temperature"], record_every=setting["record_every"], seed=seed,
                 probe=probe)
