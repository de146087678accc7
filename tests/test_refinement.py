"""Self-training: the pull toward the fitted GMM, against naive references, and what it does to a model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import images_of, labels_of

import vae


def random_gmm(rng: np.random.Generator, k: int = 3, d: int = 2) -> dict:
    factors = rng.normal(size=(k, d, d))
    return {"weights": rng.dirichlet(np.ones(k)), "means": rng.normal(scale=3, size=(k, d)),
            "covariances": factors @ factors.transpose(0, 2, 1) + 0.1 * np.eye(d)}


def test_log_responsibilities_are_the_numpy_gmm_posterior():
    rng = np.random.default_rng(0)
    gmm, points = random_gmm(rng), rng.normal(scale=4, size=(50, 2))
    log_joint = vae.gmm_log_joint(points, gmm["weights"], gmm["means"], gmm["covariances"])
    expected = log_joint - vae.logsumexp(log_joint, axis=1)[:, None]
    ours = vae.gmm_log_responsibilities(torch.from_numpy(points), gmm).numpy()
    assert np.allclose(ours, expected, atol=1e-8)


def test_sharpened_divergence_matches_a_naive_loop():
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(3), size=20)
    frequencies = q.sum(axis=0)
    expected = 0.0
    for row in q:
        target = row**2 / frequencies
        target /= target.sum()
        expected += sum(p * np.log(p / r) for p, r in zip(target, row)) / len(q)
    assert vae.sharpened_divergence(torch.from_numpy(np.log(q))).item() == pytest.approx(expected, rel=1e-10)


def test_the_divergence_is_zero_only_for_confident_codes():
    confident = torch.log(torch.tensor([[1.0, 1e-12, 1e-12], [1e-12, 1.0, 1e-12]]))
    unsure = torch.log(torch.tensor([[0.4, 0.3, 0.3], [0.3, 0.4, 0.3]]))
    assert vae.sharpened_divergence(confident).item() == pytest.approx(0, abs=1e-9)
    assert vae.sharpened_divergence(unsure).item() > 0.001


def test_refinement_brings_the_codes_to_the_sharpened_target(demo):
    pixels = images_of(demo["train"]).astype(np.float32) / 255
    validation = images_of(demo["val"]).astype(np.float32) / 255
    config = vae.TrainConfig(epochs=5, refine_steps=100)
    model, _ = vae.train_vae(pixels, config, log=lambda *_: None)
    gmm = vae.fit_digit_gmm(vae.encode_means(model, pixels), vae.encode_means(model, validation),
                            labels_of(demo["val"]))

    def divergence(candidate: vae.VAE) -> float:
        codes = torch.from_numpy(vae.encode_means(candidate, pixels))
        return vae.sharpened_divergence(vae.gmm_log_responsibilities(codes, gmm)).item()

    def refined(weight: float) -> tuple[vae.VAE, list[dict]]:
        candidate = copy.deepcopy(model)
        torch.manual_seed(1)
        history = vae.refine_toward_gmm(candidate, pixels, gmm, vae.dataclasses.replace(config, refine_weight=weight),
                                        log=lambda *_: None)
        return candidate, history

    pulled, history = refined(config.refine_weight)
    trained_on, _ = refined(1e-12)  # the same steps with no pull
    assert [entry["stage"] for entry in history] == ["refine"] * 10  # 100 steps of 10 batches
    assert divergence(pulled) < 0.8 * divergence(trained_on)


def test_without_refinement_the_classifier_is_the_vae_and_its_gmm(demo):
    pixels = images_of(demo["val"]).astype(np.float32) / 255
    config = vae.TrainConfig(epochs=2, refine_steps=0)
    model, gmm, history = vae.fit_classifier(pixels, pixels, labels_of(demo["val"]), config, log=lambda *_: None)
    alone, _ = vae.train_vae(pixels, config, log=lambda *_: None)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), alone.state_dict().values()))
    assert [entry["stage"] for entry in history] == ["epoch", "epoch"]


def test_a_component_that_holds_no_code_leaves_the_pull_finite():
    log_q = torch.log_softmax(torch.tensor([[0.0, -1.0, -200.0], [-1.0, 0.0, -200.0]]), dim=1)  # float32: q3 is 0
    assert log_q.exp()[:, 2].sum() == 0
    assert torch.isfinite(vae.sharpened_divergence(log_q))
