"""scripts/benchmark.py --quick runs the grader's commands end to end and prints its table."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT
from test_shipped_model import COURSE_FILE


@pytest.mark.skipif(not COURSE_FILE.is_file(), reason="needs the course file in ../shared/data")
def test_quick_benchmark_prints_a_table_above_safe_floors():
    result = subprocess.run([sys.executable, ROOT / "scripts" / "benchmark.py", "--quick"],
                            capture_output=True, text=True, timeout=900, check=True)
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("|")}
    header = [cell.strip() for cell in rows["draw"].split("|")[1:-1]]
    minimum = dict(zip(header, (cell.strip() for cell in rows["min"].split("|")[1:-1])))
    assert {"0", "1", "mean", "min", "max"} <= set(rows)
    assert float(minimum["F1avg"]) > 0.5  # chance is 0.33; the full benchmark's numbers are in the README
    assert float(minimum["SSIM"]) > 0.3
    assert float(minimum["1-MSE"]) > 0.9
