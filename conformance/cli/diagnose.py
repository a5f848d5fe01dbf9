"""``ncspec diagnose PATH...``: the collapse monitor's verdict on saved embeddings, or on a checkpoint of
``ncspec train`` plus a data set (``ncspec diagnose CKPT --data PATH``).

Inputs (never executed: ``.pt`` is read with ``torch.load(weights_only=True)``, ``.npy``/``.npz`` with
``allow_pickle=False``):

* an array ``(B, M)`` (one view), ``(2, B, M)`` (two views) or ``(T, 2, B, M)`` (a series of T observations);
* a dict / ``.npz`` with ``z1`` and optionally ``z2`` of shape ``(B, M)`` or ``(T, B, M)`` and optionally ``step``
  (what ``ncspec train`` writes as ``embeddings.pt`` and the Lightning callback as ``save_embeddings=``);
* several files: one series, in the order given (e.g. one file per epoch);
* a checkpoint written by ``ncspec train`` (``ckpt.pt``) with ``--data`` naming a data set: the checkpoint's encoder
  embeds two augmented views (the run's own SimCLR augmentations) of ``--batches`` batches sampled from the data set,
  in training mode (batch statistics in the BatchNorms, as the live monitor sees them), and the verdict is the
  monitor's on that series (:func:`diagnose_checkpoint`).

Exit status: 0 healthy, 1 collapsed or diverging, 2 usage error (bad input, with the fix in the message).
"""
from __future__ import annotations

import sys
from pathlib import Path

EXIT_HEALTHY, EXIT_COLLAPSED, EXIT_USAGE = 0, 1, 2


class InputError(ValueError):
    """Bad input for ``ncspec diagnose``: the message names the problem and the fix."""


# --- reading ------------------------------------------------------------------------------------

def _load(path: Path):
    import numpy as np
    import torch
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass saved embeddings (.pt, .npy or .npz).")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            raise InputError(f"{path}: not a plain numeric .npy ({e}); save the embeddings as a float array "
                             f"with np.save(path, z.numpy()).") from e
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except ValueError as e:
            raise InputError(f"{path}: the .npz holds objects, not plain arrays ({e}); save float arrays with "
                             f"np.savez(path, z1=..., z2=...).") from e
    if suffix in (".pt", ".pth"):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # an UnpicklingError names the disallowed global
            raise InputError(f"{path}: cannot be read with torch.load(weights_only=True) ({str(e).splitlines()[0]}); "
                             f"diagnose reads tensors and dicts of tensors only and never executes code from a file. "
                             f"Save the embeddings with torch.save({{'z1': z1, 'z2': z2}}, path).") from e
    raise InputError(f"{path}: unknown file type {suffix!r}; pass .pt, .npy or .npz embeddings.")


def _tensor(x, where: str):
    import numpy as np
    import torch
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{where}: expected an array of embeddings, got {type(x).__name__}; save tensors or arrays.")
    if not x.is_floating_point():
        images = x.dim() == 4 and x.dtype == torch.uint8
        hint = " — these look like images; embed them first" if images else " — labels or indices, not embeddings"
        raise InputError(f"{where}: dtype {x.dtype} is not floating point{hint}; pass the float embeddings (B, M).")
    return x.double()


def _series(obj, where: str):
    """``(z1 (T, B, M), z2 (T, B, M) | None, steps | None)`` from one loaded file."""
    import torch
    steps = None
    if _is_checkpoint(obj):
        raise InputError(f"{where}: a checkpoint of ncspec train, not embeddings; pass the data set to embed with it, "
                         f"ncspec diagnose {where} --data PATH (the .npz or dataset the run trained on).")
    if isinstance(obj, dict):
        keys = set(obj)
        if "z1" not in keys:
            raise InputError(f"{where}: a dict/npz must hold 'z1' (and 'z2' for the second view), found keys "
                             f"{sorted(keys)}; save with {{'z1': z1, 'z2': z2}}.")
        z1 = _tensor(obj["z1"], f"{where}['z1']")
        z2 = _tensor(obj["z2"], f"{where}['z2']") if obj.get("z2") is not None else None
        if z1.dim() == 2:
            z1, z2 = z1.unsqueeze(0), None if z2 is None else z2.unsqueeze(0)
        if z1.dim() != 3:
            raise InputError(f"{where}: 'z1' must be (B, M) or (T, B, M), got shape {tuple(z1.shape)}.")
        if z2 is not None and z2.shape != z1.shape:
            raise InputError(f"{where}: 'z1' {tuple(z1.shape)} and 'z2' {tuple(z2.shape)} must have the same shape: "
                             f"the two views of the same samples.")
        if obj.get("step") is not None:
            steps = torch.as_tensor(obj["step"]).reshape(-1).tolist()
            if len(steps) != z1.shape[0]:
                steps = None
    else:
        z = _tensor(obj, where)
        if z.dim() == 2:
            z1, z2 = z.unsqueeze(0), None
        elif z.dim() == 3:
            if z.shape[0] == 1:
                z1, z2 = z, None
            elif z.shape[0] == 2:
                z1, z2 = z[:1], z[1:]
            else:
                raise InputError(f"{where}: a 3-D array must be (2, B, M), the two views, got shape {tuple(z.shape)}; "
                                 f"save a series as (T, 2, B, M) or as a dict {{'z1': (T, B, M), 'z2': (T, B, M)}}.")
        elif z.dim() == 4:
            if z.shape[1] not in (1, 2):
                raise InputError(f"{where}: a 4-D array must be (T, 2, B, M) (T observations of two views), got shape "
                                 f"{tuple(z.shape)}" + (" — these look like images (N, H, W, C); embed them first"
                                                         if z.shape[-1] in (1, 3) else "") + ".")
            z1, z2 = z[:, 0], (z[:, 1] if z.shape[1] == 2 else None)
        else:
            raise InputError(f"{where}: embeddings must be (B, M), (2, B, M) or (T, 2, B, M), got shape "
                             f"{tuple(z.shape)}.")
    return z1, z2, steps


def load_embeddings(paths: list[Path], *, views: int | None = None):
    """All files as one series ``(z1, z2, steps)``, validated (:class:`InputError` names the fix)."""
    import torch
    z1s, z2s, steps = [], [], []
    for p in paths:
        z1, z2, st = _series(_load(p), str(p))
        if z1.shape[1] < 2:
            raise InputError(f"{p}: a single sample (B = {z1.shape[1]}) has no spread to judge; save a whole batch "
                             f"of embeddings, B >= 2 (a few hundred is best).")
        if z1.shape[2] < 2:
            raise InputError(f"{p}: M = {z1.shape[2]} feature; embeddings need M >= 2 dimensions — is the array "
                             f"transposed? Expected (B, M).")
        bad = (~torch.isfinite(z1)).sum().item() + (0 if z2 is None else (~torch.isfinite(z2)).sum().item())
        if bad:
            t = int((~torch.isfinite(z1)).flatten(1).any(1).nonzero()[0]) if (~torch.isfinite(z1)).any() else 0
            raise InputError(f"{p}: {bad} NaN/inf value(s) (first in observation {t}): the run had already diverged "
                             f"when these were saved (the live verdict is 'diverging'); pass the files saved before "
                             f"the divergence to judge the finite part.")
        z1s.append(z1)
        z2s.append(z2)
        steps += st if st is not None else [None] * z1.shape[0]
    dims = {z.shape[2] for z in z1s}
    if len(dims) > 1:
        raise InputError(f"the files hold embeddings of different dimensions {sorted(dims)}; a series must come from "
                         f"one model — diagnose them separately.")
    nviews = {z is not None for z in z2s}
    if len(nviews) > 1:
        raise InputError("some files hold two views and some one; save both views everywhere (or diagnose the "
                         "one-view files separately).")
    if views == 2 and z2s[0] is None:
        raise InputError(f"{paths[0]}: one view only, but --views 2 asks for the invariance decomposition (J1), which "
                         f"needs both views of the same samples; save {{'z1': z1, 'z2': z2}} or (2, B, M).")
    bs = {z.shape[1] for z in z1s}
    if len(bs) == 1:
        z1 = torch.cat(z1s)
        z2 = None if z2s[0] is None else torch.cat(z2s)
        return list(z1), None if z2 is None else list(z2), steps
    return ([z for s in z1s for z in s], None if z2s[0] is None else [z for s in z2s for z in s], steps)


# --- the command --------------------------------------------------------------------------------

#: series longer than this report their progress (judged in chunks of this many observations; same verdicts)
PROGRESS_CHUNK = 100


def diagnose(paths, *, method=None, views=None, thresholds=None, progress=None):
    """The monitor's verdicts on saved embeddings; ``progress(done, total)`` is called after every chunk of
    :data:`PROGRESS_CHUNK` observations of a longer series (the CLI prints it to stderr)."""
    from ...reference.monitor import CollapseMonitor, Thresholds
    from ...reference.monitor.observations import one_thread
    z1, z2, steps = load_embeddings([Path(p) for p in paths], views=views)
    if thresholds is None:       # a short series is judged with the patience it can show (one snapshot: itself)
        thresholds = Thresholds(patience=min(Thresholds.patience, len(z1)))
    mon = CollapseMonitor(mode="record", method=method, thresholds=thresholds, max_pending=PROGRESS_CHUNK)
    T = len(z1)
    with one_thread():           # many small matrices: threads only wait for one another (observations.one_thread)
        for t in range(T):
            mon.observe(z1[t], None if z2 is None else z2[t], step=steps[t])
            if progress is not None and T > PROGRESS_CHUNK and ((t + 1) % PROGRESS_CHUNK == 0 or t + 1 == T):
                mon.report()
                progress(t + 1, T)
        mon.report()
    return mon


def _progress_to_stderr(done: int, total: int) -> None:
    print(f"ncspec diagnose: judged {done}/{total} observations", file=sys.stderr, flush=True)


# --- a checkpoint plus a data set --------------------------------------------------------------

def _is_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and str(obj.get("schema", "")).startswith("ncspec.vision.ckpt/")


def load_checkpoint(path: Path) -> dict:
    """An ``ncspec train`` checkpoint, read with ``torch.load(weights_only=True)`` (:class:`InputError` names the
    fix when the file is missing, unsafe, damaged or not such a checkpoint)."""
    import pickle

    import torch

    from ...reference.vision.train import CKPT_SCHEMA
    if not path.is_file():
        raise InputError(f"{path}: no such file; pass the checkpoint ncspec train wrote (OUT/ckpt.pt) with --data.")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputError(f"{path}: holds Python objects that torch.load(weights_only=True) refuses "
                         f"({str(e).splitlines()[0][:200]}); diagnose never executes code from a file, and an ncspec "
                         f"checkpoint needs none. Pass the ckpt.pt that ncspec train wrote.") from e
    except Exception as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                         f"the file is damaged or truncated — pass OUT/ckpt.pt or its predecessor OUT/ckpt.prev.pt."
                         ) from e
    if not _is_checkpoint(ck):
        what = ("embeddings" if isinstance(ck, dict) and "z1" in ck or not isinstance(ck, dict) else
                f"a dict with keys {sorted(ck)[:8]}")
        raise InputError(f"{path}: --data needs a checkpoint written by ncspec train (schema {CKPT_SCHEMA!r}, e.g. "
                         f"OUT/ckpt.pt), but this file holds {what}; to judge saved embeddings drop --data.")
    if ck.get("schema") != CKPT_SCHEMA:
        raise InputError(f"{path}: checkpoint schema {ck.get('schema')!r} is not the one this ncspec reads "
                         f"({CKPT_SCHEMA!r}); diagnose it with the ncspec version that wrote it.")
    return ck


def _dataset(data: str, data_root):
    from ...reference.vision.data import DataRootError, layout, load_dataset
    spec = data
    if not (data.startswith("npz:") or data in ("cifar10", "stl10")):
        found = layout(data)            # a path: only an .npz file names a data set without --data-root
        if found is None or not found[0].startswith("npz:"):
            raise InputError(f"--data {data!r}: pass the data set the way ncspec train takes it: an .npz of uint8 "
                             f"images (x_train, y_train, x_test, y_test), npz:PATH, or cifar10/stl10 with "
                             f"--data-root DIR.")
        spec = found[0]
    try:
        return load_dataset(spec, data_root)
    except (DataRootError, ValueError) as e:
        raise InputError(f"--data {data!r}: {e}") from e


def diagnose_checkpoint(path, data: str, *, data_root=None, batches: int = 8, batch_size: int | None = None,
                        seed: int = 0, method=None, thresholds=None):
    """The monitor's verdict on a checkpoint of ``ncspec train``: its encoder (``make_encoder`` with the run's
    configuration, weights from the checkpoint) embeds two augmented views of ``batches`` batches of
    ``batch_size`` images (default the run's batch size, at most 256 — what the live monitor observes) drawn
    from ``data`` with ``seed``; each batch is one observation. Training mode, as in the run: BatchNorms use the
    batch's statistics (running statistics are not written back; nothing is saved)."""
    import torch

    from ...reference.monitor import CollapseMonitor, Thresholds
    from ...reference.vision import augment as aug
    from ...reference.vision.models import make_encoder
    path = Path(path)
    ck = load_checkpoint(path)
    cfg = ck["config"]
    if not (isinstance(batches, int) and batches >= 1):
        raise InputError(f"--batches must be an int >= 1 (observations to judge), got {batches!r}.")
    ds = _dataset(data, data_root).limit(cfg.get("limit"))
    B = min(batch_size or min(int(cfg["batch_size"]), 256), ds.x_ssl.shape[0])
    if B < 2:
        raise InputError(f"--data {data!r} holds {ds.x_ssl.shape[0]} image(s); the monitor needs batches of B >= 2.")
    enc = make_encoder(cfg["backbone"], cfg["proj_hidden"], cfg["proj_out"], cfg["width"], cfg["proj_out_bn"])
    try:
        enc.load_state_dict(ck["encoder"])
    except RuntimeError as e:
        raise InputError(f"{path}: the encoder weights do not fit the configuration stored with them "
                         f"({str(e).splitlines()[0]}); the checkpoint is damaged or was edited.") from e
    mean, std = ds.mean_std()
    views = aug.simclr_views(ds.name, ds.image_size, mean, std)
    gen = torch.Generator().manual_seed(seed)
    if thresholds is None:
        thresholds = Thresholds(patience=min(Thresholds.patience, batches))
    mon = CollapseMonitor(mode="record", method=method or cfg.get("method"), thresholds=thresholds,
                          max_pending=batches)
    enc.train()
    with torch.no_grad():
        for t in range(batches):
            x = ds.x_ssl[torch.randperm(ds.x_ssl.shape[0], generator=gen)[:B]]
            try:
                z1, z2 = (enc(aug.augment(x, v, gen)) for v in views)
            except RuntimeError as e:
                raise InputError(f"--data {data!r}: images of shape {tuple(x.shape[1:])} do not fit the checkpoint's "
                                 f"model (trained on {cfg.get('dataset')!r}; {str(e).splitlines()[0]}); pass the "
                                 f"data set the run was trained on.") from e
            mon.observe(z1, z2, step=t)
    mon.report()
    return mon


def _cmd_benchmark(args) -> int:
    """``ncspec diagnose --benchmark``: the labelled benchmark of collapse detectors (conformance/monitor_bench)."""
    import json
    import resource

    from ..monitor import bench as mb
    if args.paths:
        print("ncspec diagnose: error: --benchmark trains its own labelled runs and takes no paths; drop "
              f"{args.paths[0]!r} or drop --benchmark.", file=sys.stderr)
        return EXIT_USAGE
    missing = mb.missing_detector_packages()
    if missing:
        print(f"ncspec diagnose: error: the benchmark compares ncspec's monitor with other libraries' detectors and "
              f"needs {', '.join(missing)} (not installed); install them with python3 -m pip install "
              f"'ncspec[monitor-bench]'.", file=sys.stderr)
        return EXIT_USAGE
    from ..monitor.handwritten_simsiam import fragment_path
    if not fragment_path().is_file():
        print(f"ncspec diagnose: error: the benchmark trains on the CIFAR-10 fragment, not found at "
              f"{fragment_path()}; set NCSPEC_SHARED to the folder holding data/cifar10_fragment.npz.",
              file=sys.stderr)
        return EXIT_USAGE
    result = mb.run_benchmark(seeds=args.bench_seeds, steps=args.bench_steps, workers=args.bench_workers,
                              progress=lambda m: print(m, flush=True))
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["user_cpu_s"], result["machine"] = ru.ru_utime, _machine()
    table = mb.score(result)
    print(mb.markdown_table(table))
    print(f"wall {result['seconds']:.0f} s, user CPU of the workers {ru.ru_utime:.0f} s on {result['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(result, table=table), indent=1))
    if args.report:
        print(f"plot: {mb.plot(result, args.report)}")
    return EXIT_HEALTHY


def _machine() -> str:
    import os
    import platform
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), torch threads 1 per worker"


def _cmd_diagnose(args) -> int:
    from ...reference.monitor import Thresholds
    if args.benchmark:
        return _cmd_benchmark(args)
    if not args.paths:
        print("ncspec diagnose: error: pass embedding files (or a checkpoint with --data), or --benchmark.",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        given = {k: v for k, v in dict(patience=args.patience, warmup=args.warmup).items() if v is not None}
        th = Thresholds(**given) if given else None
        if args.data is not None:
            if len(args.paths) != 1:
                raise InputError(f"--data judges one checkpoint at a time, got {len(args.paths)} paths; run diagnose "
                                 f"once per checkpoint.")
            mon = diagnose_checkpoint(args.paths[0], args.data, data_root=args.data_root, batches=args.batches,
                                      batch_size=args.batch_size, seed=args.seed, method=args.method, thresholds=th)
        else:
            mon = diagnose(args.paths, method=args.method, views=args.views, thresholds=th,
                           progress=_progress_to_stderr)
    except (InputError, ValueError, TypeError) as e:
        print(f"ncspec diagnose: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    v = mon.verdict
    print(f"{len(mon.history)} observation(s) of {mon.history[-1]['dim']}-dimensional embeddings")
    print(str(v))
    if args.json:
        import json
        Path(args.json).write_text(json.dumps(mon.summary(), indent=1))
    if args.report:
        from ..monitor.report import write_report
        print(f"report: {write_report(mon, args.report, title=' '.join(str(p) for p in args.paths))}")
    return EXIT_HEALTHY if v.healthy else EXIT_COLLAPSED


def add_diagnose_command(sub) -> None:
    p = sub.add_parser("diagnose", help="verdict of the collapse monitor on saved embeddings (or a checkpoint "
                       "with --data)",
                       description="Judge saved embeddings (.pt, .npy, .npz; one or two views; several files = a "
                                   "series over training), or a checkpoint of ncspec train with --data naming a data "
                                   "set to embed. Exit 0 healthy, 1 collapsed or diverging, 2 usage error.")
    p.add_argument("paths", nargs="*", help="embedding files, in training order (or one checkpoint with --data)")
    p.add_argument("--method", default=None, help="the method (simsiam, byol, barlow_twins, dino, vicreg, ...): "
                   "narrows the usual causes a verdict names")
    p.add_argument("--views", type=int, choices=(1, 2), default=None,
                   help="2: require both views (the J1 invariance decomposition)")
    p.add_argument("--patience", type=int, default=None, help="consecutive observations before a verdict (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="observations at the start never judged (default 0)")
    p.add_argument("--report", default=None, help="write a Markdown (.md) or HTML (.html) report with plots")
    p.add_argument("--json", default=None, help="write statistics and verdicts as JSON")
    p.add_argument("--data", default=None, help="with a checkpoint of ncspec train (ckpt.pt): the data set to embed "
                   "(an .npz of uint8 images, npz:PATH, or cifar10/stl10 with --data-root)")
    p.add_argument("--data-root", default=None, help="directory of cifar10/stl10 for --data")
    p.add_argument("--batches", type=int, default=8, help="with --data: batches embedded, one observation each")
    p.add_argument("--batch-size", type=int, default=None,
                   help="with --data: images per batch (default: the run's batch size, at most 256)")
    p.add_argument("--seed", type=int, default=0, help="with --data: seed of the sampled images and augmentations")
    p.add_argument("--benchmark", action="store_true", help="run the labelled benchmark of collapse detectors "
                   "(ncspec's monitor, MONAI, stable-pretraining, lightly) on the CIFAR-10 fragment; --json and "
                   "--report (a .png) save its results")
    p.add_argument("--bench-seeds", type=int, default=3, help="with --benchmark: seeds per labelled run")
    p.add_argument("--bench-steps", type=int, default=120, help="with --benchmark: training steps per run")
    p.add_argument("--bench-workers", type=int, default=2, help="with --benchmark: worker processes (1 thread each)")
    p.set_defaults(func=_cmd_diagnose)
