"""codegen/manifest.py and runtime/kernels/generated_files.py: the manifest of a generated folder is deterministic data that
agrees with the generated code, is validated field by field, and guards every file the runtime loads."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cartinv
from cartinv.codegen import manifest as gm
from cartinv.runtime.kernels import export, generated_files
from cartinv.runtime.kernels import load as runtime_load
from cartinv.runtime.kernels.generated_files import ManifestError


@pytest.mark.parametrize("name", runtime_load.checked_in_names())
def test_checked_in_manifest_matches_the_generated_code(name):
    folder = runtime_load.checked_in_root() / name
    record = generated_files.read_manifest(folder, name)
    module = runtime_load.import_torch_module(folder, name)
    assert record.basis_hash == module.BASIS_HASH and record.basis_name == module.BASIS_NAME
    assert record.orders == tuple(module.ORDERS)
    assert (record.size("CHANNELS"), record.size("N_INVARIANTS")) == (module.CHANNELS, module.N_INVARIANTS)
    assert record.invariant_ids == tuple(module.INVARIANT_IDS)
    assert record.invariant_degrees == tuple(module.INVARIANT_DEGREES)
    header = (folder / f"{name}.h").read_text()
    for key, value in record.sizes:  # the header's enum holds the same numbers
        assert f"    {key} = {value}," in header
    for fname, _ in record.files:
        generated_files.read_checked(folder, name, fname)  # every listed file matches its hash
    assert gm.parse(record.to_json(), "again") == record
    assert record.to_json() == (folder / gm.file_name(name)).read_text()


def _copy(tmp_path, name="lmax3_deg4"):
    src = runtime_load.checked_in_root() / name
    dst = tmp_path / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst, name


def test_edited_file_is_refused(tmp_path):
    folder, name = _copy(tmp_path)
    path = folder / f"{name}_torch.py"
    path.write_text(path.read_text() + "\n# an edit\n")
    with pytest.raises(ManifestError, match="does not match the sha256 its manifest records"):
        generated_files.read_checked(folder, name, path.name)
    with pytest.raises(ManifestError, match="does not list"):
        generated_files.read_checked(folder, name, "other.h")
    (folder / gm.file_name(name)).unlink()
    with pytest.raises(ManifestError, match="is missing"):
        generated_files.read_manifest(folder, name)


def _mutations():
    base = json.loads((runtime_load.checked_in_root() / "lmax3_deg4" / gm.file_name("lmax3_deg4")).read_text())

    def edit(fn):
        data = json.loads(json.dumps(base))
        fn(data)
        return json.dumps(data)

    return [
        (edit(lambda d: d.update(format="other")), "not a cartinv generated-folder manifest"),
        (edit(lambda d: d.update(format_version=2)), "format_version 2 is not supported"),
        (edit(lambda d: d.update(format_version=True)), "format_version True is not supported"),
        (edit(lambda d: d.pop("sizes")), "field 'sizes' is missing"),
        (edit(lambda d: d.update(extra=1)), "field 'extra' is unknown"),
        (edit(lambda d: d.update(name="x y")), "field 'name' is not an identifier"),
        (edit(lambda d: d.update(basis_hash="0" * 63)), "basis_hash' is not a sha256"),
        (edit(lambda d: d["sizes"].update(N_COORDS=17)), "N_COORDS is not CHANNELS"),
        (edit(lambda d: d["sizes"].update(CHANNELS=1 << 40)), r"sizes.CHANNELS must be an integer in 1..65536"),
        (edit(lambda d: d["sizes"].update(N_INVARIANTS=1.0)), "sizes.N_INVARIANTS must be an integer"),
        (edit(lambda d: d["sizes"].update(N_HARMONICS=9)), "N_HARMONICS disagrees"),
        (edit(lambda d: d["sizes"].update(L_MAX=4)), "L_MAX disagree"),
        (edit(lambda d: d.update(orders=[0, 2, 1, 3])), "non-empty increasing"),
        (edit(lambda d: d["invariant_ids"].pop()), "do not have N_INVARIANTS entries"),
        (edit(lambda d: d["invariant_ids"].__setitem__(0, "I1; rm")), "non-identifier"),
        (edit(lambda d: d["files"].update({"../evil.h": "0" * 64})), "files entry '../evil.h' is malformed"),
        (edit(lambda d: d.update(namespace="other")), "'namespace' disagrees"),
        (edit(lambda d: d["cuda_symbols"]["forward"].update(f32="system")), "'cuda_symbols' disagrees"),
        ('{"format": NaN}', "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        ("x" * (gm.MAX_BYTES + 1), "more than a manifest holds"),
    ]


@pytest.mark.parametrize("text, message", _mutations())
def test_malformed_manifest_names_the_field(text, message):
    with pytest.raises(ManifestError, match=message):
        gm.parse(text, "m.json")


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4)))
def test_any_json_is_a_manifest_error_or_a_manifest(value):
    try:
        gm.parse(json.dumps(value), "fuzz.json")
    except ManifestError as exc:
        assert "\n" not in str(exc)


def test_export_carries_the_manifest_and_checks_files(tmp_path):
    paths = {p.name for p in export.export("lmax3_deg4", "cuda", tmp_path / "out")}
    assert gm.file_name("lmax3_deg4") in paths
    record = gm.parse((tmp_path / "out" / gm.file_name("lmax3_deg4")).read_text(), "exported")
    assert record.symbols()["forward"]["f32"] == "lmax3_deg4_forward_f32"


def test_cpu_backend_checks_its_library_against_the_manifest(tmp_path):
    from cartinv.runtime.kernels import cpu_backend

    if not cpu_backend.available()[0]:
        pytest.skip("no C++ compiler")
    folder, name = _copy(tmp_path)
    good = cpu_backend.FusedInvariants(folder, name, cartinv.load_basis(folder / f"{name}.json").content_hash())
    assert good.channels == 1
    path = folder / gm.file_name(name)
    data = json.loads(path.read_text())
    data["basis_hash"] = "f" * 64  # a consistent manifest of another Basis
    path.write_text(json.dumps(data))
    with pytest.raises(cpu_backend.CpuBackendError, match="its manifest records"):
        cpu_backend.FusedInvariants(folder, name, good.basis_hash)
