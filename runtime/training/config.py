"""What a training run is: one frozen ``TrainConfig``, read from JSON or TOML and checked field by field.

Every field has a type and a range; a config file with an unknown key, a wrong type or an out-of-range value is a
one-line ``ConfigError`` naming the file and the field (config files are data, never code).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from cartinv.errors import CartinvError

__all__ = ["TrainConfig", "ConfigError", "load_config", "RESUMABLE_CHANGES"]

_MAX_CONFIG_BYTES = 1 << 20


class ConfigError(CartinvError, ValueError):
    """A training config value that is missing, unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class TrainConfig:
    """Model, data and optimisation settings of ``cartinv train`` (units: eV, Å, seconds).

    Model: ``basis`` (checked-in name or Basis file), ``cutoff``, ``n_features``, ``n_layers``, ``n_radial``,
    ``radial``, ``channels``, ``hidden``, ``normalization``, ``activation``, ``dtype``.
    Data: ``energy_key``/``forces_key``/``stress_key`` (extxyz info/array names), ``valid_fraction`` (used when no
    validation file is given), ``e0s`` ("fit": least squares on the training compositions, or one energy per
    element).
    Loss: ``energy_weight`` x MSE(energy per atom) + ``forces_weight`` x MSE(force components) + ``stress_weight``
    x MSE(stress components, periodic frames that carry a stress).
    Optimisation: Adam at ``lr``, ``batch_size`` structures per step, learning rate times ``lr_factor`` after
    ``lr_patience`` epochs without a better validation loss, stop after ``patience`` such epochs, after
    ``max_epochs`` or after ``max_time`` seconds of training (checked after every step; validation time is not
    counted), measured on ``clock``: "wall" (elapsed time) or "cpu" (CPU time of this process, all threads: the
    fair budget when other programs share the machine). The validation set is scored every ``valid_every`` epochs (``patience`` and ``lr_patience`` count
    these checks), so that small training sets do not spend most of their time on validation.
    """

    basis: str = "lmax3_deg4"
    cutoff: float = 5.0
    n_features: int = 32
    n_layers: int = 1
    n_radial: int = 8
    radial: str = "bessel"
    channels: int | None = None
    hidden: tuple[int, ...] = (64,)
    normalization: str = "root"
    activation: str = "silu"
    dtype: str = "float64"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    valid_fraction: float = 0.1
    e0s: str | dict = "fit"
    energy_weight: float = 10.0
    forces_weight: float = 1.0
    stress_weight: float = 1.0
    lr: float = 5e-3
    batch_size: int = 8
    max_epochs: int = 500
    patience: int = 30
    lr_patience: int = 8
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    max_time: float | None = None
    clock: str = "wall"
    valid_every: int = 1
    seed: int = 0
    threads: int | None = None
    backend: str = "auto"
    progress: bool = True

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_field(f.name, getattr(self, f.name), "config")
        if isinstance(self.hidden, list):
            object.__setattr__(self, "hidden", tuple(self.hidden))
        if isinstance(self.e0s, dict):
            object.__setattr__(self, "e0s", {k: float(v) for k, v in sorted(self.e0s.items())})

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    def model_kwargs(self) -> dict:
        """Keyword arguments of ``CartinvPotential`` (besides elements and seed)."""
        import torch

        return {"basis": self.basis, "cutoff": self.cutoff, "n_features": self.n_features,
                "n_layers": self.n_layers, "n_radial": self.n_radial, "radial": self.radial,
                "channels": self.channels, "hidden": self.hidden, "normalization": self.normalization,
                "activation": self.activation, "backend": self.backend,
                "dtype": {"float32": torch.float32, "float64": torch.float64}[self.dtype]}


# Fields a resumed run may change: they end or pace the run but do not alter the steps already taken.
RESUMABLE_CHANGES = frozenset({"max_epochs", "max_time", "clock", "patience", "progress", "threads", "backend"})

_NAME = r"[A-Za-z][A-Za-z0-9_.-]{0,63}"


def _is_int(v) -> bool:
    return type(v) is int


def _is_num(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _key_ok(v) -> bool:
    import re

    return type(v) is str and re.fullmatch(_NAME, v) is not None


_CHECKS = {
    "basis": (lambda v: type(v) is str and 0 < len(v) <= 4096 and "\n" not in v, "a basis name or Basis file path"),
    "cutoff": (lambda v: _is_num(v) and 0 < v <= 100, "a number in (0, 100] (Å)"),
    "n_features": (lambda v: _is_int(v) and 1 <= v <= 4096, "an integer in 1..4096"),
    "n_layers": (lambda v: _is_int(v) and 1 <= v <= 16, "an integer in 1..16"),
    "n_radial": (lambda v: _is_int(v) and 1 <= v <= 256, "an integer in 1..256"),
    "radial": (lambda v: v in ("bessel", "gaussian"), "'bessel' or 'gaussian'"),
    "channels": (lambda v: v is None or (_is_int(v) and 1 <= v <= 4096), "null or an integer in 1..4096"),
    "hidden": (lambda v: type(v) in (list, tuple) and len(v) <= 16 and all(_is_int(h) and 1 <= h <= 65536
                                                                            for h in v),
               "a list of at most 16 integers in 1..65536"),
    "normalization": (lambda v: v in ("root", "group", "none"), "'root', 'group' or 'none'"),
    "activation": (lambda v: v in ("silu", "softplus", "tanh"), "'silu', 'softplus' or 'tanh'"),
    "dtype": (lambda v: v in ("float32", "float64"), "'float32' or 'float64'"),
    "energy_key": (_key_ok, "a key name ([A-Za-z][A-Za-z0-9_.-]*)"),
    "forces_key": (_key_ok, "a key name ([A-Za-z][A-Za-z0-9_.-]*)"),
    "stress_key": (_key_ok, "a key name ([A-Za-z][A-Za-z0-9_.-]*)"),
    "valid_fraction": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    "e0s": (lambda v: v == "fit" or (type(v) is dict and 0 < len(v) <= 128 and all(
        type(k) is str and k.isalpha() and len(k) <= 3 and _is_num(x) for k, x in v.items())),
            "'fit' or a table element -> energy (eV)"),
    "energy_weight": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "forces_weight": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "stress_weight": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "lr": (lambda v: _is_num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "batch_size": (lambda v: _is_int(v) and 1 <= v <= 100000, "an integer in 1..100000"),
    "max_epochs": (lambda v: _is_int(v) and 1 <= v <= 1000000, "an integer in 1..1000000"),
    "patience": (lambda v: _is_int(v) and 1 <= v <= 1000000, "an integer >= 1"),
    "lr_patience": (lambda v: _is_int(v) and 0 <= v <= 1000000, "an integer >= 0"),
    "lr_factor": (lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)"),
    "min_lr": (lambda v: _is_num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "max_time": (lambda v: v is None or (_is_num(v) and v > 0), "null or a positive number of seconds"),
    "clock": (lambda v: v in ("wall", "cpu"), "'wall' or 'cpu'"),
    "valid_every": (lambda v: _is_int(v) and 1 <= v <= 1000000, "an integer >= 1"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2 ** 63, "an integer in 0..2^63-1"),
    "threads": (lambda v: v is None or (_is_int(v) and 1 <= v <= 1024), "null or an integer in 1..1024"),
    "backend": (lambda v: v in ("auto", "torch", "cpu", "cuda"), "'auto', 'torch', 'cpu' or 'cuda'"),
    "progress": (lambda v: type(v) is bool, "true or false"),
}


def _check_field(name: str, value, source: str) -> None:
    check, what = _CHECKS[name]
    try:
        ok = check(value)
    except TypeError:
        ok = False
    if not ok:
        raise ConfigError(f"{source}: {name} must be {what}, got {ascii(value)[:60]}")


def from_mapping(values: dict, source: str, base: TrainConfig | None = None) -> TrainConfig:
    """A TrainConfig from ``base`` (default: the defaults) with ``values`` applied; every key checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown setting {ascii(key)[:60]} (known: {', '.join(sorted(known))})")
        _check_field(key, value, source)
    return dataclasses.replace(base or TrainConfig(), **values)


def load_config(path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a JSON (``.json``) or TOML (``.toml``) training config; ConfigError naming the file and field."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size} bytes is too large for a config file (limit {_MAX_CONFIG_BYTES})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    else:
        def _no_constants(token):
            raise ValueError(f"{token} is not a number")

        try:
            values = json.loads(text, parse_constant=_no_constants)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    return from_mapping(values, str(path), base)


def config_field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]

