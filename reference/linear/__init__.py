"""The linear Siamese model the theory is stated on (Halvagal et al. 2022, §2; Wang et al. 2021).

``x ~ N(0, I_N)``, views ``x_{1,2} = x + σ ε_{1,2}``, embeddings ``z = W x``,
``W ∈ R^{M×N}``; batched over replicas (seeds) on a leading dimension.
"""
from .data import gaussian_views, population_views
from .deep import DeepLinearEncoder, LinearMAE, balanced_diagonal_layers
from .model import LinearEncoder, weights_with_spectrum
from .signal import cross_covariance, shared_signal_views
from .simulate import Trajectory, simulate

__all__ = ["gaussian_views", "population_views", "LinearEncoder", "weights_with_spectrum",
           "Trajectory", "simulate", "shared_signal_views", "cross_covariance", "DeepLinearEncoder",
           "LinearMAE", "balanced_diagonal_layers"]
