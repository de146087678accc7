"""The assignment's own code runs unchanged against our VAE.

The assignment asks students to use its snippets "for consistency". Their lines that touch the model
are kept here as the course writes them: `recon_data, _, _ = model(data)` then
`recon_data[i].view(28, 28)`, a `loss_function(recon_x, x, mu, logvar)` on `binary_cross_entropy`,
and a manifold decoded from a grid of `norm.ppf` quantiles in colour map gnuplot2.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.stats import norm  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import vae  # noqa: E402
from conftest import SHIPPED, labels_of, pixels_of  # noqa: E402

device = "cpu"


def show_reconstruction(model, val_loader, n=10):
    model.eval()
    data, labels = next(iter(val_loader))
    data = data.to(device)
    recon_data, _, _ = model(data)
    fig, axes = plt.subplots(2, n, figsize=(15, 4))
    for i in range(n):
        axes[0, i].imshow(data[i].cpu().numpy().squeeze(), cmap="gray")
        axes[0, i].set_title(f"Label: {labels[i].item()}")
        axes[0, i].axis("off")
        axes[1, i].imshow(recon_data[i].cpu().view(28, 28).detach().numpy(), cmap="gray")
        axes[1, i].axis("off")
    return fig, axes


def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def plot_2d_manifold(vae, latent_dim=2, n=20, digit_size=28, device="cpu"):
    figure = np.zeros((digit_size * n, digit_size * n))
    grid_x = norm.ppf(np.linspace(0.05, 0.95, n))
    grid_y = norm.ppf(np.linspace(0.05, 0.95, n))
    vae.eval()
    with torch.no_grad():
        for i, yi in enumerate(grid_x):
            for j, xi in enumerate(grid_y):
                z_sample = torch.tensor([[xi, yi]], device=device).float()
                digit = vae.decode(z_sample).cpu().numpy()
                figure[i * digit_size: (i + 1) * digit_size, j * digit_size: (j + 1) * digit_size] = digit.reshape(
                    digit_size, digit_size)
    plt.figure(figsize=(10, 10))
    plt.imshow(figure, cmap="gnuplot2")
    plt.axis("off")
    return figure


pytestmark = pytest.mark.environment


@pytest.fixture(scope="module")
def course_model():
    """The shipped model, loaded the course's way."""
    model = vae.VAE()
    model.load_state_dict(torch.load(SHIPPED / "vae.pth"))
    return model


@pytest.fixture(scope="module")
def val_loader(demo):
    images = torch.from_numpy(pixels_of(demo["val"])).unsqueeze(1)
    return DataLoader(TensorDataset(images, torch.from_numpy(labels_of(demo["val"]))), batch_size=15)


def test_show_reconstruction_shows_what_test_reconstruction_writes(course_model, val_loader):
    _, axes = show_reconstruction(course_model, val_loader)
    shown = np.stack([axes[1, i].images[0].get_array() for i in range(10)])
    data, _ = next(iter(val_loader))
    written = vae.reconstruct(course_model, data[:10, 0].numpy())
    assert shown.min() >= 0 and shown.max() <= 1
    assert np.allclose(shown, written, atol=1e-6)
    plt.close("all")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_the_course_loss_function_takes_the_model_outputs(course_model, val_loader, mode):
    data, _ = next(iter(val_loader))
    course_model.train(mode == "train")
    torch.manual_seed(0)
    recon_x, mu, logvar = course_model(data)
    loss = loss_function(recon_x, data, mu, logvar)
    course_model.eval()
    torch.manual_seed(0)
    z = course_model.sample(mu, logvar) if mode == "train" else mu  # training mode decodes a sample of q(z|x)
    ours = vae.vae_loss(course_model.decoder(z), data, mu, logvar, beta=1.0)["loss"]  # the ELBO, on logits
    assert loss.item() == pytest.approx(ours.item() * len(data), rel=1e-4)


def test_the_course_manifold_decodes_with_our_decoder(course_model):
    figure = plot_2d_manifold(course_model)
    quantiles = norm.ppf(np.linspace(0.05, 0.95, 20))
    corner = course_model.decode(torch.tensor([[quantiles[0], quantiles[0]]]).float()).detach().numpy()
    assert figure.shape == (560, 560) and 0 <= figure.min() and figure.max() <= 1
    assert np.allclose(figure[:28, :28], corner.reshape(28, 28))
    plt.close("all")
