"""initscope: weight initialization and signal propagation for PyTorch.

Schemes (a drop-in for ``torch.nn.init`` plus LeCun, variance scaling, truncated normal,
delta-orthogonal), exact Gaussian-moment theory for any activation, an explained per-model
policy, LSUV and diagnostics.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
