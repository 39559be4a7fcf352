"""The strict schema of a Basis file: every field's type, grammar and bound (pure Python, no SymPy).

A Basis file is data that other people hand you, and its text reaches generated code, file names and terminals.
So nothing in it is free text: identifiers follow one small grammar, every graph field must equal what its
edges imply (einsum, index notation, LaTeX), coordinates must be exactly the canonical table, formulas are
lexed against the polynomial grammar with bounded exponents and coefficients, and every number is an exact
int (a bool is not an int) within a stated limit. `validate` raises SchemaError naming the field.
"""

from __future__ import annotations

import keyword
import re
import string

from cartinv.errors import CartinvError

from .naming import EPS_LABEL, block_name, coordinate_table

SCHEMA_VERSION = 1
KINDS = ("tensor", "ace")
REASONS = ("reducible", "linear", "algebraic", "implicit", "functional")

# Limits: far above anything cartinv derives (largest checked-in formula: 81 kB; largest degree: 10).
MAX_ORDER = 12
MAX_CHANNELS = 64
MAX_DEGREE = 32
MAX_ENTRIES = 100_000
MAX_FORMULA_CHARS = 4_000_000
MAX_TEXT_CHARS = 4096
MAX_NUMBER_DIGITS = 60
MAX_PARENS = 16
MAX_COST = 10**15
MAX_STRATA = 1 << 16

IDENT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
EINSUM_LETTERS = string.ascii_lowercase + string.ascii_uppercase
FACTOR_RE = re.compile(r"T(\d{1,2})(?:c(\d{1,2}))?(?:\[([A-Za-z]{1,12})\])?")
COEFF_RE = re.compile(r"-?(?:\d{1,60}(?:\*sqrt\(\d{1,60}\))?|sqrt\(\d{1,60}\))(?:/\d{1,60})?")
TEXT_RE = re.compile(r"[A-Za-z0-9_ +\-*/=().,;:'<>^\[\]]*")
FORMULA_TOKEN_RE = re.compile(r"\s+|\*\*|[-+*/()]|\d+|[A-Za-z_][A-Za-z0-9_]*|.", re.S)

TENSOR_CONVENTION = ("orthonormal STF coordinates: T{l}_{m+l} = c_{l,m}, m = -l..l, real solid harmonic order "
                     "(cartinv.symbolic.stf)")
ACE_CONVENTION = (
    "ACE: A_{z,n,l,m} = T{l}c{z*nmax+n-1}_{m+l} / kappa_l (T{l}_{m+l} with one channel; orthonormal STF "
    "coordinates, cartinv.symbolic.stf), "
    "kappa_l^2 = l!/((2l+1)(2l-1)!!): standard real spherical harmonics in component normalisation "
    "(sum_m Y_lm^2 = 2l+1); radial weights tied across l (channel weight R_n(r) [species_j = z]); "
    "B = sequential generalised Clebsch-Gordan coupling (Condon-Shortley) of complex A, couplings = L_2..L_{nu-1}"
)
CONVENTIONS = {"tensor": TENSOR_CONVENTION, "ace": ACE_CONVENTION}

TOP_KEYS = ("schema_version", "kind", "name", "request", "convention", "coordinates", "bound", "rank", "complete",
            "degree_needed", "invariants", "dropped", "strata", "block_degrees", "stats")
TOP_OPTIONAL = ("span_check", "chirality")
SPAN_KEYS = ("group", "max_degree", "multidegrees", "graphs", "dimension", "rank")
REQUEST_KEYS = {"orders", "degree", "channels", "complete", "max_degree", "flexible"}
REQUEST_OPTIONAL = {"tensor": {"prefer", "generators", "group"}, "ace": {"group"}}
GROUPS = ("o3", "so3")
ACE_REQUEST_KEYS = {"nu", "nmax", "lmax", "species"}
GRAPH_KEYS = ("id", "orders", "channels", "edges", "degree", "einsum", "index_notation", "latex", "cost")
ACE_KEYS = ("id", "nu", "nl", "couplings", "degree", "ace_degree", "index_notation")
DROPPED_KEYS = ("reason", "relation", "relation_terms")


class SchemaError(CartinvError, ValueError):
    """A field of a Basis file that breaks the schema; the message names the field."""


def _need(cond: bool, field: str, msg: str) -> None:
    if not cond:
        raise SchemaError(f"{field}: {msg}")


def is_int(x) -> bool:
    """An exact JSON integer (bool excluded)."""
    return type(x) is int


def _int(x, field: str, lo: int, hi: int) -> int:
    _need(is_int(x), field, f"must be an integer, got {_show(x)}")
    _need(lo <= x <= hi, field, f"{x} is outside {lo}..{hi}")
    return x


def _bool(x, field: str) -> bool:
    _need(type(x) is bool, field, f"must be true or false, got {_show(x)}")
    return x


def _list(x, field: str, max_len: int) -> list:
    _need(type(x) is list, field, f"must be a list, got {_show(x)}")
    _need(len(x) <= max_len, field, f"has {len(x)} items (limit {max_len})")
    return x


def _dict(x, field: str, keys, optional=()) -> dict:
    _need(type(x) is dict, field, f"must be an object, got {_show(x)}")
    missing = sorted(k for k in keys if k not in x)
    _need(not missing, field, f"lacks {missing[0]!r}" if missing else "")
    extra = sorted(k for k in x if k not in keys and k not in optional)
    _need(not extra, field, f"has an unknown key {_show(extra[0]) if extra else ''}")
    return x


def _show(x) -> str:
    """A short, printable rendering of a bad value for an error message (never the whole value)."""
    text = ascii(x)
    return text if len(text) <= 40 else text[:37] + "..."


def identifier(x, field: str) -> str:
    """A name or id: a letter, then letters, digits or '_' (at most 64 characters), not a Python keyword."""
    _need(type(x) is str, field, f"must be a string, got {_show(x)}")
    _need(IDENT_RE.fullmatch(x) is not None, field,
          f"{_show(x)} is not an identifier (a letter, then letters, digits or '_', at most 64 characters)")
    _need(not keyword.iskeyword(x) and not keyword.issoftkeyword(x), field, f"{x!r} is a Python keyword")
    return x


def text(x, field: str, max_len: int = MAX_TEXT_CHARS) -> str:
    """A one-line description: printable ASCII from a small alphabet (no quotes, backslashes or newlines)."""
    _need(type(x) is str, field, f"must be a string, got {_show(x)}")
    _need(len(x) <= max_len, field, f"is {len(x)} characters long (limit {max_len})")
    _need(TEXT_RE.fullmatch(x) is not None, field,
          f"holds a character outside letters, digits, spaces and + - * / = ( ) . , ; : ' < > ^ [ ]: {_show(x)}")
    return x


# ---------------------------------------------------------------------------------------------- formulas
def formula(x, field: str, names: set[str], max_degree: int) -> str:
    """Lex a formula: coordinate names, sqrt, integers (bounded digits), + - * / ** and parentheses (bounded
    nesting), exponents at most `max_degree`. The full reading (symbolic/formulas.py) comes later; this bounds
    the work it can be made to do."""
    _need(type(x) is str and x, field, f"must be a non-empty string, got {_show(x)}")
    _need(len(x) <= MAX_FORMULA_CHARS, field, f"is {len(x):,} characters long (limit {MAX_FORMULA_CHARS:,})")
    depth, prev = 0, ""
    for m in FORMULA_TOKEN_RE.finditer(x):
        tok = m.group()
        if tok.isspace():
            continue
        if tok == "(":
            depth += 1
            _need(depth <= MAX_PARENS, field, f"parentheses nest deeper than {MAX_PARENS}")
        elif tok == ")":
            depth -= 1
            _need(depth >= 0, field, f"unbalanced ')' at character {m.start()}")
        elif tok[0].isdigit():
            _need(len(tok) <= MAX_NUMBER_DIGITS, field, f"an integer has {len(tok)} digits (limit {MAX_NUMBER_DIGITS})")
            if prev == "**":
                _need(int(tok) <= max_degree, field, f"exponent {tok} exceeds the degree {max_degree}")
        elif tok[0].isalpha() or tok[0] == "_":
            _need(tok in names or tok == "sqrt", field, f"unknown name {_show(tok)} (not a coordinate of this Basis)")
        elif tok not in ("**", "+", "-", "*", "/"):
            raise SchemaError(f"{field}: unexpected character {_show(tok)} at {m.start()}")
        if prev == "**":
            _need(tok[0].isdigit(), field, "an exponent must be a non-negative integer literal")
        prev = tok
    _need(depth == 0, field, "unbalanced '('")
    return x


# ---------------------------------------------------------------------------------------------- graph fields
def subscripts_of(orders: list[int], edges: list[list[int]]) -> list[str]:
    """Einsum subscripts per vertex implied by the edges (one letter per contracted index pair, in edge order)."""
    subs = [""] * len(orders)
    n = 0
    for u, v, k in edges:
        for _ in range(k):
            subs[u] += EINSUM_LETTERS[n]
            subs[v] += EINSUM_LETTERS[n]
            n += 1
    return subs


def graph_texts(orders, channels_of_vertices, edges, channels: int) -> dict[str, str]:
    """The einsum, index notation and LaTeX that a graph's edges imply (what the Basis file must hold)."""
    subs = subscripts_of(orders, edges)
    labels = list(zip(channels_of_vertices, orders))
    notation = " ".join(f"{block_name(lab, channels)}[{s}]" if s else block_name(lab, channels)
                        for lab, s in zip(labels, subs))
    parts = []
    for (c, l), s in zip(labels, subs):
        if (c, l) == EPS_LABEL:
            parts.append(f"\\varepsilon_{{{s}}}")
            continue
        ch = f",{c}" if channels > 1 else ""
        parts.append(f"T^{{({l}{ch})}}_{{{s}}}" if s else f"T^{{({l}{ch})}}")
    return {"einsum": ",".join(subs) + "->", "index_notation": notation, "latex": " ".join(parts)}


def _graph(entry: dict, where: str, n_ch: int, orders_allowed: set[int], pseudo_allowed: bool = False) -> None:
    """A contraction graph; with pseudo_allowed (an SO(3) Basis), vertex 0 may be the Levi-Civita vertex
    (channel -1, order 3), whose three edges have multiplicity 1."""
    orders = _list(entry["orders"], f"{where}.orders", MAX_DEGREE)
    _need(len(orders) >= 1, f"{where}.orders", "must not be empty")
    chans = _list(entry["channels"], f"{where}.channels", MAX_DEGREE)
    _need(len(chans) == len(orders), f"{where}.channels", f"gives {len(chans)} channels for {len(orders)} vertices")
    pseudo = pseudo_allowed and len(chans) > 1 and chans[0] == EPS_LABEL[0]
    for k, o in enumerate(orders):
        _int(o, f"{where}.orders[{k}]", 0, MAX_ORDER)
        if pseudo and k == 0:
            _need(o == EPS_LABEL[1], f"{where}.orders[0]", f"the Levi-Civita vertex has order 3, not {o}")
            continue
        _need(o in orders_allowed, f"{where}.orders[{k}]", f"order {o} is not among the request's orders")
    for k, c in enumerate(chans):
        if pseudo and k == 0:
            continue
        _int(c, f"{where}.channels[{k}]", 0, n_ch - 1)
    _int(entry["degree"], f"{where}.degree", 1, MAX_DEGREE)
    factors = len(orders) - (1 if pseudo else 0)  # the polynomial degree: the Levi-Civita vertex is a constant
    _need(entry["degree"] == factors, f"{where}.degree", f"{entry['degree']} != {factors} tensor factors")
    edges = _list(entry["edges"], f"{where}.edges", MAX_DEGREE * MAX_DEGREE)
    deg = [0] * len(orders)
    for k, e in enumerate(edges):
        f = f"{where}.edges[{k}]"
        _need(type(e) is list and len(e) == 3 and all(is_int(x) for x in e), f,
              f"must be [u, v, multiplicity] of integers, got {_show(e)}")
        u, v, mult = e
        _need(0 <= u < len(orders) and 0 <= v < len(orders), f, f"{e} names a missing vertex")
        _need(u != v, f, f"{e} is a self-loop (the trace of a traceless tensor)")
        _need(1 <= mult <= MAX_ORDER, f, f"{e} has multiplicity outside 1..{MAX_ORDER}")
        deg[u] += mult
        deg[v] += mult
    _need(deg == orders, f"{where}.edges", f"vertex degrees {deg} do not match orders {orders}")
    if pseudo:
        _need(all(e[2] == 1 for e in edges if e[0] == 0), f"{where}.edges",
              "the Levi-Civita vertex must join three different factors once each (else the contraction is 0)")
    _need(sum(orders) // 2 <= len(EINSUM_LETTERS), f"{where}.edges", "too many contracted indices")
    for key, want in graph_texts(orders, chans, edges, n_ch).items():
        _need(entry[key] == want, f"{where}.{key}", f"{_show(entry[key])} is not what the edges imply ({want!r})")
    _int(entry["cost"], f"{where}.cost", 0, MAX_COST)


# ---------------------------------------------------------------------------------------------- ACE fields
def ace_notation(nl, couplings) -> str:
    """The index notation of an ACE function (symbolic/ace/assemble.py writes the same)."""
    factors = " ".join(f"A({z},{n},{l})" for z, n, l in nl)
    return f"ACE {factors}; couplings {list(couplings)}"


def _ace(entry: dict, where: str, req: dict) -> None:
    nu = _int(entry["nu"], f"{where}.nu", 1, req["nu"])
    nl = _list(entry["nl"], f"{where}.nl", MAX_DEGREE)
    _need(len(nl) == nu, f"{where}.nl", f"has {len(nl)} labels for nu = {nu}")
    for k, lab in enumerate(nl):
        f = f"{where}.nl[{k}]"
        _need(type(lab) is list and len(lab) == 3 and all(is_int(x) for x in lab), f,
              f"must be [z, n, l] of integers, got {_show(lab)}")
        z, n, l = lab
        _need(0 <= z < req["species"] and 1 <= n <= req["nmax"] and 0 <= l <= req["lmax"], f,
              f"{lab} outside species 0..{req['species'] - 1}, n 1..{req['nmax']}, l 0..{req['lmax']}")
    _need([tuple(x) for x in nl] == sorted(tuple(x) for x in nl), f"{where}.nl", "labels must be sorted")
    _need(sum(x[2] for x in nl) % 2 == 0 or req.get("group") == "so3", f"{where}.nl",
          "has an odd sum of l (a pseudoscalar), which only an SO(3) Basis (request.group 'so3') holds")
    couplings = _list(entry["couplings"], f"{where}.couplings", MAX_DEGREE)
    _need(len(couplings) == max(nu - 2, 0), f"{where}.couplings", f"needs {max(nu - 2, 0)} couplings for nu = {nu}")
    for k, c in enumerate(couplings):
        _int(c, f"{where}.couplings[{k}]", 0, MAX_DEGREE * MAX_ORDER)
    _int(entry["degree"], f"{where}.degree", 1, MAX_DEGREE)
    _need(entry["degree"] == nu, f"{where}.degree", f"{entry['degree']} != nu {nu}")
    _int(entry["ace_degree"], f"{where}.ace_degree", 0, MAX_DEGREE * (MAX_ORDER + 64))
    _need(entry["ace_degree"] == sum(n + l for _, n, l in nl), f"{where}.ace_degree", "is not the sum of n + l")
    want = ace_notation(nl, couplings)
    _need(entry["index_notation"] == want, f"{where}.index_notation",
          f"{_show(entry['index_notation'])} is not what nl and couplings imply ({want!r})")


# ---------------------------------------------------------------------------------------------- the file
def _request(data: dict) -> dict:
    kind = data["kind"]
    keys = REQUEST_KEYS | (ACE_REQUEST_KEYS if kind == "ace" else set())
    req = _dict(data["request"], "request", keys, REQUEST_OPTIONAL[kind])
    orders = _list(req["orders"], "request.orders", MAX_ORDER + 1)
    _need(len(orders) >= 1, "request.orders", "must not be empty")
    for k, o in enumerate(orders):
        _int(o, f"request.orders[{k}]", 0, MAX_ORDER)
    _need(orders == sorted(set(orders)), "request.orders", "must be sorted and distinct")
    _int(req["channels"], "request.channels", 1, MAX_CHANNELS)
    if req["degree"] is not None:
        _int(req["degree"], "request.degree", 1, MAX_DEGREE)
    _bool(req["complete"], "request.complete")
    _bool(req["flexible"], "request.flexible")
    _int(req["max_degree"], "request.max_degree", 1, MAX_DEGREE)
    for k, p in enumerate(_list(req.get("prefer", []), "request.prefer", 64)):
        _need(type(p) is str and len(p) <= MAX_TEXT_CHARS, f"request.prefer[{k}]", "must be a short string")
        factors = p.replace("*", " ").split()
        _need(bool(factors) and all(FACTOR_RE.fullmatch(t) for t in factors), f"request.prefer[{k}]",
              f"{_show(p)} is not index notation (e.g. 'T2[ab] T2[bc] T2[ca]')")
    if "group" in req:
        _need(req["group"] == "so3", "request.group", f"must be 'so3' when present (O(3) is the default), got "
              f"{_show(req['group'])}")
    if "generators" in req:
        _need(req["generators"] is True, "request.generators", f"must be true when present, got "
              f"{_show(req['generators'])}")
    if kind == "ace":
        _int(req["nu"], "request.nu", 1, MAX_DEGREE)
        _int(req["nmax"], "request.nmax", 1, MAX_CHANNELS)
        _int(req["lmax"], "request.lmax", 0, MAX_ORDER)
        _int(req["species"], "request.species", 1, MAX_CHANNELS)
        _need(req["species"] * req["nmax"] == req["channels"], "request.channels", "must equal species * nmax")
        _need(orders == list(range(req["lmax"] + 1)), "request.orders", "must be 0..lmax")
    return req


def _numbers(x, field: str, depth: int = 0) -> None:
    """Plain statistics: integers, lists of them, or objects with identifier keys holding them (bounded)."""
    if is_int(x) or x is None or type(x) is bool:
        return
    _need(depth < 3, field, "nests too deeply")
    if type(x) is list:
        for k, v in enumerate(_list(x, field, 4096)):
            _numbers(v, f"{field}[{k}]", depth + 1)
        return
    _need(type(x) is dict and len(x) <= 256, field, f"must hold integers, lists or objects, got {_show(x)}")
    for k, v in x.items():
        identifier(k, f"{field} key")
        _numbers(v, f"{field}.{k}", depth + 1)


def validate(data) -> None:
    """Check every field of a parsed Basis file; raise SchemaError naming the first bad field."""
    _need(type(data) is dict, "top level", "must be a JSON object")
    _need("schema_version" in data, "schema_version", "is missing")
    ver = data["schema_version"]
    _need(is_int(ver) and ver == SCHEMA_VERSION, "schema_version",
          f"{_show(ver)} is not supported (this cartinv reads version {SCHEMA_VERSION})")
    _need(data.get("kind") in KINDS, "kind", f"must be one of {KINDS}, got {_show(data.get('kind'))}")
    _dict(data, "top level", TOP_KEYS, TOP_OPTIONAL)
    kind = data["kind"]
    identifier(data["name"], "name")
    req = _request(data)
    _need(data["convention"] == CONVENTIONS[kind], "convention", f"is not cartinv's {kind} convention")
    n_ch, orders = req["channels"], req["orders"]
    blocks = [(c, l) for c in range(n_ch) for l in orders]
    coords = _list(data["coordinates"], "coordinates", n_ch * (MAX_ORDER + 1) ** 2)
    want = coordinate_table(blocks, n_ch)
    _need(len(coords) == len(want), "coordinates", f"must list {len(want)} block coordinates, got {len(coords)}")
    for k, (got, exp) in enumerate(zip(coords, want)):
        _need(got == exp, f"coordinates[{k}]", f"{_show(got)} is not {exp}")
    names = {c["name"] for c in want}
    bound = _int(data["bound"], "bound", 0, 10**9)
    rank = _int(data["rank"], "rank", 0, bound)
    _bool(data["complete"], "complete")
    _need(data["complete"] == (rank == bound), "complete", "must say whether rank == bound")
    if data["degree_needed"] is not None:
        _int(data["degree_needed"], "degree_needed", 1, MAX_DEGREE)
    invs = _list(data["invariants"], "invariants", MAX_ENTRIES)
    dropped = _list(data["dropped"], "dropped", MAX_ENTRIES)
    _need(rank <= len(invs), "rank", f"{rank} exceeds the {len(invs)} invariants listed")
    base_keys = GRAPH_KEYS if kind == "tensor" else ACE_KEYS
    ids: set[str] = set()
    for group, entries, keys in (("invariants", invs, base_keys + ("formula",)),
                                 ("dropped", dropped, base_keys + DROPPED_KEYS)):
        for i, entry in enumerate(entries):
            where = f"{group}[{i}]"
            _dict(entry, where, keys)
            identifier(entry["id"], f"{where}.id")
            _need(entry["id"] not in ids, f"{where}.id", f"duplicate id {entry['id']!r}")
            ids.add(entry["id"])
            if kind == "tensor":
                _graph(entry, where, n_ch, set(orders), req.get("group") == "so3")
            else:
                _ace(entry, where, req)
            if group == "invariants":
                formula(entry["formula"], f"{where}.formula", names, entry["degree"])
    for i, d in enumerate(dropped):
        where = f"dropped[{i}]"
        _need(d["reason"] in REASONS, f"{where}.reason", f"must be one of {REASONS}, got {_show(d['reason'])}")
        if d["relation"] is not None:
            text(d["relation"], f"{where}.relation")
        if d["relation_terms"] is not None:
            for k, term in enumerate(_list(d["relation_terms"], f"{where}.relation_terms", 10_000)):
                f = f"{where}.relation_terms[{k}]"
                _need(type(term) is list and len(term) == 2 and type(term[0]) is str and type(term[1]) is list, f,
                      f"must be [coefficient, [ids...]], got {_show(term)}")
                _need(COEFF_RE.fullmatch(term[0]) is not None, f, f"coefficient {_show(term[0])} is not a number")
                _list(term[1], f, MAX_DEGREE)
                for rid in term[1]:
                    _need(type(rid) is str and rid in ids, f, f"{_show(rid)} names no entry of this Basis")
    strata = _list(data["strata"], "strata", MAX_STRATA)
    block_set = {(c, l) for c, l in blocks}
    for i, s in enumerate(strata):
        where = f"strata[{i}]"
        _dict(s, where, ("zero", "bound", "rank", "complete"))
        for k, z in enumerate(_list(s["zero"], f"{where}.zero", len(blocks))):
            _need(type(z) is list and len(z) == 2 and all(is_int(v) for v in z) and tuple(z) in block_set,
                  f"{where}.zero[{k}]", f"{_show(z)} is not a block [channel, l] of this Basis")
        sb = _int(s["bound"], f"{where}.bound", 0, bound)
        _int(s["rank"], f"{where}.rank", 0, sb)
        _bool(s["complete"], f"{where}.complete")
    for i, b in enumerate(_list(data["block_degrees"], "block_degrees", len(blocks))):
        where = f"block_degrees[{i}]"
        _dict(b, where, ("block", "bound", "degree"))
        _need(type(b["block"]) is list and len(b["block"]) == 2 and all(is_int(v) for v in b["block"])
              and tuple(b["block"]) in block_set, f"{where}.block", f"{_show(b['block'])} is not a block of this Basis")
        _int(b["bound"], f"{where}.bound", 0, bound)
        if b["degree"] is not None:
            _int(b["degree"], f"{where}.degree", 1, MAX_DEGREE)
    if "span_check" in data:
        _span_check(data["span_check"], kind, req.get("group", "o3"))
    _need(("chirality" in data) == (req.get("group") == "so3"), "chirality",
          "must be present exactly when request.group is 'so3'")
    if "chirality" in data:
        _chirality(data["chirality"], {e["id"] for e in invs}, block_set)
    _need(type(data["stats"]) is dict, "stats", "must be an object")
    _numbers(data["stats"], "stats")


def _chirality(x, kept_ids: set[str], block_set: set) -> None:
    """The SO(3) record of symbolic/pseudoscalars.py: kept pseudoscalars' squares and the strata report."""
    _dict(x, "chirality", ("pseudoscalars", "strata"))
    for k, p in enumerate(_list(x["pseudoscalars"], "chirality.pseudoscalars", MAX_ENTRIES)):
        where = f"chirality.pseudoscalars[{k}]"
        _dict(p, where, ("id", "square"))
        _need(p["id"] in kept_ids, f"{where}.id", f"{_show(p['id'])} names no invariant of this Basis")
        text(p["square"], f"{where}.square", MAX_FORMULA_CHARS)
    for k, st in enumerate(_list(x["strata"], "chirality.strata", MAX_STRATA)):
        where = f"chirality.strata[{k}]"
        _dict(st, where, ("zero", "separated", "candidate"))
        for j, z in enumerate(_list(st["zero"], f"{where}.zero", len(block_set))):
            _need(type(z) is list and len(z) == 2 and all(is_int(v) for v in z) and tuple(z) in block_set,
                  f"{where}.zero[{j}]", f"{_show(z)} is not a block [channel, l] of this Basis")
        _bool(st["separated"], f"{where}.separated")
        if st["candidate"] is not None:
            text(st["candidate"], f"{where}.candidate")


def _span_check(s, kind: str, group: str = "o3") -> None:
    """The record of symbolic/span.py: the graphs spanned the full Molien dimension (a file never records a
    failed check: the search stops instead)."""
    _need(kind == "tensor", "span_check", "is only recorded for tensor bases")
    _dict(s, "span_check", SPAN_KEYS)
    _need(s["group"] == group, "span_check.group", f"must be {group!r} (the request's group), got {_show(s['group'])}")
    _int(s["max_degree"], "span_check.max_degree", 0, MAX_DEGREE)
    for key in ("multidegrees", "graphs", "dimension"):
        _int(s[key], f"span_check.{key}", 0, 10**9)
    _need(is_int(s["rank"]) and s["rank"] == s["dimension"], "span_check.rank",
          f"must equal span_check.dimension ({_show(s['dimension'])}), got {_show(s['rank'])}")
