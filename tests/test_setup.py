"""The first commands a student runs: install.sh refuses an unsupported Python, and the make targets that
need the course file say in one line where it goes, while report and explorer fall back to the demo digits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from course_data import DEFAULT_COURSE_FILE

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
MISSING = "no/such/mnist_1_4_8_train.npz"
MAKE_VARIABLES = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")


def run(*command, cwd=ROOT, **environment) -> subprocess.CompletedProcess:
    """Run as a student would from a shell: not as a sub-make of the `make test` running this test."""
    outside_make = {name: value for name, value in os.environ.items() if name not in MAKE_VARIABLES}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**outside_make, **environment})


def fake_python(tmp_path, version: str) -> str:
    """This interpreter, answering install.sh's `python -c CODE` as Python `version` would."""
    numbers = tuple(int(part) for part in version.split("."))
    pretend = f"import platform, sys; sys.version_info = {numbers}; platform.python_version = lambda: {version!r}; "
    path = tmp_path / "python"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{pretend}$2"\n')
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("python", ["3.9.18", "3.14.0", "not installed"])
def test_install_refuses_an_unsupported_python_in_one_line_and_leaves_the_venv(python, tmp_path):
    """Run on a copy of install.sh, so that a broken check installs into tmp_path, not the project's .venv."""
    shutil.copy(ROOT / "install.sh", tmp_path)
    stamp = tmp_path / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    interpreter = str(tmp_path / "missing") if python == "not installed" else fake_python(tmp_path, python)
    result = run("./install.sh", cwd=tmp_path, PYTHON3=interpreter)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "3.10 to 3.13" in result.stderr and "PYTHON3=" in result.stderr
    assert stamp.is_file()


@pytest.mark.parametrize("target", ["model", "benchmark", "limits", "stress", "models/val.npz"])
def test_a_target_that_needs_the_course_file_says_where_it_goes_in_one_line(target):
    result = run("make", target, f"COURSE_FILE={MISSING}")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert f"{MISSING} not found" in result.stderr and "data/" in result.stderr and "COURSE_FILE=" in result.stderr


@pytest.mark.parametrize("target", ["report", "explorer"])
def test_report_and_explorer_show_the_demo_digits_without_the_course_file(target):
    dry_run = run("make", "--dry-run", "--always-make", target, f"COURSE_FILE={MISSING}")
    assert dry_run.returncode == 0, dry_run.stderr
    assert "make_demo_data.py demo" in dry_run.stdout and "demo/train.npz demo/val.npz" in dry_run.stdout
    assert "demo digits" in dry_run.stdout and MISSING not in dry_run.stdout.replace(f"no course file at {MISSING}", "")


def test_report_and_explorer_use_the_course_file_where_it_is(tmp_path):
    course_file = tmp_path / "course.npz"
    course_file.touch()
    dry_run = run("make", "--dry-run", "explorer", f"COURSE_FILE={course_file}", "VAL_FILE=models/README.md")
    assert dry_run.returncode == 0, dry_run.stderr
    assert f"explorer.py {course_file} models/README.md" in dry_run.stdout and "demo" not in dry_run.stdout


def test_make_and_the_tools_look_for_the_course_file_in_the_same_place():
    unset = {name: value for name, value in os.environ.items() if name not in (*MAKE_VARIABLES, "COURSE_FILE")}
    shown = subprocess.run(["make", "--no-print-directory", "--eval", "print-course-file: ; @echo $(COURSE_FILE)",
                            "print-course-file"], cwd=ROOT, capture_output=True, text=True, env=unset)
    assert shown.stdout.strip() == str(DEFAULT_COURSE_FILE.relative_to(ROOT))
