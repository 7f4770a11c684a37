"""The HTTP server: one trained model (.safetensors or .onnx) of any task behind a small JSON API.

    GET  /              the web page (page.html): an image, a video file, the camera or the demo video
    POST /predict       an image (multipart field `file`, or the raw body); ?conf= raises the threshold;
                        ?stream=ID (or the form field `stream`): a video's frame, tracked (each entry's track_id)
    GET  /health        {"status": "ok", "pending": N}
    GET  /info          task, model, classes, imgsz, format, conf, track (whether stream= tracks), tracker,
                        keypoints (pose: the joints' names, sides and skeleton; else null)
    GET  /video/info    the demo video (`video=`): frames, fps, size
    GET  /video/frame/N its frame N as JPEG (the page sends it back to /predict, as a camera would)

/predict answers with the entries predict writes to predictions.json for one image (detect: COCO
results, bbox = x, y, w, h; segment: classes' pixels and polygons, or objects; pose: detect's plus each
object's "keypoints", x, y, score per joint; classify: top-k), so
the API and the files agree. A client sending a video frame by frame names it with `stream=` (any short
id it makes up): the frame's detections go through that stream's own tracker (foveal/track) and only
the tracked ones are answered, each with its "track_id". A stream's tracker is dropped after
`stream_idle_s` without a frame, or once `max_streams` others have had frames since (with workers > 1 a
stream's frames may reach different processes, each with its own trackers: track with workers=1).
The model runs one request at a time (it already uses every core); up to `queue` requests wait, past
that 503 with Retry-After. A body is read whole before its request takes a queue place (clients that
stall cannot fill the queue): past `max_upload_mb` it gets 413 before it is parsed, slower than
`body_timeout` 408; an unreadable upload gets 400 with one line. One log line per request unless quiet.
"""

import asyncio
import dataclasses
import errno
import io
import json
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import build_config, fields_of, opt
from ..data.images import decode, first_line
from ..data.keypoints import joint_sides
from ..data.stream import Frame
from ..errors import FovealError
from ..engine.contract import PHASES
from ..engine.tracking import follow
from ..track import tracker_from

ENV_KEY = "FOVEAL_SERVE"  # the command's key=value pairs as JSON, for worker processes (workers > 1)
PAGE = Path(__file__).with_name("page.html")
MAX_VIDEO_FRAMES = 1500  # demo video frames kept in memory as JPEG (about a minute)
STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class ServeConfig:
    """The server's own keys; every other key goes to the task (conf, iou, topk, device, threads, ...)."""

    host: str = opt("127.0.0.1", "address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    port: int = opt(8000, "TCP port", range="[1, 65535]")
    workers: int = opt(1, "server processes, each with its own copy of the model", range="[1, 64]")
    max_upload_mb: float = opt(20.0, "largest request body in MB; larger ones get 413", range="(0, inf)")
    queue: int = opt(32, "requests waiting or running per process; past it 503 with Retry-After", range="[1, inf)")
    body_timeout: float = opt(5.0, "seconds a request's body may take to arrive; a slower one gets 408 (it holds no "
                                   "queue place meanwhile)", range="(0, inf)")
    quiet: bool = opt(False, "log no line per request (method, path, status, ms); problems are still logged")
    video: str = opt("", "a video file the page can play with live results (the demo)")
    max_streams: int = opt(16, "videos tracked at once (/predict?stream=ID, a tracker each); past it the one "
                               "idle longest is dropped", range="[1, 1024]")
    stream_idle_s: float = opt(60.0, "seconds a tracked video may go without a frame before its tracker is dropped "
                                     "(a later frame starts its ids again)", range="(0, inf)")


def split_options(pairs: dict) -> tuple[dict, dict]:
    """(server keys, task keys) of the command's key=value pairs."""
    server_keys = fields_of(ServeConfig)
    return ({k: v for k, v in pairs.items() if k in server_keys},
            {k: v for k, v in pairs.items() if k not in server_keys})


def task_config(pairs: dict, workers: int):
    """(task name, the task's config for serving): the task comes from the weights' metadata."""
    from ..api import task_class
    from ..engine.checkpoint import weights_task
    from ..engine.cores import available_cores

    task = weights_task(pairs.get("weights", ""))
    cls = task_class(task)
    try:
        cfg = build_config(cls.Config, pairs)
    except FovealError as e:
        raise FovealError(f"{e} (or a server key: {', '.join(fields_of(ServeConfig))})") from None
    quiet = {k: False for k in ("save", "save_txt", "save_crop", "verbose") if k in fields_of(cls.Config)}
    if workers > 1 and not cfg.threads:  # the processes share the cores
        quiet["threads"] = max(1, available_cores() // workers)
    return task, dataclasses.replace(cfg, **quiet)


def read_upload(data: bytes) -> np.ndarray:
    if not data:
        raise FovealError("upload: the request holds no image (send it as the multipart field 'file' or as the body)")
    try:
        return decode(io.BytesIO(data))
    except Exception as e:  # decoders raise many types; all mean the same to the client
        raise FovealError(f"upload: not a readable image ({first_line(e)})") from None


def parse_conf(text: str | None) -> float | None:
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise FovealError(f"conf: expected a number in [0, 1], got '{text}'") from None
    if not 0 <= value <= 1:
        raise FovealError(f"conf: {value} is out of range; valid: [0, 1]")
    return value


def parse_stream(text: str | None) -> str | None:
    if text in (None, ""):
        return None
    if not STREAM_ID.fullmatch(text):
        shown = text if len(text) <= 70 else text[:70] + "..."
        raise FovealError(f"stream: expected an id of 1 to 64 letters, digits, '_' or '-', got {shown!r}")
    return text


class Streams:
    """A tracker per stream id, made on its first frame: at most `limit` (the one idle longest dropped to make
    room), and each dropped once `idle_s` seconds pass without its next frame (checked as frames arrive)."""

    def __init__(self, make_tracker, limit: int, idle_s: float, clock=time.monotonic):
        self.make_tracker, self.limit, self.idle_s, self.clock = make_tracker, limit, idle_s, clock
        self.trackers = OrderedDict()  # stream id: (tracker, time of its last frame), the least recent first

    def tracker(self, name: str):
        """The stream's tracker, noted as just used."""
        now = self.clock()
        while self.trackers and now - next(iter(self.trackers.values()))[1] > self.idle_s:
            self.trackers.popitem(last=False)
        tracker = self.trackers.pop(name)[0] if name in self.trackers else self.make_tracker()
        if len(self.trackers) >= self.limit:
            self.trackers.popitem(last=False)
        self.trackers[name] = (tracker, now)
        return tracker


def keypoint_layout(meta: dict, cfg) -> dict | None:
    """What the page needs to draw pose weights' skeletons: joint names, each joint's side (left, right or
    middle, coloured apart), the limbs as joint index pairs and the score a joint is drawn from (kpt_conf);
    None for weights without keypoints."""
    if "keypoints" not in meta:
        return None
    names = meta["keypoints"]["names"]
    return {"names": names, "sides": [("middle", "left", "right")[side] for side in joint_sides(names)],
            "skeleton": meta["keypoints"]["skeleton"], "conf": cfg.kpt_conf}


class Service:
    """A task's trained model and Predictor, run on one image at a time; frames of a named stream are tracked."""

    def __init__(self, task_name: str, cfg, max_streams: int = 16, stream_idle_s: float = 60.0):
        from ..api import task_class
        from ..engine.modes import trained_task

        task, model, meta, device = trained_task(task_class(task_name), cfg, "predict")
        self.predictor = task.predictor(task.inference_model(model), device)
        self.lock = threading.Lock()  # the model, and the trackers, serve one request at a time
        self.pending = 0  # requests admitted and not yet answered (changed only on the event loop)
        self.streams = Streams(lambda: tracker_from(cfg), max_streams, stream_idle_s)
        self.tracks = task.finds_objects  # only detections (boxes) can be tracked
        conf = getattr(model, "conf", None)
        self.info = {"task": task_name, "model": meta["model"], "classes": meta["classes"], "imgsz": meta["imgsz"],
                     "format": "onnx" if Path(cfg.weights).suffix == ".onnx" else "safetensors",
                     "weights": Path(cfg.weights).name, "conf": conf, "device": str(device),
                     "track": self.tracks, "tracker": cfg.tracker if self.tracks else None,
                     "keypoints": keypoint_layout(meta, cfg)}

    def predict(self, data: bytes, conf: float | None, stream: str | None = None) -> dict:
        """The predictions.json entries of one uploaded image, with its size and the time of each phase; a frame
        of a stream answers the detections its tracker follows, each with its track_id."""
        if stream is not None and not self.tracks:
            raise FovealError(f"stream: {self.info['task']} weights find no boxes to track (detect, instance "
                              "segment and pose weights do); send the image without stream=")
        pixels = read_upload(data)
        with self.lock:
            predictor = self.predictor
            predictor.results, predictor.seconds = [], dict.fromkeys(PHASES, 0.0)
            output = predictor.infer(pixels)
            if stream is not None:
                output = follow(self.streams.tracker(stream), output, pixels, predictor.seconds)
            predictor.annotate(Frame("upload", None, pixels, None), output)
            results, seconds = predictor.results, predictor.seconds  # with track_id when tracked
        if conf is not None:  # the model's own threshold applied already; a request may only raise it
            results = [r for r in results if r.get("score", 1.0) >= conf]
        return {"task": self.info["task"], "width": pixels.shape[1], "height": pixels.shape[0], "results": results,
                "ms": {name: round(1000 * t, 2) for name, t in seconds.items()}}


class DemoVideo:
    """The frames of `video=` as JPEG bytes, read once at start (the page asks for them by number)."""

    def __init__(self, path: str):
        from ..data.stream import open_capture, stream_fps, stream_frames

        capture = open_capture(path)
        self.fps = stream_fps(capture)
        self.frames = []
        for frame in stream_frames(capture, Path(path).stem):
            self.frames.append(cv2.imencode(".jpg", cv2.cvtColor(frame.pixels, cv2.COLOR_RGB2BGR),
                                            [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
            self.size = frame.pixels.shape[1], frame.pixels.shape[0]
            if len(self.frames) == MAX_VIDEO_FRAMES:
                break
        if not self.frames:
            raise FovealError(f"video: {path} holds no readable frames")
        self.name = Path(path).name


async def send_problem(send, status: int, text: str):
    """A JSON {"detail": text} answer sent from ASGI middleware (before the app)."""
    body = json.dumps({"detail": text}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestLog:
    """ASGI middleware: one line per request (method, path, status, ms), unless quiet; a request with a
    problem noted in scope["foveal.note"] (a slow body) is logged, with the note, even when quiet."""

    def __init__(self, app, log, quiet: bool):
        self.app, self.log, self.quiet = app, log, quiet

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), ["-"]

        async def send_noting_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            note = scope.get("foveal.note")
            if note or not self.quiet:
                took = 1000 * (time.perf_counter() - started)
                self.log(f"{scope['method']} {scope['path']} {status[0]} {took:.0f} ms" + (f" ({note})" if note else ""),
                         flush=True)


class UploadLimit:
    """ASGI middleware: a POST body is read whole here, within `timeout` seconds, before the app sees the request
    (so a request holds no queue place while its body arrives); past `limit` bytes it gets 413, read and
    dropped, never parsed or kept; too slow, 408; a client that leaves midway is let go without an answer."""

    def __init__(self, app, limit: int, timeout: float = 5.0):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        try:
            size, chunks = await asyncio.wait_for(self.read_body(receive), self.timeout)
        except asyncio.TimeoutError:
            scope["foveal.note"] = f"its body did not arrive within body_timeout={self.timeout:g} s"
            return await send_problem(send, 408, f"upload: the body did not arrive within body_timeout="
                                                 f"{self.timeout:g} s")
        if size is None:  # the client left before its body was complete: nobody to answer
            scope["foveal.note"] = "the client left before its body arrived"
            return
        if size > self.limit:
            return await send_problem(send, 413, f"upload: {size / 1e6:.1f} MB is more than max_upload_mb="
                                                 f"{self.limit / 1e6:g}")
        replay = iter([{"type": "http.request", "body": b"".join(chunks), "more_body": False}])

        async def receive_again():  # the body once, then what the client does (its disconnect)
            message = next(replay, None)
            return message if message is not None else await receive()

        return await self.app(scope, receive_again, send)

    async def read_body(self, receive) -> tuple[int | None, list[bytes]]:
        """(size, chunks kept) of the whole body, counted as it arrives (chunks past the limit are dropped);
        size None when the client disconnected first."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, []
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size <= self.limit:
                chunks.append(message.get("body", b""))
        return size, chunks


def create_app(service: Service, server: ServeConfig, video: DemoVideo | None = None, log=print):
    """The FastAPI application of a loaded Service."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.datastructures import UploadFile

    app = FastAPI(title="foveal", docs_url=None, redoc_url=None)  # the docs pages would load scripts from a CDN
    app.add_middleware(UploadLimit, limit=int(server.max_upload_mb * 1e6), timeout=server.body_timeout)
    app.add_middleware(RequestLog, log=log, quiet=server.quiet)  # added last: the outermost, so it times everything
    app.state.info, app.state.service = service.info, service
    page = PAGE.read_text(encoding="utf-8")

    def problem(status: int, text: str, **headers) -> JSONResponse:
        return JSONResponse({"detail": text}, status_code=status, headers=headers)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/favicon.ico")
    def favicon():  # the page has no icon: say so without a 404 in the browser's console
        return Response(status_code=204)

    @app.get("/health")
    def health():
        return {"status": "ok", "pending": service.pending}

    @app.get("/info")
    def info():
        return {**service.info, "video": {"name": video.name, "frames": len(video.frames)} if video else None}

    @app.get("/video/info")
    def video_info():
        if video is None:
            return problem(404, "no demo video: start the server with video=FILE")
        return {"name": video.name, "frames": len(video.frames), "fps": video.fps,
                "width": video.size[0], "height": video.size[1]}

    @app.get("/video/frame/{index}")
    def video_frame(index: int):
        if video is None:
            return problem(404, "no demo video: start the server with video=FILE")
        return Response(video.frames[index % len(video.frames)], media_type="image/jpeg")

    @app.post("/predict")
    async def predict(request: Request):
        if service.pending >= server.queue:
            return problem(503, f"busy: {service.pending} requests are queued; retry shortly", **{"Retry-After": "1"})
        service.pending += 1
        try:
            conf = parse_conf(request.query_params.get("conf"))
            stream = parse_stream(request.query_params.get("stream"))
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                try:
                    form = await request.form()
                except Exception as e:  # a malformed multipart body
                    raise FovealError(f"upload: malformed multipart body ({first_line(e)})") from None
                files = [v for v in form.values() if isinstance(v, UploadFile)]
                if not files:
                    raise FovealError("upload: the form holds no file (send the image as the field 'file')")
                data = await (form.get("file") if isinstance(form.get("file"), UploadFile) else files[0]).read()
                conf = parse_conf(form.get("conf")) if isinstance(form.get("conf"), str) else conf
                stream = parse_stream(form.get("stream")) if isinstance(form.get("stream"), str) else stream
            else:
                data = await request.body()
            return await run_in_threadpool(service.predict, data, conf, stream)
        except FovealError as e:
            return problem(400, str(e))
        finally:
            service.pending -= 1

    return app


def build(pairs: dict, check_port: bool = False, log=print):
    """(the app, the server config) of the command's key=value pairs; loads the model (after checking that the
    port is free, with check_port: a busy one is one line before the model loads)."""
    server_pairs, task_pairs = split_options(pairs)
    server = build_config(ServeConfig, server_pairs)
    if check_port:
        port_is_free(server.host, server.port)
    video = DemoVideo(server.video) if server.video else None
    task, cfg = task_config(task_pairs, server.workers)
    return create_app(Service(task, cfg, server.max_streams, server.stream_idle_s), server, video, log), server


def port_is_free(host: str, port: int):
    """Refuse a port another program listens on (or that may not be bound), as uvicorn would fail to bind it:
    with SO_REUSEADDR, as uvicorn binds, so a port left in TIME_WAIT by a stopped server counts as free."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise FovealError(f"host: cannot listen on '{host}' ({e.strerror})") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            why = "another program listens on it" if e.errno == errno.EADDRINUSE else e.strerror
            raise FovealError(f"port: cannot listen on {host}:{port} ({why}); choose another port=") from None


def app_from_env():
    """The app of a worker process (workers > 1): the pairs come through the environment."""
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # as serve does in its own process
    return build(json.loads(os.environ[ENV_KEY]))[0]


def serve(pairs: dict, log=print):
    """`foveal serve weights=... [host= port= workers= ...]`: load, print the address, serve until stopped."""
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
        import uvicorn
    except ImportError:
        raise FovealError("serve needs the server packages: pip install 'foveal[serve]' "
                          "(fastapi, uvicorn, python-multipart)") from None
    # OpenCV's warnings and errors about an upload or a frame would reach the console; the client has foveal's answer
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    app, server = build(pairs, check_port=True)  # in this process too: a mistake is one line before anything listens
    shown = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
    info = app.state.info
    log(f"foveal serve: {info['task']} {info['model']} ({info['weights']}) at http://{shown}:{server.port}/  "
        "(Ctrl+C stops)", flush=True)
    if server.video:
        log(f"the video with live results: http://{shown}:{server.port}/?demo", flush=True)
    if server.workers == 1:
        uvicorn.run(app, host=server.host, port=server.port, log_level="warning")
    else:
        os.environ[ENV_KEY] = json.dumps(pairs)
        uvicorn.run("foveal.serve.app:app_from_env", factory=True, host=server.host, port=server.port,
                    workers=server.workers, log_level="warning")
