"""Bad input, hostile files and faults: a clear one-line error, nothing lost, nothing executed."""

from __future__ import annotations

import os
import pickle
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import VAE_PY, copy_model, images_of, labels_of, read_predictions, run_vae

import vae


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """Exit `code`, one line on stderr that names the problem, no traceback."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vae.py: error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- Inputs people have: accepted --------------------------------------------------------------


@pytest.mark.parametrize("layout", ["N,H,W", "N,H*W", "N,1,H,W", "H,W"])
def test_reconstruction_comes_back_in_the_input_layout(demo, trained, tmp_path, layout):
    copy_model(trained, tmp_path)
    images = images_of(demo["recon"])
    shaped = {"N,H,W": images, "N,H*W": images.reshape(len(images), -1),
              "N,1,H,W": images[:, None], "H,W": images[0]}[layout]
    np.savez(tmp_path / "in.npz", arr_0=shaped)  # a single array under another key
    result = run_vae("in.npz", "test_reconstruction", "vae.pth", cwd=tmp_path)
    assert f"{1 if layout == 'H,W' else len(images)} reconstructions" in result.stdout
    with np.load(tmp_path / "vae_reconstructed.npz") as archive:
        reconstructed = archive["data"]
    assert reconstructed.shape == shaped.shape and reconstructed.dtype == np.float32
    run_vae("in.npz", "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path)
    assert len(read_predictions(tmp_path)) == (1 if layout == "H,W" else len(images))


def test_uint8_float_unit_and_float_255_give_the_same_answer(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    images = images_of(demo["test"])[:50]
    answers = []
    for name, values in {"uint8": images, "unit": images / 255.0, "f255": images.astype(np.float32)}.items():
        np.savez(tmp_path / f"{name}.npz", data=values)
        run_vae(f"{name}.npz", "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path)
        answers.append(read_predictions(tmp_path))
    assert all(np.array_equal(answers[0], other) for other in answers[1:])


def test_14x14_even_digits_train_classify_and_reconstruct(tmp_path):
    from make_demo_data import make_demo_files

    files = make_demo_files(tmp_path / "even", digits=(0, 2, 4, 6, 8))
    for name in ("train", "val", "test"):  # 14x14 images, 2x2 means of 28x28, flat rows of 196 pixels
        small = images_of(files[name]).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).round().reshape(-1, 196)
        np.savez(tmp_path / f"{name}.npz", data=small.astype(np.uint8), labels=labels_of(files[name]))
    run_vae("train.npz", "val.npz", "train", "vae.pth", "gmm.pkl", cwd=tmp_path)
    run_vae("test.npz", "test_classifier", "vae.pth", "gmm.pkl", cwd=tmp_path)
    truth = labels_of(files["test"])
    assert set(read_predictions(tmp_path)) <= {0, 2, 4, 6, 8}
    assert np.mean(read_predictions(tmp_path) == truth) > 0.5  # five digits in 2-D from ~2,000 images; chance 0.2
    with open(tmp_path / "gmm.pkl", "rb") as handle:
        gmm = pickle.load(handle)
    assert gmm["image_shape"].tolist() == [14, 14] and sorted(gmm["digits"]) == [0, 2, 4, 6, 8]
    run_vae("test.npz", "test_reconstruction", "vae.pth", cwd=tmp_path)
    with np.load(tmp_path / "vae_reconstructed.npz") as archive:
        assert archive["data"].shape == (len(truth), 196)


def test_train_never_reads_the_training_labels(demo, tmp_path):
    images = images_of(demo["val"])
    np.savez(tmp_path / "plain.npz", data=images)
    np.savez(tmp_path / "odd_labels.npz", data=images, labels=np.array(["not", "labels"]))
    for name in ("plain", "odd_labels"):
        run_vae(f"{name}.npz", demo["val"], "train", f"{name}.pth", f"{name}.pkl", "--epochs", "2",
                "--refine-steps", "10", cwd=tmp_path)
    assert (tmp_path / "plain.pth").read_bytes() == (tmp_path / "odd_labels.pth").read_bytes()


# --- What gets a clear error -------------------------------------------------------------------


def write_bad_inputs(folder, demo) -> dict[str, tuple[str, str]]:
    """name -> (file, fragment of the expected message)."""
    images = images_of(demo["recon"])
    (folder / "text.npz").write_text("just text")
    (folder / "corrupt.npz").write_bytes(demo["recon"].read_bytes()[:300])
    np.save(folder / "plain.npy", images)
    np.savez(folder / "two_arrays.npz", images=images, more=images)
    np.savez(folder / "five_d.npz", data=images[:, None, None])
    np.savez(folder / "small.npz", data=images[:, ::2, ::2])
    np.savez(folder / "narrow.npz", data=images[:, :, :1])
    np.savez(folder / "nan.npz", data=np.where(images > 100, np.nan, 0.5))
    np.savez(folder / "negative.npz", data=images.astype(float) - 10)
    np.savez(folder / "big.npz", data=images.astype(float) * 2)
    np.savez(folder / "strings.npz", data=np.array([["a", "b"], ["c", "d"]]))
    np.savez(folder / "empty.npz", data=np.zeros((0, 28, 28), np.uint8))
    (folder / "images.csv").write_text(",".join(["0"] * 784) + "\n")
    np.savez(folder / "not_square.npz", data=np.zeros((3, 700), np.uint8))
    return {
        "missing": ("nowhere.npz", "no such file"),
        "text": ("text.npz", "not an .npz archive"),
        "corrupt": ("corrupt.npz", "corrupt"),
        "npy": ("plain.npy", "not an .npz archive"),
        "two_arrays": ("two_arrays.npz", "no image array"),
        "five_d": ("five_d.npz", "not understood"),
        "small": ("small.npz", "trained on 28x28 images"),
        "narrow": ("narrow.npz", "28x1 pixels, but the model was trained on 28x28 images"),
        "nan": ("nan.npz", "NaN"),
        "negative": ("negative.npz", "[0, 255]"),
        "big": ("big.npz", "[0, 255]"),
        "strings": ("strings.npz", "numbers"),
        "empty": ("empty.npz", "empty"),
        "csv": ("images.csv", "not an .npz archive"),
        "not_square": ("not_square.npz", "3x700 pixels"),
    }


def test_bad_image_files_get_a_one_line_error(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    for name, (path, fragment) in write_bad_inputs(tmp_path, demo).items():
        for mode_args in (["test_reconstruction", "vae.pth"], ["test_classifier", "vae.pth", "gmm_params.pkl"]):
            result = run_vae(path, *mode_args, cwd=tmp_path, expect=None)
            assert_clean_error(result, 2, fragment)
        assert not (tmp_path / "vae.csv").exists() and not (tmp_path / "vae_reconstructed.npz").exists(), name


@pytest.mark.parametrize("problem", ["no_labels", "one_digit", "count_mismatch", "other_size"])
def test_bad_validation_files_stop_train_before_the_first_epoch(demo, tmp_path, problem):
    images, labels = images_of(demo["val"]), labels_of(demo["val"])
    arrays = {"no_labels": dict(data=images), "one_digit": dict(data=images, labels=np.ones_like(labels)),
              "count_mismatch": dict(data=images, labels=labels[:-1]),
              "other_size": dict(data=images[:, ::2, ::2], labels=labels)}[problem]
    np.savez(tmp_path / "val.npz", **arrays)
    result = run_vae(demo["train"], "val.npz", "train", "vae.pth", "gmm.pkl", cwd=tmp_path, expect=None)
    fragment = {"no_labels": "needs a 'labels'", "one_digit": "at least 2 digits",
                "count_mismatch": "14 labels for 15 images", "other_size": "validation images are"}[problem]
    assert_clean_error(result, 2, fragment)
    assert "epoch" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["val.npz"]


def test_images_one_pixel_wide_stop_train_before_the_first_epoch(demo, tmp_path):
    np.savez(tmp_path / "train.npz", data=images_of(demo["train"])[:, :, :1])
    np.savez(tmp_path / "val.npz", data=images_of(demo["val"])[:, :, :1], labels=labels_of(demo["val"]))
    result = run_vae("train.npz", "val.npz", "train", "vae.pth", "gmm.pkl", cwd=tmp_path, expect=None)
    assert_clean_error(result, 2, "train.npz: training needs images of 2x2 pixels or more, not (28, 1)")
    assert "epoch" not in result.stdout
    assert sorted(os.listdir(tmp_path)) == ["train.npz", "val.npz"]


def test_bad_model_and_gmm_files(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    (tmp_path / "garbage.pth").write_bytes(b"\x80\x04garbage")
    torch.save({"encoder.0.weight": torch.zeros(3, 3)}, tmp_path / "wrong_kind.pth")
    (tmp_path / "garbage.pkl").write_bytes(b"not a pickle")
    with open(tmp_path / "list.pkl", "wb") as handle:
        pickle.dump([1, 2, 3], handle)
    with open(tmp_path / "gmm_params.pkl", "rb") as handle:
        gmm = pickle.load(handle)
    for name, key, value in [("shape", "means", np.zeros((3, 5))), ("type", "weights", 7),
                             ("nan", "covariances", np.full((3, 2, 2), np.nan)),
                             ("float_digits", "digits", np.array([1.0, 4.0, 8.0]))]:
        with open(tmp_path / f"wrong_{name}.pkl", "wb") as handle:
            pickle.dump({**gmm, key: value}, handle)
    run_vae(demo["val"], demo["val"], "train", "other.pth", "other.pkl", "--epochs", "1", "--refine-steps", "10",
            cwd=tmp_path)
    cases = [
        (["test_reconstruction", "missing.pth"], "no such model file"),
        (["test_reconstruction", "garbage.pth"], "not a VAE state_dict"),
        (["test_reconstruction", "gmm_params.pkl"], "not a VAE state_dict"),
        (["test_reconstruction", "wrong_kind.pth"], "not a VAE state_dict"),
        (["test_classifier", "vae.pth", "missing.pkl"], "no such GMM file"),
        (["test_classifier", "vae.pth", "garbage.pkl"], "not a GMM file"),
        (["test_classifier", "vae.pth", "list.pkl"], "not a GMM file"),
        (["test_classifier", "vae.pth", "other.pkl"], "different vae.pth"),
        (["test_classifier", "vae.pth", "wrong_shape.pkl"], "'means' is not an array of shape (3, 2)"),
        (["test_classifier", "vae.pth", "wrong_type.pkl"], "'weights' is not an array"),
        (["test_classifier", "vae.pth", "wrong_nan.pkl"], "'covariances' holds NaN"),
        (["test_classifier", "vae.pth", "wrong_float_digits.pkl"], "'digits' must hold whole numbers"),
    ]
    for arguments, fragment in cases:
        assert_clean_error(run_vae(demo["recon"], *arguments, cwd=tmp_path, expect=None), 2, fragment)


def test_unwritable_outputs_and_bad_command_lines(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    (tmp_path / "vae.csv").mkdir()
    result = run_vae(demo["recon"], "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path, expect=None)
    assert_clean_error(result, 2, "is a folder")
    result = run_vae(demo["train"], demo["val"], "train", "no/such/dir/vae.pth", "gmm.pkl", cwd=tmp_path, expect=None)
    assert_clean_error(result, 2, "does not exist")
    for arguments, fragment in [
        ([demo["recon"], "test_reconstructor", "vae.pth"], "no mode given"),
        ([demo["recon"], "test_reconstruction"], "takes 2 paths"),
        ([demo["train"], demo["val"], "train", "vae.pth"], "takes 4 paths"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-rounds", "-1"], "at least 0"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-steps", "0"], "at least 1"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-neighbours", "0"], "at least 1"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-jitter", "-0.5"], "between 0 and 5"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-jitter", "nan"], "between 0 and 5"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-jitter", "inf"], "between 0 and 5"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--refine-jitter", "5.01"], "between 0 and 5"),
        ([demo["recon"], "test_reconstruction", "vae.pth", "--epochs", "many"], "invalid int value"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--beta", "-1"], "positive number"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--hidden", "64", "0"], "positive sizes"),
        ([demo["train"], "train", demo["val"], "vae.pth", "gmm.pkl"], "train takes 4 paths around it"),
        ([demo["train"], demo["val"], "train", "same.pth", "same.pth"], "must differ from each other"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--seed", "-1"], "at least 0"),
        ([demo["train"], demo["val"], "train", "a.pth", "b.pkl", "--epochs", "0"], "at least 1"),
    ]:
        assert_clean_error(run_vae(*arguments, cwd=tmp_path, expect=None), 2, fragment)


# --- Nothing lost ------------------------------------------------------------------------------


def files_in(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in os.listdir(folder)}


def test_a_writer_that_fails_midway_leaves_the_old_output_and_no_temporary(demo, trained, tmp_path, monkeypatch):
    copy_model(trained, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert vae.main([str(demo["recon"]), "test_reconstruction", "vae.pth", "--quiet"]) == 0
    before = files_in(tmp_path)

    def savez_then_fail(handle, **arrays):
        handle.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    assert vae.main([str(demo["test"]), "test_reconstruction", "vae.pth", "--quiet"]) == 1
    assert files_in(tmp_path) == before


def limit_file_size(size: int):
    """For a child process: writing past `size` bytes fails with EFBIG, as a full disk fails a write."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.parametrize("mode", ["train", "test_classifier"])
def test_a_full_disk_midway_leaves_the_old_outputs_and_no_temporary(demo, trained, tmp_path, mode):
    copy_model(trained, tmp_path)
    (tmp_path / "vae.csv").write_text("Predicted_Label\n1\n")
    before = files_in(tmp_path)
    arguments = {"train": [demo["val"], demo["val"], "train", "vae.pth", "gmm_params.pkl", "--epochs", "1",
                           "--refine-steps", "10"],
                 "test_classifier": [demo["train"], "test_classifier", "vae.pth", "gmm_params.pkl"]}[mode]
    result = subprocess.run([sys.executable, VAE_PY, *arguments], cwd=tmp_path, capture_output=True, text=True,
                            preexec_fn=limit_file_size(2000))  # vae.pth is 4 MB; vae.csv 1,185 lines
    assert_clean_error(result, 1, "File too large")
    assert files_in(tmp_path) == before


def test_a_failed_run_leaves_existing_outputs_untouched(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    (tmp_path / "vae.csv").write_text("Predicted_Label\n1\n")
    np.savez(tmp_path / "nan.npz", data=np.full((3, 28, 28), np.nan))
    before = files_in(tmp_path)
    run_vae("nan.npz", "test_classifier", "vae.pth", "gmm_params.pkl", cwd=tmp_path, expect=2)
    run_vae(demo["train"], "nan.npz", "train", "vae.pth", "gmm_params.pkl", cwd=tmp_path, expect=2)
    assert files_in(tmp_path) == before


def test_nan_loss_stops_training_with_a_clear_message(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    before = (tmp_path / "vae.pth").read_bytes()
    result = run_vae(demo["val"], demo["val"], "train", "vae.pth", "gmm_params.pkl", "--lr", "1e9", "--epochs", "5",
                     cwd=tmp_path, expect=None)
    assert_clean_error(result, 1, "the loss became nan")
    assert (tmp_path / "vae.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["gmm_params.pkl", "vae.pth"]


def test_ctrl_c_during_training_writes_nothing(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    before = files_in(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(VAE_PY), str(demo["train"]), str(demo["val"]), "train", "vae.pth", "gmm_params.pkl",
         "--epochs", "1000"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("epoch"):
            break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip() == "vae.py: interrupted; no output was written"
    assert files_in(tmp_path) == before


# --- Nothing executed --------------------------------------------------------------------------


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_gmm_pickle_runs_nothing(demo, trained, tmp_path):
    copy_model(trained, tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "gmm_params.pkl", "rb") as handle:
        gmm = pickle.load(handle)
    gmm["weights"] = Hostile(marker)
    with open(tmp_path / "hostile.pkl", "wb") as handle:
        pickle.dump(gmm, handle)
    result = run_vae(demo["recon"], "test_classifier", "vae.pth", "hostile.pkl", cwd=tmp_path, expect=None)
    assert_clean_error(result, 2, "refusing to load posix.system")
    assert not marker.exists()


def test_a_hostile_model_file_runs_nothing(demo, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": Hostile(marker)}, tmp_path / "hostile.pth")
    result = run_vae(demo["recon"], "test_reconstruction", "hostile.pth", cwd=tmp_path, expect=None)
    assert_clean_error(result, 2, "not a VAE state_dict")
    assert not marker.exists()
