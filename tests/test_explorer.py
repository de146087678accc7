"""scripts/explorer.py: its command line, and its page, which runs the model itself in a real browser.

The browser tests load the page written for the shipped model in one headless Chromium (Debian's `chromium`
and `chromium-driver`, and `selenium`). Where those are missing they skip, unless REQUIRE_BROWSER=1, as in CI,
makes that a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch

import browser
import explorer
import vae
from conftest import SHIPPED, images_of, labels_of, scaled

SHIPPED_FILES = [str(SHIPPED / "vae.pth"), str(SHIPPED / "gmm_params.pkl")]


def run_explorer(*args: object) -> str:
    """explorer.py's command line in this process; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        explorer.main([str(arg) for arg in args])
    return printed.getvalue()


def refusal(*args: object) -> str:
    """The message of a command line that explorer.py refuses."""
    with pytest.raises(SystemExit) as stop:
        run_explorer(*args)
    return str(stop.value.code)


def pickle_gmm(gmm: vae.GMM, model: vae.VAE) -> bytes:
    """`gmm` as a GMM file paired with `model`."""
    return pickle.dumps(vae.gmm_file_contents(gmm, vae.state_fingerprint(model.state_dict())))


# --- The command line: no browser needed ------------------------------------------------------------------


def test_help_names_the_inputs_and_the_page(capsys):
    with pytest.raises(SystemExit) as stop:
        explorer.main(["--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    usage = " ".join(shown.split("\n\n")[0].split())
    assert usage.endswith("TRAIN.npz VAL.npz vae.pth gmm_params.pkl") and "--out OUT" in usage
    assert "OUT/explorer.html" in shown and "no network" in shown and "--max-points" in shown


def test_the_training_labels_are_never_read_and_the_sample_is_fixed(demo, tmp_path):
    """Labels that no loader would accept (a wrong count) do not matter; two runs write the same bytes."""
    train = tmp_path / "train.npz"
    np.savez(train, data=images_of(demo["train"]), labels=np.arange(3))
    pages = []
    for run in ("first", "second"):
        line = run_explorer(train, demo["val"], *SHIPPED_FILES, "--out", tmp_path / run, "--max-points", 300)
        assert line.startswith(f"wrote {tmp_path / run / 'explorer.html'} (")
        assert f"300 of {len(images_of(demo['train'])):,} training codes" in line and line.count("\n") == 1
        pages.append((tmp_path / run / "explorer.html").read_bytes())
    assert pages[0] == pages[1]


def test_the_page_names_its_files_without_their_folders(demo, tmp_path):
    """Students share the page: the absolute paths it was built from, which name their owners, stay out of it."""
    run_explorer(demo["train"], demo["val"], *SHIPPED_FILES, "--out", tmp_path, "--max-points", 10)
    page = (tmp_path / "explorer.html").read_text()
    for path in (demo["train"], demo["val"], *SHIPPED_FILES):
        assert f'"{Path(path).name}"' in page and str(Path(path).parent) not in page


@pytest.mark.parametrize("problem", ["missing training file", "another model's GMM", "images of another size"])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(demo, tmp_path, problem):
    paths = [demo["train"], demo["val"], *SHIPPED_FILES]
    expected = {"missing training file": "no such file", "another model's GMM": "different vae.pth",
                "images of another size": "images of 10x10 pixels"}[problem]
    if problem == "missing training file":
        paths[0] = tmp_path / "absent.npz"
    elif problem == "another model's GMM":
        model = vae.VAE(hidden_dims=(8,))
        gmm = vae.load_gmm(SHIPPED_FILES[1], vae.load_model(SHIPPED_FILES[0])[1])
        paths[3] = tmp_path / "gmm.pkl"
        paths[3].write_bytes(pickle_gmm(gmm, model))
    else:
        paths[1] = tmp_path / "small.npz"
        np.savez(paths[1], data=np.zeros((3, 10, 10), np.uint8), labels=np.array([1, 4, 8]))
    message = refusal(*paths, "--out", tmp_path / "out")
    assert message.startswith("explorer.py: error: ") and expected in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_a_page_over_the_size_limit_is_refused(demo, tmp_path, monkeypatch):
    monkeypatch.setattr(explorer, "MAX_PAGE_BYTES", 1_000_000)
    message = refusal(demo["train"], demo["val"], *SHIPPED_FILES, "--out", tmp_path)
    assert "over the 1 MB limit" in message
    assert list(tmp_path.iterdir()) == []


# --- The page, in a real browser ---------------------------------------------------------------------------


def require_browser() -> None:
    """A skip where Chromium, chromedriver or selenium is missing, or under REQUIRE_BROWSER=1 a failure."""
    missing = browser.missing_parts()
    if missing:
        reason = f"the browser tests need {' and '.join(missing)}"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}; REQUIRE_BROWSER=1 requires them")
        pytest.skip(reason)


class Browser(NamedTuple):
    driver: object  # selenium's WebDriver
    shipped_page: Path
    written: str  # what explorer.py printed

    def show(self, page: Path):
        """The driver, showing `page` and its model ready; loaded only if another page is showing."""
        if self.driver.current_url != page.as_uri():
            self.driver.get_log("browser")  # the console of the page before, read and dropped
        return browser.show(self.driver, page)


@pytest.fixture(scope="module")
def chromium(demo, tmp_path_factory):
    """The page for the shipped model, written once, and one headless Chromium for every browser test."""
    require_browser()
    folder = tmp_path_factory.mktemp("explorer")
    written = run_explorer(demo["train"], demo["val"], *SHIPPED_FILES, "--out", folder)
    with browser.chromium((1200, 900), logs=True) as driver:
        yield Browser(driver, folder / "explorer.html", written)


@pytest.fixture(scope="module")
def shipped_model() -> tuple[vae.VAE, vae.GMM]:
    model, fingerprint = vae.load_model(SHIPPED_FILES[0])
    return model, vae.load_gmm(SHIPPED_FILES[1], fingerprint)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested_urls(driver) -> set[str]:
    """Every URL the browser asked for since the performance log was last read, its own included."""
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


FETCHING_SCHEMES = ("http", "https", "ws", "wss", "ftp", "file")  # the network, or another file on disk


def fetched_beyond(page: Path, urls: set[str]) -> set[str]:
    """The URLs that reach the network or a file other than `page`: not the browser's own loads (chrome:, data:,
    blob:, about:), which each Chromium release makes differently."""
    return {url for url in urls if urlsplit(url).scheme in FETCHING_SCHEMES and url != page.as_uri()}


def call_each(driver, method: str, arguments: list) -> list:
    """window.vaeExplorer.`method` on each argument, in the page."""
    return driver.execute_script(f"return arguments[0].map((each) => window.vaeExplorer.{method}(each));",
                                 arguments)


@pytest.fixture(scope="module")
def real_digits(demo, shipped_model) -> tuple[np.ndarray, np.ndarray]:
    """200 held-out digits, flat, and their codes by vae.latent_codes."""
    pixels = vae.load_images(str(demo["test"]), shipped_model[0].input_dim).pixels[:200]
    assert set(labels_of(demo["test"])[:200]) == {1, 4, 8}
    return pixels.reshape(len(pixels), -1), vae.latent_codes(shipped_model[0], pixels)


@pytest.mark.slow
def test_the_page_loads_with_no_console_error_and_requests_nothing_but_itself(chromium, demo):
    page = chromium.shipped_page
    assert page.stat().st_size <= explorer.MAX_PAGE_BYTES
    assert f"wrote {page} ({page.stat().st_size / 1e6:.1f} MB)" in chromium.written
    driver = chromium.driver
    requested_urls(driver)  # a fresh load, whatever the tests before it did
    driver.get(page.as_uri())
    driver = chromium.show(page)
    requested = requested_urls(driver)
    assert page.as_uri() in requested and fetched_beyond(page, requested) == set()
    assert console_errors(driver) == []
    assert driver.execute_script("return performance.getEntriesByType('resource').map((entry) => entry.name);") == []
    count = len(images_of(demo["train"]))
    assert driver.find_element("id", "summary").text.startswith(f"{count:,} of {count:,} training codes")


@pytest.mark.slow
def test_a_page_that_fetches_something_is_caught(chromium, tmp_path):
    """The check above can fail: a page with an image from the network and one from a second file."""
    (tmp_path / "other.png").write_bytes(b"")
    page = tmp_path / "fetching.html"
    page.write_text('<img src="https://example.invalid/digit.png"><img src="other.png">')
    requested_urls(chromium.driver)
    chromium.driver.get(page.as_uri())
    fetched = fetched_beyond(page, requested_urls(chromium.driver))
    assert fetched == {"https://example.invalid/digit.png", (tmp_path / "other.png").as_uri()}


@pytest.mark.slow
def test_decode_matches_the_torch_decoder_within_1e_4(chromium, shipped_model):
    points = np.random.default_rng(0).uniform(-5, 5, (40, 2)).astype(np.float32)
    decoded = np.array(call_each(chromium.show(chromium.shipped_page), "decode", points.tolist()))
    with torch.no_grad():
        expected = shipped_model[0].decode(torch.from_numpy(points)).numpy()
    assert decoded.shape == (40, shipped_model[0].input_dim)
    assert decoded.min() >= 0 and decoded.max() <= 1
    assert np.abs(decoded - expected).max() < 1e-4


@pytest.mark.slow
def test_encode_matches_latent_codes_within_1e_3(chromium, real_digits):
    pixels, codes = real_digits
    encoded = np.array(call_each(chromium.show(chromium.shipped_page), "encode", pixels.tolist()))
    assert encoded.shape == codes.shape
    assert np.abs(encoded - codes).max() < 1e-3


@pytest.mark.slow
def test_classify_matches_the_classifier_on_real_digits(chromium, shipped_model, real_digits):
    """The digits `vae.py test_classifier` writes, from the codes of vae.py and from the page's own codes; and
    the classifier's rule over a grid of the plane, boundaries included."""
    pixels, codes = real_digits
    expected = shipped_model[1].predict(codes)
    driver = chromium.show(chromium.shipped_page)
    assert call_each(driver, "classify", codes.tolist()) == expected.tolist()
    own_codes = call_each(driver, "encode", pixels.tolist())
    assert call_each(driver, "classify", own_codes) == expected.tolist()
    grid = np.stack(np.meshgrid(np.linspace(-6, 6, 50), np.linspace(-6, 6, 50)), axis=-1).reshape(-1, 2)
    assert call_each(driver, "classify", grid.tolist()) == shipped_model[1].predict(grid).tolist()


SHOWN_IMAGES = """
    const [selector, decodedOf] = arguments;
    return Array.from(document.querySelectorAll(selector), (canvas) => {
      const code = (decodedOf ? document.getElementById(decodedOf) : canvas).dataset.code.split(",").map(Number);
      const shown = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
      const expected = window.vaeExplorer.decode(code).map((value) => Math.round(255 * value));
      return {code, difference: Math.max(...expected.map((value, i) => Math.abs(value - shown[4 * i])))};
    });
"""


def shown_images(driver, selector: str, decoded_of: str | None = None) -> list[dict]:
    """Each image under `selector`: its code (from the element `decoded_of`, else its own data-code) and how far,
    in 0-255 levels, it is from the page's decode of that code."""
    return driver.execute_script(SHOWN_IMAGES, selector, decoded_of)


@pytest.mark.slow
def test_the_point_under_the_cursor_is_decoded_and_classified_live(chromium):
    driver = chromium.show(chromium.shipped_page)
    codes = []
    for offset in [(-120, 60), (90, -110)]:
        browser.point_at_scatter(driver, offset)
        (hover,) = shown_images(driver, "#hover-image", "hover-digit")
        assert hover["difference"] == 0
        digit = driver.find_element("id", "hover-digit").text
        assert digit == str(driver.execute_script("return window.vaeExplorer.classify(arguments[0]);", hover["code"]))
        values = driver.find_elements("css selector", "#hover-posterior .value")
        percentages = [float(value.text.rstrip("%")) for value in values]
        assert len(percentages) == 3 and abs(sum(percentages) - 100) < 0.5
        codes.append(hover["code"])
    assert codes[0] != codes[1] and codes[0][0] < codes[1][0] and codes[0][1] < codes[1][1]


@pytest.mark.slow
def test_two_clicks_give_the_straight_walk_between_them_decoded(chromium):
    driver = chromium.show(chromium.shipped_page)
    clicked = [browser.point_at_scatter(driver, offset, click=True) for offset in [(-150, 120), (140, -130)]]
    walk = shown_images(driver, "#walk canvas")
    assert len(walk) == 10 and all(image["difference"] == 0 for image in walk)
    codes = np.array([image["code"] for image in walk])
    ends = np.array([[float(value) for value in code.split(",")] for code in clicked])
    assert np.allclose(codes[[0, -1]], ends, rtol=0, atol=1e-12)
    steps = np.diff(codes, axis=0)
    assert np.allclose(steps, steps[0], rtol=0, atol=1e-12) and (steps[0] > 0).all()  # rightwards and up
    assert driver.find_element("id", "walk-hint").text.startswith("From A z = (")


PAD_RESULT = """
    const digit = document.getElementById("pad-digit");
    const image = document.getElementById("pad-reconstruction");
    const pixels = image.getContext("2d").getImageData(0, 0, image.width, image.height).data;
    return {digit: digit.textContent, code: digit.dataset.code || null,
            ink: pixels.filter((_, i) => i % 4 === 0).reduce((sum, value) => sum + value, 0),
            scatter: document.getElementById("scatter").toDataURL()};
"""


@pytest.mark.slow
@pytest.mark.parametrize(("digit", "pointer", "strokes"), [
    (1, "mouse", [[(-50, -70), (-53, -35)]]),  # small, in a corner: MNIST's framing makes it a 1
    (4, "touch", [[(-30, -60), (-45, 10), (40, 10)], [(20, -60), (20, 70)]]),
])
def test_a_drawn_digit_is_encoded_classified_and_marked(chromium, digit, pointer, strokes):
    driver = chromium.show(chromium.shipped_page)
    driver.find_element("id", "clear-pad").click()
    cleared = browser.after_a_frame(driver, PAD_RESULT)
    assert cleared["digit"] == "" and cleared["code"] is None and cleared["ink"] == 0
    browser.draw(driver, driver.find_element("id", "pad"), strokes, pointer)
    drawn = browser.after_a_frame(driver, PAD_RESULT)
    assert drawn["code"], "the drawing gave no code"
    code = [float(value) for value in drawn["code"].split(",")]
    assert len(code) == 2 and np.isfinite(code).all()
    classified = driver.execute_script("return window.vaeExplorer.classify(arguments[0]);", code)
    assert drawn["digit"] == str(digit) == str(classified)
    assert drawn["ink"] > 0  # the reconstruction
    assert drawn["scatter"] != cleared["scatter"]  # the code's star
    assert console_errors(driver) == []


@pytest.mark.slow
def test_a_model_of_other_sizes_and_image_shape_runs_in_the_page(chromium, tmp_path):
    """Layer sizes come from the state_dict and the image shape from the images: 3 hidden layers on 10x12 images."""
    torch.manual_seed(0)
    model = vae.VAE(input_dim=120, hidden_dims=(40, 24, 16)).eval()
    torch.save(model.state_dict(), tmp_path / "vae.pth")
    gmm = vae.GMM(weights=np.array([0.5, 0.5]), means=np.array([[-1.0, 0.0], [1.0, 0.5]]),
                  covariances=np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 2.0]]]), digits=np.array([3, 7]))
    (tmp_path / "gmm.pkl").write_bytes(pickle_gmm(gmm, model))
    images = np.random.default_rng(0).integers(0, 256, (30, 10, 12), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", data=images)
    np.savez(tmp_path / "val.npz", data=images[:4], labels=np.array([3, 3, 7, 7]))
    run_explorer(*(tmp_path / name for name in ("train.npz", "val.npz", "vae.pth", "gmm.pkl")), "--out", tmp_path)
    driver = chromium.show(tmp_path / "explorer.html")
    pixels = scaled(images).reshape(30, -1)
    codes = vae.latent_codes(model, pixels.astype(np.float32))
    assert np.abs(np.array(call_each(driver, "encode", pixels.tolist())) - codes).max() < 1e-3
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(codes.astype(np.float32))).numpy()
    decoded = np.array(call_each(driver, "decode", codes.astype(np.float32).tolist()))
    assert np.abs(decoded - expected).max() < 1e-4
    assert call_each(driver, "classify", codes.tolist()) == gmm.predict(codes).tolist()
    browser.draw(driver, driver.find_element("id", "pad"), [[(0, -60), (0, 60)]], "mouse")
    drawn = browser.after_a_frame(driver, PAD_RESULT)
    assert drawn["code"] and drawn["digit"] in ("3", "7")
    sizes = driver.execute_script("return ['pad-input', 'pad-reconstruction', 'hover-image'].map((id) => "
                                  "[document.getElementById(id).height, document.getElementById(id).width]);")
    assert sizes == [[10, 12]] * 3
    assert console_errors(driver) == []
