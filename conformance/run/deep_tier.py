"""The deep tier's settings: its scales, where its image data comes from, and the budget printed before it starts.

The N claims (``spec_tests/test_deep.py``) run real convolutional networks on real images through the one
training loop, :func:`ncspec.reference.vision.train.train`. Two scales share the claims:

* ``cpu`` — a 1/8-width VGG11, a 512 → 128 projector, batch 256, 40 steps (:attr:`Scale.steps`) on
  CIFAR-10 or any CIFAR-shaped ``.npz`` (e.g. a fragment of CIFAR-10), float32, channels_last (1.5× faster
  convolutions on the CPU), eager, on ``$NCSPEC_THREADS`` threads (default 1: the whole tier is ≈ 190 s of
  CPU for the three shipped adapters, within its 5 minutes on one core);
* ``gpu`` — the CIFAR ResNet-18, a 2048 → 256 projector, batch 512, bf16, channels_last,
  ``torch.compile``; Table 1's ordering (N4) needs the full CIFAR-10 training set.

The scale comes from ``--ncspec-scale`` / ``$NCSPEC_SCALE`` (default ``cpu``), the data from
``--ncspec-data`` / ``$NCSPEC_DATA`` (``ncspec check --data-root``): a folder holding
``cifar-10-batches-py/``, or ``stl10_binary/`` (STL-10's binary version, 96 px: pre-training on ``train`` +
``unlabeled``, the spectra and evaluations on the labelled ``train``/``test`` splits, as the IsoLoss authors and
solo-learn do), or an ``.npz`` with ``x_train, y_train, x_test, y_test`` (which layout means which data set:
:func:`ncspec.reference.vision.data.layout`). Nothing is downloaded and no path is assumed: without data the
claims skip with :func:`missing_data_help`.

The claims' harness (the cached training runs) is ``spec_tests/deep_harness.py``; it reads its settings here.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ...reference.vision.data import CIFAR10_URL, STL10_URL, check_stl10_root, layout

SCALE_ENV = "NCSPEC_SCALE"
DATA_ENV = "NCSPEC_DATA"
FULL_CIFAR10_TRAIN = 50_000


@dataclass(frozen=True, kw_only=True)
class Scale:
    name: str
    backbone: str
    width: str
    proj_hidden: int
    proj_out: int
    batch: int
    steps: int                 # the step budget of every claim run
    lr: float                  # per 256 images (TrainConfig.lr)
    eval_every: int            # epochs between spectrum evaluations
    bf16: bool
    channels_last: bool
    compile: bool
    device: str
    pred_hidden: int           # hidden width of the MLP predictors (simsiam_mlp, byol)
    table1_epochs: int         # N4: epochs of the Table 1 comparison (0: not at this scale)
    # learned predictors: each method's own recipe, (method, optimiser, lr per 256 images); the predictor's
    # parameters keep that lr (SimSiam's fixed predictor lr), the encoder's follow the cosine schedule
    recipes: tuple = (("simsiam_mlp", "sgd", 0.06), ("byol", "lars", 0.2))
    # the redundancy family: the authors' LARS at base lr 0.2 per 256 images (Bardes et al. 2022 §4.1 / App. C;
    # Zbontar et al. 2021 §3, the weights' lr), every parameter (an expander's too) on the cosine schedule; SGD at
    # 0.06 diverges on VICReg's 25× terms within the first epoch (measured: NaN embeddings, cpu scale, seed 0)
    redundancy: tuple = (("vicreg", "lars", 0.2), ("barlow_twins", "lars", 0.2))

    def recipe(self, method: str) -> tuple[str, float, bool]:
        """``(optimizer, lr, fixed predictor lr)`` of ``method``'s runs at this scale."""
        for m, opt, lr in self.recipes:
            if m == method:
                return opt, lr, True
        for m, opt, lr in self.redundancy:
            if m == method:
                return opt, lr, False
        return "sgd", self.lr, False

    def to_dict(self) -> dict:
        return asdict(self)


SCALES = {
    "cpu": Scale(name="cpu", backbone="vgg11", width="tiny", proj_hidden=512, proj_out=128, batch=256, steps=40,
                 lr=0.06, eval_every=1, bf16=False, channels_last=True, compile=False, device="cpu",
                 pred_hidden=64, table1_epochs=0),
    "gpu": Scale(name="gpu", backbone="resnet18", width="full", proj_hidden=2048, proj_out=256, batch=512, steps=300,
                 lr=0.06, eval_every=2, bf16=True, channels_last=True, compile=True, device="cuda",
                 pred_hidden=512, table1_epochs=800),
    # plumbing only (the acceptance command's dry run): a few steps; the claims' outcomes mean nothing here
    "dry": Scale(name="dry", backbone="vgg11", width="tiny", proj_hidden=64, proj_out=32, batch=32, steps=4,
                 lr=0.06, eval_every=1, bf16=False, channels_last=False, compile=False, device="cpu",
                 pred_hidden=16, table1_epochs=0),
}


#: ``cpu-long`` (opt-in: ``--scale cpu-long``): the cpu scale — every claim's 40-step runs exactly as there — plus
#: what the cpu budget cannot show: N3's runs over :data:`LONG_RUN_STEPS` steps (≈ 2 min of CPU for the pair) and N4's
#: no-EMA pair at the size of ``ncspec reproduce table1 --scale cpu`` (``table1_epochs``; one seed per loss; 452 s of
#: user CPU for the pair, measured on the shared 2-core machine). N2 and N7 skip there with 400-step numbers.
SCALES["cpu-long"] = replace(SCALES["cpu"], name="cpu-long", table1_epochs=40)
#: the scales that run the cpu scale's network and 40-step runs (their spectra on 1,024 images)
CPU_SCALES = ("cpu", "cpu-long")
#: cpu-long: the step budget of N3's runs (20 steps per epoch of the CIFAR-10 fragment at batch 256; N2 and N7 skip
#: there with the numbers of 400-step runs)
LONG_RUN_STEPS = {"N3": 200}


def scale() -> Scale:
    name = os.environ.get(SCALE_ENV, "cpu")
    if name not in SCALES:
        raise ValueError(f"unknown deep-tier scale {name!r} (${SCALE_ENV} / --scale); use 'cpu' or 'gpu' "
                         f"('cpu-long': cpu plus the longer runs of N2, N3, N4, N7; 'dry': a plumbing check of a "
                         f"few steps).")
    return SCALES[name]


def with_scale(sc: Scale, **changes) -> Scale:
    return replace(sc, **changes)


def missing_data_help(problem: str = "no image data was given") -> str:
    return (f"The deep tier trains convolutional networks on CIFAR-10 images, and {problem}. Download "
            f"{CIFAR10_URL} (163 MB), extract it into a folder DIR (it creates DIR/cifar-10-batches-py/), "
            f"and pass --data-root DIR to `ncspec check --tier deep` (or set ${DATA_ENV}=DIR; pytest: "
            f"--ncspec-data DIR). STL-10 works too: a folder holding stl10_binary/ (the binary version, "
            f"{STL10_URL}, 2.5 GB; 96 px, pre-trained on train + unlabeled); and so does an .npz with uint8 arrays "
            f"x_train, y_train, x_test, y_test (images HWC or CHW): --data-root PATH.npz.")


def dataset_spec(path: str | None = None) -> tuple[str, str | None]:
    """``(dataset, data_root)`` for :class:`TrainConfig` from ``path`` (default ``$NCSPEC_DATA``), by the layout
    :func:`~ncspec.reference.vision.data.layout` reads; raises ``FileNotFoundError`` with :func:`missing_data_help`
    when there is nothing usable."""
    path = path if path is not None else os.environ.get(DATA_ENV)
    if not path:
        raise FileNotFoundError(missing_data_help())
    p = Path(path).expanduser()
    found = layout(p)
    if found is None:
        what = ("does not exist" if not p.exists()
                else "holds neither cifar-10-batches-py/ nor stl10_binary/, nor is it an .npz file")
        raise FileNotFoundError(missing_data_help(f"{p} {what}"))
    spec, root = found
    if spec.startswith("npz:") and not p.is_file():
        raise FileNotFoundError(missing_data_help(f"{p} does not exist"))
    if spec == "stl10":      # STL-10: train + unlabeled for pre-training, the labelled splits for evaluation
        check_stl10_root(root, unlabeled=True, download_hint=False)   # a DataRootError (FileNotFoundError)
        #                                                               naming the files and the fix
    return spec, root


# --- the budget, printed before the tier starts --------------------------------------------------

#: seconds per run, for the budget line. cpu: the user CPU time of one 40-step run of a 1/8-width VGG11 (batch
#: 256, channels_last, three spectrum evaluations) on one thread, measured on a heavily shared 2-core machine
#: (30 runs, seeds 0–2: SGD runs 14–18 s, BYOL's LARS runs 20–23 s; an idle machine's wall time is about its
#: CPU time at one thread); gpu: an ESTIMATE (not yet measured on a GPU) of
#: compilation + 300 ResNet-18 steps at the ≤ 0.85 s/epoch target + evaluations.
SECONDS_PER_RUN = {"cpu": 20.0, "cpu-long": 20.0, "gpu": 90.0, "dry": 2.0}
#: STL-10's 96 px images cost (96/32)² = 9× the pixels of CIFAR's: a 40-step cpu run (closed-form SimSiam, one
#: thread, generated STL-format data of the full image size) took 139 s of CPU (wall 139 s), 7–9× a 32 px run; the
#: gpu and dry figures are the CIFAR ones × 9 (estimates).
STL10_SECONDS_PER_RUN = {"cpu": 140.0, "cpu-long": 140.0, "gpu": 9 * 90.0, "dry": 9 * 2.0}
#: the step budget of N11's and N12's runs at the cpu scale (half a run's cost in the budget line)
HALF_RUN_STEPS = 20
#: gpu, N4: two VGG11 runs of Table 1's CIFAR-10 protocol (800 epochs at ≈ 1 s, an estimate).
TABLE1_SECONDS = 2 * 800 * 1.0
#: cpu-long, N4: two 40-epoch no-EMA cells of ``reproduce table1 --scale cpu`` (216 and 218 s of user CPU each, seed 0,
#: one thread, measured on the shared 2-core machine)
TABLE1_CPU_SECONDS = 2 * 217.0


def planned_runs(capabilities, scale_name: str = "cpu") -> list[str]:
    """The training runs the N claims make for an adapter with these capabilities (the cpu scale
    runs only what N1 asserts there: see the skip reasons in ``test_deep``)."""
    cpu = scale_name == "cpu"
    caps = set(capabilities)
    runs = [m for m in ("simsiam", "simsiam_mlp", "byol") if m in caps]
    for m in ("simsiam", "simsiam_mlp"):
        if {m, "ablation:no_stopgrad"} <= caps:
            runs.append(f"{m} without SG")
    if {"simsiam_mlp", "ablation:no_predictor"} <= caps:
        runs.append("simsiam_mlp without predictor")
    long = scale_name == "cpu-long"                # N3's longer runs (N2 and N7 skip at cpu-long)
    if {"byol", "target:ema", "ablation:no_predictor"} <= caps and not cpu and not long:   # N7
        runs.append("byol without predictor")
    short = f" ({HALF_RUN_STEPS} steps)" if cpu else ""   # N11, N12 (test_deep.REDUNDANCY_STEPS)
    if "vicreg" in caps:
        runs += [f"vicreg{short}", f"vicreg without the variance term{short}"]
    if "barlow_twins" in caps:
        runs += [f"barlow_twins{short}", f"barlow_twins without the off-diagonal term{short}"]
    if {"simsiam", "predictor:closed_form"} <= caps and not cpu:   # N2, N3: the IsoLoss authors' projector
        n3 = f" ({LONG_RUN_STEPS['N3']} steps)" if long else ""
        if not long:                                              # N2 (skips at cpu-long)
            runs.append("simsiam, projector without output BN")
        if "isoloss" in caps:                                     # N3: both losses
            runs += [f"simsiam, projector without output BN{n3}"] if long else []
            runs.append(f"isoloss, projector without output BN{n3}")
    return runs


def budget_line(scale_name: str, impl, dataset: str = "cifar10") -> str:
    runs = planned_runs(impl.capabilities, scale_name)
    per_run = STL10_SECONDS_PER_RUN if dataset == "stl10" else SECONDS_PER_RUN
    steps = lambda r: int(r.rsplit("(", 1)[1].split()[0]) if r.endswith(" steps)") else 40
    t = sum(per_run[scale_name] * steps(r) / 40 for r in runs)
    if scale_name == "gpu" and {"simsiam", "isoloss"} <= set(impl.capabilities):
        t += TABLE1_SECONDS
        runs = runs + ["Table 1: simsiam and isoloss, 800 epochs (full CIFAR-10 only)"]
    if scale_name == "cpu-long" and {"simsiam", "isoloss"} <= set(impl.capabilities):
        t += TABLE1_CPU_SECONDS
        runs = runs + ["Table 1 in miniature: simsiam and isoloss without EMA, 40 epochs"]
    return (f"deep tier, {scale_name} scale, adapter {impl.name}: {len(runs)} training runs "
            f"({', '.join(runs) or 'none: no deep claim applies'}); budget ≈ {t / 60:.1f} min"
            + (" (an estimate: the gpu scale is not yet timed on a GPU)" if scale_name == "gpu" else
               " on an idle 2-core machine")
            + (" (STL-10, 96 px: about 7× the CIFAR-10 cost per run)" if dataset == "stl10" else ""))
