"""Public functions of ``reference`` reject bad input with specific, actionable errors.

One small test per case; each matches the part of the message that names the
argument and the problem (the messages also say what was received and how to
fix it).
"""
from __future__ import annotations

import math

import pytest
import torch
from ncspec.reference import losses
from ncspec.reference.linear import LinearEncoder, gaussian_views, population_views, simulate, weights_with_spectrum
from ncspec.reference.methods import ClosedFormSiamese, build
from ncspec.reference.predictors import EMACorrelation, correlation, eigen_predictor, identity_predictor
from ncspec.reference.theory import eigenspace as th

S, B, M, N = 2, 8, 3, 5
DT = torch.float64
ALL_LOSSES = [losses.simsiam, losses.no_stopgrad, losses.wrong_side, losses.isoloss,
              losses.cosine_simsiam, losses.cosine_no_stopgrad, losses.cosine_wrong_side,
              losses.cosine_isoloss]


def _z(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=DT)


def _W(S=S, M=M, N=N):
    return weights_with_spectrum(torch.full((S, M), 0.5, dtype=DT), N,
                                 generator=torch.Generator().manual_seed(0))


def _eye(M=M):
    return torch.eye(M, dtype=DT)


# --- losses -------------------------------------------------------------------

@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda f: f.__name__)
def test_losses_accept_valid_input(loss):
    out = loss(_z(S, B, M), _z(S, B, M), _eye())
    assert out.shape == (S,) and torch.isfinite(out).all()


def test_loss_rejects_non_tensor_z1():
    with pytest.raises(TypeError, match=r"z1 must be a torch.Tensor, got list.*torch.as_tensor"):
        losses.simsiam([[0.0] * M] * B, _z(B, M), _eye())


def test_loss_rejects_1d_embeddings():
    with pytest.raises(ValueError, match=r"z1 must have at least 2 dimensions \(\.\.\., B, M\), got shape \(3,\)"):
        losses.simsiam(_z(M), _z(M), _eye())


def test_loss_rejects_view_shape_mismatch():
    with pytest.raises(ValueError, match=r"z1 and z2 must have the same shape, got \(2, 8, 3\) and \(2, 7, 3\)"):
        losses.simsiam(_z(S, B, M), _z(S, B - 1, M), _eye())


def test_loss_rejects_empty_batch():
    with pytest.raises(ValueError, match=r"z1 must hold at least one sample \(B >= 1"):
        losses.simsiam(_z(S, 0, M), _z(S, 0, M), _eye())


def test_loss_rejects_non_square_predictor():
    with pytest.raises(ValueError, match=r"W_P must be square .* got shape \(3, 4\)"):
        losses.simsiam(_z(B, M), _z(B, M), torch.zeros(M, M + 1, dtype=DT))


def test_loss_rejects_1d_predictor():
    with pytest.raises(ValueError, match=r"W_P must have at least 2 dimensions"):
        losses.simsiam(_z(B, M), _z(B, M), torch.ones(M, dtype=DT))


def test_loss_rejects_predictor_of_wrong_dimension():
    with pytest.raises(
        ValueError, match=r"embedding dimension M = 3 does not match the predictor W_P of shape \(4, 4\)"
    ):
        losses.simsiam(_z(B, M), _z(B, M), _eye(M + 1))


def test_loss_rejects_predictor_dtype_mismatch():
    with pytest.raises(ValueError, match=r"W_P \(dtype torch.float32\) must have the same dtype.*W_P.to\(z.dtype\)"):
        losses.simsiam(_z(B, M), _z(B, M), _eye().float())


def test_loss_rejects_predictor_replica_mismatch():
    with pytest.raises(ValueError, match=r"replica dimensions .* \(2,\) .* W_P \(3,\) .* do not broadcast"):
        losses.simsiam(_z(S, B, M), _z(S, B, M), _eye().expand(3, M, M))


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda f: f.__name__)
def test_loss_rejects_non_finite_z1(loss):
    z1 = _z(S, B, M)
    z1[0, 1, 2] = math.nan
    with pytest.raises(ValueError, match=r"z1 must be finite, but it contains 1 non-finite value\(s\)"):
        loss(z1, _z(S, B, M), _eye())


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda f: f.__name__)
def test_loss_rejects_non_finite_z2(loss):
    z2 = _z(S, B, M)
    z2[1, 0, 0] = math.inf
    z2[1, 1, 0] = -math.inf
    with pytest.raises(
        ValueError, match=r"z2 must be finite, but it contains 2 non-finite value\(s\).*lower the learning rate"
    ):
        loss(_z(S, B, M), z2, _eye())


def test_loss_rejects_non_finite_predictor():
    W_P = _eye()
    W_P[0, 0] = math.nan
    with pytest.raises(ValueError, match=r"W_P must be finite"):
        losses.simsiam(_z(B, M), _z(B, M), W_P)


def test_loss_finite_check_has_no_false_positive_on_overflowing_sum():
    # every entry is finite but their sum overflows to inf: must not be rejected
    big = torch.full((B, M), 1e308, dtype=DT)
    losses.simsiam(big, big, torch.zeros(M, M, dtype=DT))


def test_predict_rejects_non_square_predictor():
    with pytest.raises(ValueError, match=r"W_P must be square"):
        losses.predict(_z(B, M), torch.zeros(M, 2, dtype=DT))


def test_predict_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"z must be a torch.Tensor, got float"):
        losses.predict(1.0, _eye())


def test_neg_cosine_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"a and b must have the same \(or broadcastable\) shape"):
        losses.neg_cosine(_z(B, M), _z(B, M + 1))


def test_sg_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got int"):
        losses.SG(3)


# --- predictors ---------------------------------------------------------------

def test_correlation_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"z must be a torch.Tensor, got ndarray"):
        import numpy as np
        correlation(np.zeros((B, M)))


def test_correlation_rejects_1d():
    with pytest.raises(ValueError, match=r"z must have at least 2 dimensions"):
        correlation(_z(M))


def test_correlation_rejects_empty_batch():
    with pytest.raises(ValueError, match=r"z must hold at least one sample"):
        correlation(_z(0, M))


@pytest.mark.parametrize("rho", [1.0, -0.1, math.nan])
def test_ema_rejects_rho_out_of_range(rho):
    with pytest.raises(ValueError, match=r"rho must lie in \[0, 1\)"):
        EMACorrelation(rho)


def test_ema_rejects_non_number_rho():
    with pytest.raises(TypeError, match=r"rho must be a number in \[0, 1\), got str"):
        EMACorrelation("0.3")


@pytest.mark.parametrize("alpha", [0.0, -0.5, math.nan, math.inf])
def test_eigen_predictor_rejects_alpha_not_positive(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0, got .*exponent of ω = λ\^α"):
        eigen_predictor(_eye(), alpha)


def test_eigen_predictor_rejects_negative_eps():
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -0.1.*use eps >= 0"):
        eigen_predictor(_eye(), 1.0, eps=-0.1)


def test_eigen_predictor_rejects_non_square():
    with pytest.raises(ValueError, match=r"C must be square"):
        eigen_predictor(torch.zeros(M, M + 1, dtype=DT))


def test_eigen_predictor_rejects_non_finite():
    C = _eye()
    C[1, 1] = math.inf
    with pytest.raises(ValueError, match=r"C must be finite, but it contains 1 non-finite"):
        eigen_predictor(C)


def test_eigen_predictor_rejects_unknown_boost():
    with pytest.raises(ValueError, match=r"boost must be one of \['after', 'before'\], got 'middle'"):
        eigen_predictor(_eye(), boost="middle")


def test_eigen_predictor_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"C must be a torch.Tensor, got list"):
        eigen_predictor([[1.0, 0.0], [0.0, 1.0]])


def test_identity_predictor_rejects_non_positive_M():
    with pytest.raises(ValueError, match=r"M must be a positive int, got 0"):
        identity_predictor(0)


# --- linear.data --------------------------------------------------------------

def test_gaussian_views_rejects_non_positive_batch():
    with pytest.raises(ValueError, match=r"batch and N must be positive ints, got batch=0, N=5"):
        gaussian_views(0, N, 0.5)


def test_gaussian_views_rejects_non_positive_replicas():
    with pytest.raises(ValueError, match=r"replicas must be a positive int, got 0.*number of independent seeds"):
        gaussian_views(B, N, 0.5, replicas=0)


def test_gaussian_views_rejects_negative_sigma():
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0, got -0.5"):
        gaussian_views(B, N, -0.5)


def test_population_views_rejects_bad_N():
    with pytest.raises(ValueError, match=r"N must be a positive int, got 2.5"):
        population_views(2.5, 0.5)


def test_population_views_rejects_negative_sigma():
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0, got -1"):
        population_views(N, -1)


# --- linear.model -------------------------------------------------------------

def test_encoder_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"W must be a torch.Tensor, got list"):
        LinearEncoder([[[1.0]]])


def test_encoder_rejects_2d_weights():
    with pytest.raises(ValueError, match=r"W must have shape \(S, M, N\).*got shape \(3, 5\).*W.unsqueeze\(0\)"):
        LinearEncoder(_z(M, N))


def test_encoder_rejects_integer_weights():
    with pytest.raises(TypeError, match=r"W must be a floating-point tensor, got dtype torch.int64"):
        LinearEncoder(torch.ones(S, M, N, dtype=torch.int64))


def test_encoder_rejects_non_finite_weights():
    W = _W()
    W[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"W must be finite, but it contains 1 non-finite"):
        LinearEncoder(W)


def test_encoder_forward_rejects_wrong_input_dimension():
    with pytest.raises(ValueError, match=r"input dimension 4 does not match the encoder's N = 5"):
        LinearEncoder(_W())(_z(B, N - 1))


def test_encoder_forward_rejects_replica_mismatch():
    with pytest.raises(ValueError, match=r"x has 3 replicas .* but the encoder has S = 2"):
        LinearEncoder(_W())(_z(3, B, N))


def test_encoder_forward_rejects_dtype_mismatch():
    with pytest.raises(ValueError, match=r"x has dtype torch.float32 but the encoder's W has dtype torch.float64"):
        LinearEncoder(_W())(_z(B, N).float())


def test_encoder_forward_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got list"):
        LinearEncoder(_W())([[0.0] * N])


def test_weights_with_spectrum_rejects_M_greater_than_N():
    with pytest.raises(ValueError, match=r"M = 6 outputs exceed N = 5 inputs.*choose M ≤ N"):
        weights_with_spectrum(torch.ones(S, 6, dtype=DT), 5)


def test_weights_with_spectrum_rejects_non_positive_eigenvalues():
    lam = torch.ones(S, M, dtype=DT)
    lam[0, 1] = 0.0
    lam[1, 2] = -1.0
    with pytest.raises(ValueError, match=r"lam must be > 0 .* got 2 value\(s\) <= 0 \(smallest -1.0\)"):
        weights_with_spectrum(lam, N)


def test_weights_with_spectrum_rejects_non_finite():
    lam = torch.ones(S, M, dtype=DT)
    lam[0, 0] = math.inf
    with pytest.raises(ValueError, match=r"lam must be finite"):
        weights_with_spectrum(lam, N)


@pytest.mark.parametrize("shape", [(M,), (1, S, M)])
def test_weights_with_spectrum_rejects_wrong_rank(shape):
    with pytest.raises(ValueError, match=r"lam must have shape \(S, M\)"):
        weights_with_spectrum(torch.ones(shape, dtype=DT), N)


def test_weights_with_spectrum_rejects_integer_lam():
    with pytest.raises(TypeError, match=r"lam must be a floating-point tensor"):
        weights_with_spectrum(torch.ones(S, M, dtype=torch.int64), N)


@pytest.mark.parametrize("bad_N", [0, 5.0])
def test_weights_with_spectrum_rejects_bad_N(bad_N):
    with pytest.raises(ValueError, match=r"N must be a positive int"):
        weights_with_spectrum(torch.ones(S, M, dtype=DT), bad_N)


def test_weights_with_spectrum_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"lam must be a torch.Tensor, got list"):
        weights_with_spectrum([[1.0, 1.0]], N)


# --- linear.simulate ------------------------------------------------------------

def _setup(loss="simsiam"):
    enc = LinearEncoder(_W())
    x1, x2 = population_views(N, 0.5)
    return build(loss, enc, M), enc, (lambda k: (x1, x2))


def test_simulate_accepts_valid_input():
    learner, enc, views = _setup()
    traj = simulate(learner, enc, views, lr=0.01, steps=3, sigma=0.5)
    assert traj.eig_C.shape == (4, S, M)


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf])
def test_simulate_rejects_non_positive_lr(lr):
    learner, enc, views = _setup()
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got .*step size"):
        simulate(learner, enc, views, lr=lr, steps=3, sigma=0.5)


def test_simulate_rejects_negative_sigma():
    learner, enc, views = _setup()
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0, got -0.5"):
        simulate(learner, enc, views, lr=0.01, steps=3, sigma=-0.5)


def test_simulate_rejects_negative_steps():
    learner, enc, views = _setup()
    with pytest.raises(ValueError, match=r"steps must be an int >= 0, got steps=-1"):
        simulate(learner, enc, views, lr=0.01, steps=-1, sigma=0.5)


def test_simulate_rejects_non_positive_record_every():
    learner, enc, views = _setup()
    with pytest.raises(ValueError, match=r"record_every must be an int > 0, got record_every=0"):
        simulate(learner, enc, views, lr=0.01, steps=3, sigma=0.5, record_every=0)


def test_simulate_rejects_learner_without_protocol():
    _, enc, views = _setup()

    class NoAfterStep:
        def loss(self, x1, x2):
            return enc(x1).sum()

    with pytest.raises(TypeError, match=r"learner must follow the adapter protocol .* without after_step"):
        simulate(NoAfterStep(), enc, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_encoder_without_W():
    learner, _, views = _setup()
    with pytest.raises(TypeError, match=r"encoder must be a LinearEncoder .* got Linear without a tensor W"):
        simulate(learner, torch.nn.Linear(N, M), views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_encoder_W_without_grad():
    learner, enc, views = _setup()
    enc.W.requires_grad_(False)
    with pytest.raises(ValueError, match=r"encoder.W must require grad"):
        simulate(learner, enc, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_non_callable_views():
    learner, enc, _ = _setup()
    with pytest.raises(TypeError, match=r"views must be a callable step -> \(view1, view2\), got tuple"):
        simulate(learner, enc, population_views(N, 0.5), lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_views_not_a_pair():
    learner, enc, _ = _setup()
    x1, _ = population_views(N, 0.5)
    with pytest.raises(TypeError, match=r"views\(step\) must return a pair of tensors .* got Tensor"):
        simulate(learner, enc, lambda k: x1, lr=0.01, steps=3, sigma=0.5)


class _Learner:
    """A learner around ``enc`` whose loss is produced by ``fn(enc, x1, x2)``."""

    def __init__(self, enc, fn):
        self.enc, self.fn = enc, fn

    def parameters(self):
        return self.enc.parameters()

    def loss(self, x1, x2):
        return self.fn(self.enc, x1, x2)

    def after_step(self):
        pass


def test_simulate_rejects_non_scalar_loss():
    _, enc, views = _setup()
    per_replica = _Learner(enc, lambda e, x1, x2: losses.simsiam(e(x1), e(x2), _eye()))
    with pytest.raises(ValueError, match=r"loss must be a scalar tensor, got shape \(2,\)"):
        simulate(per_replica, enc, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_non_tensor_loss():
    _, enc, views = _setup()
    learner = _Learner(enc, lambda e, x1, x2: 0.0)
    with pytest.raises(TypeError, match=r"learner.loss must return a torch.Tensor, got float"):
        simulate(learner, enc, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_loss_with_both_branches_detached():
    _, enc, views = _setup()
    detached = _Learner(enc, lambda e, x1, x2: losses.simsiam(
        losses.SG(e(x1)), losses.SG(e(x2)), _eye()).sum())
    with pytest.raises(ValueError, match=r"the loss has no gradient path to the encoder weights W; "
                                         r"did you detach both branches\?"):
        simulate(detached, enc, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_rejects_loss_of_another_encoder():
    learner, _, views = _setup()            # learner wraps its own encoder ...
    other = LinearEncoder(_W())             # ... simulate is handed a different one
    with pytest.raises(ValueError, match=r"no gradient path to the encoder weights W.*same encoder"):
        simulate(learner, other, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_under_no_grad_names_the_cause():
    learner, enc, views = _setup()
    with torch.no_grad(), pytest.raises(ValueError, match=r"no gradient path.*torch.no_grad\(\)"):
        simulate(learner, enc, views, lr=0.01, steps=3, sigma=0.5)


def test_simulate_reports_divergence():
    learner, enc, views = _setup()
    with pytest.raises((FloatingPointError, ValueError), match=r"non-finite"):
        simulate(learner, enc, views, lr=1e6, steps=50, sigma=0.5)


# --- methods --------------------------------------------------------------------

def test_build_rejects_unknown_method():
    with pytest.raises(ValueError, match=r"method must be one of \[.*'byol'.*'simsiam'.*\], got 'no_such_method'"):
        build("no_such_method", LinearEncoder(_W()), M)


def test_build_rejects_non_positive_embed_dim():
    with pytest.raises(ValueError, match=r"embed_dim must be a positive int, got 0"):
        build("simsiam", LinearEncoder(_W()), 0)


def test_build_rejects_embed_dim_mismatch():
    with pytest.raises(
        ValueError, match=r"embed_dim = 4 does not match the encoder's output dimension M = 3.*embed_dim=3"
    ):
        build("simsiam", LinearEncoder(_W()), M + 1)


def test_build_rejects_unknown_option():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['apha'\].*valid options"):
        build("simsiam", LinearEncoder(_W()), M, apha=0.5)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_learner_rejects_non_positive_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0"):
        build("simsiam", LinearEncoder(_W()), M, alpha=alpha)


def test_learner_rejects_negative_eps_at_construction():
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got -0.1"):
        build("simsiam", LinearEncoder(_W()), M, eps=-0.1)


def test_learner_rejects_unknown_boost_at_construction():
    with pytest.raises(ValueError, match=r"boost must be one of"):
        build("isoloss", LinearEncoder(_W()), M, boost="later")


@pytest.mark.parametrize("rho", [1.0, -0.5, "0.3"])
def test_learner_rejects_bad_corr_ema(rho):
    with pytest.raises(ValueError, match=r"corr_ema must be None or a number in \[0, 1\)"):
        build("simsiam", LinearEncoder(_W()), M, corr_ema=rho)


def test_learner_rejects_stop_grad_with_isoloss():
    with pytest.raises(ValueError, match=r"IsoLoss fixes its own stop-gradient"):
        build("isoloss", LinearEncoder(_W()), M, stop_grad="none")


def test_learner_rejects_non_callable_encoder():
    with pytest.raises(TypeError, match=r"encoder must be a callable module .* got Tensor"):
        ClosedFormSiamese(_W())


def test_learner_loss_rejects_view_shape_mismatch():
    learner = build("simsiam", LinearEncoder(_W()), M)
    with pytest.raises(ValueError, match=r"view1 and view2 must have the same shape, got \(8, 5\) and \(7, 5\)"):
        learner.loss(_z(B, N), _z(B - 1, N))


def test_learner_loss_rejects_non_tensor_view():
    learner = build("simsiam", LinearEncoder(_W()), M)
    with pytest.raises(TypeError, match=r"view2 must be a torch.Tensor, got list"):
        learner.loss(_z(B, N), [[0.0] * N] * B)


def test_learner_loss_rejects_non_finite_encoder_output():
    enc = LinearEncoder(_W())
    learner = build("simsiam", enc, M)
    with torch.no_grad():
        enc.W[1, 0, 0] = math.nan           # the weights went bad after construction
    with pytest.raises(ValueError, match=r"z1 = encoder\(view1\) must be finite, but it contains \d+ non-finite"):
        learner.loss(_z(B, N), _z(B, N))


def test_learner_loss_rejects_non_finite_views():
    learner = build("simsiam", LinearEncoder(_W()), M)
    x2 = _z(B, N)
    x2[0, 0] = math.inf
    with pytest.raises(ValueError, match=r"z2 = encoder\(view2\) must be finite.*check the views"):
        learner.loss(_z(B, N), x2)


# --- theory.eigenspace (what it already rejects; not edited here) -----------------

def test_theory_kappa_rejects_negative_sigma():
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0, got -1"):
        th.kappa(-1.0)


@pytest.mark.parametrize("fn", [
    lambda a: th.predictor_eigenvalues(torch.ones(3, dtype=DT), a),
    lambda a: th.fixed_point("simsiam", a, 0.0),
    lambda a: th.ode_solution(torch.ones(3, dtype=DT), torch.zeros(2), "isoloss", a, 0.0),
    lambda a: th.eigenvalue_velocity(torch.ones(3, dtype=DT), "simsiam", a, 0.0),
], ids=["predictor_eigenvalues", "fixed_point", "ode_solution", "eigenvalue_velocity"])
@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_theory_rejects_non_positive_alpha(fn, alpha):
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0"):
        fn(alpha)


@pytest.mark.parametrize("fn", [
    lambda: th.mode_rate("simclr", torch.ones(3), 0.0),
    lambda: th.fixed_point("simclr", 1.0, 0.0),
    lambda: th.ode_solution(torch.ones(3), torch.zeros(2), "simclr", 1.0, 0.0),
    lambda: th.euler_trajectory(torch.ones(3), "simclr", 1.0, 0.0, lr=0.1, steps=2),
], ids=["mode_rate", "fixed_point", "ode_solution", "euler_trajectory"])
def test_theory_rejects_unknown_loss(fn):
    with pytest.raises(ValueError, match=r"loss must be one of .* got 'simclr'"):
        fn()


@pytest.mark.parametrize("fn", [
    lambda: th.time_to_reach(torch.full((3,), 0.1, dtype=DT), 0.5, "wrong_side", 1.0, 0.0),
    lambda: th.escape_time_asymptotic(torch.full((3,), 0.1, dtype=DT), "no_stopgrad", 1.0),
], ids=["time_to_reach", "escape_time_asymptotic"])
def test_theory_escape_times_reject_losses_without_a_closed_form(fn):
    with pytest.raises(ValueError, match=r"loss must be one of \['isoloss', 'simsiam'\]"):
        fn()


def test_theory_mode_rate_rejects_negative_sigma():
    with pytest.raises(ValueError, match=r"sigma must be a finite number >= 0"):
        th.mode_rate("simsiam", torch.ones(3), -0.1)


def test_theory_linear_ntk_rejects_non_tensor():
    with pytest.raises(TypeError, match=r"X must be a torch.Tensor, got list"):
        th.linear_ntk([[1.0, 2.0]], M)


def test_theory_linear_ntk_rejects_1d():
    with pytest.raises(ValueError, match=r"X must have at least 2 dimensions"):
        th.linear_ntk(torch.ones(N), M)


# --- theory/eigenspace.py (closed forms) --------------------------------------
from ncspec.reference.theory import eigenspace as _th  # noqa: E402  (the closed-form section imports its module where it starts)


@pytest.mark.parametrize("call,match", [
    (lambda: _th.predictor_eigenvalues(torch.ones(3), 1.0, boost="bfore"), "boost must be one of"),
    (lambda: _th.predictor_eigenvalues(torch.ones(3), 1.0, eps=-0.1), "eps must be"),
    (lambda: _th.predictor_eigenvalues([1.0, 2.0], 1.0), "must be a torch.Tensor"),
    (lambda: _th.euler_trajectory(torch.ones(3), "simsiam", 1.0, 0.0, lr=0.0, steps=3), "lr must be"),
    (lambda: _th.euler_trajectory(torch.ones(3), "simsiam", 1.0, 0.0, lr=0.1, steps=2.5), "steps must be"),
    (lambda: _th.ode_solution(torch.tensor([0.0, 1.0]), torch.zeros(1), "simsiam", 1.0, 0.0), "lam0 must be > 0"),
    (lambda: _th.ode_solution(torch.ones(2), torch.zeros(1), "simsiam", 1.0, 0.0, eta=-1.0), "eta must be"),
    (lambda: _th.time_to_reach(torch.tensor([0.1]), 0.5, "simsiam", 0.0, 0.0), "alpha must be"),
    (lambda: _th.time_to_reach(torch.tensor([0.1]), 2.0, "isoloss", 1.0, 0.0), "between every λ0 and the fixed point"),
    (lambda: _th.escape_time_asymptotic(torch.tensor([0.0]), "simsiam", 1.0), "lam0 must be > 0"),
    (lambda: _th.normalized_top_mode(torch.ones(1), torch.zeros(1), 0.0, 0.0), "alpha must be"),
    (lambda: _th.cosine_mean_omega(torch.ones(3), torch.ones(4)), "same shape"),
    (lambda: _th.linear_ntk(torch.ones(2, 3), 0), "M must be a positive int"),
    (lambda: _th.linear_ntk(torch.ones(2, 3, 4), 2), r"X must be a \(B, N\) batch"),
])
def test_theory_rejects_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_normalized_predictor_eigenvalues_of_zero_spectrum_are_finite():
    assert torch.isfinite(_th.predictor_eigenvalues(torch.zeros(3), 1.0, normalize=True)).all()


# --- the same simulator on a nonlinear (ReLU) encoder -------------------------------------------

def _relu(replicas=3, lam=(0.2, 0.5, 2.0)):
    from ncspec.reference.encoders import MLPEncoder, set_output_spectrum
    enc = MLPEncoder(N, (16,), 3, batchnorm=False, replicas=replicas, generator=torch.Generator().manual_seed(0),
                     dtype=torch.float64)
    xe = gaussian_views(512, N, 0.3, generator=torch.Generator().manual_seed(1))[0]
    return set_output_spectrum(enc, torch.tensor(lam, dtype=torch.float64).expand(replicas, 3), xe), xe


def test_set_output_spectrum_gives_C_the_requested_eigenvalues():
    enc, xe = _relu()
    z = enc(xe)
    ev = torch.linalg.eigvalsh(z.transpose(-1, -2) @ z / z.shape[-2])
    assert torch.allclose(ev, torch.tensor([0.2, 0.5, 2.0], dtype=torch.float64).expand(3, 3), rtol=1e-10)
    with pytest.raises(ValueError, match=r"lam must hold 3 positive eigenvalues for each of the 3 replicas"):
        _relu(lam=(0.2, -0.5, 2.0))


def test_simulate_trains_a_relu_encoder_with_eval_views():
    enc, xe = _relu()
    learner = build("simsiam", enc, 3)
    g = torch.Generator().manual_seed(2)
    traj = simulate(learner, enc, lambda k: gaussian_views(64, N, 0.3, replicas=3, generator=g), lr=0.01, steps=4,
                    sigma=0.3, record_every=2, eval_views=xe)
    assert traj.W is None and traj.eig_C.shape == traj.eig_cov.shape == (3, 3, 3)
    assert torch.allclose(traj.eig_C[0], torch.tensor([0.2, 0.5, 2.0], dtype=torch.float64), rtol=1e-10)
    assert (traj.eig_cov <= traj.eig_C[..., -1:] + 1e-12).all() and traj.grad_sq[:-1].gt(0).all()


def test_simulate_names_eval_views_for_a_nonlinear_encoder():
    enc, xe = _relu()
    views = lambda k: gaussian_views(64, N, 0.3, replicas=3)
    with pytest.raises(TypeError, match=r"got MLPEncoder without a tensor W.*pass eval_views= to train a nonlinear"):
        simulate(build("simsiam", enc, 3), enc, views, lr=0.01, steps=1, sigma=0.3)
    lin = torch.nn.Sequential(torch.nn.Linear(N, 3).double())
    with pytest.raises(TypeError, match=r"must carry S replicas .* got Sequential with replicas=None"):
        simulate(build("simsiam", lin, 3), lin, views, lr=0.01, steps=1, sigma=0.3, eval_views=xe)
