"""Deep-network training for Halvagal et al. 2022, Table 1 (claim N4 checks its no-EMA CIFAR-10 gap) at hardware speed.

* :mod:`.data` — CIFAR-10 / STL-10 (torchvision, local root) and ``.npz`` as uint8 tensors;
* :mod:`.augment` — the SimCLR recipe, batched with per-sample random parameters;
* :mod:`.models` — VGG11, CIFAR ResNet-18, projector, ``make_encoder``;
* :mod:`.served` — adapter-protocol learners on a deep encoder (served embeddings, EMA target);
* :mod:`.dist` — data parallelism (gather with gradient, synchronised BN on any backend);
* :mod:`.train` — ``TrainConfig`` and ``train(config)``;
* :mod:`.table1` — the Table 1 grid (``ncspec reproduce table1``); :mod:`.bench` — throughput.

Names are imported lazily, so that building the command line does not import torch.
"""
import importlib

_LAZY = {"ImageDataset": ".data", "load_dataset": ".data", "make_encoder": ".models",
         "TrainConfig": ".train", "train": ".train"}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
