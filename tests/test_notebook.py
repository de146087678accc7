"""run.ipynb executes top to bottom in a real Jupyter kernel, on the demo data with a short training."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, labels_of, short_training
from course_data import split_course_file

SHORT = short_training(epochs=3, refine_epochs=3, restarts=None)


@pytest.mark.slow
@pytest.mark.parametrize("where", [
    "in the clone, finding it alone",
    pytest.param("outside the clone, told where it is", marks=pytest.mark.environment),
    "given the training file alone",
])
def test_notebook_runs_top_to_bottom(where, tmp_path, demo):
    notebook = nbformat.read(ROOT / "run.ipynb", as_version=4)
    setup = notebook.cells[1]
    work = tmp_path / "outputs"
    settings = {"EXTRA_FLAGS = []": f"EXTRA_FLAGS = {SHORT}", 'WORK_DIR = "notebook_run"': f'WORK_DIR = "{work}"'}
    working_folder = ROOT
    if where.startswith("outside"):
        working_folder = tmp_path / "elsewhere"
        working_folder.mkdir()
        settings["PROJECT = None"] = f'PROJECT = "{ROOT}"'
    if where.startswith("given"):  # a labelled file standing in for the course's: the rest is drawn from it
        settings["TRAIN_FILE = None"] = f'TRAIN_FILE = "{demo["train"]}"'
    for default, setting in settings.items():
        assert default in setup.source
        setup.source = setup.source.replace(default, setting)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(working_folder)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 9
    assert (work / "report" / "metrics.json").is_file()
    if where.startswith("given"):  # trained on a part of it, scored on the rest, held out as make benchmark does
        trained_on, held_out = split_course_file(labels_of(demo["train"]))
        counts = [len(labels_of(work / "data" / f"{name}.npz")) for name in ("train", "val", "test", "recon")]
        assert counts == [len(trained_on), 15, len(held_out) - 15, 10]
        assert f"train: {work / 'data' / 'train.npz'}" in "".join(output.get("text", "") for output in outputs)
