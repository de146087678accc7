"""run.ipynb executes top to bottom in a real Jupyter kernel, on the demo data with a short training; its set-up
finds the project and draws the files wherever it is run and whatever it is given."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, labels_of, short_training
from course_data import split_course_file

SHORT = short_training()
SET_UP_CELLS = 3  # the title, the settings and the set-up; then the grader's commands


def run_notebook(settings: dict[str, str], working_folder: Path, cells: int | None = None) -> tuple[str, int]:
    """The notebook's first `cells` cells (default all) run with the settings cell's defaults replaced, in
    `working_folder`: what they printed and how many images they showed, once no cell failed and the set-up found
    this project."""
    notebook = nbformat.read(ROOT / "run.ipynb", as_version=4)
    notebook.cells = notebook.cells[:cells]
    setup = notebook.cells[1]
    for default, setting in settings.items():
        assert default in setup.source
        setup.source = setup.source.replace(default, setting)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(working_folder)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    printed = "".join(output.get("text", "") for output in outputs)
    assert f"project: {ROOT}" in [line.strip() for line in printed.splitlines()]
    return printed, sum("image/png" in output.get("data", {}) for output in outputs)


@pytest.mark.slow
@pytest.mark.environment
def test_notebook_runs_top_to_bottom_outside_the_clone_told_where_it_is(tmp_path):
    work = tmp_path / "outputs"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = {"EXTRA_FLAGS = []": f"EXTRA_FLAGS = {SHORT}", 'WORK_DIR = "notebook_run"': f'WORK_DIR = "{work}"',
                "PROJECT = None": f'PROJECT = "{ROOT}"'}
    _, images_shown = run_notebook(settings, elsewhere)
    assert images_shown == 9
    assert (work / "report" / "metrics.json").is_file()


@pytest.mark.slow
def test_the_set_up_in_the_clone_finds_it_alone_and_builds_the_demo_files(tmp_path):
    work = tmp_path / "outputs"
    run_notebook({'WORK_DIR = "notebook_run"': f'WORK_DIR = "{work}"'}, ROOT, SET_UP_CELLS)
    assert sorted(path.name for path in (work / "data").iterdir()) == ["recon.npz", "test.npz", "train.npz", "val.npz"]


@pytest.mark.slow
def test_the_set_up_given_the_training_file_alone_holds_out_what_make_benchmark_holds_out(tmp_path, demo):
    """A labelled file standing in for the course's: trained on a part of it, the rest drawn from the part held
    out, as make benchmark holds it out."""
    work = tmp_path / "outputs"
    settings = {'WORK_DIR = "notebook_run"': f'WORK_DIR = "{work}"',
                "TRAIN_FILE = None": f'TRAIN_FILE = "{demo["train"]}"'}
    printed, _ = run_notebook(settings, ROOT, SET_UP_CELLS)
    trained_on, held_out = split_course_file(labels_of(demo["train"]))
    counts = [len(labels_of(work / "data" / f"{name}.npz")) for name in ("train", "val", "test", "recon")]
    assert counts == [len(trained_on), 15, len(held_out) - 15, 10]
    assert f"train: {work / 'data' / 'train.npz'}" in printed
