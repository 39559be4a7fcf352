"""The `cartinv` command line: derive, explain, draw, generate and export bases; train and evaluate potentials.

Every expected failure (bad request, bad file, bad input) prints one line `cartinv: error: ...` and exits 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from cartinv.errors import CartinvError


class CliError(CartinvError):
    """An error to report in one line without a traceback."""


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, so logs stay clean)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.last = 0.0
        self.start = time.monotonic()

    def __call__(self, stage: str, done: int, total):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and (total is None or done < total):
            return
        self.last = now
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            msg = f"\r{stage:<28} [{bar}] {done}/{total}  {now - self.start:6.1f}s"
        else:
            msg = f"\r{stage:<28} {done} candidates  {now - self.start:6.1f}s"
        sys.stderr.write(msg[:120].ljust(100))
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()


def _check_output_file(path) -> None:
    """Refuse an output file that cannot be written, before any work is done."""
    if path is None:
        return
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CliError(f"-o {path}: is a directory, expected a file name")
    if not parent.is_dir():
        raise CliError(f"-o {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"-o {path}: not writable")


def _check_output_dir(path) -> Path:
    """An output directory that exists or can be created (refused before any work is done)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CliError(f"-o {path}: exists and is not a directory")
    probe = path
    while not probe.exists():
        probe = probe.parent if str(probe.parent) != str(probe) else Path(".")
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise CliError(f"-o {path}: {probe} is not a writable directory")
    return path


def _cmd_basis(args) -> int:
    from cartinv.symbolic import estimate, report, schema
    from cartinv.symbolic.select import BasisRequest, RequestError, derive_basis

    if args.lmax is not None and args.orders is not None:
        raise CliError("give either --orders or --lmax, not both")
    if args.lmax is not None:
        if args.lmax < 0:
            raise CliError(f"--lmax must be non-negative, got {args.lmax}")
        orders = tuple(range(args.lmax + 1))
    else:
        orders = args.orders if args.orders is not None else (0, 1, 2, 3)
    degree = args.degree
    if degree is None and not (args.complete or args.flexible):
        degree = 4
    prefer = tuple(args.prefer or ())
    if args.preset:
        from cartinv.symbolic.presets import PRESETS

        prefer = PRESETS[args.preset] + prefer
    request = BasisRequest(orders=orders, degree=degree, channels=args.channels, complete=args.complete,
                           max_degree=args.max_degree, flexible=args.flexible, prefer=prefer,
                           generators=args.generators, group=args.group)
    _check_output_file(args.output)
    try:
        request.validate()
        if args.name is not None:
            schema.identifier(args.name, "--name")
    except (RequestError, schema.SchemaError) as exc:
        raise CliError(str(exc)) from None
    if args.complete or args.flexible:
        seconds = estimate.seconds(request)
        if seconds > estimate.REFUSE_SECONDS:
            raise CliError(f"request too large: {estimate.describe(request)} (limit "
                           f"{estimate.REFUSE_SECONDS / 3600:.0f} h); lower --lmax, --channels or --max-degree")
        if not args.quiet and (sys.stderr.isatty() or seconds > estimate.ANNOUNCE_SECONDS):
            print(f"cartinv: {estimate.describe(request)}", file=sys.stderr)
    name = args.name
    if name is None and args.preset and not args.prefer:
        import dataclasses

        name = f"{args.preset}_{dataclasses.replace(request, prefer=()).default_name()}"
    progress = _Progress(not args.quiet)
    try:
        basis = derive_basis(request, progress=progress, name=name)
    except RequestError as exc:
        raise CliError(str(exc)) from None
    finally:
        progress.close()
    if args.output:
        basis.save(args.output)
    if args.format == "json":
        sys.stdout.write(basis.to_json())
    elif args.format == "latex":
        sys.stdout.write(report.latex(basis))
    else:
        sys.stdout.write(report.table(basis))
        if args.output:
            sys.stdout.write(f"\nwrote {args.output}\n")
    return 0


def _load_basis(path):
    from cartinv.symbolic.basisfile import BasisFileError, load

    try:
        return load(path)
    except BasisFileError as exc:
        raise CliError(str(exc)) from None


def _cmd_explain(args) -> int:
    from cartinv.symbolic import report

    sys.stdout.write(report.explain(_load_basis(args.file)))
    return 0


def _cmd_draw(args) -> int:
    from cartinv.symbolic.draw import graph_svg

    out = _check_output_dir(args.output)
    basis = _load_basis(args.file)
    if basis.kind != "tensor":
        raise CliError(f"draw needs a tensor basis (graphs); {args.file} is kind {basis.kind!r}")
    out.mkdir(parents=True, exist_ok=True)
    entries = basis.invariants + (basis.dropped if args.dropped else [])
    root = out.resolve()
    for inv in entries:
        title = f"{inv['id']}: {inv.get('index_notation', '')}"
        target = (out / f"{inv['id']}.svg").resolve()
        if target.parent != root:  # ids are validated identifiers; this is the second wall
            raise CliError(f"invariant id {inv['id']!r} would write outside {out}")
        target.write_text(graph_svg(inv["orders"], inv["channels"], inv["edges"], title, basis.channels > 1))
    print(f"wrote {len(entries)} SVG files to {out}")
    return 0


def _cmd_count(args) -> int:
    import json
    from math import comb

    from cartinv.symbolic import molien

    if args.lmax is not None and args.orders is not None:
        raise CliError("give either --orders or --lmax, not both")
    orders = tuple(range(args.lmax + 1)) if args.lmax is not None else (args.orders or (0, 1, 2, 3))
    if not orders or any(l < 0 or l > 12 for l in orders) or len(set(orders)) != len(orders):
        raise CliError(f"orders must be distinct integers in 0..12, got {list(orders)}")
    if not 0 <= args.degree <= 32 or not 1 <= args.channels <= 16:
        raise CliError("--degree must be in 0..32 and --channels in 1..16")
    n_blocks = len(orders) * args.channels
    multisets = comb(n_blocks + args.degree, args.degree)
    if multisets > 2_000_000:
        raise CliError(f"request too large: {multisets:,} multidegrees up to degree {args.degree} over {n_blocks} "
                       f"blocks (limit 2,000,000); lower the degree, the orders or the channels")
    result = molien.count(orders, args.degree, args.channels, args.group)
    if args.format == "json":
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return 0
    series = " + ".join(f"{n} t^{d}" if d else str(n) for d, n in
                        ((int(d), n) for d, n in result["by_degree"].items()) if n)
    print(f"invariant polynomials of orders {list(result['orders'])}, {args.channels} channel(s), "
          f"group {args.group.upper()} (exact, from characters)")
    print(f"  Hilbert series up to t^{args.degree}: {series}")
    print("  degree  dimension")
    for d, n in result["by_degree"].items():
        print(f"  {d:>6}  {n:>9}")
    if args.multidegrees:
        print("  multidegree (factors per block)  dimension")
        from cartinv.symbolic.naming import block_name

        blocks = [block_name((c, l), args.channels) for c in range(args.channels) for l in sorted(orders)]
        for e in result["by_multidegree"]:
            text = " ".join(f"{b}^{k}" if k > 1 else b for b, k in zip(blocks, e["multidegree"]) if k) or "1"
            print(f"  {text:<32} {e['dimension']}")
    return 0


def _cmd_report(args) -> int:
    from cartinv.symbolic import basis_report

    _check_output_file(args.output)
    first = _load_basis(args.file)
    if args.other is not None:
        if args.format != "html":
            raise CliError("a comparison (two Basis files) is written as HTML only")
        text = basis_report.compare_html(first, _load_basis(args.other))
    else:
        text = basis_report.report_html(first) if args.format == "html" else basis_report.report_markdown(first)
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


def _cmd_generate(args) -> int:
    from cartinv.codegen.generate import generate, generate_standard

    _check_output_dir(args.output)
    if args.basis:
        basis = _load_basis(args.basis)
        try:
            paths = generate(basis, Path(args.output) / (args.name or basis.name), name=args.name or basis.name,
                             regenerate_command=f"cartinv generate --basis {args.basis} -o {args.output}")
        except CartinvError as exc:
            raise CliError(f"{args.basis}: {exc}") from None
    else:
        paths = generate_standard(Path(args.output))
    for p in paths:
        print(p)
    return 0


def _cmd_ace(args) -> int:
    from cartinv.symbolic import ace

    _check_output_file(args.output)
    try:
        basis = ace.derive_ace_basis(args.nu, args.nmax, args.lmax, species=args.species, group=args.group)
    except CartinvError as exc:
        raise CliError(str(exc)) from None
    sys.stdout.write(ace.format_counts(basis))
    if args.output:
        basis.save(args.output)
        sys.stdout.write(f"wrote {args.output}\n")
    return 0


def _cmd_export(args) -> int:
    from cartinv.runtime.kernels import export

    _check_output_dir(args.output)
    try:
        paths = export.export(args.basis, args.target, Path(args.output))
    except CartinvError as exc:
        raise CliError(str(exc)) from None
    for p in paths:
        print(p)
    return 0


def _cmd_lammps_export(args) -> int:
    from cartinv.runtime.integrations.lammps import export_lammps

    _check_output_file(args.output)
    if args.neighbor_cutoff is not None and not (math.isfinite(args.neighbor_cutoff) and args.neighbor_cutoff > 0):
        raise CliError(f"--neighbor-cutoff must be a positive finite distance in Å, got {args.neighbor_cutoff}")
    try:
        wrapper = export_lammps(args.model, args.output, dtype=args.dtype, neighbor_cutoff=args.neighbor_cutoff)
    except (CartinvError, OSError) as exc:
        raise CliError(str(exc)) from None
    print(f"wrote {args.output}: {wrapper}")
    print("in your LAMMPS input:")
    print(f"  pair_style mliap unified {args.output} {int(wrapper.ghostneigh)}")
    print(f"  pair_coeff * * {' '.join(wrapper.element_types)}")
    return 0


# cartinv train: flag -> TrainConfig field (flags left unset keep the config file's value or the default)
_TRAIN_FLAGS = {
    "basis": "basis", "cutoff": "cutoff", "features": "n_features", "layers": "n_layers", "radial": "n_radial",
    "channels": "channels", "hidden": "hidden", "dtype": "dtype", "epochs": "max_epochs", "patience": "patience",
    "batch_size": "batch_size", "lr": "lr", "max_time": "max_time", "seed": "seed", "threads": "threads",
    "energy_key": "energy_key", "forces_key": "forces_key", "stress_key": "stress_key",
    "energy_weight": "energy_weight", "forces_weight": "forces_weight", "stress_weight": "stress_weight",
    "valid_fraction": "valid_fraction", "e0s": "e0s", "backend": "backend", "valid_every": "valid_every",
    "clock": "clock",
}


def _e0s(text: str):
    """'fit' or 'H=-13.6,O=-2041.2' (eV per element)."""
    if text == "fit":
        return "fit"
    out = {}
    for item in text.split(","):
        sym, _, value = item.partition("=")
        try:
            out[sym.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'fit' or SYMBOL=ENERGY,... got {text!r}") from None
    return out


def _cmd_train(args) -> int:
    from cartinv.allocator import keep_freed_memory

    keep_freed_memory()  # before torch allocates: reuse the step's temporaries (cartinv/allocator.py)
    from cartinv.runtime.training import TrainConfig, load_config, train
    from cartinv.runtime.training.config import from_mapping

    _check_output_dir(args.output)
    config = load_config(args.config) if args.config else TrainConfig()
    overrides = {field: getattr(args, flag) for flag, field in _TRAIN_FLAGS.items() if getattr(args, flag) is not None}
    if args.quiet:
        overrides["progress"] = False
    config = from_mapping(overrides, "command line", base=config)
    result = train(args.data, config, valid=args.valid, outdir=args.output, resume=args.resume,
                   log=None if args.quiet else print)
    m = result.valid_metrics
    print(f"model: {result.model_path}  (best epoch {result.best_epoch} of {result.epochs}, {result.stop_reason}; "
          f"valid E MAE {m['energy_mae_per_atom'] * 1e3:.2f} meV/atom, F MAE {m['force_mae'] * 1e3:.1f} meV/Å)")
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from cartinv.runtime.training import evaluate, parity_plot

    plot = None if args.no_plot else Path(args.plot) if args.plot else \
        Path(args.model).with_name(f"parity_{Path(args.data).stem}.png")
    if plot is not None:
        _check_output_file(plot)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    m, pred = evaluate(args.model, args.data, args.energy_key, args.forces_key, args.stress_key)
    if plot is not None:
        parity_plot(pred, plot, title=f"{Path(args.model).name} on {Path(args.data).name}")
    if args.format == "json":
        print(json.dumps(m, indent=1))
    else:
        print(f"{m['n_structures']} structures, {m['n_atoms']} atoms")
        print(f"  energy  MAE {m['energy_mae_per_atom'] * 1e3:9.3f} meV/atom   RMSE "
              f"{m['energy_rmse_per_atom'] * 1e3:9.3f} meV/atom")
        print(f"  energy  MAE {m['energy_mae'] * 1e3:9.3f} meV/struct RMSE {m['energy_rmse'] * 1e3:9.3f} meV/struct")
        print(f"  forces  MAE {m['force_mae'] * 1e3:9.2f} meV/Å      RMSE {m['force_rmse'] * 1e3:9.2f} meV/Å")
        if "stress_mae" in m:
            print(f"  stress  MAE {m['stress_mae'] * 1e3:9.3f} meV/Å³     RMSE {m['stress_rmse'] * 1e3:9.3f} meV/Å³")
    if plot is not None:
        print(f"parity plot: {plot}", file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def molien_groups() -> tuple[str, ...]:
    from cartinv.symbolic.molien import GROUPS

    return GROUPS


class _Parser(argparse.ArgumentParser):
    """argparse with cartinv's one-line errors (exit code 2)."""

    def error(self, message):
        text = f"cartinv: error: {self.prog}: {message}".replace("\n", "\\n").replace("\r", "\\r")
        self.exit(2, text + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cartinv", description="Optimal rotation-invariant bases and their kernels.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("basis", help="derive a minimal complete basis (default: --lmax 3 --degree 4)")
    b.add_argument("--orders", type=_int_list, help="tensor orders, e.g. 0,1,2,3")
    b.add_argument("--lmax", type=int, help="shorthand for --orders 0..L")
    b.add_argument("--degree", type=int, help="highest degree (number of factors) searched; default 4")
    b.add_argument("--complete", action="store_true", help="raise the degree until the bound is reached")
    b.add_argument("--max-degree", type=int, default=10, help="cap for --complete/--flexible (default 10)")
    b.add_argument("--flexible", action="store_true", help="minimal set complete on every degenerate stratum")
    b.add_argument("--generators", action="store_true",
                   help="the minimal polynomial generators of the invariant algebra up to --degree (for linear "
                        "models: their products span every invariant)")
    b.add_argument("--channels", type=int, default=1, help="channels with cross-channel invariants (default 1)")
    b.add_argument("--group", choices=molien_groups(), default="o3",
                   help="o3 (default: reflections too) or so3 (adds the fewest pseudoscalars, Levi-Civita "
                        "contractions, that tell mirror images apart; with --generators, the SO(3) generators)")
    b.add_argument("--prefer", action="append", metavar="CONTRACTION",
                   help="try this contraction first, e.g. 'T2[ab] T2[bc] T2[ca]' (repeatable)")
    b.add_argument("--preset", choices=("hiphop",), help="preferred contractions of a known model (hiphop: HIP-HOP-NN's 13)")
    b.add_argument("--name", help="basis name (default from the request)")
    b.add_argument("-o", "--output", help="write the Basis file here")
    b.add_argument("--format", choices=("table", "json", "latex"), default="table",
                   help="what to print: a table (default), the Basis file as JSON, or a LaTeX tabular")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_basis)

    e = sub.add_parser("explain", help="list dropped candidates with their reasons and relations")
    e.add_argument("file", help="a Basis file (cartinv basis -o FILE.json)")
    e.set_defaults(func=_cmd_explain)

    d = sub.add_parser("draw", help="render each invariant's multigraph as an SVG image")
    d.add_argument("file", help="a Basis file of kind tensor (cartinv basis -o FILE.json)")
    d.add_argument("-o", "--output", required=True, help="output directory")
    d.add_argument("--dropped", action="store_true", help="also draw the dropped candidates")
    d.set_defaults(func=_cmd_draw)

    c = sub.add_parser("count", help="exact number of invariant polynomials of each degree (Molien-Weyl, characters)")
    c.add_argument("--orders", type=_int_list, help="tensor orders, e.g. 0,1,2,3 (default)")
    c.add_argument("--lmax", type=int, help="shorthand for --orders 0..L")
    c.add_argument("--degree", type=int, default=4, help="highest degree counted (default 4)")
    c.add_argument("--channels", type=int, default=1, help="channels, each with every order (default 1)")
    c.add_argument("--group", choices=molien_groups(), default="o3",
                   help="o3: rotations and reflections (default); so3: proper rotations (adds pseudoscalars)")
    c.add_argument("--multidegrees", action="store_true", help="also list the dimension of every multidegree")
    c.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json")
    c.set_defaults(func=_cmd_count)

    r = sub.add_parser("report", help="a self-contained HTML (or Markdown) report of a basis, or of two side by side")
    r.add_argument("file", help="a Basis file")
    r.add_argument("other", nargs="?", help="a second Basis file: compare the two (which invariants match as graphs, "
                                            "strata ranks side by side)")
    r.add_argument("-o", "--output", required=True, help="output file, e.g. report.html")
    r.add_argument("--format", choices=("html", "md"), default="html", help="html (default) or md (Markdown)")
    r.set_defaults(func=_cmd_report)

    g = sub.add_parser("generate", help="generate kernels (default: every standard basis into generated/)")
    g.add_argument("--basis", help="a Basis file to generate from (default: the standard bases)")
    g.add_argument("--name", help="name for the generated directory (default: the basis name)")
    g.add_argument("-o", "--output", default="generated", help="output root (default: generated)")
    g.set_defaults(func=_cmd_generate)

    a = sub.add_parser("ace", help="ACE basis pruned to a functionally independent subset")
    a.add_argument("--nu", type=int, required=True, help="correlation order")
    a.add_argument("--nmax", type=int, required=True, help="radial functions per species (n = 1..nmax)")
    a.add_argument("--lmax", type=int, required=True, help="highest angular order l of the single-particle basis")
    a.add_argument("--species", type=int, default=1, help="chemical species, one channel block each (default 1)")
    a.add_argument("--group", choices=molien_groups(), default="o3",
                   help="o3 (default) or so3 (adds the cheapest pseudoscalar B function, odd sum of l, that tells "
                        "mirror images apart)")
    a.add_argument("-o", "--output", help="write the Basis file here")
    a.set_defaults(func=_cmd_ace)

    x = sub.add_parser("export", help="dependency-free kernel files for embedding in another code")
    x.add_argument("--basis", required=True, help="standard basis name or Basis file")
    x.add_argument("--target", choices=("torch", "cuda", "c"), required=True,
                   help="torch: a standalone PyTorch module; c: a C++ header; cuda: CUDA kernels and their header")
    x.add_argument("-o", "--output", required=True, help="output directory (created if needed)")
    x.set_defaults(func=_cmd_export)
    m = sub.add_parser("lammps-export", help="write a trained model for LAMMPS `pair_style mliap unified`")
    m.add_argument("model", help="a model saved with CartinvPotential.save")
    m.add_argument("-o", "--output", required=True, help="output file (.pkl)")
    m.add_argument("--dtype", choices=("float32", "float64"), help="precision in LAMMPS (default: the model's)")
    m.add_argument("--neighbor-cutoff", type=float, help="LAMMPS neighbour cutoff (default: the model cutoff)")
    m.set_defaults(func=_cmd_lammps_export)

    t = sub.add_parser("train", help="train a potential on energies and forces from any ASE-readable file")
    t.add_argument("data", help="training data (extxyz or any format ASE reads) with energies and forces")
    t.add_argument("--valid", help="validation data (default: --valid-fraction of DATA, seeded)")
    t.add_argument("--config", help="settings file (.json or .toml; keys as TrainConfig); flags override it")
    t.add_argument("-o", "--output", default="cartinv_train",
                   help="output folder: model.pt, checkpoint.pt, history.json (default cartinv_train)")
    t.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt")
    t.add_argument("--basis", help="checked-in basis name or Basis file (default lmax3_deg4)")
    t.add_argument("--cutoff", type=float, help="radial cutoff in Å (default 5.0)")
    t.add_argument("--features", type=int, help="atom features and channels per layer (default 32)")
    t.add_argument("--layers", type=int, help="interaction layers (default 1)")
    t.add_argument("--radial", type=int, help="radial functions (default 8)")
    t.add_argument("--channels", type=int, help="tied channels per layer (default: --features)")
    t.add_argument("--hidden", type=_int_list, help="hidden widths of the energy MLP, e.g. 64,64 (default 64)")
    t.add_argument("--dtype", choices=("float32", "float64"), help="precision (default float64)")
    t.add_argument("--epochs", type=int, help="most epochs (default 500)")
    t.add_argument("--patience", type=int, help="stop after this many epochs without a better validation loss "
                                                  "(default 30)")
    t.add_argument("--batch-size", type=int, help="structures per step (default 8)")
    t.add_argument("--lr", type=float, help="initial learning rate of Adam (default 5e-3)")
    t.add_argument("--max-time", type=float, help="stop after this many seconds of training")
    t.add_argument("--clock", choices=("wall", "cpu"), help="what --max-time measures: wall time (default) or the "
                                                             "CPU time of this process")
    t.add_argument("--valid-every", type=int, help="score the validation set every this many epochs (default 1)")
    t.add_argument("--seed", type=int, help="seeds the initialisation, the split and the batch order (default 0)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--energy-key", help="name of the energy in the data (default energy)")
    t.add_argument("--forces-key", help="name of the forces in the data (default forces)")
    t.add_argument("--stress-key", help="name of the stress in the data (default stress)")
    t.add_argument("--energy-weight", type=float, help="loss weight of (eV/atom)^2 (default 10)")
    t.add_argument("--forces-weight", type=float, help="loss weight of (eV/Å)^2 (default 1)")
    t.add_argument("--stress-weight", type=float, help="loss weight of (eV/Å^3)^2 (default 1)")
    t.add_argument("--valid-fraction", type=float, help="validation share of DATA when --valid is not given (0.1)")
    t.add_argument("--e0s", type=_e0s, help="per-element reference energies: 'fit' (default, least squares) or "
                                            "H=-13.6,O=-2041.2 (eV)")
    t.add_argument("--backend", choices=("auto", "torch", "cpu", "cuda"), help="cartinv backend (default auto)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    t.set_defaults(func=_cmd_train)

    v = sub.add_parser("evaluate", help="energy and force errors of a trained model on labelled data")
    v.add_argument("model", help="a model file (cartinv train's model.pt, or CartinvPotential.save)")
    v.add_argument("data", help="labelled data (extxyz or any format ASE reads)")
    v.add_argument("--format", choices=("table", "json"), default="table", help="table (default) or json (eV, eV/Å)")
    v.add_argument("--plot", help="parity plot file (default: parity_<DATA stem>.png next to MODEL)")
    v.add_argument("--no-plot", action="store_true", help="write no parity plot")
    v.add_argument("--energy-key", default="energy", help="name of the energy in the data (default energy)")
    v.add_argument("--forces-key", default="forces", help="name of the forces in the data (default forces)")
    v.add_argument("--stress-key", default="stress", help="name of the stress in the data (default stress)")
    v.add_argument("--threads", type=int, help="torch CPU threads")
    v.set_defaults(func=_cmd_evaluate)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CartinvError as exc:  # every error cartinv raises on purpose (cartinv/errors.py); others are bugs
        print(f"cartinv: error: {exc}".replace("\n", "\\n").replace("\r", "\\r"), file=sys.stderr)
        return 2
    except OSError as exc:  # the file system said no (disk full, permissions) after the checks above
        print(f"cartinv: error: {exc.filename or ''}: {exc.strerror or exc}".replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cartinv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
