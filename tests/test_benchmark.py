"""scripts/benchmark.py --quick runs the grader's commands end to end and prints its table."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from benchmark import COLUMNS, gmm_for_another_draw, seed_summaries
from conftest import ROOT, images_of, labels_of, run_checked, short_training
from course_data import COURSE_FILE, SPLIT_SEED, read_course_file, split_course_file
from score import reconstruction_scores


@pytest.mark.slow
@pytest.mark.skipif(not COURSE_FILE.is_file(), reason="needs the course file: data/ or COURSE_FILE")
def test_quick_benchmark_prints_a_seed_table_that_beats_ignoring_the_input(tmp_path):
    page = tmp_path / "generated" / "benchmark.md"
    result = subprocess.run([sys.executable, ROOT / "scripts" / "benchmark.py", "--quick", "--out", page],
                            capture_output=True, text=True, timeout=900, check=True)
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("|")}
    header = [cell.strip() for cell in rows["seed"].split("|")[1:-1]]
    worst = dict(zip(header, (cell.strip() for cell in rows["worst"].split("|")[1:-1])))
    assert {"0", "mean", "worst"} <= set(rows)
    assert float(worst["F1avg worst"]) > 0.9  # chance is 0.33; the full benchmark's are in docs/generated
    written = page.read_text()
    assert written.startswith("<!-- written by `python scripts/benchmark.py --seeds 0 --draws 1 ")
    assert rows["worst"] in written and re.search(r"printed, on commit \w+.*, \d+ threads, PyTorch", written)
    images, labels = read_course_file(COURSE_FILE)
    train, held_out = split_course_file(labels)
    mean_image = images[train].mean(axis=0) / 255  # what a model that ignores its input would best give
    ignoring = reconstruction_scores(images[held_out], np.repeat(mean_image[None], len(held_out), axis=0))
    assert float(worst["1-MSE"]) > ignoring["1-MSE"] + 0.01 and float(worst["SSIM"]) > ignoring["SSIM"] + 0.2


def test_each_split_holds_out_a_fifth_of_every_digit_and_another_split_other_images():
    labels = np.repeat([1, 4, 8], [50, 30, 20])
    splits = [split_course_file(labels), split_course_file(labels, seed=SPLIT_SEED), split_course_file(labels, seed=1)]
    for train, held_out in splits:
        assert sorted(np.concatenate([train, held_out])) == list(range(len(labels)))
        assert [np.sum(labels[held_out] == digit) for digit in (1, 4, 8)] == [10, 6, 4]
    assert (splits[0][1] == splits[1][1]).all()
    assert set(splits[0][1]) != set(splits[2][1])


def pair(f1: float, ssim: float, seconds: float) -> dict[str, float]:
    """One (seed, draw) pair's scores and costs, as run_pair returns them."""
    return {"F1avg": f1, "1-MSE": 0.97, "SSIM": ssim, "train s": seconds, "recon s": 1.0, "classify s": 1.0,
            "peak MB": 500.0}


def test_summaries_take_each_seeds_draws_then_the_mean_and_the_worst_seed_by_each_columns_own_sense():
    summaries = seed_summaries({0: [pair(0.99, 0.72, 60), pair(0.98, 0.74, 80)], 3: [pair(0.995, 0.70, 90)]})
    assert list(summaries) == ["0", "3", "mean", "worst"]
    assert all(list(summary) == list(COLUMNS) for summary in summaries.values())
    assert summaries["0"]["F1avg mean"] == pytest.approx(0.985) and summaries["0"]["F1avg worst"] == 0.98
    assert summaries["0"]["SSIM"] == pytest.approx(0.73) and summaries["0"]["train s"] == 70
    assert summaries["mean"]["F1avg mean"] == pytest.approx(0.99) and summaries["mean"]["train s"] == 80
    worst = summaries["worst"]
    assert (worst["F1avg mean"], worst["F1avg worst"], worst["SSIM"], worst["train s"]) == (0.985, 0.98, 0.70, 90)


@pytest.mark.slow
def test_a_draw_that_shares_its_seeds_training_gets_the_gmm_train_would_fit_for_it(demo, tmp_path):
    """The benchmark trains once per seed: for another validation draw it writes the GMM file that train would, on
    the same vae.pth, and test_classifier gives what it gives after train itself, byte for byte."""
    files = tmp_path / "files"
    files.mkdir()
    np.savez(files / "train.npz", data=images_of(demo["train"])[:300])
    images, labels = images_of(demo["test"]), labels_of(demo["test"])
    for draw in (0, 1):
        chosen = np.concatenate([np.flatnonzero(labels == digit)[5 * draw:5 * draw + 5] for digit in (1, 4, 8)])
        np.savez(files / f"val{draw}.npz", data=images[chosen], labels=labels[chosen])
    short = short_training("--epochs", "2", "--refine-rounds", "1", "--restarts", "0", restarts=None)
    for name, draw in (("shared", 0), ("trained", 1)):
        folder = tmp_path / name
        folder.mkdir()
        run_checked(files / "train.npz", files / f"val{draw}.npz", "train", "vae.pth", "gmm_params.pkl", *short,
                    cwd=folder)
    assert gmm_for_another_draw(tmp_path / "shared", files, 1)
    for name in ("shared", "trained"):
        run_checked(demo["test"], "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path / name)
    shared, trained = (tmp_path / name for name in ("shared", "trained"))
    assert (shared / "gmm_params.pkl").read_bytes() == (trained / "gmm_params.pkl").read_bytes()
    assert (shared / "vae.csv").read_bytes() == (trained / "vae.csv").read_bytes()
