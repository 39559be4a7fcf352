"""The runtime, one job per folder: kernels/ (load and run generated kernels: torch core, fused CPU, CUDA, op
family, caches, input checks, export), models/ (the invariant layer, the potential and its saved files),
integrations/ (ASE, LAMMPS ML-IAP unified, hippynn) and training/ (cartinv train / evaluate)."""
