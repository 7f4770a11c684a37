"""The web page's live frame rate: `foveal serve` with a demo video, opened in headless chromium at /?demo, the
page's own frames-per-second reading (#fps) every 5 seconds, 30 seconds in all.

Run by hand, never in CI (Debian's chromium and chromium-driver, selenium):

    .venv/bin/python benchmarks/page_fps.py runs/segment/polyps/best.onnx runs/segment/polyps/video/polyps.mp4
"""

import argparse
import os
import shutil
import subprocess
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("video")
    parser.add_argument("--conf", default="0.4")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    server = subprocess.Popen([sys.executable, "-m", "foveal", "serve", f"weights={args.weights}", f"conf={args.conf}",
                               f"video={args.video}", f"port={args.port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    os.environ["SE_AVOID_STATS"] = "true"  # selenium's manager would otherwise try to send usage statistics
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = None
    try:
        time.sleep(12)  # the server loads the weights
        driver = webdriver.Chrome(options=options,
                                  service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
        driver.get(f"http://127.0.0.1:{args.port}/?demo")
        for _ in range(6):
            time.sleep(5)
            print(driver.find_element(By.ID, "fps").text, "|", driver.find_element(By.ID, "seen").text, flush=True)
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()


if __name__ == "__main__":
    main()
