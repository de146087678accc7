"""The hand-written Gaussian mixture: EM's guarantees, known clusters, and sklearn's answer."""

from __future__ import annotations

import dataclasses
import pickle
from itertools import permutations

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

import vae

TRUE_MEANS = np.array([[-4.0, 0.0], [3.0, 3.0], [3.0, -3.0]])
TRUE_COVARIANCES = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.4], [-0.4, 0.4]]])
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])


def sample_mixture(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    components = rng.choice(3, size=n, p=TRUE_WEIGHTS)
    points = np.stack([rng.multivariate_normal(TRUE_MEANS[k], TRUE_COVARIANCES[k]) for k in components])
    return points, components


def rough_start(points: np.ndarray, seed: int = 1, digits: tuple[int, ...] = (0, 1, 2)) -> vae.GMM:
    """Equal weights, the true means moved at random, and every covariance the points' own."""
    rng = np.random.default_rng(seed)
    means = TRUE_MEANS + rng.normal(scale=1.0, size=TRUE_MEANS.shape)
    covariances = np.repeat(np.cov(points.T)[None], 3, axis=0)
    return vae.GMM(np.full(3, 1 / 3), means, covariances, np.array(digits))


def anchors_of(components: np.ndarray) -> np.ndarray:
    """The first 5 points of each component: the labelled ones."""
    return np.concatenate([np.flatnonzero(components == k)[:5] for k in range(3)])


def test_log_joint_matches_the_closed_form():
    points = np.array([[0.0, 0.0], [1.0, -2.0]])
    weights, means = np.array([0.3, 0.7]), np.array([[0.0, 0.0], [-1.0, 0.5]])
    covariances = np.array([[[2.0, 0.5], [0.5, 1.0]], [[1.0, -0.2], [-0.2, 0.5]]])
    expected = [[np.log(w) - 0.5 * ((x - m) @ np.linalg.inv(c) @ (x - m) + np.log(np.linalg.det(c))) - np.log(2 * np.pi)
                 for w, m, c in zip(weights, means, covariances)] for x in points]
    gmm = vae.GMM(weights, means, covariances, digits=np.array([4, 1]))
    assert np.allclose(gmm.log_joint(points), expected)
    assert gmm.predict(points).tolist() == [4 if row[0] > row[1] else 1 for row in expected]


@pytest.mark.parametrize("semi_supervised", [False, True])
def test_log_likelihood_never_decreases(semi_supervised):
    points, components = sample_mixture(600)
    labelled = dict(labelled_points=points[:9], labelled_components=components[:9]) if semi_supervised else {}
    fit = vae.fit_gmm(points, rough_start(points), tol=0, max_iter=60, **labelled)
    trace = fit.log_likelihood_trace
    assert fit.n_iter == len(trace) == 60 and not fit.converged
    assert np.all(np.diff(trace) >= -1e-10)
    assert trace[-1] > trace[0] + 0.1


def test_recovers_known_clusters_and_keeps_the_starts_digits():
    points, components = sample_mixture(3000)
    digits = np.array([1, 4, 8])
    fit = vae.fit_gmm(points, rough_start(points, digits=(1, 4, 8)))
    assert fit.converged
    assert np.allclose(fit.means, TRUE_MEANS, atol=0.15)
    assert np.allclose(fit.covariances, TRUE_COVARIANCES, atol=0.2)
    assert np.allclose(fit.weights, TRUE_WEIGHTS, atol=0.03)
    assert np.mean(fit.predict(points) == digits[components]) > 0.97


def test_agrees_with_sklearn_from_the_same_start():
    points, _ = sample_mixture(1500, seed=3)
    start = rough_start(points, seed=4)
    ours = vae.fit_gmm(points, start, tol=1e-10, max_iter=1000)
    reference = GaussianMixture(
        3, covariance_type="full", tol=1e-10, max_iter=1000, reg_covar=vae.GMM_REG_COVAR,
        weights_init=start.weights, means_init=start.means, precisions_init=np.linalg.inv(start.covariances),
    ).fit(points)
    assert np.allclose(ours.means, reference.means_, atol=1e-4)
    assert np.allclose(ours.covariances, reference.covariances_, atol=1e-4)
    assert np.allclose(ours.weights, reference.weights_, atol=1e-5)
    assert np.isclose(ours.log_likelihood_trace[-1], reference.score(points), atol=1e-6)


def swapped_start(points: np.ndarray) -> vae.GMM:
    """A rough start whose components 0 and 1 start on each other's cluster."""
    start = rough_start(points)
    return dataclasses.replace(start, means=start.means[[1, 0, 2]])


def test_labelled_points_relabel_components_that_em_carried_off():
    points, components = sample_mixture(900)
    anchors = anchors_of(components)
    fit = vae.fit_gmm(points, swapped_start(points), points[anchors], components[anchors], labelled_weight=1)
    assert np.mean(fit.predict(points) == components) < 0.5  # 15 anchors of weight 1 do not hold EM
    score = np.zeros((3, 3))  # [d, k]: the labelled points of component d under component k
    np.add.at(score, components[anchors], fit.log_joint(points[anchors]))
    order = vae.matching(score)
    assert order.tolist() == [1, 0, 2]
    relabelled = np.empty(3, int)
    relabelled[order] = np.arange(3)
    assert np.mean(dataclasses.replace(fit, digits=relabelled).predict(points) == components) > 0.95


def test_weighted_labelled_points_hold_their_components():
    points, components = sample_mixture(900)
    anchors = anchors_of(components)
    fit = vae.fit_gmm(points, swapped_start(points), points[anchors], components[anchors])
    assert np.mean(fit.predict(points) == components) > 0.95


def test_matching_is_the_exact_optimum():
    score = np.random.default_rng(5).normal(size=(6, 6))
    brute_force = max(permutations(range(6)), key=lambda order: sum(score[d, k] for d, k in enumerate(order)))
    assert vae.matching(score).tolist() == list(brute_force)


def test_digit_gmm_names_components_by_validation_digit():
    points, components = sample_mixture(900)
    digits = np.array([2, 6, 9])[components]
    anchors = anchors_of(components)
    gmm = vae.fit_digit_gmm(points, points[anchors], digits[anchors])
    assert gmm.digits.tolist() == [2, 6, 9]
    assert np.mean(gmm.predict(points) == digits) > 0.95


def test_digit_gmm_tells_crossing_clusters_apart_through_the_labelled_points():
    """Digits 1 and 4 lie on two bars crossing at the origin, so both start at the same validation mean, and EM on
    the unlabelled points alone keeps the two components identical (60 % accuracy): only the labelled points, kept
    on their component in every E-step, tell the horizontal bar from the vertical one."""
    rng = np.random.default_rng(0)
    horizontal = np.stack([rng.normal(0, 3, 600), rng.normal(0, 0.3, 600)], axis=1)
    points = np.concatenate([horizontal, horizontal[:, ::-1], rng.normal(9, 1, (300, 2))])
    digits = np.repeat([1, 4, 8], [600, 600, 300])
    along = np.linspace(-6, 6, 5)
    labelled = np.concatenate([np.stack([along, 0 * along], axis=1), np.stack([0 * along, along], axis=1),
                               rng.normal(9, 0.5, (5, 2))])
    gmm = vae.fit_digit_gmm(points, labelled, np.repeat([1, 4, 8], 5))
    assert np.mean(gmm.predict(points) == digits) > 0.9


def test_no_iterations_give_back_the_start():
    points, _ = sample_mixture(100)
    start = rough_start(points)
    fit = vae.fit_gmm(points, start, max_iter=0)
    assert (fit.n_iter, fit.converged) == (0, False)
    for field in ("weights", "means", "covariances", "digits"):
        assert np.array_equal(getattr(fit, field), getattr(start, field)), field


def test_a_gmm_written_as_file_contents_reads_back_as_the_same_classifier(tmp_path):
    points, _ = sample_mixture(300)
    fit = vae.fit_gmm(points, rough_start(points, digits=(1, 4, 8)))
    fingerprint = vae.state_fingerprint(vae.VAE().state_dict())
    (tmp_path / "gmm.pkl").write_bytes(pickle.dumps(vae.gmm_file_contents(fit, fingerprint)))
    assert pickle.loads((tmp_path / "gmm.pkl").read_bytes())["n_iter"] == fit.n_iter
    read = vae.load_gmm(str(tmp_path / "gmm.pkl"), fingerprint)
    for field in ("weights", "means", "covariances", "digits"):
        assert np.array_equal(getattr(read, field), getattr(fit, field)), field
    assert np.array_equal(read.predict(points), fit.predict(points))
