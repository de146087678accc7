"""The measuring tools of scripts/limits.py, on data whose answers are known."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import vae
from conftest import labels_of, pixels_of, short_config
from limits import NEIGHBOURS, blurred, graph_vote_accuracy, knn_predict, supervised_code_f1, traced_fit


def test_knn_votes_with_the_nearest_training_points():
    rng = np.random.default_rng(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    labels = torch.tensor([1, 4, 8]).repeat_interleave(NEIGHBOURS + 5)
    noise = torch.from_numpy(rng.normal(size=(len(labels), 2))).float()
    points = centres.repeat_interleave(NEIGHBOURS + 5, dim=0) + noise
    queries = torch.tensor([[0.5, -0.5], [9.0, 1.0], [1.0, 9.0], [6.0, 0.5]])
    assert knn_predict(points, labels, queries).tolist() == [1, 4, 8, 4]


def test_blur_keeps_the_ink_and_spreads_it():
    image = np.zeros((1, 28, 28), dtype=np.float32)
    image[0, 14, 14] = 1.0
    result = blurred(image).reshape(28, 28)
    assert abs(result.sum().item() - 1.0) < 1e-5
    assert 0 < result[14, 15] < result[14, 14] < 1
    assert result[14, 15] == result[15, 14]


def test_the_graph_vote_counts_images_whose_neighbours_outvote_their_label():
    rng = np.random.default_rng(1)
    shapes = np.zeros((3, 12, 12), np.float32)
    shapes[0, 2:10, 5:7] = 1  # a bar standing up
    shapes[1, 5:7, 2:10] = 1  # a bar lying down
    shapes[2, 2:10, 2:10] = 1
    shapes[2, 4:8, 4:8] = 0  # a ring
    noise = 0.05 * rng.random((41, 12, 12)).astype(np.float32)
    pixels = shapes[np.repeat([0, 1, 2], [20, 20, 1])] + noise
    labels = torch.tensor([1] * 20 + [4] * 20 + [8])
    assert graph_vote_accuracy(pixels[:40], labels[:40], k=3) == 1.0
    assert graph_vote_accuracy(pixels, labels, k=1) == 40 / 41  # the lone ring's nearest other image is a bar


def test_a_code_trained_on_every_label_separates_what_the_labels_separate():
    """Three clusters in the plane, coded by a linear map: right labels give a perfect Gaussian classifier,
    labels drawn at random give a chance one."""
    rng = np.random.default_rng(2)
    digits = np.repeat([1, 4, 8], 100)
    points = (np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])[np.searchsorted([1, 4, 8], digits)]
              + rng.normal(size=(300, 2))).astype(np.float32)
    torch.manual_seed(0)
    assert supervised_code_f1(nn.Linear(2, 2), points[::2], digits[::2], points[1::2], digits[1::2]) > 0.97
    shuffled = rng.permutation(digits)
    assert supervised_code_f1(nn.Linear(2, 2), points[::2], shuffled[::2], points[1::2], shuffled[1::2]) < 0.6


def test_the_traced_fit_is_the_method_itself_with_a_row_per_refinement_round(demo):
    """The same weights and GMM as vae.fit_classifier's, so the gaps it reports are those of the real recipe."""
    pixels, val_pixels, val_labels = pixels_of(demo["train"])[:600], pixels_of(demo["val"]), labels_of(demo["val"])
    config = short_config(epochs=2, refine_rounds=2, refine_epochs=1)
    fit, rounds = traced_fit(pixels, val_pixels, val_labels, config, labels_of(demo["train"])[:600])
    alone = vae.fit_classifier(pixels, val_pixels, val_labels, config)
    assert all(torch.equal(a, b) for a, b in zip(fit.model.state_dict().values(), alone.model.state_dict().values()))
    assert np.array_equal(fit.gmm.means, alone.gmm.means)
    assert len(rounds) == 2 and all(0 <= fraction <= 1 for row in rounds for fraction in row)


def test_the_strong_baseline_trains_on_jittered_views_and_separates_the_shapes():
    rng = np.random.default_rng(3)
    shapes = np.zeros((3, 12, 12), np.float32)
    shapes[0, 2:10, 5:7] = 1
    shapes[1, 5:7, 2:10] = 1
    shapes[2, 2:10, 2:10] = 1
    shapes[2, 4:8, 4:8] = 0
    digits = np.repeat([1, 4, 8], 60)
    pixels = shapes[np.searchsorted([1, 4, 8], digits)] + 0.05 * rng.random((180, 12, 12)).astype(np.float32)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(144, 32), nn.ELU(), nn.Linear(32, 2))
    f1 = supervised_code_f1(encoder, pixels[::2], digits[::2], pixels[1::2], digits[1::2], epochs=20, lr=1e-2,
                            jitter=1.0)
    assert f1 > 0.95
