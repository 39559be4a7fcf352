"""cartinv: optimal rotation-invariant bases and the fused kernels generated from them.

Public API (imported lazily, so `import cartinv` pulls in neither SymPy nor torch):

- ``derive_basis(BasisRequest(orders=(0, 1, 2, 3), degree=4))`` -> ``Basis``  (symbolic; needs SymPy)
- ``load_basis(path)`` -> ``Basis``                                          (reads and validates a Basis file)
- ``load(basis_or_name, backend="auto")`` -> ``torch.nn.Module``             (runtime; no SymPy for checked-in bases)
- ``CartinvPotential(elements, basis="lmax3_deg4", ...)``, ``TensorInvariantLayer(basis, n_in, n_out, ...)``
  (runtime/models; the potential ``cartinv.ase.CartinvCalculator`` and ``cartinv lammps-export`` run)
"""

__version__ = "0.1.0"

_LAZY = {
    "BasisRequest": ("cartinv.symbolic.select", "BasisRequest"),
    "derive_basis": ("cartinv.symbolic.select", "derive_basis"),
    "RequestError": ("cartinv.symbolic.select", "RequestError"),
    "Basis": ("cartinv.symbolic.basisfile", "Basis"),
    "BasisFileError": ("cartinv.symbolic.basisfile", "BasisFileError"),
    "load_basis": ("cartinv.symbolic.basisfile", "load"),
    "load": ("cartinv.runtime.kernels.load", "load"),
    "InputError": ("cartinv.runtime.kernels.checks", "InputError"),
    "CartinvPotential": ("cartinv.runtime.models.potential", "CartinvPotential"),
    "TensorInvariantLayer": ("cartinv.runtime.models.nn", "TensorInvariantLayer"),
    "CartinvError": ("cartinv.errors", "CartinvError"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cartinv' has no attribute {name!r}")
