"""The numbers the README repeats from docs/results.md are the ones there, and the parameter count is the model's."""

from __future__ import annotations

import re

import pytest

import vae
from conftest import ROOT

README = (ROOT / "README.md").read_text()
RESULTS = (ROOT / "docs" / "results.md").read_text()
MEASURED = re.compile(r"\d\.\d{2,}(?:-\d\.\d{2,})?")  # a score, a spread, a time ratio


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


@pytest.mark.parametrize("heading", ["What to expect when the course retrains it", "Results"])
def test_every_measured_number_of_the_readme_comes_from_the_results(heading):
    numbers = MEASURED.findall(section(README, heading))
    assert numbers
    assert [number for number in numbers if number not in RESULTS] == []


def test_the_parameter_count_in_the_docs_is_the_models():
    count = f"{vae.count_parameters(vae.VAE()):,}"
    for document in (README, RESULTS, (ROOT / "docs" / "design.md").read_text()):
        assert set(re.findall(r"(?<![\d,])\d,\d{3},\d{3} parameters", document)) == {f"{count} parameters"}
