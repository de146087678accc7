"""Every pin installs from binary wheels on every Python and platform the README names, checked by resolving the
requirements for each (Python, platform) with uv, which evaluates the markers for the target rather than for this
machine, without installing anything. Needs PyPI; run by make test-all, so by CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NEWEST, OLDEST, ROOT

pytestmark = pytest.mark.slow

# the README's names for the platforms that install: uv's target, and the oldest macOS a wheel may ask for
PLATFORMS = {"Linux x86_64": ("x86_64-manylinux_2_28", None), "Linux aarch64": ("aarch64-manylinux_2_28", None),
             "macOS 14+ on Apple silicon": ("aarch64-apple-darwin", "14.0")}
PYTHONS = [f"3.{minor}" for minor in range(int(OLDEST.split(".")[1]), int(NEWEST.split(".")[1]) + 1)]
COURSE_ENVIRONMENTS = {"starter": ("3.10", ["envs/starter.txt", "envs/starter-torch.txt"]),
                       "grader": ("3.12", ["envs/grader.txt", "envs/grader-torch.txt"])}  # Linux x86_64 only


def resolve(requirements: list[Path | str], python: str, platform: str) -> subprocess.CompletedProcess:
    """uv's resolution of `requirements` for Python `python` on `platform`, from binary wheels alone."""
    target, macos = PLATFORMS[platform]
    environment = {**os.environ, "MACOSX_DEPLOYMENT_TARGET": macos} if macos else None
    uv = Path(sys.executable).with_name("uv")
    command = [uv, "pip", "compile", "--no-config", "--no-python-downloads", "--quiet", "--no-header",
               "--only-binary", ":all:", "--python-version", python, "--python-platform", target,
               "--output-file", os.devnull, *map(str, requirements)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment, timeout=300)


def test_the_readme_names_each_platform_checked_here():
    table = (ROOT / "README.md").read_text()
    assert all(f"| {platform} |" in table for platform in PLATFORMS)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("python", PYTHONS)
def test_the_project_requirements_have_wheels(python, platform):
    result = resolve(["requirements-dev.txt"], python, platform)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("environment", COURSE_ENVIRONMENTS)
def test_the_course_environments_have_wheels_on_linux(environment):
    python, files = COURSE_ENVIRONMENTS[environment]
    result = resolve(files, python, "Linux x86_64")
    assert result.returncode == 0, result.stderr


def test_a_pin_without_a_wheel_for_the_newest_python_fails(tmp_path):
    """The check can fail: NumPy 2.2.6 has no wheel for Python 3.14."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.2.6\n")
    result = resolve([requirements], NEWEST, "Linux x86_64")
    assert result.returncode != 0 and "numpy" in result.stderr
