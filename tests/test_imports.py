"""vae.py imports only what the course autograder and the submission allow."""

from __future__ import annotations

import ast
import sys

from conftest import VAE_PY

ALLOWED_ROOTS = set(sys.stdlib_module_names) | {"torch", "numpy", "scipy", "matplotlib"}


def imported_modules(source: str) -> list[tuple[str, list[str], int]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", [alias.name for alias in node.names], node.level))
    return found


def disallowed(source: str) -> list[str]:
    bad = []
    for module, names, level in imported_modules(source):
        root = module.split(".")[0]
        allowed = (
            level == 0
            and (
                root in ALLOWED_ROOTS
                or module == "skimage.metrics"
                or (module == "sklearn.metrics" and names in ([], ["f1_score"]))
                or (module == "sklearn" and names == ["metrics"])
            )
        )
        if not allowed:
            bad.append(module or "." * level)
    return bad


def test_vae_py_imports_only_allowed_modules():
    assert disallowed(VAE_PY.read_text()) == []


def test_the_rule_catches_forbidden_imports():
    assert disallowed("from sklearn.mixture import GaussianMixture") == ["sklearn.mixture"]
    assert disallowed("import sklearn") == ["sklearn"]
    assert disallowed("from sklearn.metrics import accuracy_score") == ["sklearn.metrics"]
    assert disallowed("from . import helpers") == ["."]
    assert disallowed("import scripts.benchmark") == ["scripts.benchmark"]
    assert disallowed("from sklearn.metrics import f1_score\nimport skimage.metrics") == []
