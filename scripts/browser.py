"""Headless Chromium, driven by selenium: the explorer page's screenshot for the README, and the driver of its tests.

    python scripts/browser.py explorer/explorer.html models/gmm_params.pkl docs/explorer.png   # make explorer

The screenshot shows the page as a student would use it: the cursor on the GMM's digit-1 component, a 4 drawn on the
pad, and the walk from the digit-8 component to the digit-4 one. The PNG carries the GMM file's fingerprint, which
names the model and GMM it shows (tests/test_docs.py holds the README's pictures to the shipped model by it). It needs
Debian's chromium and chromium-driver (./install.sh --browser) and selenium (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import pickle
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from score import FIGURE_FINGERPRINT

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars"]
WAIT_SECONDS = 20
SCREENSHOT_SIZE = (1200, 800)


def missing_parts() -> list[str]:
    """What the browser needs and this machine lacks, each with how to get it."""
    wanted = [("Chromium (apt-get install chromium)", any(map(shutil.which, CHROMIUM_NAMES))),
              ("chromedriver (apt-get install chromium-driver)", shutil.which("chromedriver")),
              ("selenium (pip install selenium)", importlib.util.find_spec("selenium"))]
    return [name for name, found in wanted if not found]


@contextlib.contextmanager
def chromium(window: tuple[int, int] = SCREENSHOT_SIZE, logs: bool = False) -> Iterator[object]:
    """A headless Chromium with an empty profile, as selenium's WebDriver, closed after the block."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = next(filter(None, map(shutil.which, CHROMIUM_NAMES)))
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        if logs:
            options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.set_script_timeout(WAIT_SECONDS)
            driver.set_window_size(*window)
            inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
            driver.set_window_size(*(2 * size - shown for size, shown in zip(window, inner)))  # the page's size
            yield driver
        finally:
            driver.quit()


def show(driver, page: Path):
    """`driver` showing `page`, its model ready; loaded only if another page is showing."""
    if driver.current_url != page.as_uri():
        driver.get(page.as_uri())
    driver.execute_async_script("const done = arguments[arguments.length - 1];"
                                "Promise.resolve(window.vaeExplorer.ready).then(() => done(true));")
    return driver


def after_a_frame(driver, script: str):
    """`script`'s value after the page has drawn its next frame."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"requestAnimationFrame(() => requestAnimationFrame(() => done((() => {{ {script} }})())));")


def point_at_scatter(driver, offset: tuple[float, float], click: bool = False) -> str:
    """Move the pointer to `offset` from the scatter's centre, and click there if `click`; after the page's next
    frame, the code it shows under the pointer."""
    from selenium.webdriver.common.action_chains import ActionChains

    scatter = driver.find_element("id", "scatter")
    pointer = ActionChains(driver, duration=10).move_to_element_with_offset(scatter, *map(round, offset))
    (pointer.click() if click else pointer).perform()
    return after_a_frame(driver, "return document.getElementById('hover-digit').dataset.code;")


def draw(driver, element, strokes: list[list[tuple[int, int]]], pointer: str = "mouse") -> None:
    """Draw with real pointer events: each stroke's corners are offsets from the element's centre."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    actions = ActionBuilder(driver, mouse=PointerInput(pointer, pointer), duration=10)
    for stroke in strokes:
        actions.pointer_action.move_to(element, *stroke[0]).pointer_down()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            for step in range(1, 9):
                actions.pointer_action.move_to(element, x0 + (x1 - x0) * step // 8, y0 + (y1 - y0) * step // 8)
        actions.pointer_action.pointer_up()
    actions.perform()


FOUR = [[(-30, -60), (-45, 10), (40, 10)], [(20, -60), (20, 70)]]  # strokes of a 4, on the pad


def screenshot(page: Path, fingerprint: str, png: Path) -> None:
    """The README's picture of `page`, into `png` with `fingerprint` in its text."""
    from PIL import Image, PngImagePlugin

    with chromium() as driver:
        show(driver, page)
        means = dict(driver.execute_script("const data = JSON.parse(document.getElementById('explorer-data')"
                                           ".textContent).gmm; return data.digits.map((d, k) => [d, data.means[k]]);"))
        offset = {digit: driver.execute_script("return window.vaeExplorer.offsetOf(arguments[0]);", mean)
                  for digit, mean in means.items()}
        draw(driver, driver.find_element("id", "pad"), FOUR)
        for digit in (8, 4):
            point_at_scatter(driver, offset[digit], click=True)
        point_at_scatter(driver, offset[1])
        image = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
    text = PngImagePlugin.PngInfo()
    text.add_text(FIGURE_FINGERPRINT, fingerprint)
    image.save(png, pnginfo=text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, help="an explorer.html written by scripts/explorer.py")
    parser.add_argument("gmm", type=Path, help="the gmm_params.pkl the page shows, whose fingerprint the PNG keeps")
    parser.add_argument("png", type=Path, help="the screenshot to write")
    args = parser.parse_args()
    missing = missing_parts()
    if missing:
        sys.exit(f"browser.py: the screenshot needs {' and '.join(missing)}; ./install.sh --browser installs the "
                 "first two on Debian")
    with open(args.gmm, "rb") as handle:
        fingerprint = pickle.load(handle)["fingerprint"]
    screenshot(args.page.resolve(), fingerprint, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
