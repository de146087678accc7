"""make submission: it refuses what the course would refuse, and zips only what ran as the grader runs it, the
model files to upload included."""

from __future__ import annotations

import hashlib
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import grader
from conftest import ROOT, SHIPPED, VAE_PY, copy_model, run_checked, run_here, run_vae_here, short_training

SUBMISSION = ROOT / "scripts" / "submission.py"
GOOD = {"group.txt": "2020CSZ1234\n2020CSZ5678\n", "model_path.txt": "https://drive.example.org/folder/abc\n"}


@pytest.fixture
def candidate(tmp_path):
    """A folder holding a submittable vae.py, group.txt, model_path.txt, a PDF report, and the shipped model files
    in models/."""
    shutil.copy(VAE_PY, tmp_path)
    for name, text in GOOD.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.7\n% a report\n")
    (tmp_path / "models").mkdir()
    copy_model(SHIPPED, tmp_path / "models")
    return tmp_path


def submit(folder, *extra: str) -> subprocess.CompletedProcess:
    """Run the tool from the repository with a relative --python, as make submission does."""
    python = os.path.relpath(sys.executable, ROOT)
    return subprocess.run([sys.executable, SUBMISSION, "--root", folder, "--python", python, *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def submit_in_process(folder, monkeypatch, *extra: str) -> str:
    """The tool's main in this process, for the checks that refuse before anything runs: the message it exits
    with (which Python prints to stderr, with exit code 1)."""
    import submission

    monkeypatch.setattr(sys, "argv", ["submission.py", "--root", str(folder), *map(str, extra)])
    with pytest.raises(SystemExit) as stop:
        submission.main()
    assert isinstance(stop.value.code, str)
    return stop.value.code


@pytest.mark.parametrize("problem, fragment", [
    (("group.txt", "YOUR_ENTRY_NUMBER\n"), "group.txt: put your entry numbers"),
    (("group.txt", "2020CSZ1234, 2020CSZ5678\n"), "is not an entry number"),
    (("group.txt", ""), "group.txt: put your entry numbers"),
    (("model_path.txt", "models/vae.pth\n"), "model_path.txt: its first line must be a shareable link"),
    (("report.pdf", "not a pdf"), "not a PDF"),
    (("vae.py", "from sklearn.mixture import GaussianMixture\n"), "sklearn.mixture"),
])
def test_each_refusal_names_what_to_fix_and_writes_nothing(candidate, monkeypatch, problem, fragment):
    name, text = problem
    (candidate / name).write_text(text)
    before = sorted(path.name for path in candidate.iterdir())
    message = submit_in_process(candidate, monkeypatch, "--report", candidate / "report.pdf")
    assert message.splitlines() == [message] and fragment in message
    assert message.startswith("submission: refused:")
    assert sorted(path.name for path in candidate.iterdir()) == before


def test_no_report_is_refused(candidate, monkeypatch):
    assert "no report given: make submission REPORT=" in submit_in_process(candidate, monkeypatch)
    assert not (candidate / "submission.zip").exists()


def test_a_refusal_from_the_real_command_exits_1_in_one_line(candidate):
    result = submit(candidate)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [result.stderr.strip()]


@pytest.mark.slow
def test_a_vae_py_that_fails_as_the_grader_runs_it_is_refused(candidate):
    (candidate / "vae.py").write_text("import sys\nsys.exit('vae.py: error: broken on purpose')\n")
    result = submit(candidate, "--report", candidate / "report.pdf")
    assert result.returncode == 1 and "VAE() cannot load it" in result.stderr  # the model files' check comes first
    assert not (candidate / "submission.zip").exists()


@pytest.mark.slow
def test_a_good_candidate_is_run_then_zipped_in_the_course_layout(candidate):
    result = submit(candidate, "--report", candidate / "report.pdf")
    assert result.returncode == 0, result.stderr
    for mode in ("train", "test_reconstruction", "test_classifier"):
        assert f"{mode} " in result.stdout
    releases = f"Python {platform.python_version()}, PyTorch {torch.__version__}"
    assert f"{releases}, so the zip runs as the course's grader runs it, on these releases" in result.stdout
    with zipfile.ZipFile(candidate / "submission.zip") as archive:
        assert sorted(archive.namelist()) == [f"2020CSZ1234_2020CSZ5678/{name}" for name in (
            "2020CSZ1234_2020CSZ5678.pdf", "group.txt", "model_path.txt", "vae.py")]
        assert archive.read("2020CSZ1234_2020CSZ5678/vae.py") == VAE_PY.read_bytes()
    assert not list(candidate.glob("*.partial"))


@pytest.fixture
def pythons_here(monkeypatch):
    """The Pythons the tool starts, run in this process instead: its `python -c` scripts and the zipped vae.py,
    with the same argv, folder and outcome, in a second where each Python takes seconds to import torch. For what
    the tool makes of their outcomes; the slow tests run them as the separate Pythons they are."""
    import submission

    def run_script(command, **_) -> subprocess.CompletedProcess:
        _, option, script, *arguments = map(str, command)
        assert option == "-c", command
        code, printed, errors = run_here(lambda: exec(script, {"__name__": "__main__"}), ["-c", *arguments])
        return subprocess.CompletedProcess(command, code, printed, errors)

    monkeypatch.setattr(submission, "subprocess", types.SimpleNamespace(run=run_script))
    monkeypatch.setattr(submission, "run_vae", run_vae_here)


SCRIPTS = {"printing": "print('loaded', 12)", "exiting with a message": "import sys\nsys.exit('vae.py: error: broken')",
           "raising": "import json\njson.loads('{')"}


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS)
def test_the_stand_in_exits_and_prints_as_the_python_it_stands_for(tmp_path, pythons_here, script):
    """For the outcomes the tool reads: the exit code, what was printed, the last line of an error."""
    import submission

    real = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    here = submission.subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (here.returncode, here.stdout, grader.last_line(here.stderr)) == (
        real.returncode, real.stdout, grader.last_line(real.stderr))


def test_a_write_that_fails_midway_leaves_no_zip_and_no_temporary(candidate, pythons_here, monkeypatch, capsys):
    import submission

    def copy_half_then_fail(source, target):
        Path(target).write_bytes(Path(source).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(submission.shutil, "copyfile", copy_half_then_fail)
    message, _ = check_model_files(candidate, monkeypatch, capsys)
    assert re.search("submission.zip not written: .*No space left on device", message)
    assert sorted(path.name for path in candidate.iterdir()) == ["group.txt", "model_path.txt", "models", "report.pdf",
                                                                  "vae.py"]


def check_model_files(folder, monkeypatch, capsys, *extra) -> tuple[str | None, str]:
    """The tool's main in this process with the retraining on demo files left out (tested above): the message it
    exits with, or None where it wrote the zip; and what it printed."""
    import submission

    monkeypatch.setattr(submission, "run_as_grader", lambda *_: None)
    monkeypatch.setattr(sys, "argv", ["submission.py", "--root", str(folder), "--report", str(folder / "report.pdf"),
                                      *map(str, extra)])
    try:
        submission.main()
        message = None
    except SystemExit as stop:
        message = stop.code
    return message, capsys.readouterr().out


@pytest.fixture(scope="module")
def other_training(demo, tmp_path_factory) -> Path:
    """A folder holding a pair from a short training of a smaller VAE than VAE() (a second, in this process)."""
    folder = tmp_path_factory.mktemp("other")
    run_checked(demo["val"], demo["val"], "train", "vae.pth", "gmm_params.pkl", *short_training("--hidden", "64", "32"),
                cwd=folder, python=None)
    return folder


def test_the_model_files_to_upload_are_run_and_named_with_their_size_and_sha256(candidate, pythons_here,
                                                                               monkeypatch, capsys):
    folder = candidate / "my model (final)"
    (candidate / "models").rename(folder)
    message, printed = check_model_files(candidate, monkeypatch, capsys, "--model", folder)
    assert message is None, message
    assert "VAE() loads vae.pth, both test commands ran" in printed
    named = printed.splitlines()[-2:]
    for line, name in zip(named, ("vae.pth", "gmm_params.pkl")):
        path = folder / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert line == f"  {path}: {path.stat().st_size:,} bytes, sha256 {digest}"
    assert (candidate / "submission.zip").is_file()


def release_before(gmm_path: Path) -> None:
    """Rewrite a GMM file in the layout of the release before this one: its model's hash, no fingerprint."""
    with open(gmm_path, "rb") as handle:
        contents = pickle.load(handle)
    del contents["fingerprint"]
    contents.update(image_shape=np.array([28, 28]), vae_sha256="0" * 64)
    with open(gmm_path, "wb") as handle:
        pickle.dump(contents, handle)


@pytest.mark.parametrize("problem, fragment", [
    ("a GMM from another training", "gmm_params.pkl: this GMM was fitted with a different vae.pth"),
    ("a vae.pth of another architecture", "VAE() cannot load it"),
    ("a GMM file of the release before", "gmm_params.pkl: not a GMM file saved by this program"),
    ("a missing vae.pth", "vae.pth: no such file"),
])
def test_model_files_that_would_fail_the_grader_are_refused_in_one_line(candidate, other_training, pythons_here,
                                                                       monkeypatch, capsys, problem, fragment):
    models = candidate / "my models (2)"
    (candidate / "models").rename(models)
    (candidate / "submission.zip").write_bytes(b"an earlier run's zip")
    if problem == "a GMM from another training":
        shutil.copy(other_training / "gmm_params.pkl", models)
    elif problem == "a vae.pth of another architecture":
        shutil.copy(other_training / "vae.pth", models)
    elif problem == "a GMM file of the release before":
        release_before(models / "gmm_params.pkl")
    else:
        (models / "vae.pth").unlink()
    message, _ = check_model_files(candidate, monkeypatch, capsys, "--vae", models / "vae.pth", "--gmm",
                                   models / "gmm_params.pkl")
    assert message.startswith("submission: refused:") and message.splitlines() == [message]
    assert fragment in message and str(models) in message
    assert "make model, then upload the new pair" in message
    assert not (candidate / "submission.zip").exists()  # nor the earlier one, which would be submitted by mistake
