"""``ncspec train``, ``ncspec reproduce table1`` and ``ncspec bench``: deep-network runs.

Wired into ``conformance/cli.py`` by ``add_vision_commands(subparsers)``; also runnable alone as
``python -m ncspec.conformance.cli {train,reproduce,bench} ...`` (and under ``torchrun``).
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path


def _option(s: str):
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {s!r} (e.g. -o alpha=0.5 -o corr_ema=None)")
    k, v = s.split("=", 1)
    try:
        v = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        pass                                   # a bare string, e.g. form=cosine
    return k.strip(), v


def _width(s: str):
    try:
        return float(s)
    except ValueError:
        return s


def _devices(s: str | None) -> list[str]:
    if s:
        return [d.strip() for d in s.split(",") if d.strip()]
    import torch
    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


# --- train ------------------------------------------------------------------------------------

def _add_train(sub):
    p = sub.add_parser("train", help="self-supervised training of one model on images",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train one model (any reference method or adapter) on CIFAR-10, STL-10 or an .npz.\n"
                                   "Writes metrics.json, metrics.csv, metrics.png and ckpt.pt under --out.\n\n"
                                   "Data parallel: torchrun --nproc_per_node N -m ncspec.conformance.cli train ... "
                                   "(one process per GPU,\nDDP, synchronised BN; --batch-size is the global batch).")
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset", default="cifar10", help="cifar10 | stl10 | npz:PATH (arrays x_train, y_train, x_test, y_test)"
    )
    d.add_argument("--data-root", default=None, help="folder holding cifar-10-batches-py/ or stl10_binary/")
    d.add_argument("--download", action="store_true", help="let torchvision download the data set into --data-root")
    d.add_argument("--limit", type=int, default=None, help="use the first N images of every split (smoke runs)")
    d.add_argument("--no-unlabeled", dest="unlabeled", action="store_false", help="STL-10: pre-train on train only")
    m = p.add_argument_group("method")
    m.add_argument("--method", default="simsiam", help="a reference method (simsiam, isoloss, directpred, directset, "
                   "directcopy, learned_predictor, byol, simclr, triplet, barlow_twins, vicreg, dino, swav, "
                   "simsiam_mlp, lsimple; byol and dino keep their own target network: no --ema) or one of --adapter's")
    m.add_argument("--adapter", default=None, help="implementation under test ('package.module:attr', an entry-point "
                   "name, 'mutant:NAME'); default: the reference")
    m.add_argument("-o", "--option", action="append", type=_option, default=None, metavar="KEY=VALUE",
                   help="method option (repeatable), e.g. -o alpha=0.5 -o form=cosine; each overrides that one "
                   "option and the method's other defaults stay (the run prints and records the options used)")
    m.add_argument("--ema", action="store_true", help="EMA target network for the learner's target view "
                   "(momentum --ema-momentum → 1, cosine schedule)")
    m.add_argument("--ema-momentum", type=float, default=0.99)
    m.add_argument(
        "--asymmetric", dest="symmetric", action="store_false", help="L(v1, v2) only (default ½[L(v1,v2)+L(v2,v1)])"
    )
    m.add_argument("--learner", default="auto", choices=["auto", "reference", "fast"],
                   help="reference learner (validating), fast (same maths, no host syncs), auto (fast on CUDA)")
    n = p.add_argument_group("model")
    n.add_argument("--backbone", default="resnet18", choices=["resnet18", "vgg11", "vgg11_nobn"])
    n.add_argument("--width", type=_width, default="full", help="tiny | small | half | full | a multiplier")
    n.add_argument("--proj-hidden", type=int, default=2048)
    n.add_argument("--proj-out", type=int, default=256)
    n.add_argument("--no-proj-out-bn", dest="proj_out_bn", action="store_false")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=100)
    o.add_argument("--batch-size", type=int, default=512, help="global batch")
    o.add_argument("--lr", type=float, default=0.03, help="per 256 images")
    o.add_argument("--optimizer", default="sgd", choices=["sgd", "lars"])
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--weight-decay", type=float, default=5e-4)
    o.add_argument("--warmup-epochs", type=float, default=0.0)
    o.add_argument("--readout-lr", type=float, default=0.1)
    o.add_argument("--max-steps", type=int, default=None)
    e = p.add_argument_group("monitoring and hardware")
    e.add_argument("--eval-every", type=int, default=10, help="epochs between kNN / readout / spectrum evaluations")
    e.add_argument("--no-probe", dest="probe", action="store_false", help="skip the offline linear probe at the end")
    e.add_argument("--probe-iters", type=int, default=100)
    e.add_argument("--device", default="auto")
    e.add_argument("--bf16", action="store_true", help="bf16 autocast")
    e.add_argument("--channels-last", action="store_true")
    e.add_argument("--compile", action="store_true", help="torch.compile the encoder step and the augmentation")
    e.add_argument("--compile-backend", default="inductor")
    e.add_argument("--no-sync-bn", dest="sync_bn", action="store_false")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", required=True, help="output directory")
    e.add_argument("--checkpoint-every", type=int, default=10)
    e.add_argument("--resume", action="store_true", help="continue from --out/ckpt.pt exactly where it stopped")
    e.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=cmd_train)


def _builder(spec):
    if not spec:
        return None
    from ..contract.registry import load_adapter
    return load_adapter(spec).build


def cmd_train(a) -> int:
    from ncspec.reference.vision.data import DataRootError
    from ncspec.reference.vision.train import TrainConfig, train
    cfg = TrainConfig(dataset=a.dataset, data_root=a.data_root, download=a.download, limit=a.limit,
                      unlabeled=a.unlabeled, method=a.method, method_options=dict(a.option) if a.option else None,
                      learner=a.learner, ema=a.ema, ema_momentum=a.ema_momentum, symmetric=a.symmetric,
                      backbone=a.backbone, width=a.width, proj_hidden=a.proj_hidden, proj_out=a.proj_out,
                      proj_out_bn=a.proj_out_bn, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr,
                      optimizer=a.optimizer, momentum=a.momentum, weight_decay=a.weight_decay,
                      warmup_epochs=a.warmup_epochs, readout_lr=a.readout_lr, max_steps=a.max_steps,
                      eval_every=a.eval_every, probe=a.probe, probe_iters=a.probe_iters, device=a.device,
                      bf16=a.bf16, channels_last=a.channels_last, compile=a.compile, compile_backend=a.compile_backend,
                      sync_bn=a.sync_bn, seed=a.seed, out=a.out, checkpoint_every=a.checkpoint_every,
                      resume=a.resume, progress=a.progress)
    try:
        train(cfg, builder=_builder(a.adapter))
    except (DataRootError, ValueError, LookupError) as e:
        print(f"ncspec train: {e}", file=sys.stderr)
        return 2
    return 0


# --- reproduce table1 ---------------------------------------------------------------------------

def _table1_description() -> str:
    from ncspec.reference.vision.table1 import SEC_PER_CIFAR_EPOCH, wallclock_estimate
    est = wallclock_estimate(4)
    per = ", ".join(f"{k} {v:.0f} min" for k, v in est["per_run_min"].items())
    return f"""\
Halvagal et al. 2022, Table 1 (claim N4: the no-EMA gap): SimSiam loss / IsoLoss × EMA / no EMA × CIFAR-10 / STL-10,
linear readout accuracy ± std over seeds, printed beside the paper's numbers.

Full-data protocol (the default; needs CIFAR-10 and STL-10 under --data-root):
  data      CIFAR-10 (50k train / 10k test, 32 px), 800 epochs; STL-10 (100k unlabeled + 5k train
            for pre-training, 5k train / 8k test for evaluation, 96 px), 100 epochs
  model     VGG11 with BN (8 conv layers, global average pool → 512) + projector 512 → 4096 → 256
            (one hidden layer, BN, ReLU; BN at the output)
  augment   SimCLR: crop scale 0.08–1, flip 0.5, jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale 0.2,
            solarize p 0 / 0.2 (view 1 / view 2), Gaussian blur p 0.5 on STL-10 only; per sample
  loss      symmetrised, cosine form; predictor W_P = (Ĉ/λ_max)^0.5 (Halvagal et al. 2022, eq. 1, with the authors'
            λ_max normalisation, no ε boost) from the correlation EMA Ĉ (ρ 0.998 with EMA, 0.5 without)
  optimiser with EMA: LARS, lr 1.0 per 256, target EMA 0.99 → 1; without EMA: SGD lr 0.1 per 256,
            momentum 0.9, the target is the online net; batch 256, weight decay 1e-4, 10 warm-up
            epochs then cosine (the IsoLoss authors' released ResNet-18 settings,
            github.com/fmi-basel/implicit-var-reg; the exact optimiser behind Table 1 is not public)
  reported  online linear readout on detached features (test split, as the paper), plus
            weighted kNN (k 200, τ 0.1) and an offline L-BFGS linear probe
  seeds     4 (--seeds); cells already finished are skipped, interrupted cells resume

Expected wall-clock on one H100: ≈ {est['total_h']:.0f} h for the whole grid (4 seeds, 32 runs) —
an ESTIMATE from speed figures measured on one H100, not a measurement: {SEC_PER_CIFAR_EPOCH:.1f} s per CIFAR
epoch (the GPU-resident VGG11 pipeline ran 0.55–0.78 s at batch 512), +1/3 with the EMA target's extra
forward passes, ×{(2.75 / 0.306) * 2.1:.0f} per STL-10 epoch (9× FLOPs per 96-px image, 2.1× images). Per run:
{per}. N GPUs (--devices cuda:0,cuda:1,...) divide it by about N; `ncspec bench` measures the real rate.

Smoke run (tiny, CPU): ncspec reproduce table1 --data-root DIR --epochs 1 --width tiny --seeds 1 --limit 64
"""


def _add_reproduce(sub):
    p = sub.add_parser("reproduce", help="reproduce a paper table with deep networks",
                       description="Reproduce a paper table with deep networks.")
    rs = p.add_subparsers(dest="table", required=True)
    t = rs.add_parser("table1", help="Halvagal et al. 2022, Table 1: IsoLoss vs SimSiam loss, with and without EMA",
                      description=_table1_description(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--data-root", required=True, help="folder with cifar-10-batches-py/ and stl10_binary/")
    t.add_argument("--download", action="store_true", help="let torchvision download the data sets")
    t.add_argument("--out", default="table1", help="output folder (one subfolder per cell); default ./table1")
    t.add_argument("--datasets", default="cifar10,stl10", help="comma-separated subset of cifar10,stl10")
    t.add_argument("--seeds", type=int, default=None, help="default 4 (--scale cpu: 3, dry: 2)")
    t.add_argument("--scale", choices=["full", "cpu", "dry"], default="full",
                   help="full (default): the protocol above; cpu: Table 1's CIFAR-10 comparison in miniature for "
                        "a 2-core CPU (1/8-width VGG11, 40 epochs on the CIFAR-10 fragment .npz or the first 5,170 "
                        "images of a CIFAR-10 root, 3 seeds, no EMA first, then EMA; ≈ 25 min of two idle cores; two "
                        "cells at a time); dry: the no-EMA grid on 32 images for one epoch (a plumbing check)")
    t.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="--scale cpu/dry: with (--ema) or without (--no-ema) the EMA arm (default: cpu with, dry "
                        "without); the no-EMA cells always run first")
    t.add_argument("--only", default=None, help="run only the cells whose name (e.g. stl10-isoloss-noema-s2) "
                   "contains one of these comma-separated strings")
    t.add_argument("--devices", default=None, help="comma-separated devices the independent cells are spread over, "
                   "e.g. cuda:0,cuda:1 (default: every visible GPU, else cpu)")
    t.add_argument("--epochs", type=int, default=None, help="override both data sets' epochs (800 / 100)")
    t.add_argument("--width", type=_width, default=None, help="backbone width (default full)")
    t.add_argument("--proj-hidden", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--limit", type=int, default=None, help="first N images of every split (smoke runs)")
    t.add_argument("--eval-every", type=int, default=None)
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    t.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on for CUDA")
    t.add_argument("--compile", action="store_true")
    t.add_argument("--json", default=None, help="also write the summary here (always written to OUT/table1.json)")
    t.set_defaults(func=cmd_reproduce)


def cmd_reproduce_small(a) -> int:
    """``--scale cpu`` / ``dry``: the reduced no-EMA grid (``table1.SMALL_SCALES``), its table beside the paper's."""
    import os

    from ncspec.reference.vision import table1 as T
    from ncspec.reference.vision.data import DataRootError, load_dataset
    sc = T.SMALL_SCALES[a.scale]
    try:
        load_dataset(*T.small_dataset(a.data_root), limit=1)    # fail fast, before any cell starts
    except DataRootError as e:
        print(f"ncspec reproduce table1: {e}", file=sys.stderr)
        return 2
    devices = _devices(a.devices) if a.devices else ["cpu"] * max(1, min(2, os.cpu_count() or 1))
    if any(d != "cpu" for d in devices):
        print(f"ncspec reproduce table1: --scale {a.scale} runs on CPU workers (--devices cpu,cpu); "
              f"got {devices}.", file=sys.stderr)
        return 2
    log = lambda s: print(s, file=sys.stderr, flush=True)
    log(f"table1 --scale {a.scale}: {len(T.small_grid(sc, a.seeds, a.ema))} cells, {len(devices)} CPU "
        f"worker(s) → {a.out} (finished cells are kept; rerun the same command to resume)")
    docs, summary = T.run_small(sc, a.data_root, a.out, devices, seeds=a.seeds, ema=a.ema, log=log)
    table = T.format_small_table(summary, sc, Path(a.data_root).name)
    print(table)
    cpu = [T.cpu_seconds(Path(d["config"]["out"])) for d in docs]
    user = sum(c["user_s"] for c in cpu if c)
    print(f"\ncells' user CPU {user / 60:.1f} min in all ({user / max(1, len(docs)) / 60:.1f} min per cell); "
          f"ours: online linear readout on the test split (the paper's measure), kNN k=200 τ=0.1, "
          f"probe = offline L-BFGS linear probe; paper: Halvagal et al. 2022, Table 1, CIFAR-10 (800 epochs, "
          f"full-width VGG11, 50,000 images): not comparable in size, only in ordering.")
    doc = dict(schema="ncspec.table1-small/1", scale=sc.name, data=str(a.data_root), table=table,
               user_cpu_s=user, cells=[{"loss": l, "ema": e, **v} for (l, e), v in summary.items()],
               gaps={f"{'ema' if e else 'noema'}/{m}": T.small_gap(summary, e, m)
                     for e in sorted({e for _, e in summary}) for m in ("readout_acc", "knn_acc", "probe_acc")},
               runs=[d["config"]["out"] for d in docs])
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for path in filter(None, [str(Path(a.out) / "table1.json"), a.json]):
        Path(path).write_text(json.dumps(doc, indent=1))
    return 0


def cmd_reproduce(a) -> int:
    from ncspec.reference.vision import table1 as T
    from ncspec.reference.vision.data import DataRootError, load_dataset
    if a.scale != "full":
        return cmd_reproduce_small(a)
    a.seeds = a.seeds or 4
    devices = _devices(a.devices)
    cuda = devices[0].startswith("cuda")
    datasets = [d.strip() for d in a.datasets.split(",") if d.strip()]
    bad = [d for d in datasets if d not in T.EPOCHS]
    if bad:
        print(f"ncspec reproduce table1: unknown data set(s) {bad}; use cifar10 and/or stl10.", file=sys.stderr)
        return 2
    try:                                          # fail fast, before any cell starts
        for d in datasets:
            load_dataset(d, a.data_root, a.download, unlabeled=True, limit=1)
    except DataRootError as e:
        print(f"ncspec reproduce table1: {e}", file=sys.stderr)
        return 2
    bf16 = cuda if a.bf16 is None else a.bf16
    cl = cuda if a.channels_last is None else a.channels_last
    cells = []
    only = [x.strip() for x in a.only.split(",")] if a.only else None
    for d, loss, ema, seed in T.grid(datasets, a.seeds):
        if only and not any(x in T.cell_name(d, loss, ema, seed) for x in only):
            continue
        ov = dict(epochs=a.epochs, width=a.width, proj_hidden=a.proj_hidden, batch_size=a.batch_size,
                  limit=a.limit, eval_every=a.eval_every, bf16=bf16, channels_last=cl, compile=a.compile or None,
                  device="cuda" if cuda else devices[0])
        if a.limit:
            ov["warmup_epochs"] = 0
        cells.append(T.cell_config(d, loss, ema, seed, data_root=a.data_root, out=a.out, **ov))
    print(f"table1: {len(cells)} runs on {', '.join(devices)} → {a.out}", file=sys.stderr)
    docs = T.run_grid(cells, devices, log=lambda s: print(s, file=sys.stderr))
    summary = T.summarize(docs)
    print(T.format_table(summary))
    print("\nours: online linear readout on the test split (the paper's 'linear readout validation accuracy'); "
          "kNN k=200 τ=0.1; probe = offline L-BFGS linear probe.")
    if a.limit or a.epochs or a.width not in (None, "full"):
        print("NOTE: reduced settings (--limit/--epochs/--width): not comparable with the paper's numbers.")
    doc = dict(schema="ncspec.table1/1", cells=[{"dataset": d, "loss": l, "ema": e, **v}
                                                for (d, l, e), v in summary.items()],
               runs=[str(Path(c.out)) for c in cells])
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for path in filter(None, [str(Path(a.out) / "table1.json"), a.json]):
        Path(path).write_text(json.dumps(doc, indent=1))
    return 0


# --- bench ------------------------------------------------------------------------------------

def _add_bench(sub):
    p = sub.add_parser("bench", help="training throughput (images/s, s per 50k-image epoch, FLOP ceiling)",
                       description="Time the end-to-end training loop (augmentation on the device included) on "
                                   "synthetic 32-px data and compare with figures measured on one H100. Targets on one "
                                   "H100: CIFAR ResNet-18 SimSiam ≤ 0.85 s per 50k-image epoch, VGG11 ≤ 0.5 s; the "
                                   "eigendecomposition ≤ 10 % of the step. On CPU it runs a tiny model and says so.")
    p.add_argument("--backbone", default="resnet18", choices=["resnet18", "vgg11", "vgg11_nobn"])
    p.add_argument("--method", default="simsiam")
    p.add_argument("--ema", action="store_true")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--images", type=int, default=None, help="synthetic images per epoch (default 50000; CPU 1024)")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch")
    p.add_argument("--width", type=_width, default=None, help="default full (CPU: tiny)")
    p.add_argument("--device", default="auto")
    p.add_argument("--learner", default="auto", choices=["auto", "reference", "fast"])
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--compile-backend", default=None)
    p.add_argument("--baseline", action="store_true", help="also time the lightly-style pipeline (PIL transforms "
                   "in DataLoader workers, same model) and report the ratio")
    p.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers for --baseline (default min(15, cpus-1))"
    )
    p.add_argument("--json", default=None, help="write the result here")
    g = p.add_argument_group("acceptance (one prepared command for one H100/H200, ≤ 9 minutes)")
    g.add_argument("--acceptance", action="store_true",
                   help="run every acceptance part and write OUT/acceptance.json: ResNet-18 SimSiam (s per "
                        "50k-image epoch, FLOP fraction, the lightly-style pipeline in the same run and the "
                        "ratio; a compiled bf16 channels_last step), VGG11, DirectPred's eigendecomposition "
                        "share, the deep tier at gpu scale on --data-root, a one-GPU torchrun DDP smoke (NCCL); "
                        "targets recorded beside the figures")
    g.add_argument("--out", default=None, help="--acceptance: output folder")
    g.add_argument("--data-root", default=None, help="--acceptance: images for the deep tier (the CIFAR-10 "
                   "fragment .npz or a CIFAR-10 root)")
    g.add_argument("--dry-run", action="store_true", help="--acceptance on the CPU at a tiny size: every part "
                   "end to end (under about a minute; figures meaningless; DDP smoke on gloo)")
    p.set_defaults(func=cmd_bench)


def cmd_acceptance(a) -> int:
    from ncspec.reference.vision.bench import ACCEPTANCE_LIMIT_S, acceptance
    if not a.out:
        print("ncspec bench --acceptance: --out DIR is required (acceptance.json is written there).", file=sys.stderr)
        return 2
    if not a.dry_run:
        import torch
        if not torch.cuda.is_available():
            print("ncspec bench --acceptance: no CUDA device is visible; the acceptance needs one H100/H200. "
                  "On a CPU, --dry-run checks every part end to end at a tiny size.", file=sys.stderr)
            return 2
        print(f"ncspec bench --acceptance: budget ≤ {ACCEPTANCE_LIMIT_S / 60:.0f} min on one H100/H200 (five "
              f"parts; progress below)", file=sys.stderr, flush=True)
    doc = acceptance(a.out, data=a.data_root, dry_run=a.dry_run, log=lambda s: print(s, file=sys.stderr, flush=True))
    f = doc["figures"]
    print(json.dumps(f, indent=1))
    if doc["targets"]:
        for k, row in doc["targets"].items():
            print(f"{k:<36} {row['measured']!s:<24} target {row['target']:<8} "
                  f"{'met' if row['met'] else 'NOT met' if row['met'] is not None else 'not measured'}")
    errors = [k for k, v in doc["parts"].items() if isinstance(v, dict) and "error" in v]
    print(f"acceptance written to {Path(a.out) / 'acceptance.json'}"
          + (f"; parts with errors: {errors}" if errors else ""))
    return 1 if errors else 0


def cmd_bench(a) -> int:
    if a.acceptance:
        return cmd_acceptance(a)
    from ncspec.reference.vision.bench import bench
    from ncspec.reference.vision.train import resolve_device
    dev = resolve_device(a.device)
    cpu = dev.type == "cpu"
    if cpu:
        print("ncspec bench: running on CPU — a tiny model on a few images; the numbers say nothing about "
              "the GPU targets.", file=sys.stderr)
    kw = dict(
        backbone=a.backbone,
        method=a.method,
        ema=a.ema,
        batch=a.batch_size if not cpu else min(a.batch_size, 128),
        n=a.images or (1024 if cpu else 50_000),
        epochs=a.epochs,
        device=str(dev),
        width=a.width or ("tiny" if cpu else "full"),
        learner=a.learner,
        bf16=a.bf16 and not cpu,
        channels_last=a.channels_last,
        compile=a.compile and not cpu,
        baseline=a.baseline,
        workers=a.workers,
        log=lambda s: print(s, file=sys.stderr),
    )
    if cpu:
        kw.update(proj_hidden=128, proj_out=64)
    if a.compile_backend:                      # an explicit backend compiles on CPU too (e.g. eager)
        kw.update(compile=True, compile_backend=a.compile_backend)
    r = bench(**kw)
    lines = [
        f"device            {r['device']}{'  (CPU: not comparable with the GPU targets)' if cpu else ''}",
        f"model             {r['backbone']} ({r['width']}) · {r['method']}{' + EMA' if r['ema'] else ''} · "
        f"learner {r['learner']} · batch {r['batch']} · bf16 {r['bf16']} · channels_last {r['channels_last']} · "
        f"compile {r['compile']}",
        f"images/s          {r['images_per_s']:,.0f}  ({r['view_images_per_s']:,.0f} view-images/s)",
        f"s per 50k epoch   {r['s_per_50k_epoch']:.3f}"
        + (
            f"  (target ≤ {r['target_s_per_epoch']} s: "
            f"{'met' if r['s_per_50k_epoch'] <= r['target_s_per_epoch'] else 'NOT met'})"
            if r["target_s_per_epoch"]
            else ""
        ),
        f"GFLOP/view-image  {r['gflop_per_view_image']:.3f} (training step, FlopCounterMode)",
        f"achieved          {r['achieved_tflops']:.2f} TFLOP/s = {100 * r['fraction_of_peak']:.1f} % of the "
        f"800 TFLOP/s bf16 matmul peak (measured on one H100)",
        f"eigendecomposition {r['eig_ms']:.2f} ms × {r['eig_calls_per_step']} per {r['step_ms']:.2f} ms step = "
        f"{100 * r['eig_fraction_of_step']:.1f} % (target ≤ 10 %)",
    ]
    if "lightly_style" in r:
        b = r["lightly_style"]
        lines.append(f"lightly-style     {b['s_per_50k_epoch']:.2f} s per 50k epoch ({b['workers']} workers) → "
                     f"{r['speedup_vs_lightly_style']:.1f}× faster (anchor: 8.42 s on the H100)")
    if r.get("speedup_vs_lightly_anchor"):
        lines.append(f"vs anchor         {r['speedup_vs_lightly_anchor']:.1f}× the 8.42 s lightly-style H100 epoch")
    print("\n".join(lines))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


# --- wiring -------------------------------------------------------------------------------------

def add_vision_commands(subparsers) -> None:
    """Add ``train``, ``reproduce`` and ``bench`` to an ``argparse`` sub-parser collection."""
    _add_train(subparsers)
    _add_reproduce(subparsers)
    _add_bench(subparsers)
