"""`cartinv export`: the exported PyTorch file runs in a fresh process that cannot import cartinv."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import cartinv
from cartinv.runtime.kernels.export import export

FRESH = r"""
import importlib.util, sys
sys.modules["cartinv"] = None          # any attempt to import cartinv now fails
import numpy as np, torch
sys.path.insert(0, str(__import__("pathlib").Path(sys.argv[1]).parent))  # the export folder, as its guide says
spec = importlib.util.spec_from_file_location("exported", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
d = np.load(sys.argv[2])
I = mod.InvariantModel()(torch.from_numpy(d["r"]), torch.from_numpy(d["centers"]), torch.from_numpy(d["w"]), int(d["n"]))
assert not any(k.split(".")[0] == "cartinv" and sys.modules[k] is not None for k in sys.modules)
np.save(sys.argv[3], I.numpy())
"""


@pytest.mark.parametrize("name", ["lmax3_deg4", "lmax2_deg4"])
def test_exported_torch_file_runs_without_cartinv(tmp_path, name):
    paths = export(name, "torch", tmp_path / "out")
    assert {p.name for p in paths} == {f"{name}_torch.py", f"{name}.json", f"{name}_manifest.json",
                                   "cartinv_torch_core.py", "EMBEDDING.md"}
    rng = np.random.default_rng(1)
    r = rng.normal(size=(40, 3))
    centers = rng.integers(0, 7, size=40)
    w = rng.normal(size=(40, 4))
    np.savez(tmp_path / "in.npz", r=r, centers=centers, w=w, n=8)
    script = tmp_path / "fresh.py"
    script.write_text(FRESH)
    subprocess.run([sys.executable, str(script), str(tmp_path / "out" / f"{name}_torch.py"), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npy")], check=True, cwd=tmp_path)
    got = np.load(tmp_path / "out.npy")
    ref = cartinv.load(name, backend="torch")(torch.from_numpy(r), torch.from_numpy(centers), torch.from_numpy(w), 8)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-12, atol=1e-12)
    assert np.abs(got[7]).max() == 0.0  # atom 7 has no neighbours


@pytest.mark.parametrize("target,files", [("c", {"lmax3_deg4.h", "cartinv_core.h", "cartinv_atom.inc"}),
                                          ("cuda", {"lmax3_deg4.cu", "lmax3_deg4.h", "cartinv_core.h", "cartinv_atom.inc",
                                                    "cartinv_kernels.inc"})])
def test_export_c_and_cuda_files(tmp_path, target, files):
    paths = export("lmax3_deg4", target, tmp_path)
    names = {p.name for p in paths}
    assert files <= names and "EMBEDDING.md" in names
    guide = (tmp_path / "EMBEDDING.md").read_text()
    assert "column 12: I13" in guide and target in guide
    # the folder is self-contained: the generated files find cartinv's core files beside them, no -I needed
    import shutil

    if target == "c" and shutil.which("g++"):
        (tmp_path / "main.cpp").write_text('#include "lmax3_deg4.h"\nint main() { double Y[16];\n'
                                           '  cartinv::lmax3_deg4::harmonics(0.0, 0.6, 0.8, Y); return Y[0] > 0 ? 0 : 1; }\n')
        subprocess.run(["g++", "-std=c++14", "-Wall", "-Werror", "main.cpp", "-o", "main"], cwd=tmp_path, check=True)
        subprocess.run([str(tmp_path / "main")], check=True)
    if target == "cuda" and shutil.which("nvcc"):
        subprocess.run(["nvcc", "-c", "-arch=sm_80", "lmax3_deg4.cu", "-o", "k.o"], cwd=tmp_path, check=True,
                       capture_output=True)


def test_export_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown target"):
        export("lmax3_deg4", "fortran", tmp_path)
    r = subprocess.run([sys.executable, "-m", "cartinv.cli", "export", "--basis", "no_such_basis", "--target", "torch",
                        "-o", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("cartinv: error:") and "Traceback" not in r.stderr


def test_exported_fused_cpu_core_builds_with_the_guides_command(tmp_path):
    """The C export carries the fused CPU core; the build command printed in EMBEDDING.md makes a library whose
    forward, backward and double backward agree with the torch backend."""
    import shlex
    import shutil

    from cartinv.runtime.kernels import cpu_backend

    if shutil.which("g++") is None:
        pytest.skip("no g++")
    paths = export("lmax2_deg4", "c", tmp_path)
    assert {p.name for p in paths} == {"lmax2_deg4.h", "lmax2_deg4.json", "lmax2_deg4_manifest.json", "fused_cpu.cpp",
                                       "cartinv_core.h", "cartinv_atom.inc", "EMBEDDING.md"}
    guide = (tmp_path / "EMBEDDING.md").read_text()
    command = guide[guide.index("    g++"):].split("\n\n")[0].replace("\\\n", " ")
    subprocess.run(shlex.split(command) + ["-Wno-psabi"], check=True, cwd=tmp_path)
    module = cartinv.load("lmax2_deg4", backend="torch")
    lib = cpu_backend.FusedLibrary(tmp_path / "liblmax2_deg4_fused.so", module.basis_hash)
    rng = np.random.default_rng(5)
    r = torch.tensor(rng.normal(size=(30, 3)), requires_grad=True)
    w = torch.tensor(rng.normal(size=(30, 6)), requires_grad=True)
    centers = torch.tensor(rng.integers(0, 5, size=30))
    ref = module(r, centers, w, 6)
    out, moments = lib.forward(r.detach(), w.detach().unsqueeze(-1), centers, 6)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = torch.tensor(rng.normal(size=tuple(ref.shape)))
    gr, gw = torch.autograd.grad(ref, (r, w), g)
    got_r, got_w = lib.backward(r.detach(), w.detach().unsqueeze(-1), centers, 6, moments, g)
    np.testing.assert_allclose(got_r.numpy(), gr.numpy(), rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(got_w.squeeze(-1).numpy(), gw.numpy(), rtol=1e-11, atol=1e-11)
