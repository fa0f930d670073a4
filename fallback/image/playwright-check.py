"""The image's Playwright drives its Chromium: run once while the image is built."""

from playwright.sync_api import sync_playwright

with sync_playwright() as p:
    browser = p.chromium.launch()
    page = browser.new_page()
    page.set_content("<button onclick=\"this.textContent = 'clicked'\">go</button>")
    page.click("button")
    assert page.text_content("button") == "clicked"
    print("playwright", browser.version, "ok")
    browser.close()
