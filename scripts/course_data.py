"""The course's training file: where it is, how it is read, the development split, and validation draws.

    python scripts/course_data.py data/mnist_1_4_8_train.npz models/val.npz   # 5 labelled images per digit

The course file is COURSE_FILE: the environment variable of that name where it is set (as CI sets it), else
DEFAULT_COURSE_FILE in the clone, the Makefile's default too. `make model` draws the shipped model's validation
file with this command's default seed, so the shipped model can be reproduced. The tools read the course file,
split it into a development training part and held-out digits, and draw validation sets from the held-out part,
all here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_COURSE_FILE = ROOT / "data" / "mnist_1_4_8_train.npz"
COURSE_FILE = Path(os.environ.get("COURSE_FILE") or DEFAULT_COURSE_FILE).resolve()
SPLIT_SEED = 2024  # the development split's
TRAIN_FRACTION = 0.8  # of each digit's images, trained on; the rest are held out
DRAW_SEED_BASE = 1000  # validation draw d takes the random stream of seed 1000 + d


def add_course_file_argument(parser: argparse.ArgumentParser) -> None:
    """The tools' --data, the course file, COURSE_FILE by default."""
    parser.add_argument("--data", type=Path, default=COURSE_FILE,
                        help=f"the course's training file (default: $COURSE_FILE, else "
                             f"{DEFAULT_COURSE_FILE.relative_to(ROOT)})")


def read_course_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The course file's images and labels; a one-line exit (status 2) when it is missing."""
    if not path.is_file():
        print(f"{Path(sys.argv[0]).name}: {path} not found: put the course's {DEFAULT_COURSE_FILE.name} in "
              f"{DEFAULT_COURSE_FILE.parent.name}/, or give its path (COURSE_FILE=... for make)", file=sys.stderr)
        sys.exit(2)
    with np.load(path) as archive:
        return archive["data"], archive["labels"]


def draw_validation(labels: np.ndarray, rng: np.random.Generator, per_digit: int = 5,
                    among: np.ndarray | None = None) -> np.ndarray:
    """Indices of `per_digit` images of each digit, drawn without replacement from `among` (default all)."""
    candidates = np.arange(len(labels)) if among is None else among
    return np.concatenate([
        rng.choice(candidates[labels[candidates] == digit], per_digit, replace=False) for digit in np.unique(labels)
    ])


def split_course_file(labels: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the development training part and of the held-out part, stratified by digit."""
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = int(TRAIN_FRACTION * len(members))
        train.append(members[:cut])
        held_out.append(members[cut:])
    return rng.permutation(np.concatenate(train)), np.concatenate(held_out)


def validation_and_test(labels: np.ndarray, held_out: np.ndarray, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation draw number `draw` (5 images per digit from the held-out part) and the held-out rest."""
    validation = draw_validation(labels, np.random.default_rng(DRAW_SEED_BASE + draw), among=held_out)
    return validation, np.setdiff1d(held_out, validation)


SHIPPED_DRAW_SEED = 0  # the seed of make model's validation draw, so the shipped model can be reproduced
RECONSTRUCTION_IMAGES = 10  # as many as the course's reconstruction file holds


def write_draws(course_file: Path, folder: Path) -> dict[str, Path]:
    """What run.ipynb needs when it is given the course file alone, split as make benchmark splits it, written into
    `folder`: train.npz, the development training part; val.npz, validation draw 0 from the held-out part; test.npz,
    the held-out rest with its labels, never trained on; recon.npz, the first 10 of those."""
    images, labels = read_course_file(course_file)
    train, held_out = split_course_file(labels)
    validation, test = validation_and_test(labels, held_out, 0)
    chosen = {"train": train, "val": validation, "test": test, "recon": test[:RECONSTRUCTION_IMAGES]}
    folder.mkdir(parents=True, exist_ok=True)
    for name, indices in chosen.items():
        np.savez(folder / f"{name}.npz", data=images[indices], labels=labels[indices])
    return {name: folder / f"{name}.npz" for name in chosen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a labelled .npz file, such as the course file")
    parser.add_argument("output", help="the validation file to write")
    parser.add_argument("--per-digit", type=int, default=5, help="images per digit (default 5)")
    parser.add_argument("--seed", type=int, default=SHIPPED_DRAW_SEED,
                        help=f"the draw's random seed (default {SHIPPED_DRAW_SEED}, the shipped model's)")
    args = parser.parse_args()
    images, labels = read_course_file(args.source)
    chosen = draw_validation(labels, np.random.default_rng(args.seed), args.per_digit)
    np.savez(args.output, data=images[chosen], labels=labels[chosen])
    print(f"{args.output}: {len(chosen)} images, digits {np.unique(labels).tolist()}")


if __name__ == "__main__":
    main()
