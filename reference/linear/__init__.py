"""The linear Siamese model the theory is stated on (Halvagal et al. 2022, §2; Wang et al. 2021).

``x ~ N(0, I_N)``, views ``x_{1,2} = x + σ ε_{1,2}``, embeddings ``z = W x``,
``W ∈ R^{M×N}``; batched over replicas (seeds) on a leading dimension.
"""
from .data import gaussian_views, population_views
from .model import LinearEncoder, weights_with_spectrum
from .simulate import Trajectory, simulate

__all__ = ["gaussian_views", "population_views", "LinearEncoder", "weights_with_spectrum",
           "Trajectory", "simulate"]
