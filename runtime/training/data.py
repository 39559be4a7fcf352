"""Labelled structures for training: read any ASE-readable file, check every frame, build pair lists, batch.

Every problem with a data file is a one-line ``DataError`` naming the file and the frame: no frames, a missing or
misnamed energy/forces key, NaN or infinite labels, wrong shapes, atoms on the same site, a species the model
was not trained on.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cartinv.errors import CartinvError
from cartinv.runtime.models import pair_count

__all__ = ["DataError", "Frame", "Structure", "Batch", "read_frames", "featurize", "collate", "fit_e0s",
           "check_species", "fingerprint"]


class DataError(CartinvError, ValueError):
    """A data file that cannot be used as it is (the message names the file and the frame)."""


MAX_DECOMPRESSED_BYTES = 4 << 30  # a compressed data file that inflates past this is refused
_OPENERS = {"xz": lzma.open, "gz": gzip.open, "bz2": bz2.open}


def _in_memory(path: Path):
    """(text stream, ASE format) of a compressed file of a known format, inflated once; None for anything else.

    ASE reads a compressed file through a stream that it seeks back on for every frame, which re-inflates it from
    the start each time: 155 s for the 1,500 frames of ``benchmarks/data/toluene.extxyz.xz`` against 1 s here."""
    from ase.io.formats import filetype, get_compression, ioformats

    root, compression = get_compression(str(path))
    if compression not in _OPENERS:
        return None
    fmt = filetype(root, read=False)
    if fmt not in ioformats:
        return None
    try:
        with _OPENERS[compression](path, "rb") as fh:
            raw = fh.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: cannot decompress ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
                        ) from None
    if len(raw) > MAX_DECOMPRESSED_BYTES:
        raise DataError(f"{path}: decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
    try:
        return io.StringIO(raw.decode("utf-8")), fmt
    except UnicodeDecodeError:
        raise DataError(f"{path}: decompressed data is not UTF-8 text") from None


@dataclass(frozen=True)
class Frame:
    """One labelled structure: energy (eV), forces [N, 3] (eV/Å), stress (Voigt, eV/Å³, ASE sign) or None."""

    symbols: tuple[str, ...]
    positions: np.ndarray
    cell: np.ndarray
    pbc: tuple[bool, bool, bool]
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    source: str

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    def atoms(self):
        """The frame as ASE Atoms (no calculator)."""
        from ase import Atoms

        return Atoms(self.symbols, positions=self.positions, cell=self.cell, pbc=self.pbc)


def _lookup(atoms, key: str, kind: str):
    """A label from info, arrays or the attached calculator's results (where extxyz puts 'energy'/'forces')."""
    if kind == "per_atom" and key in atoms.arrays:
        return atoms.arrays[key]
    if key in atoms.info:
        return atoms.info[key]
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    if key in results:
        return results[key]
    return None


def _available(atoms) -> str:
    calc = getattr(atoms, "calc", None)
    keys = sorted(set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"})
                  | set(getattr(calc, "results", None) or {}))
    return ", ".join(keys) or "none"


def read_frames(path, energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress",
                index=":") -> list[Frame]:
    """Every frame of ``path`` (any format ASE reads) with its energy, forces and (optional) stress, checked."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (no frames)")
    from ase.io import read

    inflated = _in_memory(path)
    try:
        if inflated is None:
            images = read(str(path), index=index)
        else:
            images = read(inflated[0], index=index, format=inflated[1])
    except Exception as exc:  # ASE raises many types for malformed files
        msg = " ".join(str(exc).split())[:160]
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {msg})") from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise DataError(f"{path}: no frames")
    frames = []
    for k, atoms in enumerate(images):
        where = f"{path}: frame {k}"
        n = len(atoms)
        if n == 0:
            raise DataError(f"{where}: no atoms")
        energy = _lookup(atoms, energy_key, "global")
        if energy is None:
            raise DataError(f"{where}: no energy under the key {energy_key!r} (keys there: {_available(atoms)})")
        try:
            energy = float(np.asarray(energy, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise DataError(f"{where}: energy {energy_key!r} is not a number") from None
        if not math.isfinite(energy):
            raise DataError(f"{where}: energy {energy_key!r} is {energy}")
        forces = _lookup(atoms, forces_key, "per_atom")
        if forces is None:
            raise DataError(f"{where}: no forces under the key {forces_key!r} (keys there: {_available(atoms)})")
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (n, 3):
            raise DataError(f"{where}: forces {forces_key!r} have shape {forces.shape}, expected ({n}, 3)")
        if not np.isfinite(forces).all():
            raise DataError(f"{where}: forces {forces_key!r} hold NaN or infinite values")
        positions = np.asarray(atoms.get_positions(), dtype=np.float64)
        if not np.isfinite(positions).all():
            raise DataError(f"{where}: positions hold NaN or infinite values")
        problem = pair_count.cell_problem(atoms.get_cell(), atoms.pbc)
        if problem is not None:
            raise DataError(f"{where}: {problem}")
        stress = _lookup(atoms, stress_key, "global")
        if stress is not None:
            stress = np.asarray(stress, dtype=np.float64)
            if stress.shape == (3, 3):
                stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            if stress.shape != (6,) or not np.isfinite(stress).all():
                raise DataError(f"{where}: stress {stress_key!r} must be 6 (Voigt) or 3x3 finite numbers")
            if not atoms.pbc.all():
                stress = None  # a stress is only defined for a cell periodic in all directions
        frames.append(Frame(symbols=tuple(atoms.get_chemical_symbols()), positions=positions,
                            cell=np.asarray(atoms.get_cell(), dtype=np.float64), pbc=tuple(bool(b) for b in atoms.pbc),
                            energy=energy, forces=forces, stress=stress, source=where))
    return frames


def check_species(frames: list[Frame], elements, label: str) -> None:
    """DataError naming the first frame of ``frames`` with an element outside ``elements``."""
    known = set(elements)
    for f in frames:
        unknown = sorted(set(f.symbols) - known)
        if unknown:
            raise DataError(f"{f.source}: species {unknown} never occur in the {label} (it has {sorted(known)})")


def fingerprint(frames: list[Frame]) -> str:
    """sha256 of the symbols, positions, cells and labels of ``frames`` (what a resumed run must see again)."""
    h = hashlib.sha256()
    for f in frames:
        h.update(" ".join(f.symbols).encode())
        for arr in (f.positions, f.cell, f.forces, np.array([f.energy]), f.stress if f.stress is not None
                    else np.zeros(0)):
            h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return h.hexdigest()


def fit_e0s(frames: list[Frame], elements) -> dict[str, float]:
    """Per-element reference energies: least squares of the total energies on the composition counts.

    Elements whose counts are collinear (e.g. every frame is the same molecule) share the minimum-norm
    solution, which still reproduces the mean energy of each composition exactly.
    """
    index = {e: k for k, e in enumerate(elements)}
    counts = np.zeros((len(frames), len(elements)))
    for r, f in enumerate(frames):
        for s in f.symbols:
            counts[r, index[s]] += 1
    energies = np.array([f.energy for f in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {e: float(e0[k]) for e, k in index.items()}


@dataclass
class Structure:
    """A featurised frame: species indices, directed pair list within the cutoff, targets (model dtype)."""

    species: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    rij: torch.Tensor
    energy: float
    forces: torch.Tensor
    stress: torch.Tensor | None
    volume: float

    @property
    def n_atoms(self) -> int:
        return int(self.species.shape[0])


def featurize(frames: list[Frame], elements, cutoff: float, dtype: torch.dtype) -> list[Structure]:
    """Pair lists (ASE ``neighbor_list``, periodic images included) and targets for every frame.

    Refused before any list is built (DataError with the estimate) when the pairs would take more than
    ``pair_count.memory_limit()``: a long cutoff in a dense periodic cell makes billions of them."""
    from ase.neighborlist import neighbor_list

    if frames:
        counts = [pair_count.estimated_pairs(f.positions, f.cell, f.pbc, cutoff) for f in frames]
        n_bytes = sum(counts) * pair_count.BYTES_PER_PAIR
        limit = pair_count.memory_limit()
        if n_bytes > limit:
            worst = frames[int(np.argmax(counts))]
            raise DataError(f"{worst.source}: about {sum(counts):,} pairs within the cutoff {cutoff} Å in "
                            f"{len(frames)} frame(s) ({n_bytes / 2**30:,.1f} GiB, {max(counts):,} in this "
                            f"frame), more than the {limit / 2**30:,.1f} GiB allowed (half this "
                            f"machine's memory); use a shorter cutoff or fewer frames")
    lookup = {e: k for k, e in enumerate(elements)}
    out = []
    for f in frames:
        atoms = f.atoms()
        i, j, shifts = neighbor_list("ijS", atoms, cutoff)
        vec = f.positions[j] - f.positions[i] + shifts @ f.cell
        if len(vec) and float(np.min(np.abs(vec).sum(axis=1))) == 0.0:
            raise DataError(f"{f.source}: two atoms sit on the same site")
        volume = float(abs(np.linalg.det(f.cell))) if all(f.pbc) else 0.0
        out.append(Structure(
            species=torch.tensor([lookup[s] for s in f.symbols], dtype=torch.int64),
            pair_i=torch.as_tensor(i, dtype=torch.int64),
            pair_j=torch.as_tensor(j, dtype=torch.int64),
            rij=torch.tensor(vec, dtype=dtype),
            energy=f.energy,
            forces=torch.tensor(f.forces, dtype=dtype),
            stress=None if f.stress is None or volume == 0.0 else torch.tensor(f.stress, dtype=dtype),
            volume=volume,
        ))
    return out


@dataclass
class Batch:
    """Several structures as one graph: atom and pair indices offset, with the structure of every atom and pair."""

    species: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    rij: torch.Tensor
    atom_structure: torch.Tensor
    pair_structure: torch.Tensor
    n_atoms: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    stress: torch.Tensor  # [S, 6]; rows of structures without a stress are zero and masked out
    has_stress: torch.Tensor  # [S] bool
    volume: torch.Tensor  # [S]


def collate(structs: list[Structure]) -> Batch:
    dtype = structs[0].rij.dtype
    offsets = np.cumsum([0] + [s.n_atoms for s in structs[:-1]])
    return Batch(
        species=torch.cat([s.species for s in structs]),
        pair_i=torch.cat([s.pair_i + int(o) for s, o in zip(structs, offsets)]),
        pair_j=torch.cat([s.pair_j + int(o) for s, o in zip(structs, offsets)]),
        rij=torch.cat([s.rij for s in structs]),
        atom_structure=torch.cat([torch.full((s.n_atoms,), k, dtype=torch.int64) for k, s in enumerate(structs)]),
        pair_structure=torch.cat([torch.full((s.pair_i.shape[0],), k, dtype=torch.int64)
                                  for k, s in enumerate(structs)]),
        n_atoms=torch.tensor([s.n_atoms for s in structs]),
        energy=torch.tensor([s.energy for s in structs], dtype=dtype),
        forces=torch.cat([s.forces for s in structs]),
        stress=torch.stack([s.stress if s.stress is not None else torch.zeros(6, dtype=dtype) for s in structs]),
        has_stress=torch.tensor([s.stress is not None for s in structs]),
        volume=torch.tensor([s.volume for s in structs], dtype=dtype),
    )


def predict(model, batch: Batch, training: bool, want_stress: bool = False):
    """Structure energies [S], forces [N, 3] and (if asked) stresses [S, 6] (ASE sign and Voigt order).

    Forces and the virial follow from one gradient g = ∂E/∂rij; ``training`` keeps the graph for the loss.
    """
    from cartinv.runtime.models.potential import pair_forces

    rij = batch.rij.detach().requires_grad_(True)
    e_atom = model(batch.species, batch.pair_i, batch.pair_j, rij)
    energy = e_atom.new_zeros(batch.n_atoms.shape[0]).index_add(0, batch.atom_structure, e_atom)
    if rij.shape[0]:
        (grad,) = torch.autograd.grad(energy.sum(), rij, create_graph=training)
    else:
        grad = torch.zeros_like(rij)
    forces = pair_forces(grad, batch.pair_i, batch.pair_j, batch.species.shape[0])
    stress = None
    if want_stress:
        outer = rij.unsqueeze(2) * grad.unsqueeze(1)  # [P, 3, 3]: rij ⊗ g
        w = outer.new_zeros((energy.shape[0], 3, 3)).index_add(0, batch.pair_structure, outer)
        w = 0.5 * (w + w.transpose(1, 2))
        voigt = w[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        stress = voigt / torch.where(batch.volume > 0, batch.volume, torch.ones_like(batch.volume)).unsqueeze(1)
    return energy, forces, stress
