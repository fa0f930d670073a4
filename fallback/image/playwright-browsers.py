"""Points Playwright for Python at the image's Chromium: no browser download.

Playwright looks for its browsers under $PLAYWRIGHT_BROWSERS_PATH at paths named after the
revisions in its browsers.json. This links both Chromium builds it may launch (the full one,
and the headless shell that `launch()` uses by default) to Debian's Chromium, so a script
written for a stock Playwright install (`p.chromium.launch()`) runs unchanged.
"""

import json
import os
import pathlib

import playwright

ROOT = pathlib.Path(os.environ["PLAYWRIGHT_BROWSERS_PATH"])
CHROMIUM = "/usr/bin/chromium"
# Playwright's own layout for linux-x64 (its EXECUTABLE_PATHS).
LAYOUT = {
    "chromium": ("chrome-linux64", "chrome"),
    "chromium-headless-shell": ("chrome-headless-shell-linux64", "chrome-headless-shell"),
}

browsers = pathlib.Path(playwright.__file__).parent / "driver" / "package" / "browsers.json"
for browser in json.loads(browsers.read_text())["browsers"]:
    if browser["name"] not in LAYOUT:
        continue
    directory = ROOT / f"{browser['name'].replace('-', '_')}-{browser['revision']}"
    executable = directory.joinpath(*LAYOUT[browser["name"]])
    executable.parent.mkdir(parents=True, exist_ok=True)
    executable.symlink_to(CHROMIUM)
    (directory / "INSTALLATION_COMPLETE").touch()
    print(f"{browser['name']} {browser['browserVersion']}: {executable} -> {CHROMIUM}")
