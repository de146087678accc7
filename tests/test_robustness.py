"""Bad input, hostile files and faults: a clear one-line error, nothing lost, nothing executed."""

from __future__ import annotations

import io
import os
import pickle
import resource
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import vae
from conftest import (
    SHIPPED,
    VAE_PY,
    assert_clean_error,
    images_of,
    labels_of,
    read_predictions,
    read_reconstructions,
    run_checked,
    short_training,
)

# --- Inputs people have: accepted --------------------------------------------------------------


@pytest.mark.parametrize("layout", ["N,H,W", "N,H*W", "N,1,H,W", "H,W"])
def test_reconstruction_comes_back_in_the_input_layout(demo, shipped, cli, layout):
    images = images_of(demo["recon"])
    shaped = {"N,H,W": images, "N,H*W": images.reshape(len(images), -1),
              "N,1,H,W": images[:, None], "H,W": images[0]}[layout]
    np.savez(shipped / "in.npz", arr_0=shaped)  # a single array under another key
    result = cli("in.npz", "test_reconstruction", "vae.pth")
    assert f"{1 if layout == 'H,W' else len(images)} reconstructions" in result.stdout
    reconstructed = read_reconstructions(shipped)
    assert reconstructed.shape == shaped.shape and reconstructed.dtype == np.float32
    cli("in.npz", "test_classifier", "vae.pth", "gmm_params.pkl")
    assert len(read_predictions(shipped)) == (1 if layout == "H,W" else len(images))


def test_uint8_float_unit_and_float_255_give_the_same_answer(demo, shipped, cli):
    images = images_of(demo["test"])[:50]
    answers = []
    for name, values in {"uint8": images, "unit": images / 255.0, "f255": images.astype(np.float32)}.items():
        np.savez(shipped / f"{name}.npz", data=values)
        cli(f"{name}.npz", "test_classifier", "vae.pth", "gmm_params.pkl")
        answers.append(read_predictions(shipped))
    assert all(np.array_equal(answers[0], other) for other in answers[1:])


def test_a_training_file_of_as_many_flat_images_as_pixels_is_read_as_images(tmp_path):
    """(784, 784) could be one 784x784 image or 784 flat 28x28 ones: a training file holds many images."""
    images = np.random.default_rng(0).integers(0, 256, size=(784, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "flat.npz", data=images.reshape(784, 784))
    assert vae.load_images(str(tmp_path / "flat.npz")).pixels.shape == (784, 28, 28)
    assert vae.load_images(str(tmp_path / "flat.npz"), pixels_per_image=784).pixels.shape == (784, 28, 28)
    np.savez(tmp_path / "one.npz", data=images[0])
    assert vae.load_images(str(tmp_path / "one.npz"), pixels_per_image=784).pixels.shape == (1, 28, 28)


@pytest.mark.slow
def test_14x14_even_digits_train_classify_and_reconstruct(tmp_path):
    from make_demo_data import make_demo_files

    files = make_demo_files(tmp_path / "even", digits=(0, 2, 4, 6, 8))
    for name in ("train", "val", "test"):  # 14x14 images, 2x2 means of 28x28, flat rows of 196 pixels
        small = images_of(files[name]).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).round().reshape(-1, 196)
        np.savez(tmp_path / f"{name}.npz", data=small.astype(np.uint8), labels=labels_of(files[name]))
    shorter = short_training(epochs=20, refine_epochs=5, restarts=None)  # 0.92; twice the epochs: 0.93
    run_checked("train.npz", "val.npz", "train", "vae.pth", "gmm.pkl", *shorter, cwd=tmp_path)
    run_checked("test.npz", "test_classifier", "vae.pth", "gmm.pkl", cwd=tmp_path)
    truth = labels_of(files["test"])
    assert set(read_predictions(tmp_path)) <= {0, 2, 4, 6, 8}
    assert np.mean(read_predictions(tmp_path) == truth) > 0.5  # five digits in 2-D from ~2,000 images; chance 0.2
    with open(tmp_path / "gmm.pkl", "rb") as handle:
        gmm = pickle.load(handle)
    assert sorted(gmm["digits"]) == [0, 2, 4, 6, 8]
    run_checked("test.npz", "test_reconstruction", "vae.pth", cwd=tmp_path)
    assert read_reconstructions(tmp_path).shape == (len(truth), 196)


def test_train_never_reads_the_training_labels(demo, tmp_path, cli):
    images = images_of(demo["val"])
    np.savez(tmp_path / "plain.npz", data=images)
    np.savez(tmp_path / "odd_labels.npz", data=images, labels=np.array(["not", "labels"]))
    for name in ("plain", "odd_labels"):
        cli(f"{name}.npz", demo["val"], "train", f"{name}.pth", f"{name}.pkl", *short_training())
    assert (tmp_path / "plain.pth").read_bytes() == (tmp_path / "odd_labels.pth").read_bytes()


# --- What gets a clear error -------------------------------------------------------------------


def npz(**arrays: np.ndarray) -> bytes:
    """The bytes of an .npz holding `arrays`, as numpy.savez writes it."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def damaged(archive: bytes) -> bytes:
    """A zip archive whose directory is sound but whose member's bytes no longer match their checksum."""
    middle = len(archive) // 2
    return archive[:middle] + bytes(byte ^ 0xFF for byte in archive[middle:middle + 64]) + archive[middle + 64:]


IMAGES = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
BAD_IMAGE_FILES = {  # case: (the file's name, its bytes or None for no file, what the message must say)
    "no file": ("images.npz", None, "no such file"),
    "text": ("images.npz", b"just text", "not an .npz archive"),
    "a truncated archive": ("images.npz", npz(data=IMAGES)[:300], "not an .npz archive"),
    "a damaged archive": ("images.npz", damaged(npz(data=IMAGES)), "corrupt or unreadable .npz file"),
    "an .npy file": ("images.npy", npy(IMAGES), "not an .npz archive"),
    "a .csv file": ("images.csv", (",".join(["0"] * 784) + "\n").encode(), "not an .npz archive"),
    "two arrays, neither named data": ("images.npz", npz(images=IMAGES, more=IMAGES), "no image array"),
    "five dimensions": ("images.npz", npz(data=IMAGES[:, None, None]), "not understood"),
    "smaller images": ("images.npz", npz(data=IMAGES[:, ::2, ::2]), "14x14 pixels, but the model was trained on 28x28"),
    "one pixel wide": ("images.npz", npz(data=IMAGES[:, :, :1]), "28x1 pixels, but the model was trained on 28x28"),
    "flat rows not square": ("images.npz", npz(data=np.zeros((3, 700), np.uint8)), "3x700 pixels"),
    "NaN": ("images.npz", npz(data=np.where(IMAGES > 100, np.nan, 0.5)), "NaN"),
    "negative values": ("images.npz", npz(data=IMAGES.astype(float) - 10), "[0, 255]"),
    "values over 255": ("images.npz", npz(data=IMAGES.astype(float) * 2), "[0, 255]"),
    "strings": ("images.npz", npz(data=np.array([["a", "b"], ["c", "d"]])), "images must be numbers"),
    "no images": ("images.npz", npz(data=np.zeros((0, 28, 28), np.uint8)), "the image array is empty"),
}
TEST_MODES = {"test_reconstruction": ["vae.pth"], "test_classifier": ["vae.pth", "gmm_params.pkl"]}


@pytest.mark.parametrize("mode", TEST_MODES)
@pytest.mark.parametrize("case", BAD_IMAGE_FILES)
def test_a_bad_image_file_gets_a_one_line_error_naming_it_and_writes_nothing(case, mode, shipped, cli):
    name, content, fragment = BAD_IMAGE_FILES[case]
    if content is not None:
        (shipped / name).write_bytes(content)
    assert_clean_error(cli(name, mode, *TEST_MODES[mode], expect=None), 2, f"{name}: ", fragment)
    assert not (shipped / vae.PREDICTIONS_FILE).exists() and not (shipped / vae.RECONSTRUCTION_FILE).exists()


def write_oversized(path, images: int) -> None:
    """An .npz whose array declares `images` 28x28 images in its header and holds none of them."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (images, 28, 28)}
    with zipfile.ZipFile(path, "w") as archive, archive.open("data.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, header)


def test_an_input_too_large_for_memory_is_refused_before_it_is_read(demo, shipped, cli):
    """It says so in one line, at once, and takes none of the memory its header declares (a Python of its own, to
    measure that)."""
    available = vae.available_memory()
    images = 2 * available // 784  # their uint8 pixels alone would fill the memory twice
    write_oversized(shipped / "huge.npz", images)
    result = run_checked("huge.npz", "test_reconstruction", "vae.pth", cwd=shipped, expect=None)
    assert_clean_error(result, 2, "huge.npz: 'data' declares", f"{images * 784:,} values", "GiB")
    assert result.peak_mb < 2000  # the declared array is over 2 x the free memory
    assert_clean_error(cli(demo["train"], "huge.npz", "train", "vae.pth", "gmm.pkl", expect=None), 2, "huge.npz")
    assert sorted(os.listdir(shipped)) == ["gmm_params.pkl", "huge.npz", "vae.pth"]


@pytest.mark.parametrize("problem", ["no_labels", "one_digit", "count_mismatch", "other_size"])
def test_bad_validation_files_stop_train_before_the_first_epoch(demo, tmp_path, cli, problem):
    images, labels = images_of(demo["val"]), labels_of(demo["val"])
    arrays = {"no_labels": dict(data=images), "one_digit": dict(data=images, labels=np.ones_like(labels)),
              "count_mismatch": dict(data=images, labels=labels[:-1]),
              "other_size": dict(data=images[:, ::2, ::2], labels=labels)}[problem]
    np.savez(tmp_path / "val.npz", **arrays)
    result = cli(demo["train"], "val.npz", "train", "vae.pth", "gmm.pkl", expect=None)
    fragment = {"no_labels": "needs a 'labels'", "one_digit": "at least 2 digits",
                "count_mismatch": "14 labels for 15 images", "other_size": "validation images are"}[problem]
    assert_clean_error(result, 2, fragment)
    assert "VAE parameters" not in result.stdout  # training never started
    assert sorted(os.listdir(tmp_path)) == ["val.npz"]


def test_images_one_pixel_wide_stop_train_before_the_first_epoch(demo, tmp_path, cli):
    np.savez(tmp_path / "train.npz", data=images_of(demo["train"])[:, :, :1])
    np.savez(tmp_path / "val.npz", data=images_of(demo["val"])[:, :, :1], labels=labels_of(demo["val"]))
    result = cli("train.npz", "val.npz", "train", "vae.pth", "gmm.pkl", expect=None)
    assert_clean_error(result, 2, "train.npz: training needs images of 2x2 pixels or more, not (28, 1)")
    assert "VAE parameters" not in result.stdout  # training never started
    assert sorted(os.listdir(tmp_path)) == ["train.npz", "val.npz"]


BAD_MODEL_FILES = {  # case: (the command after the images, what the message must say)
    "no model file": (["test_reconstruction", "missing.pth"], "missing.pth: no such model file"),
    "a model file of garbage": (["test_reconstruction", "garbage.pth"], "garbage.pth: not a VAE state_dict"),
    "a GMM file for the model": (["test_reconstruction", "gmm_params.pkl"], "gmm_params.pkl: not a VAE state_dict"),
    "another network's state_dict": (["test_reconstruction", "other.pth"], "other.pth: not a VAE state_dict"),
    "no GMM file": (["test_classifier", "vae.pth", "missing.pkl"], "missing.pkl: no such GMM file"),
    "a GMM file of garbage": (["test_classifier", "vae.pth", "garbage.pkl"], "garbage.pkl: not a GMM file"),
    "a pickled list": (["test_classifier", "vae.pth", "list.pkl"], "list.pkl: not a GMM file"),
    "another model's GMM": (["test_classifier", "vae.pth", "another.pkl"], "another.pkl: this GMM was fitted with a "
                            "different vae.pth"),
}


@pytest.mark.parametrize("case", BAD_MODEL_FILES)
def test_a_bad_model_or_gmm_file_gets_a_one_line_error_naming_it(case, demo, shipped, cli):
    (shipped / "garbage.pth").write_bytes(b"\x80\x04garbage")
    torch.save({"encoder.0.weight": torch.zeros(3, 3)}, shipped / "other.pth")
    (shipped / "garbage.pkl").write_bytes(b"not a pickle")
    (shipped / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    gmm = vae.load_gmm(shipped / "gmm_params.pkl", vae.load_model(shipped / "vae.pth")[1])
    another_model = vae.state_fingerprint(vae.VAE().state_dict())
    (shipped / "another.pkl").write_bytes(pickle.dumps(vae.gmm_file_contents(gmm, another_model)))
    arguments, fragment = BAD_MODEL_FILES[case]
    assert_clean_error(cli(demo["recon"], *arguments, expect=None), 2, fragment)
    assert not (shipped / vae.PREDICTIONS_FILE).exists() and not (shipped / vae.RECONSTRUCTION_FILE).exists()


def shipped_gmm() -> dict:
    with open(SHIPPED / "gmm_params.pkl", "rb") as handle:
        return pickle.load(handle)


def covariances_with(component: int, matrix: list[list[float]]) -> np.ndarray:
    covariances = shipped_gmm()["covariances"].copy()
    covariances[component] = matrix
    return covariances


def write_gmm(path, **changes) -> None:
    with open(path, "wb") as handle:
        pickle.dump({**shipped_gmm(), **changes}, handle)


@pytest.mark.parametrize("key", ["weights", "means", "covariances", "digits", "fingerprint"])
def test_a_gmm_file_missing_a_field_is_not_one_train_wrote(key, demo, shipped, cli):
    contents = shipped_gmm()
    del contents[key]
    (shipped / "gmm_params.pkl").write_bytes(pickle.dumps(contents))
    result = cli(demo["recon"], "test_classifier", "vae.pth", "gmm_params.pkl", expect=None)
    assert_clean_error(result, 2, "gmm_params.pkl: not a GMM file saved by this program", key, "train again")


CHANGED_GMM_FIELDS = {  # case: the fields changed from what train wrote
    "weights of the wrong shape": {"weights": np.full(2, 0.5)},
    "means of the wrong shape": {"means": np.zeros((3, 5))},
    "covariances of the wrong shape": {"covariances": np.stack([np.eye(3)] * 3)},
    "digits of the wrong shape": {"digits": np.array([[1], [4], [8]])},
    "weights not an array": {"weights": 7},
    "NaN weights": {"weights": np.array([np.nan, 0.5, 0.5])},
    "NaN means": {"means": np.full((3, 2), np.nan)},
    "infinite covariances": {"covariances": np.full((3, 2, 2), np.inf)},
    "a negative weight": {"weights": np.array([-0.1, 0.6, 0.5])},
    "weights summing to 1.5": {"weights": np.full(3, 0.5)},
    "an asymmetric covariance": {"covariances": covariances_with(0, [[1, 0.5], [0.2, 1]])},
    "a singular covariance": {"covariances": covariances_with(1, [[1, 1], [1, 1]])},
    "text weights": {"weights": np.array(["a", "b", "c"])},
    "complex means": {"means": np.zeros((3, 2), complex)},
    "fractional digits": {"digits": np.array([1.0, 4.0, 8.0])},
    "digits swapped": {"digits": np.array([4, 1, 8])},
    "weights saved at half precision": {"weights": shipped_gmm()["weights"].astype(np.float16)},
    "a fingerprint that is not text": {"fingerprint": np.zeros(3)},
    "means as a ragged list": {"means": [[0.0, 1.0], [2.0], [3.0, 4.0]]},
}


@pytest.mark.parametrize("case", CHANGED_GMM_FIELDS)
def test_a_gmm_file_changed_since_train_wrote_it_is_refused_with_the_remedy(case, demo, shipped, cli):
    write_gmm(shipped / "gmm_params.pkl", **CHANGED_GMM_FIELDS[case])
    result = cli(demo["recon"], "test_classifier", "vae.pth", "gmm_params.pkl", expect=None)
    assert_clean_error(result, 2, "gmm_params.pkl: this GMM was fitted with a different vae.pth, or changed since",
                       "train both together")
    assert not (shipped / vae.PREDICTIONS_FILE).exists()


def test_images_too_large_for_an_mlp_are_refused_before_training(demo, tmp_path, cli, monkeypatch):
    monkeypatch.setattr(vae, "available_memory", lambda: 2**30)
    np.savez(tmp_path / "scans.npz", data=np.zeros((6, 512, 512), np.uint8))
    monkeypatch.setattr(vae, "fit_classifier", None)  # training would now fail with a TypeError
    result = cli("scans.npz", demo["val"], "train", "vae.pth", "gmm.pkl", expect=None)
    with torch.device("meta"):  # shapes alone: its 269 million parameters would take a gigabyte
        parameters = vae.count_parameters(vae.VAE(512 * 512))
    assert_clean_error(result, 2, "scans.npz: a VAE for images of 512x512 pixels", f"{parameters:,} parameters",
                       "1.0 GiB of memory are free; use smaller images")
    assert sorted(os.listdir(tmp_path)) == ["scans.npz"]


def test_settings_too_large_for_memory_whatever_the_images_name_the_sizes(demo, tmp_path, cli):
    result = cli(demo["train"], demo["val"], "train", "vae.pth", "gmm.pkl", "--latent-dim", str(10**9), expect=None)
    assert_clean_error(result, 2, "--latent-dim 1000000000 has", "or smaller sizes")
    assert sorted(os.listdir(tmp_path)) == []


def test_blank_training_images_are_refused_with_the_reason(demo, tmp_path, cli):
    np.savez(tmp_path / "blank.npz", data=np.zeros((60, 28, 28), np.uint8))
    result = cli("blank.npz", demo["val"], "train", "vae.pth", "gmm.pkl", *short_training(), expect=None)
    assert_clean_error(result, 2, "blank.npz: the latent codes of these images do not spread out", "blank")
    assert sorted(os.listdir(tmp_path)) == ["blank.npz"]


def test_only_a_fault_of_ours_reaches_the_catch_all_and_it_asks_for_a_report(demo, shipped, cli, monkeypatch):
    monkeypatch.setattr(vae, "reconstruct", lambda *_: 1 / 0)
    result = cli(demo["recon"], "test_reconstruction", "vae.pth", expect=None)
    assert_clean_error(result, 1, "unexpected ZeroDivisionError", "a bug in vae.py: please report this")


def test_unwritable_outputs_get_a_one_line_error(demo, shipped, cli):
    (shipped / vae.PREDICTIONS_FILE).mkdir()
    result = cli(demo["recon"], "test_classifier", "vae.pth", "gmm_params.pkl", expect=None)
    assert_clean_error(result, 2, "is a folder")
    result = cli(demo["train"], demo["val"], "train", "no/such/dir/vae.pth", "gmm.pkl", expect=None)
    assert_clean_error(result, 2, "does not exist")


TRAIN = ["TRAIN", "VAL", "train", "a.pth", "b.pkl"]
BAD_COMMAND_LINES = [  # (words, with TRAIN and VAL for the demo files, what the message must say)
    (["TEST", "test_reconstructor", "vae.pth"], "no mode given"),
    (["TEST", "test_reconstruction"], "takes 2 paths"),
    (["TRAIN", "VAL", "train", "vae.pth"], "takes 4 paths"),
    (["TRAIN", "train", "VAL", "vae.pth", "gmm.pkl"], "train takes 4 paths around it"),
    (["TRAIN", "VAL", "train", "same.pth", "same.pth"], "must differ from each other"),
    (["TEST", "test_reconstruction", "vae.pth", "--epochs", "many"], "invalid int value"),
    ([*TRAIN, "--refine-rounds", "-1"], "between 0 and"),
    ([*TRAIN, "--refine-epochs", "0"], "between 1 and"),
    ([*TRAIN, "--refine-neighbours", "0"], "between 1 and"),
    ([*TRAIN, "--refine-jitter", "-0.5"], "between 0 and 5"),
    ([*TRAIN, "--refine-jitter", "nan"], "between 0 and 5"),
    ([*TRAIN, "--refine-jitter", "inf"], "between 0 and 5"),
    ([*TRAIN, "--refine-jitter", "5.01"], "between 0 and 5"),
    ([*TRAIN, "--beta", "-1"], "positive number"),
    ([*TRAIN, "--hidden", "64", "0"], "--hidden must be sizes between 1 and"),
    ([*TRAIN, "--seed", "-1"], "between 0 and"),
    ([*TRAIN, "--epochs", "0"], "between 1 and"),
    ([*TRAIN, "--seed", str(10**20)], "--seed must be between 0 and 2147483647"),
    ([*TRAIN, "--batch-size", str(10**20)], "--batch-size must be between 1 and 2147483647"),
    ([*TRAIN, "--hidden", str(10**20)], "--hidden must be sizes between 1 and 2147483647"),
    ([*TRAIN, "--lr", "0"], "--lr must be a positive number"),
    ([*TRAIN, "--lr", "1e300"], "--lr must be a positive number up to 3.4e+38"),
    ([*TRAIN, "--ssim-weight", "1e300"], "--ssim-weight must be between 0 and 3.4e+38"),
    ([*TRAIN, "--device", "gpu"], "--device must be one of cpu, cuda"),
]


@pytest.mark.parametrize("words, fragment", BAD_COMMAND_LINES, ids=[" ".join(words) for words, _ in BAD_COMMAND_LINES])
def test_a_bad_command_line_gets_a_one_line_error(words, fragment, demo, tmp_path, cli):
    files = {"TRAIN": demo["train"], "VAL": demo["val"], "TEST": demo["recon"]}
    result = cli(*[files.get(word, word) for word in words], expect=None)
    assert_clean_error(result, 2, fragment)
    assert "VAE parameters" not in result.stdout  # training never started


def test_a_usage_error_is_one_line_from_the_real_command_too(demo, tmp_path):
    result = run_checked(demo["recon"], "test_reconstruction", "--epochs", "many", cwd=tmp_path, expect=None)
    assert_clean_error(result, 2, "invalid int value")


# --- Nothing lost ------------------------------------------------------------------------------


def files_in(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def test_a_writer_that_fails_midway_leaves_the_old_output_and_no_temporary(demo, shipped, cli, monkeypatch):
    cli(demo["recon"], "test_reconstruction", "vae.pth", "--quiet")
    before = files_in(shipped)

    def savez_then_fail(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    assert_clean_error(cli(demo["test"], "test_reconstruction", "vae.pth", expect=None), 1, "No space left")
    assert files_in(shipped) == before


def limit_file_size(size: int):
    """For a child process: writing past `size` bytes fails with EFBIG, as a full disk fails a write."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["train", "test_classifier"])
def test_a_full_disk_midway_leaves_the_old_outputs_and_no_temporary(demo, shipped, mode):
    (shipped / vae.PREDICTIONS_FILE).write_text(f"{vae.PREDICTIONS_HEADER}\n1\n")
    before = files_in(shipped)
    arguments = {"train": [demo["val"], demo["val"], "train", "vae.pth", "gmm_params.pkl", *short_training()],
                 "test_classifier": [demo["train"], "test_classifier", "vae.pth", "gmm_params.pkl"]}[mode]
    result = subprocess.run([sys.executable, VAE_PY, *arguments], cwd=shipped, capture_output=True, text=True,
                            preexec_fn=limit_file_size(2000))  # vae.pth is 4 MB; vae.csv 1,185 lines
    assert_clean_error(result, 1, "File too large")
    assert files_in(shipped) == before


def test_a_failed_run_leaves_existing_outputs_untouched(demo, shipped, cli):
    (shipped / vae.PREDICTIONS_FILE).write_text(f"{vae.PREDICTIONS_HEADER}\n1\n")
    np.savez(shipped / "nan.npz", data=np.full((3, 28, 28), np.nan))
    before = files_in(shipped)
    cli("nan.npz", "test_classifier", "vae.pth", "gmm_params.pkl", expect=2)
    cli(demo["train"], "nan.npz", "train", "vae.pth", "gmm_params.pkl", expect=2)
    assert files_in(shipped) == before


def test_nan_loss_stops_training_with_a_clear_message(demo, shipped, cli):
    before = files_in(shipped)
    result = cli(demo["val"], demo["val"], "train", "vae.pth", "gmm_params.pkl", "--lr", "1e9", "--epochs", "5",
                 expect=None)
    assert_clean_error(result, 1, "the loss became nan")
    assert files_in(shipped) == before


@pytest.mark.slow
def test_ctrl_c_during_training_writes_nothing(demo, shipped):
    before = files_in(shipped)
    process = subprocess.Popen(
        [sys.executable, str(VAE_PY), str(demo["train"]), str(demo["val"]), "train", "vae.pth", "gmm_params.pkl"],
        cwd=shipped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's background job ignores it
    for line in process.stdout:
        if line.startswith("vae "):  # an epoch of the VAE stage
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "vae.py: interrupted; no output was written"
    assert files_in(shipped) == before


# --- Nothing executed --------------------------------------------------------------------------


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_gmm_pickle_runs_nothing(demo, shipped, cli):
    marker = shipped / "pwned"
    with open(shipped / "gmm_params.pkl", "rb") as handle:
        gmm = pickle.load(handle)
    gmm["weights"] = Hostile(marker)
    with open(shipped / "hostile.pkl", "wb") as handle:
        pickle.dump(gmm, handle)
    result = cli(demo["recon"], "test_classifier", "vae.pth", "hostile.pkl", expect=None)
    assert_clean_error(result, 2, "refusing to load posix.system")
    assert not marker.exists()


def test_a_hostile_model_file_runs_nothing(demo, tmp_path, cli):
    marker = tmp_path / "pwned"
    torch.save({"weights": Hostile(marker)}, tmp_path / "hostile.pth")
    result = cli(demo["recon"], "test_reconstruction", "hostile.pth", expect=None)
    assert_clean_error(result, 2, "not a VAE state_dict")
    assert not marker.exists()
