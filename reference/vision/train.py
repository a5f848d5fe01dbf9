"""Self-supervised training on images: one loop for every method, device and world size.

``train(TrainConfig(...)) -> dict``. Data live on the device as uint8; each step draws the
augmentation parameters of the *global* batch (so the data-parallel run sees the same views as the
single-process run) and every rank augments its slice. The encoder runs once per view (bf16
autocast, channels_last, optionally compiled, DDP when launched by torchrun); the learner of the
adapter protocol gets the gathered embeddings through :class:`~ncspec.reference.vision.served.Served`.

Alongside: an online linear readout on detached backbone features (what Halvagal et al. 2022 report), a
weighted kNN monitor (k = 200, τ = 0.1, cosine; lightly's), an offline linear probe at the end,
spectrum metrics with a collapse warning, metrics as JSON/CSV (+ plots), and atomic checkpoints
from which ``resume=True`` continues exactly: the data order and the augmentation draws are
functions of (seed, epoch), and every state (weights, EMA target, optimiser, readout, learner,
RNG) is in the checkpoint, so kill-and-resume reproduces the uninterrupted run bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import math
import time

import torch

from .checkpoint import CKPT_SCHEMA, CheckpointError  # noqa: F401  (imported from here by callers)
from .config import TrainConfig, default_method_options, resolve_device, resolve_method_options  # noqa: F401
from .data import ImageDataset
from .plots import plot_metrics
from .trainer import Trainer


def train(config: TrainConfig, *, dataset: ImageDataset | None = None, builder=None,
          stop_after_epoch: int | None = None, return_model: bool = False) -> dict:
    """Train; returns the metrics document (also written under ``config.out``).

    Under torchrun the process group this call joins is also left by it: a process that exits
    with gloo's threads still running can abort ("terminate called without an active exception").
    """
    owns_group = not torch.distributed.is_initialized()
    try:
        return _train(config, dataset=dataset, builder=builder, stop_after_epoch=stop_after_epoch,
                      return_model=return_model)
    finally:
        if owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(config: TrainConfig, *, dataset: ImageDataset | None, builder, stop_after_epoch: int | None,
           return_model: bool) -> dict:
    """The recipe: build, resume, evaluate the untrained network, train epoch by epoch (evaluate, judge collapse,
    write metrics and checkpoints), evaluate at the end, plot."""
    cfg = config
    tr = Trainer(cfg, dataset=dataset, builder=builder)
    _resume(tr)
    t_start = time.perf_counter()
    if cfg.eval_at_start and tr.rank == 0 and tr.state["step"] == 0 and "initial" not in tr.state:
        _evaluate_initial(tr)
    console = _console(tr)
    with _progress(cfg.progress and tr.rank == 0) as progress:
        task = progress.add_task("train", total=tr.total_steps, completed=tr.state["step"]) if progress else None
        while tr.state["epoch"] < cfg.epochs and tr.state["step"] < tr.total_steps:
            e = tr.state["epoch"]
            row = tr.run_epoch(e, progress, task)
            tr.state["epoch"] = e + 1
            last = tr.state["epoch"] >= cfg.epochs or tr.state["step"] >= tr.total_steps
            if not math.isfinite(row["loss"]):
                tr.state["warnings"].append(f"epoch {e + 1}: loss is {row['loss']} (diverged); stopping")
                tr.state["status"] = "diverged"
            if tr.rank == 0 and (last or (cfg.eval_every and (e + 1) % cfg.eval_every == 0)) \
                    and tr.state["status"] != "diverged":
                _evaluate_epoch(tr, row)
            _judge_collapse(tr, row, console)
            tr.state["history"].append(row)
            if progress:
                progress.update(task, description=f"epoch {e + 1}/{cfg.epochs} loss {row['loss']:.4f}"
                                + (f" kNN {row['knn_acc']:.3f}" if "knn_acc" in row else ""))
            if tr.rank == 0 and tr.out:
                tr.write_metrics()
                if last or (cfg.checkpoint_every and (e + 1) % cfg.checkpoint_every == 0):
                    tr.save_checkpoint()
            if tr.world > 1:
                torch.distributed.barrier()
            if tr.state["status"] == "diverged":
                break
            if stop_after_epoch is not None and tr.state["epoch"] >= stop_after_epoch and not last:
                doc = tr.write_metrics() if tr.rank == 0 else {}
                return {**doc, "model": tr.encoder} if return_model else doc
    if tr.state["status"] != "diverged":
        tr.state["status"] = "done"
    final = _evaluate_final(tr, t_start)
    doc = tr.write_metrics(final) if tr.rank == 0 else {"final": final}
    if tr.rank == 0 and tr.out:
        _plot_and_summarise(tr, doc, final, console)
    return {**doc, "model": tr.encoder} if return_model else doc


# --- the recipe's steps -----------------------------------------------------------------------

def _resume(tr: Trainer) -> None:
    """With ``resume=True``, continue from ``out/ckpt.pt`` when it exists."""
    ckpt = tr.out / "ckpt.pt" if tr.out else None
    if tr.cfg.resume:
        if ckpt is None:
            raise ValueError("resume=True needs an output directory (out) holding ckpt.pt.")
        if ckpt.is_file():
            tr.load_checkpoint(ckpt)


def _evaluate_initial(tr: Trainer) -> None:
    ev, spec = tr.evaluate_initial()
    tr.state["initial"] = {**ev, **{k: v for k, v in spec.items() if not k.startswith("eig_")}}
    tr.state["spectra"].append(dict(epoch=0, step=0, eig_corr=spec["eig_corr"], eig_cov=spec["eig_cov"]))


def _console(tr: Trainer):
    """The run's stderr console (quiet off rank 0 or without progress); a fresh run is announced on it."""
    from rich.console import Console
    cfg = tr.cfg
    console = Console(stderr=True, quiet=tr.rank != 0 or not cfg.progress)
    if tr.state["epoch"] == 0 and tr.rank == 0:
        console.print(f"[bold]{cfg.method}[/] {'EMA' if cfg.ema else 'no EMA'} · {cfg.backbone} ({cfg.width}) · "
                      f"{tr.ds.name} {tuple(tr.x_ssl.shape)} · batch {tr.batch} × {tr.steps_per_epoch} steps · "
                      f"{tr.device} × {tr.world} · learner {tr.learner_impl}")
        console.print(f"options: {_format_options(tr.method_options)}", markup=False, highlight=False)
        if tr.device.type == "cpu" and cfg.width == "full":
            console.print("[yellow]note[/]: a full-width network on CPU is slow; --width tiny --backbone vgg11 "
                          "makes a smoke run.")
    return console


def _progress(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=False)


def _evaluate_epoch(tr: Trainer, row: dict) -> None:
    """kNN, readout and spectrum into the epoch's row; the spectrum's eigenvalues to ``spectra``."""
    ev, spec = tr.evaluate()
    row.update(ev)
    row.update({k: v for k, v in spec.items() if not k.startswith("eig_")})
    tr.state["spectra"].append(dict(epoch=row["epoch"], step=tr.state["step"], eig_corr=spec["eig_corr"],
                                    eig_cov=spec["eig_cov"]))


def _judge_collapse(tr: Trainer, row: dict, console) -> None:
    """The collapse monitor's verdict into the row; the first of each kind of collapse warned about."""
    verdict = tr.monitor.report()
    row["monitor"] = verdict.state
    if not verdict.healthy and not any(w.startswith(f"collapse monitor: {verdict.state}")
                                       for w in tr.state["warnings"]):
        tr.state["warnings"].append(f"collapse monitor: {verdict.state} (epoch {row['epoch']}): {verdict}")
        console.print(f"[yellow]warning[/]: epoch {row['epoch']}: {verdict}")


def _evaluate_final(tr: Trainer, t_start: float) -> dict:
    """The final evaluation (rank 0; with the linear probe when configured) and, under DDP, how far the ranks'
    parameters drifted apart."""
    final = {}
    if tr.rank == 0:
        ev, spec = tr.evaluate(probe=tr.cfg.probe)
        final = {**ev, **{k: v for k, v in spec.items() if not k.startswith("eig_")},
                 "epochs_done": tr.state["epoch"], "steps_done": tr.state["step"],
                 "wall_time_s_this_process": time.perf_counter() - t_start}
    if tr.world > 1:
        final["ddp_max_param_diff"] = _max_param_diff(tr)
    return final


def _plot_and_summarise(tr: Trainer, doc: dict, final: dict, console) -> None:
    try:
        plot_metrics(doc, tr.out / "metrics.png")
    except Exception as e:  # plotting must never lose a finished run
        console.print(f"[yellow]plot failed[/]: {e}")
    console.print((f"done: kNN {final['knn_acc']:.4f} · readout {final['readout_acc']:.4f}"
                   if "knn_acc" in final else "done")
                  + (f" · probe {final['probe_acc']:.4f}" if "probe_acc" in final else "")
                  + f" · metrics in {tr.out}")


def _format_options(opts: dict) -> str:
    return " ".join(f"{k}={v!r}" for k, v in opts.items()) or "(none)"


def _max_param_diff(tr: Trainer) -> float:
    """max |θ_rank − θ_rank0| over all parameters and ranks (0 when data parallelism is exact)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in tr.encoder.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, 0)
    d = (flat - ref).abs().max()
    torch.distributed.all_reduce(d, op=torch.distributed.ReduceOp.MAX)
    return float(d)

