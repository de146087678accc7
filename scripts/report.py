"""The report's figures and GMM metrics, from a model that `vae.py ... train` saved.

    python scripts/report.py TRAIN.npz VAL.npz vae.pth gmm_params.pkl [--out report]

Writes into --out one PNG per figure, metrics.json (the GMM's accuracy, macro precision, recall and
F1, and F1avg, on the validation file and, where it has labels, the training file) and figures.pdf:
A4 pages with the tables of the architecture and the GMM metrics, then the figures in the
assignment's order, ready for a 3-page report. The training labels only colour the scatter plots and
score the GMM; nothing here changes the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from scipy.stats import norm  # noqa: E402
from torch import nn  # noqa: E402

from score import FIGURE_FINGERPRINT, classification_scores  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae  # noqa: E402  (vae.py is the product, one directory up)

A4_INCHES = (8.27, 11.69)
GRID_SIZE = 20  # the course's manifold is a 20x20 grid


def decode(model: vae.VAE, latents: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    with torch.no_grad():
        return model.decode(torch.from_numpy(latents.astype(np.float32))).numpy().reshape(-1, *image_shape)


def display_axes(latents: np.ndarray) -> np.ndarray:
    """The two latent dimensions to draw: all of them in 2-D, else the two of largest variance."""
    return np.sort(np.argsort(latents.var(axis=0))[::-1][:2])


def axes_note(latent_dim: int, axes: np.ndarray) -> str:
    if latent_dim == 2:
        return ""
    return f" (dimensions {axes[0] + 1} and {axes[1] + 1} of {latent_dim}, the largest variance)"


def digit_colour(digit: int):
    return plt.get_cmap("tab10")(int(digit) % 10)


def image_rows(rows: list[np.ndarray], row_labels: list[str], title: str):
    """A figure of image rows (each (n, H, W)), labelled on the left."""
    columns = max(len(row) for row in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(0.8 * columns + 1, 0.85 * len(rows) + 0.6),
                                squeeze=False)
    for r, (row, label) in enumerate(zip(rows, row_labels)):
        for c in range(columns):
            axis = axes[r, c]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if c < len(row):
                axis.imshow(row[c], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def manifold(model: vae.VAE, image_shape: tuple[int, ...], axes: np.ndarray, x_values: np.ndarray,
             y_values: np.ndarray, title: str):
    """Images decoded on a grid of latent points, the other dimensions at 0, in colour map gnuplot2."""
    latents = np.zeros((len(x_values) * len(y_values), model.latent_dim))
    latents[:, axes[0]] = np.tile(x_values, len(y_values))
    latents[:, axes[1]] = np.repeat(y_values[::-1], len(x_values))
    height, width = image_shape
    tiles = decode(model, latents, image_shape).reshape(len(y_values), len(x_values), height, width)
    canvas = tiles.transpose(0, 2, 1, 3).reshape(len(y_values) * height, len(x_values) * width)
    figure, axis = plt.subplots(figsize=(8, 8))
    extent = (x_values[0], x_values[-1], y_values[0], y_values[-1])
    square_tiles = (extent[1] - extent[0]) / (extent[3] - extent[2])
    axis.imshow(canvas, cmap="gnuplot2", extent=extent, aspect=square_tiles)
    axis.set_xlabel(f"z{axes[0] + 1}")
    axis.set_ylabel(f"z{axes[1] + 1}")
    axis.set_title(title + axes_note(model.latent_dim, axes))
    return figure


def scatter(axis, latents: np.ndarray, colour_by: np.ndarray, axes: np.ndarray, alpha: float) -> None:
    for digit in np.unique(colour_by):
        members = latents[colour_by == digit]
        axis.scatter(members[:, axes[0]], members[:, axes[1]], s=2, alpha=alpha, color=digit_colour(digit),
                     label=str(digit), rasterized=True)
    axis.set_xlabel(f"z{axes[0] + 1} (latent mean)")
    axis.set_ylabel(f"z{axes[1] + 1} (latent mean)")
    axis.legend(title="digit", markerscale=5)


def gmm_figure(gmm: vae.GMM, latents: np.ndarray, colour_by: np.ndarray, axes: np.ndarray, title: str):
    figure, axis = plt.subplots(figsize=(7, 6))
    scatter(axis, latents, colour_by, axes, alpha=0.15)
    for digit, mean, covariance in zip(gmm.digits, gmm.means, gmm.covariances):
        centre = mean[axes]
        eigenvalues, eigenvectors = np.linalg.eigh(covariance[np.ix_(axes, axes)])
        angle = np.degrees(np.arctan2(eigenvectors[1, 1], eigenvectors[0, 1]))
        for sigmas, style in ((1, "-"), (2, "--")):
            width, height = 2 * sigmas * np.sqrt(eigenvalues[::-1])
            axis.add_patch(Ellipse(centre, width, height, angle=angle, fill=False, linestyle=style,
                                   linewidth=1.8, edgecolor=digit_colour(digit)))
        axis.plot(*centre, marker="x", color="black", markersize=10, mew=2)
        axis.annotate(str(digit), centre, xytext=(6, 6), textcoords="offset points", fontsize=15, fontweight="bold")
    axis.set_title(title)
    return figure


def loss_figure(history: list[dict]):
    """The loss terms per epoch: the VAE's training, then the refinement toward the GMM and the decoder's own
    epochs, if any."""
    epochs = np.arange(1, len(history) + 1)
    stages = [entry.get("stage") for entry in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [entry["loss"] for entry in history], label="total (reconstruction + beta * KL + cluster loss)")
    left.plot(epochs, [entry["reconstruction"] for entry in history], label="reconstruction (BCE)")
    left.set_ylabel("nats per image")
    right.plot(epochs, [entry["kl"] for entry in history], color="tab:green")
    right.set_ylabel("KL(q(z|x) || N(0, I)), nats per image")
    for axis, title in ((left, "Training loss"), (right, "KL term")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        for stage, style, label in (("refine", ":", "refinement starts"), ("decoder", "--", "decoder alone")):
            if stage in stages:
                axis.axvline(stages.index(stage) + 0.5, color="grey", linestyle=style, label=label)
    left.legend()
    figure.tight_layout()
    return figure


def architecture_rows(model: vae.VAE) -> list[list[str]]:
    """One row per linear layer: its part, sizes, what follows it, and its parameters."""
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    rows = []
    for (name, module), (_, after) in zip(leaves, [*leaves[1:], ("", None)]):
        if not isinstance(module, nn.Linear):
            continue
        part = {"to_mean": "encoder: latent mean", "to_log_var": "encoder: latent log-variance"}.get(
            name, name.split(".")[0])
        then = "ELU" if isinstance(after, nn.ELU) else ("sigmoid: pixel probabilities" if part == "decoder" else "")
        rows.append([part, f"{module.in_features} -> {module.out_features}", then,
                     f"{vae.count_parameters(module):,}"])
    rows.append(["total", "", "", f"{vae.count_parameters(model):,}"])
    return rows


def where_the_labels_enter() -> str:
    """vae.py's own sentence on where the labels enter (its --help's), on one line."""
    return " ".join(next(part for part in vae.__doc__.split("\n\n") if part.startswith("Labels:")).split())


def table_page(pdf: PdfPages, title: str, tables: list[tuple[str, list[str], list[list[str]]]], note: str) -> None:
    figure = plt.figure(figsize=A4_INCHES)
    figure.suptitle(title, fontsize=14, y=0.97)
    top = 0.9
    for caption, header, rows in tables:
        height = 0.03 * (len(rows) + 1)
        axis = figure.add_axes((0.08, top - height, 0.84, height))
        axis.axis("off")
        axis.set_title(caption, loc="left", fontsize=11)
        axis.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center").scale(1, 1.4)
        top -= height + 0.1
    figure.text(0.08, top, textwrap.fill(note, 95), fontsize=10, va="top")
    pdf.savefig(figure)
    plt.close(figure)


def figure_pages(pdf: PdfPages, figures: list, per_page: int = 2) -> None:
    """The figures, rendered as they are saved to PNG, `per_page` to an A4 page."""
    for start in range(0, len(figures), per_page):
        page, slots = plt.subplots(per_page, 1, figsize=A4_INCHES)
        for slot, figure in zip(slots, [*figures[start:start + per_page], *[None] * per_page]):
            slot.axis("off")
            if figure is not None:
                figure.canvas.draw()
                slot.imshow(np.asarray(figure.canvas.buffer_rgba()))
        page.tight_layout()
        pdf.savefig(page, dpi=150)
        plt.close(page)


def make_report(train_path: str, val_path: str, vae_path: str, gmm_path: str, out: Path) -> tuple[dict, list[str]]:
    """Draw every figure and score the GMM; write them into `out`; return the metrics and the figures' names."""
    model, fingerprint = vae.load_model(vae_path)
    gmm = vae.load_gmm(gmm_path, fingerprint)
    gmm_fingerprint = vae.gmm_fingerprint(fingerprint, {key: getattr(gmm, key) for key in vae.GMM_ARRAYS})
    train = vae.load_images(train_path, model.input_dim)
    validation = vae.load_images(val_path, model.input_dim, labels="required")
    image_shape = train.pixels.shape[1:]
    train_latents = vae.latent_codes(model, train.pixels)
    val_latents = vae.latent_codes(model, validation.pixels)
    axes = display_axes(train_latents)
    note = axes_note(model.latent_dim, axes)
    train_predictions = gmm.predict(train_latents)
    colour_by, colour_source = (
        (train.labels, "true digit") if train.labels is not None else (train_predictions, "GMM prediction"))
    rng = np.random.default_rng(0)
    figures = {}

    shown = validation.pixels[:16]
    figures["reconstruction"] = image_rows(
        [shown, vae.reconstruct(model, shown)], ["original", "reconstructed"],
        "Validation images (top) and their reconstructions from the latent mean (bottom)")
    quantiles = norm.ppf(np.linspace(0.05, 0.95, GRID_SIZE))
    figures["manifold"] = manifold(model, image_shape, axes, quantiles, quantiles,
                                   "Latent manifold: decoded N(0, 1) quantiles 0.05 to 0.95")
    low, high = np.percentile(train_latents[:, axes], [1, 99], axis=0)
    figures["manifold_data"] = manifold(
        model, image_shape, axes, np.linspace(low[0], high[0], GRID_SIZE), np.linspace(low[1], high[1], GRID_SIZE),
        "Latent manifold over the training codes' 1st to 99th percentiles")
    figure, axis = plt.subplots(figsize=(7, 6))
    scatter(axis, train_latents, colour_by, axes, alpha=0.4)
    axis.set_title(f"Training images in latent space, coloured by {colour_source}{note}")
    figures["latent_scatter"] = figure
    figures["gmm"] = gmm_figure(gmm, train_latents, colour_by, axes,
                                f"GMM components: 1 and 2 sigma ellipses, means marked{note}")
    history_file = Path(vae.history_path(vae_path))
    if history_file.is_file():
        try:
            figures["loss"] = loss_figure(json.loads(history_file.read_text())["epochs"])
        except (ValueError, KeyError, TypeError):
            raise vae.InputError(f"{history_file}: not a training history written by vae.py train") from None
    else:
        print(f"no {history_file}: skipping loss.png")
    prior = decode(model, rng.standard_normal((64, model.latent_dim)), image_shape)
    figures["samples"] = image_rows(list(prior.reshape(8, 8, *image_shape)), [""] * 8,
                                    "Images decoded from samples of the prior N(0, I)")
    per_digit = [decode(model, rng.multivariate_normal(mean, covariance, size=10), image_shape)
                 for mean, covariance in zip(gmm.means, gmm.covariances)]
    figures["class_samples"] = image_rows(per_digit, [str(d) for d in gmm.digits],
                                          "Class-conditional samples: one row per GMM component")
    order = np.argsort(gmm.digits)
    pairs = [(order[i], order[(i + 1) % len(order)]) for i in range(len(order) if len(order) > 2 else 1)]
    steps = np.linspace(0, 1, 10)[:, None]
    walks = [decode(model, (1 - steps) * gmm.means[a] + steps * gmm.means[b], image_shape) for a, b in pairs]
    figures["interpolation"] = image_rows(
        walks, [f"{gmm.digits[a]} to {gmm.digits[b]}" for a, b in pairs],
        "Straight walks in latent space between the GMM means of two digits")

    metrics = {"validation": classification_scores(validation.labels, gmm.predict(val_latents))}
    if train.labels is not None:
        metrics["train"] = classification_scores(train.labels, train_predictions)
    names = list(metrics["validation"])
    metric_rows = [[split, *(f"{values[name]:.4f}" for name in names)] for split, values in metrics.items()]
    paths = [str(out / f"{name}.png") for name in figures]
    with vae.atomic_outputs(*paths, str(out / "metrics.json"), str(out / "figures.pdf")) as temporaries:
        for figure, temporary in zip(figures.values(), temporaries):
            figure.savefig(temporary, format="png", dpi=110, metadata={FIGURE_FINGERPRINT: gmm_fingerprint})
        Path(temporaries[-2]).write_text(json.dumps(metrics, indent=1))
        with PdfPages(temporaries[-1]) as pdf:
            table_page(pdf, "VAE + GMM: architecture and GMM metrics", [
                ("Architecture (MLP VAE; reconstruction decoded from the latent mean)",
                 ["part", "linear layer", "then", "parameters"], architecture_rows(model)),
                ("GMM metrics (F1avg = (macro F1 + micro F1) / 2)", ["split", *names], metric_rows)],
                where_the_labels_enter())
            figure_pages(pdf, list(figures.values()))
    for figure in figures.values():
        plt.close(figure)
    return metrics, list(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("train", "val", "vae", "gmm"):
        parser.add_argument(name)
    parser.add_argument("--out", type=Path, default=Path("report"), help="folder for the figures (default report/)")
    args = parser.parse_args()
    if args.out.exists() and not args.out.is_dir():
        sys.exit(f"report.py: error: {args.out}: is a file; --out needs a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        metrics, figures = make_report(args.train, args.val, args.vae, args.gmm, args.out)
    except vae.InputError as error:
        sys.exit(f"report.py: error: {error}")
    names = list(metrics["validation"])
    print(f"{'GMM':12}" + "".join(f"{name:>17}" for name in names))
    for split, values in metrics.items():
        print(f"{split:12}" + "".join(f"{values[name]:17.4f}" for name in names))
    print(f"wrote {len(figures)} figures ({', '.join(figures)}), metrics.json and figures.pdf to {args.out}")


if __name__ == "__main__":
    main()
