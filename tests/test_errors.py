"""cartinv/errors.py: every error cartinv raises on purpose is a CartinvError; the CLI reports those in one line
and lets anything else (a bug) surface."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import cartinv
from cartinv import cli
from cartinv.errors import ArgumentError, CartinvError, FileFormatError

INTERNAL = {"SpanError"}  # a failed internal proof (a bug in cartinv, never the user's input)


def _modules():
    for pkg in ("cartinv.symbolic", "cartinv.symbolic.ace", "cartinv.codegen", "cartinv.runtime", "cartinv.runtime.kernels",
                "cartinv.runtime.models", "cartinv.runtime.integrations", "cartinv.runtime.training"):
        module = importlib.import_module(pkg)
        yield module
        for info in pkgutil.iter_modules(module.__path__):
            if info.ispkg:
                continue
            yield importlib.import_module(f"{pkg}.{info.name}")


def test_every_error_class_is_a_cartinv_error():
    found = {}
    for module in _modules():
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning)
                    and obj.__module__ == module.__name__):
                found[name] = obj
    assert {"RequestError", "BasisFileError", "SchemaError", "InputError", "CpuBackendError", "ConfigError",
            "DataError", "EmitError", "PlanError", "CacheError"} <= set(found)
    for name, cls in found.items():
        if name not in INTERNAL:
            assert issubclass(cls, CartinvError), name


def test_argument_and_file_errors_keep_value_error():
    """`except ValueError` in user code keeps working."""
    assert issubclass(ArgumentError, ValueError) and issubclass(FileFormatError, ValueError)
    with pytest.raises(ArgumentError, match="backend must be one of"):
        cartinv.load("lmax3_deg4", backend="gpu")
    with pytest.raises(ArgumentError, match="neither a checked-in basis"):
        cartinv.load("no_such_basis")


def test_saved_model_of_another_kind_is_a_file_format_error(tmp_path):
    from cartinv.runtime.models.potential import CartinvPotential

    path = tmp_path / "model.pt"
    path.write_bytes(b"not a model")
    with pytest.raises(FileFormatError, match="not a saved CartinvPotential"):
        CartinvPotential.load(path)


def test_cli_reports_cartinv_errors_in_one_line_and_lets_bugs_surface(monkeypatch, capsys):
    def refused(args):
        raise ArgumentError("x must be positive, got -1")

    def buggy(args):
        raise ValueError("an internal inconsistency")

    parser = cli.build_parser()
    args = parser.parse_args(["explain", "some.json"])
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(args, "func", refused, raising=False)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert err == "cartinv: error: x must be positive, got -1\n"
    args.func = buggy
    with pytest.raises(ValueError, match="internal inconsistency"):
        cli.main([])
