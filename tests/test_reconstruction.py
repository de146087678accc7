"""The last stage, the decoder alone for reconstruction: our differentiable SSIM is the course's, training on it
sharpens the reconstructions, and the classifier stays as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import vae
from conftest import SHIPPED, labels_of, pixels_of, short_config


def skimage_ssim(originals: np.ndarray, reconstructed: np.ndarray) -> np.ndarray:
    """What the course scores: skimage's SSIM with data_range 1, image by image."""
    return np.array([structural_similarity(a, b, data_range=1.0) for a, b in zip(originals, reconstructed)])


def test_ssim_is_skimages_on_real_images_and_their_reconstructions(demo):
    model, _ = vae.load_model(SHIPPED / "vae.pth")
    originals = pixels_of(demo["test"])[:100].astype(np.float64)
    reconstructed = vae.reconstruct(model, originals.astype(np.float32)).astype(np.float64)
    ours = vae.ssim(torch.from_numpy(originals), torch.from_numpy(reconstructed)).numpy()
    assert np.abs(ours - skimage_ssim(originals, reconstructed)).max() < 1e-6
    same = vae.ssim(torch.from_numpy(originals), torch.from_numpy(originals)).numpy()
    assert np.allclose(same, 1)


def test_ssim_is_skimages_on_oblong_images_and_in_float32():
    rng = np.random.default_rng(0)
    x, y = rng.random((2, 6, 11, 30)) ** 3
    expected = skimage_ssim(x, y)
    assert np.abs(vae.ssim(torch.from_numpy(x), torch.from_numpy(y)).numpy() - expected).max() < 1e-6
    single = vae.ssim(torch.from_numpy(x).float(), torch.from_numpy(y).float()).numpy()
    assert np.abs(single - expected).max() < 1e-5


def test_the_ssim_term_trains_reconstructions_toward_a_higher_ssim(demo):
    """The same steps from the same model with the SSIM term on and off: on, the SSIM is higher."""
    pixels = pixels_of(demo["train"])[:512]
    scores = {}
    for weight in (0.0, 2.0):
        model, _ = vae.train_vae(torch.from_numpy(pixels), short_config(epochs=3))
        config = vae.TrainConfig(decoder_epochs=15, ssim_weight=weight)
        history = vae.train_decoder(model, torch.from_numpy(pixels), config)
        assert ("ssim" in history[-1]) == (weight > 0)
        scores[weight] = skimage_ssim(pixels, vae.reconstruct(model, pixels)).mean()
    assert scores[2.0] > scores[0.0] + 0.02


def test_images_too_small_for_an_ssim_window_train_on_the_cross_entropy_alone():
    pixels = np.random.default_rng(0).random((64, 6, 6)).astype(np.float32)
    model = vae.VAE(36, (16,), 2)
    history = vae.train_decoder(model, torch.from_numpy(pixels), vae.TrainConfig(decoder_epochs=2))
    assert [entry["stage"] for entry in history] == ["decoder", "decoder"] and "ssim" not in history[-1]


@pytest.mark.slow
def test_the_decoder_trained_last_sharpens_reconstructions_and_leaves_the_classifier_as_it_was(demo):
    pixels = pixels_of(demo["train"])
    validation, labels = pixels_of(demo["val"]), labels_of(demo["val"])
    config = short_config(epochs=5, refine_epochs=2, decoder_epochs=20)
    before, gmm_before, history_before, _ = vae.fit_classifier(
        pixels, validation, labels, vae.dataclasses.replace(config, decoder_epochs=0))
    after, gmm_after, history, _ = vae.fit_classifier(pixels, validation, labels, config)
    stages_before = [entry["stage"] for entry in history_before]
    assert [entry["stage"] for entry in history] == stages_before + ["decoder"] * config.decoder_epochs
    for name, weights in before.state_dict().items():  # the encoder as it was, the decoder changed
        assert torch.equal(weights, after.state_dict()[name]) != name.startswith("decoder.")
    for field in ("weights", "means", "covariances", "digits"):
        assert np.array_equal(getattr(gmm_before, field), getattr(gmm_after, field)), field
    held_out = pixels_of(demo["test"])
    ssim_before, ssim_after = (skimage_ssim(held_out, vae.reconstruct(model, held_out)).mean()
                               for model in (before, after))
    assert ssim_after > ssim_before + 0.02
