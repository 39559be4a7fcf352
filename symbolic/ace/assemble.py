"""A Basis file (kind 'ace') from a selection, and its counts."""

from __future__ import annotations

from typing import Callable

from cartinv.errors import ArgumentError

from .. import basisfile
from ..basisfile import Basis
from ..formulas import coordinate_table, formula_text
from ..modular import PRIMES
from .request import AceFunction, CONVENTION, SEED
from .selection import AceSelection, select_ace
from .formulas import coefficient_text, formula
from .chirality import square_text


def derive_ace_basis(nu: int, nmax: int, lmax: int, species: int = 1, progress: Callable | None = None,
                     group: str = "o3") -> Basis:
    """Full ACE basis for (ν_max, n_max, l_max, species), pruned to a functionally independent subset; with
    group "so3", plus one pseudoscalar (symbolic/ace/chirality.py).

    `progress(stage, done, total)` is optional. Deterministic: the same arguments give a byte-identical Basis.
    """
    sel = select_ace(nu, nmax, lmax, species, progress, group)
    return assemble(sel, progress)


def basis_name(nu: int, nmax: int, lmax: int, species: int, group: str = "o3") -> str:
    return (f"ace_nu{nu}_n{nmax}_l{lmax}" + (f"_s{species}" if species > 1 else "")
            + ("_so3" if group == "so3" else ""))


def assemble(sel: AceSelection, progress: Callable | None = None) -> Basis:
    progress = progress or (lambda *a, **k: None)
    channels = sel.channels
    ids, n_inv, n_drop = {}, 0, 0
    for i, s in enumerate(sel.status):
        if s == "kept":
            n_inv += 1
            ids[i] = f"I{n_inv}"
        else:
            n_drop += 1
            ids[i] = f"D{n_drop}"
    invariants, dropped = [], []
    for i, (fn, status) in enumerate(zip(sel.functions, sel.status)):
        entry = {"id": ids[i], **fn.to_json(), "degree": fn.nu, "ace_degree": fn.ace_degree,
                 "index_notation": fn.notation()}
        if status == "kept":
            entry["formula"] = formula_text(formula(fn, sel.nmax, channels))
            invariants.append(entry)
            progress("formulas", len(invariants), sel.rank)
            continue
        entry["reason"] = status
        if status == "functional":
            entry["relation"] = None
            entry["relation_terms"] = None
        else:
            rel = sel.relations.get(i)
            if rel is None:
                entry["relation"] = None
                entry["relation_terms"] = None
            else:
                terms = [[coefficient_text(q, s), [ids[k]]] for (q, s), k in rel]
                entry["relation"] = _relation_text(ids[i], terms)
                entry["relation_terms"] = terms
        dropped.append(entry)
    by_nu = [{"nu": k, **sel.counts(k)} for k in range(1, sel.nu + 1)]
    total = sel.counts()
    stats = {
        "full": total["full"],
        "linear": total["linear"],
        "functional": total["functional"],
        "bound": sel.bound,
        "zero": sum(1 for r in sel.relations.values() if r == []),
        "dropped_linear": sum(s == "linear" for s in sel.status),
        "dropped_functional": sum(s == "functional" for s in sel.status),
        "by_nu": by_nu,
        "primes": list(PRIMES),
        "seed": SEED,
    }
    complete = sel.rank == sel.bound
    request = {
        "orders": list(range(sel.lmax + 1)),
        "degree": sel.nu,
        "channels": channels,
        "complete": False,
        "max_degree": sel.nu,
        "flexible": False,
        "nu": sel.nu,
        "nmax": sel.nmax,
        "lmax": sel.lmax,
        "species": sel.species,
        **({"group": sel.group} if sel.group != "o3" else {}),
    }
    chirality = None
    if sel.chirality is not None:
        pid = ids[sel.chirality["kept"]]
        chirality = {"pseudoscalars": [{"id": pid, "square": square_text(f"{pid}**2", sel.chirality["square"])}],
                     "strata": sel.chirality["strata"]}
    return basisfile.build(
        kind="ace", name=basis_name(sel.nu, sel.nmax, sel.lmax, sel.species, sel.group), request=request,
        convention=CONVENTION, coordinates=coordinate_table(sel.blocks, channels), bound=sel.bound, rank=sel.rank,
        degree_needed=max(f.nu for f in sel.kept) if complete else None, invariants=invariants, dropped=dropped,
        stats=stats, chirality=chirality)


def _relation_text(lhs: str, terms: list) -> str:
    if not terms:
        return f"{lhs} = 0"
    out = ""
    for coef, (rid,) in terms:
        neg = coef.startswith("-")
        mag = coef[1:] if neg else coef
        body = rid if mag == "1" else f"{mag}*{rid}"
        if not out:
            out = ("-" if neg else "") + body
        else:
            out += (" - " if neg else " + ") + body
    return f"{lhs} = {out}"


def format_counts(basis: Basis) -> str:
    """Text table (ending in a newline) of full / linear / functional counts per ν, the bound and the rank."""
    if basis.kind != "ace":
        raise ArgumentError(f"format_counts needs an ACE Basis, got kind {basis.kind!r}")
    req, st = basis.data["request"], basis.data["stats"]
    head = (f"ACE basis {basis.name}: nu <= {req['nu']}, n <= {req['nmax']}, l <= {req['lmax']}, "
            f"{req['species']} species ({len(basis.coordinates)} block coordinates)")
    lines = [head, f"{'nu':>4} {'full':>8} {'linear':>8} {'functional':>11}"]
    for row in st["by_nu"]:
        lines.append(f"{row['nu']:>4} {row['full']:>8} {row['linear']:>8} {row['functional']:>11}")
    lines.append(f"{'all':>4} {st['full']:>8} {st['linear']:>8} {st['functional']:>11}")
    state = "complete" if basis.data["complete"] else "incomplete"
    lines.append(f"bound {st['bound']} (Jacobian rank {basis.rank}, {state}); dropped: "
                 f"{st['dropped_linear']} linear ({st['zero']} identically zero), "
                 f"{st['dropped_functional']} functional")
    if "chirality" in basis.data:
        (p,) = basis.data["chirality"]["pseudoscalars"]
        entry = next(e for e in basis.invariants if e["id"] == p["id"])
        strata = basis.data["chirality"]["strata"]
        lines.append(f"pseudoscalar {p['id']} = {entry['index_notation']} (changes sign under reflections); "
                     f"mirror images told apart on {sum(s['separated'] for s in strata)} of {len(strata)} strata")
    return "\n".join(lines) + "\n"


def functions_of(basis: Basis, which: str = "invariants") -> list[AceFunction]:
    """AceFunction of every invariant (or dropped entry) of an ACE Basis, in file order."""
    if basis.kind != "ace":
        raise ArgumentError(f"functions_of needs an ACE Basis, got kind {basis.kind!r}")
    return [AceFunction.from_json(e) for e in basis.data[which]]
