"""Checkpoints a run resumes from exactly: every RNG state, and a loader that never runs code from the file."""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from ..files import previous_path

CKPT_SCHEMA = "ncspec.vision.ckpt/1"


def _reason(e: BaseException) -> str:
    """The informative sentence of a loader error: the refused global, else the first sentence."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    line = next((ln for ln in lines if "GLOBAL" in ln), lines[0] if lines else "")
    return line.split(". ")[0].rstrip(".") or type(e).__name__


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: damaged, not an ncspec checkpoint, or unsafe to load."""


def rng_state(device: torch.device) -> dict:
    """Every RNG the run draws from, as tensors and plain values (``weights_only`` loads them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    rng = dict(torch=torch.get_rng_state(), python=random.getstate(),
               numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                          has_gauss=int(has_gauss), cached_gaussian=float(cached)))
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: dict, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state_all(rng["cuda"])


def load_checkpoint_file(path: Path, map_location=None) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, so a crafted file
    cannot run code while it is read. Damaged, foreign or unsafe files raise :class:`CheckpointError`
    naming the file, what is wrong and what to do."""
    path = Path(path)
    prev = previous_path(path)
    fix = (f"restore the previous checkpoint ({prev} exists: move it to {path.name}) or delete {path} to start "
           f"the run from scratch" if prev.is_file() else f"delete {path} to start the run from scratch, or "
           f"restore a copy of it from a backup")
    size = path.stat().st_size
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects that are not plain tensors or containers "
            f"({_reason(e)}); unpickling them could run code from the file, and an ncspec "
            f"checkpoint never needs it (it is read with torch.load(weights_only=True)). If you did not write "
            f"this file, do not trust it; {fix}.") from e
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"cannot resume from {path}: the file is damaged ({size} bytes; {type(e).__name__}: {_reason(e)}), "
            f"most likely truncated (a copy that did not finish, a full disk); {fix}.") from e
    if not (isinstance(ck, dict) and ck.get("schema") == CKPT_SCHEMA):
        raise CheckpointError(f"cannot resume from {path}: it is not an ncspec training checkpoint (schema "
                              f"{ck.get('schema') if isinstance(ck, dict) else type(ck).__name__!r}, expected "
                              f"{CKPT_SCHEMA!r}); {fix}.")
    return ck
