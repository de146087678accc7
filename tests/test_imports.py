"""vae.py imports only what the course autograder and the submission allow."""

from __future__ import annotations

from conftest import VAE_PY
from submission import disallowed_imports


def test_vae_py_imports_only_allowed_modules():
    assert disallowed_imports(VAE_PY.read_text()) == []


def test_the_rule_catches_forbidden_imports():
    assert disallowed_imports("from sklearn.mixture import GaussianMixture") == ["sklearn.mixture"]
    assert disallowed_imports("import sklearn") == ["sklearn"]
    assert disallowed_imports("from sklearn.metrics import accuracy_score") == ["sklearn.metrics"]
    assert disallowed_imports("from . import helpers") == ["."]
    assert disallowed_imports("import scripts.benchmark") == ["scripts.benchmark"]
    assert disallowed_imports("from sklearn.metrics import f1_score\nimport skimage.metrics") == []
