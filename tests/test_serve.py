"""``anchorfree serve``: a real uvicorn server on localhost with a tiny untrained model — endpoints, the
JSON answers (equal to calling :class:`anchorfree.Model` directly), every bad request's message, a model
failure answered with 500 while the server keeps serving, batching of concurrent requests, a short load
test, and the web page in headless Chromium."""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason='serving needs the serve extra: pip install "anchorfree[serve]"')
pytest.importorskip("uvicorn", reason='serving needs the serve extra: pip install "anchorfree[serve]"')
httpx = pytest.importorskip("httpx", reason='the serving tests need httpx: pip install "anchorfree[test]"')

import uvicorn  # noqa: E402
from conftest import micro_config, missing_browser  # noqa: E402

from anchorfree import Model  # noqa: E402
from anchorfree.inference.checkpoint import atomic_save, make_checkpoint  # noqa: E402
from anchorfree.errors import AnchorfreeError  # noqa: E402
from anchorfree.models.detector import Detector  # noqa: E402
from anchorfree.serve import add_serve_parser, cmd_serve, create_app, extras  # noqa: E402

CHROMIUM = os.environ.get("ANCHORFREE_CHROMIUM", "/usr/bin/chromium")
CLASSES = ["circle", "square", "triangle"]
POISON_WIDTH = 77  # the counting model fails on images of this width
MAX_PIXELS = 1_000_000
MAX_BODY = 2 * 2**20


# ---- a tiny model and a server --------------------------------------------------------------------------
def tiny_config():
    """FCOS, ResNet-10 to stride 32, 16 channels, 64 px input, 3 classes."""
    cfg = micro_config()
    m = cfg.model
    m.num_classes, m.class_names = len(CLASSES), list(CLASSES)
    m.backbone.out_levels = [4, 5]
    m.neck.num_extra_levels, m.neck.out_channels = 0, 16
    m.head.strides, m.head.feat_channels, m.head.num_convs, m.head.gn_groups = [16, 32], 16, 1, 4
    m.head.regress_ranges = [[-1, 64], [64, 1e8]]
    m.head.max_detections = 40
    m.input.min_size = m.input.max_size = 64
    m.input.size_divisor = 32
    return cfg


def picture(width: int = 320, height: int = 240) -> np.ndarray:
    """Three filled shapes on a light background, ``uint8 [H, W, 3]``."""
    im = Image.new("RGB", (width, height), (200, 210, 230))
    draw = ImageDraw.Draw(im)
    w, h = width / 320, height / 240
    draw.ellipse((30 * w, 40 * h, 120 * w, 130 * h), fill=(220, 40, 40))
    draw.rectangle((160 * w, 90 * h, 290 * w, 200 * h), fill=(40, 120, 220))
    draw.polygon([(200 * w, 20 * h), (250 * w, 80 * h), (150 * w, 80 * h)], fill=(30, 160, 60))
    return np.array(im)


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


class CountingModel:
    """Forwards to a :class:`Model`, counting its calls and images; fails on images ``POISON_WIDTH`` wide."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.calls = 0
        self.images = 0
        self.lock = threading.Lock()

    def __call__(self, images: Any, **options: Any) -> Any:
        with self.lock:
            self.calls += 1
            self.images += len(images)
        if any(np.asarray(image).shape[1] == POISON_WIDTH for image in images):
            raise RuntimeError("simulated failure inside the model")
        return self.model(images, **options)

    def reset(self) -> None:
        with self.lock:
            self.calls = self.images = 0

    def __getattr__(self, name: str) -> Any:  # config, device, class_names… of the wrapped model
        return getattr(self.model, name)


class ServerThread:
    """uvicorn serving ``app`` in a background thread on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> ServerThread:  # noqa: PYI034
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread: on shared cores it is the fastest and steadiest for a model this small."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tiny_run(run: Path) -> Path:
    """``run/best.pt`` with the untrained tiny model; class logits spread so that scores range over 0.05..0.5."""
    cfg = tiny_config()
    torch.manual_seed(0)
    det = Detector(cfg.model).eval()
    with torch.no_grad():
        det.head.cls_logits.bias.fill_(-1.0)
        det.head.cls_logits.weight.mul_(30.0)
    atomic_save(make_checkpoint(cfg, det.state_dict()), run / "best.pt")
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_run(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def model(run_dir: Path, one_thread: None) -> Model:
    return Model(run_dir, device="cpu", fast=False)


@pytest.fixture(scope="module")
def counting(model: Model) -> CountingModel:
    return CountingModel(model)


@pytest.fixture(scope="module")
def server(counting: CountingModel) -> Iterator[ServerThread]:
    app = create_app(counting, max_image_pixels=MAX_PIXELS, max_body_bytes=MAX_BODY, batch_window_ms=10,
                     max_batch=8)
    with ServerThread(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("ANCHORFREE_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("serve_artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def expected(model: Model, image: np.ndarray, **options: Any) -> list[dict[str, Any]]:
    """What ``POST /predict`` should answer for ``image``: the model called directly."""
    p = model(image, **options)
    return [{"box": box, "score": score, "label": label, "class_name": name}
            for box, score, label, name in zip(p.boxes.tolist(), p.scores.tolist(), p.labels.tolist(), p.names)]


def assert_same(got: list[dict], want: list[dict], tol: float = 0.011) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and g["class_name"] == w["class_name"] == CLASSES[w["label"]]
        assert abs(g["score"] - w["score"]) < 1e-3
        np.testing.assert_allclose(g["box"], w["box"], atol=tol)


# ---- endpoints ------------------------------------------------------------------------------------------
def test_health_and_model(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/model").json()
    assert info["name"] == "fcos_r18_fpn_tiny" and info["head"] == "fcos"
    assert info["class_names"] == CLASSES and info["num_classes"] == 3
    assert info["format"] == "pytorch" and info["device"] == "cpu"
    assert info["input"]["min_size"] == info["input"]["max_size"] == 64 and info["input"]["size_divisor"] == 32
    assert "keep-ratio" in info["input"]["rule"]
    assert info["server"] == {"max_image_pixels": MAX_PIXELS, "max_body_bytes": MAX_BODY, "batch_window_ms": 10.0,
                              "max_batch": 8}
    assert info["inference"]["score_thresh"] == 0.05


def test_predict_multipart_and_raw_bytes_equal_the_model(client: httpx.Client, model: Model) -> None:
    image = picture()
    data, want = png(image), expected(model, image)
    answers = [client.post("/predict", files={"image": ("shapes.png", data, "image/png")}),
               client.post("/predict", files={"file": ("shapes.png", data, "application/octet-stream")}),
               client.post("/predict", content=data, headers={"Content-Type": "image/png"}),
               client.post("/predict", content=data, headers={"Content-Type": "application/octet-stream"})]
    for r in answers:
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"detections", "image_size", "model", "time_ms"}
        assert body["image_size"] == [240, 320] and body["model"] == "fcos_r18_fpn_tiny" and body["time_ms"] > 0
        assert_same(body["detections"], want)


def test_inference_options(client: httpx.Client, model: Model) -> None:
    image = picture()
    data = png(image)
    low = client.post("/predict?score_thresh=0.05", content=data, headers={"Content-Type": "image/png"}).json()
    high = client.post("/predict?score_thresh=0.3", content=data, headers={"Content-Type": "image/png"}).json()
    assert all(d["score"] >= 0.3 for d in high["detections"])
    assert 0 < len(high["detections"]) < len(low["detections"])
    assert_same(high["detections"], expected(model, image, score_thresh=0.3))
    few = client.post("/predict?max_detections=3&nms=agnostic&nms_thresh=0.5", content=data,
                      headers={"Content-Type": "image/png"}).json()
    assert_same(few["detections"], expected(model, image, max_detections=3, nms="agnostic", nms_thresh=0.5))
    assert len(few["detections"]) == 3


def _big_png() -> bytes:
    return png(np.zeros((1000, 1100, 3), dtype=np.uint8))  # 1.1 megapixels, a few KiB


def raw(content: bytes, content_type: str | None = "image/png", **params: str) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client.post`` for an image sent as the body."""
    return {"content": content, "headers": {"Content-Type": content_type} if content_type else {}, "params": params}


BAD_REQUESTS = [  # (what, request, status, words the message must contain)
    ("not an image", raw(b"hello, world"), 400, ["not an image", "JPEG, PNG"]),
    ("truncated image", raw(png(picture())[:300]), 400, ["not an image", "truncated"]),
    ("empty body", raw(b"", "image/jpeg"), 400, ["empty", "multipart"]),
    ("too many pixels", raw(_big_png()), 413, ["1100x1000", "megapixels", "downscaled"]),
    ("too many bytes", raw(b"\0" * (MAX_BODY + 1), "application/octet-stream"), 413, ["2.0 MiB", "smaller image"]),
    ("wrong content type", raw(b"{}", "application/json"), 415, ["application/json", "image/jpeg", "-F image=@"]),
    ("no content type", raw(b"abc", None), 415, ["no Content-Type", "-F image=@"]),
    ("form without an image field", {"files": {"photo": ("x.png", b"123", "image/png")}}, 400,
     ["the field 'photo'", "no field 'image'"]),
    ("form with text in the image field", {"data": {"image": "not a file"}, "files": {"other": ("x", b"1")}}, 400,
     ["is text, not a file"]),
    ("unknown query parameter", raw(b"x", treshold="0.3"), 422, ["'treshold'", "score_thresh", "max_detections"]),
    ("score_thresh out of range", raw(b"x", score_thresh="2"), 422, ["score_thresh", "'2'", "[0, 1]"]),
    ("score_thresh not a number", raw(b"x", score_thresh="high"), 422, ["score_thresh", "'high'"]),
    ("unknown nms", raw(b"x", nms="fast"), 422, ["nms", "'fast'", "agnostic"]),
]


@pytest.mark.parametrize("what, request_kwargs, status, words", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_json_message(client: httpx.Client, what: str, request_kwargs: dict, status: int,
                                         words: list[str]) -> None:
    r = client.post("/predict", **request_kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    for word in words:
        assert word in message, f"{what}: {word!r} not in {message!r}"
    assert client.get("/health").status_code == 200


def test_unknown_paths_and_methods_get_a_json_message(client: httpx.Client) -> None:
    r = client.get("/detect")
    assert r.status_code == 404 and "POST /predict" in r.json()["error"]
    r = client.get("/predict")
    assert r.status_code == 405 and "POST /predict" in r.json()["error"]


def test_model_failure_answers_500_and_the_server_keeps_serving(client: httpx.Client) -> None:
    poison, good = png(picture(POISON_WIDTH, 60)), png(picture(80, 64))
    r = client.post("/predict", content=poison, headers={"Content-Type": "image/png"})
    assert r.status_code == 500
    assert "simulated failure inside the model" in r.json()["error"] and "keeps running" in r.json()["error"]
    assert client.post("/predict", content=good, headers={"Content-Type": "image/png"}).status_code == 200
    # sent together (they share a canvas size, so they may share a batch): only the poisoned one fails
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda data: client.post("/predict", content=data,
                                                         headers={"Content-Type": "image/png"}),
                                [poison, good, good, poison]))
    assert [a.status_code for a in answers] == [500, 200, 200, 500]


# ---- batching and load ----------------------------------------------------------------------------------
def test_concurrent_requests_are_batched(server: ServerThread, counting: CountingModel, model: Model) -> None:
    image = picture()
    data, want = png(image), expected(model, image)

    async def burst(n: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
            return await asyncio.gather(*[c.post("/predict", content=data, headers={"Content-Type": "image/png"})
                                          for _ in range(n)])

    counting.reset()
    answers = asyncio.run(burst(16))
    assert all(a.status_code == 200 for a in answers)
    for a in answers:
        assert_same(a.json()["detections"], want)
    assert counting.images == 16
    assert counting.calls < 16, f"{counting.calls} model calls for 16 concurrent requests: nothing was batched"


def test_load(server: ServerThread, counting: CountingModel, artifacts: Path) -> None:
    """8 concurrent clients x 25 requests: no errors; p50/p99 latency and requests/s are printed and written."""
    clients, per_client = 8, 25
    data = png(picture(96, 72))
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = c.post("/predict", content=data, headers={"Content-Type": "image/png"})
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {r.text[:200]}")

    counting.reset()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client_loop) for _ in range(clients)]:
            f.result()
    elapsed = time.perf_counter() - start
    assert not failures, failures[:3]
    assert len(latencies) == clients * per_client
    ms = np.array(latencies) * 1000
    result = {"clients": clients, "requests_per_client": per_client, "requests": len(latencies),
              "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
              "requests_per_s": round(len(latencies) / elapsed, 1), "model_calls": counting.calls,
              "mean_batch": round(counting.images / max(counting.calls, 1), 2), "torch_threads": torch.get_num_threads()}
    (artifacts / "serve_load.json").write_text(json.dumps(result, indent=2))
    print(f"\nserve load test: {result}")
    assert counting.calls < len(latencies)


# ---- the web page ---------------------------------------------------------------------------------------
def test_web_page_draws_the_detections(server: ServerThread, artifacts: Path, tmp_path: Path) -> None:
    try:
        from playwright import sync_api
    except ImportError:
        missing_browser(f"the web page test needs playwright: pip install playwright (it drives the system "
                        f"Chromium at {CHROMIUM})")
    if not Path(CHROMIUM).exists():
        missing_browser(f"the web page test needs Chromium at {CHROMIUM}: apt-get install chromium, or set "
                        "ANCHORFREE_CHROMIUM to its path")
    image_path = tmp_path / "shapes.png"
    image_path.write_bytes(png(picture()))
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('fcos_r18_fpn_tiny')")
            page.set_input_files("#file", str(image_path))
            page.wait_for_selector("#status[data-state=done]", timeout=30_000)

            def count() -> int:
                return int(page.get_attribute("#summary", "data-count"))

            def set_threshold(value: float) -> None:
                page.eval_on_selector("#threshold", "(el, v) => { el.value = v; "
                                      "el.dispatchEvent(new Event('input', {bubbles: true})); }", str(value))

            total = int(page.get_attribute("#summary", "data-total"))
            assert total > 0 and 0 < count() <= total  # the slider starts at 0.30
            assert page.locator("#detections li").count() == count()
            width, height, opaque, colours = page.evaluate("""() => {
                const c = document.getElementById('canvas');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let opaque = 0; const colours = new Set();
                for (let i = 0; i < d.length; i += 4) { if (d[i + 3]) opaque++; colours.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]); }
                return [c.width, c.height, opaque, colours.size];
            }""")
            assert (width, height) == (320, 240) and opaque == width * height and colours > 10
            page.screenshot(path=str(artifacts / "serve_web_page.png"), full_page=True)
            drawn = page.evaluate("document.getElementById('canvas').toDataURL()")

            before = count()
            set_threshold(0.45)
            assert count() < before
            set_threshold(1.0)
            assert count() == 0 and page.locator("#detections li").count() == 0
            assert page.evaluate("document.getElementById('canvas').toDataURL()") != drawn  # the boxes were erased
            set_threshold(0.01)
            assert count() == total
        finally:
            browser.close()
    assert not problems, problems


# ---- the command line -----------------------------------------------------------------------------------
def test_serve_subcommand_help_and_missing_extra(monkeypatch: pytest.MonkeyPatch, run_dir: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser(prog="anchorfree")
    add_serve_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for words in ("RUN_OR_EXPORT", "--workers", "POST /predict", "anchorfree[serve]", "curl -F image=@"):
        assert words in text
    args = parser.parse_args(["serve", str(run_dir), "--port", "0", "--workers", "2"])
    assert (args.model, args.host, args.port, args.workers) == (str(run_dir), "127.0.0.1", 0, 2)
    monkeypatch.setattr(extras, "missing_serve_packages", lambda: ["fastapi", "uvicorn"])
    with pytest.raises(AnchorfreeError, match=r'pip install "anchorfree\[serve\]"'):
        cmd_serve(args)


def test_worker_processes_build_their_app_from_the_environment(monkeypatch: pytest.MonkeyPatch, run_dir: Path,
                                                               one_thread: None) -> None:
    """What each ``--workers`` process runs: the settings travel in an environment variable."""
    from anchorfree.serve.server import SETTINGS_ENV, ServeSettings, app_from_environment

    settings = ServeSettings(str(run_dir), device="cpu", fast=False, threads=1, max_batch=4)
    monkeypatch.setenv(SETTINGS_ENV, json.dumps(settings.__dict__))
    with ServerThread(app_from_environment()) as running, httpx.Client(base_url=running.url, timeout=60) as c:
        assert c.get("/model").json()["server"]["max_batch"] == 4
        r = c.post("/predict", content=png(picture()), headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and r.json()["detections"]

