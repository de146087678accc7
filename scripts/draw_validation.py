"""Draw a validation file of N images per digit (with labels) from a labelled .npz.

    python scripts/draw_validation.py data/mnist_1_4_8_train.npz models/val.npz

`make model` uses it with the default seed, so the shipped model can be reproduced. The tools draw
their validation sets with the same routine, `draw_validation`, and read the course file with
`read_course_file`. The course file is COURSE_FILE: the environment variable of that name where it is
set (as CI sets it), else data/mnist_1_4_8_train.npz in the clone.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_COURSE_FILE = Path(__file__).resolve().parent.parent / "data" / "mnist_1_4_8_train.npz"
COURSE_FILE = Path(os.environ.get("COURSE_FILE") or DEFAULT_COURSE_FILE).resolve()


def read_course_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The course file's images and labels; a one-line exit (status 2) when it is missing."""
    if not path.is_file():
        print(f"{Path(sys.argv[0]).name}: {path} not found: put the course's mnist_1_4_8_train.npz in data/, "
              "or give its path (COURSE_FILE=... for make)", file=sys.stderr)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--per-digit", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, labels = read_course_file(Path(args.source))
    chosen = draw_validation(labels, np.random.default_rng(args.seed), args.per_digit)
    np.savez(args.output, data=images[chosen], labels=labels[chosen])
    print(f"{args.output}: {len(chosen)} images, digits {np.unique(labels).tolist()}")


if __name__ == "__main__":
    main()
