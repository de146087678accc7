"""Run vae.py as the course's grader does: through a subprocess, by absolute path, with its exact argv.

The benchmark, the submission check and the tests all run vae.py through `run_vae`, and the grader's
three commands through `grader_commands`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple


class Run(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    seconds: float  # wall time, Python start-up included
    peak_mb: float  # peak resident memory


def run_vae(vae_py: Path | str, *arguments, cwd: Path | str, python: Path | str = sys.executable,
            timeout: float = 1800) -> Run:
    """Run `python vae_py arguments` in `cwd` and wait for it; killed after `timeout` seconds."""
    command = [str(python), str(vae_py), *map(str, arguments)]
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.perf_counter() - start
        outputs = []
        for stream in (stdout, stderr):
            stream.seek(0)
            outputs.append(stream.read().decode(errors="replace"))
    return Run(process.returncode, *outputs, seconds, usage.ru_maxrss / 1024)


def grader_commands(train: Path | str, val: Path | str, recon: Path | str, test: Path | str,
                    vae_pth: Path | str = "vae.pth", gmm_pkl: Path | str = "gmm_params.pkl") -> dict[str, list]:
    """The arguments of the grader's three commands, by mode."""
    return {
        "train": [train, val, "train", vae_pth, gmm_pkl],
        "test_reconstruction": [recon, "test_reconstruction", vae_pth],
        "test_classifier": [test, "test_classifier", vae_pth, gmm_pkl],
    }


def last_line(text: str) -> str:
    """The last line a failed command printed: vae.py's one-line error."""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
