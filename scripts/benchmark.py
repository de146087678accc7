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

from course_data import (
    ROOT,
    SPLIT_SEED,
    add_course_file_argument,
    read_course_file,
    split_course_file,
    validation_and_test,
)
from grader import grader_commands, run_vae
from score import classification_scores, print_table, read_predictions, read_reconstructions, reconstruction_scores

QUICK_TRAINING = ["--epochs", "20", "--refine-steps", "250", "--decoder-epochs", "5"]


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


COLUMNS = {  # each column of a table: how it is printed, and which of two values is the worse
    "F1avg mean": ("{:.4f}", min),
    "F1avg worst": ("{:.4f}", min),
    "1-MSE": ("{:.4f}", min),
    "SSIM": ("{:.4f}", min),
    "train s": ("{:.1f}", max),
    "recon s": ("{:.2f}", max),
    "classify s": ("{:.2f}", max),
    "peak MB": ("{:.0f}", max),
}


def seed_summaries(results: dict[int, list[dict]]) -> dict[str, dict[str, float]]:
    """Per seed: F1avg's mean and worst over its draws, and the means of the rest; then "mean", the mean over
    seeds, and "worst", the worst seed's."""
    summaries = {}
    for seed, pairs in results.items():
        f1 = [pair["F1avg"] for pair in pairs]
        summary = {"F1avg mean": float(np.mean(f1)), "F1avg worst": min(f1)}
        summaries[str(seed)] = summary | {column: float(np.mean([pair[column] for pair in pairs]))
                                          for column in COLUMNS if column not in summary}
    per_seed = list(summaries.values())
    summaries["mean"] = {column: float(np.mean([summary[column] for summary in per_seed])) for column in COLUMNS}
    summaries["worst"] = {column: worse(summary[column] for summary in per_seed)
                          for column, (_, worse) in COLUMNS.items()}
    return summaries


def print_summaries(summaries: dict[str, dict[str, float]]) -> None:
    rows = [[name, *(COLUMNS[column][0].format(summary[column]) for column in COLUMNS)]
            for name, summary in summaries.items()]
    print_table(["seed", *COLUMNS], rows)


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
    add_course_file_argument(parser)
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
    summaries = {name: seed_summaries(per_seed) for name, per_seed in results.items()}
    for name, per_seed in summaries.items():
        print(f"\n{name}\n")
        print_summaries(per_seed)
    if args.baseline:
        ours, theirs = (summaries[name]["mean"]["train s"] for name in variants)
        print(f"\ntraining time, vae.py / baseline {args.baseline}: {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
