"""The grader's three commands, end to end through a subprocess with its exact argv."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from conftest import images_of, labels_of, run_vae

import vae


def test_train_saves_a_plain_state_dict_and_a_plain_gmm(trained):
    state = torch.load(trained / "vae.pth", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(t, torch.Tensor) for t in state.values())
    model = vae.VAE()
    model.load_state_dict(state)  # the course's own way of loading it
    gmm = vae.load_gmm(trained / "gmm_params.pkl", model, vae.state_fingerprint(state))
    assert gmm["digits"].tolist() == [1, 4, 8]
    assert gmm["means"].shape == (3, 2) and gmm["covariances"].shape == (3, 2, 2)
    assert np.isclose(gmm["weights"].sum(), 1)
    assert all(isinstance(v, (np.ndarray, int, float, str, bool, np.generic)) for v in gmm.values())


def test_train_prints_parameter_count_and_epochs(demo, tmp_path):
    result = run_vae(demo["val"], demo["val"], "train", "vae.pth", "gmm.pkl", "--epochs", "2", cwd=tmp_path)
    assert f"VAE parameters: {vae.count_parameters(vae.VAE()):,}" in result.stdout
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch")]
    assert len(epoch_lines) == 2 and all("kl" in line and line.endswith(" s") for line in epoch_lines)


def test_test_reconstruction_writes_the_contract(demo, trained, tmp_path):
    shutil.copy(trained / "vae.pth", tmp_path)
    run_vae(demo["recon"], "test_reconstruction", "vae.pth", cwd=tmp_path)
    with np.load(tmp_path / "vae_reconstructed.npz") as archive:
        assert set(archive.files) == {"data", "arr_0"}
        data = archive["data"]
        assert np.array_equal(data, archive["arr_0"])
    originals = images_of(demo["recon"])
    assert data.dtype == np.float32 and data.shape == originals.shape
    assert data.min() >= 0 and data.max() <= 1
    assert np.mean((data - originals / 255.0) ** 2) < 0.06  # it reconstructs, not just fills the shape


def test_test_classifier_writes_the_contract(demo, trained, tmp_path):
    for name in ("vae.pth", "gmm_params.pkl"):
        shutil.copy(trained / name, tmp_path)
    run_vae(demo["test"], "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path)
    lines = (tmp_path / "vae.csv").read_text().splitlines()
    assert lines[0] == "Predicted_Label"
    predictions = np.array([int(line) for line in lines[1:]])
    truth = labels_of(demo["test"])
    assert len(predictions) == len(truth) and set(predictions) <= {1, 4, 8}
    assert np.mean(predictions == truth) > 0.8


def test_predictions_follow_input_order_and_ignore_labels(demo, trained, tmp_path):
    for name in ("vae.pth", "gmm_params.pkl"):
        shutil.copy(trained / name, tmp_path)
    images = images_of(demo["test"])[:60]
    order = np.random.default_rng(0).permutation(len(images))
    np.savez(tmp_path / "plain.npz", data=images)
    np.savez(tmp_path / "shuffled.npz", data=images[order], labels=np.full(len(images), 7))

    def predict(name):
        run_vae(name, "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path)
        return np.loadtxt(tmp_path / "vae.csv", skiprows=1, dtype=int)

    assert np.array_equal(predict("shuffled.npz"), predict("plain.npz")[order])


def test_vae_class_builds_with_no_arguments_and_loads_nondefault_sizes(demo, tmp_path):
    run_vae(demo["val"], demo["val"], "train", "vae.pth", "gmm.pkl",
            "--epochs", "1", "--hidden", "64,32", "--latent-dim", "3", cwd=tmp_path)
    model, _ = vae.load_model(tmp_path / "vae.pth")
    assert (model.input_dim, model.latent_dim) == (784, 3)
    assert [layer.out_features for layer in model.encoder if hasattr(layer, "out_features")] == [64, 32]
    run_vae(demo["recon"], "test_reconstruction", "vae.pth", cwd=tmp_path)
    run_vae(demo["recon"], "test_classifier", "vae.pth", "gmm.pkl", cwd=tmp_path)


def test_help_explains_the_three_modes(tmp_path):
    result = run_vae("--help", cwd=tmp_path)
    for mode in ("train", "test_reconstruction", "test_classifier"):
        assert mode in result.stdout
