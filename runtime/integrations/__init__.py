"""Integrations with other codes: ASE, LAMMPS (ML-IAP unified) and hippynn."""
