"""Every checked-in generated CUDA source compiles with nvcc, every header with g++, and the headers' numbers
equal the checked-in PyTorch module's (CPU, fp64)."""

import shutil
import subprocess

import numpy as np
import pytest
import torch

from cartinv.runtime.kernels.core_sources import csrc_dir
from cartinv.runtime.kernels.load import checked_in_names, checked_in_root, generated_dir, import_torch_module, resolve_basis

NAMES = checked_in_names()

DRIVER = r"""
#include <cstdio>
#include "{name}.h"
namespace b = cartinv::{name};
int main() {{
    double T[b::N_COORDS], I[b::N_INVARIANTS], gI[b::N_INVARIANTS], gT[b::N_COORDS];
    for (int c = 0; c < b::N_COORDS; ++c) if (std::scanf("%lf", &T[c]) != 1) return 2;
    for (int k = 0; k < b::N_INVARIANTS; ++k) if (std::scanf("%lf", &gI[k]) != 1) return 2;
    b::invariants<double>(T, I);
    b::invariants_vjp<double>(T, gI, gT);
    for (int k = 0; k < b::N_INVARIANTS; ++k) std::printf("%.17g\n", I[k]);
    for (int c = 0; c < b::N_COORDS; ++c) std::printf("%.17g\n", gT[c]);
    return 0;
}}
"""


@pytest.mark.parametrize("name", NAMES)
def test_cuda_source_compiles_with_nvcc(name, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found: the CUDA sources cannot be compile-checked on this machine")
    folder = checked_in_root() / name
    result = subprocess.run([nvcc, "-c", "-arch=sm_80", "-I", str(folder), "-I", str(csrc_dir()),
                             str(folder / f"{name}.cu"),
                             "-o", str(tmp_path / f"{name}.o")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("name", NAMES)
def test_header_numbers_match_torch_module(name, tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: the C++ header cannot be checked on this machine")
    folder = checked_in_root() / name
    (tmp_path / "driver.cpp").write_text(DRIVER.format(name=name))
    build = subprocess.run([gxx, "-O1", "-std=c++14", "-Wall", "-I", str(folder), "-I", str(csrc_dir()),
                            str(tmp_path / "driver.cpp"),
                            "-o", str(tmp_path / "driver")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    basis = resolve_basis(name)
    kernels = import_torch_module(*generated_dir(basis), basis.content_hash())
    rng = np.random.default_rng(3)
    t = rng.normal(size=kernels.N_COORDS)
    g_i = rng.normal(size=kernels.N_INVARIANTS)
    run = subprocess.run([str(tmp_path / "driver")], input=" ".join(f"{x:.17g}" for x in np.concatenate([t, g_i])),
                         capture_output=True, text=True, check=True)
    values = np.array([float(x) for x in run.stdout.split()])
    tt = torch.from_numpy(t)[None]
    ref_i = kernels.invariants(tt)[0].numpy()
    ref_g = kernels.invariants_vjp(tt, torch.from_numpy(g_i)[None])[0].numpy()
    np.testing.assert_allclose(values[: kernels.N_INVARIANTS], ref_i, rtol=1e-12, atol=1e-12 * np.abs(ref_i).max())
    np.testing.assert_allclose(values[kernels.N_INVARIANTS:], ref_g, rtol=1e-11, atol=1e-11 * np.abs(ref_g).max())
