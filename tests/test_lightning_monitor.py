"""A real client: lightly's SimSiam written as a Lightning module the way lightly's examples write it
(tests/lightly_clients.py), trained on the CIFAR-10 fragment with `CollapseMonitorCallback` attached and nothing
else changed. Healthy, it is reported healthy; with the stop-grad removed (H2; Halvagal et al. 2023 eq. 6 — J2,
Jha et al. 2024 Fig. 4) it is flagged as complete collapse, with the claim and the cause: its projection head ends
in a BatchNorm without affine parameters, so the collapse J1 predicts puts the embeddings on one line through the
origin rather than in one point; `ncspec diagnose` on the embeddings the callback saved gives the same verdicts as
the live callback."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")
pytest.importorskip("lightly")

from lightly_clients import BYOL, SimSiam, SimSiamNoStopGrad, TwoViews  # noqa: E402
from ncspec.conformance.cli import main  # noqa: E402
from ncspec.conformance.monitor.lightning import CollapseMonitorCallback, find_ema_pairs, find_head  # noqa: E402
from ncspec.reference.monitor import COMPLETE, DIMENSIONAL  # noqa: E402

#: Measured with this module and fit() (tiny conv backbone, B = 64, SGD lr 0.3, momentum 0.9, seeds 0–4; see
#: docs/monitor.md):
#: without stop-grad the first flag came at steps 47, 91, 65, 53, 22 — within BROKEN_STEPS = 100 for every seed (CI
#: runs seed 0); the healthy module was never flagged over 300–400 steps per seed (1 − λ_max(E ẑẑᵀ) ≥ 0.46 against
#: the threshold 0.05).
HEALTHY_STEPS, BROKEN_STEPS, BATCH, LR = 200, 100, 64, 0.3


def fragment_arrays():
    base = Path(os.environ.get("NCSPEC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    p = base / "data" / "cifar10_fragment.npz"
    if not p.is_file():
        pytest.skip(f"the CIFAR-10 fragment is not available at {p} (set NCSPEC_SHARED)")
    d = np.load(p, allow_pickle=False)
    return d["x_train"][:2048], d["y_train"][:2048]


def fit(module_cls, callback, steps=HEALTHY_STEPS, **kw):
    torch.set_num_threads(int(os.environ.get("NCSPEC_THREADS", "1")))
    pl.seed_everything(0, verbose=False)
    ds = TwoViews(*fragment_arrays())
    trainer = pl.Trainer(max_steps=steps, callbacks=[callback], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(module_cls(lr=LR, **kw), ds.loader(BATCH))
    return callback


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("lightning")
    healthy = fit(SimSiam, CollapseMonitorCallback(mode="record", save_embeddings=d / "simsiam.pt"))
    broken = fit(SimSiamNoStopGrad, CollapseMonitorCallback(mode="record", save_embeddings=d / "nosg.pt"),
                 steps=BROKEN_STEPS)
    return healthy, broken, d


def test_lightly_simsiam_with_the_callback_is_reported_healthy(runs):
    healthy, broken, _ = runs
    assert healthy.head_name == "projection_head" and len(healthy.monitor.history) == HEALTHY_STEPS
    assert not healthy.monitor.ever_flagged, healthy.monitor.first_flag()
    # the final verdict is printed at the end of training for a healthy run too
    assert healthy.final_summary().startswith(f"collapse monitor: {HEALTHY_STEPS} observation(s); never flagged")
    assert "final verdict: healthy" in healthy.final_summary()
    assert f"first flagged at step {broken.monitor.first_flag().step}" in broken.final_summary()


def test_lightly_simsiam_without_stop_grad_is_flagged_with_the_explanation(runs):
    """The same module with `z = z.detach()` deleted: flagged within the measured budget, explained by J1/J2/H2 and
    the missing stop-grad (method from the class name). Its batch-standardised head first concentrates the spectrum
    (dimensional collapse read against the run's own start) and then reaches the line the standardisation allows
    (complete collapse); which of the two holds at step 100 depends on the observations' order, both name the
    cause."""
    _, broken, _ = runs
    v = broken.monitor.verdict
    assert v.state in (COMPLETE, DIMENSIONAL), v
    assert {"J1", "J2", "H2"} <= set(v.claims) and "stop-grad missing" in str(v)
    first = broken.monitor.first_flag()
    assert first.step < BROKEN_STEPS and "stop-grad missing" in str(first)
    assert any("one line through the origin" in w.reason for w in broken.monitor.verdicts)


def test_diagnose_on_the_saved_embeddings_gives_the_live_verdicts(runs, tmp_path):
    healthy, broken, d = runs
    codes = []
    for cb, name in ((healthy, "simsiam.pt"), (broken, "nosg.pt")):
        out = tmp_path / f"{name}.json"
        codes.append(main(["diagnose", str(d / name), "--json", str(out)]))
        replay = json.loads(out.read_text())
        assert [h["verdict"] for h in replay["history"]] == [v.state for v in cb.monitor.verdicts]
    assert codes == [0, 1]                                   # healthy exits 0, the collapsed run 1


def test_raise_mode_stops_fit_for_ci_gating():
    """The gate itself: a CollapseError raised at a report leaves Trainer.fit (a deliberately strict threshold makes
    the first report fail, so the run stops after two steps)."""
    from ncspec.reference.monitor import CollapseError, Thresholds
    gate = CollapseMonitorCallback(mode="raise", report_every=2, thresholds=Thresholds(complete_total_var=2.0,
                                                                                       patience=1))
    with pytest.raises(CollapseError, match="complete collapse"):
        fit(SimSiam, gate)
    assert len(gate.monitor.history) == 2


def test_the_hook_finds_lightly_byol_heads_and_its_momentum_target():
    model = BYOL()
    assert find_head(model)[0] == "projection_head"
    online, target = find_ema_pairs(model)
    assert [type(m).__name__ for m in target] == [type(m).__name__ for m in online] and len(online) == 2
    assert target[0] is model.backbone_momentum and online[0] is model.backbone


def test_a_module_without_a_recognisable_head_gets_an_error_naming_the_fix():
    class Plain(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"CollapseMonitorCallback\(module='name.of.head'\).*'net'"):
        find_head(Plain())
    assert find_head(Plain(), "net")[0] == "net"
