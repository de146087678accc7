"""Accuracy, reconstruction, speed and memory of vae.py over training seeds, run exactly as the course grader runs it.

The course training file is split per digit into a development training part (80 %) and a held-out
part (20 %) that is never trained on. For every training seed and validation draw (5 images per digit
from the held-out part; the rest of it is the test set), the grader's three commands run through a
subprocess, `train` with `--seed`. A retraining grader sees one such (seed, draw) pair, so the table
gives, per seed, F1avg's mean and worst over the draws, then the mean over seeds and the worst seed.

`--baseline REV` runs the vae.py of that git revision on the same pairs, interleaved with this one, so
that every comparison and every time ratio comes from one run on one machine.

    python scripts/benchmark.py --baseline a1fc881   # the README's table: seeds 0-4, 5 draws each
    python scripts/benchmark.py --quick              # a small, fast run for CI
    python scripts/benchmark.py --split 1 --draws 2  # another split: other digits held out
    python scripts/benchmark.py -- --beta 0.5        # extra flags after -- go to vae.py train
    python scripts/benchmark.py --seeds 0 --draws 1 --baseline cbd028c --figure docs/reconstructions.png
                                                     # the same held-out digits, reconstructed by each
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from draw_validation import COURSE_FILE, draw_validation, read_course_file
from grader import grader_commands, run_vae
from score import classification_scores, print_table, read_predictions, read_reconstructions, reconstruction_scores

ROOT = Path(__file__).resolve().parent.parent
SPLIT_SEED = 2024
QUICK_TRAINING = ["--epochs", "20", "--refine-steps", "250", "--decoder-epochs", "5"]


def split_course_file(labels: np.ndarray, train_fraction: float = 0.8, seed: int = SPLIT_SEED):
    """Indices of the development training part and of the held-out part, stratified by digit."""
    rng = np.random.default_rng(seed)
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


def run_pair(vae_py: Path, seed: int, draw: int, folder: Path, data: dict, train_flags: list[str]) -> dict:
    """The grader's three commands for one (training seed, validation draw); their scores and costs."""
    images, labels, test = data["images"], data["labels"], data["tests"][draw]
    commands = grader_commands(train="train.npz", val=f"val{draw}.npz", recon=f"test{draw}.npz", test=f"test{draw}.npz")
    commands["train"] += ["--seed", str(seed), *train_flags]
    runs = {}
    for mode, arguments in commands.items():
        runs[mode] = run_vae(vae_py, *arguments, cwd=folder)
        if runs[mode].returncode != 0:
            sys.exit(f"{vae_py} {' '.join(map(str, arguments))} failed:\n{runs[mode].stderr}")
    predicted = read_predictions(folder)
    reconstructed = read_reconstructions(folder)
    return {
        "F1avg": classification_scores(labels[test], predicted)["F1avg"],
        **reconstruction_scores(images[test], reconstructed),
        "train s": runs["train"].seconds,
        "recon s": runs["test_reconstruction"].seconds,
        "classify s": runs["test_classifier"].seconds,
        "peak MB": max(run.peak_mb for run in runs.values()),
    }


def seed_rows(results: dict[int, list[dict]]) -> list[list[str]]:
    """Per seed: F1avg mean and worst over its draws, and the means of the rest; then the mean and worst seed."""
    rows, summaries = [], []
    for seed, pairs in results.items():
        summary = {"F1avg mean": np.mean([p["F1avg"] for p in pairs]), "F1avg worst": min(p["F1avg"] for p in pairs)}
        summary |= {key: np.mean([p[key] for p in pairs]) for key in pairs[0] if key != "F1avg"}
        summaries.append(summary)
        rows.append([str(seed), *format_row(summary)])
    mean = {key: np.mean([s[key] for s in summaries]) for key in summaries[0]}
    worst = {key: (max if key.endswith((" s", "MB")) else min)(s[key] for s in summaries) for key in summaries[0]}
    return [*rows, ["mean", *format_row(mean)], ["worst", *format_row(worst)]]


def format_row(summary: dict) -> list[str]:
    formats = {"train s": "{:.1f}", "recon s": "{:.2f}", "classify s": "{:.2f}", "peak MB": "{:.0f}"}
    return [formats.get(key, "{:.4f}").format(value) for key, value in summary.items()]


HEADER = ["seed", "F1avg mean", "F1avg worst", "1-MSE", "SSIM", "train s", "recon s", "classify s", "peak MB"]


FIGURE_IMAGES = 12


def draw_figure(rows: dict[str, np.ndarray], title: str, path: Path) -> None:
    """Rows of images under their labels, as one PNG."""
    from report import image_rows  # Matplotlib only where a figure is asked for

    figure = image_rows(list(rows.values()), list(rows), title)
    figure.savefig(path, dpi=110)
    print(f"wrote {path}")


def baseline_vae(revision: str, folder: Path) -> Path:
    """vae.py as it was at `revision`, written into `folder`."""
    shown = subprocess.run(["git", "show", f"{revision}:vae.py"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        sys.exit(f"benchmark.py: no vae.py at git revision {revision}: {shown.stderr.strip()}")
    path = folder / "baseline" / "vae.py"
    path.parent.mkdir()
    path.write_text(shown.stdout)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="training seeds (default 0-4)")
    parser.add_argument("--draws", type=int, default=5, help="validation draws per seed (default 5)")
    parser.add_argument("--baseline", help="a git revision whose vae.py runs beside this one, e.g. a1fc881")
    parser.add_argument("--split", type=int, default=SPLIT_SEED,
                        help=f"the seed of the split into training and held-out parts (default {SPLIT_SEED})")
    parser.add_argument("--quick", action="store_true",
                        help="a check that it runs: 2,000 images, a short training, seed 0, 1 draw")
    parser.add_argument("--data", type=Path, default=COURSE_FILE,
                        help="the course training file (default: $COURSE_FILE, else data/mnist_1_4_8_train.npz)")
    parser.add_argument("--figure", type=Path, help="draw the first seed and draw's reconstructions of "
                        f"{FIGURE_IMAGES} held-out digits, by each vae.py, into this PNG")
    parser.add_argument("train_flags", nargs="*", help="extra flags for vae.py train, after --")
    args = parser.parse_args()
    images, labels = read_course_file(args.data)
    train, held_out = split_course_file(labels, seed=args.split)
    seeds, draws, train_flags = args.seeds, args.draws, list(args.train_flags)
    if args.quick:
        train, seeds, draws, train_flags = train[:2000], seeds[:1], 1, [*QUICK_TRAINING, *train_flags]
    print(f"training images {len(train)}, held-out images {len(held_out)} (split {args.split}), seeds {seeds}, "
          f"draws {draws}, flags {' '.join(train_flags) or '(defaults)'}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        variants = {"vae.py": ROOT / "vae.py"}
        if args.baseline:
            variants[f"baseline {args.baseline}"] = baseline_vae(args.baseline, folder)
        np.savez(folder / "train.npz", data=images[train])
        data = {"images": images, "labels": labels, "tests": {}}
        for draw in range(draws):
            validation, data["tests"][draw] = validation_and_test(labels, held_out, draw)
            np.savez(folder / f"val{draw}.npz", data=images[validation], labels=labels[validation])
            np.savez(folder / f"test{draw}.npz", data=images[data["tests"][draw]])
        results = {name: {seed: [] for seed in seeds} for name in variants}
        shown = {"held-out digits": images[data["tests"][0][:FIGURE_IMAGES]] / 255.0}
        for seed in seeds:
            for draw in range(draws):
                for name, vae_py in variants.items():
                    results[name][seed].append(run_pair(vae_py, seed, draw, folder, data, train_flags))
                    print(f"{name}, seed {seed}, draw {draw}: F1avg {results[name][seed][-1]['F1avg']:.4f}", flush=True)
                    if args.figure and (seed, draw) == (seeds[0], 0):
                        label = f"{name}, SSIM {results[name][seed][-1]['SSIM']:.3f}"
                        shown[label] = read_reconstructions(folder)[:FIGURE_IMAGES]
    if args.figure:
        draw_figure(shown, f"Held-out digits reconstructed by each vae.py (training seed {seeds[0]}); "
                    "SSIM over all the held-out test digits", args.figure)
    tables = {name: seed_rows(per_seed) for name, per_seed in results.items()}
    for name, rows in tables.items():
        print(f"\n{name}\n")
        print_table(HEADER, rows)
    if args.baseline:
        (ours, theirs) = (tables[name][-2] for name in variants)  # the "mean" rows
        ratio = float(ours[HEADER.index("train s")]) / float(theirs[HEADER.index("train s")])
        print(f"\ntraining time, vae.py / baseline {args.baseline}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
