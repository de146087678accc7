"""Accuracy, reconstruction, speed and memory of vae.py, run exactly as the course grader runs it.

The course training file is split per digit into a development training part (80 %) and a
held-out part (20 %) that is never trained on. For each validation draw, 5 images per digit are
drawn from the held-out part; the rest of it is the test set. The grader's three commands run
through a subprocess, and the script prints one row per draw, then the mean and the minimum.

    python scripts/benchmark.py                 # the README's table: 5 draws, full training
    python scripts/benchmark.py --quick         # a small, fast run for CI
    python scripts/benchmark.py -- --beta 0.5   # extra flags after -- go to vae.py train
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from draw_validation import draw_validation
from score import classification_scores, print_table, reconstruction_scores

ROOT = Path(__file__).resolve().parent.parent
COURSE_FILE = ROOT.parent / "shared" / "data" / "mnist_1_4_8_train.npz"
SPLIT_SEED = 2024


def read_course_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The course file's images and labels; a one-line exit when it is missing."""
    if not path.is_file():
        sys.exit(f"{Path(sys.argv[0]).name}: {path} not found; it is the course file kept in ../shared/data")
    with np.load(path) as archive:
        return archive["data"], archive["labels"]


def split_course_file(images: np.ndarray, labels: np.ndarray, train_fraction: float = 0.8):
    """Indices of the development training part and of the held-out part, stratified by digit."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, held_out = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = int(train_fraction * len(members))
        train.append(members[:cut])
        held_out.append(members[cut:])
    return rng.permutation(np.concatenate(train)), np.concatenate(held_out)


def validation_and_test(labels: np.ndarray, held_out: np.ndarray, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation draw number `draw` (5 images per digit from the held-out part) and the held-out rest."""
    validation = draw_validation(labels, np.random.default_rng(1000 + draw), among=held_out)
    return validation, np.setdiff1d(held_out, validation)


def run(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run a command; return its wall seconds and peak resident memory in MB."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.exit(f"{' '.join(command)} failed:\n{errors.read().decode()}")
    return seconds, usage.ru_maxrss / 1024


def benchmark_draw(images, labels, train, held_out, draw, folder: Path, train_flags: list[str]) -> dict:
    validation, test = validation_and_test(labels, held_out, draw)
    np.savez(folder / "val.npz", data=images[validation], labels=labels[validation])
    np.savez(folder / "test.npz", data=images[test])
    vae_py = str(ROOT / "vae.py")
    python = sys.executable
    train_seconds, train_mb = run(
        [python, vae_py, "train.npz", "val.npz", "train", "vae.pth", "gmm_params.pkl", *train_flags], folder
    )
    recon_seconds, recon_mb = run([python, vae_py, "test.npz", "test_reconstruction", "vae.pth"], folder)
    classify_seconds, classify_mb = run(
        [python, vae_py, "test.npz", "test_classifier", "vae.pth", "gmm_params.pkl"], folder
    )
    predicted = np.loadtxt(folder / "vae.csv", skiprows=1, dtype=int)
    with np.load(folder / "vae_reconstructed.npz") as archive:
        reconstructed = archive["data"]
    scores = classification_scores(labels[test], predicted)
    return {
        "draw": draw,
        "F1avg": scores["F1avg"],
        "accuracy": scores["accuracy"],
        **reconstruction_scores(images[test], reconstructed),
        "train s": train_seconds,
        "recon s": recon_seconds,
        "classify s": classify_seconds,
        "peak MB": max(train_mb, recon_mb, classify_mb),
    }


def print_draws(rows: list[dict]) -> None:
    """One line per draw, then their mean, minimum and maximum."""
    columns = list(rows[0])
    formats = {"draw": "{}", "train s": "{:.1f}", "recon s": "{:.2f}", "classify s": "{:.2f}", "peak MB": "{:.0f}"}
    lines = [[formats.get(c, "{:.4f}").format(row[c]) for c in columns] for row in rows]
    for name, reduce in (("mean", np.mean), ("min", np.min), ("max", np.max)):
        lines.append([name] + [formats.get(c, "{:.4f}").format(reduce([r[c] for r in rows])) for c in columns[1:]])
    print_table(columns, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=5, help="validation draws (default 5)")
    parser.add_argument("--quick", action="store_true", help="2,000 training images, 20 epochs, 2 draws")
    parser.add_argument("--data", type=Path, default=COURSE_FILE, help="the course training file")
    parser.add_argument("train_flags", nargs="*", help="extra flags for vae.py train, after --")
    args = parser.parse_args()
    images, labels = read_course_file(args.data)
    train, held_out = split_course_file(images, labels)
    draws, train_flags = args.draws, list(args.train_flags)
    if args.quick:
        train, draws, train_flags = train[:2000], min(draws, 2), ["--epochs", "20", *train_flags]
    print(f"training images {len(train)}, held-out images {len(held_out)}, draws {draws}, "
          f"flags {' '.join(train_flags) or '(defaults)'}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        np.savez(folder / "train.npz", data=images[train])
        rows = []
        for draw in range(draws):
            rows.append(benchmark_draw(images, labels, train, held_out, draw, folder, train_flags))
            print(f"draw {draw}: F1avg {rows[-1]['F1avg']:.4f}", flush=True)
    print_draws(rows)


if __name__ == "__main__":
    main()
