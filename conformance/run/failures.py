"""What a failed claim test says, and whether it failed the claim (an assertion of a spec module: a catch, for the
kill matrix too) or crashed in the adapter's code."""
from __future__ import annotations

import importlib
import linecache
import os

import torch
from ncspec.reference.encoders import encoder_dtype

from ncspec import conformance, reference

from ..claims import spec_dir
from .recorder import Recorder


def first_line(rep) -> str:
    crash = getattr(rep.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300]
    return str(rep.longrepr).strip().splitlines()[-1][:300]


#: longest failure message kept (the reports show it whole: a loss-scale mismatch explains itself in a paragraph)
MESSAGE_CHARS = 4000


def _message(exc: BaseException, with_type: bool) -> str:
    """An exception's message whole, without pytest's rewritten ``assert …`` introspection that follows it."""
    lines = []
    for line in str(exc).strip().splitlines():
        if line.startswith("assert ") and lines:
            break
        lines.append(line)
    text = "\n".join(lines).strip()
    if len(text) > MESSAGE_CHARS:
        text = text[:MESSAGE_CHARS].rsplit(" ", 1)[0] + " …"
    return f"{type(exc).__name__}: {text}" if with_type or not text else text


def leaves(exc: BaseException):
    """The exceptions inside (nested) exception groups, e.g. Hypothesis' report of several distinct failures."""
    inner = getattr(exc, "exceptions", None)   # BaseExceptionGroup (3.11+) or the exceptiongroup backport
    if isinstance(inner, tuple) and inner and all(isinstance(e, BaseException) for e in inner):
        for e in inner:
            yield from leaves(e)
    else:
        yield exc


def asserted_in_spec(exc: BaseException) -> bool:
    """An AssertionError whose innermost frame is in a spec module (a claim's assertion, not an
    ``assert`` inside the implementation under test; ``record.within`` asserts for the spec module that calls it),
    or the claims' loss-scale check
    (:class:`~ncspec.conformance.contract.loss_scale.ScaleMismatch`: the gradient is not a constant multiple of the
    definition's, which every dynamics claim asserts before it runs)."""
    from ..contract.validate import ImplementationFailure  # here: validate imports this module
    if isinstance(exc, ImplementationFailure):          # the loss-scale check (ScaleMismatch), no gradient at all
        return True
    if not isinstance(exc, AssertionError):
        return False
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    if not frames:
        return False
    if len(frames) > 1 and _is_record_within(frames[-1]):   # record.within(...) asserts for the claim calling it
        frames.pop()
    return os.path.abspath(frames[-1].f_code.co_filename).startswith(spec_dir() + os.sep)


def _is_record_within(frame) -> bool:
    """The frame of :meth:`Recorder.within`, which records a row and asserts its tolerance for the caller."""
    return frame.f_code is Recorder.within.__code__


def classify(exc: BaseException) -> str:
    """``"failed"`` if a claim's assertion failed (also inside Hypothesis' grouping of several
    failures), else ``"errored"`` (a crash)."""
    return "failed" if any(asserted_in_spec(e) for e in leaves(exc)) else "errored"


def failure_message(exc: BaseException) -> str:
    """What a failed claim test says: the claim's assertion message (its first sentence is what to fix), whole; for
    another exception its type and message."""
    found = list(leaves(exc)) or [exc]
    first = next((e for e in found if isinstance(e, AssertionError)), found[0])
    return _message(first, with_type=not isinstance(first, AssertionError))


def _library_dirs() -> tuple[str, ...]:
    """Where code that is neither the harness nor the adapter lives: the standard library, torch, numpy, the test
    machinery."""
    stdlib = os.path.join(os.path.dirname(os.path.abspath(os.__file__)), "")   # its site-packages excepted, below
    dirs = set()
    for name in ("torch", "numpy", "hypothesis", "_pytest", "pluggy", "pytest", "xdist", "execnet", "rich"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        dirs.add(os.path.dirname(os.path.abspath(mod.__file__)))
    return (stdlib, *(os.path.join(d, "") for d in sorted(dirs)))


def _harness_dirs() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ncspec's own code: spec tests, conformance, reference; its shipped adapters and mutants, which count as
    adapter code)."""
    root = os.path.dirname(os.path.abspath(conformance.__file__))
    own = tuple(os.path.join(os.path.dirname(os.path.abspath(m.__file__)), "") for m in (conformance, reference))
    own += (os.path.join(spec_dir(), ""),)
    return own, (os.path.join(root, "adapters", ""), os.path.join(root, "mutants", "catalogue.py"))


def _adapter_frames(exc: BaseException) -> list:
    """The traceback frames of ``exc`` in the adapter's code (innermost last): outside ncspec's harness and the
    libraries, or in ncspec's shipped adapters."""
    own, adapters = _harness_dirs()
    libs = _library_dirs()
    out = []
    tb = exc.__traceback__
    while tb is not None:
        path = os.path.abspath(tb.tb_frame.f_code.co_filename)
        library = path.startswith(libs) and not (path.startswith(libs[0]) and "-packages" + os.sep in path)
        if path.startswith(adapters) or not (path.startswith(own) or library or path.startswith("<")):
            out.append(tb)
        tb = tb.tb_next
    return out


def adapter_crash(exc: BaseException) -> str | None:
    """The reason of a test that crashed in the adapter's code, None for a claim's failure.

    A crash is an :class:`~ncspec.conformance.contract.validate.AdapterError` (a loss that is not a scalar, a
    ``build`` that raises: the message names the adapter, the method and the fix), or an exception other than a
    claim's assertion (:func:`classify`) raised in or through the adapter's code, whose innermost line is quoted. A
    claim's assertion, the loss-scale check, and a crash in the harness alone (e.g. a divergence the simulator
    detects) are failures of the claim."""

    from ..contract.validate import AdapterError
    if classify(exc) == "failed":
        return None
    for leaf in leaves(exc):
        if isinstance(leaf, AdapterError):
            return _message(leaf, with_type=True)
    for leaf in leaves(exc):
        frames = _adapter_frames(leaf)
        if frames:
            tb = frames[-1]
            code = tb.tb_frame.f_code
            line = linecache.getline(code.co_filename, tb.tb_lineno).strip()
            return (f"the adapter crashed: {_message(leaf, with_type=True)} (at {code.co_filename}:{tb.tb_lineno}, in "
                    f"{code.co_name}" + (f": {line}" if line else "") + ")")
    return None


def dtype_mismatch(error: Exception, view, learner, encoder) -> str:
    """The explanation of a first-call error that mixes floating dtypes (e.g. a head built in float32 for a float64
    encoder), naming each; empty when the error is not about dtypes or nothing differs."""
    text = str(error).lower()
    if "dtype" not in text and "scalar type" not in text:
        return ""
    found = {}
    if isinstance(view, torch.Tensor):
        found.setdefault(view.dtype, []).append("the views")
    found.setdefault(encoder_dtype(encoder), []).append("the encoder (encoder_dtype)")
    params = getattr(learner, "parameters", None)
    for p in (params() if callable(params) else []):
        if isinstance(p, torch.Tensor) and p.is_floating_point():
            found.setdefault(p.dtype, []).append("learner.parameters()")
    owners = {d: sorted(set(w)) for d, w in found.items() if d.is_floating_point}
    if len(owners) < 2:
        return ""
    listed = "; ".join(f"{str(d).replace('torch.', '')}: {', '.join(w)}" for d, w in owners.items())
    return (f"It mixes floating dtypes ({listed}). Build the learner's own tensors (heads, prototypes, buffers) in "
            f"the encoder's dtype, ncspec.reference.encoders.encoder_dtype(encoder) — encoder.dtype where the "
            f"encoder declares it (a weightless Identity does), else its first weight's: the linear tier's encoders "
            f"are float64, the deep tier's float32.")
