"""What limits the scores: the 2-D latent space, the training seed, the refinement's targets, or the GMM?

Trains vae.py's default classifier on the benchmark's development part of the course file, once per
seed (its VAE reads no label, so one training serves every validation draw, as in the benchmark), and
prints four tables:

- classification: the GMM's F1avg over the benchmark's validation draws, next to a k-nearest-
  neighbour classifier given every training label, in the latent space and in pixel spaces;
- teachers: how often the refinement's last targets, found without a label, are right on the training
  images, beside 2-D codes trained on every training label (the ceiling of such a code): an encoder of
  vae.py's shape (MLP 784-512-256-2) and a small CNN, each trained for 8 epochs, and the MLP trained as
  a strong baseline would be (30 epochs, a one-cycle rate, every batch jittered at strength 1), each
  classified as vae.py classifies, by one Gaussian per digit;
- the refinement's gaps, per round: how often its neighbour graph would be right if it knew every
  label, how often the round's targets and its mixture are right (each component matched to the digit
  it holds most of), how often the two agree, and the held-out score;
- reconstruction: 1 - MSE and SSIM on the images the VAE trained on and on held-out images.

    python scripts/limits.py --out docs/generated/limits.md   # seeds 0, 1 and 2, 5 draws each: make limits
    python scripts/limits.py --draws 1                        # draw 0 only

The kNN classifiers, the scoring of the targets and the supervised encoders read the training labels,
which vae.py never does: they measure how well the digits can be told apart, not a method anyone
could submit.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_data import add_course_file_argument, read_course_file, split_course_file, validation_and_test
from score import (
    classification_scores,
    machine,
    markdown_table,
    reconstruction_scores,
    shared_training_gmm,
    write_generated,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae  # noqa: E402  (vae.py is the product, one directory up)

NEIGHBOURS = 15


def knn_predict(train_points: torch.Tensor, train_labels: torch.Tensor, points: torch.Tensor) -> np.ndarray:
    """Majority vote of the NEIGHBOURS nearest training points (Euclidean)."""
    votes = []
    for chunk in points.split(1024):
        nearest = torch.cdist(chunk, train_points).topk(NEIGHBOURS, largest=False).indices
        votes.append(torch.mode(train_labels[nearest], dim=1).values)
    return torch.cat(votes).numpy()


def blurred(pixels: np.ndarray, sigma: float = 1.0) -> torch.Tensor:
    """Images blurred by a Gaussian of `sigma` pixels, flattened: a kinder metric than raw pixels."""
    radius = int(3 * sigma)
    taps = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma**2))
    kernel = torch.outer(taps, taps) / taps.sum() ** 2
    images = torch.from_numpy(pixels).unsqueeze(1)
    return F.conv2d(images, kernel[None, None], padding=radius).flatten(1)


def graph_vote_accuracy(pixels: np.ndarray, labels: torch.Tensor, k: int) -> float:
    """How right the refinement's graph could be: each training image's k nearest other images, by
    vae.py's own neighbour search, voting with their true labels."""
    others = vae.nearest_images(pixels, k + 1)[:, 1:]  # each image is its own nearest
    votes = torch.mode(labels[others], dim=1).values
    return (votes == labels).double().mean().item()


def traced_fit(train_pixels: np.ndarray, val_pixels: np.ndarray, val_labels: np.ndarray, config: vae.TrainConfig,
               truth: np.ndarray) -> tuple[vae.Fit, list[list[float]]]:
    """vae.fit_classifier itself, traced: in each refinement round of its last training, how often the round's
    targets are right, how often its mixture is right on the training codes (each component matched to the digit it
    holds most of, as the targets carry no digit), and how often the two agree."""
    refine = vae.refine_toward_gmm
    digits = np.unique(truth)
    rounds: list[list[float]] = []

    def recording_refine(model, data, targets, mixture, config):
        components = mixture.log_joint(vae.latent_codes(model, train_pixels)).argmax(axis=1)
        rounds.append([vae.agreement(targets, truth, digits), vae.agreement(components, truth, digits),
                       float(np.mean(components == targets))])
        return refine(model, data, targets, mixture, config)

    with mock.patch.object(vae, "refine_toward_gmm", recording_refine):
        fit = vae.fit_classifier(train_pixels, val_pixels, val_labels, config)
    return fit, rounds[len(rounds) - config.refine_rounds:]


SUPERVISED_EPOCHS = 8
SUPERVISED_LR = 1e-3
STRONG = {"epochs": 30, "lr": 2e-3, "jitter": 1.0}  # a strong baseline: longer, one-cycle, every batch jittered


def small_cnn() -> nn.Module:
    """Conv 32, pool, conv 64, pool, 256, then a 2-D code: for 28x28 images."""
    return nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 2))


def vae_shaped_encoder() -> nn.Module:
    """vae.py's encoder to the mean of its code: MLP 784-512-256-2, ELU."""
    model = vae.VAE()
    return nn.Sequential(model.encoder, model.to_mean)


def supervised_code_f1(encoder: nn.Module, train_pixels: np.ndarray, train_labels: np.ndarray,
                       held_pixels: np.ndarray, held_labels: np.ndarray, epochs: int = SUPERVISED_EPOCHS,
                       lr: float = SUPERVISED_LR, jitter: float = 0.0) -> float:
    """The ceiling of a 2-D code: `encoder` trained on every training label (cross-entropy through a linear head on
    its code), then its held-out codes classified as vae.py classifies them, by one Gaussian per digit fitted to the
    training codes; the held-out F1avg. With `jitter`, every batch is vae.jittered at that strength and the rate
    follows a one-cycle schedule peaking at `lr`; without, the rate is constant."""
    digits = np.unique(train_labels)
    head = nn.Linear(2, len(digits))
    images = torch.from_numpy(train_pixels)
    inputs = images.reshape(len(images), -1)
    targets = torch.from_numpy(np.searchsorted(digits, train_labels))
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    steps = epochs * math.ceil(len(inputs) / vae.DEFAULTS.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps) if jitter else None
    for _ in range(epochs):
        for batch in torch.randperm(len(inputs)).split(vae.DEFAULTS.batch_size):
            seen = vae.jittered(images[batch, None], jitter).flatten(1) if jitter else inputs[batch]
            loss = F.cross_entropy(head(encoder(seen)), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if schedule:
                schedule.step()
    with torch.no_grad():
        train_codes = encoder(inputs).double().numpy()
        held_codes = encoder(torch.from_numpy(held_pixels.reshape(len(held_pixels), -1))).double().numpy()
    members = [train_codes[train_labels == digit] for digit in digits]
    gaussians = vae.GMM(weights=np.array([len(codes) for codes in members]) / len(train_codes),
                        means=np.stack([codes.mean(axis=0) for codes in members]),
                        covariances=np.stack([np.cov(codes.T, bias=True) for codes in members]), digits=digits)
    return classification_scores(held_labels, gaussians.predict(held_codes))["F1avg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    parser.add_argument("--draws", type=int, default=5, help="validation draws per seed (default 5)")
    add_course_file_argument(parser)
    parser.add_argument("--out", type=Path, help="also write the tables into this page (make limits: "
                        "docs/generated/limits.md)")
    args = parser.parse_args()
    ran_on = machine()
    images, labels = read_course_file(args.data)
    train, held_out = split_course_file(labels)
    train_pixels = images[train].astype(np.float32) / 255
    held_pixels = images[held_out].astype(np.float32) / 255
    train_labels = torch.from_numpy(labels[train])
    position = {index: i for i, index in enumerate(held_out)}

    def knn_accuracy(train_points, held_points) -> float:
        predicted = knn_predict(torch.as_tensor(train_points), train_labels, torch.as_tensor(held_points))
        return classification_scores(labels[held_out], predicted)["accuracy"]

    flat_train, flat_held = train_pixels.reshape(len(train), -1), held_pixels.reshape(len(held_out), -1)
    classification = [
        ["pixels", "-", "-", f"{knn_accuracy(flat_train, flat_held):.4f}"],
        ["blurred pixels (sigma 1)", "-", "-", f"{knn_accuracy(blurred(train_pixels), blurred(held_pixels)):.4f}"],
        ["deskewed, 3x3 box (the refinement's graph)", "-", "-",
         f"{knn_accuracy(vae.neighbour_features(train_pixels), vae.neighbour_features(held_pixels)):.4f}"],
    ]
    graph = graph_vote_accuracy(train_pixels, train_labels, vae.DEFAULTS.refine_neighbours)
    gaps = []
    teachers = []
    reconstruction = []
    every_fourth = np.arange(0, len(train), 4)
    for seed in args.seeds:
        start = time.perf_counter()
        config = vae.TrainConfig(seed=seed)
        scores = []
        for draw in range(args.draws):
            validation, test = validation_and_test(labels, held_out, draw)
            validation_pixels = held_pixels[[position[i] for i in validation]]
            if draw == 0:  # one training per seed serves every draw: the VAE reads no label
                fit, rounds = traced_fit(train_pixels, validation_pixels, labels[validation], config, labels[train])
                model, gmm = fit.model, fit.gmm
            else:
                model = fit.model
                gmm = shared_training_gmm(model, fit.trainings, train_pixels, validation_pixels, labels[validation])
                if gmm is None:  # train would train again for these labelled images
                    model, gmm, *_ = vae.fit_classifier(train_pixels, validation_pixels, labels[validation], config)
            predicted = gmm.predict(vae.latent_codes(model, held_pixels[[position[i] for i in test]]))
            scores.append(classification_scores(labels[test], predicted)["F1avg"])
        for number, fractions in enumerate(rounds, start=1):
            gaps.append([f"seed {seed}", str(number), f"{graph:.4f}", *(f"{value:.4f}" for value in fractions),
                         f"{scores[0]:.4f}"])
        knn = knn_accuracy(vae.latent_codes(fit.model, train_pixels), vae.latent_codes(fit.model, held_pixels))
        classification.append([f"latent, seed {seed}", f"{np.mean(scores):.4f}", f"{np.min(scores):.4f}",
                               f"{knn:.4f}"])
        targets_right = f"{rounds[-1][0]:.4f}" if rounds else "-"
        teachers.append([f"vae.py: its refinement's last targets, found without a label, seed {seed}", targets_right,
                         f"{np.mean(scores):.4f}"])
        encoders = (("MLP 784-512-256-2", vae_shaped_encoder, {}), ("small CNN", small_cnn, {}),
                    ("MLP 784-512-256-2, 30 epochs, jitter 1 (strong)", vae_shaped_encoder, STRONG))
        for name, encoder, training in encoders:
            torch.manual_seed(seed)
            f1 = supervised_code_f1(encoder(), train_pixels, labels[train], held_pixels, labels[held_out], **training)
            teachers.append([f"every training label: {name}, seed {seed}", "1.0000", f"{f1:.4f}"])
        seen = reconstruction_scores(images[train][every_fourth],
                                     vae.reconstruct(fit.model, train_pixels[every_fourth]))
        unseen = reconstruction_scores(images[held_out], vae.reconstruct(fit.model, held_pixels))
        reconstruction.append([f"seed {seed}", f"{seen['1-MSE']:.4f}", f"{seen['SSIM']:.4f}",
                               f"{unseen['1-MSE']:.4f}", f"{unseen['SSIM']:.4f}"])
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    tables = "\n\n".join([
        f"training images {len(train)}, held-out images {len(held_out)}, {args.draws} validation draws per seed "
        "(the GMM F1avg's mean and min over them)",
        markdown_table(["space", "GMM F1avg mean", "GMM F1avg min", f"{NEIGHBOURS}-NN accuracy, all labels"],
                       classification),
        markdown_table(["2-D code (MLP unless named), trained toward", "right on the training images",
                        "held-out F1avg (vae.py: mean over the draws; every label: one Gaussian per digit)"],
                       teachers),
        markdown_table(["model", "round", f"graph's {vae.DEFAULTS.refine_neighbours}-NN vote, all labels",
                        "targets right", "round's mixture right", "mixture agrees with targets",
                        "held-out F1avg, draw 0"], gaps),
        markdown_table(["model", "trained-on 1-MSE", "trained-on SSIM", "held-out 1-MSE", "held-out SSIM"],
                       reconstruction),
    ])
    print(f"\n{tables}")
    if args.out:
        command = f"python scripts/limits.py --seeds {' '.join(map(str, args.seeds))} --draws {args.draws}"
        write_generated(args.out, command, tables, ran_on)


if __name__ == "__main__":
    main()
