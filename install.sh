#!/usr/bin/env bash
# Install the project's dependencies.
#   ./install.sh            .venv with the pinned versions (plain pip, the default)
#   ./install.sh --oldest   .venv-oldest with the course grader's NumPy 1.26.4 and scikit-learn 1.2.2
#   ./install.sh --conda    the conda environment of environment.yaml (the course's own), if conda exists
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}

case "${1:-}" in
  --conda)
    command -v conda >/dev/null || { echo "install.sh: conda not found; run ./install.sh for a .venv" >&2; exit 1; }
    conda env create -f environment.yaml || conda env update -f environment.yaml
    echo "done: conda activate col333-vae"
    exit 0 ;;
  --oldest) venv=.venv-oldest; requirements=requirements-oldest.txt ;;
  "") venv=.venv; requirements=requirements-dev.txt ;;
  *) echo "usage: ./install.sh [--oldest | --conda]" >&2; exit 2 ;;
esac

"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$requirements"
touch "$venv/.installed"
echo "done: $venv"
