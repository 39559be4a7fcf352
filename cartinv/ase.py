"""ASE calculator for cartinv potentials (needs ASE): ``from cartinv.ase import CartinvCalculator``."""

from cartinv.runtime.integrations.ase import CartinvCalculator

__all__ = ["CartinvCalculator"]
