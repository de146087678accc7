"""The shipped model in models/: loads the course's way, and `make model` reproduces it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, read_predictions, run_vae

import vae

MODELS = ROOT / "models"
COURSE_FILE = ROOT.parent / "shared" / "data" / "mnist_1_4_8_train.npz"
SHIPPED_TORCH = json.loads((MODELS / "vae_history.json").read_text()).get("torch")


def test_vae_class_loads_the_shipped_weights():
    model = vae.VAE()
    model.load_state_dict(torch.load(MODELS / "vae.pth"))
    assert vae.count_parameters(model) < 10_000_000
    state = torch.load(MODELS / "vae.pth", weights_only=True)
    gmm = vae.load_gmm(MODELS / "gmm_params.pkl", model, vae.state_fingerprint(state))
    assert sorted(gmm["digits"]) == [1, 4, 8]


@pytest.mark.skipif(not COURSE_FILE.is_file(), reason="needs the course file in ../shared/data")
@pytest.mark.skipif(torch.__version__ != SHIPPED_TORCH,
                    reason=f"training is reproducible within one torch release; the shipped model is {SHIPPED_TORCH}'s")
def test_make_model_reproduces_the_shipped_predictions(demo, tmp_path):
    """The recipe of `make model`, into a scratch folder: the same predictions as the shipped files."""
    subprocess.run([sys.executable, ROOT / "scripts" / "draw_validation.py", COURSE_FILE, tmp_path / "val.npz"],
                   check=True, capture_output=True)
    run_vae(COURSE_FILE, tmp_path / "val.npz", "train", "vae.pth", "gmm_params.pkl", "--quiet", cwd=tmp_path)
    answers = []
    for folder in (MODELS, tmp_path):
        run_vae(demo["test"], "test_classifier", folder / "vae.pth", folder / "gmm_params.pkl", cwd=tmp_path)
        answers.append(read_predictions(tmp_path))
    assert np.array_equal(answers[0], answers[1])
