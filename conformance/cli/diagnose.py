"""``ncspec diagnose PATH...``: the collapse monitor's verdict on saved embeddings.

Inputs (never executed: ``.pt`` is read with ``torch.load(weights_only=True)``, ``.npy``/``.npz`` with
``allow_pickle=False``):

* an array ``(B, M)`` (one view), ``(2, B, M)`` (two views) or ``(T, 2, B, M)`` (a series of T observations);
* a dict / ``.npz`` with ``z1`` and optionally ``z2`` of shape ``(B, M)`` or ``(T, B, M)`` and optionally ``step``
  (what ``ncspec train`` writes as ``embeddings.pt`` and the Lightning callback as ``save_embeddings=``);
* several files: one series, in the order given (e.g. one file per epoch).

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

def diagnose(paths, *, method=None, views=None, thresholds=None):
    from ..monitor import CollapseMonitor, Thresholds
    z1, z2, steps = load_embeddings([Path(p) for p in paths], views=views)
    if thresholds is None:       # a short series is judged with the patience it can show (one snapshot: itself)
        thresholds = Thresholds(patience=min(Thresholds.patience, len(z1)))
    mon = CollapseMonitor(mode="record", method=method, thresholds=thresholds, max_pending=len(z1))
    for t in range(len(z1)):
        mon.observe(z1[t], None if z2 is None else z2[t], step=steps[t])
    mon.report()
    return mon


def _cmd_diagnose(args) -> int:
    from ..monitor import Thresholds
    try:
        given = {k: v for k, v in dict(patience=args.patience, warmup=args.warmup).items() if v is not None}
        th = Thresholds(**given) if given else None
        mon = diagnose(args.paths, method=args.method, views=args.views, thresholds=th)
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
        from ..monitor_report import write_report
        print(f"report: {write_report(mon, args.report, title=' '.join(str(p) for p in args.paths))}")
    return EXIT_HEALTHY if v.healthy else EXIT_COLLAPSED


def add_diagnose_command(sub) -> None:
    p = sub.add_parser("diagnose", help="verdict of the collapse monitor on saved embeddings",
                       description="Judge saved embeddings (.pt, .npy, .npz; one or two views; several files = a "
                                   "series over training). Exit 0 healthy, 1 collapsed or diverging, 2 usage error.")
    p.add_argument("paths", nargs="+", help="embedding files, in training order")
    p.add_argument("--method", default=None, help="the method (simsiam, byol, barlow_twins, dino, vicreg, ...): "
                   "narrows the usual causes a verdict names")
    p.add_argument("--views", type=int, choices=(1, 2), default=None,
                   help="2: require both views (the J1 invariance decomposition)")
    p.add_argument("--patience", type=int, default=None, help="consecutive observations before a verdict (default 3)")
    p.add_argument("--warmup", type=int, default=None, help="observations at the start never judged (default 0)")
    p.add_argument("--report", default=None, help="write a Markdown (.md) or HTML (.html) report with plots")
    p.add_argument("--json", default=None, help="write statistics and verdicts as JSON")
    p.set_defaults(func=_cmd_diagnose)
