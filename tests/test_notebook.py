"""run.ipynb executes top to bottom in a real Jupyter kernel, on the demo data with a short training."""

from __future__ import annotations

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

SHORT = ["--epochs", "3", "--refine-steps", "30", "--decoder-epochs", "1"]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(ROOT / "run.ipynb", as_version=4)
    setup = notebook.cells[1]
    assert "EXTRA_FLAGS = []" in setup.source and 'WORK_DIR = "notebook_run"' in setup.source
    setup.source = setup.source.replace("EXTRA_FLAGS = []", f"EXTRA_FLAGS = {SHORT}")
    setup.source = setup.source.replace('WORK_DIR = "notebook_run"', f'WORK_DIR = "{tmp_path}"')
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 9
    assert (tmp_path / "report" / "metrics.json").is_file()
