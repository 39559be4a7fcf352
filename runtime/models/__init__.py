"""Models built on the kernels: the invariant layer (nn), the potential and its saved files."""
