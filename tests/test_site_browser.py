"""The rendered site opened in headless Chromium (Debian's chromium + chromium-driver, which
.ci/run installs): every link and image of outputs/site/index.html loads from the file system."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "outputs" / "site" / "index.html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium and chromium-driver (see .ci/run)")
    pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--allow-file-access-from-files",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_every_link_and_image_loads(browser):
    assert INDEX.exists(), "outputs/site/index.html is missing: run `make run`"
    browser.get(INDEX.as_uri())
    assert "alliance-meta" in browser.title
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0]);")
    assert images, "the site shows no figure"
    broken = [src for src, ok in images if not ok]
    assert not broken, f"images that did not load: {broken}"
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
    assert any(h.endswith("notebook.html") for h in links)
    for href in sorted(set(links)):
        url = urlparse(href)
        assert url.scheme == "file", f"site links outside itself: {href}"
        target = Path(unquote(url.path))
        assert target.exists(), f"broken link: {href}"
        if target.suffix == ".html":
            browser.get(href)
            state = browser.execute_script("return document.readyState")
            assert state == "complete", href
            assert browser.execute_script("return document.body.innerText.length") > 100, href
    # headline numbers are on the page
    browser.get(INDEX.as_uri())
    assert "r = " in browser.find_element("tag name", "body").text


def _text(browser, page: str) -> str:
    browser.get((INDEX.parent / page).as_uri())
    return browser.find_element("tag name", "body").text


def test_a_reader_finds_the_report_without_opening_a_notebook(browser):
    # issue 15's "done when", on the committed site: headline with PI, tau2, I2, k and N, the
    # caution, Table 1, the PRISMA diagram, an APA results paragraph for every pooled run, the
    # published syntheses and the version/commit that built the page
    home = _text(browser, "index.html")
    for needle in ("95% prediction interval", "σ²", "I²", "samples", "Demonstration, not a synthesis",
                   "Across k =", "alliance-meta ", "commit"):
        assert needle in home, needle
    dataset = _text(browser, "dataset.html")
    assert "Table 1" in dataset and "PRISMA" in dataset
    imgs = browser.execute_script(
        "return Array.from(document.images).map(i => i.src).filter(s => s.includes('prisma'));")
    assert imgs, "the dataset page shows no PRISMA diagram"
    for page in sorted(p.name for p in INDEX.parent.glob("02_pooled-*.html")):
        assert "Across k =" in _text(browser, page), f"{page} has no APA results paragraph"
    syn = _text(browser, "syntheses.html")
    assert "Flückiger" in syn and "Horvath" in syn
