"""Accuracy of a potential on labelled structures (MAE/RMSE of energies, forces, stress) and a parity plot."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .data import Structure, collate, predict

__all__ = ["Predictions", "predict_all", "metrics", "parity_plot"]


@dataclass(frozen=True)
class Predictions:
    """Reference and predicted labels, float64 numpy: energies [S] (eV), atoms per structure [S], forces [N, 3]."""

    energy_ref: np.ndarray
    energy_pred: np.ndarray
    n_atoms: np.ndarray
    forces_ref: np.ndarray
    forces_pred: np.ndarray
    stress_ref: np.ndarray  # [S', 6] for the structures that carry a stress
    stress_pred: np.ndarray


def predict_all(model, structs: list[Structure], batch_size: int = 16, predict_fn=predict) -> Predictions:
    """The model's energies, forces and stresses on every structure (batched, no graph kept); ``predict_fn`` as
    in ``fit.fit_model``."""
    e_ref, e_pred, n_at, f_ref, f_pred, s_ref, s_pred = [], [], [], [], [], [], []
    was_training = model.training
    model.eval()
    try:
        for k in range(0, len(structs), batch_size):
            batch = collate(structs[k:k + batch_size])
            want_stress = bool(batch.has_stress.any())
            energy, forces, stress = predict_fn(model, batch, training=False, want_stress=want_stress)
            e_ref.append(batch.energy.double().numpy())
            e_pred.append(energy.detach().double().numpy())
            n_at.append(batch.n_atoms.numpy())
            f_ref.append(batch.forces.double().numpy())
            f_pred.append(forces.detach().double().numpy())
            if want_stress:
                s_ref.append(batch.stress[batch.has_stress].double().numpy())
                s_pred.append(stress.detach()[batch.has_stress].double().numpy())
    finally:
        model.train(was_training)
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape))
    return Predictions(cat(e_ref, 0), cat(e_pred, 0), cat(n_at, 0), cat(f_ref, (0, 3)), cat(f_pred, (0, 3)),
                       cat(s_ref, (0, 6)), cat(s_pred, (0, 6)))


def _mae_rmse(err: np.ndarray) -> tuple[float, float]:
    if err.size == 0:
        return math.nan, math.nan
    return float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err ** 2)))


def metrics(pred: Predictions) -> dict:
    """Energy MAE/RMSE per atom and per structure (eV), force-component MAE/RMSE (eV/Å), stress (eV/Å³)."""
    de = pred.energy_pred - pred.energy_ref
    out = {"n_structures": int(pred.energy_ref.shape[0]), "n_atoms": int(pred.n_atoms.sum())}
    out["energy_mae_per_atom"], out["energy_rmse_per_atom"] = _mae_rmse(de / pred.n_atoms)
    out["energy_mae"], out["energy_rmse"] = _mae_rmse(de)
    out["force_mae"], out["force_rmse"] = _mae_rmse(pred.forces_pred - pred.forces_ref)
    if pred.stress_ref.shape[0]:
        out["stress_mae"], out["stress_rmse"] = _mae_rmse(pred.stress_pred - pred.stress_ref)
    return out


def parity_plot(pred: Predictions, path, title: str = "") -> None:
    """Predicted against reference: energy per atom (meV/atom, shifted by the reference mean) and force
    components (eV/Å), with the MAEs in the panel titles. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = metrics(pred)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    ref = pred.energy_ref / pred.n_atoms
    shift = float(ref.mean()) if ref.size else 0.0
    panels = [
        (axes[0], (ref - shift) * 1e3, (pred.energy_pred / pred.n_atoms - shift) * 1e3,
         f"energy per atom − {shift:.3f} eV (meV)", f"MAE {m['energy_mae_per_atom'] * 1e3:.2f} meV/atom"),
        (axes[1], pred.forces_ref.ravel(), pred.forces_pred.ravel(), "force components (eV/Å)",
         f"MAE {m['force_mae'] * 1e3:.1f} meV/Å"),
    ]
    for ax, x, y, label, mae in panels:
        ax.scatter(x, y, s=4, alpha=0.5, linewidths=0)
        if x.size:
            lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(mae, fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or f"{m['n_structures']} structures, {m['n_atoms']} atoms", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)
