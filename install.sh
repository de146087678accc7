#!/usr/bin/env bash
# Install one of the project's environments.
#   ./install.sh            .venv: python3 (3.10 to 3.13; another: PYTHON3=python3.12), for tests, demo, tools;
#                           VENV=.venv-3.12 names another folder (make takes the same VENV=)
#   ./install.sh --starter  .venv-starter: the course's starter kit, Python 3.10 and PyTorch 2.0.1
#   ./install.sh --grader   .venv-grader: a published grader's, Python 3.12 and PyTorch 2.5.1
#   ./install.sh --conda    the conda environment of environment.yaml (the course's own), if conda exists
#   ./install.sh --browser  Debian's Chromium and ChromeDriver, for the explorer's browser tests
# The starter and grader environments find their Python through pyenv, else as python3.X on PATH.
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes PyTorch from that index: on Linux, its CPU
# build instead of PyPI's CUDA build (PyTorch's own instructions for a machine without an NVIDIA GPU).
set -euo pipefail
cd "$(dirname "$0")"

find_python() {  # the newest installed Python $1.x
  local version=$1 found=""
  if command -v pyenv >/dev/null; then
    found=$(find "$(pyenv root)/versions" -maxdepth 1 -name "$version.*" 2>/dev/null | sort -V | tail -n 1)
  fi
  if [ -n "$found" ] && [ -x "$found/bin/python" ]; then
    echo "$found/bin/python"
  elif command -v "python$version" >/dev/null; then
    command -v "python$version"
  else
    echo "install.sh: Python $version not found; install it (pyenv install $version) or put python$version on PATH" >&2
    exit 1
  fi
}

torch_requirements=""
case "${1:-}" in
  --conda)
    command -v conda >/dev/null || { echo "install.sh: conda not found; run ./install.sh for a .venv" >&2; exit 1; }
    conda env create -f environment.yaml || conda env update -f environment.yaml
    echo "done: conda activate col333-vae"
    exit 0 ;;
  --browser)
    command -v apt-get >/dev/null || { echo "install.sh: --browser needs apt-get; install Chromium and ChromeDriver yourself" >&2; exit 1; }
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver
    echo "done: $(chromium --version)"
    exit 0 ;;
  --starter) venv=.venv-starter; python=$(find_python 3.10); requirements=envs/starter.txt
             torch_requirements=envs/starter-torch.txt ;;
  --grader) venv=.venv-grader; python=$(find_python 3.12); requirements=envs/grader.txt
            torch_requirements=envs/grader-torch.txt ;;
  "") venv=${VENV:-.venv}; python=${PYTHON3:-python3}; requirements=requirements-dev.txt ;;
  *) echo "usage: ./install.sh [--starter | --grader | --conda | --browser]" >&2; exit 2 ;;
esac

command -v "$python" >/dev/null || { echo "install.sh: $python not found; install Python 3.10 to 3.13, or name one with PYTHON3=" >&2; exit 2; }
if ! "$python" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))'; then
  echo "install.sh: $python is Python $("$python" -c 'import platform; print(platform.python_version())'); the project supports 3.10 to 3.13: name one with PYTHON3=python3.12" >&2
  exit 2
fi
rm -rf "$venv"
if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  echo "install.sh: $python cannot make a virtual environment; on Debian or Ubuntu: sudo apt install python3-venv" >&2
  exit 2
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
if [ -n "$torch_requirements" ]; then
  "$venv/bin/python" -m pip install --quiet --no-deps -r "$torch_requirements"
elif [ -n "${TORCH_INDEX:-}" ]; then
  "$venv/bin/python" -m pip install --quiet --index-url "$TORCH_INDEX" "$(grep '^torch==' requirements.txt)"
fi
"$venv/bin/python" -m pip install --quiet -r "$requirements"
touch "$venv/.installed"
echo "done: $venv ($("$venv/bin/python" --version), $(du -sh "$venv" | cut -f1))"
