"""Image data sets as uint8 tensors, loaded once (then kept on the training device).

``load_dataset(spec, root=None, download=False)`` with ``spec``:

* ``"cifar10"`` — torchvision's ``CIFAR10`` from ``root/cifar-10-batches-py``;
* ``"stl10"`` — torchvision's ``STL10`` from ``root/stl10_binary`` (train 5k + test 8k
  labelled; ``unlabeled=True`` adds the 100k unlabelled images to the SSL set);
* ``"npz:PATH"`` — any ``.npz`` with ``x_train, y_train, x_test, y_test`` (images HWC or
  CHW, uint8), e.g. the CIFAR-10 fragment.

:func:`layout` says which of them a path holds. Nothing is downloaded unless
``download=True``. A missing or unreadable root raises
:class:`DataRootError` naming the files expected and how to get them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"]
STL10_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
STL10_UNLABELED = "unlabeled_X.bin"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"


class DataRootError(FileNotFoundError):
    """The data root lacks the expected files, or they cannot be read."""


@dataclass
class ImageDataset:
    """uint8 images ``(N, 3, H, W)`` and int64 labels; ``x_ssl`` is what SSL trains on."""
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    x_unlabeled: Tensor | None = None

    @property
    def x_ssl(self) -> Tensor:
        if self.x_unlabeled is None:
            return self.x_train
        return torch.cat([self.x_train, self.x_unlabeled])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std in [0, 1] of (up to 20k of) the images SSL mostly sees."""
        src = self.x_train if self.x_unlabeled is None else self.x_unlabeled
        x = src[:20000].float().div_(255)
        return tuple(x.mean((0, 2, 3)).tolist()), tuple(x.std((0, 2, 3)).tolist())

    def to(self, device) -> ImageDataset:
        move = lambda t: None if t is None else t.to(device)
        return ImageDataset(self.name, move(self.x_train), move(self.y_train), move(self.x_test),
                            move(self.y_test), self.num_classes, move(self.x_unlabeled))

    def limit(self, n: int | None) -> ImageDataset:
        """The first ``n`` images of every split (tiny smoke runs)."""
        if not n:
            return self
        cut = lambda t: None if t is None else t[:n]
        return ImageDataset(self.name, cut(self.x_train), cut(self.y_train), cut(self.x_test),
                            cut(self.y_test), self.num_classes, cut(self.x_unlabeled))


def _cifar_help(root: Path, problem: str) -> str:
    files = ", ".join(f"{root / 'cifar-10-batches-py' / f}" for f in CIFAR10_FILES)
    return (f"CIFAR-10 {problem} under {root}. Expected the python version of CIFAR-10: {files}. "
            f"Get it with --download (torchvision fetches {CIFAR10_URL} into the root), or download "
            f"that archive yourself and extract it into {root} (it creates cifar-10-batches-py/).")


def _stl_help(root: Path, problem: str, unlabeled: bool, download: bool = True) -> str:
    names = STL10_FILES + ([STL10_UNLABELED] if unlabeled else [])
    files = ", ".join(f"{root / 'stl10_binary' / f}" for f in names)
    get = (f"Get it with --download (torchvision fetches {STL10_URL}, 2.5 GB, into the root), or download that "
           f"archive yourself" if download else f"Download {STL10_URL} (2.5 GB)")
    return (f"STL-10 {problem} under {root}. Expected the binary version of STL-10: {files}. "
            f"{get} and extract it into {root} (it creates stl10_binary/).")


def _load_cifar10(root: Path, download: bool) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    class _CIFAR10(CIFAR10):
        # torchvision checks md5 sums; the files' presence is enough here (tests build small,
        # format-faithful batches), and an unreadable file fails loudly below.
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f in CIFAR10_FILES)

        def _load_meta(self) -> None:
            import pickle
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    folder = root / "cifar-10-batches-py"
    if not download:
        missing = [f for f in CIFAR10_FILES if not (folder / f).is_file()]
        if missing:
            raise DataRootError(_cifar_help(root, f"not found (missing {', '.join(missing)})"))
    try:
        tr = _CIFAR10(str(root), train=True, download=download)
        te = _CIFAR10(str(root), train=False, download=False)
    except DataRootError:
        raise
    except Exception as e:  # unpickling errors, short files, wrong shapes
        raise DataRootError(_cifar_help(root, f"is corrupt ({type(e).__name__}: {e})")) from e
    to_chw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()
    return ImageDataset("cifar10", to_chw(tr.data), torch.tensor(tr.targets, dtype=torch.int64),
                        to_chw(te.data), torch.tensor(te.targets, dtype=torch.int64), 10)


STL10_IMAGE_BYTES = 3 * 96 * 96      # one image of the binary version: uint8, channel-major, column-major 96×96


def check_stl10_root(root: str | os.PathLike, unlabeled: bool = True, *, download_hint: bool = True) -> None:
    """Raise :class:`DataRootError` naming every missing or truncated file of ``root/stl10_binary`` and the fix.

    Reads only the files' sizes (nothing is parsed, nothing executes): each ``*_X.bin`` holds whole images of
    :data:`STL10_IMAGE_BYTES` bytes, each ``*_y.bin`` one uint8 label per image of its split. ``download_hint``:
    the fix names ``--download`` (the commands that have it) or only the archive."""
    root = Path(root)
    folder = root / "stl10_binary"
    need = STL10_FILES + ([STL10_UNLABELED] if unlabeled else [])
    missing = [f for f in need if not (folder / f).is_file()]
    if missing:
        raise DataRootError(_stl_help(root, f"not found (missing {', '.join(missing)})", unlabeled, download_hint))
    bad = []
    for split in ("train", "test") + (("unlabeled",) if unlabeled else ()):
        size = (folder / f"{split}_X.bin").stat().st_size
        if size == 0 or size % STL10_IMAGE_BYTES:
            bad.append(f"{split}_X.bin has {size} bytes, not a positive multiple of {STL10_IMAGE_BYTES} (3×96×96)")
        elif split != "unlabeled" and (folder / f"{split}_y.bin").stat().st_size != size // STL10_IMAGE_BYTES:
            bad.append(f"{split}_y.bin has {(folder / f'{split}_y.bin').stat().st_size} labels for "
                       f"{size // STL10_IMAGE_BYTES} images in {split}_X.bin")
    if bad:
        raise DataRootError(_stl_help(root, f"is truncated or corrupt ({'; '.join(bad)})", unlabeled, download_hint))


def _load_stl10(root: Path, download: bool, unlabeled: bool) -> ImageDataset:
    from torchvision.datasets import STL10

    class _STL10(STL10):
        def _check_integrity(self) -> bool:
            return all((Path(self.root) / self.base_folder / f).is_file() for f in STL10_FILES)

    if not download:
        check_stl10_root(root, unlabeled)
    try:
        tr = _STL10(str(root), split="train", download=download)
        te = _STL10(str(root), split="test")
        un = _STL10(str(root), split="unlabeled") if unlabeled else None
        for part in (tr, te) + ((un,) if un is not None else ()):
            if part.data.shape[1:] != (3, 96, 96) or (part.labels is not None and len(part.labels) != len(part.data)):
                raise ValueError(f"images of shape {part.data.shape[1:]} with {len(part.labels)} labels "
                                 f"for {len(part.data)} images")
    except DataRootError:
        raise
    except Exception as e:
        raise DataRootError(_stl_help(root, f"is corrupt ({type(e).__name__}: {e})", unlabeled)) from e
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return ImageDataset("stl10", t(tr.data), t(tr.labels).long(), t(te.data), t(te.labels).long(), 10,
                        t(un.data) if un is not None else None)


def _load_npz(path: Path) -> ImageDataset:
    if not path.is_file():
        raise DataRootError(f"{path} does not exist; pass npz:PATH naming an .npz with arrays x_train, "
                            f"y_train, x_test, y_test (uint8 images, HWC or CHW).")
    try:
        with np.load(path) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as e:
        raise DataRootError(f"{path} lacks array {e}; it needs x_train, y_train, x_test, y_test.") from e
    except Exception as e:
        raise DataRootError(f"{path} cannot be read as .npz ({type(e).__name__}: {e}).") from e

    def images(a: np.ndarray, name: str) -> Tensor:
        if a.dtype != np.uint8 or a.ndim != 4:
            raise DataRootError(f"{path}: {name} must be uint8 (N, H, W, C) or (N, C, H, W), got "
                                f"{a.dtype} {a.shape}.")
        x = torch.from_numpy(np.ascontiguousarray(a))
        if a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return x.contiguous()

    y_tr = torch.from_numpy(arrays["y_train"].astype(np.int64))
    y_te = torch.from_numpy(arrays["y_test"].astype(np.int64))
    return ImageDataset(path.stem, images(arrays["x_train"], "x_train"), y_tr,
                        images(arrays["x_test"], "x_test"), y_te, int(max(y_tr.max(), y_te.max())) + 1)


def layout(path: str | os.PathLike) -> tuple[str, str | None] | None:
    """Which data set ``path`` holds, by its layout — the one place that decides it: ``(spec, root)`` for
    :func:`load_dataset`, or ``None`` when it is none of them (nothing is read but names).

    * a file named ``*.npz`` → ``("npz:PATH", None)`` (whether or not it exists: :func:`load_dataset` says);
    * a folder holding ``cifar-10-batches-py/``, or that folder itself → ``("cifar10", root)``;
    * a folder holding ``stl10_binary/``, or that folder itself → ``("stl10", root)``."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".npz":
        return f"npz:{p}", None
    for spec, folder in (("cifar10", "cifar-10-batches-py"), ("stl10", "stl10_binary")):
        if (p / folder).is_dir():
            return spec, str(p)
        if p.name == folder and p.is_dir():
            return spec, str(p.parent)
    return None


def load_dataset(spec: str, root: str | os.PathLike | None = None, download: bool = False, *,
                 unlabeled: bool = False, limit: int | None = None) -> ImageDataset:
    """Load ``"cifar10"``, ``"stl10"`` or ``"npz:PATH"`` as uint8 tensors (N, 3, H, W)."""
    if spec.startswith("npz:"):
        ds = _load_npz(Path(spec[4:]).expanduser())
    elif spec in ("cifar10", "stl10"):
        if root is None:
            raise DataRootError(f"{spec} needs a data root (--data-root DIR); "
                                + (_cifar_help(Path("DIR"), "is looked for") if spec == "cifar10"
                                   else _stl_help(Path("DIR"), "is looked for", unlabeled)))
        root = Path(root).expanduser()
        if download:
            root.mkdir(parents=True, exist_ok=True)
        elif not root.is_dir():
            raise DataRootError(_cifar_help(root, "not found (the root does not exist)") if spec == "cifar10"
                                 else _stl_help(root, "not found (the root does not exist)", unlabeled))
        ds = _load_cifar10(root, download) if spec == "cifar10" else _load_stl10(root, download, unlabeled)
    else:
        raise ValueError(f"unknown dataset {spec!r}; use 'cifar10', 'stl10' or 'npz:PATH'.")
    return ds.limit(limit)


# --- format-faithful synthetic files (tests, smoke runs) ----------------------------------

def write_fake_cifar10(root: str | os.PathLike, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 in the official python format (pickled dict batches).

    Five training batches of ``n_train // 5`` images, one test batch, ``batches.meta``; images
    are class-dependent colour blobs so that a few epochs learn something.
    """
    import pickle
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n, label):
        y = rng.integers(0, 10, n)
        x = _blobs(rng, y, 32)                                             # (n, 3, 32, 32)
        # the official batches are Python 2 pickles whose str keys load as str with
        # encoding="latin1" (what torchvision passes); protocol 2 str keys are equivalent
        return {"batch_label": label, "labels": y.tolist(),
                "data": x.reshape(n, 3 * 32 * 32), "filenames": [f"{i}.png" for i in range(n)]}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train // 5, f"training batch {i} of 5"), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, "testing batch 1 of 1"), f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                     "horse", "ship", "truck"], "num_cases_per_batch": n_train // 5,
                     "num_vis": 3072}, f, protocol=2)
    return Path(root)


def write_fake_stl10(root: str | os.PathLike, n_train: int = 20, n_test: int = 10, n_unlabeled: int = 20,
                     seed: int = 0) -> Path:
    """Write a tiny STL-10 in the official binary format (column-major 96×96 images, labels 1–10)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)

    def write(prefix, n, labelled=True):
        y = rng.integers(0, 10, n)
        x = _blobs(rng, y, 96)                                             # (n, 3, H, W)
        x.transpose(0, 1, 3, 2).tofile(folder / f"{prefix}_X.bin")        # STL stores W before H
        if labelled:
            (y + 1).astype(np.uint8).tofile(folder / f"{prefix}_y.bin")

    write("train", n_train)
    write("test", n_test)
    write("unlabeled", n_unlabeled, labelled=False)
    (folder / "class_names.txt").write_text("\n".join(["airplane", "bird", "car", "cat", "deer", "dog",
                                                        "horse", "monkey", "ship", "truck"]) + "\n")
    (folder / "fold_indices.txt").write_text(" ".join(map(str, range(n_train))) + "\n")
    return Path(root)


def _blobs(rng: np.random.Generator, y: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, 3, size, size): a class-coloured disc at a random place on noise."""
    n = len(y)
    palette = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190]])
    x = rng.integers(0, 90, (n, 3, size, size)).astype(np.float64)
    yy, xx = np.mgrid[:size, :size]
    c = rng.uniform(0.3, 0.7, (n, 2)) * size
    r = rng.uniform(0.15, 0.3, n) * size
    disc = ((yy[None] - c[:, :1, None]) ** 2 + (xx[None] - c[:, 1:, None]) ** 2) < r[:, None, None] ** 2
    x = np.where(disc[:, None], palette[y][:, :, None, None], x)
    return x.astype(np.uint8)
