"""What every figure does before and around drawing: validate, create the folder, pin threads."""
from __future__ import annotations

import pathlib
from collections.abc import Callable


def render(name: str, out_dir, fmt, seed, draw: Callable[[pathlib.Path, tuple[str, ...]], list]) -> list:
    """Validate ``out_dir``/``fmt``/``seed``, create the folder, run ``draw(out_dir, fmt)`` on one
    torch thread (the figures' tensors are tiny: extra threads only add synchronisation, and
    spin-wait on a busy machine) with matplotlib's Agg backend. Returns ``draw``'s paths."""
    import matplotlib
    import torch
    matplotlib.use("Agg")

    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} exists and is not a directory; pass a "
                         f"folder (it is created if missing) for {name}.<fmt>.")
    fmt = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    if not fmt or not all(isinstance(f, str) and f and f.isalnum() for f in fmt):
        raise ValueError(f"fmt must be a non-empty sequence of file extensions such as "
                         f"('png', 'pdf'), got {fmt!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return draw(out_dir, fmt)
    finally:
        torch.set_num_threads(threads)
