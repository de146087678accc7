"""Score the grader's outputs against labelled files, as the course does; the tools' shared scoring.

    python scripts/score.py --test TEST.npz --recon RECON.npz --outputs FOLDER

Prints F1avg ((macro F1 + micro F1) / 2), accuracy, 1 - MSE and mean SSIM (data_range 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae  # noqa: E402  (vae.py is the product, one directory up: its output files' names)


def read_predictions(folder: Path) -> np.ndarray:
    """The digits of the vae.csv that test_classifier wrote in `folder`, after its header."""
    return np.loadtxt(Path(folder) / vae.PREDICTIONS_FILE, skiprows=1, dtype=int, ndmin=1)


def read_reconstructions(folder: Path) -> np.ndarray:
    """The images of the vae_reconstructed.npz that test_reconstruction wrote in `folder`."""
    with np.load(Path(folder) / vae.RECONSTRUCTION_FILE) as archive:
        return archive["data"]


def classification_scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The course's F1avg, and accuracy and the macro averages for the report's metrics table."""
    macro = {"average": "macro", "zero_division": 0}
    f1_macro = f1_score(truth, predicted, **macro)
    return {
        "F1avg": float((f1_macro + f1_score(truth, predicted, average="micro")) / 2),
        "accuracy": float(accuracy_score(truth, predicted)),
        "precision_macro": float(precision_score(truth, predicted, **macro)),
        "recall_macro": float(recall_score(truth, predicted, **macro)),
        "f1_macro": float(f1_macro),
    }


def reconstruction_scores(originals: np.ndarray, reconstructed: np.ndarray) -> dict[str, float]:
    """1 - MSE and mean SSIM against the originals (uint8 0-255) scaled to [0, 1]."""
    truth = originals.astype(np.float64).reshape(reconstructed.shape) / 255.0
    ssim = np.mean([structural_similarity(a, b, data_range=1.0) for a, b in zip(truth, reconstructed)])
    return {"1-MSE": float(1 - np.mean((truth - reconstructed) ** 2)), "SSIM": float(ssim)}


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, cells right-aligned, as the README shows them."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print("| " + " | ".join(cell.rjust(width) for cell, width in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print("| " + " | ".join(cell.rjust(width) for cell, width in zip(row, widths)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", required=True)
    parser.add_argument("--recon", required=True)
    parser.add_argument("--outputs", type=Path, default=Path("."),
                        help=f"the folder holding {vae.PREDICTIONS_FILE} and {vae.RECONSTRUCTION_FILE} (default .)")
    args = parser.parse_args()
    with np.load(args.test) as test, np.load(args.recon) as recon:
        scores = classification_scores(test["labels"], read_predictions(args.outputs))
        scores = {"F1avg": scores["F1avg"], "accuracy": scores["accuracy"]}
        scores |= reconstruction_scores(recon["data"], read_reconstructions(args.outputs))
    print("  ".join(f"{name} {value:.4f}" for name, value in scores.items()))


if __name__ == "__main__":
    main()
