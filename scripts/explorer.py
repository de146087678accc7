"""An interactive page of a trained model's latent space: one self-contained HTML file.

    python scripts/explorer.py TRAIN.npz VAL.npz vae.pth gmm_params.pkl --out explorer

Writes OUT/explorer.html, which opens from disk in any current browser with no network: the page's
script, its style and the model's weights are all inside it. It shows the training codes coloured by
the GMM's predicted digit (TRAIN's labels are never read), the GMM's 1- and 2-sigma ellipses and the
validation images marked by their digit; the image decoded from the point under the cursor, with the
GMM's posterior; a drawing pad whose drawing the model encodes, classifies and reconstructs; and the
straight walk between two clicked points, decoded. The page runs the encoder and the decoder itself,
from their weights embedded as float32, and hands them to tests as `window.vaeExplorer`.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae  # noqa: E402  (vae.py is the product, one directory up)

TEMPLATE = Path(__file__).with_name("explorer.html")
PLACEHOLDER = "{{EXPLORER_DATA}}"
PAGE_NAME = "explorer.html"
MAX_PAGE_BYTES = 8_000_000
DEFAULT_MAX_POINTS = 6000
SAMPLE_SEED = 0


def float32_base64(values: np.ndarray | torch.Tensor) -> str:
    """Little-endian float32 bytes in base64: a Float32Array in the page."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def linear_layers(state: dict[str, torch.Tensor], module: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of each Linear layer under `module`, in the order they run, found by key name:
    encoder.0, encoder.2, ...; decoder.0.0, decoder.0.2, ..., decoder.1. ELUs hold no weights."""
    names = [key.removesuffix(".weight") for key in state
             if key.endswith(".weight") and (key == f"{module}.weight" or key.startswith(f"{module}."))]
    names.sort(key=lambda name: [int(part) for part in name.split(".")[1:]])
    return [(state[f"{name}.weight"], state[f"{name}.bias"]) for name in names]


def network(layers: list[tuple[torch.Tensor, torch.Tensor]], last_activation: str) -> list[dict]:
    """The page's description of an MLP: an ELU after every layer but the last."""
    activations = ["elu"] * (len(layers) - 1) + [last_activation]
    return [{"inputs": weight.shape[1], "outputs": weight.shape[0], "activation": activation,
             "weight": float32_base64(weight), "bias": float32_base64(bias)}
            for (weight, bias), activation in zip(layers, activations)]


def sample_indices(count: int, max_points: int) -> np.ndarray:
    """All indices, or a fixed random sample of `max_points` of them in order: the same page every run."""
    if count <= max_points:
        return np.arange(count)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(count, max_points, replace=False))


def page_data(train_path: str, val_path: str, vae_path: str, gmm_path: str, max_points: int) -> dict:
    """Everything the page shows, checked and computed from the four input files."""
    model, fingerprint = vae.load_model(vae_path)
    if model.latent_dim != 2:
        raise vae.InputError(f"{vae_path}: the explorer draws a 2-D latent space; this model's is "
                             f"{model.latent_dim}-D")
    gmm = vae.load_gmm(gmm_path, fingerprint)
    train = vae.load_images(train_path, model.input_dim, labels="ignore")
    validation = vae.load_images(val_path, model.input_dim, labels="required")
    train_codes = vae.latent_codes(model, train.pixels)
    shown = sample_indices(len(train_codes), max_points)
    state = model.state_dict()
    return {
        "imageShape": list(train.pixels.shape[1:]),
        "encoder": network(linear_layers(state, "encoder") + linear_layers(state, "to_mean"), "none"),
        "decoder": network(linear_layers(state, "decoder"), "sigmoid"),
        "gmm": {"weights": gmm.weights.tolist(), "means": gmm.means.tolist(), "covariances": gmm.covariances.tolist(),
                "digits": gmm.digits.tolist()},
        "train": {"codes": float32_base64(train_codes[shown]), "shown": len(shown), "total": len(train_codes)},
        "validation": {"codes": vae.latent_codes(model, validation.pixels).tolist(),
                       "digits": validation.labels.tolist()},
        "files": {"train": Path(train_path).name, "validation": Path(val_path).name, "model": Path(vae_path).name,
                  "gmm": Path(gmm_path).name},  # names only: pages are shared, and paths name their owners
    }


def render_page(data: dict) -> str:
    """The template with `data` in place of its placeholder, safe inside a <script> element."""
    template = TEMPLATE.read_text(encoding="utf-8")
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return template.replace(PLACEHOLDER, payload, 1)


def write_explorer(train_path: str, val_path: str, vae_path: str, gmm_path: str, out: Path,
                   max_points: int = DEFAULT_MAX_POINTS) -> tuple[Path, int, dict]:
    """Write OUT/explorer.html atomically; returns its path, its size in bytes and the page's data."""
    if out.exists() and not out.is_dir():
        raise vae.InputError(f"{out}: is a file; --out needs a folder")
    if max_points < 1:
        raise vae.InputError(f"--max-points must be at least 1, got {max_points}")
    data = page_data(train_path, val_path, vae_path, gmm_path, max_points)
    page = render_page(data).encode("utf-8")
    if len(page) > MAX_PAGE_BYTES:
        raise vae.InputError(f"the page would take {len(page) / 1e6:.1f} MB, over the {MAX_PAGE_BYTES / 1e6:.0f} MB "
                             "limit: the model is too large to embed (or lower --max-points)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / PAGE_NAME
    vae.check_writable(str(path))
    with vae.atomic_outputs(str(path)) as (temporary,):
        Path(temporary).write_bytes(page)
    return path, len(page), data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="explorer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", metavar="TRAIN.npz", help="training images (their labels are never read)")
    parser.add_argument("val", metavar="VAL.npz", help="validation images with 'labels', marked by digit")
    parser.add_argument("vae", metavar="vae.pth", help="the model's state_dict, from vae.py ... train")
    parser.add_argument("gmm", metavar="gmm_params.pkl", help="the GMM fitted with that model")
    parser.add_argument("--out", type=Path, default=Path("explorer"),
                        help=f"folder for {PAGE_NAME}, made if missing (default explorer/)")
    parser.add_argument("--max-points", type=int, default=DEFAULT_MAX_POINTS,
                        help=f"most training codes on the scatter; a fixed sample of them beyond that "
                             f"(default {DEFAULT_MAX_POINTS})")
    args = parser.parse_args(argv)
    try:
        path, size, data = write_explorer(args.train, args.val, args.vae, args.gmm, args.out, args.max_points)
    except (vae.InputError, OSError) as error:
        sys.exit(f"explorer.py: error: {error}")
    print(f"wrote {path} ({size / 1e6:.1f} MB): {data['train']['shown']:,} of {data['train']['total']:,} "
          f"training codes, {len(data['validation']['digits'])} validation images")


if __name__ == "__main__":
    main()
