#!/usr/bin/env bash
# Install one of the project's environments.
#   ./install.sh            .venv: python3 (the Pythons below; another: PYTHON3=python3.12), for tests, demo,
#                           tools; VENV=.venv-3.12 names another folder (make takes the same VENV=)
#   ./install.sh --starter  .venv-starter: the course's starter kit, Python 3.10 and PyTorch 2.0.1
#   ./install.sh --grader   .venv-grader: a published grader's, Python 3.12 and PyTorch 2.5.1
#   ./install.sh --conda    the conda environment of environment.yaml (the course's own), if conda exists
#   ./install.sh --browser  Debian's Chromium and ChromeDriver, for the explorer's browser tests (Debian only)
# The starter and grader environments find their Python through pyenv, else as python3.X on PATH.
# .venv's PyTorch: on Linux x86_64 with no NVIDIA GPU, the CPU build from PyTorch's own index (a third of
# the CUDA build's size), or PyPI's build where that index cannot be reached; elsewhere PyPI's. TORCH_INDEX=URL
# names another index, TORCH_INDEX=pypi takes PyPI's build everywhere.
set -euo pipefail
cd "$(dirname "$0")"
OLDEST_PYTHON=3.10  # the Pythons every pin of requirements*.txt has wheels for (tests/test_wheels.py)
NEWEST_PYTHON=3.14
PYTORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

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

has_nvidia_gpu() {
  [ -e /proc/driver/nvidia/version ] || nvidia-smi -L >/dev/null 2>&1
}

torch_index() {  # where .venv's PyTorch comes from: an index's URL, or pypi
  if [ -n "${TORCH_INDEX:-}" ]; then
    echo "$TORCH_INDEX"
  elif [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && ! has_nvidia_gpu; then
    echo "$PYTORCH_CPU_INDEX"
  else
    echo pypi
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
    if ! grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
      echo "install.sh: --browser installs Debian's chromium and chromium-driver packages, on Debian only (Ubuntu serves them as snaps); elsewhere put chromium and chromedriver on PATH yourself" >&2
      exit 1
    fi
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

supported="$OLDEST_PYTHON to $NEWEST_PYTHON"
command -v "$python" >/dev/null || { echo "install.sh: $python not found; install Python $supported, or name one with PYTHON3=" >&2; exit 2; }
if ! "$python" -c "import sys; sys.exit(not (${OLDEST_PYTHON/./, }) <= sys.version_info[:2] <= (${NEWEST_PYTHON/./, }))"; then
  echo "install.sh: $python is Python $("$python" -c 'import platform; print(platform.python_version())'); the project supports $supported: name one with PYTHON3=python3.12" >&2
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
else
  index=$(torch_index)
  if [ "$index" != pypi ]; then
    if [ -n "${TORCH_INDEX:-}" ]; then
      echo "install.sh: PyTorch from $index (TORCH_INDEX)"
    else
      echo "install.sh: no NVIDIA GPU here, so PyTorch's CPU build from $index (TORCH_INDEX=pypi: PyPI's CUDA build)"
    fi
    if ! output=$("$venv/bin/python" -m pip install --quiet --retries 1 --timeout 30 --index-url "$index" \
        "$(grep '^torch==' requirements.txt)" 2>&1); then
      echo "install.sh: $index did not serve PyTorch ($(grep -m 1 ERROR <<<"$output")); taking PyPI's build instead, on Linux the CUDA one (about 5 GB)" >&2
    fi
  fi
fi
"$venv/bin/python" -m pip install --quiet -r "$requirements"
touch "$venv/.installed"
echo "done: $venv ($("$venv/bin/python" --version), $(du -sh "$venv" | cut -f1))"
