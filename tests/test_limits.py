"""The measuring tools of scripts/limits.py, on data whose answers are known."""

from __future__ import annotations

import numpy as np
import torch
from limits import NEIGHBOURS, blurred, knn_predict


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
