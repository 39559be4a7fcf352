"""C/C++/CUDA targets: printer, rendering, the header's maths under g++ (double and float) against independent
numpy/torch references, nvcc compilation of the kernels, and the kernels themselves run through a CPU emulation
of the CUDA execution model."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "cpp"))
import harness as H  # noqa: E402

from cartinv.codegen import emit_c  # noqa: E402
from cartinv.runtime.kernels.cuda_backend import KernelSource, build_csr  # noqa: E402
from cartinv.symbolic import stf  # noqa: E402

RTOL = {"f64": 1e-12, "f32": 5e-6}


@pytest.fixture(scope="module", params=sorted(H.BASES))
def rendered(request, tmp_path_factory):
    basis = H.basis_for(request.param)
    folder = tmp_path_factory.mktemp(f"c_{request.param}")
    files = H.render(basis, folder)
    return basis, folder, files


# ------------------------------------------------------------------------------------------------ printer


def _eval_c(text: str, values: dict[str, float]) -> float:
    assert "**" not in text and "pow" not in text, text
    return eval(text.replace("scalar_t(", "float("), {"float": float}, dict(values))


@pytest.mark.parametrize(
    "expr",
    [
        "x**3*y - 2*x*y**2/15 + sqrt(30)/7",
        "-sqrt(2)*x*(y + z)**2 + 13*z/15",
        "-x",
        "x*y*z",
        "Rational(-1, 3)",
        "3*(x - y)*(y + 2*z) - z**4",
    ],
)
def test_c_expression_matches_sympy(expr):
    x, y, z = sp.symbols("x y z")
    e = sp.sympify(expr, locals={"Rational": sp.Rational})
    text = emit_c.c_expression(e)
    rng = np.random.default_rng(3)
    for _ in range(3):
        vals = {"x": rng.normal(), "y": rng.normal(), "z": rng.normal()}
        want = float(e.subs({x: vals["x"], y: vals["y"], z: vals["z"]}))
        assert abs(_eval_c(text, vals) - want) <= 1e-13 * max(1.0, abs(want)), text


def test_c_expression_powers_are_products_and_literals_are_scalar_t():
    x, y = sp.symbols("x y")
    assert emit_c.c_expression(x**3) == "x*x*x"
    assert emit_c.c_expression(-x**2 * y) == "-x*x*y"
    assert emit_c.c_expression(sp.sqrt(2) * x / 2) == "scalar_t(0.7071067811865476)*x"
    assert emit_c.c_expression(x - 1) == "x - scalar_t(1.0)"
    assert emit_c.c_expression(2 * (x + y) ** 2) == "scalar_t(2.0)*(x + y)*(x + y)"


@pytest.mark.parametrize("expr", ["sqrt(x)", "1/x", "sin(x)"])
def test_c_expression_rejects_non_polynomials(expr):
    with pytest.raises(ValueError):
        emit_c.c_expression(sp.sympify(expr))


def test_comment_block_conversion():
    assert emit_c.c_comment_block("# a\n#b\n\n// c\nplain\n") == "// a\n//b\n//\n// c\n// plain"
    # every line stays a '//' comment: a block comment in the text cannot open or close one
    assert emit_c.c_comment_block("/* x */\n") == "// /* x * /"
    assert emit_c.c_comment_block("# a\\\nb ??/\n") == "// a\\ \n// b ?\\?/"


def test_identifiers_and_symbols():
    assert emit_c.c_identifier("lmax3_deg4") == "lmax3_deg4"
    assert emit_c.c_identifier("3-body.v2") == "basis_3_body_v2"
    assert emit_c.kernel_symbol("lmax3_deg4", "forward", "f32") == "lmax3_deg4_forward_f32"
    with pytest.raises(ValueError):
        emit_c.kernel_symbol("x", "forwards", "f32")
    with pytest.raises(ValueError):
        emit_c.kernel_symbol("x", "forward", "f16")


# ------------------------------------------------------------------------------------------------ rendering


def test_rendering_is_complete_and_deterministic(rendered):
    basis, folder, files = rendered
    name = basis.name
    assert sorted(files) == [f"{name}.cu", f"{name}.h", f"{name}.json", f"{name}_manifest.json"]
    again = emit_c.render_c_targets(basis, name, H.HEADER_COMMENT.format(name=name))
    for fname in again:
        text = files[fname].read_text()
        assert text == again[fname], f"{fname} differs between two renderings"
        assert text.startswith(f"// cartinv test rendering of basis {name}\n"), fname
        assert "TODO" not in text and "**" not in text
    header, kernels = files[f"{name}.h"].read_text(), files[f"{name}.cu"].read_text()
    constants = dict(KernelSource.load(folder, name).manifest.sizes)
    for key, value in constants.items():  # the header's enum holds the manifest's numbers
        assert f"    {key} = {value}," in header
    n_h = sum(2 * l + 1 for l in basis.orders)
    assert constants["CHANNELS"] == basis.channels
    assert constants["N_HARMONICS"] == n_h
    assert constants["N_COORDS"] == len(basis.coordinates) == basis.channels * n_h
    assert constants["N_INVARIANTS"] == len(basis.invariants)
    assert constants["HARMONICS_STRIDE"] % 2 == 1 and constants["HARMONICS_STRIDE"] >= n_h
    assert f"namespace {emit_c.c_identifier(name)} {{" in header
    assert kernels.count(f'#include "{name}.h"') == 1
    for kernel in emit_c.KERNELS:
        for sfx in ("f32", "f64"):
            assert re.search(rf"__global__ void {emit_c.kernel_symbol(name, kernel, sfx)}\(", kernels)
    # every invariant output is written exactly once, in Basis order, with its id in a comment
    for k, inv in enumerate(basis.invariants):
        assert len(re.findall(rf"^\s*I\[{k}\] = .*// {inv['id']}:", header, re.MULTILINE)) == 1


def test_nvrtc_source_is_self_contained(rendered):
    basis, folder, _ = rendered
    src = KernelSource.load(folder, basis.name)
    one = src.nvrtc_source()
    assert "#include" not in one.replace("#include <cmath>", "")
    assert one.count("    N_COORDS = ") == 1


# ------------------------------------------------------------------------------------------------ g++


def test_headers_are_plain_cpp11_and_list_the_basis(tmp_path):
    gxx = H.require(H.GXX, "g++")
    tied, chans = H.basis_for("tied"), H.basis_for("channels")
    H.render(tied, tmp_path)
    H.render(chans, tmp_path)
    a, b = emit_c.c_identifier(tied.name), emit_c.c_identifier(chans.name)
    main = tmp_path / "main.cpp"
    main.write_text(f"""
#include "{tied.name}.h"
#include "{chans.name}.h"
#include "{tied.name}.h"
#include <cstdio>
int main() {{
    for (int k = 0; k < cartinv::{a}::N_INVARIANTS; ++k) std::printf("{a} %s\\n", cartinv::{a}::invariant_ids()[k]);
    for (int k = 0; k < cartinv::{b}::N_COORDS; ++k) std::printf("{b} %s\\n", cartinv::{b}::coordinate_names()[k]);
    std::printf("orders %d %d\\n", cartinv::{a}::orders()[0], cartinv::{a}::orders()[cartinv::{a}::N_ORDERS - 1]);
    std::printf("name %s %s\\n", cartinv::{b}::basis_name(), cartinv::{b}::basis_hash());
    return 0;
}}
""")
    exe = tmp_path / "main"
    H.run([gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp_path}", f"-I{H.CORE_DIR}", str(main),
           "-o", str(exe)])
    lines = H.run([str(exe)]).stdout.splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith(a + " ")] == [inv["id"] for inv in tied.invariants]
    assert [ln.split()[1] for ln in lines if ln.startswith(b + " ")] == [c["name"] for c in chans.coordinates]
    assert lines[-2:] == [f"orders {min(tied.orders)} {max(tied.orders)}", f"name {chans.name} {chans.content_hash()}"]


def _driver_inputs(basis, rng):
    n_atoms, n_pairs, groups, n_rows = 6, 23, 3, 5
    r, w, centers = H.random_system(rng, basis, n_atoms, n_pairs, groups, empty_atoms=(2,))
    n_h = sum(2 * l + 1 for l in basis.orders)
    K, NC = len(basis.invariants), len(basis.coordinates)
    atom_gI = rng.normal(size=(n_atoms, groups, K))
    rows_T = rng.normal(size=(n_rows, NC))
    rows_gI = rng.normal(size=(n_rows, K))
    gY = rng.normal(size=(n_pairs, n_h))
    numbers = [n_atoms, n_pairs, groups, n_rows, *r.ravel(), *w.ravel(), *centers, *atom_gI.ravel(),
               *rows_T.ravel(), *rows_gI.ravel(), *gY.ravel()]
    return dict(n_atoms=n_atoms, r=r, w=w, centers=centers, atom_gI=atom_gI, rows_T=rows_T, rows_gI=rows_gI,
                gY=gY), numbers


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_header_maths_against_references(rendered, dtype):
    basis, folder, _ = rendered
    exe = folder / f"check_{basis.name}"
    if not exe.exists():
        exe = H.compile_driver(folder, basis.name)
    rng = np.random.default_rng(11)
    d, numbers = _driver_inputs(basis, rng)
    out = H.run_driver(exe, dtype, numbers)
    rtol = RTOL[dtype]
    orders = sorted(basis.orders)
    P = d["r"].shape[0]

    # harmonics of the unit vectors: stf.y_coordinates order by order
    want_Y = np.concatenate([stf.y_coordinates(l, d["r"]) for l in orders], axis=1)
    H.assert_close(out["harmonics"].reshape(P, -1), want_Y, rtol, "harmonics")

    # harmonics VJP (u a free vector): autograd through Cartesian powers
    u = torch.tensor(d["r"] / np.linalg.norm(d["r"], axis=1, keepdims=True), requires_grad=True)
    (H.torch_harmonics(orders, u) * torch.tensor(d["gY"])).sum().backward()
    H.assert_close(out["harmonics_vjp"].reshape(P, 3), u.grad.numpy(), rtol, "harmonics_vjp")

    # invariants of arbitrary rows: each invariant's einsum on Cartesian blocks; VJP by autograd
    T = torch.tensor(d["rows_T"], requires_grad=True)
    I = H.torch_invariants(basis, T)
    (I * torch.tensor(d["rows_gI"])).sum().backward()
    H.assert_close(out["invariants"].reshape(I.shape), I.detach().numpy(), rtol, "invariants")
    H.assert_close(out["invariants_vjp"].reshape(T.shape), T.grad.numpy(), rtol, "invariants_vjp")

    # per-atom forward and backward against the full Cartesian pipeline
    r = torch.tensor(d["r"], requires_grad=True)
    w = torch.tensor(d["w"], requires_grad=True)
    centers = torch.tensor(d["centers"])
    ref = H.torch_pipeline(basis)(r, centers, w, d["n_atoms"])
    (ref * torch.tensor(d["atom_gI"])).sum().backward()
    contrib = np.einsum("pgn,pj->pgnj", d["w"], want_Y).reshape(P, d["w"].shape[1], -1)
    want_T = np.zeros((d["n_atoms"],) + contrib.shape[1:])
    np.add.at(want_T, d["centers"], contrib)
    H.assert_close(out["atom_moments"].reshape(want_T.shape), want_T, rtol, "atom moments")
    assert np.all(out["atom_moments"].reshape(want_T.shape)[2] == 0), "an atom without pairs has zero moments"
    H.assert_close(out["atom_invariants"].reshape(ref.shape), ref.detach().numpy(), rtol, "atom invariants")
    H.assert_close(out["grad_r"].reshape(P, 3), r.grad.numpy(), rtol, "grad r")
    H.assert_close(out["grad_w"].reshape(d["w"].shape), w.grad.numpy(), rtol, "grad w")


def test_header_driver_fails_on_wrong_input(rendered):
    """The harness itself can fail: truncated input is an error, not silently zero."""
    basis, folder, _ = rendered
    exe = folder / f"check_{basis.name}"
    if not exe.exists():
        exe = H.compile_driver(folder, basis.name)
    proc = subprocess.run([str(exe), "f64"], input="2 3 1 0 0.5 0.5", capture_output=True, text=True)
    assert proc.returncode == 2 and "input ended" in proc.stderr


# ------------------------------------------------------------------------------------------------ nvcc


def _nvcc_arch(nvcc: str) -> str:
    listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout.split()
    archs = sorted(int(a.split("_")[1]) for a in listed if a.startswith("compute_"))
    chosen = 80 if 80 in archs else archs[0]
    return f"sm_{chosen}"


def test_kernels_compile_with_nvcc(rendered, tmp_path):
    nvcc = H.require(H.NVCC, "nvcc")
    basis, folder, files = rendered
    arch = _nvcc_arch(nvcc)
    obj = tmp_path / "kernels.o"
    H.run([nvcc, "-c", f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings", f"-I{folder}", f"-I{H.CORE_DIR}",
           str(files[f"{basis.name}.cu"]), "-o", str(obj)])
    symbols = H.run(["nm", str(obj)]).stdout
    for kernel in emit_c.KERNELS:
        for sfx in ("f32", "f64"):
            assert re.search(rf"\bT {emit_c.kernel_symbol(basis.name, kernel, sfx)}$", symbols, re.MULTILINE)
    # the single NVRTC translation unit (header pasted in) compiles on its own, without the include path
    single = tmp_path / "single.cu"
    single.write_text(KernelSource.load(folder, basis.name).nvrtc_source())
    H.run([nvcc, "-c", f"-arch={arch}", "-std=c++17", "-Werror", "all-warnings", str(single),
           "-o", str(tmp_path / "single.o")])


# ------------------------------------------------------------------------------------------------ emulated kernels


@pytest.fixture(scope="module")
def emulated(rendered):
    basis, folder, _ = rendered
    return basis, H.compile_emulation(folder, basis.name)


def _launch_forward(launcher, name, dtype, grid, block, smem, r, w, layout, groups, store=True):
    n_atoms = layout.n_atoms
    constants = launcher.constants
    out = torch.full((n_atoms, groups, constants["N_INVARIANTS"]), float("nan"), dtype=dtype)
    moments = torch.full((n_atoms, groups, constants["N_COORDS"]), float("nan"), dtype=dtype)
    launcher.launch(emit_c.kernel_symbol(name, "forward", "f64" if dtype == torch.float64 else "f32"), None,
                    grid, block, smem, (r, w, layout.order, layout.offsets, np.int64(n_atoms), np.int32(groups),
                                        np.int32(1 if store else 0), moments, out))
    return out, moments


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", [(2, 3), (4, 2), (8, 1)])  # (lanes, rows) of the forward block
def test_emulated_kernels_against_references(emulated, dtype, config):
    basis, lib = emulated
    name = basis.name
    launcher = H.EmulatedLauncher(lib, name)
    launcher.constants = KernelSource.load(lib.parent, name).constants
    c = launcher.constants
    sfx = "f64" if dtype == torch.float64 else "f32"
    rtol = RTOL[sfx]
    rng = np.random.default_rng(5)
    n_atoms, n_pairs, groups = 7, 31, 5
    r_np, w_np, centers_np = H.random_system(rng, basis, n_atoms, n_pairs, groups, empty_atoms=(1, 6))
    r = torch.tensor(r_np, dtype=dtype)
    w = torch.tensor(w_np, dtype=dtype)
    centers = torch.tensor(centers_np)
    layout = build_csr(centers, n_atoms)
    itemsize = r.element_size()

    lanes, rows = config
    smem = lanes * rows * (8 + c["HARMONICS_STRIDE"] * itemsize)
    grid = (-(-n_atoms // rows), -(-groups // lanes), 1)
    out, moments = _launch_forward(launcher, name, dtype, grid, (lanes, rows, 1), smem, r, w, layout, groups)

    r64 = torch.tensor(r_np, requires_grad=True)
    w64 = torch.tensor(w_np, requires_grad=True)
    ref = H.torch_pipeline(basis)(r64, centers, w64, n_atoms)
    H.assert_close(out.double().numpy(), ref.detach().numpy(), rtol, f"forward invariants {config}")
    Y = np.concatenate([stf.y_coordinates(l, r_np) for l in sorted(basis.orders)], axis=1)
    want_T = np.zeros((n_atoms, groups, c["N_COORDS"]))
    np.add.at(want_T, centers_np, np.einsum("pgn,pj->pgnj", w_np, Y).reshape(n_pairs, groups, -1))
    H.assert_close(moments.double().numpy(), want_T, rtol, "forward moments")

    # without store_moments the moments buffer is left untouched
    out2, moments2 = _launch_forward(launcher, name, dtype, grid, (lanes, rows, 1), smem, r, w, layout, groups,
                                     store=False)
    assert torch.equal(out2, out) and torch.isnan(moments2).all()

    # backward: gT per (atom, group) row, then per-pair gradients with teams of `lanes` threads
    gI_np = rng.normal(size=out.shape)
    gI = torch.tensor(gI_np, dtype=dtype)
    grad_moments = torch.full_like(moments, float("nan"))
    n_rows = n_atoms * groups
    launcher.launch(emit_c.kernel_symbol(name, "invariants_backward", sfx), None, (-(-n_rows // 16), 1, 1),
                    (16, 1, 1), 0, (moments, gI, np.int64(n_rows), grad_moments))
    T_ref = torch.tensor(want_T, requires_grad=True)
    (H.torch_invariants(basis, T_ref) * torch.tensor(gI_np)).sum().backward()
    H.assert_close(grad_moments.double().numpy(), T_ref.grad.numpy(), rtol, "invariants backward")

    grad_r = torch.full_like(r, float("nan"))
    grad_w = torch.full_like(w, float("nan"))
    slots = rows + 1
    launcher.launch(emit_c.kernel_symbol(name, "pairs_backward", sfx), None, (-(-n_pairs // slots), 1, 1),
                    (lanes, slots, 1), lanes * slots * 3 * itemsize,
                    (r, w, layout.order, layout.centers, grad_moments, np.int64(n_pairs), np.int32(groups),
                     grad_r, grad_w))
    (ref * torch.tensor(gI_np)).sum().backward()
    H.assert_close(grad_r.double().numpy(), r64.grad.numpy(), rtol, "pairs backward: grad r")
    H.assert_close(grad_w.double().numpy(), w64.grad.numpy(), rtol, "pairs backward: grad w")


def test_emulation_detects_shared_memory_overrun(emulated):
    """The emulation is strict: a forward launch given too little shared memory is reported."""
    basis, lib = emulated
    launcher = H.EmulatedLauncher(lib, basis.name)
    launcher.constants = KernelSource.load(lib.parent, basis.name).constants
    rng = np.random.default_rng(2)
    r_np, w_np, centers_np = H.random_system(rng, basis, 3, 9, 2, empty_atoms=())
    r, w = torch.tensor(r_np), torch.tensor(w_np)
    layout = build_csr(torch.tensor(centers_np), 3)
    with pytest.raises(AssertionError, match="past its dynamic shared memory"):
        _launch_forward(launcher, basis.name, torch.float64, (3, 1, 1), (2, 1, 1), 8, r, w, layout, 2)
