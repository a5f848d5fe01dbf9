"""What a training run is: :class:`TrainConfig` and the method options it resolves to."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

CLOSED_FORM_TABLE1 = ("simsiam", "isoloss")


@dataclass
class TrainConfig:
    # data
    dataset: str = "cifar10"                 # "cifar10" | "stl10" | "npz:PATH"
    data_root: str | None = None
    download: bool = False
    limit: int | None = None                 # first N images of every split (smoke runs)
    unlabeled: bool = True                   # STL-10: pre-train on unlabeled + train
    # method
    method: str = "simsiam"
    method_options: dict | None = None       # overrides of default_method_options(method, ema); None: none
    learner: str = "auto"                    # "reference" | "fast" | "auto" (fast on CUDA where it applies)
    ema: bool = False                        # EMA target network (BYOL-style)
    ema_momentum: float = 0.99               # cosine-scheduled to 1
    symmetric: bool = True                   # ½[L(v1, v2) + L(v2, v1)]
    # model
    backbone: str = "resnet18"               # "vgg11" | "vgg11_nobn" | "resnet18"
    width: str | float = "full"              # "tiny" | "small" | "half" | "full" | multiplier
    proj_hidden: int = 2048
    proj_out: int = 256
    proj_out_bn: bool = True                 # SimSiam's BN at the projector output
    # optimisation
    epochs: int = 100
    batch_size: int = 512                    # global
    lr: float = 0.03                         # per 256 images
    optimizer: str = "sgd"                   # "sgd" | "lars"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    fix_pred_lr: bool = False                # the learner's own parameters (a predictor MLP) keep the base lr
                                             # (SimSiam, Chen & He 2021 §4.1), the encoder's follow the schedule
    readout_lr: float = 0.1                  # per 256 images
    max_steps: int | None = None             # stop after this many steps (bench, checks)
    # monitoring
    eval_every: int = 10
    knn_k: int = 200
    knn_t: float = 0.1
    spectrum_samples: int = 2048
    probe: bool = True
    probe_iters: int = 100
    eval_at_start: bool = False              # also evaluate the untrained network (state["initial"])
    eval_knn: bool = True                    # False: evaluations measure the spectrum only (spectrum_samples images)
    # hardware
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    sync_bn: bool = True
    # bookkeeping
    seed: int = 0
    out: str | None = None
    checkpoint_every: int = 10
    resume: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_method_options(method: str, ema: bool) -> dict:
    """Halvagal et al. 2022, Table 1's closed-form predictor, with the IsoLoss authors' released
    settings (github.com/fmi-basel/implicit-var-reg): cosine form, ``W_P = (Ĉ/λ_max)^½``, correlation
    EMA 0.998 with an EMA target and 0.5 without; the published DirectPred/DirectCopy options otherwise,
    in cosine form."""
    if method in CLOSED_FORM_TABLE1:
        return dict(form="cosine", alpha=0.5, normalize=True, eps=0.0, corr_ema=0.998 if ema else 0.5)
    if method in ("directpred", "directset", "directcopy"):
        return dict(form="cosine")
    return {}


def resolve_method_options(method: str, ema: bool, overrides: dict | None, *,
                           valid: frozenset[str] | None = None) -> dict:
    """The options a run uses: :func:`default_method_options` with ``overrides`` on top (one key
    each; the other defaults stay). ``valid``: the keys the method accepts; an unknown override is
    an error naming them."""
    overrides = dict(overrides or {})
    if valid is not None:
        unknown = sorted(set(overrides) - set(valid))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {method!r}; valid options are "
                             f"{sorted(valid)} (-o KEY=VALUE overrides one of them and keeps the other defaults).")
    return {**default_method_options(method, ema), **overrides}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
