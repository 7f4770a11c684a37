"""`foveal serve`: the HTTP API with a real client against a real server process, and the web page in a real
browser (Debian's chromium and chromium-driver, driven by selenium; skipped with the reason when missing)."""

import asyncio
import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import foveal

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def start_server(weights, *options, wait: float = 60):
    """(URL, process) of `foveal serve` on loopback, once /health answers (within `wait` seconds)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "foveal", "serve", f"weights={weights}", f"port={port}",
                                *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"foveal serve did not start: {process.stdout.read()[-2000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(trained_detector, tmp_path_factory):
    """(base URL, weights, image folder) of `foveal serve` on the trained detector's ONNX file, with a demo video."""
    best, annotations, images = trained_detector
    folder = tmp_path_factory.mktemp("serve")
    video = folder / "scenes.mp4"
    frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(images.iterdir())[:6]]
    writer = __import__("cv2").VideoWriter(str(video), __import__("cv2").VideoWriter_fourcc(*"mp4v"), 5,
                                           (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame[:, :, ::-1].copy())
    writer.release()
    url, process = start_server(best.with_suffix(".onnx"), "max_upload_mb=1", "threads=2", f"video={video}", wait=90)
    yield url, best, images
    process.terminate()
    process.wait(timeout=20)


def test_info_and_page(server):
    url, best, images = server
    info = httpx.get(f"{url}/info").json()
    assert info["task"] == "detect" and info["format"] == "onnx" and info["imgsz"] == 128
    assert info["classes"] == ["circle", "square", "triangle", "star", "hexagon", "cross"] and info["conf"] == 0.25
    assert info["video"]["frames"] == 6
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: no CDN, no fonts
    frame = httpx.get(f"{url}/video/frame/7")  # wraps around: frame 1
    assert frame.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(frame.content)).size == (150, 100)


def test_predict_answers_what_predict_writes(server, tmp_path):
    url, best, images = server
    image = sorted(images.iterdir())[0]
    answer = httpx.post(f"{url}/predict", files={"file": (image.name, image.read_bytes(), "image/png")}).json()
    assert answer["task"] == "detect" and (answer["width"], answer["height"]) == (150, 100)
    assert set(answer["ms"]) == {"preprocess", "inference", "postprocess"}
    (expected,) = foveal.predict("detect", weights=best.with_suffix(".onnx"), source=image)
    expected = expected.predictions
    found = answer["results"]
    assert found and [r["category"] for r in found] == [r["category"] for r in expected]
    np.testing.assert_allclose([r["bbox"] for r in found], [r["bbox"] for r in expected], atol=0.02)
    assert all(r["score"] >= 0.25 for r in found)
    # the raw body works as the form does; ?conf= raises the threshold
    raw = httpx.post(f"{url}/predict", content=image.read_bytes()).json()
    assert raw["results"] == found
    high = httpx.post(f"{url}/predict?conf=0.9", content=image.read_bytes()).json()["results"]
    assert high == [r for r in found if r["score"] >= 0.9]


@pytest.mark.parametrize("request_args, status, words", [
    (dict(content=b"not an image at all"), 400, "not a readable image"),
    (dict(content=b""), 400, "holds no image"),
    (dict(files={"other": ("x.txt", b"abc", "text/plain")}, data={}), 400, "not a readable image"),
    (dict(files={"conf": (None, "0.5")}), 400, "holds no file"),
    (dict(content=b"\x89PNG\r\n\x1a\n" + b"\0" * 100), 400, "not a readable image"),
    (dict(content=b"x" * 1_500_000), 413, "max_upload_mb=1"),
    (dict(content=png_bytes(np.zeros((8, 8, 3), np.uint8)), params={"conf": "2"}), 400, "conf: 2.0 is out of range"),
    (dict(content=b"--xx\r\ngarbage", headers={"content-type": "multipart/form-data; boundary=xx"}), 400, "upload"),
    (dict(content=png_bytes(np.zeros((8, 8, 3), np.uint8)), params={"stream": "my video"}), 400,
     "stream: expected an id of 1 to 64 letters, digits, '_' or '-', got 'my video'"),
    (dict(content=png_bytes(np.zeros((8, 8, 3), np.uint8)), params={"stream": "v" * 65}), 400,
     "stream: expected an id"),
    (dict(files={"file": ("x.png", png_bytes(np.zeros((8, 8, 3), np.uint8)), "image/png")}, data={"stream": "../a"}),
     400, "stream: expected an id"),
])
def test_bad_requests_get_one_line(server, request_args, status, words):
    url = server[0]
    response = httpx.post(f"{url}/predict", **request_args)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in detail and "\n" not in detail
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_twenty_concurrent_requests_are_all_answered(server):
    url, best, images = server
    bodies = [path.read_bytes() for path in sorted(images.iterdir())[:4]]
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda k: httpx.post(f"{url}/predict", content=bodies[k % 4], timeout=60), range(20)))
    assert [a.status_code for a in answers] == [200] * 20
    by_image = {}
    for k, answer in enumerate(answers):  # each answer belongs to its own image, whatever ran beside it
        by_image.setdefault(k % 4, answer.json()["results"])
        assert answer.json()["results"] == by_image[k % 4]
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "pending": 0}


def test_past_the_queue_bound_503_with_retry_after(trained_detector):
    """queue=2: of 6 requests at once two run or wait, the rest are told to come back."""
    from foveal.serve.app import build

    best, annotations, images = trained_detector
    app, server = build({"weights": str(best), "queue": "2", "threads": "1"})
    body = sorted(images.iterdir())[0].read_bytes()

    async def burst():  # all six sent at once
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await asyncio.gather(*[client.post("/predict", content=body) for _ in range(6)])

    answers = asyncio.run(burst())
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 503, 503, 503, 503]
    assert all(a.headers["retry-after"] == "1" for a in answers if a.status_code == 503)


def test_classify_and_segment_weights_serve_their_own_answers(tmp_path):
    from foveal.serve.app import build

    classify = foveal.train("classify", data="digits", model="simple_cnn", imgsz=16, batch=64, epochs=1, workers=0,
                            amp="off", verbose=False, project=tmp_path, name="c")
    segment = foveal.train("segment", data="shapes", model="unet", width=8, depth=2, imgsz=32, batch=8, epochs=1,
                           workers=0, amp="off", verbose=False, project=tmp_path, name="s")
    image = png_bytes(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))

    def ask(weights, **options):
        app, _ = build({"weights": str(weights), **options})
        answer, info = asgi_requests(app, ("POST", "/predict", {"content": image}), ("GET", "/info", {}))
        return answer.json(), info.json()

    top, info = ask(classify.best, topk="3")
    assert info["task"] == "classify" and info["conf"] is None
    scores = [t["score"] for t in top["results"][0]["top"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and sum(scores) <= 1 + 1e-6
    assert {t["class"] for t in top["results"][0]["top"]} <= set(info["classes"])
    masks, info = ask(segment.best)
    assert info["task"] == "segment" and (masks["width"], masks["height"]) == (48, 40)
    assert sum(masks["results"][0]["pixels"].values()) == 48 * 40


def asgi_requests(app, *requests):
    """The answers to (method, path, keyword arguments) requests sent in turn to an ASGI app in this process."""
    async def send_all():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return [await client.request(method, path, **kwargs) for method, path, kwargs in requests]

    return asyncio.run(send_all())


@pytest.mark.parametrize("args, words", [
    ([], "weights: name a trained weights file"),
    (["weights=missing.onnx"], "weights: no such file"),
    (["weights={best}", "port=70000"], "port: 70000 is out of range"),
    (["weights={best}", "colour=red"], "unknown key 'colour'"),
    (["weights={best}", "video=missing.mp4"], "missing.mp4"),
    (["weights={best}", "port={busy}"],  # checked before the model loads, not uvicorn's own message and exit 3
     "port: cannot listen on 127.0.0.1:{busy} (another program listens on it); choose another port="),
    (["weights={best}", "body_timeout=0"], "body_timeout: 0 is out of range"),
])
def test_serve_mistakes_are_one_line(trained_detector, args, words):
    best = trained_detector[0]
    with socket.socket() as listener:  # a port another program listens on
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "foveal", "serve", *[a.format(best=best, busy=busy) for a in args]],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and words.format(busy=busy) in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout, (result.stdout, result.stderr)


# ---- tracking: the frames of a stream (/predict?stream=ID) ----------------------------------------------

@pytest.fixture
def made_trackers(monkeypatch):
    """The trackers the server makes, in order."""
    import foveal.track

    made, make = [], foveal.track.make_tracker

    def make_tracker(name="bytetrack", **keys):
        made.append(make(name, **keys))
        return made[-1]

    monkeypatch.setattr("foveal.track.make_tracker", make_tracker)
    return made


def tracking_keys() -> dict:
    """The test detector scores its objects about 0.4: the trackers' thresholds lowered to follow them."""
    return {"track_high_thresh": "0.2", "new_track_thresh": "0.2"}


def moving(pixels: np.ndarray, frames: int) -> list[np.ndarray]:
    """`frames` copies of a scene, each moved 1 px further right (its left column repeated)."""
    return [cv2.warpAffine(pixels, np.float32([[1, 0, dx], [0, 1, 0]]), pixels.shape[1::-1],
                           borderMode=cv2.BORDER_REPLICATE) for dx in range(frames)]


def one_object_scenes(app, images, count: int, frames: int) -> list[list[np.ndarray]]:
    """The frames of `count` moving scenes in each frame of which the detector finds one object, the scenes'
    objects apart (a tracker shared by two streams would take one for the other)."""
    chosen, boxes = [], []
    for path in sorted(images.iterdir()):
        scene = moving(np.asarray(Image.open(path).convert("RGB")), frames)
        first = asgi_requests(app, ("POST", "/predict", {"content": png_bytes(scene[0])}))[0].json()["results"]
        if len(first) != 1 or any(box_overlap(first[0]["bbox"], box) for box in boxes):
            continue
        answers = asgi_requests(app, *[("POST", "/predict", {"content": png_bytes(frame)}) for frame in scene[1:]])
        if all(len(answer.json()["results"]) == 1 for answer in answers):
            chosen.append(scene)
            boxes.append(first[0]["bbox"])
            if len(chosen) == count:
                return chosen
    pytest.fail(f"the test detector finds one object throughout fewer than {count} moving scenes")


def box_overlap(a, b) -> bool:  # x, y, w, h boxes, `frames` px apart at least
    return not (a[0] + a[2] + 8 < b[0] or b[0] + b[2] + 8 < a[0] or a[1] + a[3] < b[1] or b[1] + b[3] < a[1])


def test_streams_are_tracked_apart(trained_detector, made_trackers):
    from foveal.serve.app import build

    best, annotations, images = trained_detector
    app, _ = build({"weights": str(best.with_suffix(".onnx")), "threads": "2", "quiet": "true", **tracking_keys()})
    first, second = one_object_scenes(app, images, 2, 5)
    requests = [("POST", "/predict", {"content": png_bytes(first[0])}), ("GET", "/info", {})]
    for a, b in zip(first, second):  # interleaved, the second stream's id as a form field
        requests += [("POST", "/predict?stream=a", {"content": png_bytes(a)}),
                     ("POST", "/predict", {"files": {"file": ("b.png", png_bytes(b), "image/png")},
                                           "data": {"stream": "B_2-x"}})]
    plain, info, *answers = [answer.json() for answer in asgi_requests(app, *requests)]
    assert info["track"] is True and info["tracker"] == "bytetrack"
    ids = [[r["track_id"] for r in answer["results"]] for answer in answers]
    assert ids[0::2] == [[1]] * 5 and ids[1::2] == [[1]] * 5  # each stream its own ids: the same object, the same id
    assert len(made_trackers) == 2
    # a stream's entries are predict's, with their ids; without stream= nothing is tracked
    assert answers[0]["results"] == [{**r, "track_id": 1} for r in plain["results"]]
    assert "track" in answers[0]["ms"] and "track" not in plain["ms"]


def test_streams_idle_or_past_max_streams_are_dropped(trained_detector, made_trackers):
    from foveal.serve.app import build

    best = trained_detector[0].with_suffix(".onnx")
    app, _ = build({"weights": str(best), "threads": "1", "quiet": "true", "max_streams": "2", "stream_idle_s": "5"})
    now = [0.0]
    app.state.service.streams.clock = lambda: now[0]  # the seconds the test says
    body = png_bytes(np.zeros((16, 16, 3), np.uint8))
    made = []
    for stream, seconds in [("a", 0), ("b", 1), ("c", 2), ("b", 3), ("a", 4), ("a", 8.5), ("b", 8.6), ("b", 13.55),
                            ("b", 18.7)]:
        now[0] = seconds
        assert asgi_requests(app, ("POST", f"/predict?stream={stream}", {"content": body}))[0].status_code == 200
        made.append(len(made_trackers))
    # c makes room by dropping a (two streams at most), a again drops c; then whatever went 5 s without a frame
    assert made == [1, 2, 3, 3, 4, 4, 5, 5, 6]
    assert list(app.state.service.streams.trackers) == ["b"]


def test_tasks_without_boxes_refuse_streams(classifier):
    from foveal.serve.app import build

    app, _ = build({"weights": str(classifier), "quiet": "true"})
    body = png_bytes(np.zeros((8, 8, 3), np.uint8))
    info, refused, plain = asgi_requests(app, ("GET", "/info", {}), ("POST", "/predict?stream=a", {"content": body}),
                                         ("POST", "/predict", {"content": body}))
    assert info.json()["track"] is False and info.json()["tracker"] is None
    assert refused.status_code == 400 and plain.status_code == 200
    assert refused.json()["detail"] == ("stream: classify weights find no boxes to track (detect, instance segment and "
                                        "pose weights do); send the image without stream=")


# ---- slow and odd clients, on a small classifier ---------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(digits_mlp):
    return digits_mlp


def test_clients_that_stall_their_body_hold_no_queue_place(classifier):
    url, process = start_server(classifier, "queue=4", "body_timeout=1")
    port = int(url.rsplit(":", 1)[1])
    stalled = []
    try:
        for _ in range(8):  # twice the queue: headers and 3 of 5000 bytes, then nothing
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc")
            stalled.append(client)
        leaving = socket.create_connection(("127.0.0.1", port), timeout=10)
        leaving.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc")
        time.sleep(0.2)
        leaving.close()  # gone mid-body: no ClientDisconnect traceback
        valid = httpx.post(f"{url}/predict", content=png_bytes(np.zeros((8, 8, 3), np.uint8)), timeout=10)
        assert valid.status_code == 200, valid.text  # served beside the stalled ones, not 503
        hdr = cv2.imencode(".hdr", np.random.default_rng(0).random((6, 10, 3)).astype(np.float32))[1].tobytes()
        fallback = httpx.post(f"{url}/predict", content=hdr, timeout=10)  # PIL cannot read it; OpenCV can
        assert fallback.status_code == 200 and (fallback.json()["width"], fallback.json()["height"]) == (10, 6)
        broken = httpx.post(f"{url}/predict", content=b"#?RADIANCE\nbroken", timeout=10)  # OpenCV fails, silently
        assert broken.status_code == 400 and "not a readable image" in broken.json()["detail"]
        assert httpx.get(f"{url}/favicon.ico").status_code == 204
        answers = [client.recv(100).split(b"\r\n")[0] for client in stalled]  # body_timeout=1: within seconds
        assert answers == [b"HTTP/1.1 408 Request Timeout"] * 8
    finally:
        for client in stalled:
            client.close()
        process.terminate()
        output = process.communicate(timeout=20)[0]
    lines = output.splitlines()
    assert "Traceback" not in output and "Exception in ASGI application" not in output and "ERROR" not in output, output
    assert sum("POST /predict 408" in line and "body_timeout=1 s" in line for line in lines) == 8, output
    assert sum(line.startswith("POST /predict 200 ") and line.endswith(" ms") for line in lines) == 2, output
    assert any(line.startswith("GET /favicon.ico 204 ") for line in lines), output


def test_quiet_logs_no_line_per_request(classifier):
    from foveal.serve.app import build

    logged = {}
    for quiet in ("false", "true"):
        app, server = build({"weights": str(classifier), "quiet": quiet},
                            log=lambda line, flush, said=logged.setdefault(quiet, []): said.append(line))
        asgi_requests(app, ("GET", "/health", {}), ("POST", "/predict", {"content": b"not an image"}))
    assert [line.rsplit(" ", 2)[0] for line in logged["false"]] == ["GET /health 200", "POST /predict 400"]
    assert logged["true"] == []


# ---- the web page in a real browser --------------------------------------------------------------------

def browser():
    """A headless chromium driven by selenium, or a pytest skip naming what is missing."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no chromium/chromedriver (apt-get install chromium chromium-driver; .ci/run does)")
    webdriver = pytest.importorskip("selenium.webdriver")
    os.environ["SE_AVOID_STATS"] = "true"  # selenium's manager would otherwise try to send usage statistics
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


@pytest.fixture(scope="module")
def page_server(trained_detector, tmp_path_factory):
    """(base URL, weights, image folder) of a server in this process, whose demo video
    is a scene with one object moving 1 px a frame."""
    from foveal.serve.app import DemoVideo, build, create_app

    best, annotations, images = trained_detector
    app, config = build({"weights": str(best.with_suffix(".onnx")), "threads": "2", "quiet": "true",
                         **tracking_keys()})
    (frames,) = one_object_scenes(app, images, 1, 10)
    video = tmp_path_factory.mktemp("page") / "moving.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame[:, :, ::-1].copy())
    writer.release()
    with served_in_a_thread(create_app(app.state.service, config, DemoVideo(str(video)))) as url:
        yield url, best, images


@contextlib.contextmanager
def served_in_a_thread(app):
    """The base URL of `app` served by uvicorn in a thread of this process, while the block runs."""
    import uvicorn

    port = free_port()
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.started, "the page's server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


def open_and_upload(driver, url: str, model: str, image, lowest_conf: bool = False):
    """The page opened in `driver` (its header naming `model`), the slider at its lowest if asked, `image` picked
    and drawn; returns the WebDriverWait the test goes on with."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: model in d.find_element(By.ID, "model").text)
    if lowest_conf:
        driver.execute_script("const s = document.getElementById('conf'); s.value = s.min; "
                              "s.dispatchEvent(new Event('input'));")
    driver.find_element(By.ID, "file").send_keys(str(image))
    wait.until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") in ("done", "error"))
    assert driver.find_element(By.ID, "status").get_attribute("data-state") == "done"
    return wait


def test_page_in_a_browser_draws_and_lists_the_detections(page_server, tmp_path):
    from selenium.webdriver.common.by import By

    url, best, images = page_server
    image = sorted(images.iterdir())[0]
    expected = httpx.post(f"{url}/predict", content=image.read_bytes()).json()["results"]
    driver = browser()
    try:
        wait = open_and_upload(driver, url, "yolo_n", image)
        listed = driver.find_elements(By.CSS_SELECTOR, "#results li")
        assert [li.get_attribute("data-category") for li in listed] == [r["category"] for r in expected] and listed
        # the boxes are drawn: the canvas holds the image at its size, with the class colours on it
        size = driver.execute_script("const c = document.getElementById('canvas'); return [c.width, c.height];")
        assert size == [150, 100]
        x, y, w, h = (round(v) for v in expected[0]["bbox"])
        edge = driver.execute_script(
            f"return Array.from(document.getElementById('canvas').getContext('2d').getImageData({x}, {y + h // 2}, 1, 1).data);")
        source = np.asarray(Image.open(image).convert("RGB"))[y + h // 2, x]
        assert np.abs(np.array(edge[:3]) - source).max() > 40  # the box's outline, not the image
        assert driver.save_screenshot(str(tmp_path / "page.png")) and (tmp_path / "page.png").stat().st_size > 5000
        # the slider hides what falls below it
        driver.execute_script("const s = document.getElementById('conf'); s.value = 1; s.dispatchEvent(new Event('input'));")
        assert driver.find_elements(By.CSS_SELECTOR, "#results li") == []
        # the demo video: frames sent in a loop as a stream, drawn live with the frames per second, each object
        # with its id and trail, and the objects seen so far counted
        driver.execute_script("const s = document.getElementById('conf'); s.value = s.min; "
                              "s.dispatchEvent(new Event('input'));")
        driver.find_element(By.ID, "demo").click()
        wait.until(lambda d: "frames/s" in d.find_element(By.ID, "fps").text)
        trail = "return Math.max(0, ...[...trails.values()].map((t) => t.points.length));"
        wait.until(lambda d: d.execute_script(trail) >= 3)
        driver.find_element(By.ID, "stop").click()  # the last frame stays drawn
        tracked = driver.find_elements(By.CSS_SELECTOR, "#results li[data-track]")
        assert tracked and tracked[0].text.startswith(f"#{tracked[0].get_attribute('data-track')} ")
        seen = driver.find_element(By.ID, "seen")
        name = tracked[0].get_attribute("data-category")
        assert seen.is_displayed() and re.search(rf"\b{name}e?s seen: [1-9]", seen.text), seen.text
        assert driver.execute_script("return [plural('polyp'), plural('cross')];") == ["polyps", "crosses"]
        # a single image is not tracked: no ids, nothing seen
        driver.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results li")
                   and not d.find_elements(By.CSS_SELECTOR, "#results li[data-track]"))
        assert not seen.is_displayed()
    finally:
        driver.quit()


def test_page_in_a_browser_fills_the_outlines_of_a_yolo_seg_graph(trained_yolo_seg):
    """yolo_n-seg exported to ONNX and served: the API answers each object's outline, and the page fills it
    (a pixel inside an outline is tinted, one outside every box is the image's own)."""
    from foveal.serve.app import build
    from tests.engine.test_export_yolo import export

    weights, _, folder, _ = trained_yolo_seg
    graph = export(weights, "page.onnx", "segment", 96, dynamic=False)
    app, _ = build({"weights": str(graph), "threads": "1", "quiet": "true"})
    image = sorted(folder.iterdir())[0]
    source = np.asarray(Image.open(image).convert("RGB"))
    with served_in_a_thread(app) as url:
        answer = httpx.post(f"{url}/predict", content=image.read_bytes()).json()
        assert answer["task"] == "segment"
        results = answer["results"]
        assert results and all(r["segmentation"] and r["bbox"] for r in results)
        outline = np.zeros(source.shape[:2], np.uint8)
        for points in results[0]["segmentation"]:
            cv2.fillPoly(outline, [np.round(np.reshape(points, (-1, 2))).astype(np.int32)], 1)
        depth = cv2.distanceTransform(outline, cv2.DIST_L2, 3)
        inside_y, inside_x = np.unravel_index(depth.argmax(), depth.shape)  # the outline's deepest pixel
        boxes = np.zeros(source.shape[:2], bool)
        for r in results:
            x, y, w, h = r["bbox"]
            boxes[max(0, int(y) - 3):int(y + h) + 4, max(0, int(x) - 3):int(x + w) + 4] = True
        boxes[:20] = True  # captions sit above the boxes
        outside_y, outside_x = np.argwhere(~boxes)[0]
        driver = browser()
        try:
            open_and_upload(driver, url, "yolo_n-seg", image, lowest_conf=True)
            pixel = "return Array.from(document.getElementById('canvas').getContext('2d').getImageData({}, {}, 1, 1).data);"
            inside = np.array(driver.execute_script(pixel.format(inside_x, inside_y))[:3])
            outside = np.array(driver.execute_script(pixel.format(outside_x, outside_y))[:3])
        finally:
            driver.quit()
    assert np.abs(inside - source[inside_y, inside_x]).max() > 20  # filled with the class colour
    assert np.abs(outside - source[outside_y, outside_x]).max() <= 2  # the image itself


# ---- pose weights: joints in the answers, skeletons on the page ------------------------------------------

def test_pose_weights_answer_joints_and_the_layout_to_draw_them(trained_yolo_pose):
    """/info gives the joints' names, sides and limbs; /predict each person's box and K joints as `foveal pose
    predict` writes them, near the drawn figures' own; a stream's people carry track ids with their joints."""
    from foveal.data.stickmen import STICKMEN_LAYOUT
    from foveal.serve.app import build

    weights, folder, items = trained_yolo_pose
    image = sorted(folder.iterdir())[1]
    truth = items[int(image.stem)]
    app, _ = build({"weights": str(weights), "threads": "1", "quiet": "true", "kpt_conf": "0.4"})
    body = png_bytes(truth.pixels)
    info, answer, *frames = [a.json() for a in asgi_requests(
        app, ("GET", "/info", {}), ("POST", "/predict", {"content": body}),
        *[("POST", "/predict?stream=v", {"content": body})] * 2)]
    names = STICKMEN_LAYOUT.names
    assert info["task"] == "pose" and info["track"] is True
    assert info["keypoints"] == {"names": names, "skeleton": [list(pair) for pair in STICKMEN_LAYOUT.skeleton],
                                 "sides": [name.split("_")[0] if "_" in name else "middle" for name in names],
                                 "conf": 0.4}  # the page draws the joints scored at least kpt_conf
    assert info["keypoints"]["sides"][:3] == ["middle", "left", "right"]  # head, left_shoulder, right_shoulder
    (expected,) = foveal.predict("pose", weights=weights, source=image, threads=1)
    found = answer["results"]
    assert found and [r["category"] for r in found] == [r["category"] for r in expected.predictions]
    np.testing.assert_allclose([r["keypoints"] for r in found], [r["keypoints"] for r in expected.predictions],
                               atol=0.02)
    for r in found:
        joints = np.reshape(r["keypoints"], (-1, 3))
        assert joints.shape == (len(names), 3) and ((0 <= joints[:, 2]) & (joints[:, 2] <= 1)).all()
        assert ((0 <= joints[:, :2]) & (joints[:, :2] <= [answer["width"], answer["height"]])).all()
    # the most confident person's visible joints lie within 5 px of a drawn figure's (at 96 px)
    best = np.reshape(max(found, key=lambda r: r["score"])["keypoints"], (-1, 3))
    visible = truth.keypoints[..., 2] == 2
    errors = [np.linalg.norm(best[v, :2] - joints[v, :2], axis=1).mean() for joints, v in zip(truth.keypoints, visible)]
    assert min(errors) < 5, errors  # joints put at the box centre: 15 px off and more
    tracked = frames[1]["results"]
    assert tracked and all(r["track_id"] >= 1 for r in tracked)
    assert sorted(r["keypoints"] for r in tracked) == sorted(r["keypoints"] for r in found)


def test_page_in_a_browser_draws_the_skeletons_of_a_yolo_pose_graph(trained_yolo_pose):
    """yolo_n-pose exported to ONNX and served: the page draws each person's joints (a pixel on a joint scored
    at least 0.5 is coloured, one far from every box is the image's own)."""
    from selenium.webdriver.common.by import By
    from foveal.report.draw import SIDE_COLOURS
    from foveal.serve.app import build
    from tests.engine.test_export_yolo import export

    weights, folder, _ = trained_yolo_pose
    graph = export(weights, "page.onnx", "pose", 96, dynamic=False)
    app, _ = build({"weights": str(graph), "threads": "1", "quiet": "true"})
    image = sorted(folder.iterdir())[1]
    source = np.asarray(Image.open(image).convert("RGB"))
    with served_in_a_thread(app) as url:
        answer = httpx.post(f"{url}/predict", content=image.read_bytes()).json()
        assert answer["task"] == "pose" and answer["results"]
        sides = httpx.get(f"{url}/info").json()["keypoints"]["sides"]
        joints = np.concatenate([np.reshape(r["keypoints"], (-1, 3)) for r in answer["results"]])
        colours = np.array([SIDE_COLOURS[("middle", "left", "right").index(side)] for side in sides])
        # a joint drawn (scored at least 0.5) on the pixel whose own colour is the farthest from its side's
        shown = joints[:, 2] >= 0.5
        at = np.round(joints[:, :2]).astype(int).clip(0, np.array(source.shape[1::-1]) - 1)
        contrast = np.abs(source[at[:, 1], at[:, 0]] - np.tile(colours, (len(answer["results"]), 1))).max(1)
        chosen = np.argmax(np.where(shown, contrast, -1))
        (joint_x, joint_y), side_colour = at[chosen], colours[chosen % len(sides)]
        drawn = np.zeros(source.shape[:2], np.uint8)  # 0 where the page may draw: boxes, captions, joints
        drawn[:] = 1
        for r in answer["results"]:
            x, y, w, h = (int(v) for v in r["bbox"])
            drawn[max(0, y - 18):y + h + 3, max(0, x - 3):x + max(w, 80) + 3] = 0  # the caption above, to its right
        for x, y, _ in joints:
            drawn[max(0, int(y) - 6):int(y) + 7, max(0, int(x) - 6):int(x) + 7] = 0
        depth = cv2.distanceTransform(drawn, cv2.DIST_L2, 3)
        outside_y, outside_x = np.unravel_index(depth.argmax(), depth.shape)
        assert depth[outside_y, outside_x] >= 3  # the image has a pixel far from anything drawn
        driver = browser()
        try:
            open_and_upload(driver, url, "yolo_n-pose", image)
            listed = [int(item.get_attribute("data-joints"))
                      for item in driver.find_elements(By.CSS_SELECTOR, "#results li")]
            pixel = "return Array.from(document.getElementById('canvas').getContext('2d').getImageData({}, {}, 1, 1).data);"
            joint = np.array(driver.execute_script(pixel.format(joint_x, joint_y))[:3])
            outside = np.array(driver.execute_script(pixel.format(outside_x, outside_y))[:3])
        finally:
            driver.quit()
    assert np.abs(joint - source[joint_y, joint_x]).max() > 40  # the joint's dot, in its side's colour
    assert np.abs(joint - side_colour).max() <= 40, (joint, side_colour)
    assert listed == [int((np.reshape(r["keypoints"], (-1, 3))[:, 2] >= 0.5).sum()) for r in answer["results"]]
    assert np.abs(outside - source[outside_y, outside_x]).max() <= 2  # the image itself
