"""The numbers the README and docs/results.md quote are those of the tables in docs/generated, the README's demo
line is what make demo prints, the figures are of the shipped model, and the parameter count is the model's."""

from __future__ import annotations

import dataclasses
import json
import operator
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vae
from conftest import ROOT, SHIPPED, run_checked

README = (ROOT / "README.md").read_text()
RESULTS = (ROOT / "docs" / "results.md").read_text()
DESIGN = (ROOT / "docs" / "design.md").read_text()
GENERATED = ROOT / "docs" / "generated"
MEASURED = re.compile(r"(?<![<>=] )(?<![\d.])\d\.\d{2,}(?:-\d\.\d{2,})?")  # a score, a range, a ratio; not a target


def section(text: str, heading: str) -> str:
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def unsourced(text: str) -> list[str]:
    """The measured numbers of `text` that no generated page it links to holds."""
    linked = {number for page in re.findall(r"generated/([\w-]+\.md)", text)
              for number in re.findall(r"\d+\.\d+", (GENERATED / page).read_text())}
    return [number for found in MEASURED.findall(text) for number in found.split("-") if number not in linked]


@pytest.mark.parametrize("page, texts", [("README.md", [section(README, "What to expect when the course retrains it")]),
                                         ("docs/results.md", RESULTS.split("\n## "))])
def test_every_measured_number_is_read_from_the_generated_table_its_section_links(page, texts):
    """A number a section quotes was printed by make benchmark, make limits or make stress into the page of
    docs/generated that the section links: where it is not there, it was typed by hand or measured again since."""
    quoted = [text for text in texts if MEASURED.search(text)]
    assert quoted
    assert [(text.splitlines()[0], unsourced(text)) for text in quoted if unsourced(text)] == []


def test_the_readmes_expectations_are_the_benchmarks_mean_and_worst_seed():
    benchmark = (GENERATED / "benchmark.md").read_text()
    first_table = next(block for block in benchmark.split("\n\n") if block.startswith("|"))  # vae.py's
    rows = {cells[0]: cells for cells in ([cell.strip() for cell in line.strip("|").split("|")]
                                          for line in first_table.splitlines())}
    columns = dict(zip(rows["seed"], range(len(rows["seed"]))))
    table = section(README, "What to expect when the course retrains it")
    for score, column in {"F1avg": "F1avg mean", "1 - MSE": "1-MSE", "SSIM": "SSIM"}.items():
        row = next(line for line in table.splitlines() if line.startswith("| ") and score in line)
        assert row.split("|")[-3:-1] == [f" {rows[name][columns[column]]} " for name in ("mean", "worst")]


SHIPPED_BY = {key: json.loads((SHIPPED / "vae_history.json").read_text()).get(key)
              for key in ("torch", "processor", "threads")}
HERE = {"torch": torch.__version__, "processor": vae.processor(), "threads": torch.get_num_threads()}


@pytest.mark.slow
@pytest.mark.skipif(HERE != SHIPPED_BY, reason=f"the README's demo line was printed where the shipped model was "
                    f"trained, {SHIPPED_BY}; here is {HERE}")
def test_the_readmes_demo_line_is_what_make_demo_prints(trained, demo):
    """make demo's last line, from the grader's train command on the demo files (the `trained` fixture), its two
    test commands and scripts/score.py."""
    run_checked(demo["recon"], "test_reconstruction", "vae.pth", cwd=trained)
    run_checked(demo["test"], "test_classifier", "vae.pth", "gmm_params.pkl", cwd=trained)
    scored = subprocess.run([sys.executable, ROOT / "scripts" / "score.py", "--test", demo["test"], "--recon",
                             demo["recon"], "--outputs", trained], capture_output=True, text=True, check=True)
    shown = re.search(r"```\n(F1avg .*)\n```", README).group(1)
    assert scored.stdout.strip() == shown


def test_every_picture_of_the_shipped_model_was_made_from_it():
    """The README's screenshot of the explorer (make explorer) and the report's figures (make report) carry the
    fingerprint of the GMM file they show, which names its vae.pth too: remake them when the model is trained again."""
    from PIL import Image

    from score import FIGURE_FINGERPRINT

    kept = (ROOT / ".gitignore").read_text().splitlines()
    committed = [line[1:] for line in kept if line.startswith("!docs/report/") and line.endswith(".png")]
    figures = [ROOT / "docs" / "explorer.png", *(ROOT / path for path in committed)]
    with open(SHIPPED / "gmm_params.pkl", "rb") as handle:
        shipped = pickle.load(handle)["fingerprint"]
    stale = [figure.name for figure in figures if Image.open(figure).text.get(FIGURE_FINGERPRINT) != shipped]
    assert committed and stale == []


def test_where_the_labels_enter_is_said_in_the_same_words_everywhere(cli):
    """vae.py's sentence, as --help shows it and the report's figure pages print it, in the README, the design and
    the notebook."""
    import json

    from report import where_the_labels_enter

    sentence = where_the_labels_enter()
    notebook = "\n".join("".join(cell["source"]) for cell in json.loads((ROOT / "run.ipynb").read_text())["cells"])
    shown = {"--help": cli("--help").stdout, "README.md": README, "docs/design.md": DESIGN, "run.ipynb": notebook}
    assert sentence.startswith("Labels: the VAE, its refinement included, trains on no label")
    assert [name for name, text in shown.items() if sentence not in " ".join(text.split())] == []


def test_the_parameter_count_in_the_docs_is_the_models():
    count = f"{vae.count_parameters(vae.VAE()):,}"
    for document in (README, RESULTS, DESIGN):
        assert set(re.findall(r"(?<![\d,])\d,\d{3},\d{3} parameters", document)) == {f"{count} parameters"}


def test_every_default_the_design_names_is_vaes():
    """docs/design.md names each default it explains as `--flag value`: each must be the value vae.py trains with."""
    defaults = {vae.flag(name): " ".join(map(str, value)) if isinstance(value, tuple) else str(value)
                for name, value in dataclasses.asdict(vae.DEFAULTS).items()}
    named = re.findall(r"`(--[a-z-]+) ([^`]+)`", DESIGN)
    assert len(named) >= 10
    assert [(flag, value) for flag, value in named if defaults.get(flag) != value] == []


def test_the_readme_names_every_field_of_the_gmm_file():
    gmm = vae.GMM(np.ones(1), np.zeros((1, 2)), np.eye(2)[None], np.array([1]))
    row = next(line for line in README.splitlines() if line.startswith("| `gmm_params.pkl` |"))
    assert [key for key in vae.gmm_file_contents(gmm, "") if f"`{key}`" not in row] == []


ENVIRONMENTS = (ROOT / "docs" / "environments.md").read_text()
TABLE_PACKAGES = {"PyTorch": "torch", "NumPy": "numpy", "SciPy": "scipy", "Matplotlib": "matplotlib",
                  "scikit-learn": "scikit-learn", "scikit-image": "scikit-image"}
ENVIRONMENT_PINS = {  # a row of environments.md's table: (the files that pin it, the Python their markers see)
    "default, `.venv`": (["requirements-dev.txt"], "3.11"),
    "default on Python 3.10": (["requirements-dev.txt"], "3.10"),
    "starter, `.venv-starter`": (["envs/starter.txt", "envs/starter-torch.txt"], "3.10"),
    "grader, `.venv-grader`": (["envs/grader.txt", "envs/grader-torch.txt"], "3.12"),
}


def pins(files: list[str], python: str) -> dict[str, str]:
    """package -> version, from `name==version` lines (and -r includes) whose python_version marker admits `python`."""
    found = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            if line.startswith("-r "):
                found |= pins([str(Path(name).parent / line[3:])], python)
                continue
            match = re.fullmatch(r'([\w-]+)==([\w.]+)(?:; python_version ([<>=]+) "([\d.]+)")?', line.strip())
            if match is None:
                continue
            package, version, comparison, bound = match.groups()
            as_numbers = [tuple(map(int, text.split("."))) for text in (python, bound or python)]
            if bound is None or {"<": operator.lt, ">=": operator.ge}[comparison](*as_numbers):
                found[package] = version
    return found


@pytest.mark.parametrize("row", ENVIRONMENT_PINS)
def test_the_environments_table_gives_each_environments_pins(row):
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")]
                     for line in ENVIRONMENTS.splitlines() if line.startswith("| ") and "---" not in line]
    shown = dict(zip(header, next(cells for cells in rows if cells[0] == row)))
    pinned = pins(*ENVIRONMENT_PINS[row])
    assert {column: shown[column] for column in TABLE_PACKAGES} == {
        column: pinned[package] for column, package in TABLE_PACKAGES.items()}


def test_the_conda_environment_is_the_starter_environment():
    """environment.yaml (the course's own) pins the starter's releases, at conda's precision."""
    starter = pins(["envs/starter.txt", "envs/starter-torch.txt"], "3.10")
    conda = dict(re.findall(r"^  - ([\w-]+)=([\d.]+)$", (ROOT / "environment.yaml").read_text(), re.MULTILINE))
    assert conda.pop("python") == "3.10"
    conda["torch"] = conda.pop("pytorch")
    assert conda and all(starter[package].startswith(version) for package, version in conda.items())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{path.name}" for path in sorted((ROOT / "docs").glob("*.md")))])
def test_every_link_between_the_pages_reaches_a_file_and_a_heading(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", (ROOT / page).read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (ROOT / page).parent / path if path else ROOT / page
        if not linked.exists():
            broken.append(target)
        elif anchor and anchor not in {slug(line.lstrip("#")) for line in linked.read_text().splitlines()
                                       if line.startswith("#")}:
            broken.append(target)
    assert broken == []
