"""The deep tier's harness: the image data and one cached training run per configuration.

The N claims (``test_deep.py``) run real convolutional networks on real images through the one
training loop, :func:`ncspec.reference.vision.train.train`, with the adapter's ``build`` as the
learner builder. The tier's settings — its scales (:class:`~ncspec.conformance.run.deep_tier.Scale`), where the
data comes from (``$NCSPEC_DATA``, :func:`~ncspec.conformance.run.deep_tier.dataset_spec`) and the budget line — are
:mod:`ncspec.conformance.run.deep_tier`'s. Without data the claims skip with
:func:`~ncspec.conformance.run.deep_tier.missing_data_help`.

Every run is kept for the session (:data:`RUNS`): N1–N3 read the same SimSiam run.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from ncspec.conformance.run import coverage
from ncspec.conformance.run.deep_tier import CPU_SCALES, Scale, dataset_spec, missing_data_help, scale
from ncspec.reference.vision.data import DataRootError, load_dataset

from . import ema
from .harness import require, separate_copy_of_the_encoder

_DATA: dict[tuple, object] = {}


def image_data(path: str | None = None):
    """The image set (loaded once per process), or ``pytest.skip`` naming what to download."""
    try:
        spec, root = dataset_spec(path)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    key = (spec, root)
    if key not in _DATA:
        try:     # STL-10: SSL trains on train + unlabeled (x_ssl); spectra and evaluation read the labelled splits
            _DATA[key] = load_dataset(spec, root, unlabeled=spec == "stl10")
        except DataRootError as e:
            pytest.skip(str(e) if spec == "stl10" else missing_data_help(str(e)))
    return _DATA[key]


def deep_preamble(impl, *capabilities: str, not_shown_at: tuple[str, ...] = (), reason: str | None = None):
    """What every deep claim does first, in one call: ``impl`` must have ``capabilities`` (else the claim is not
    applicable: :func:`~ncspec.spec_tests.harness.require`), the scale is read (:func:`scale`), a claim not shown at
    the scales ``not_shown_at`` (e.g. ``CPU_SCALES``) skips there with ``reason``, and the image data is loaded (a
    skip naming what to download without it). Returns ``(scale, data)``. A plain call, not a fixture: the kill matrix
    and the tests call the claims' functions with ``impl`` and ``record`` alone."""
    require(impl, *capabilities)
    sc = scale()
    if sc.name in not_shown_at:
        pytest.skip(reason)
    return sc, image_data()


@dataclass(frozen=True)
class Run:
    """One training run: the method, its complete options, an optional ablation label."""
    method: str
    options: tuple = ()
    label: str = ""
    seed: int = 0
    steps: int | None = None   # default: the scale's budget
    proj_out_bn: bool = True   # the projector ends in BatchNorm (SimSiam's); False: the IsoLoss authors' projector

    def opts(self) -> dict:
        return dict(self.options)


def run_options(method: str, sc: Scale, **extra) -> tuple:
    """The complete options a method is trained with at scale ``sc`` (never partial: an adapter's
    ``build`` gets exactly these). Closed-form methods: Table 1's of the eigenspace paper (cosine form,
    ``W_P = (Ĉ/λ_max)^½``, correlation EMA 0.5 without an EMA target); SimSiam's MLP predictor: its hidden
    width; BYOL: the target's EMA momentum 0.99 (the predictor is each implementation's own)."""
    from ncspec.reference.vision.train import default_method_options
    if method in ("simsiam", "isoloss", "directpred"):
        opts = default_method_options(method, ema=False)
    elif method == "simsiam_mlp":
        opts = dict(pred_hidden=sc.pred_hidden)
    elif method == "byol":          # the EMA momentum every adapter takes; the predictor is the adapter's own
        opts = dict(momentum=0.99)
    else:
        opts = {}
    return tuple(sorted({**opts, **extra}.items()))


RUNS: dict[tuple, dict] = {}
RUN_USAGE: dict = {}    # the builds and steps each cached run took (ncspec.conformance.run.coverage)


def loss_factor(impl, method: str) -> float:
    """The adapter's stated constant factor of ``method``'s loss over the definition (``loss_factor``, a dict
    method → factor; default 1). Where the suite cannot measure it (an implementation's own MLP head cannot be
    aligned with the definition's), plain SGD would run such an implementation ``factor`` times faster than
    the definition — a convention, which the deep tier must not judge; its SGD runs therefore use ``lr /
    factor``. LARS (BYOL's recipe) normalises each weight's update and is left as it is."""
    factor = float((getattr(impl, "loss_factor", None) or {}).get(method, 1.0))
    if not factor > 0:
        raise ValueError(f"adapter {getattr(impl, 'name', impl)!r}: loss_factor[{method!r}] = {factor!r} must be "
                         f"a positive number (the loss's constant factor over the definition's).")
    return factor


def train_run(impl, run: Run, sc: Scale | None = None, data=None) -> dict:
    """Train ``run`` with ``impl.build`` through :func:`ncspec.reference.vision.train.train`
    (spectrum at initialisation and every ``eval_every`` epochs); cached per session."""
    from ncspec.reference.vision.train import TrainConfig, train
    sc = sc or scale()
    ds = data if data is not None else image_data()
    key = (getattr(impl, "name", str(impl)), id(impl), run, sc, ds.name, tuple(ds.x_train.shape))
    if key in RUNS:
        coverage.credit(RUN_USAGE[key])        # the test reading a run exercised the adapter as its first did
        return RUNS[key]
    optimizer, lr, fix_pred_lr = sc.recipe(run.method)
    lr /= loss_factor(impl, run.method) if optimizer == "sgd" else 1.0
    cfg = TrainConfig(dataset=ds.name, method=run.method, method_options=run.opts(), learner="reference",
                      backbone=sc.backbone, width=sc.width, proj_hidden=sc.proj_hidden, proj_out=sc.proj_out,
                      proj_out_bn=run.proj_out_bn,
                      batch_size=sc.batch, lr=lr, optimizer=optimizer, fix_pred_lr=fix_pred_lr,
                      epochs=10_000, max_steps=run.steps or sc.steps,
                      eval_every=sc.eval_every, probe=False, progress=False, device=sc.device, bf16=sc.bf16,
                      channels_last=sc.channels_last, compile=sc.compile, seed=run.seed, eval_at_start=True,
                      eval_knn=False, spectrum_samples=1024 if sc.name in CPU_SCALES else 4096)
    import torch
    from ncspec.conformance.plugin import torch_threads
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads())     # $NCSPEC_THREADS (default 1), as every claim
    schedule = ema.schedule_of(impl, run.method) if "momentum" in run.opts() else None
    built = {"schedule": schedule}
    try:
        with coverage.counted() as used:
            doc = train(cfg, dataset=ds, builder=_keeping(impl.build, built,
                                                          (run.steps or sc.steps) if schedule else None))
        doc["predictor"] = learned_linear_predictor(built, ds, sc)
        doc["head"] = own_head_metrics(built, ds, sc)
        doc["ema_watch"] = built["ema"].summary() if "ema" in built else None
        doc["encoder_copy"] = separate_copy_of_the_encoder(built["learner"], built["encoder"])
    finally:
        torch.set_num_threads(threads)
    RUNS[key], RUN_USAGE[key] = doc, used
    return doc


def _keeping(build, built: dict, total_steps: int | None = None):
    """``build``, keeping the learner, the encoder it was built around and its initial ``W_p`` (if any) in ``built``;
    a learner with an EMA target (``target_encoder``) is watched step by step (:class:`EMAWatch`). ``total_steps``:
    the run length, passed to ``build`` where the adapter declares a momentum schedule (it needs it)."""
    def builder(method, encoder, embed_dim, **options):
        if total_steps is not None and "momentum" in options:
            options = {**options, "total_steps": total_steps}
        learner = build(method, encoder, embed_dim, **options)
        W_p = getattr(learner, "W_p", None)
        built.update(learner=learner, encoder=encoder, embed_dim=embed_dim,
                     W_p_initial=W_p.detach().clone() if W_p is not None else None)
        if "momentum" in options and getattr(learner, "target_encoder", None) is not None:
            built["ema"] = EMAWatch(learner, float(options["momentum"]), built.get("schedule"), total_steps)
        return learner
    return builder


class EMAWatch:
    """Checks, at every ``after_step`` of a real training run, the EMA recurrence of every parameter of the target
    (``target_encoder``, and ``target_projector`` where exposed: :func:`ema.target_pairs`)
    ``ξ_k = m_k ξ_{k−1} + (1 − m_k) θ_k`` (θ_k: the online parameters after optimiser step k). ``m_k``: the declared
    schedule's, else the learner's exposed ``momentum``, else fitted from the update (:mod:`ema`); the first two
    against a float64 prediction carried alongside, a fitted one step by step from the measured target. It also
    classifies what the target's BatchNorm buffers do at each step: ``copied`` (equal to the online network's),
    ``averaged`` (the same EMA), ``own`` (changed otherwise: the target's own batch statistics, from its
    train-mode forwards) or ``frozen`` (unchanged)."""

    def __init__(self, learner, momentum: float, schedule: str | None = None, total_steps: int | None = None):
        self.m, self.schedule, self.K = momentum, schedule, total_steps
        self.pairs = None                  # gathered after the first loss call: it may build the heads
        self.worst, self.steps, self.buffer_steps, self.used, self.m_tol = 0.0, 0, [], [], 0.0
        self.parts, self.start_err, self.dtype, self.worst_ratio, self.last_bound = "", 0.0, None, 0.0, 0.0
        raw = learner                      # the adapter's own learner, under the harness's wrappers
        while getattr(raw, "_inner", None) is not None:
            raw = raw._inner
        self.exposed = isinstance(getattr(raw, "momentum", None), float | int) and not isinstance(raw.momentum, bool)
        original, first_loss = raw.after_step, raw.loss

        def loss(*views):                  # the first call builds lazy heads; no step has been taken yet
            out = first_loss(*views)
            self.start(raw)
            raw.loss = first_loss
            return out

        def after_step():
            if self.pairs is None:
                self.start(raw)
            theta = ema.snapshot(o for _, _, o in self.pairs)
            previous = ema.snapshot(t for _, t, _ in self.pairs)
            original()
            self.observe(theta, previous, float(raw.momentum) if self.exposed else None)
        raw.after_step = after_step        # the wrappers' after_step calls it: each step is watched once
        raw.loss = loss

    def start(self, learner) -> None:
        import torch
        self.pairs = ema.target_pairs(learner)
        self.parts = " + ".join(sorted({n.split(".")[0] for n, _, _ in self.pairs}))
        self.pred = ema.snapshot(t for _, t, _ in self.pairs)
        self.start_err = max((_rel(t.detach().double(), o.detach().double()) for _, t, o in self.pairs), default=0.0)
        self.dtype = ema.lowest_precision(t for _, t, _ in self.pairs)
        self.eps = torch.finfo(self.dtype).eps
        self.bufs = ema.buffer_pairs(learner)
        self.buf_pred = [t.detach().double().clone() for t, _ in self.bufs]
        self.buf_last = [t.detach().double().clone() for t, _ in self.bufs]   # at the end of the previous step

    def momentum_of(self, k: int, exposed: float | None, previous, now, theta) -> float:
        if self.schedule:
            return ema.predicted_momentum(self.schedule, self.m, k, self.K)
        if exposed is not None:
            return exposed
        m, bound = ema.fitted_momentum(previous, now, theta)
        self.m_tol, self.last_bound = max(self.m_tol, 4 * self.eps * bound), bound
        return m

    def observe(self, theta, previous, exposed: float | None) -> None:
        import torch
        now = ema.snapshot(t for _, t, _ in self.pairs)
        m = self.momentum_of(self.steps, exposed, previous, now, theta)
        self.used.append(m)
        with torch.no_grad():
            if self.schedule or exposed is not None:
                self.pred = [m * x + (1 - m) * th for x, th in zip(self.pred, theta)]
                self.worst = max(self.worst, *(_rel(t, x) for t, x in zip(now, self.pred)))
            else:
                err, ratio = ema.one_step_ratio(previous, now, theta, m, self.eps, 4 * self.eps * self.last_bound)
                self.worst, self.worst_ratio = max(self.worst, err), max(self.worst_ratio, ratio)
            if self.bufs:
                now_b = [t.detach().double() for t, _ in self.bufs]
                online = [o.detach().double() for _, o in self.bufs]
                self.buf_pred = [m * x + (1 - m) * o for x, o in zip(self.buf_pred, online)]
                if all(torch.equal(a, b) for a, b in zip(now_b, online)):
                    kind = "copied"
                elif max(_rel(a, x) for a, x in zip(now_b, self.buf_pred)) <= 1e-5:
                    kind = "averaged"
                elif all(torch.equal(a, b) for a, b in zip(now_b, self.buf_last)):
                    kind = "frozen"
                else:
                    kind = "own"
                self.buffer_steps.append(kind)
                self.buf_last = [a.clone() for a in now_b]
        self.steps += 1

    def summary(self) -> dict:
        kinds = set(self.buffer_steps)
        policy = ("none" if not self.bufs else "frozen" if "frozen" in kinds else kinds.pop() if len(kinds) == 1
                  else "mixed: " + ", ".join(sorted(kinds))) if self.pairs is not None else "none"
        how = (f"schedule {self.schedule!r} over {self.K} steps" if self.schedule else
               "exposed" if self.exposed else "fitted")
        return dict(momentum=self.m, steps=self.steps, start_error=self.start_err, worst_error=self.worst,
                    dtype=str(self.dtype or "torch.float64").replace("torch.", ""),
                    buffers=len(self.bufs) if self.pairs is not None else 0, buffer_policy=policy,
                    buffer_steps=dict((k, self.buffer_steps.count(k)) for k in sorted(set(self.buffer_steps))),
                    parts=self.parts, momentum_source=how, momenta=list(self.used), momentum_tolerance=self.m_tol,
                    worst_ratio=self.worst_ratio,
                    carried=bool(self.schedule) or self.exposed)


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def learned_linear_predictor(built: dict, ds, sc: Scale) -> dict | None:
    """For a learner exposing a learned linear predictor ``W_p`` (M, M): ``{W_p_initial, W_p, corr}`` after training,
    ``corr`` = zᵀz/B of the eval-mode embeddings of the first 1,024 (cpu) / 4,096 training images, the ones the
    spectra use; ``None`` for any other learner."""
    import torch
    from ncspec.reference.vision.evaluate import embed
    W0, learner = built.get("W_p_initial"), built.get("learner")
    M = built.get("embed_dim")
    W_p = getattr(learner, "W_p", None)
    if not (isinstance(W0, torch.Tensor) and isinstance(W_p, torch.Tensor) and tuple(W_p.shape) == (M, M)):
        return None
    net = getattr(built["encoder"], "online", built["encoder"])       # Served wraps the trained network
    mean, std = ds.mean_std()
    n = 1024 if sc.name in CPU_SCALES else 4096
    _, z = embed(net, ds.x_train[:n].to(next(net.parameters()).device), mean, std, bf16=sc.bf16,
                 channels_last=sc.channels_last)
    z = z.double().cpu()
    return dict(W_p_initial=W0.double().cpu(), W_p=W_p.detach().double().cpu(), corr=z.T @ z / z.shape[0])


def own_head_metrics(built: dict, ds, sc: Scale) -> dict | None:
    """For a learner exposing its own head after the encoder (``projector``: an expander, as VICReg's and Barlow
    Twins' authors put after the backbone; the contract's optional member): ``{center_norm, normalized_std, rankme,
    dim}`` of ``projector(z)`` in eval mode, z the eval-mode embeddings of the first 1,024 (cpu) / 4,096 training
    images (the spectra's) — the embedding the method's loss acts on; ``None`` for a learner without one."""
    import torch
    from ncspec.reference.vision.evaluate import embed, spectrum_metrics
    learner = built.get("learner")
    while getattr(learner, "_inner", None) is not None:      # the harness's wrappers
        learner = learner._inner
    head = getattr(learner, "projector", None)
    if not callable(head):
        return None
    net = getattr(built["encoder"], "online", built["encoder"])       # Served wraps the trained network
    mean, std = ds.mean_std()
    n = 1024 if sc.name in CPU_SCALES else 4096
    _, z = embed(net, ds.x_train[:n].to(next(net.parameters()).device), mean, std, bf16=sc.bf16,
                 channels_last=sc.channels_last)
    was = getattr(head, "training", None)
    if was is not None:
        head.eval()
    try:
        with torch.no_grad():
            params = list(head.parameters()) if hasattr(head, "parameters") else []
            p = head(z.to(params[0].dtype) if params else z)            # (n, D)
    finally:
        if was is not None:
            head.train(was)
    m = spectrum_metrics(p.float().cpu())
    return dict(center_norm=m["center_norm"], normalized_std=m["normalized_std"], rankme=m["rankme"],
                dim=int(p.shape[-1]))


def trajectory(doc: dict) -> list[dict]:
    """``[{step, center_norm, normalized_std, rankme, participation_ratio}]`` from initialisation on."""
    keys = ("center_norm", "normalized_std", "rankme", "participation_ratio")
    rows = [dict(step=0, **{k: doc["initial"][k] for k in keys})]
    rows += [dict(step=r["step"], **{k: r[k] for k in keys}) for r in doc["history"] if "rankme" in r]
    return rows
