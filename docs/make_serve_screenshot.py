"""Make docs/serve-page.jpg, the README's picture of ``coloi serve``'s page:

    python docs/make_serve_screenshot.py

Starts ``coloi serve`` (tflite) on a free loopback port, uploads sample photos (grey copies
of the colour ones) through the page in Debian's headless Chromium, and takes a screenshot
once they are colourised, with the before/after sliders at different places. Needs the serve
extra, selenium, and the chromium and chromium-driver packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("camera.png", "chelsea.jpg", "coffee.jpg")
SLIDERS = (62, 45, 55)


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    coloi = shutil.which("coloi", path=str(Path(sys.executable).parent)) or "coloi"
    server = subprocess.Popen(
        [coloi, "serve", "--backend", "tflite", "--port", str(port), "--no-access-log"]
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        with tempfile.TemporaryDirectory() as scratch:
            photos = []
            for name in PHOTOS:  # grey copies, as a family's old prints would be
                grey = cv2.imread(str(REPO / "samples" / name), cv2.IMREAD_GRAYSCALE)
                photos.append(Path(scratch) / name)
                cv2.imwrite(str(photos[-1]), grey)
            wait_for(url + "v1/health")
            shoot(url, photos, REPO / "docs" / "serve-page.jpg")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def wait_for(url: str) -> None:
    for _ in range(300):
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def shoot(url: str, photos: list[Path], target: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--window-size=1200,900",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(url)
        until(lambda: driver.execute_script("return document.body.dataset.ready"))
        driver.find_element(By.ID, "files").send_keys("\n".join(map(str, photos)))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        until(lambda: all(c.get_attribute("data-status") == "done" for c in cards))
        driver.execute_script("document.getElementById('settings').open = true")
        for card, position in zip(cards, SLIDERS, strict=True):
            driver.execute_script(
                "const s = arguments[0].querySelector('.slider'); s.value = arguments[1];"
                "s.dispatchEvent(new Event('input'));",
                card,
                position,
            )
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1200, height + 140)  # the whole page, no scrolling
        time.sleep(0.5)
        png = driver.get_screenshot_as_png()
        picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(target), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(f"wrote {target}")
    finally:
        driver.quit()


def until(predicate: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("the page did not finish")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
