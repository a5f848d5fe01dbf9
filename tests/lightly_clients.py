"""Third-party clients of the collapse monitor, written as lightly's documentation and examples write them
(lightly 1.6, ``examples/pytorch_lightning/simsiam.py`` and ``byol.py``: heads from ``lightly.models.modules``,
``NegativeCosineSimilarity``, ``update_momentum`` and ``cosine_schedule``), with a tiny convolutional backbone so
that a few hundred CPU steps take seconds. Nothing in them knows about ncspec."""
from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimSiamPredictionHead, SimSiamProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn


def tiny_backbone(width: int = 16) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SimSiam(pl.LightningModule):
    def __init__(self, width: int = 16, dim: int = 32, lr: float = 0.06):
        super().__init__()
        self.backbone = tiny_backbone(width)
        self.projection_head = SimSiamProjectionHead(2 * width, 2 * dim, dim)
        self.prediction_head = SimSiamPredictionHead(dim, dim // 2, dim)
        self.criterion = NegativeCosineSimilarity()
        self.lr = lr

    def forward(self, x):
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        z = z.detach()
        return z, p

    def training_step(self, batch, batch_idx):
        (x0, x1) = batch[0]
        z0, p0 = self.forward(x0)
        z1, p1 = self.forward(x1)
        loss = 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class SimSiamNoStopGrad(SimSiam):
    """The same module with the stop-grad removed (the ``z = z.detach()`` line deleted)."""

    def forward(self, x):
        f = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(f)
        p = self.prediction_head(z)
        return z, p


class BYOL(pl.LightningModule):
    def __init__(self, width: int = 16, dim: int = 32, lr: float = 0.06, max_steps: int = 100):
        super().__init__()
        self.backbone = tiny_backbone(width)
        self.projection_head = BYOLProjectionHead(2 * width, 2 * dim, dim)
        self.prediction_head = BYOLPredictionHead(dim, 2 * dim, dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion = NegativeCosineSimilarity()
        self.lr, self.max_steps = lr, max_steps

    def forward(self, x):
        y = self.backbone(x).flatten(start_dim=1)
        z = self.projection_head(y)
        p = self.prediction_head(z)
        return p

    def forward_momentum(self, x):
        y = self.backbone_momentum(x).flatten(start_dim=1)
        z = self.projection_head_momentum(y)
        z = z.detach()
        return z

    def training_step(self, batch, batch_idx):
        momentum = cosine_schedule(self.global_step, self.max_steps, 0.996, 1)
        update_momentum(self.backbone, self.backbone_momentum, m=momentum)
        update_momentum(self.projection_head, self.projection_head_momentum, m=momentum)
        (x0, x1) = batch[0]
        p0 = self.forward(x0)
        z0 = self.forward_momentum(x0)
        p1 = self.forward(x1)
        z1 = self.forward_momentum(x1)
        loss = 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class TwoViews(torch.utils.data.Dataset):
    """CIFAR-style uint8 images (N, H, W, 3) → ``((view0, view1), label)`` with SimCLR-style augmentations
    (ncspec's tensor implementation of them, so that a CPU run spends its time in the model)."""

    def __init__(self, x, y, seed: int = 0):
        from ncspec.reference.vision import augment as aug
        self.x = torch.as_tensor(x).permute(0, 3, 1, 2).contiguous()
        self.y = torch.as_tensor(y)
        xf = self.x.float() / 255
        self.mean, self.std = xf.mean((0, 2, 3)).tolist(), xf.std((0, 2, 3)).tolist()
        self.cfgs = aug.simclr_views("cifar10", self.x.shape[-1], self.mean, self.std)
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return i

    def collate(self, idx):
        from ncspec.reference.vision import augment as aug
        x = self.x[torch.as_tensor(idx)]
        views = [aug.apply(x, aug.sample_params(c, x.shape[0], x.shape[-2], x.shape[-1], self.gen), c)
                 for c in self.cfgs]
        return (views[0], views[1]), self.y[torch.as_tensor(idx)]

    def loader(self, batch_size: int):
        return torch.utils.data.DataLoader(self, batch_size=batch_size, shuffle=True, drop_last=True,
                                           collate_fn=self.collate,
                                           generator=torch.Generator().manual_seed(int(self.gen.initial_seed())))
