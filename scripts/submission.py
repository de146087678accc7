"""Build submission.zip in the course's layout, once it has run as the course's scripts run it.

    make submission REPORT=path/to/report.pdf
    python scripts/submission.py --report path/to/report.pdf --python .venv-starter/bin/python

Unzipping submission.zip creates one folder, named after the entry numbers in group.txt, holding
exactly vae.py, model_path.txt, group.txt and the report renamed after the entry numbers
(2020CSZ1234_2020CSZ5678.pdf). Before it writes anything, it refuses, with one line saying what to
fix, a group.txt that is not one entry number per line, a model_path.txt whose first line is not a
link, a missing report or one that is not a PDF, and a vae.py importing what the course's
autograder flags. Then it unzips the candidate into a scratch folder and runs the grader's three
commands there, by absolute path from another working folder, with the given Python (make submission:
the course's starter environment's where it is installed or STARTER=1 asks for it, else .venv's), on demo
files, and says what that proves. Only if all of them pass does submission.zip appear.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from grader import grader_commands, last_line, run_vae
from make_demo_data import make_demo_files
from score import classification_scores, read_predictions, read_reconstructions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import vae  # noqa: E402  (vae.py is the product, one directory up)

ENTRY_NUMBER = re.compile(r"\d{4}[A-Z]{2,3}\d{4,5}")  # e.g. 2020CSZ1234, 2021CS10345
PLACEHOLDER = "YOUR_ENTRY_NUMBER"
STARTER_PYTHON = "3.10"  # the course's starter kit's (environment.yaml)
ALLOWED_IMPORT_ROOTS = set(sys.stdlib_module_names) | {"torch", "numpy", "scipy", "matplotlib"}


class Refusal(Exception):
    """Something the student must fix before submitting: one line that says what."""


def disallowed_imports(source: str) -> list[str]:
    """The modules `source` imports that the course's autograder flags."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found = [(alias.name, [], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found = [(node.module or "", [alias.name for alias in node.names], node.level)]
        else:
            continue
        for module, names, level in found:
            allowed = level == 0 and (
                module.split(".")[0] in ALLOWED_IMPORT_ROOTS
                or module == "skimage.metrics"
                or (module == "sklearn.metrics" and names in ([], ["f1_score"]))
                or (module == "sklearn" and names == ["metrics"]))
            if not allowed:
                bad.append(module or "." * level)
    return bad


def entry_numbers(group_text: str) -> list[str]:
    lines = [line.strip() for line in group_text.splitlines() if line.strip()]
    if not lines or PLACEHOLDER in lines:
        raise Refusal("group.txt: put your entry numbers in it, one per line (like 2020CSZ1234)")
    wrong = [line for line in lines if not ENTRY_NUMBER.fullmatch(line)]
    if wrong:
        raise Refusal(f"group.txt: {wrong[0]!r} is not an entry number like 2020CSZ1234; write one per line")
    return lines


def check_model_link(model_path_text: str) -> None:
    first = model_path_text.strip().splitlines()[0].strip() if model_path_text.strip() else ""
    if not re.fullmatch(r"https?://\S+", first):
        raise Refusal("model_path.txt: its first line must be a shareable link (https://...) to your vae.pth and "
                      f"gmm_params.pkl, not {first!r}")


def check_report(report: Path | None) -> None:
    if report is None:
        raise Refusal("no report given: make submission REPORT=path/to/report.pdf")
    if not report.is_file():
        raise Refusal(f"{report}: no such file")
    with open(report, "rb") as handle:
        if handle.read(5) != b"%PDF-":
            raise Refusal(f"{report}: not a PDF; export the report as PDF")


def check_candidate(root: Path, report: Path | None) -> list[str]:
    """Every refusal, before anything is written; returns the entry numbers."""
    entries = entry_numbers((root / "group.txt").read_text())
    check_model_link((root / "model_path.txt").read_text())
    check_report(report)
    flagged = disallowed_imports((root / "vae.py").read_text())
    if flagged:
        raise Refusal(f"vae.py: imports {', '.join(flagged)}, which the course's autograder flags")
    return entries


def write_zip(path: Path, root: Path, report: Path, entries: list[str]) -> None:
    folder = "_".join(entries)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in ("vae.py", "model_path.txt", "group.txt"):
            archive.write(root / name, f"{folder}/{name}")
        archive.write(report, f"{folder}/{folder}.pdf")


def what_it_proves(python: str) -> str:
    """The Python and PyTorch releases of `python`, and what running the grader's commands with them proves."""
    releases_of = "import platform, torch; print(platform.python_version(), torch.__version__)"
    found = subprocess.run([python, "-c", releases_of], capture_output=True, text=True)
    if found.returncode != 0:
        raise Refusal(f"{python} cannot import torch: install the project's environment (./install.sh)")
    python_version, torch_version = found.stdout.split()
    releases = f"Python {python_version}, PyTorch {torch_version}"
    starter_torch = re.search(r"^torch==(\S+)", (ROOT / "envs" / "starter-torch.txt").read_text(), re.M).group(1)
    if python_version.startswith(f"{STARTER_PYTHON}.") and torch_version.split("+")[0] == starter_torch:
        return f"{releases}, the course's starter environment, so the zip runs there as the course's grader runs it"
    return (f"{releases}, so the zip runs as the course's grader runs it, on these releases; make submission "
            f"STARTER=1 runs it in the course's starter environment too (Python {STARTER_PYTHON}, PyTorch "
            f"{starter_torch}; Linux)")


def run_as_grader(candidate: Path, python: str, scratch: Path) -> None:
    """Unzip the candidate and run the grader's three commands from another folder, by absolute paths."""
    with zipfile.ZipFile(candidate) as archive:
        archive.extractall(scratch / "unzipped")
    (folder,) = (scratch / "unzipped").iterdir()
    data = make_demo_files(scratch / "data")
    work = scratch / "grader"
    work.mkdir()
    commands = grader_commands(train=data["train"], val=data["val"], recon=data["val"], test=data["test"],
                               vae_pth=work / "vae.pth", gmm_pkl=work / "gmm_params.pkl")
    for mode, arguments in commands.items():
        run = run_vae(folder / "vae.py", *arguments, cwd=work, python=python)
        if run.returncode != 0:
            raise Refusal(f"the unzipped vae.py failed {mode} (exit {run.returncode}): {last_line(run.stderr)}")
        print(f"  {mode:20} ran in {run.seconds:5.1f} s", flush=True)
    reconstructed = read_reconstructions(work)
    with np.load(data["val"]) as val:
        if reconstructed.shape != val["data"].shape:
            raise Refusal(f"{vae.RECONSTRUCTION_FILE} has shape {reconstructed.shape}, not {val['data'].shape}")
    header = (work / vae.PREDICTIONS_FILE).read_text().splitlines()[0]
    predicted = read_predictions(work)
    with np.load(data["test"]) as test:
        truth = test["labels"]
    if header != vae.PREDICTIONS_HEADER or len(predicted) != len(truth):
        raise Refusal(f"{vae.PREDICTIONS_FILE} does not hold a {vae.PREDICTIONS_HEADER} header and one prediction "
                      "per test image")
    f1 = classification_scores(truth, predicted)["F1avg"]
    print(f"  demo F1avg {f1:.4f} on {len(truth)} test images", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="the report, a PDF")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs vae.py (default this one)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding vae.py, group.txt and "
                        "model_path.txt (default this repository)")
    parser.add_argument("--out", type=Path, help="where to write the zip (default ROOT/submission.zip)")
    args = parser.parse_args()
    args.out = args.out or args.root / "submission.zip"
    python = shutil.which(args.python)  # made absolute: the commands run from another folder
    if python is None:
        sys.exit(f"submission: {args.python}: no such Python (make submission installs the one it needs)")
    try:
        entries = check_candidate(args.root, args.report)
        with tempfile.TemporaryDirectory() as scratch:
            candidate = Path(scratch) / "submission.zip"
            write_zip(candidate, args.root, args.report, entries)
            print(f"running the grader's commands on the unzipped candidate with {args.python}: "
                  f"{what_it_proves(python)}", flush=True)
            run_as_grader(candidate, os.path.abspath(python), Path(scratch))
            with vae.atomic_outputs(str(args.out)) as (temporary,):
                shutil.copyfile(candidate, temporary)
    except Refusal as refusal:
        sys.exit(f"submission: refused: {refusal}")
    except OSError as error:
        sys.exit(f"submission: {args.out} not written: {error}")
    with zipfile.ZipFile(args.out) as archive:
        print(f"wrote {args.out.name}: " + ", ".join(archive.namelist()))


if __name__ == "__main__":
    main()
