"""Evaluating an encoder on images: embeddings, weighted kNN, the offline linear probe, spectrum metrics."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import augment as aug


@torch.no_grad()
def embed(encoder: nn.Module, x: Tensor, mean, std, *, batch: int = 1024, bf16: bool = False,
          channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """Backbone features and embeddings (eval mode, no augmentation) of uint8 images."""
    was = encoder.training
    encoder.eval()
    hs, zs = [], []
    for i in range(0, x.shape[0], batch):
        xi = aug.normalize(x[i:i + batch], mean, std, channels_last=channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            h, z = encoder.forward_with_features(xi)
        hs.append(h.float())
        zs.append(z.float())
    encoder.train(was)
    return torch.cat(hs), torch.cat(zs)


def knn_accuracy_in_chunks(ftr: Tensor, ytr: Tensor, fte: Tensor, yte: Tensor, num_classes: int, k: int = 200,
                 t: float = 0.1, chunk: int = 1024) -> float:
    """Weighted kNN (``ncspec.reference.metrics.knn_accuracy``) over test chunks."""
    from ..metrics import knn_accuracy as knn
    correct = 0.0
    for i in range(0, fte.shape[0], chunk):
        q = fte[i:i + chunk]
        correct += float(knn(ftr, ytr, q, yte[i:i + chunk], k=k, temperature=t, num_classes=num_classes)) * q.shape[0]
    return correct / fte.shape[0]


def linear_probe(ftr: Tensor, ytr: Tensor, fte: Tensor, yte: Tensor, num_classes: int, iters: int = 100,
                 weight_decay: float = 1e-4) -> float:
    """Offline linear probe: standardised frozen features, multinomial logistic regression by L-BFGS."""
    mu, sd = ftr.mean(0), ftr.std(0) + 1e-6
    a, b = (ftr - mu) / sd, (fte - mu) / sd
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lin = nn.Linear(a.shape[1], num_classes).to(a.device)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=iters, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(a), ytr) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float((lin(b).argmax(1) == yte).float().mean())


def spectrum_metrics(z: Tensor) -> dict:
    """Eigenvalues of the embedding correlation/covariance, RankMe, participation ratio, std of
    l2-normalised embeddings, center-vector norm (``ncspec.reference.metrics``)."""
    from ..metrics import center_norm, normalized_std, participation_ratio, rankme
    z = z.double()
    corr = torch.linalg.eigvalsh(z.T @ z / z.shape[0]).flip(0).clamp_min(0)
    zc = z - z.mean(0)
    cov = torch.linalg.eigvalsh(zc.T @ zc / z.shape[0]).flip(0).clamp_min(0)
    return dict(rankme=float(rankme(z)), participation_ratio=float(participation_ratio(z)),
                normalized_std=float(normalized_std(z)), center_norm=float(center_norm(z)),
                eig_corr=corr.tolist(), eig_cov=cov.tolist())
