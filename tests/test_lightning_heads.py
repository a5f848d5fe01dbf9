"""The callback finds the heads users name (issue 26): a hand-written Lightning BYOL whose head is ``self.projector``
and whose EMA target is ``self.target_backbone`` / ``self.target_projector`` is monitored as written, target
included; a target named ``ema_X``, ``momentum_X``, ``X_ema`` or given by ``ema_targets=`` is found too; a target
that never moves (m = 1 from step 0) is a WARNING, not a note."""
from __future__ import annotations

import copy
import math
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("pytorch_lightning")

from fragment import require_fragment  # noqa: E402
from ncspec.conformance.monitor.handwritten_simsiam import conv_net, mlp_head, simple_views  # noqa: E402
from ncspec.conformance.monitor.lightning import CollapseMonitorCallback, find_ema_pairs, find_head  # noqa: E402
from ncspec.reference.methods.center import neg_cos  # noqa: E402
from ncspec.reference.monitor import CollapseWarning  # noqa: E402


class LitBYOL(pl.LightningModule):
    """BYOL as a user writes it in Lightning (Grill et al. 2020, §3.1): online ``backbone → projector → predictor``,
    target ``target_backbone → target_projector``, ξ ← mξ + (1 − m)θ after each step; SGD momentum 0.9 with cosine
    decay. ``m = 1`` freezes the target at its initialisation (the fault)."""

    def __init__(self, widths=(8, 16, 32, 64), dim: int = 32, lr: float = 0.1, m: float = 0.99, steps: int = 100):
        super().__init__()
        self.backbone = conv_net(widths)
        self.projector = mlp_head(widths[-1], 4 * dim, dim)
        self.predictor = mlp_head(dim, 4 * dim, dim)
        self.target_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.lr, self.m, self.steps = lr, m, steps

    def training_step(self, batch, batch_idx):
        x1, x2 = batch
        z1, z2 = self.projector(self.backbone(x1)), self.projector(self.backbone(x2))
        with torch.no_grad():
            t1, t2 = (self.target_projector(self.target_backbone(x)) for x in (x1, x2))
        return neg_cos(self.predictor(z1), t2) / 2 + neg_cos(self.predictor(z2), t1) / 2

    def on_train_batch_end(self, outputs, batch, batch_idx):
        with torch.no_grad():
            for on, tg in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
                for po, pt in zip(on.parameters(), tg.parameters()):
                    pt.mul_(self.m).add_(po, alpha=1 - self.m)

    def configure_optimizers(self):
        opt = torch.optim.SGD([*self.backbone.parameters(), *self.projector.parameters(),
                               *self.predictor.parameters()], lr=self.lr, momentum=0.9, weight_decay=1e-5)
        return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.steps)]


class Views(torch.utils.data.IterableDataset):
    """Endless batches of two crop / flip / brightness views of the fragment's images (the hand-written loop's)."""

    def __init__(self, x, batch: int, seed: int = 0):
        self.x, self.batch, self.g = x, batch, torch.Generator().manual_seed(seed)

    def __iter__(self):
        while True:
            xb = self.x[torch.randint(0, self.x.shape[0], (self.batch,), generator=self.g)]
            yield simple_views(xb, self.g), simple_views(xb, self.g)


def images(limit: int = 1024):
    with np.load(require_fragment(), allow_pickle=False) as f:
        return torch.from_numpy(np.ascontiguousarray(f["x_train"][:limit])).permute(0, 3, 1, 2).contiguous()


def fit(module, callback, steps, batch=64):
    torch.set_num_threads(int(os.environ.get("NCSPEC_THREADS", "1")))
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(max_steps=steps, callbacks=[callback], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    loader = torch.utils.data.DataLoader(Views(images(), batch), batch_size=None)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers).*")
        trainer.fit(module, loader)
    return callback


def test_a_module_whose_head_is_self_projector_is_found_with_its_target_projector():
    model = LitBYOL()
    assert find_head(model) == ("projector", model.projector)
    online, target = find_ema_pairs(model)
    assert {(id(o), id(t)) for o, t in zip(online, target)} == {
        (id(model.backbone), id(model.target_backbone)), (id(model.projector), id(model.target_projector))}


def test_a_head_also_held_inside_a_sequential_is_found_by_its_attribute_name():
    """``named_modules()`` lists a shared submodule once, under its first path (here ``online.1``): the head is
    found under every alias, by its own name."""
    class Aliased(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.online = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
            self.projector = self.online[1]
    m = Aliased()
    assert find_head(m) == ("projector", m.projector)


@pytest.mark.parametrize("name", ["target_head", "ema_head", "momentum_head", "head_ema", "head_momentum",
                                  "head_target"])
def test_ema_targets_are_found_by_the_names_users_give_them(name):
    class Named(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 4)
            setattr(self, name, copy.deepcopy(self.head))
    m = Named()
    online, target = find_ema_pairs(m)
    assert online[0] is m.head and target[0] is getattr(m, name)


def test_an_ema_target_named_otherwise_is_given_by_an_option_and_a_wrong_name_gets_the_fix():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.student = nn.Linear(4, 4)
            self.slow = copy.deepcopy(self.student)
    m = Odd()
    assert find_ema_pairs(m) is None
    online, target = find_ema_pairs(m, {"student": "slow"})
    assert online[0] is m.student and target[0] is m.slow
    with pytest.raises(ValueError, match=r"ema_targets names 'student' → 'teacher'.*'slow'"):
        find_ema_pairs(m, {"student": "teacher"})


def test_lightning_byol_with_self_projector_is_monitored_as_written_target_included():
    """A short healthy run: both views observed at every step, the lag of the EMA target tracked (it grows from 0
    as θ moves and ξ follows at m = 0.99), never flagged, no warning."""
    cb = fit(LitBYOL(steps=30), CollapseMonitorCallback(mode="warn", report_every=5, final_report=False), steps=30)
    mon = cb.monitor
    assert cb.head_name == "projector" and len(mon.history) == 30
    lags = [h["ema_lag"] for h in mon.history]
    assert lags[0] >= 0 and all(math.isfinite(v) for v in lags) and lags[-1] > lags[0]
    assert not mon.ever_flagged and mon.first_warning() is None


def test_lightning_byol_with_a_frozen_target_is_a_warning():
    """m = 1 from step 0: the target never moves; after 3 observations (``Thresholds.frozen_target``) the verdict
    carries a WARNING naming the stuck momentum, and a CollapseWarning is issued at the next report."""
    cb = CollapseMonitorCallback(mode="warn", report_every=5, final_report=False)
    with pytest.warns(CollapseWarning, match="EMA target has not moved .*momentum stuck at 1"):
        fit(LitBYOL(m=1.0, steps=10), cb, steps=10)
    first = cb.monitor.first_warning()
    assert first is cb.monitor.verdicts[2] and "WARNING" in str(first)      # the third observation
