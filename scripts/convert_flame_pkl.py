#!/usr/bin/env python3
"""Convert an official FLAME ``.pkl`` (which stores chumpy objects) into a plain ``.npz``.

chumpy does not install on Python 3.11, which the backend needs, so run this once in any Python
where it does (for example 3.10):

    python3.10 -m pip install numpy scipy chumpy
    python3.10 scripts/convert_flame_pkl.py generic_model.pkl flame2020.npz

then `backend models install --flame flame2020.npz ...`. Needs only numpy (and chumpy to read
the file); it does not import the backend.
"""

import argparse
import pickle
import sys

import numpy as np


def plain_arrays(model: dict) -> dict:
    """Every value as a plain numpy array: chumpy objects by their value ``.r``, sparse matrices
    densified, strings and other non-array entries dropped."""
    arrays = {}
    for key, value in model.items():
        if hasattr(value, "toarray"):  # scipy.sparse
            value = value.toarray()
        elif hasattr(value, "r"):  # chumpy.Ch and its expressions
            value = value.r
        value = np.asarray(value)
        if value.dtype.kind in "biuf":
            arrays[key] = value
    return arrays


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pkl", help="FLAME model pickle, e.g. generic_model.pkl")
    parser.add_argument("npz", help="output .npz")
    args = parser.parse_args(argv)
    with open(args.pkl, "rb") as handle:
        model = pickle.load(handle, encoding="latin1")
    arrays = plain_arrays(model)
    np.savez(args.npz, **arrays)
    print("wrote", args.npz, "with", ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
