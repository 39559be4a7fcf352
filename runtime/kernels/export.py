"""`cartinv export`: copy a basis's generated files for one target, with an embedding guide, into a folder.

The exported files are self-contained: the PyTorch module imports only torch and the hand-written torch core copied
beside it (cartinv_torch_core.py), the C/C++ header only the standard library, the CUDA source only its header. The
C target also carries the hand-written fused CPU core (fused_cpu.cpp), which builds with the header into a shared
library with C entry points.
"""

from __future__ import annotations

import json
from pathlib import Path

from cartinv import __version__
from cartinv.codegen.manifest import file_name as manifest_file
from cartinv.codegen.manifest import parse as parse_manifest
from cartinv.codegen.naming import c_identifier
from cartinv.errors import ArgumentError

from . import core_sources
from .generated_files import read_checked
from .kernel_cache import read_sealed
from .load import generated_dir, resolve_basis

# basis-independent sources copied beside the generated ones: (file in the cartinv.runtime package, name written)
CORE_FILES = {
    "torch": (("torch_core.py", "cartinv_torch_core.py"),),
    "c": tuple((f"csrc/{f}", f) for f in (*core_sources.FOR_TARGET["c"], "fused_cpu.cpp")),
    "cuda": tuple((f"csrc/{f}", f) for f in core_sources.FOR_TARGET["cuda"]),
}
TARGET_FILES = {  # each target also carries the manifest (sizes, symbols, sha256 of the files)
    "torch": ("{name}_torch.py", "{name}.json", manifest_file("{name}")),
    "c": ("{name}.h", "{name}.json", manifest_file("{name}")),
    "cuda": ("{name}.cu", "{name}.h", "{name}.json", manifest_file("{name}")),
}


def export(basis_or_name, target: str, outdir: Path) -> list[Path]:
    """Write the target's files and EMBEDDING.md into outdir; return the written paths."""
    if target not in TARGET_FILES:
        raise ArgumentError(f"unknown target {target!r}: choose one of {', '.join(TARGET_FILES)}")
    basis = resolve_basis(basis_or_name)
    folder, name = generated_dir(basis)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for pattern in TARGET_FILES[target]:
        src = folder / pattern.format(name=name)
        if not src.is_file():
            raise ArgumentError(f"basis {name!r} has no generated file {src.name} (regenerate with `cartinv generate`)")
        dst = outdir / src.name
        if src.name == manifest_file(name):
            data = read_sealed(folder, src.name)
            parse_manifest(data, str(src))  # the bytes written are the bytes validated
            dst.write_bytes(data)
        else:
            dst.write_bytes(read_checked(folder, name, src.name))  # what is exported is what was generated
        written.append(dst)
    from importlib import resources

    for source, fname in CORE_FILES.get(target, ()):
        dst = outdir / fname
        dst.write_bytes(resources.files("cartinv.runtime.kernels").joinpath(*source.split("/")).read_bytes())
        written.append(dst)
    guide = outdir / "EMBEDDING.md"
    guide.write_text(_guide(basis, name, target, [p.name for p in written]))
    written.append(guide)
    return written


def _guide(basis, name: str, target: str, files: list[str]) -> str:
    from cartinv.codegen.templating import environment

    env = environment()
    data = json.loads(basis.to_json())
    n_harmonics = sum(2 * l + 1 for l in data["request"]["orders"])
    return env.get_template("embedding_guide.md.j2").render(
        name=name, target=target, version=__version__, hash=basis.content_hash(),
        orders=", ".join(map(str, data["request"]["orders"])), n_harmonics=n_harmonics,
        n_invariants=len(data["invariants"]), channels=data["request"]["channels"], files=files,
        namespace=c_identifier(name),
        invariants=[{"id": i["id"], "degree": i["degree"], "notation": i.get("index_notation") or i["formula"][:80]}
                    for i in data["invariants"]],
    )
