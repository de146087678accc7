"""Accuracy, reconstruction, speed and memory of vae.py over training seeds, run exactly as the course grader runs it.

The course training file is split per digit into a development training part (80 %) and a held-out
part (20 %) that is never trained on. For every training seed and validation draw (5 images per digit
from the held-out part; the rest of it is the test set), the grader's three commands run through a
subprocess, `train` with `--seed`. A retraining grader sees one such (seed, draw) pair, so the table
gives, per seed, F1avg's mean and worst over the draws, then the mean over seeds and the worst seed.

vae.py's VAE reads no label, so a seed's training serves all its draws: `train` runs for draw 0, and
each other draw's GMM is what `train` fits from its labelled images (EM from their class means), written
beside the same vae.pth, unless their check finds two digits merged (train would train again) or draw
0's training itself restarted: then that draw trains in full.

`--baseline REV` runs the vae.py of that git revision on draw 0 of every seed, interleaved with this
one, so that the time ratio comes from one run on one machine. `--out` writes the tables into a page
of docs/generated, the one home of the numbers the docs quote.

    python scripts/benchmark.py --baseline a1fc881   # seeds 0-4, 5 draws each: make benchmark
    python scripts/benchmark.py --quick              # a small, fast run for CI
    python scripts/benchmark.py --split 1 --draws 2  # another split: other digits held out
    python scripts/benchmark.py -- --beta 0.5        # extra flags after -- go to this vae.py's train
    python scripts/benchmark.py --seeds 0 --draws 1 --baseline cbd028c --figure docs/reconstructions.png
                                                     # the same held-out digits, reconstructed by each
"""

from __future__ import annotations

import argparse
import json
import pickle
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
from grader import Run, grader_commands, run_vae
from score import (
    classification_scores,
    machine,
    markdown_table,
    read_predictions,
    read_reconstructions,
    reconstruction_scores,
    shared_training_gmm,
    vae,
    write_generated,
)

QUICK_TRAINING = ["--epochs", "20", "--refine-rounds", "2", "--refine-epochs", "2", "--decoder-epochs", "5"]


def run_pair(vae_py: Path, seed: int, draw: int, folder: Path, data: dict, train_flags: list[str],
             trained: Run | None = None) -> tuple[dict, Run]:
    """The grader's three commands for one (training seed, validation draw), run in `folder` on the files of
    data["folder"], or its two test commands where the training was `trained` already; their scores and costs, and
    the training's run."""
    images, labels, test, files = data["images"], data["labels"], data["tests"][draw], data["folder"]
    commands = grader_commands(train=files / "train.npz", val=files / f"val{draw}.npz", recon=files / f"test{draw}.npz",
                               test=files / f"test{draw}.npz")
    commands["train"] += ["--seed", str(seed), *train_flags]
    runs = {"train": trained} if trained else {}
    for mode, arguments in commands.items():
        if mode not in runs:
            runs[mode] = run_vae(vae_py, *arguments, cwd=folder)
        if runs[mode].returncode != 0:
            sys.exit(f"{vae_py} {' '.join(map(str, arguments))} failed:\n{runs[mode].stderr}")
    predicted = read_predictions(folder)
    reconstructed = read_reconstructions(folder)
    scores = {
        "F1avg": classification_scores(labels[test], predicted)["F1avg"],
        **reconstruction_scores(images[test], reconstructed),
        "train s": runs["train"].seconds,
        "recon s": runs["test_reconstruction"].seconds,
        "classify s": runs["test_classifier"].seconds,
        "peak MB": max(run.peak_mb for run in runs.values()),
    }
    return scores, runs["train"]


def gmm_for_another_draw(folder: Path, files: Path, draw: int) -> bool:
    """Write the gmm_params.pkl that `train` fits for validation draw `draw` beside the vae.pth in `folder`, trained
    for another draw; False, writing nothing, where train would train again (score.shared_training_gmm)."""
    model, fingerprint = vae.load_model(str(folder / "vae.pth"))
    trainings = json.loads((folder / "vae_history.json").read_text())["trainings"]
    train = vae.load_images(str(files / "train.npz"), model.input_dim, labels="ignore")
    validation = vae.load_images(str(files / f"val{draw}.npz"), model.input_dim, labels="required")
    gmm = shared_training_gmm(model, trainings, train.pixels, validation.pixels, validation.labels)
    if gmm is None:
        return False
    with open(folder / "gmm_params.pkl", "wb") as handle:
        pickle.dump(vae.gmm_file_contents(gmm, fingerprint), handle, protocol=4)
    return True


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


def summary_table(summaries: dict[str, dict[str, float]]) -> str:
    rows = [[name, *(COLUMNS[column][0].format(summary[column]) for column in COLUMNS)]
            for name, summary in summaries.items()]
    return markdown_table(["seed", *COLUMNS], rows)


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
    parser.add_argument("--out", type=Path, help="also write the tables into this page (make benchmark: "
                        "docs/generated/benchmark.md)")
    parser.add_argument("train_flags", nargs="*", help="extra flags for vae.py train, after --")
    args = parser.parse_args()
    ran_on = machine()
    images, labels = read_course_file(args.data)
    train, held_out = split_course_file(labels, seed=args.split)
    seeds, draws, train_flags = args.seeds, args.draws, list(args.train_flags)
    if args.quick:
        train, seeds, draws, train_flags = train[:2000], seeds[:1], 1, [*QUICK_TRAINING, *train_flags]
    print(f"training images {len(train)}, held-out images {len(held_out)} (split {args.split}), seeds {seeds}, "
          f"draws {draws}, flags {' '.join(train_flags) or '(defaults)'}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        files = Path(scratch) / "data"
        files.mkdir()
        variants = {"vae.py": ROOT / "vae.py"}
        if args.baseline:
            variants[f"baseline {args.baseline}"] = baseline_vae(args.baseline, Path(scratch))
        folders = {name: Path(scratch) / f"run{number}" for number, name in enumerate(variants)}
        for folder in folders.values():
            folder.mkdir()
        np.savez(files / "train.npz", data=images[train])
        data = {"images": images, "labels": labels, "tests": {}, "folder": files}
        for draw in range(draws):
            validation, data["tests"][draw] = validation_and_test(labels, held_out, draw)
            np.savez(files / f"val{draw}.npz", data=images[validation], labels=labels[validation])
            np.savez(files / f"test{draw}.npz", data=images[data["tests"][draw]])
        results = {name: {seed: [] for seed in seeds} for name in variants}
        shared = 0  # pairs whose training was another draw's
        shown = {"held-out digits": images[data["tests"][0][:FIGURE_IMAGES]] / 255.0}
        for seed in seeds:
            trainings = {}
            for name, vae_py in variants.items():  # draw 0 of each, one after the other: the time ratio's pairs
                flags = train_flags if name == "vae.py" else []  # the baseline as it was
                scores, trainings[name] = run_pair(vae_py, seed, 0, folders[name], data, flags)
                results[name][seed].append(scores)
                print(f"{name}, seed {seed}, draw 0: F1avg {scores['F1avg']:.4f}", flush=True)
                if args.figure and seed == seeds[0]:
                    shown[f"{name}, SSIM {scores['SSIM']:.3f}"] = read_reconstructions(folders[name])[:FIGURE_IMAGES]
            for draw in range(1, draws):
                trained = gmm_for_another_draw(folders["vae.py"], files, draw)
                scores, run = run_pair(variants["vae.py"], seed, draw, folders["vae.py"], data, train_flags,
                                       trainings["vae.py"] if trained else None)
                shared += trained
                results["vae.py"][seed].append(scores)
                print(f"vae.py, seed {seed}, draw {draw}{' (shared training)' * trained}: F1avg {scores['F1avg']:.4f}",
                      flush=True)
    if args.figure:
        draw_figure(shown, f"Held-out digits reconstructed by each vae.py (training seed {seeds[0]}); "
                    "SSIM over all the held-out test digits", args.figure)
    summaries = {name: seed_summaries(per_seed) for name, per_seed in results.items()}
    pairs = len(seeds) * draws
    sections = [f"`vae.py`, {len(seeds)} training seeds x {draws} validation draws ({pairs - shared} trainings; the "
                f"other {shared} pairs used their seed's training, as the VAE reads no label):\n\n"
                f"{summary_table(summaries['vae.py'])}"]
    if args.baseline:
        name = f"baseline {args.baseline}"
        ours, theirs = (results[variant] for variant in variants)
        ratio = np.mean([pair[0]["train s"] for pair in ours.values()]) / np.mean(
            [pair[0]["train s"] for pair in theirs.values()])
        sections += [f"{name}, draw 0 of each seed:\n\n{summary_table(summaries[name])}",
                     f"training time on draw 0, vae.py / {name}: {ratio:.2f}x"]
    tables = "\n\n".join(sections)
    print(f"\n{tables}")
    if args.out:
        baseline = f" --baseline {args.baseline}" if args.baseline else ""
        extra = f" -- {' '.join(train_flags)}" if train_flags else ""
        command = (f"python scripts/benchmark.py --seeds {' '.join(map(str, seeds))} --draws {draws} "
                   f"--split {args.split}{baseline}{extra}")
        write_generated(args.out, command, tables, ran_on)


if __name__ == "__main__":
    main()
