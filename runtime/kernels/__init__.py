"""Kernel loading and execution: generated modules, the torch core, the fused CPU and CUDA backends, the op family, caches and input checks."""
