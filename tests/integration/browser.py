"""A real headless browser for the console's tests: Debian's chromium driven by chromedriver.

Installed on first use when missing (`apt-get install chromium chromium-driver`, as the Makefile's
`browser` step does), because CI starts from a fresh machine; a failed install fails the tests
that need it, it never skips them.
"""
from __future__ import annotations

import shutil
import subprocess
from typing import Final

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PACKAGES: Final = ("chromium", "chromium-driver")


def ensure_installed() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installing the Debian packages when they are missing."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], check=True, env=env,
                   capture_output=True, timeout=900)
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "apt-get installed chromium and chromium-driver, yet they are not on PATH"
    return browser, driver


def start(*, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    browser, driver = ensure_installed()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--lang=en-US"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)
