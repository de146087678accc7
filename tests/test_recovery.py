"""The checks against the labelled images after every GMM fit, and the recovery from a merge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vae
from conftest import labels_of, pixels_of, read_predictions, short_config

DIGITS = np.array([1, 4, 8])
CENTRES = np.array([[-5.0, 0.0], [0.0, 0.0], [5.0, 0.0]])


def clusters(centres: np.ndarray, per_cluster: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points around each centre, and the digit of each; the first 5 of each digit are its labelled ones."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(centre, 0.7, (per_cluster, 2)) for centre in centres])
    return points, np.repeat(DIGITS, per_cluster)


def labelled(points: np.ndarray, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    chosen = np.concatenate([np.flatnonzero(digits == digit)[:5] for digit in DIGITS])
    return points[chosen], digits[chosen]


def test_the_check_names_the_labelled_images_a_merged_mixture_gives_another_digit():
    """A mixture whose "4" component spreads over the 8s too, and whose "8" component sits far off."""
    points, digits = clusters(CENTRES, 200)
    val_codes, val_labels = labelled(points, digits)
    merged = vae.GMM(weights=np.array([0.33, 0.66, 0.01]), means=np.array([[-5.0, 0.0], [2.5, 0.0], [20.0, 20.0]]),
                     covariances=np.array([np.eye(2) * 0.5, np.diag([6.0, 0.5]), np.eye(2) * 0.1]), digits=DIGITS)
    check = vae.LabelledCheck.of(merged, val_codes, val_labels)
    assert check.wrong == [10, 11, 12, 13, 14] and check.merged == [8]
    assert check.summary() == "10 of 15 right; the codes merge digit 8 into another"
    sound = vae.LabelledCheck.of(vae.fit_digit_gmm(points, val_codes, val_labels), val_codes, val_labels)
    assert sound == (15, [], []) and sound.summary() == "15 of 15 right"


def test_one_odd_labelled_image_is_not_a_merge():
    """A minority of a digit's labelled images in another digit's component is odd images: no new training."""
    points, digits = clusters(CENTRES, 200)
    val_codes, val_labels = labelled(points, digits)
    val_codes[0] = CENTRES[1]  # a "1" drawn like a 4
    check = vae.LabelledCheck.of(vae.fit_digit_gmm(points, val_codes, val_labels), val_codes, val_labels)
    assert check.wrong == [0] and check.merged == []
    assert check.summary() == "14 of 15 right; odd images, no digit merged"


# a short training, with no refinement, whose codes put most labelled 4s with another digit at seed 4, but not at
# seed 1004
MERGING = ["--epochs", "2", "--refine-rounds", "0", "--decoder-epochs", "0", "--seed", "4"]


def test_a_training_whose_codes_merge_starts_again_from_a_derived_seed_and_says_so(demo, tmp_path, cli):
    result = cli(demo["train"], demo["val"], "train", "vae.pth", "gmm_params.pkl", *MERGING)
    said = result.stdout.splitlines()
    merge = next(line for line in said if line.startswith("labelled images: "))
    assert " of 15 right; the codes merge digit 4 into another; " in merge
    assert said[said.index(merge) + 1] == "restart 1 of 2: training again from seed 1004"
    trainings = json.loads((tmp_path / "vae_history.json").read_text())["trainings"]
    assert [training["seed"] for training in trainings] == [4, 1004]
    assert trainings[0]["merged"] == [4] and trainings[-1]["merged"] == []
    cli(demo["val"], "test_classifier", "vae.pth", "gmm_params.pkl")
    wrong = np.flatnonzero(read_predictions(tmp_path) != labels_of(demo["val"])).tolist()
    assert wrong == trainings[-1]["wrong"] and len(wrong) < len(trainings[0]["wrong"])


def test_without_restarts_the_merge_is_kept_and_named_in_a_closing_warning(demo, tmp_path, cli):
    result = cli(demo["train"], demo["val"], "train", "vae.pth", "gmm_params.pkl", *MERGING, "--restarts", "0")
    trainings = json.loads((tmp_path / "vae_history.json").read_text())["trainings"]
    wrong = ", ".join(map(str, trainings[-1]["wrong"]))
    assert len(trainings) == 1 and trainings[0]["merged"] == [4] and wrong
    summary = f"{15 - len(trainings[0]['wrong'])} of 15 right; the codes merge digit 4 into another"
    assert f"labelled images: {summary}; " in result.stdout
    assert "restart" not in result.stdout
    assert result.stderr.strip() == (f"vae.py: warning: after 1 training(s) the GMM gives labelled images {wrong} of "
                                     f"{demo['val']} another digit ({summary}); the files are written")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gmm_params.pkl", "vae.pth", "vae_history.json"]


@pytest.mark.parametrize("epochs, seed", [(3, 0), (1, 5)])  # two trainings whose labelled images merge no digit
def test_a_training_with_nothing_to_recover_is_the_training_of_before(epochs, seed, demo):
    """The check only reads: a training whose labelled images show no merge is one training, the same weights as
    train_vae's alone."""
    pixels = pixels_of(demo["train"])
    config = short_config(epochs=epochs, refine_rounds=0, decoder_epochs=0, seed=seed, restarts=2)
    fit = vae.fit_classifier(pixels, pixels_of(demo["val"]), labels_of(demo["val"]), config)
    alone, _ = vae.train_vae(torch.from_numpy(pixels), config)
    assert [training["merged"] for training in fit.trainings] == [[]]
    assert all(np.array_equal(a, b) for a, b in zip(fit.model.state_dict().values(), alone.state_dict().values()))
