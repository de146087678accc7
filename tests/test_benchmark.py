"""scripts/benchmark.py --quick runs the grader's commands end to end and prints its table."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from benchmark import SPLIT_SEED, split_course_file
from conftest import ROOT
from draw_validation import COURSE_FILE, read_course_file
from score import reconstruction_scores


@pytest.mark.slow
@pytest.mark.skipif(not COURSE_FILE.is_file(), reason="needs the course file: data/ or COURSE_FILE")
def test_quick_benchmark_prints_a_seed_table_that_beats_ignoring_the_input():
    result = subprocess.run([sys.executable, ROOT / "scripts" / "benchmark.py", "--quick"],
                            capture_output=True, text=True, timeout=900, check=True)
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("|")}
    header = [cell.strip() for cell in rows["seed"].split("|")[1:-1]]
    worst = dict(zip(header, (cell.strip() for cell in rows["worst"].split("|")[1:-1])))
    assert {"0", "mean", "worst"} <= set(rows)
    assert float(worst["F1avg worst"]) > 0.9  # chance is 0.33; the full benchmark's numbers are in docs/results.md
    images, labels = read_course_file(COURSE_FILE)
    train, held_out = split_course_file(labels)
    mean_image = images[train].mean(axis=0) / 255  # what a model that ignores its input would best give
    ignoring = reconstruction_scores(images[held_out], np.repeat(mean_image[None], len(held_out), axis=0))
    assert float(worst["1-MSE"]) > ignoring["1-MSE"] + 0.02 and float(worst["SSIM"]) > ignoring["SSIM"] + 0.2


def test_each_split_holds_out_a_fifth_of_every_digit_and_another_split_other_images():
    labels = np.repeat([1, 4, 8], [50, 30, 20])
    splits = [split_course_file(labels), split_course_file(labels, seed=SPLIT_SEED), split_course_file(labels, seed=1)]
    for train, held_out in splits:
        assert sorted(np.concatenate([train, held_out])) == list(range(len(labels)))
        assert [np.sum(labels[held_out] == digit) for digit in (1, 4, 8)] == [10, 6, 4]
    assert (splits[0][1] == splits[1][1]).all()
    assert set(splits[0][1]) != set(splits[2][1])
