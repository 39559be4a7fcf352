"""runtime/kernels/core_sources.py: cartinv's hand-written C++/CUDA files and how they join the generated ones."""

import pytest

from cartinv.runtime.kernels import core_sources
from cartinv.runtime.kernels.load import checked_in_root


def test_core_files_ship_with_the_package():
    for name in core_sources.HEADERS:
        assert (core_sources.csrc_dir() / name).is_file() and core_sources.read(name)
    with pytest.raises(KeyError):
        core_sources.read("../load.py")


def test_generated_files_include_the_core_and_hold_no_copy_of_it():
    """The generated header and CUDA source include the core files; none of the core's functions is generated."""
    folder = checked_in_root() / "lmax3_deg4"
    header = (folder / "lmax3_deg4.h").read_text()
    cuda = (folder / "lmax3_deg4.cu").read_text()
    assert '#include "cartinv_core.h"' in header and '#include "cartinv_atom.inc"' in header
    assert '#include "cartinv_kernels.inc"' in cuda
    for name in ("void pair_harmonics(", "void atom_backward(", "cartinv_sqrt(float"):
        assert name not in header
    assert "__syncthreads" not in cuda


def test_inline_includes_pastes_known_files_only():
    files = {"a.h": '#include "b.inc"\nint a;\n', "b.inc": "int b;"}
    text = '#include <cmath>\n#include "a.h"\n  #  include "other.h"\nint main;\n'
    assert core_sources.inline_includes(text, files) == (
        '#include <cmath>\nint b;\nint a;\n  #  include "other.h"\nint main;\n')
    with pytest.raises(ValueError, match="nested"):
        core_sources.inline_includes('#include "x"\n', {"x": '#include "x"\n'})
