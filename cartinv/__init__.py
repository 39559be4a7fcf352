"""cartinv: optimal rotation-invariant bases and the fused kernels generated from them."""
__version__ = "0.1.0"
