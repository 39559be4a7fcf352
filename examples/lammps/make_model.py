"""Write an untrained Cu/Ni demo potential and its LAMMPS file, for in.nve.

    python make_model.py [--layers 1] [--dtype float64]     # writes model.pt and model.mliap.pkl

Its weights are random (seeded): it exercises the pipeline, it is not a physical Cu-Ni potential. Use your
trained model instead: cartinv lammps-export trained.pt -o model.mliap.pkl
"""

import argparse

import torch

from cartinv.runtime.integrations.lammps import export_lammps
from cartinv.runtime.models.potential import CartinvPotential


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--model", default="model.pt")
    ap.add_argument("--output", default="model.mliap.pkl")
    args = ap.parse_args()
    model = CartinvPotential(["Cu", "Ni"], cutoff=4.0, n_features=8, n_layers=args.layers, hidden=(16,),
                             seed=0, dtype=torch.float64)
    model.set_energy_reference([-3.5, -4.4], scale=0.2)
    model.save(args.model)
    wrapper = export_lammps(args.model, args.output, dtype=args.dtype)
    print(f"wrote {args.model} and {args.output}: {wrapper}; pair_style mliap unified {args.output} "
          f"{wrapper.ghostneigh}")


if __name__ == "__main__":
    main()
