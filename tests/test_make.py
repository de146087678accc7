"""The make targets take the course files at whatever path a student has, spaces and parentheses included, relative
or absolute; a named path that is missing stops them in one line before anything runs, and only where none was
named and data/ holds none do report and explorer show the demo digits.

Each test runs the real Makefile in a scratch folder whose .venv is a stand-in: its python records the command lines
it is given instead of running them, so no training and no install happens."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, student_shell
from course_data import DEFAULT_COURSE_FILE

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
NAMED_PATH = Path("course files (1)") / "mnist_1_4_8_train (1).npz"  # as a browser and a file manager save it
TOOL_OF_TARGET = {"model": "vae.py", "report": "scripts/report.py", "explorer": "scripts/explorer.py",
                  "benchmark": "scripts/benchmark.py", "limits": "scripts/limits.py", "stress": "scripts/stress.py"}


@pytest.fixture
def project(tmp_path) -> Path:
    """A scratch folder holding the Makefile and a .venv whose python records its command lines in calls.jsonl."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    for name in ("requirements.txt", "requirements-dev.txt"):
        (tmp_path / name).touch()
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\nprintf '%s\\0' \"$@\" >> \"$(dirname \"$0\")/../../calls\"; printf '\\n' >> "
                      "\"$(dirname \"$0\")/../../calls\"\n")
    python.chmod(0o755)
    os.utime(tmp_path / "requirements.txt", (0, 0))
    os.utime(tmp_path / "requirements-dev.txt", (0, 0))
    (tmp_path / ".venv" / ".installed").touch()
    return tmp_path


def make(project: Path, *arguments: str) -> subprocess.CompletedProcess:
    """make in `project`, as a student runs it from a shell: not as a sub-make of the `make test` running this."""
    return subprocess.run(["make", "--no-print-directory", *arguments], cwd=project, capture_output=True, text=True,
                          env=student_shell())


def calls(project: Path) -> list[list[str]]:
    """The command lines the stand-in python was given, in order, each word as it arrived."""
    log = project / "calls"
    if not log.exists():
        return []
    return [line.strip("\0").split("\0") for line in log.read_text().splitlines()]


def named_course_file(project: Path, form: str) -> str:
    path = project / NAMED_PATH
    path.parent.mkdir()
    path.touch()
    return str(path) if form == "absolute" else str(NAMED_PATH)


@pytest.mark.parametrize("form", ["relative", "absolute"])
@pytest.mark.parametrize("target", TOOL_OF_TARGET)
def test_a_course_file_with_spaces_and_parentheses_reaches_the_tool_as_one_word(project, target, form):
    course_file = named_course_file(project, form)
    result = make(project, target, f"COURSE_FILE={course_file}")
    assert result.returncode == 0, result.stderr
    (tool_call,) = [call for call in calls(project) if call[0] == TOOL_OF_TARGET[target]]
    assert course_file in tool_call and "demo" not in result.stdout
    if target in ("model", "report", "explorer"):  # and the validation draw is taken from it
        assert ["scripts/course_data.py", course_file, "models/val.npz"] in calls(project)
        assert tool_call[1:3] == [course_file, "models/val.npz"]


@pytest.mark.parametrize("target", ["model", "report", "explorer"])
def test_a_validation_file_with_spaces_is_used_as_named_and_nothing_is_drawn(project, target):
    course_file = named_course_file(project, "relative")
    val_file = project / "my files (2)" / "val (1).npz"
    result = make(project, target, f"COURSE_FILE={course_file}", f"VAL_FILE={val_file}")
    assert result.returncode == 0, result.stderr
    tool_calls = [call[:3] for call in calls(project) if call[0] != "scripts/browser.py"]  # the screenshot's
    assert tool_calls == [[TOOL_OF_TARGET[target], course_file, str(val_file)]]


@pytest.mark.parametrize("target", [*TOOL_OF_TARGET, "models/val.npz"])
def test_a_named_course_file_that_is_missing_stops_before_anything_runs(project, target):
    missing = "no such folder (2)/mnist_1_4_8_train (1).npz"
    result = make(project, target, f"COURSE_FILE={missing}")
    assert result.returncode == 2 and result.stdout == "" and calls(project) == []
    said, *rest = result.stderr.splitlines()
    assert said == (f"make: {missing} not found: put the course's mnist_1_4_8_train.npz in data/, or give its path: "
                    "make COURSE_FILE=path/to/it")
    assert [line for line in rest if "Error 2" not in line] == []  # but make's own closing line


@pytest.mark.parametrize("target", ["report", "explorer"])
def test_report_and_explorer_show_the_demo_digits_only_where_no_course_file_is_named_or_in_data(project, target):
    result = make(project, target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("demo digits") == 1
    assert ["scripts/make_demo_data.py", "demo"] in calls(project)
    assert calls(project)[-1][:3] == [TOOL_OF_TARGET[target], "demo/train.npz", "demo/val.npz"]
    (project / "data").mkdir()
    (project / "data" / DEFAULT_COURSE_FILE.name).touch()
    (project / "calls").unlink()
    result = make(project, target)
    assert result.returncode == 0 and "demo" not in result.stdout
    tool_call = next(call for call in calls(project) if call[0] == TOOL_OF_TARGET[target])
    assert tool_call[:3] == [TOOL_OF_TARGET[target], f"data/{DEFAULT_COURSE_FILE.name}", "models/val.npz"]


@pytest.mark.parametrize("starter", ["", "1"])
def test_submission_runs_in_dot_venv_unless_the_starter_environment_is_asked_for(project, starter):
    (project / ".venv-starter").mkdir()
    (project / ".venv-starter" / ".installed").touch()
    for name in ("starter.txt", "starter-torch.txt"):
        (project / "envs").mkdir(exist_ok=True)
        (project / "envs" / name).touch()
        os.utime(project / "envs" / name, (0, 0))
    if not starter:
        shutil.rmtree(project / ".venv-starter")
    report = "my report (final).pdf"
    result = make(project, "submission", f"REPORT={report}", f"STARTER={starter}")
    assert result.returncode == 0, result.stderr
    python = ".venv-starter/bin/python" if starter else ".venv/bin/python"
    assert calls(project) == [["scripts/submission.py", "--python", python, "--report", report]]


@pytest.mark.parametrize("named", [{"MODEL": "my model (v2)"},
                                   {"VAE": "week 1 (old)/vae.pth", "GMM": "/abs path (x)/gmm_params.pkl"}])
def test_submission_checks_the_model_files_named_each_as_one_word(project, named):
    settings = [f"{name}={path}" for name, path in named.items()]
    result = make(project, "submission", "REPORT=report (final).pdf", *settings)
    assert result.returncode == 0, result.stderr
    flags = [word for name, path in named.items() for word in (f"--{name.lower()}", path)]
    report = ["--report", "report (final).pdf"]
    assert calls(project) == [["scripts/submission.py", "--python", ".venv/bin/python", *report, *flags]]


def test_make_and_the_tools_look_for_the_course_file_in_the_same_place():
    shown = subprocess.run(["make", "--no-print-directory", "--eval", "print-course-file: ; @echo $(COURSE_FILE)",
                            "print-course-file"], cwd=ROOT, capture_output=True, text=True, env=student_shell())
    assert shown.stdout.strip() == str(DEFAULT_COURSE_FILE.relative_to(ROOT))
