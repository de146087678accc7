"""Build submission.zip in the course's layout, once it has run as the course's scripts run it.

    make submission REPORT=path/to/report.pdf [MODEL=folder | VAE=path GMM=path]
    python scripts/submission.py --report path/to/report.pdf --python .venv-starter/bin/python

Unzipping submission.zip creates one folder, named after the entry numbers in group.txt, holding
exactly vae.py, model_path.txt, group.txt and the report renamed after the entry numbers
(2020CSZ1234_2020CSZ5678.pdf). Before it writes anything, it refuses, with one line saying what to
fix, a group.txt that is not one entry number per line, a model_path.txt whose first line is not a
link, a missing report or one that is not a PDF, and a vae.py importing what the course's
autograder flags. Then it unzips the candidate into a scratch folder and, with the given Python (make
submission: the course's starter environment's where it is installed or STARTER=1 asks for it, else
.venv's), by absolute path from another working folder, runs the unzipped vae.py as the grader does: on
the model files the student will upload (models/vae.pth and models/gmm_params.pkl unless named), VAE()
loading vae.pth and the two test commands; then the grader's three commands on demo files. It says what
that proves, and which files it checked, with their sizes and sha256. Only if all of it passes does
submission.zip appear; a refusal removes an earlier submission.zip, which no longer matches.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
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
DRIVE_SCAN_LIMIT = 100 * 2**20  # past this, Google Drive asks before a download it cannot scan for viruses
NEW_PAIR = "make model, then upload the new pair (or name yours: MODEL=folder, or VAE= and GMM=)"
# run with the grader's Python: the zipped vae.py's VAE() loads vae.pth as the course's scripts load it; prints
# the size in bytes that VAE().state_dict() saves to
LOAD_AS_THE_COURSE_DOES = """
import importlib.util, io, sys, torch
spec = importlib.util.spec_from_file_location("vae", sys.argv[1])
vae = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vae)
model = vae.VAE()
model.load_state_dict(torch.load(sys.argv[2], map_location="cpu"))
saved = io.BytesIO()
torch.save(model.state_dict(), saved)
print(len(saved.getvalue()))
"""


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


def unzipped_vae_py(candidate: Path, scratch: Path) -> Path:
    with zipfile.ZipFile(candidate) as archive:
        archive.extractall(scratch / "unzipped")
    (folder,) = (scratch / "unzipped").iterdir()
    return folder / "vae.py"


def check_outputs(work: Path, data: dict[str, Path], failure: str) -> float:
    """The F1avg of the vae.csv and vae_reconstructed.npz that the test commands wrote in `work` on the demo
    files, once both have the course's form; else a refusal that starts with `failure`."""
    reconstructed = read_reconstructions(work)
    with np.load(data["recon"]) as recon:
        if reconstructed.shape != recon["data"].shape:
            raise Refusal(f"{failure}: {vae.RECONSTRUCTION_FILE} has shape {reconstructed.shape}, not "
                          f"{recon['data'].shape}")
    header = (work / vae.PREDICTIONS_FILE).read_text().splitlines()[0]
    predicted = read_predictions(work)
    with np.load(data["test"]) as test:
        truth = test["labels"]
    if header != vae.PREDICTIONS_HEADER or len(predicted) != len(truth):
        raise Refusal(f"{failure}: {vae.PREDICTIONS_FILE} does not hold a {vae.PREDICTIONS_HEADER} header and one "
                      "prediction per test image")
    return classification_scores(truth, predicted)["F1avg"]


def file_line(path: Path, expected_bytes: int | None = None) -> str:
    """The path, size and sha256 of a file to upload, and what is odd about its size."""
    size = path.stat().st_size
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    line = f"  {path}: {size:,} bytes, sha256 {digest}"
    if size > DRIVE_SCAN_LIMIT:
        line += (f"; note: over Google Drive's {DRIVE_SCAN_LIMIT // 2**20} MB virus-scan limit, where a download "
                 "asks for confirmation that a grader's script may not give")
    if expected_bytes is not None and not 0.5 <= size / expected_bytes <= 1.5:
        line += f"; note: an unusual size, where this vae.py's VAE() saves {expected_bytes:,} bytes"
    return line


def check_model_files(vae_py: Path, vae_pth: Path, gmm_pkl: Path, python: str, data: dict[str, Path],
                      work: Path) -> list[str]:
    """Run the zipped vae.py on the model files to upload, as the course's grader does: VAE() loads vae.pth, and
    the two test commands run on demo files from another folder. A line per file checked, else a refusal that
    names the file and the fix."""
    for path in (vae_pth, gmm_pkl):
        if not path.is_file():
            raise Refusal(f"{path}: no such file; {NEW_PAIR}")
    loaded = subprocess.run([python, "-c", LOAD_AS_THE_COURSE_DOES, vae_py, vae_pth], capture_output=True,
                            text=True)
    if loaded.returncode != 0:
        raise Refusal(f"{vae_pth}: the zipped vae.py's VAE() cannot load it as the course's grader does ("
                      f"{last_line(loaded.stderr)}): trained with other sizes or by another vae.py; {NEW_PAIR}")
    work.mkdir()
    commands = grader_commands(train=data["train"], val=data["val"], recon=data["recon"], test=data["test"],
                               vae_pth=vae_pth, gmm_pkl=gmm_pkl)
    for mode in ("test_classifier", "test_reconstruction"):
        run = run_vae(vae_py, *commands[mode], cwd=work, python=python)
        if run.returncode != 0:
            reason = last_line(run.stderr).removeprefix("vae.py: error: ")
            raise Refusal(f"the files to upload fail the zipped vae.py's {mode}: {reason}; {NEW_PAIR}")
    f1 = check_outputs(work, data, f"the files to upload, run by the zipped vae.py, give a wrong output; {NEW_PAIR}")
    print(f"  the files to upload: VAE() loads vae.pth, both test commands ran; demo F1avg {f1:.4f}", flush=True)
    return [file_line(vae_pth, int(loaded.stdout.split()[-1])), file_line(gmm_pkl)]


def run_as_grader(vae_py: Path, python: str, data: dict[str, Path], work: Path) -> None:
    """Run the grader's three commands with the unzipped vae.py in `work`, by absolute paths, training on the demo
    files."""
    work.mkdir()
    commands = grader_commands(train=data["train"], val=data["val"], recon=data["recon"], test=data["test"],
                               vae_pth=work / "vae.pth", gmm_pkl=work / "gmm_params.pkl")
    for mode, arguments in commands.items():
        run = run_vae(vae_py, *arguments, cwd=work, python=python)
        if run.returncode != 0:
            raise Refusal(f"the unzipped vae.py failed {mode} (exit {run.returncode}): {last_line(run.stderr)}")
        print(f"  {mode:20} ran in {run.seconds:5.1f} s", flush=True)
    f1 = check_outputs(work, data, "the unzipped vae.py")
    print(f"  demo F1avg {f1:.4f} on the demo test images", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="the report, a PDF")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs vae.py (default this one)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the folder holding vae.py, group.txt and "
                        "model_path.txt (default this repository)")
    parser.add_argument("--out", type=Path, help="where to write the zip (default ROOT/submission.zip)")
    parser.add_argument("--model", type=Path, help="the folder of the vae.pth and gmm_params.pkl you will upload "
                        "(default ROOT/models)")
    parser.add_argument("--vae", type=Path, help="the vae.pth you will upload (default MODEL/vae.pth)")
    parser.add_argument("--gmm", type=Path, help="the gmm_params.pkl you will upload (default MODEL/gmm_params.pkl)")
    args = parser.parse_args()
    args.out = args.out or args.root / "submission.zip"
    model = args.model or args.root / "models"
    vae_pth = (args.vae or model / "vae.pth").absolute()
    gmm_pkl = (args.gmm or model / "gmm_params.pkl").absolute()
    python = shutil.which(args.python)
    if python is None:
        sys.exit(f"submission: {args.python}: no such Python (make submission installs the one it needs)")
    python = os.path.abspath(python)  # absolute: the commands run from another folder
    try:
        entries = check_candidate(args.root, args.report)
        with tempfile.TemporaryDirectory() as scratch:
            candidate = Path(scratch) / "submission.zip"
            write_zip(candidate, args.root, args.report, entries)
            print(f"running the unzipped vae.py as the course's grader does, with {args.python}: "
                  f"{what_it_proves(python)}", flush=True)
            vae_py = unzipped_vae_py(candidate, Path(scratch))
            data = make_demo_files(Path(scratch) / "data")
            checked = check_model_files(vae_py, vae_pth, gmm_pkl, python, data, Path(scratch) / "uploaded")
            run_as_grader(vae_py, python, data, Path(scratch) / "grader")
            with vae.atomic_outputs(str(args.out)) as (temporary,):
                shutil.copyfile(candidate, temporary)
    except Refusal as refusal:
        removed = ""
        if args.out.is_file():  # a zip from an earlier run no longer matches what is here: not to be submitted
            args.out.unlink()
            removed = f" ({args.out.name} from an earlier run removed)"
        sys.exit(f"submission: refused: {refusal}{removed}")
    except OSError as error:
        sys.exit(f"submission: {args.out} not written: {error}")
    with zipfile.ZipFile(args.out) as archive:
        print(f"wrote {args.out.name}: " + ", ".join(archive.namelist()))
    print("upload exactly these model files behind model_path.txt's link (compare the sizes and sha256 of what you "
          "uploaded):")
    print("\n".join(checked))


if __name__ == "__main__":
    main()
