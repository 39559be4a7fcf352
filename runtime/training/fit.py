"""Train a ``CartinvPotential`` on energies and forces (and stress): the loop behind ``cartinv train``.

One epoch visits every training structure once, in an order fixed by (seed, epoch), so a run resumed from its
checkpoint takes exactly the steps of an uninterrupted one. After each epoch the validation loss decides the
learning rate (reduce on plateau), early stopping and which weights are kept; the checkpoint (weights, optimiser,
scheduler, history, best weights) is replaced atomically, and ``model.pt`` always holds the best weights so far in
the format ``CartinvPotential.load``, ``CartinvCalculator`` and ``cartinv lammps-export`` read.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import built_buffers
from .config import RESUMABLE_CHANGES, ConfigError, TrainConfig
from .data import DataError, Frame, check_species, collate, featurize, fingerprint, fit_e0s, predict, read_frames
from .metrics import metrics, predict_all

__all__ = ["TrainResult", "LoopResult", "train", "fit_model", "force_scale", "MODEL_FILE", "CHECKPOINT_FILE",
           "HISTORY_FILE"]

MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
CHECKPOINT_FORMAT = "cartinv-train-checkpoint"
CHECKPOINT_VERSION = 3  # 3: buffers training leaves as built are stored once, compressed (built_buffers.py)
READABLE_VERSIONS = (2, 3)  # 2 kept only those buffers' hashes: resumable where the model rebuilds them alike


@dataclass(frozen=True)
class TrainResult:
    """Where the model went, why training stopped, and the best model's validation metrics (eV, eV/Å)."""

    model_path: Path
    checkpoint_path: Path
    epochs: int
    best_epoch: int
    stop_reason: str
    valid_metrics: dict
    train_seconds: float
    n_parameters: int
    elements: tuple[str, ...]
    e0s: dict


def _split(frames: list[Frame], fraction: float, seed: int) -> tuple[list[Frame], list[Frame]]:
    n_valid = max(1, int(round(fraction * len(frames))))
    if len(frames) - n_valid < 1:
        raise DataError(f"{frames[0].source.split(': frame')[0]}: {len(frames)} frame(s) cannot be split into "
                        f"training and validation sets (give --valid, or more frames)")
    perm = np.random.default_rng([seed, 7]).permutation(len(frames))
    return [frames[k] for k in sorted(perm[n_valid:])], [frames[k] for k in sorted(perm[:n_valid])]


def _losses(model, batch, config: TrainConfig, predict_fn, training: bool):
    want_stress = config.stress_weight > 0 and bool(batch.has_stress.any())
    energy, forces, stress = predict_fn(model, batch, training=training, want_stress=want_stress)
    n = batch.n_atoms.to(energy.dtype)
    loss_e = ((energy - batch.energy) / n).pow(2).mean()
    loss_f = (forces - batch.forces).pow(2).mean()
    loss = config.energy_weight * loss_e + config.forces_weight * loss_f
    if want_stress:
        loss = loss + config.stress_weight * (stress - batch.stress)[batch.has_stress].pow(2).mean()
    return loss


def _valid_loss(m: dict, config: TrainConfig) -> float:
    loss = config.energy_weight * m["energy_rmse_per_atom"] ** 2 + config.forces_weight * m["force_rmse"] ** 2
    if "stress_rmse" in m and config.stress_weight > 0:
        loss += config.stress_weight * m["stress_rmse"] ** 2
    return float(loss)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def _write_history(history: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(history, indent=1) + "\n")
    os.replace(tmp, path)


def _load_checkpoint(path: Path, config: TrainConfig, data_hash: str) -> dict:
    """The checkpoint at ``path`` if it belongs to this run (same settings besides RESUMABLE_CHANGES, same data)."""
    try:
        ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if (not isinstance(ck, dict) or type(ck.get("format")) is not str or ck["format"] != CHECKPOINT_FORMAT
            or type(ck.get("version")) is not int or ck["version"] not in READABLE_VERSIONS):
        raise ConfigError(f"{path}: not a cartinv training checkpoint (versions {list(READABLE_VERSIONS)})")
    expected = {"config": dict, "data_hash": str, "epoch": int, "best_epoch": int, "best_loss": float,
                "bad_epochs": int, "elapsed": float, "history": list, "model": dict, "best_model": dict,
                "optimizer": dict, "scheduler": dict, "stopped": str, "built_buffers": dict}
    for key, typ in expected.items():
        value = ck.get(key)
        if not isinstance(value, typ) or isinstance(value, bool):
            raise ConfigError(f"{path}: checkpoint field {key!r} is missing or not a {typ.__name__}")
    _check_progress(ck, path)
    old = ck["config"]
    new = config.to_dict()
    changed = sorted(str(k) for k in set(old) | set(new)
                     if not _same_setting(old.get(k), new.get(k)) and k not in RESUMABLE_CHANGES)
    if changed:
        raise ConfigError(f"{path}: cannot resume: the settings {changed} differ from the checkpoint's (only "
                          f"{sorted(RESUMABLE_CHANGES)} may change); use another output folder or drop --resume")
    if ck["data_hash"] != data_hash:
        raise ConfigError(f"{path}: cannot resume: the training or validation data differ from the checkpoint's")
    return ck


STOP_REASONS = ("", "max_time", "max_epochs", "early_stopping")


def _same_setting(stored, now) -> bool:
    """Whether a setting read from a checkpoint equals the config's, compared as JSON (a tensor or other object
    there is simply different, where == would raise or compare elementwise)."""
    try:
        return json.dumps(stored, sort_keys=True) == json.dumps(now, sort_keys=True)
    except (TypeError, ValueError):
        return False


def _check_progress(ck: dict, path: Path) -> None:
    """The counters a run continues from must be ones training can have written: a negative or NaN time, best loss
    or epoch count would silently change when the run stops."""
    epoch = ck["epoch"]
    rows = ck["history"]
    checks = [
        ("epoch", 0 <= epoch <= 10**9),
        ("best_epoch", 0 <= ck["best_epoch"] <= epoch),
        ("bad_epochs", 0 <= ck["bad_epochs"] <= epoch),
        ("elapsed", math.isfinite(ck["elapsed"]) and ck["elapsed"] >= 0),
        ("best_loss", ck["best_loss"] >= 0),  # false for NaN; inf before the first validation
        ("stopped", ck["stopped"] in STOP_REASONS),
        ("history", len(rows) <= epoch and all(
            isinstance(r, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in r.items())
            for r in rows)),
    ]
    for name, ok in checks:
        if not ok:
            raise ConfigError(f"{path}: checkpoint field {name!r} holds a value training cannot have written")


def _settings(state: dict, progress: frozenset) -> dict:
    """``state`` without the entries that record progress: what must equal the config's."""
    return {k: v for k, v in state.items() if k not in progress}


_SCHEDULER_PROGRESS = frozenset({"best", "num_bad_epochs", "cooldown_counter", "last_epoch", "_last_lr"})
_GROUP_PROGRESS = frozenset({"params", "lr"})  # an Adam parameter group's entries that are not settings


def _load_optimizer(opt, sched, ck: dict, config: TrainConfig) -> None:
    """Adam's and the schedule's state from a checkpoint, checked (ValueError naming the field): only their progress
    (moments, step counts, the reduced learning rate, the plateau counters) comes from the file. Their settings
    come from the config, which the checkpoint's must equal, and ``load_state_dict`` checks neither the moments'
    shapes (a mismatch fails in the first step) nor the settings (betas, factor, min_lr would change silently)."""
    groups = [_settings(g, _GROUP_PROGRESS) for g in opt.param_groups]
    schedule = sched.state_dict()
    stored = ck["scheduler"]
    if set(stored) != set(schedule):
        raise ValueError(f"field 'scheduler' has the keys {sorted(stored)[:8]}, not {sorted(schedule)}")
    if _settings(stored, _SCHEDULER_PROGRESS) != _settings(schedule, _SCHEDULER_PROGRESS):
        raise ValueError("field 'scheduler' holds settings other than the config's (factor, patience, min_lr, ...)")
    lowest = min(config.min_lr, config.lr)  # the schedule never goes below min_lr, nor rises above lr
    counters = [stored[k] for k in ("num_bad_epochs", "cooldown_counter", "last_epoch")]
    if (not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counters)
            or not isinstance(stored["best"], float) or math.isnan(stored["best"])
            or not isinstance(stored["_last_lr"], list)
            or not all(isinstance(v, float) and lowest <= v <= config.lr for v in stored["_last_lr"])):
        raise ValueError("field 'scheduler' holds a counter, best loss or learning rate out of range")
    saved = ck["optimizer"]
    if (set(saved) != {"state", "param_groups"} or not isinstance(saved["param_groups"], list)
            or not isinstance(saved["state"], dict)
            or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in saved["param_groups"])
            or not all(isinstance(v, dict) for v in saved["state"].values())):
        raise ValueError("field 'optimizer' is not an optimiser state {state, param_groups}")
    opt.load_state_dict(saved)
    for group, settings in zip(opt.param_groups, groups):
        lr = group["lr"]
        if _settings(group, _GROUP_PROGRESS) != settings:
            raise ValueError("field 'optimizer' holds settings other than the config's (betas, eps, weight decay, ...)")
        if not (isinstance(lr, float) and lowest <= lr <= config.lr):
            raise ValueError(f"field 'optimizer' has a learning rate outside [{lowest}, {config.lr}]")
        for param in group["params"]:
            for key, value in opt.state.get(param, {}).items():
                if not isinstance(value, torch.Tensor) or value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"field 'optimizer': state {key!r} has shape "
                                     f"{tuple(getattr(value, 'shape', ()))} for a parameter of shape "
                                     f"{tuple(param.shape)}")
                # the step count and the second moments are >= 0 (a negative one turns training into NaN)
                if not bool(torch.isfinite(value).all()) or key != "exp_avg" and bool((value < 0).any()):
                    raise ValueError(f"field 'optimizer': state {key!r} holds a value that is not finite "
                                     f"or is negative")
    sched.load_state_dict(stored)


def _progress_bar(total: int, enabled: bool, desc: str):
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def train(data, config: TrainConfig | None = None, valid=None, outdir="cartinv_train", resume: bool = False,
          log=print) -> TrainResult:
    """Train on ``data`` (a path ASE reads, or a list of ``Frame``) and write ``outdir/model.pt``.

    :param valid: validation data (path or frames); default: ``config.valid_fraction`` of ``data``, seeded
    :param resume: continue from ``outdir/checkpoint.pt`` (same settings besides ``RESUMABLE_CHANGES``)
    :param log: called with one line per epoch (None: silent)
    """
    config = config or TrainConfig()
    outdir = Path(outdir)
    say = log or (lambda *_: None)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    keys = dict(energy_key=config.energy_key, forces_key=config.forces_key, stress_key=config.stress_key)
    frames = data if isinstance(data, list) else read_frames(data, **keys)
    if not frames:
        raise DataError("training data: no frames")
    if valid is None:
        train_frames, valid_frames = _split(frames, config.valid_fraction, config.seed)
    else:
        train_frames = frames
        valid_frames = valid if isinstance(valid, list) else read_frames(valid, **keys)
    elements = sorted({s for f in train_frames for s in f.symbols})
    check_species(valid_frames, elements, "training data")
    if config.e0s == "fit":
        e0s = fit_e0s(train_frames, elements)
    else:
        missing = sorted(set(elements) - set(config.e0s))
        if missing:
            raise ConfigError(f"e0s: no reference energy for {missing} (the data has {elements})")
        e0s = {e: float(config.e0s[e]) for e in elements}
    data_hash = fingerprint(train_frames) + fingerprint(valid_frames)

    from cartinv.runtime.models.potential import CartinvPotential

    kwargs = config.model_kwargs()
    dtype = kwargs["dtype"]
    model = CartinvPotential(elements, seed=config.seed, **kwargs)
    model.set_energy_reference([e0s[e] for e in elements], scale=force_scale(train_frames))
    train_set = featurize(train_frames, elements, config.cutoff, dtype)
    valid_set = featurize(valid_frames, elements, config.cutoff, dtype)
    say(f"{len(train_set)} training / {len(valid_set)} validation structures, elements {elements}, "
        f"{sum(p.numel() for p in model.parameters())} parameters, basis {model.basis_name}, {config.dtype}")
    model_path = Path(outdir) / MODEL_FILE
    loop = fit_model(model, train_set, valid_set, config, outdir=outdir, resume=resume, log=log,
                     save_best=lambda state: _with_state(model, state).save(model_path), data_hash=data_hash)
    if not model_path.is_file():  # a resumed run that had already stopped
        model.save(model_path)
    final = loop.valid_metrics
    say(f"stopped ({loop.stop_reason}) after {loop.epochs} epochs, {loop.train_seconds:.0f} s; best epoch "
        f"{loop.best_epoch}: valid E MAE {final['energy_mae_per_atom'] * 1e3:.2f} meV/atom, F MAE "
        f"{final['force_mae'] * 1e3:.1f} meV/Å; model: {model_path}")
    return TrainResult(model_path=model_path, checkpoint_path=Path(outdir) / CHECKPOINT_FILE, epochs=loop.epochs,
                       best_epoch=loop.best_epoch, stop_reason=loop.stop_reason, valid_metrics=final,
                       train_seconds=loop.train_seconds, n_parameters=loop.n_parameters, elements=tuple(elements),
                       e0s=e0s)


def force_scale(frames: list[Frame]) -> float:
    """Root mean square force component of ``frames`` (the scale of the network's energy output), >= 1e-3."""
    return max(float(np.sqrt(np.mean(np.concatenate([f.forces.ravel() for f in frames]) ** 2))), 1e-3)


@dataclass(frozen=True)
class LoopResult:
    """What ``fit_model`` did: epochs run, best epoch, why it stopped, the best weights' validation metrics."""

    epochs: int
    best_epoch: int
    stop_reason: str
    valid_metrics: dict
    train_seconds: float
    n_parameters: int
    history: list


def fit_model(model, train_set, valid_set, config: TrainConfig, predict_fn=predict, outdir=None,
              resume: bool = False, log=print, save_best=None, data_hash: str = "") -> LoopResult:
    """Train any energy model on featurised structures with cartinv's protocol; ``model`` ends on its best weights.

    ``predict_fn(model, batch, training, want_stress) -> (energies [S], forces [N, 3], stress [S, 6] or None)``
    (default: a ``CartinvPotential``'s); the same loss, optimiser, schedule and stopping rules apply to every model
    (the chemistry benchmark trains its peers through this). With ``outdir`` a checkpoint and history are kept
    there; ``save_best(state_dict)`` is called with the best weights whenever they improve and at the end.
    """
    say = log or (lambda *_: None)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=config.lr_factor,
                                                       patience=config.lr_patience, min_lr=config.min_lr)
    ck_path = hist_path = None
    if outdir is not None:
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        ck_path, hist_path = outdir / CHECKPOINT_FILE, outdir / HISTORY_FILE
    epoch, best_epoch, best_loss, bad, elapsed, history, stopped = 0, 0, math.inf, 0, 0.0, [], ""
    best_state = copy.deepcopy(model.state_dict())
    built = built_buffers.buffers(model)  # as the model was built: stored once while training leaves them so
    if resume and ck_path is not None and ck_path.is_file():
        ck = _load_checkpoint(ck_path, config, data_hash)
        if ck["version"] == 2:  # left-out buffers kept as hashes: the model built now must hold them alike
            source = built
            missing = {k for key in ("model", "best_model") for k in built if k not in ck[key]}
            built_buffers.check_hashes(ck["built_buffers"], built, missing, ck_path)
        else:  # stored by value: a run continues with exactly the buffers it trained with
            source = built_buffers.unpack_all(ck["built_buffers"], ck_path)
            differ = sorted(k for k in source if k in built and not built_buffers.same_bits(built[k], source[k]))
            if differ:
                say(f"{ck_path}: {len(differ)} buffer(s) built here differ from the checkpoint's, which are used: "
                    f"{', '.join(differ[:4])}{' ...' if len(differ) > 4 else ''}")
        for key in ("model", "best_model"):
            ck[key] = built_buffers.restore(ck[key], model, source, ck_path)
        built = {**built, **source}
        try:
            for key in ("model", "best_model"):
                bad = [k for k, v in ck[key].items() if isinstance(v, torch.Tensor) and v.is_floating_point()
                       and not bool(torch.isfinite(v).all())]
                if bad:
                    raise ValueError(f"field {key!r}: {bad[0]!r} holds values that are not finite")
            model.load_state_dict(ck["model"])
            _with_state(model, ck["best_model"])  # loaded only when training ends: checked now, not hours later
            _load_optimizer(opt, sched, ck, config)
        except (RuntimeError, KeyError, IndexError, ValueError, TypeError) as exc:
            raise ConfigError(f"{ck_path}: checkpoint does not fit this model ({' '.join(str(exc).split())[:120]})"
                              ) from None
        best_state = ck["best_model"]
        epoch, best_epoch, best_loss, bad = ck["epoch"], ck["best_epoch"], ck["best_loss"], ck["bad_epochs"]
        elapsed, history, stopped = ck["elapsed"], ck["history"], ck["stopped"]
        say(f"resumed from {ck_path} after epoch {epoch} ({elapsed:.0f} s of training)")
    elif resume:
        say(f"no checkpoint in {outdir}: starting afresh")
    n_params = sum(p.numel() for p in model.parameters())
    packed = {k: built_buffers.pack(v) for k, v in built.items()}

    def finished() -> str:
        if config.max_time is not None and elapsed >= config.max_time:
            return "max_time"
        if epoch >= config.max_epochs:
            return "max_epochs"
        if bad >= config.patience:
            return "early_stopping"
        return ""

    stopped = finished()
    bs = min(config.batch_size, len(train_set))
    clock = time.process_time if config.clock == "cpu" else time.perf_counter
    while not stopped:
        start = clock()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(train_set))
        model.train()
        steps = range(0, len(order), bs)
        bar = _progress_bar(len(steps), config.progress, f"epoch {epoch + 1}")
        total, n_steps, out_of_time = 0.0, 0, False
        for pos in steps:
            batch = collate([train_set[k] for k in order[pos:pos + bs]])
            loss = _losses(model, batch, config, predict_fn, training=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            n_steps += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / n_steps:.3g}")
            if config.max_time is not None and elapsed + clock() - start >= config.max_time:
                out_of_time = True
                break
        if bar is not None:
            bar.close()
        elapsed += clock() - start
        epoch += 1
        train_loss = total / max(n_steps, 1)
        if epoch % config.valid_every and not out_of_time and epoch < config.max_epochs:
            say(f"epoch {epoch:4d}  lr {opt.param_groups[0]['lr']:.2e}  train loss {train_loss:.4g}  ({elapsed:.0f} s)")
            continue
        m = metrics(predict_all(model, valid_set, predict_fn=predict_fn))
        vloss = _valid_loss(m, config)
        sched.step(vloss)
        if vloss < best_loss:
            best_loss, best_epoch, bad = vloss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
               "valid_loss": vloss, "valid_energy_mae_per_atom": m["energy_mae_per_atom"],
               "valid_force_mae": m["force_mae"], "valid_force_rmse": m["force_rmse"], "seconds": elapsed,
               "partial": out_of_time}
        history.append(row)
        say(f"epoch {epoch:4d}  lr {row['lr']:.2e}  train loss {row['train_loss']:.4g}  valid E MAE "
            f"{m['energy_mae_per_atom'] * 1e3:7.2f} meV/atom  F MAE {m['force_mae'] * 1e3:7.1f} meV/Å"
            f"{'  *' if best_epoch == epoch else ''}  ({elapsed:.0f} s)")
        stopped = finished()
        if save_best is not None and (best_epoch == epoch or stopped):
            save_best(best_state)
        if ck_path is not None:
            _atomic_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": config.to_dict(),
                          "data_hash": data_hash, "epoch": epoch, "best_epoch": best_epoch,
                          "best_loss": float(best_loss), "bad_epochs": bad, "elapsed": float(elapsed),
                          "history": history, "model": built_buffers.strip(model.state_dict(), built),
                          "best_model": built_buffers.strip(best_state, built), "built_buffers": packed,
                          "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "stopped": stopped},
                         ck_path)
            _write_history(history, hist_path)
    model.load_state_dict(best_state)
    final = metrics(predict_all(model, valid_set, predict_fn=predict_fn))
    return LoopResult(epochs=epoch, best_epoch=best_epoch, stop_reason=stopped, valid_metrics=final,
                      train_seconds=elapsed, n_parameters=n_params, history=history)


def _with_state(model, state: dict):
    """A copy of ``model`` holding the weights ``state``."""
    clone = copy.deepcopy(model)
    clone.load_state_dict(state)
    return clone
