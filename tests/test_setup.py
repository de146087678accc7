"""The first command a student runs: install.sh takes the Pythons the pins have wheels for and refuses the others in
one line, and takes PyTorch's CPU build where no NVIDIA GPU is, falling back to PyPI's in one line."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import NEWEST, OLDEST, ROOT, student_shell

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def run(*command, cwd=ROOT, **environment) -> subprocess.CompletedProcess:
    """Run as a student would from a shell: not with the settings of the `make test` or CI running this test."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=student_shell(**environment))


def fake_python(tmp_path, version: str) -> str:
    """This interpreter, answering install.sh's `python -c CODE` as Python `version` would."""
    numbers = tuple(int(part) for part in version.split("."))
    pretend = f"import platform, sys; sys.version_info = {numbers}; platform.python_version = lambda: {version!r}; "
    path = tmp_path / "python"
    path.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{pretend}$2"\n')
    path.chmod(0o755)
    return str(path)


def next_minor(version: str, step: int) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) + step}.0"




@pytest.mark.parametrize("python", [next_minor(OLDEST, -1), next_minor(NEWEST, 1), "not installed"])
def test_install_refuses_an_unsupported_python_in_one_line_and_leaves_the_venv(python, tmp_path):
    """Run on a copy of install.sh, so that a broken check installs into tmp_path, not the project's .venv."""
    shutil.copy(ROOT / "install.sh", tmp_path)
    stamp = tmp_path / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    interpreter = str(tmp_path / "missing") if python == "not installed" else fake_python(tmp_path, python)
    result = run("./install.sh", cwd=tmp_path, PYTHON3=interpreter)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and f"{OLDEST} to {NEWEST}" in result.stderr
    assert "PYTHON3=" in result.stderr
    assert stamp.is_file()


@pytest.mark.parametrize("python", [f"{OLDEST}.0", f"{NEWEST}.0"])
def test_install_accepts_the_oldest_and_the_newest_python(python, tmp_path):
    """Up to making the venv, which the fake interpreter cannot do: that refusal proves the range let it through."""
    shutil.copy(ROOT / "install.sh", tmp_path)
    result = run("./install.sh", cwd=tmp_path, PYTHON3=fake_python(tmp_path, python))
    assert result.returncode == 2 and "cannot make a virtual environment" in result.stderr


def fake_torch_index(folder: Path, version: str) -> str:
    """A PEP 503 index in `folder` serving one empty torch wheel of `version`; its file:// URL."""
    wheel = f"torch-{version}-py3-none-any.whl"
    dist_info = f"torch-{version}.dist-info"
    (folder / "torch").mkdir(parents=True)
    with zipfile.ZipFile(folder / "torch" / wheel, "w") as archive:
        archive.writestr("torch/__init__.py", f"__version__ = {version!r}\n")
        archive.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        archive.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{dist_info}/RECORD", "")
    (folder / "torch" / "index.html").write_text(f'<a href="{wheel}">{wheel}</a>')
    return folder.as_uri()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/whl/cpu"


@pytest.mark.slow
@pytest.mark.parametrize("machine", ["no NVIDIA GPU", "PyTorch's index unreachable", "an NVIDIA GPU",
                                     "TORCH_INDEX=pypi"])
def test_install_takes_the_cpu_build_where_no_nvidia_gpu_is_and_falls_back_to_pypi(machine, tmp_path):
    """install.sh on a copy of the project whose only requirement is torch, with local folders standing in for
    PyTorch's CPU index and for PyPI (pip's own configuration switched off): nothing outside is reached."""
    cpu_index = closed_port_url() if machine == "PyTorch's index unreachable" else fake_torch_index(
        tmp_path / "pytorch-cpu", "2.13.0+cpu")
    script = (ROOT / "install.sh").read_text()
    (tmp_path / "install.sh").write_text(re.sub(r"(?m)^PYTORCH_CPU_INDEX=.*$", f"PYTORCH_CPU_INDEX={cpu_index}",
                                                script))
    (tmp_path / "install.sh").chmod(0o755)
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    if machine == "an NVIDIA GPU":
        (bin_folder / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200'\n")
        (bin_folder / "nvidia-smi").chmod(0o755)
    settings = {"PYTHON3": sys.executable, "PATH": f"{bin_folder}:{os.environ['PATH']}", "PIP_CONFIG_FILE": os.devnull,
                "PIP_FIND_LINKS": "", "PIP_INDEX_URL": fake_torch_index(tmp_path / "pypi", "2.13.0")}
    if machine == "TORCH_INDEX=pypi":
        settings["TORCH_INDEX"] = "pypi"
    result = run("./install.sh", cwd=tmp_path, **settings)
    assert result.returncode == 0, result.stderr
    installed = subprocess.run([tmp_path / ".venv" / "bin" / "python", "-c", "import torch; print(torch.__version__)"],
                               capture_output=True, text=True).stdout.strip()
    told = "no NVIDIA GPU here, so PyTorch's CPU build from" in result.stdout
    warned = [line for line in result.stderr.splitlines() if line.startswith("install.sh:")]  # not pip's notes
    if machine == "no NVIDIA GPU":
        assert installed == "2.13.0+cpu" and told and warned == []
    elif machine == "PyTorch's index unreachable":
        assert installed == "2.13.0" and told and len(warned) == 1
        assert f"{cpu_index} did not serve PyTorch" in warned[0] and "taking PyPI's build instead" in warned[0]
    else:
        assert installed == "2.13.0" and not told and warned == []


def test_a_clone_by_git_for_windows_keeps_lf_in_the_scripts_and_the_makefile(tmp_path):
    """Git for Windows clones with core.autocrlf=true; bash and make would read CRLF as part of each command."""
    scripts = ["install.sh", "Makefile", ".ci/run", "scripts/grader.py"]
    source = tmp_path / "source"
    for name in [".gitattributes", *scripts]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    windows = ["git", "-c", "core.autocrlf=true", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "scripts"]):
        subprocess.run([*windows, *command], cwd=source, check=True, capture_output=True)
    subprocess.run([*windows, "clone", "-q", str(source), str(tmp_path / "clone")], check=True, capture_output=True)
    assert [name for name in scripts if b"\r\n" in (tmp_path / "clone" / name).read_bytes()] == []
