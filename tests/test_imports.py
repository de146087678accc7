"""vae.py loads by every route a grading script uses (run itself: test_commands.py), and imports only what the course
autograder allows."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SHIPPED, VAE_PY
from submission import disallowed_imports

# Each route ends with `vae` bound to something holding the VAE class; then the shipped weights load strictly.
ROUTES = {
    "import": "sys.path.insert(0, str(SOURCE.parent))\nimport vae",
    "importlib": """\
import importlib.util
spec = importlib.util.spec_from_file_location("vae", SOURCE)
vae = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vae)""",
    "importlib, registered in sys.modules": """\
import importlib.util
spec = importlib.util.spec_from_file_location("vae", SOURCE)
vae = importlib.util.module_from_spec(spec)
sys.modules["vae"] = vae
spec.loader.exec_module(vae)""",
    "runpy": "import runpy, types\nvae = types.SimpleNamespace(**runpy.run_path(str(SOURCE)))",
    "exec": """\
import types
namespace = {"__name__": "student_submission"}
exec(compile(SOURCE.read_text(), str(SOURCE), "exec"), namespace)
vae = types.SimpleNamespace(**namespace)""",
}

LOAD_THE_SHIPPED_MODEL = """
import torch
model = vae.VAE()
model.load_state_dict(torch.load(WEIGHTS, map_location="cpu"))
print("loaded", sum(p.numel() for p in model.parameters()))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Each route's outcome, in a fresh interpreter each, from another working folder, as grading scripts load a
    student's file; the interpreters started together, as each spends seconds importing torch on one core."""
    folder = tmp_path_factory.mktemp("routes")
    started = {}
    for route, loading in ROUTES.items():
        script = (f"import sys\nfrom pathlib import Path\nSOURCE = Path({str(VAE_PY)!r})\n"
                  f"WEIGHTS = {str(SHIPPED / 'vae.pth')!r}\n{loading}\n{LOAD_THE_SHIPPED_MODEL}")
        started[route] = subprocess.Popen([sys.executable, "-c", script], cwd=folder, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
    outcomes = {}
    for route, process in started.items():
        printed, errors = process.communicate(timeout=300)
        outcomes[route] = subprocess.CompletedProcess(process.args, process.returncode, printed, errors)
    return outcomes


@pytest.mark.environment
@pytest.mark.parametrize("route", ROUTES)
def test_the_vae_class_loads_the_shipped_model_by_every_route(route, loaded):
    assert loaded[route].returncode == 0, loaded[route].stderr
    assert loaded[route].stdout.startswith("loaded ")


def test_vae_py_imports_only_allowed_modules():
    assert disallowed_imports(VAE_PY.read_text()) == []


def test_the_rule_catches_forbidden_imports():
    assert disallowed_imports("from sklearn.mixture import GaussianMixture") == ["sklearn.mixture"]
    assert disallowed_imports("import sklearn") == ["sklearn"]
    assert disallowed_imports("from sklearn.metrics import accuracy_score") == ["sklearn.metrics"]
    assert disallowed_imports("from . import helpers") == ["."]
    assert disallowed_imports("import scripts.benchmark") == ["scripts.benchmark"]
    assert disallowed_imports("from sklearn.metrics import f1_score\nimport skimage.metrics") == []
