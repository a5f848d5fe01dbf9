"""The collapse monitor as a PyTorch Lightning callback: attach it, change nothing in the module.

    import pytorch_lightning as pl
    from ncspec.conformance.monitor.lightning import CollapseMonitorCallback

    trainer = pl.Trainer(max_epochs=10, callbacks=[CollapseMonitorCallback()])
    trainer.fit(model, dataloader)          # lightly's SimSiam / BYOL module, unchanged

**How it finds the embeddings.** A forward hook on the module's projection head — the submodule, at any depth
and under any of its names (a head also held inside a ``Sequential`` is still found by its attribute name), whose
own name is ``projection_head``, ``projector``, ``projection``, ``student_projection_head`` or ``student_head``, the
shortest path first (lightly's examples use ``projection_head``; ``module="path.to.head"`` names another). During a
training batch the head is called once per view; the first two outputs are the two views' embeddings ``z1, z2``.
A module whose head runs once on both views concatenated is split in half.

**EMA target.** Siblings named ``X_momentum``, ``X_ema``, ``X_target``, ``momentum_X``, ``ema_X`` or ``target_X``
next to ``X`` (lightly's BYOL: ``backbone_momentum``; a hand-written BYOL: ``target_projector``), or
``teacher_X`` next to ``student_X`` (DINO), are taken as the target and the online network;
``ema_targets={"online.name": "target.name", ...}`` names them instead. The monitor then tracks the target's lag
(C2) and WARNS about a target that never moves (momentum stuck at 1) or that is the online network itself.

Observations cost no host sync; the callback reports every ``report_every`` training batches, at the end of
every epoch and at the end of training (``mode="raise"`` then stops ``fit`` with a
:class:`~ncspec.reference.monitor.CollapseError`). Statistics are logged to the trainer's logger as
``collapse/…`` at each report.
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch import Tensor, nn

from ...reference.monitor import CollapseMonitor, Thresholds, Verdict

HEAD_NAMES = ("projection_head", "projector", "projection", "student_projection_head", "student_head")


#: how a target is named beside its online module ``X`` (the prefixes and suffixes of EMA copies in the wild)
TARGET_PREFIXES, TARGET_SUFFIXES = ("target_", "ema_", "momentum_"), ("_momentum", "_ema", "_target")


def _module_names(module: nn.Module) -> list[str]:
    return [n for n, _ in module.named_modules() if n]


def find_head(module: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """``(name, submodule)`` of the projection head whose outputs are the embeddings: ``name`` if given, else the
    shortest path whose last component is one of :data:`HEAD_NAMES` (every alias of a shared submodule counts)."""
    if name is not None:
        try:
            return name, module.get_submodule(name)
        except AttributeError as e:
            raise ValueError(f"{type(module).__name__} has no submodule {name!r}; pass module= one of "
                             f"{_module_names(module)[:20]}.") from e
    paths = [(n, m) for n, m in module.named_modules(remove_duplicate=False) if n]
    for head in HEAD_NAMES:
        found = sorted((p for p in paths if p[0].rsplit(".", 1)[-1] == head), key=lambda p: p[0].count("."))
        if found:
            return found[0]
    raise ValueError(f"found no projection head in {type(module).__name__} (looked for submodules named "
                     f"{HEAD_NAMES}); pass CollapseMonitorCallback(module='name.of.head') naming the module whose "
                     f"output is the embedding, e.g. one of {_module_names(module)[:20]}.")


def _target_twin(name: str, siblings: dict) -> str | None:
    """The online sibling of a target named ``name`` (:data:`TARGET_PREFIXES`, :data:`TARGET_SUFFIXES`,
    ``teacher_X`` of ``student_X``), or None."""
    for pre in TARGET_PREFIXES:
        if name.startswith(pre) and name[len(pre):] in siblings:
            return name[len(pre):]
    for suf in TARGET_SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in siblings:
            return name[: -len(suf)]
    if name.startswith("teacher_") and "student_" + name[len("teacher_"):] in siblings:
        return "student_" + name[len("teacher_"):]
    return None


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def find_ema_pairs(module: nn.Module, names: dict | None = None) -> tuple[nn.ModuleList, nn.ModuleList] | None:
    """``(online, target)`` module lists: the pairs ``names`` gives (``{"online.name": "target.name"}``), else the
    siblings named as an EMA target of one another at any depth (``target_X``/``ema_X``/``momentum_X``,
    ``X_momentum``/``X_ema``/``X_target`` beside ``X``; ``teacher_X`` beside ``student_X``)."""
    online, target = [], []
    if names is not None:
        for on, tg in dict(names).items():
            try:
                o, t = module.get_submodule(on), module.get_submodule(tg)
            except AttributeError as e:
                raise ValueError(f"ema_targets names {on!r} → {tg!r}, but {type(module).__name__} has no such "
                                 f"submodule ({e}); pass names among {_module_names(module)[:20]}.") from e
            online.append(o)
            target.append(t)
    else:
        for _, parent in module.named_modules():
            children = dict(parent.named_children())
            for n, m in children.items():
                twin = _target_twin(n, children)
                if twin is not None and _has_params(m) and children[twin] is not m:
                    online.append(children[twin])
                    target.append(m)
    if not online:
        return None
    return nn.ModuleList(online), nn.ModuleList(target)


class CollapseMonitorCallback(pl.Callback):
    """Lightning callback around a :class:`~ncspec.reference.monitor.CollapseMonitor`.

    Args:
        module: dotted name of the submodule whose output is the embedding (default: found by name).
        every: observe every k-th training batch.
        report_every: training batches between reports (host syncs); epochs end with a report too.
        mode, method, thresholds: as for the monitor (``method`` defaults to the module's class name).
        ema: track an EMA target found by :func:`find_ema_pairs` (``False`` to skip).
        ema_targets: ``{"online.name": "target.name", ...}``: the EMA target's modules named, where their names
            follow none of the conventions :func:`find_ema_pairs` knows.
        save_embeddings: a ``.pt`` path; the observed embeddings are written there at the end of training,
            for ``ncspec diagnose``.
        final_report: print the final verdict at the end of training, healthy or not (with the step of the first
            flag, if any).
    """

    def __init__(self, *, module: str | None = None, every: int = 1, report_every: int = 50, mode: str = "warn",
                 method: str | None = None, thresholds: Thresholds | None = None, ema: bool = True,
                 save_embeddings: str | Path | None = None, final_report: bool = True,
                 ema_targets: dict | None = None):
        super().__init__()
        if not (isinstance(report_every, int) and report_every >= 1):
            raise ValueError(f"report_every must be an int >= 1 (training batches between reports), "
                             f"got {report_every!r}.")
        self.module_name, self.every, self.report_every, self.use_ema = module, every, report_every, ema
        self.ema_targets = ema_targets
        self.monitor = CollapseMonitor(mode=mode, every=1, method=method, thresholds=thresholds,
                                       keep_embeddings=save_embeddings is not None)
        self.save_path = None if save_embeddings is None else Path(save_embeddings)
        self.final_report = final_report
        self._captured: list[Tensor] = []
        self._capturing = False
        self._handle = None
        self._ema = None
        self._batches = 0

    # -- wiring
    def setup(self, trainer, pl_module, stage=None):
        if self._handle is not None:
            return
        self.head_name, head = find_head(pl_module, self.module_name)
        self._handle = head.register_forward_hook(self._hook)
        if self.monitor.method is None:
            self.monitor.method = type(pl_module).__name__
        self._ema = find_ema_pairs(pl_module, self.ema_targets) if self.use_ema else None

    def teardown(self, trainer, pl_module, stage=None):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module, inputs, output):
        if self._capturing and module.training:
            z = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(z, Tensor):
                self._captured.append(z.detach())

    # -- training
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._captured = []
        self._capturing = self._batches % self.every == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._batches += 1
        captured, self._captured, self._capturing = self._captured, [], False
        if captured:
            z1, z2 = self._views(captured)
            ema = dict(online=self._ema[0], target=self._ema[1]) if self._ema is not None else {}
            self.monitor.observe(z1.flatten(1), None if z2 is None else z2.flatten(1), step=trainer.global_step, **ema)
        if self._batches % self.report_every == 0:
            self._report(trainer)

    @staticmethod
    def _views(captured: list[Tensor]) -> tuple[Tensor, Tensor | None]:
        if len(captured) >= 2 and captured[0].shape == captured[1].shape:
            return captured[0], captured[1]
        z = captured[0]
        if len(captured) == 1 and z.shape[0] % 2 == 0 and z.shape[0] >= 4:
            return z[: z.shape[0] // 2], z[z.shape[0] // 2:]        # both views in one call, concatenated
        return z, None

    def on_train_epoch_end(self, trainer, pl_module):
        self._report(trainer)

    def on_train_end(self, trainer, pl_module):
        v = self._report(trainer)
        if self.final_report and getattr(trainer, "is_global_zero", True):
            print(self.final_summary(v))
        if self.save_path is not None:
            self.monitor.save(self.save_path)

    def _report(self, trainer) -> Verdict:
        v = self.monitor.report()
        if trainer.logger is not None and self.monitor.history:
            h = self.monitor.history[-1]
            keys = ("center_norm", "normalized_std", "effective_rank", "rankme", "participation_ratio", "ema_lag")
            metrics = {f"collapse/{k}": float(h[k]) for k in keys if k in h and h[k] == h[k]}
            metrics["collapse/flagged"] = float(not v.healthy)
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        return v

    # -- results
    def final_summary(self, v: Verdict | None = None) -> str:
        """One paragraph: observations seen, the first flag (if any) and the final verdict with its explanation."""
        v = v or self.monitor.verdict
        n = len(self.monitor.history)
        first = self.monitor.first_flag()
        head = (f"collapse monitor: {n} observation(s); "
                + ("never flagged" if first is None else f"first flagged at step {first.step} ({first.state})"))
        return f"{head}\nfinal verdict: {v}"

    @property
    def verdict(self) -> Verdict:
        return self.monitor.verdict


__all__ = ["CollapseMonitorCallback", "find_head", "find_ema_pairs"]
