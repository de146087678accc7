"""Few-shot digit classification with a VAE and a Gaussian mixture (COL333/COL671 A3, Part II).

Start reading at `fit_classifier`: the method, its check and its restart, on one screen. An MLP VAE
learns a 2-D latent space from the training images, a refinement pulls its codes toward clusters of
the images found without a label, and a Gaussian mixture written in NumPy, fitted by EM on the codes
from the validation images' class means, turns the codes into a classifier.

Labels: the VAE, its refinement included, trains on no label; the 5 labelled validation images per
digit only start the GMM at their class means, name its components and check it, and where the check
finds two digits merged, training starts again from another seed.

modes:
  train                trains the VAE on TRAIN's images (never its labels), fits a GMM component
                       per digit of VAL's; saves vae.pth (a state_dict), gmm_params.pkl (a dict)
  test_reconstruction  writes vae_reconstructed.npz: each image decoded from its code (float32)
  test_classifier      writes vae.csv: header Predicted_Label, one digit per image

Images: .npz with key 'data' (or a single array) and optional 'labels'; uint8 0-255,
float 0-1 or 0-255; (N,H,W), (N,H*W), (N,1,H,W) or (H,W). The report: scripts/report.py.
"""

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import math
import os
import pickle
import platform
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger("vae")  # train's progress: printed by the command line, silent on import
PROGRAM = "vae.py"  # how errors and warnings begin


class InputError(Exception):
    """A problem with the user's input or command line: reported in one line, exit code 2."""


# -------------------------------------------------------------------------------------------------
# Settings: every training default, once. The flags of `train` are made from these fields.


def _setting(default, meaning: str):
    return dataclasses.field(default=default, metadata={"help": meaning})


def flag(name: str) -> str:
    """The command-line flag of a setting: refine_epochs -> --refine-epochs."""
    return "--" + name.replace("_", "-")


JITTER_DEGREES = 10  # at --refine-jitter 1: the turn, scale and shift that handwriting varies by
JITTER_SCALE = 0.1
JITTER_SHIFT = 0.1  # of the affine grid's [-1, 1] span: 5 % of the side

DECODER_BATCH_FACTOR = 4  # a quarter of the steps: batches half as large measured the same SSIM

LARGEST_SIZE = 2**31 - 1  # bounds whole-number settings: torch's sizes and seeds overflow beyond
LARGEST_REAL = float(np.finfo(np.float32).max)  # bounds real settings: float32 overflows beyond
DEVICES = ("cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = _setting(40, "passes over the training images")
    batch_size: int = _setting(128, "images per optimiser step")
    lr: float = _setting(2e-3, "peak learning rate")
    beta: float = _setting(0.1, "weight of the KL term; 0.1 gives clusters the GMM separates well")
    hidden: tuple[int, ...] = _setting((512, 256), "encoder's hidden layers, decoder's reversed")
    latent_dim: int = _setting(2, "latent dimensions")
    refine_rounds: int = _setting(8, "refinement rounds after the first stage (0: none)")
    refine_epochs: int = _setting(7, "passes over the images per round, pulling codes to clusters")
    refine_weight: float = _setting(50.0, "weight of the refinement's cluster loss")
    refine_lr: float = _setting(6e-4, "learning rate of the refinement")
    refine_neighbours: int = _setting(10, "nearest images that choose each image's cluster")
    refine_jitter: float = _setting(
        1.0, "random turns, scalings, shifts of views also pulled (1: "
        f"{JITTER_DEGREES} deg, {JITTER_SCALE * 100:g} %%, {JITTER_SHIFT * 50:g} %% of the side)")
    decoder_epochs: int = _setting(
        20, f"passes training the decoder alone, last, on {DECODER_BATCH_FACTOR}x batches (0 none)")
    ssim_weight: float = _setting(1.5, "weight of (1 - SSIM) in those passes, per pixel")
    restarts: int = _setting(2, "trainings from a derived seed, at most, when digits are merged")
    seed: int = _setting(0, "random seed")
    device: str = _setting("cpu", "cpu, as measured over seeds, or cuda (never measured)")

    def __post_init__(self) -> None:
        minimums = dict(epochs=1, batch_size=1, latent_dim=2, refine_rounds=0, refine_epochs=1,
                        refine_neighbours=1, decoder_epochs=0, restarts=0, seed=0)
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not minimum <= value <= LARGEST_SIZE:
                raise InputError(f"{flag(name)} must be between {minimum} and {LARGEST_SIZE}, "
                                 f"got {value}")
        ranges = {"refine_jitter": 5, "ssim_weight": LARGEST_REAL}  # jitter 10: views of one pixel
        for name, largest in ranges.items():
            value = getattr(self, name)
            if not 0 <= value <= largest:
                raise InputError(f"{flag(name)} must be between 0 and {largest:.3g}, got {value}")
        for name in ("lr", "beta", "refine_weight", "refine_lr"):
            value = getattr(self, name)
            if not 0 < value <= LARGEST_REAL:
                raise InputError(f"{flag(name)} must be a positive number up to "
                                 f"{LARGEST_REAL:.3g}, got {value}")
        if not self.hidden or not 1 <= min(self.hidden) <= max(self.hidden) <= LARGEST_SIZE:
            sizes = " ".join(map(str, self.hidden))
            raise InputError(f"--hidden must be sizes between 1 and {LARGEST_SIZE}, got {sizes}")
        if self.device not in DEVICES:
            raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {self.device}")


DEFAULTS = TrainConfig()

# -------------------------------------------------------------------------------------------------
# Model and losses: an MLP encoder to a Gaussian posterior q(z|x), an MLP decoder to Bernoulli
# pixel logits, and the beta-VAE loss; SSIM, which the course scores reconstructions by.


class VAE(nn.Module):
    def __init__(self, input_dim: int = 784, hidden_dims: tuple[int, ...] = DEFAULTS.hidden,
                 latent_dim: int = DEFAULTS.latent_dim) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.encoder = _mlp([input_dim, *hidden_dims])
        self.to_mean = nn.Linear(hidden_dims[-1], latent_dim)
        self.to_log_var = nn.Linear(hidden_dims[-1], latent_dim)
        self.decoder = nn.Sequential(_mlp([latent_dim, *reversed(hidden_dims)]),
                                     nn.Linear(hidden_dims[0], input_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x.flatten(1))
        return self.to_mean(hidden), self.to_log_var(hidden)

    @staticmethod
    def sample(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """z ~ q(z|x) by the reparameterisation trick, so gradients reach the encoder."""
        return mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel intensities in [0, 1], flat: (N, input_dim). `decoder` alone gives their logits."""
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction in [0, 1], mean, log-variance); decoded from the mean in eval mode."""
        mean, log_var = self.encode(x)
        z = self.sample(mean, log_var) if self.training else mean
        return self.decode(z), mean, log_var

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "VAE":
        """Rebuild a VAE of whatever sizes `state` was trained with, and load it."""
        hidden = tuple(weight.shape[0] for key, weight in state.items()
                       if key.startswith("encoder.") and key.endswith(".weight"))
        input_dim = state["encoder.0.weight"].shape[1]
        model = cls(input_dim, hidden, latent_dim=state["to_mean.weight"].shape[0])
        model.load_state_dict(state)
        return model.eval()


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers = []
    for size_in, size_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(size_in, size_out), nn.ELU()]
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def vae_loss(logits: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
             beta: float) -> dict[str, torch.Tensor]:
    """Per image: Bernoulli reconstruction in nats + beta * KL(q(z|x) || N(0, I)), and terms."""
    bce = F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="sum")
    reconstruction = bce / len(x)
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp()) / len(x)
    return {"loss": reconstruction + beta * kl, "reconstruction": reconstruction, "kl": kl}


def sampled_vae_loss(model: VAE, x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
                     beta: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """vae_loss of x decoded from a sample of q(z|x), and the logits decoded."""
    logits = model.decoder(model.sample(mean, log_var))
    return vae_loss(logits, x, mean, log_var, beta), logits


SSIM_WINDOW = 7  # skimage's default: the side of the uniform windows SSIM is averaged over


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each image's SSIM, for images (N, H, W) in [0, 1], differentiable and equal to
    skimage.metrics.structural_similarity(x, y, data_range=1), by which the course scores."""
    c1 = 0.01**2
    c2 = 0.03**2
    moments = torch.stack([x, y, x * x, y * y, x * y], dim=1)
    across = _window_average(moments)  # (N, 5, H, W - 6)
    local = _window_average(across.transpose(-2, -1))  # (N, 5, W - 6, H - 6): every 7x7 window
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = local.unbind(dim=1)
    unbiased = SSIM_WINDOW**2 / (SSIM_WINDOW**2 - 1)
    var_x = unbiased * (mean_xx - mean_x * mean_x)
    var_y = unbiased * (mean_yy - mean_y * mean_y)
    cov_xy = unbiased * (mean_xy - mean_x * mean_y)
    luminance = (2 * mean_x * mean_y + c1) / (mean_x * mean_x + mean_y * mean_y + c1)
    structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    return (luminance * structure).mean(dim=(1, 2))


def _window_average(images: torch.Tensor) -> torch.Tensor:
    """The mean of each window of SSIM_WINDOW pixels along the last axis: a band product."""
    size = images.shape[-1]
    starts = torch.arange(size - SSIM_WINDOW + 1, device=images.device)
    pixels = torch.arange(size, device=images.device)[:, None]
    band = (pixels >= starts) & (pixels < starts + SSIM_WINDOW)
    return images @ (band.to(images.dtype) / SSIM_WINDOW)


# -------------------------------------------------------------------------------------------------
# Stages: each a plain function of its batch loss, run by one loop of Adam over shuffled batches of
# images already on the training device.

WARMUP_FRACTION = 0.2  # of a stage's steps: Adam's first moment estimates are noisy, so ramp up

Schedule = Callable[[int], Callable[[int], float]]  # a stage's steps -> each step's rate factor


def warmup_cosine(total_steps: int,
                  warmup_fraction: float = WARMUP_FRACTION) -> Callable[[int], float]:
    """Learning-rate factor per step: a linear warm-up, then a cosine decay towards zero."""
    warmup = max(1, round(warmup_fraction * total_steps))
    decay_steps = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / decay_steps, 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def constant_rate(total_steps: int) -> Callable[[int], float]:
    return lambda step: 1.0


BatchLoss = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # batch indices -> "loss", terms


def run_epochs(stage: str, batch_loss: BatchLoss, parameters: Iterator[nn.Parameter],
               data: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
               schedule: Schedule) -> list[dict[str, float]]:
    """Adam on `parameters` over `epochs` shuffled passes of `data`, minimising
    `batch_loss(batch indices)["loss"]` at `lr` times the `schedule`; each epoch's mean terms."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    scheduler = LambdaLR(optimizer, schedule(epochs * math.ceil(len(data) / batch_size)))
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        totals: dict[str, torch.Tensor] = {}
        for batch in torch.randperm(len(data), device=data.device).split(batch_size):
            terms = batch_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            scheduler.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0) + value.detach() * len(batch)
        means = {name: total.item() / len(data) for name, total in totals.items()}
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(f"the loss became {means['loss']} in {stage} epoch {epoch}; "
                                     "try a smaller --lr, or smaller loss weights")
        seconds = time.perf_counter() - start
        history.append({"stage": stage, "epoch": epoch, **means, "seconds": seconds})
        if epoch % max(1, epochs // 20) == 0 or epoch == epochs:  # at most about 20 lines
            shown = "  ".join(f"{name} {value:.3f}" for name, value in means.items())
            log.info(f"{stage} {epoch:3d}/{epochs}  {shown}  {seconds:5.1f} s")
    return history


def train_vae(data: torch.Tensor, config: TrainConfig = DEFAULTS) -> tuple[VAE, list[dict]]:
    """The first stage: a VAE fitted to the images `data` by the VAE loss; with its history."""
    torch.manual_seed(config.seed)
    model = VAE(data[0].numel(), config.hidden, config.latent_dim)
    log.info(f"VAE parameters: {count_parameters(model):,}")
    model.to(data.device).train()

    def batch_loss(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = data[batch]
        return sampled_vae_loss(model, x, *model.encode(x), config.beta)[0]

    history = run_epochs("vae", batch_loss, model.parameters(), data, epochs=config.epochs,
                         batch_size=config.batch_size, lr=config.lr, schedule=warmup_cosine)
    return model, history


def train_decoder(model: VAE, data: torch.Tensor, config: TrainConfig) -> list[dict[str, float]]:
    """The last stage: the decoder alone, on BCE and 1 - SSIM; no code, so no prediction, moves."""
    pixel_count = data[0].numel()
    scores_ssim = min(data.shape[1:]) >= SSIM_WINDOW and config.ssim_weight > 0
    model.train()

    def batch_loss(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = data[batch]
        with torch.no_grad():  # the encoder is held as it is
            mean, log_var = model.encode(x)
        terms, logits = sampled_vae_loss(model, x, mean, log_var, config.beta)
        if scores_ssim:
            terms["ssim"] = ssim(torch.sigmoid(logits).view_as(x), x).mean()
            terms["loss"] = terms["loss"] + config.ssim_weight * pixel_count * (1 - terms["ssim"])
        return terms

    return run_epochs("decoder", batch_loss, model.decoder.parameters(), data,
                      epochs=config.decoder_epochs,
                      batch_size=DECODER_BATCH_FACTOR * config.batch_size, lr=config.lr,
                      schedule=warmup_cosine)


@torch.no_grad()
def latent_codes(model: VAE, pixels: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Each image's code, the mean of q(z|x), wherever the model is; float64, for the GMM."""
    device = next(model.parameters()).device
    data = torch.from_numpy(pixels.reshape(len(pixels), -1))
    codes = [model.encode(chunk.to(device))[0].cpu() for chunk in data.split(batch_size)]
    return torch.cat(codes).double().numpy()


@torch.no_grad()
def reconstruct(model: VAE, pixels: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Decode each image's code: no sampling, so the same input gives the same output."""
    device = next(model.parameters()).device
    codes = torch.from_numpy(latent_codes(model, pixels, batch_size)).float()
    decoded = [model.decode(chunk.to(device)).cpu() for chunk in codes.split(batch_size)]
    return torch.cat(decoded).numpy().reshape(pixels.shape)


# -------------------------------------------------------------------------------------------------
# Gaussian mixture: EM in the log domain with full covariances. Its points may include labelled
# ones, each held in its digit's component and weighing GMM_LABELLED_WEIGHT unlabelled ones.

GMM_REG_COVAR = 1e-6  # added to covariance diagonals, keeps every component invertible
GMM_TOL = 1e-6  # stop EM when the mean log-likelihood gains less than this
GMM_MAX_ITER = 500
GMM_LABELLED_WEIGHT = 10.0  # each labelled validation point counts as 10 unlabelled ones


@dataclasses.dataclass(frozen=True, eq=False)
class GMM:
    """A Gaussian mixture over latent codes, each component named by a digit, and how EM went."""

    weights: np.ndarray  # (K,): positive, summing to 1
    means: np.ndarray  # (K, D)
    covariances: np.ndarray  # (K, D, D): symmetric positive definite
    digits: np.ndarray  # (K,) whole numbers: the refinement's mixtures number their components
    log_likelihood_trace: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0))
    converged: bool = False  # whether EM stopped by GMM_TOL rather than by its iteration cap

    @property
    def n_iter(self) -> int:
        """EM's iterations: one objective each."""
        return len(self.log_likelihood_trace)

    def log_joint(self, points: np.ndarray) -> np.ndarray:
        """log(weight_k) + log N(x | mean_k, cov_k): (N points, K components)."""
        log_densities = np.empty((len(points), len(self.means)))
        for k, (mean, covariance) in enumerate(zip(self.means, self.covariances)):
            cholesky = np.linalg.cholesky(covariance)
            whitened = np.linalg.solve(cholesky, (points - mean).T)
            log_det = 2.0 * np.log(np.diag(cholesky)).sum()
            squared_distance = np.square(whitened).sum(axis=0)
            log_normaliser = points.shape[1] * np.log(2 * np.pi) + log_det
            log_densities[:, k] = -0.5 * (log_normaliser + squared_distance)
        return np.log(self.weights) + log_densities

    def predict(self, points: np.ndarray) -> np.ndarray:
        """The digit of the most probable component for each point."""
        return self.digits[self.log_joint(points).argmax(axis=1)]


def expectation_step(gmm: GMM, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each point's log p(x), and its responsibilities p(k | x): (N,), (N, K)."""
    from scipy.special import logsumexp  # train only: the test modes start without SciPy

    log_joint = gmm.log_joint(points)
    log_evidence = logsumexp(log_joint, axis=1)
    return log_evidence, np.exp(log_joint - log_evidence[:, None])


def maximisation_step(points: np.ndarray, responsibilities: np.ndarray, digits: np.ndarray,
                      reg_covar: float = GMM_REG_COVAR) -> GMM:
    """The mixture likeliest under `responsibilities` (N, K); a component with none keeps ~0."""
    totals = responsibilities.sum(axis=0) + 10 * np.finfo(float).eps
    weights = totals / totals.sum()
    means = responsibilities.T @ points / totals[:, None]
    covariances = np.empty((len(means), points.shape[1], points.shape[1]))
    for k, mean in enumerate(means):
        centred = points - mean
        covariances[k] = (responsibilities[:, k, None] * centred).T @ centred / totals[k]
        covariances[k].flat[:: points.shape[1] + 1] += reg_covar
    return GMM(weights, means, covariances, digits)


def fit_gmm(points: np.ndarray, start: GMM, labelled_points: np.ndarray | None = None,
            labelled_components: np.ndarray | None = None,
            labelled_weight: float = GMM_LABELLED_WEIGHT, reg_covar: float = GMM_REG_COVAR,
            tol: float = GMM_TOL, max_iter: int = GMM_MAX_ITER) -> GMM:
    """EM from the mixture `start`, with the trace of the objective, which it never decreases."""
    # With U the unlabelled points, L the labelled ones, each held in its component k_i, and w their
    # weight, the objective is the weighted mean log-likelihood (semi-supervised EM, Nigam et al.):
    #   [ sum_{x in U} log sum_k p(x, k) + w sum_{(x, k_i) in L} log p(x, k_i) ] / (|U| + w |L|)
    if labelled_points is None:
        labelled_points = np.empty((0, points.shape[1]))
        labelled_components = np.empty(0, int)
    labelled_responsibilities = np.eye(len(start.means))[labelled_components]  # one-hot: held
    all_points = np.concatenate([points, labelled_points])
    point_weights = np.concatenate([np.ones(len(points)),
                                    np.full(len(labelled_points), labelled_weight)])
    labelled_rows = np.arange(len(labelled_points))
    gmm = start
    trace: list[float] = []
    converged = False
    for _ in range(max_iter):
        log_evidence, unlabelled = expectation_step(gmm, points)
        labelled_term = gmm.log_joint(labelled_points)[labelled_rows, labelled_components]
        objective = log_evidence.sum() + labelled_weight * labelled_term.sum()
        trace.append(float(objective / point_weights.sum()))
        converged = len(trace) > 1 and abs(trace[-1] - trace[-2]) < tol
        if converged:
            break
        responsibilities = np.concatenate([unlabelled, labelled_responsibilities])
        gmm = maximisation_step(all_points, responsibilities * point_weights[:, None],
                                start.digits, reg_covar)
    return dataclasses.replace(gmm, log_likelihood_trace=np.array(trace), converged=converged)


def matching(scores: np.ndarray) -> np.ndarray:
    """Row r's column in the one-to-one matching of `scores` (K, K) with the largest total."""
    from scipy.optimize import linear_sum_assignment  # train only

    return linear_sum_assignment(scores, maximize=True)[1]


def fit_digit_gmm(train_codes: np.ndarray, val_codes: np.ndarray, val_labels: np.ndarray) -> GMM:
    """A component per digit, started at its validation class mean; EM holds the labelled there."""
    digits = np.unique(val_labels)
    components = np.searchsorted(digits, val_labels)
    means = np.stack([val_codes[components == k].mean(axis=0) for k in range(len(digits))])
    dimensions = train_codes.shape[1]
    # K clusters side by side span about K times one cluster's width along the axes that part them,
    # so one cluster's covariance starts at the codes' covariance over K squared
    start_covariance = np.cov(train_codes.T).reshape(dimensions, -1) / len(digits) ** 2
    try:  # GMM.log_joint's Cholesky factors
        np.linalg.cholesky(start_covariance)
    except np.linalg.LinAlgError:
        raise InputError("the latent codes of these images do not spread out, so no GMM fits: "
                         "are the images blank or all alike, or is --beta too large?") from None
    covariances = np.repeat(start_covariance[None], len(digits), axis=0)
    weights = np.full(len(digits), 1 / len(digits))
    fitted = fit_gmm(train_codes, GMM(weights, means, covariances, digits), val_codes, components)
    # Ten points a digit can still be outweighed, and EM carry a component onto another digit's
    # cluster: name the components afresh, by the matching under which the labelled are likeliest.
    score = np.zeros((len(digits), len(digits)))  # [d, k]: digit d's labelled points under k
    np.add.at(score, components, fitted.log_joint(val_codes))
    named = np.empty_like(digits)
    named[matching(score)] = digits
    return dataclasses.replace(fitted, digits=named)


# -------------------------------------------------------------------------------------------------
# Refinement, without a label (self-training, as DEC and IDEC): the training images are parted into
# as many clusters as there are digits by their neighbour graph alone; each round fits a mixture to
# the codes by EM with no label, gives each image the component its nearest images favour, and
# pulls its code, and a jittered view's, toward it.


def deskewed(pixels: np.ndarray) -> torch.Tensor:
    """Images (N, H, W) sheared upright and centred by their moments."""
    images = torch.from_numpy(pixels)
    rows, columns = (torch.linspace(-1, 1, size) for size in images.shape[1:])  # grid_sample's
    mass = images.sum(dim=(1, 2)).clamp_min(1e-12)
    centre_row = (images.sum(dim=2) @ rows) / mass
    centre_column = (images.sum(dim=1) @ columns) / mass
    down = rows[:, None] - centre_row[:, None, None]
    across = columns - centre_column[:, None, None]
    covariance = (images * down * across).sum(dim=(1, 2))
    slant = covariance / (images * down**2).sum(dim=(1, 2)).clamp_min(1e-12)
    one = torch.ones_like(slant)
    zero = torch.zeros_like(slant)
    shear = torch.stack([torch.stack([one, slant, centre_column], 1),
                         torch.stack([zero, one, centre_row], 1)], 1)
    grid = F.affine_grid(shear, [len(images), 1, *images.shape[1:]], align_corners=True)
    return F.grid_sample(images[:, None], grid, align_corners=True)[:, 0]


def neighbour_features(pixels: np.ndarray) -> torch.Tensor:
    """Images deskewed and blurred by a 3x3 box, flat: what the neighbours compare."""
    return F.avg_pool2d(deskewed(pixels)[:, None], 3, stride=1, padding=1).flatten(1)


def nearest_images(pixels: np.ndarray, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices (N, k) of each image's k nearest images by `neighbour_features`, itself included."""
    points = neighbour_features(pixels)
    k = min(k, len(points))
    parts = points.split(chunk)
    return torch.cat([torch.cdist(part, points).topk(k, largest=False).indices for part in parts])


KMEANS_STARTS = 10  # the spectral embedding's k-means: the tightest of this many seeded starts
GRAPH_REGULARITY = 0.01  # x the mean degree: each image's weak link to all, which joins the graph


def graph_clusters(neighbours: torch.Tensor, count: int, seed: int) -> np.ndarray:
    """Each image's cluster of `count`: spectral clustering of the graph (Ng, Jordan, Weiss)."""
    from scipy.cluster.vq import ClusterError, kmeans2  # train only
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import LinearOperator, eigsh

    size = len(neighbours)
    rows = np.repeat(np.arange(size), neighbours.shape[1])
    links = coo_matrix((np.ones(rows.size), (rows, neighbours.numpy().ravel())), (size, size))
    adjacency = ((links + links.T) > 0).astype(float).tocsr()  # each image is its own neighbour
    # A graph in pieces has a repeated leading eigenvalue, which ARPACK finds once: a weak link of
    # each image to every other, GRAPH_REGULARITY of a degree in all, joins it (Amini et al. 2013).
    spread = GRAPH_REGULARITY * adjacency.sum() / size**2
    scale = 1 / np.sqrt(adjacency.sum(axis=1).A1 + spread * size)

    def normalised(vectors: np.ndarray) -> np.ndarray:  # D^-1/2 (A + spread) D^-1/2 x
        scaled = vectors.reshape(size, -1) * scale[:, None]
        return scale[:, None] * (adjacency @ scaled + spread * scaled.sum(axis=0))

    operator = LinearOperator((size, size), matvec=normalised, matmat=normalised, dtype=float)
    start = np.full(size, 1 / math.sqrt(size))  # ARPACK's start, fixed: the same vectors each run
    _, vectors = eigsh(operator, k=count, which="LA", v0=start)
    embedded = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    best, least_spread = None, math.inf
    for attempt in range(seed * KMEANS_STARTS, (seed + 1) * KMEANS_STARTS):
        with contextlib.suppress(ClusterError):  # a start that left a cluster empty
            centres, clusters = kmeans2(embedded, count, minit="++", missing="raise", seed=attempt)
            spread = np.square(embedded - centres[clusters]).sum()
            if spread < least_spread:
                best, least_spread = clusters, spread
    if best is None:
        raise InputError(f"the images do not part into {count} clusters by their neighbours: are "
                         "they blank or all alike?")
    return best.astype(np.int64)


PROPAGATION_ALPHA = 0.9  # Zhou et al. 2004's choice: a row keeps a tenth of its own posterior
PROPAGATION_STEPS = 20  # 0.9 ** 20 = 0.12: the spread has all but settled


def propagate(probabilities: torch.Tensor, neighbours: torch.Tensor,
              alpha: float = PROPAGATION_ALPHA, steps: int = PROPAGATION_STEPS) -> torch.Tensor:
    """Label propagation: `steps` times, each row := alpha x its neighbours' mean + rest x start."""
    propagated = probabilities
    for _ in range(steps):
        propagated = alpha * propagated[neighbours].mean(dim=1) + (1 - alpha) * probabilities
    return propagated


def refinement_targets(mixture: GMM, codes: np.ndarray, neighbours: torch.Tensor,
                       clusters: np.ndarray) -> np.ndarray:
    """Each training image's component: the mean of its posterior under the mixture and its graph
    cluster, propagated over its neighbours. The cluster holds a mixture that drifts from it."""
    _, posteriors = expectation_step(mixture, codes)
    start = (posteriors + np.eye(len(mixture.means))[clusters]) / 2
    return propagate(torch.from_numpy(start), neighbours).argmax(dim=1).numpy()


@torch.no_grad()
def jittered(images: torch.Tensor, strength: float) -> torch.Tensor:
    """Images (N, 1, H, W), each turned, scaled and shifted at random by up to `strength`."""
    uniform = torch.rand(4, len(images), device=images.device, dtype=images.dtype)
    amounts = (uniform * 2 - 1) * strength  # turn, scale, two shifts: in [-1, 1] x strength
    angle = amounts[0] * math.radians(JITTER_DEGREES)
    size = 1 + JITTER_SCALE * amounts[1]
    aspect = (images.shape[2] - 1) / (images.shape[3] - 1)  # a turn of pixels, not of [-1, 1]^2
    cos = torch.cos(angle) * size
    sin = torch.sin(angle) * size
    shift = JITTER_SHIFT * amounts[2:]
    matrices = torch.stack([cos, -sin * aspect, shift[0], sin / aspect, cos, shift[1]], 1)
    grid = F.affine_grid(matrices.view(-1, 2, 3), list(images.shape), align_corners=True)
    return F.grid_sample(images, grid, align_corners=True)


def gmm_log_posterior(gmm: GMM, device: torch.device,
                      dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """log q(k | z) (N, K), differentiable in codes z (N, D) on `device`; the GMM moves once."""
    tensor = functools.partial(torch.as_tensor, dtype=dtype, device=device)
    means = tensor(gmm.means)
    precisions = tensor(np.linalg.inv(gmm.covariances))
    log_det = tensor(np.linalg.slogdet(gmm.covariances)[1])
    log_weights = tensor(np.log(gmm.weights))

    def log_posterior(codes: torch.Tensor) -> torch.Tensor:
        centred = codes[:, None, :] - means
        mahalanobis = torch.einsum("nkd,kde,nke->nk", centred, precisions, centred)
        return torch.log_softmax(log_weights - 0.5 * (mahalanobis + log_det), dim=1)

    return log_posterior


def refine_toward_gmm(model: VAE, data: torch.Tensor, targets: np.ndarray, gmm: GMM,
                      config: TrainConfig) -> list[dict[str, float]]:
    """A round: the VAE loss + the target's cross-entropy, for each code and a jittered view's."""
    targets = torch.from_numpy(targets).to(data.device)
    log_posterior = gmm_log_posterior(gmm, data.device, data.dtype)
    model.train()

    def batch_loss(batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = data[batch]
        codes, log_var = model.encode(x)
        terms, _ = sampled_vae_loss(model, x, codes, log_var, config.beta)
        view_codes = model.encode(jittered(x[:, None], config.refine_jitter))[0]
        log_q = log_posterior(torch.cat([codes, view_codes]))
        terms["cluster"] = config.refine_weight * F.nll_loss(log_q, targets[batch].repeat(2))
        terms["loss"] = terms["loss"] + terms["cluster"]
        return terms

    return run_epochs("refine", batch_loss, model.parameters(), data, epochs=config.refine_epochs,
                      batch_size=config.batch_size, lr=config.refine_lr, schedule=constant_rate)


def refine(model: VAE, data: torch.Tensor, pixels: np.ndarray, neighbours: torch.Tensor,
           clusters: np.ndarray, config: TrainConfig) -> tuple[list[dict], list[dict], np.ndarray]:
    """The refinement's rounds from the graph's `clusters`: history, rounds, the last targets."""
    count = clusters.max() + 1
    history, rounds = [], []
    mixture = None
    targets = clusters
    for number in range(1, config.refine_rounds + 1):
        codes = latent_codes(model, pixels)
        if mixture is None:  # EM starts from the graph's clusters, then from the last round's fit
            mixture = maximisation_step(codes, np.eye(count)[clusters], np.arange(count))
        mixture = fit_gmm(codes, mixture)
        previous, targets = targets, refinement_targets(mixture, codes, neighbours, clusters)
        sizes = np.bincount(targets, minlength=count).tolist()
        changed = float(np.mean(targets != previous))
        rounds.append({"em_iterations": mixture.n_iter, "sizes": sizes, "changed": changed})
        log.info(f"refinement round {number}: EM {mixture.n_iter} iterations, clusters of "
                 f"{', '.join(map(str, sizes))} images, {changed:.2%} changed")
        history += refine_toward_gmm(model, data, targets, mixture, config)
    return history, rounds, targets


# -------------------------------------------------------------------------------------------------
# The method: the VAE and its refinement from the training images alone, then the GMM from the
# labelled images, their check, and a new training where the check finds two digits merged.

RESTART_SEED_STEP = 1000  # restart r trains from seed + 1000 r: another trajectory, reproducibly


class LabelledCheck(NamedTuple):
    """What the labelled validation images show of a GMM: digits merged, or odd images."""
    labelled: int  # how many there are
    wrong: list[int]  # those the GMM gives another digit
    merged: list[int]  # the digits most of whose labelled images it gives another

    @classmethod
    def of(cls, gmm: GMM, val_codes: np.ndarray, val_labels: np.ndarray) -> "LabelledCheck":
        predicted = gmm.predict(val_codes)
        merged = [int(digit) for digit in np.unique(val_labels)
                  if np.mean(predicted[val_labels == digit] != digit) > 0.5]
        return cls(len(val_labels), np.flatnonzero(predicted != val_labels).tolist(), merged)

    def summary(self) -> str:
        said = f"{self.labelled - len(self.wrong)} of {self.labelled} right"
        if self.merged:
            return f"{said}; the codes merge digit {self.merged[0]} into another"
        return said if not self.wrong else f"{said}; odd images, no digit merged"


def agreement(clusters: np.ndarray, predicted: np.ndarray, digits: np.ndarray) -> float:
    """The fraction of images whose cluster, each matched to one digit, is their predicted digit."""
    confusion = np.zeros((len(digits), len(digits)))
    np.add.at(confusion, (clusters, np.searchsorted(digits, predicted)), 1)
    return confusion[np.arange(len(digits)), matching(confusion)].sum() / len(clusters)


class Fit(NamedTuple):
    model: VAE  # on the CPU, in eval mode
    gmm: GMM
    history: list[dict]  # the loss terms per epoch
    trainings: list[dict]  # per training: its seed, refinement rounds, GMM and labelled check


def fit_classifier(train_pixels: np.ndarray, val_pixels: np.ndarray, val_labels: np.ndarray,
                   config: TrainConfig = DEFAULTS) -> Fit:
    """The whole method, from config.seed on config.device. The VAE is a function of the training
    images and the seed alone; the labelled images choose between whole trainings, never train."""
    device = set_up_device(config.device)
    data = torch.from_numpy(train_pixels).to(device)
    digits = np.unique(val_labels)
    neighbours = nearest_images(train_pixels, config.refine_neighbours)
    trainings: list[dict] = []
    for restart in range(config.restarts + 1):
        seed = config.seed + restart * RESTART_SEED_STEP
        # 1. The VAE learns the codes from the training images alone.
        model, history = train_vae(data, dataclasses.replace(config, seed=seed))
        # 2. The refinement pulls them toward clusters of the images found without a label.
        clusters = graph_clusters(neighbours, len(digits), seed)
        refined, rounds, targets = refine(model, data, train_pixels, neighbours, clusters, config)
        history += refined
        # 3. The GMM, started at the validation class means: the labelled images name and check it.
        train_codes = latent_codes(model, train_pixels)
        val_codes = latent_codes(model, val_pixels)
        gmm = fit_digit_gmm(train_codes, val_codes, val_labels)
        check = LabelledCheck.of(gmm, val_codes, val_labels)
        matched = agreement(targets, gmm.predict(train_codes), digits)
        trainings.append({"seed": seed, "rounds": rounds, "em_iterations": gmm.n_iter,
                          "clusters_agree_with_gmm": matched, **check._asdict(),
                          "summary": check.summary()})
        log.info(f"labelled images: {check.summary()}; the refinement's clusters agree with the "
                 f"GMM on {matched:.2%} of the training images")
        # 4. Codes that merged two digits, which no GMM can part: train again from another seed.
        if not check.merged or restart == config.restarts:
            break
        log.info(f"restart {restart + 1} of {config.restarts}: training again from seed "
                 f"{seed + RESTART_SEED_STEP}")
    # 5. The decoder alone, for reconstruction: no code moves, so no prediction does.
    if config.decoder_epochs:
        history += train_decoder(model, data, config)
    return Fit(model.cpu().eval(), gmm, history, trainings)


# =================================================================================================
# Plumbing: file formats, memory, the device, files, the commands and the command line. Users' input
# is checked here; what vae.py wrote itself is trusted through its fingerprint.

RECONSTRUCTION_FILE = "vae_reconstructed.npz"
PREDICTIONS_FILE = "vae.csv"
PREDICTIONS_HEADER = "Predicted_Label"


def tell(message: str) -> None:
    """An error, a warning or a notice for the user: one line on stderr."""
    print(f"{PROGRAM}: {message}", file=sys.stderr)


class Images(NamedTuple):
    pixels: np.ndarray  # (N, H, W) float32 in [0, 1]
    labels: np.ndarray | None  # (N,) int64, or None when the file has none
    file_shape: tuple[int, ...]  # the layout of the file's image array, for writing results back


def available_memory() -> int | None:
    """Bytes this process may still allocate (a container's limit included); None if unknown."""
    limits = []
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        limits.append(int(fields["MemAvailable"].split()[0]) * 1024)
    with contextlib.suppress(OSError, ValueError):  # a limit of "max" (none) raises ValueError
        with open("/sys/fs/cgroup/memory.max") as limit:
            with open("/sys/fs/cgroup/memory.current") as use:
                limits.append(int(limit.read()) - int(use.read()))
    if not limits:  # macOS; Windows has no sysconf
        with contextlib.suppress(OSError, ValueError, AttributeError):
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(limits) if limits else None


def _check_fits_in_memory(archive: zipfile.ZipFile, key: str) -> None:
    """Refuse, from its .npy header alone, an array too large to load."""
    member = f"{key}.npy" if f"{key}.npy" in archive.namelist() else key
    with archive.open(member) as stream:
        major, minor = np.lib.format.read_magic(stream)
        read_header = getattr(np.lib.format, f"read_array_header_{major}_{minor}", None)
        if read_header is None:  # a newer format: numpy reads and checks it
            return
        shape, _, dtype = read_header(stream)
    values = math.prod(shape)
    needed = values * (dtype.itemsize + 12)  # the float64 scaling copy and the float32 result
    available = available_memory()
    if available is not None and needed > available:
        raise InputError(f"'{key}' declares {values:,} values of shape {shape}: loading needs "
                         f"about {needed / 2**30:,.1f} GiB, but {available / 2**30:,.1f} GiB of "
                         "memory are free")


def _read_arrays(path: str, want_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) from an .npz file; labels only when wanted."""
    if not os.path.isfile(path):
        raise InputError("no such file")
    if not zipfile.is_zipfile(path):
        raise InputError("not an .npz archive (save images with numpy.savez(path, data=images))")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = archive.files
            image_keys = ["data"] if "data" in keys else [key for key in keys if key != "labels"]
            if len(image_keys) != 1:
                raise InputError(f"no image array: expected key 'data', found {sorted(keys)}")
            _check_fits_in_memory(archive.zip, image_keys[0])
            images = archive[image_keys[0]]
            labels = None
            if want_labels and "labels" in keys:
                _check_fits_in_memory(archive.zip, "labels")
                labels = archive["labels"]
    except InputError:
        raise
    except Exception as error:  # a damaged archive raises from zipfile, zlib or numpy's reader
        reason = f"{type(error).__name__}: {error}"
        raise InputError(f"corrupt or unreadable .npz file ({reason})") from None
    return images, labels


def _as_image_stack(array: np.ndarray, pixels_per_image: int | None) -> np.ndarray:
    """Reshape any accepted layout to (N, H, W). A 2-D array is a stack of flat images when its rows
    have the model's size or, with no model yet, a square number of pixels; else a single image."""
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2:
        rows, columns = array.shape
        side = math.isqrt(columns)
        flat = columns == (side * side if pixels_per_image is None else pixels_per_image)
        if flat and side * side != columns:
            raise InputError(f"rows of {columns} pixels are not square images")
        array = array.reshape(rows, side, side) if flat else array[None]
    if array.ndim != 3:
        raise InputError(f"images of shape {array.shape} not understood; "
                         "expected (N, H, W), (N, H*W), (N, 1, H, W) or a single (H, W)")
    if 0 in array.shape:
        raise InputError("the image array is empty")
    return array


def _scale_to_unit(array: np.ndarray) -> np.ndarray:
    """uint8 0-255, float 0-1 or float 0-255 to float32 in [0, 1]."""
    if array.dtype == bool:
        return array.astype(np.float32)
    is_number = np.issubdtype(array.dtype, np.number)
    if not is_number or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"images must be numbers, not {array.dtype}")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise InputError("images contain NaN or infinite values")
    low = values.min()
    high = values.max()
    if low < 0 or high > 255:
        raise InputError(f"pixel values must lie in [0, 255] or [0, 1], found [{low:g}, {high:g}]")
    if np.issubdtype(array.dtype, np.integer) or high > 1:
        np.divide(values, 255.0, out=values)
    return values.astype(np.float32)


def _whole_number_labels(labels: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.size != count:
        raise InputError(f"{labels.size} labels for {count} images")
    is_number = np.issubdtype(labels.dtype, np.number)
    if not (is_number and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))):
        raise InputError("labels must be whole numbers")
    return labels.astype(np.int64)


def load_images(path: str, pixels_per_image: int | None = None,
                labels: str = "optional") -> Images:
    """Read, check and scale images to [0, 1], naming the file in every fault."""
    try:
        raw, found_labels = _read_arrays(path, want_labels=labels != "ignore")
        stack = _as_image_stack(np.asarray(raw), pixels_per_image)
        pixels = _scale_to_unit(stack)
        if pixels_per_image is not None and pixels[0].size != pixels_per_image:
            side = math.isqrt(pixels_per_image)
            shape = f"{side}x{side}" if side**2 == pixels_per_image else f"{pixels_per_image}-pixel"
            raise InputError(f"images of {pixels.shape[1]}x{pixels.shape[2]} pixels, but the model "
                             f"was trained on {shape} images")
        if found_labels is not None:
            found_labels = _whole_number_labels(found_labels, len(pixels))
        if labels == "required" and found_labels is None:
            raise InputError("the validation file needs a 'labels' array (the digit of each image)")
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    return Images(pixels, found_labels, tuple(raw.shape))


TRAINING_BYTES_PER_PARAMETER = 16  # float32 weights, their gradients and Adam's two moments


def check_model_fits(image_shape: tuple[int, ...], config: TrainConfig, path: str) -> None:
    """Refuse a VAE whose training would exhaust the memory, before building it: each of its
    tensors may fit while all of them do not, and the process is then killed (docs/design.md)."""
    with torch.device("meta"):  # shapes without memory
        parameters = count_parameters(VAE(math.prod(image_shape), config.hidden, config.latent_dim))
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    available = available_memory()
    if available is not None and needed > available:
        size = "x".join(map(str, image_shape))
        hidden = " ".join(map(str, config.hidden))
        raise InputError(f"{path}: a VAE for images of {size} pixels with --hidden {hidden} and "
                         f"--latent-dim {config.latent_dim} has {parameters:,} parameters and "
                         f"needs about {needed / 2**30:,.1f} GiB to train, but "
                         f"{available / 2**30:,.1f} GiB of memory are free; use smaller images "
                         "(the course's are 28x28) or smaller sizes")


def set_up_device(name: str) -> torch.device:
    """Turn on deterministic kernels and return the device named, if it can run."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("--device cuda: PyTorch finds no CUDA GPU here; leave --device out to "
                         "train on the CPU")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS's first call
    try:
        probe = torch.ones(2, 2, device="cuda")
        (probe @ probe).sum().item()
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise InputError(f"--device cuda: this GPU cannot run this PyTorch ({reason}); leave "
                         "--device out to train on the CPU") from None
    return torch.device("cuda")


@contextlib.contextmanager
def atomic_outputs(*paths: str) -> Iterator[list[str]]:
    """Yield temporary paths to write; rename them onto `paths` only if the block succeeds."""
    temporaries: list[str] = []
    try:
        for path in paths:
            directory = os.path.dirname(os.path.abspath(path))
            handle, temporary = tempfile.mkstemp(prefix=".", suffix=".partial", dir=directory)
            os.close(handle)
            temporaries.append(temporary)
        yield temporaries
        umask = os.umask(0)  # the only way to read the umask is to set it
        os.umask(umask)
        for temporary, path in zip(temporaries, paths):
            os.chmod(temporary, 0o666 & ~umask)
            os.replace(temporary, path)
    finally:
        for temporary in temporaries:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)


def check_writable(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a file path")
    if not os.path.isdir(directory):
        raise InputError(f"{path}: the folder {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in {directory}")


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """A hash of the weights, stored in the GMM file to catch a GMM paired with another model."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_model(path: str) -> tuple[VAE, str]:
    """Load a VAE from a plain state_dict, without unpickling arbitrary objects."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such model file (train one first)")
    try:
        with warnings.catch_warnings():  # torch warns about files it is about to reject
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
        return VAE.from_state_dict(state), state_fingerprint(state)
    except Exception:
        raise InputError(f"{path}: not a VAE state_dict saved by this program "
                         "(vae.py ... train)") from None


_NUMPY_RECONSTRUCTORS = {  # what pickle needs to rebuild arrays, under NumPy 1 and 2 module names
    "_reconstruct": np.ndarray((0,)).__reduce__()[0],
    "scalar": np.float64(0).__reduce__()[0],
    "_frombuffer": np.ndarray((1,)).__reduce_ex__(5)[0],
    "dtype": np.dtype,
    "ndarray": np.ndarray,
}


class _PlainDataUnpickler(pickle.Unpickler):
    """Admits only what a dict of NumPy arrays needs; anything else stops the load."""

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "numpy" and name in _NUMPY_RECONSTRUCTORS:
            return _NUMPY_RECONSTRUCTORS[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


GMM_ARRAYS = ("weights", "means", "covariances", "digits")  # the classifier, in the file


def gmm_fingerprint(model_fingerprint: str, contents: dict) -> str:
    """A hash of the model's fingerprint and the GMM's arrays as its file holds them."""
    digest = hashlib.sha256(model_fingerprint.encode())
    for key in GMM_ARRAYS:
        value = np.asarray(contents[key])
        digest.update(f"{key} {value.dtype.str} {value.shape}".encode() + value.tobytes())
    return digest.hexdigest()


def gmm_file_contents(gmm: GMM, model_fingerprint: str) -> dict:
    """What gmm_params.pkl holds: a plain dict of NumPy arrays and the fingerprint."""
    contents = {"weights": gmm.weights, "means": gmm.means, "covariances": gmm.covariances,
                "digits": gmm.digits, "log_likelihood_trace": gmm.log_likelihood_trace,
                "n_iter": gmm.n_iter, "converged": gmm.converged}
    return {**contents, "fingerprint": gmm_fingerprint(model_fingerprint, contents)}


def load_gmm(path: str, model_fingerprint: str) -> GMM:
    """A GMM file's GMM, read without running code; trusted where its fingerprint is the model's."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such GMM file (train one first)")
    try:
        with open(path, "rb") as handle:
            contents = _PlainDataUnpickler(handle).load()
    except Exception as error:
        raise InputError(f"{path}: not a GMM file saved by this program ({error})") from None
    keys = [*GMM_ARRAYS, "fingerprint"]
    if not (isinstance(contents, dict) and all(key in contents for key in keys)):
        raise InputError(f"{path}: not a GMM file saved by this program (no {', '.join(keys)}); "
                         "train again to write one")
    fingerprint = contents["fingerprint"]
    try:
        expected = gmm_fingerprint(model_fingerprint, contents)
    except ValueError:  # a hand-edited field with no array form, such as a ragged list
        expected = None
    if not (isinstance(fingerprint, str) and fingerprint == expected):
        raise InputError(f"{path}: this GMM was fitted with a different vae.pth, or changed since; "
                         "train both together")
    return GMM(*(contents[key] for key in GMM_ARRAYS))


def processor() -> str:
    """The CPU's model name: with torch's release and threads, it fixes a training's bits."""
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo") as cpuinfo:
            names = (line.split(":")[1] for line in cpuinfo if line.startswith("model name"))
            return next(names).strip()
    return platform.processor() or platform.machine()


def history_path(vae_path: str) -> str:  # vae.pth -> vae_history.json, beside it
    return os.path.splitext(vae_path)[0] + "_history.json"


def _check_train_inputs(train: Images, validation: Images, config: TrainConfig, train_path: str,
                        val_path: str) -> None:
    check_model_fits(train.pixels.shape[1:], config, train_path)
    if train.pixels.shape[1:] != validation.pixels.shape[1:]:
        raise InputError(f"{val_path}: validation images are {validation.pixels.shape[1:]} but "
                         f"training images are {train.pixels.shape[1:]}")
    digits = np.unique(validation.labels)
    if len(digits) < 2:
        raise InputError(f"{val_path}: the validation labels must name at least 2 digits")
    if min(train.pixels.shape[1:]) < 2:  # too narrow to deskew or turn
        raise InputError(f"{train_path}: training needs images of 2x2 pixels or more, "
                         f"not {train.pixels.shape[1:]}")
    if len(train.pixels) < 2 * len(digits):
        raise InputError(f"{train_path}: {len(train.pixels)} images are too few to train on")


def command_train(train_path: str, val_path: str, vae_path: str, gmm_path: str,
                  config: TrainConfig) -> None:
    outputs = (vae_path, gmm_path, history_path(vae_path))
    for path in outputs:
        check_writable(path)
    output_paths = {os.path.realpath(path) for path in outputs}
    input_paths = {os.path.realpath(path) for path in (train_path, val_path)}
    if len(output_paths) != len(outputs) or output_paths & input_paths:
        raise InputError("the output paths must differ from each other and from the inputs")
    set_up_device(config.device)  # a GPU asked for that cannot run says so before any reading
    train = load_images(train_path, labels="ignore")
    validation = load_images(val_path, labels="required")
    _check_train_inputs(train, validation, config, train_path, val_path)
    height, width = train.pixels.shape[1:]
    digits = np.unique(validation.labels).tolist()
    log.info(f"training on {len(train.pixels)} images of {height}x{width}; "
             f"digits {digits} from {len(validation.pixels)} validation images")
    try:
        model, gmm, history, trainings = fit_classifier(train.pixels, validation.pixels,
                                                        validation.labels, config)
    except InputError as error:  # codes that do not spread out: what the training images led to
        raise InputError(f"{train_path}: {error}") from None
    state = model.state_dict()
    gmm_contents = gmm_file_contents(gmm, state_fingerprint(state))
    weights = io.BytesIO()  # serialised first: a failed write reports the OSError on every torch
    torch.save(state, weights)
    record = {"epochs": history, "config": dataclasses.asdict(config), "torch": torch.__version__,
              "processor": processor(), "threads": torch.get_num_threads(), "trainings": trainings}
    with atomic_outputs(*outputs) as (vae_temporary, gmm_temporary, history_temporary):
        with open(vae_temporary, "wb") as handle:
            handle.write(weights.getbuffer())
        with open(gmm_temporary, "wb") as handle:
            pickle.dump(gmm_contents, handle, protocol=4)
        with open(history_temporary, "w") as handle:
            json.dump(record, handle, indent=1)
    log.info(f"saved {', '.join(outputs)}")
    last = trainings[-1]
    if last["wrong"]:  # the GMM written gives labelled images another digit
        tell(f"warning: after {len(trainings)} training(s) the GMM gives labelled images "
             f"{', '.join(map(str, last['wrong']))} of {val_path} another digit "
             f"({last['summary']}); the files are written")


def command_test_reconstruction(data_path: str, vae_path: str) -> None:
    check_writable(RECONSTRUCTION_FILE)
    model, _ = load_model(vae_path)
    images = load_images(data_path, model.input_dim, labels="ignore")
    reconstructed = reconstruct(model, images.pixels)
    output = reconstructed.reshape(images.file_shape).astype(np.float32)
    with atomic_outputs(RECONSTRUCTION_FILE) as (temporary,):
        with open(temporary, "wb") as handle:
            np.savez(handle, data=output, arr_0=output)
    log.info(f"wrote {RECONSTRUCTION_FILE}: {len(images.pixels)} reconstructions")


def command_test_classifier(data_path: str, vae_path: str, gmm_path: str) -> None:
    check_writable(PREDICTIONS_FILE)
    model, fingerprint = load_model(vae_path)
    gmm = load_gmm(gmm_path, fingerprint)
    images = load_images(data_path, model.input_dim, labels="ignore")
    predictions = gmm.predict(latent_codes(model, images.pixels))
    with atomic_outputs(PREDICTIONS_FILE) as (temporary,):
        with open(temporary, "w") as handle:
            handle.write(PREDICTIONS_HEADER + "\n")
            handle.writelines(f"{digit}\n" for digit in predictions)
    log.info(f"wrote {PREDICTIONS_FILE}: {len(predictions)} predictions")


MODES = {  # mode: (the mode word's place among the words, the paths around it)
    "train": (2, ("TRAIN.npz", "VAL.npz", "vae.pth", "gmm_params.pkl")),
    "test_reconstruction": (1, ("RECON.npz", "vae.pth")),
    "test_classifier": (1, ("TEST.npz", "vae.pth", "gmm_params.pkl")),
}


def usage(mode: str) -> str:
    position, paths = MODES[mode]
    return "python vae.py " + " ".join([*paths[:position], mode, *paths[position:]])


class _OneLineErrors(argparse.ArgumentParser):
    def error(self, message: str):
        tell(f"error: {message} (see python {PROGRAM} --help)")
        self.exit(2)


def build_parser() -> argparse.ArgumentParser:
    usages = "\n" + "\n".join(f"  {usage(mode)} [options]" for mode in MODES)
    parser = _OneLineErrors(prog=PROGRAM, usage=usages, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="*", help=argparse.SUPPRESS)
    training = parser.add_argument_group("training options (train mode)")
    for setting in dataclasses.fields(TrainConfig):
        default = setting.default
        sizes = isinstance(default, tuple)  # hidden: as in --hidden 512 256
        shown = " ".join(map(str, default)) if sizes else default
        training.add_argument(flag(setting.name), type=int if sizes else type(default),
                              nargs="+" if sizes else None, default=default,
                              help=f"{setting.metadata['help']} (default {shown})")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options, plus `mode` and the `paths` around it."""
    parser = build_parser()
    if not argv:
        parser.exit(2, parser.format_usage())
    args = parser.parse_intermixed_args(argv)
    modes = [word for word in args.words if word in MODES]
    if not modes:
        parser.error(f"no mode given: expected one of {', '.join(MODES)}")
    mode = modes[0]
    position, paths = MODES[mode]
    if len(args.words) != len(paths) + 1 or args.words[position] != mode:
        parser.error(f"{mode} takes {len(paths)} paths around it: {usage(mode)}")
    args.mode = mode
    args.paths = args.words[:position] + args.words[position + 1:]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    printer = logging.StreamHandler(sys.stdout)  # the sys.stdout of this call, flushed per line
    log.addHandler(printer)
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False  # printed here alone, not again by a caller's logging set-up
    try:
        if args.mode == "train":
            settings = {name: getattr(args, name) for name in TrainConfig.__dataclass_fields__}
            command_train(*args.paths, TrainConfig(**{**settings, "hidden": tuple(args.hidden)}))
        elif args.mode == "test_reconstruction":
            command_test_reconstruction(*args.paths)
        else:
            command_test_classifier(*args.paths)
    except KeyboardInterrupt:
        tell("interrupted; no output was written")
        return 130
    except MemoryError:
        tell("error: out of memory; use fewer or smaller images, or smaller --hidden sizes")
        return 1
    except (InputError, FloatingPointError, OSError) as error:
        tell(f"error: {error}")
        return 2 if isinstance(error, InputError) else 1
    except Exception as error:  # a fault of ours: still one line, no traceback
        tell(f"error: unexpected {type(error).__name__}: {error} (a bug in {PROGRAM}: please "
             "report this, with the command that caused it)")
        return 1
    finally:
        log.removeHandler(printer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
