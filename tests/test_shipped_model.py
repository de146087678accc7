"""The shipped model in models/: loads the course's way, and `make model` reproduces it."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import vae
from conftest import ROOT, SHIPPED, read_predictions, run_checked
from course_data import COURSE_FILE

SHIPPED_HISTORY = json.loads((SHIPPED / "vae_history.json").read_text())
MADE_HERE = {key: SHIPPED_HISTORY.get(key) for key in ("torch", "processor", "threads")}
HERE = {"torch": torch.__version__, "processor": vae.processor(), "threads": torch.get_num_threads()}


@pytest.mark.environment
def test_the_shipped_gmm_belongs_to_the_shipped_weights_loaded_the_course_way():
    model = vae.VAE()
    model.load_state_dict(torch.load(SHIPPED / "vae.pth"))
    gmm = vae.load_gmm(SHIPPED / "gmm_params.pkl", vae.state_fingerprint(model.state_dict()))
    assert sorted(gmm.digits) == [1, 4, 8]


@pytest.mark.slow
@pytest.mark.skipif(not COURSE_FILE.is_file(), reason="needs the course file: data/ or COURSE_FILE")
@pytest.mark.skipif(HERE != MADE_HERE, reason=f"training is reproducible within one torch release, processor and "
                    f"thread count; the shipped model's are {MADE_HERE}, these {HERE}")
def test_make_model_reproduces_the_shipped_files(demo, tmp_path):
    """The recipe of `make model`, into a scratch folder: the shipped vae.pth byte for byte, and the same GMM
    but for the last digits of its floats."""
    subprocess.run([sys.executable, ROOT / "scripts" / "course_data.py", COURSE_FILE, tmp_path / "val.npz"],
                   check=True, capture_output=True)
    run_checked(COURSE_FILE, tmp_path / "val.npz", "train", "vae.pth", "gmm_params.pkl", "--quiet", cwd=tmp_path)
    assert (tmp_path / "vae.pth").read_bytes() == (SHIPPED / "vae.pth").read_bytes()
    made, shipped = (pickle.loads((folder / "gmm_params.pkl").read_bytes()) for folder in (tmp_path, SHIPPED))
    assert list(made) == list(shipped)
    for key, value in shipped.items():
        if key == "fingerprint":  # a hash of the floats below, so of their last digits too
            continue
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            # NumPy's BLAS kernel, chosen per processor, may round EM's sums differently in the last digits
            assert made[key].dtype == value.dtype and np.allclose(made[key], value, rtol=1e-12, atol=0), key
        else:
            assert np.array_equal(made[key], value) if isinstance(value, np.ndarray) else made[key] == value, key
    answers = []
    for folder in (SHIPPED, tmp_path):
        run_checked(demo["test"], "test_classifier", folder / "vae.pth", folder / "gmm_params.pkl", cwd=tmp_path)
        answers.append(read_predictions(tmp_path))
    assert np.array_equal(answers[0], answers[1])
