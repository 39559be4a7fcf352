"""Training and evaluating ``CartinvPotential`` models on labelled data (``cartinv train`` / ``cartinv evaluate``).

- ``config``: the frozen ``TrainConfig`` and its JSON/TOML reader;
- ``data``: reading and checking frames, pair lists, batches, per-element reference energies;
- ``fit``: the training loop (validation, early stopping, learning-rate schedule, checkpoint and resume);
- ``metrics``: MAE/RMSE of energies, forces and stress, and the parity plot.
"""

from .config import ConfigError, TrainConfig, load_config
from .data import DataError, Frame, read_frames
from .fit import TrainResult, train
from .metrics import metrics, parity_plot, predict_all

__all__ = ["TrainConfig", "ConfigError", "load_config", "DataError", "Frame", "read_frames", "TrainResult",
           "train", "metrics", "parity_plot", "predict_all", "evaluate"]


def evaluate(model, data, energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress",
             batch_size: int = 16):
    """Metrics (dict, eV and eV/Å) and Predictions of ``model`` (a CartinvPotential or a saved one's path) on
    ``data`` (a path ASE reads, or a list of Frame)."""
    from cartinv.runtime.models.potential import CartinvPotential

    from .data import check_species, featurize

    if not isinstance(model, CartinvPotential):
        model = CartinvPotential.load(model)
    frames = data if isinstance(data, list) else read_frames(data, energy_key, forces_key, stress_key)
    check_species(frames, model.elements, "model")
    structs = featurize(frames, model.elements, model.cutoff, model.dtype)
    pred = predict_all(model, structs, batch_size)
    return metrics(pred), pred
