"""Score the grader's outputs against labelled files, as the course does; the tools' shared scoring.

    python scripts/score.py --test TEST.npz --recon RECON.npz --outputs FOLDER

Prints F1avg ((macro F1 + micro F1) / 2), accuracy, 1 - MSE and mean SSIM (data_range 1).
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import vae  # noqa: E402  (vae.py is the product, one directory up: its output files' names)

FIGURE_FINGERPRINT = "vae.py GMM fingerprint"  # the PNG text naming the model and GMM a figure shows


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


def shared_training_gmm(model: vae.VAE, trainings: list[dict], train_pixels: np.ndarray, val_pixels: np.ndarray,
                        val_labels: np.ndarray) -> vae.GMM | None:
    """The GMM that vae.py's train fits for these labelled images where `model` trained for others: EM from their
    class means on its codes, as the VAE reads no label. None where train would train again instead: `model` came
    from a restart (`trainings`, its history's, has more than one), or these images' check finds two digits
    merged."""
    val_codes = vae.latent_codes(model, val_pixels)
    gmm = vae.fit_digit_gmm(vae.latent_codes(model, train_pixels), val_codes, val_labels)
    if len(trainings) != 1 or vae.LabelledCheck.of(gmm, val_codes, val_labels).merged:
        return None
    return gmm


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, cells right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.rjust(width) for cell, width in zip(header, widths)) + " |",
             "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
    lines += ["| " + " | ".join(cell.rjust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def print_table(header: list[str], rows: list[list[str]]) -> None:
    print(markdown_table(header, rows))


def machine() -> str:
    """Where a measurement ran: the commit (with "+changes" where its code differs), the processor, the threads,
    PyTorch, the date."""
    def git(*arguments: str) -> str:
        done = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "vae.py", "scripts")  # the code measured, not the docs
    commit = (git("rev-parse", "--short", "HEAD") or "no git") + ("+changes" if changed else "")
    return (f"commit {commit}, {vae.processor()}, {torch.get_num_threads()} threads, PyTorch {torch.__version__}, "
            f"{datetime.date.today().isoformat()}")


def write_generated(path: Path, command: str, body: str, ran_on: str) -> None:
    """The tables a tool printed, as a page of docs/generated: the one home of the numbers the docs quote.
    `ran_on` is machine() as the tool started, so the commit named is the code that ran."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"<!-- written by `{command}`; do not edit: run it again -->\n\n"
            f"`{command}` printed, on {ran_on}:\n\n{body.strip()}\n")
    path.write_text(text)
    print(f"wrote {path}")


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
