"""The CUDA path, as far as a CPU can prove it. Each stage's batch loss runs once with the images, the model and the
GMM on PyTorch's shape-only meta device, where any CPU tensor meeting them raises, as it would on a GPU: a device
mix-up fails here. What a CPU cannot show (the GPU's kernels, its trajectory) is scripts/gpu_check.sh's."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import vae
from conftest import ROOT, short_config

META = torch.device("meta")


class OneBatchRan(Exception):
    """One batch's loss and gradients were computed on the meta device."""


def one_batch(stage, batch_loss, parameters, data, **_) -> None:
    """In place of run_epochs: one batch's loss and its gradients, then a stop, before anything is copied out."""
    batch_loss(torch.arange(4, device=data.device))["loss"].backward()
    raise OneBatchRan(stage)


@pytest.fixture
def on_meta(monkeypatch) -> tuple[vae.VAE, torch.Tensor]:
    """A model and images on the meta device, and run_epochs that stops after one batch."""
    monkeypatch.setattr(vae, "run_epochs", one_batch)
    return vae.VAE().to(META), torch.empty(16, 28, 28, device=META)


def test_the_vae_stage_keeps_to_the_device_of_its_images(on_meta):
    _, data = on_meta
    with pytest.raises(OneBatchRan, match="vae"):
        vae.train_vae(data, short_config())


def test_the_refinement_keeps_to_the_device_of_its_images(on_meta):
    """Its targets come from the CPU, and the GMM from NumPy."""
    model, data = on_meta
    gmm = vae.GMM(np.full(3, 1 / 3), np.zeros((3, 2)), np.repeat(np.eye(2)[None], 3, axis=0), np.array([1, 4, 8]))
    targets = np.zeros(len(data), dtype=np.int64)
    with pytest.raises(OneBatchRan, match="refine"):
        vae.refine_toward_gmm(model, data, targets, gmm, short_config())


def test_the_decoder_stage_keeps_to_the_device_of_its_images(on_meta):
    """Its SSIM builds its windows' band matrix where the images are."""
    model, data = on_meta
    with pytest.raises(OneBatchRan, match="decoder"):
        vae.train_decoder(model, data, short_config())


def test_cuda_asked_for_where_there_is_none_is_refused_in_one_line(demo, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli(demo["train"], demo["val"], "train", "vae.pth", "gmm.pkl", "--device", "cuda", expect=2)
    assert result.stderr.strip() == ("vae.py: error: --device cuda: PyTorch finds no CUDA GPU here; leave --device "
                                     "out to train on the CPU")
    assert list(tmp_path.iterdir()) == []


def test_a_gpu_that_cannot_run_this_pytorch_is_refused_in_one_line(demo, tmp_path, cli, monkeypatch):
    """A card too old for the build, or another process's: the first operation raises, before any reading."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def ones(*_, device=None, **__):
        if device == "cuda":
            raise RuntimeError("CUDA error: no kernel image is available for execution on the device\nmore")
        return torch.empty(0)

    monkeypatch.setattr(torch, "ones", ones)
    result = cli(demo["train"], demo["val"], "train", "vae.pth", "gmm.pkl", "--device", "cuda", expect=2)
    assert result.stderr.strip() == ("vae.py: error: --device cuda: this GPU cannot run this PyTorch (CUDA error: no "
                                     "kernel image is available for execution on the device); leave --device out to "
                                     "train on the CPU")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_trained_model_is_saved_from_the_cpu_and_loads_the_course_way_with_its_fingerprint(trained):
    """torch.load with no map_location, as the course loads it: a file saved from CUDA tensors would fail on a
    machine without a GPU. The GMM file's fingerprint is of the weights as the CPU holds them."""
    state = torch.load(trained / "vae.pth")
    assert {tensor.device.type for tensor in state.values()} == {"cpu"}
    vae.load_gmm(str(trained / "gmm_params.pkl"), vae.state_fingerprint(state))


@pytest.mark.slow
def test_the_gpu_check_runs_its_steps_on_a_cpu(demo, tmp_path):
    """scripts/gpu_check.sh has had no GPU to run on: with DEVICE=cpu and a short training it runs every step here, so
    the day a GPU is lent, only the GPU can fail."""
    for name in ("train", "val", "recon", "test"):
        with np.load(demo[name]) as archive:
            count = 300 if name == "train" else len(archive["data"])
            np.savez(tmp_path / f"{name}.npz", data=archive["data"][:count], labels=archive["labels"][:count])
    environment = {**os.environ, "DEVICE": "cpu", "PYTHON": sys.executable,
                   "FLAGS": "--epochs 2 --refine-epochs 2 --decoder-epochs 1"}
    result = subprocess.run([ROOT / "scripts" / "gpu_check.sh", tmp_path], capture_output=True, text=True,
                            env=environment, timeout=600)
    assert result.returncode == 0, result.stderr
    said = result.stdout.splitlines()
    assert "strict training: passed" in said and "vae.pth: identical" in said and "gmm_params.pkl: identical" in said
    scores = [line for line in said if line.startswith("F1avg ")]
    assert len(scores) == 2 and scores[0] == scores[1]  # the same device twice here: the same model
