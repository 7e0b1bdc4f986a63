"""Inputs read one way everywhere and the server's contract: EXIF orientation through predict, the API and
the server; videos named as videos; /openapi.json documenting every status; no page loading scripts from
another host; an export's unsupported option answered 422; drawn labels on filled backgrounds; exported
files accepted by ``Model``."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("fastapi", reason='serving needs the serve extra: pip install "anchorfree[serve]"')
httpx = pytest.importorskip("httpx", reason='the serving tests need httpx: pip install "anchorfree[test]"')

from test_serve import CLASSES, ServerThread, picture, png, write_tiny_run  # noqa: E402

from anchorfree import Model, load_model  # noqa: E402
from anchorfree.api import to_uint8_chw  # noqa: E402
from anchorfree.cli import main  # noqa: E402
from anchorfree.data import load_image  # noqa: E402
from anchorfree.inference.checkpoint import load_detector  # noqa: E402
from anchorfree.errors import CheckpointError  # noqa: E402
from anchorfree.export.predictor import ExportedModel  # noqa: E402
from anchorfree.images import ImageReadError, read_image, video_container  # noqa: E402
from anchorfree.serve import create_app  # noqa: E402
from anchorfree.structures import Detections  # noqa: E402
from anchorfree.visualize import class_color, draw_detections  # noqa: E402

# the first bytes of an MP4 file as cameras and ffmpeg write them: an ftyp box, then a free box
MP4_HEAD = (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00\x00\x00\x08free"
            + b"\x00\x00\x02\x00mdat" + bytes(range(256)) * 2)
AVI_HEAD = b"RIFF\x00\x10\x00\x00AVI LIST\x00\x01\x00\x00hdrlavih" + bytes(200)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny untrained model of the server tests, as a run folder (scores spread over 0.05..0.5)."""
    return write_tiny_run(tmp_path_factory.mktemp("inputs") / "run")


@pytest.fixture(scope="module")
def model(run_dir: Path) -> Model:
    return Model(run_dir, device="cpu", fast=False)


@pytest.fixture(scope="module")
def onnx_file(run_dir: Path) -> Path:
    pytest.importorskip("onnxruntime", reason="ONNX exports need the export extra")
    from anchorfree.export import export_model

    return export_model(run_dir, check=False).path  # run/best.onnx, NMS classwise in the graph


@pytest.fixture(scope="module")
def client(model: Model) -> Iterator[httpx.Client]:
    app = create_app(model, max_image_pixels=1_000_000, max_body_bytes=2**20, batch_window_ms=1)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def rows(prediction: Any) -> list[tuple]:
    """A prediction's detections as comparable rows: ``(label, score, x1, y1, x2, y2)`` rounded as the server
    answers."""
    boxes, scores, labels = (np.asarray(v).tolist() for v in (prediction.boxes, prediction.scores, prediction.labels))
    return [(int(lab), round(float(s), 4), *(round(float(v), 2) for v in box))
            for box, s, lab in zip(boxes, scores, labels)]


def assert_rows_close(got: list[tuple], want: list[tuple], tol: float = 0.011) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g[0] == w[0]
        np.testing.assert_allclose(g[1:], w[1:], atol=tol)


# ---- EXIF orientation ---------------------------------------------------------------------------------
def test_exif_rotated_jpeg_gives_the_same_boxes_through_predict_the_api_and_the_server(
        model: Model, run_dir: Path, client: httpx.Client, tmp_path: Path) -> None:
    upright = picture(96, 128)  # portrait, as shown
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to show": the file stores the picture turned counter-clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as im:
        stored = np.array(im.convert("RGB"))
    assert stored.shape == (96, 128, 3)
    shown = np.ascontiguousarray(np.rot90(stored, -1))  # as a viewer shows it

    want_rows = rows(model(shown, score_thresh=0.0))
    stored_rows = rows(model(stored, score_thresh=0.0))
    assert stored_rows != want_rows  # the frame matters: the test would see a wrong one

    assert tuple(to_uint8_chw(path).shape) == (3, 128, 96)
    assert rows(model(path, score_thresh=0.0)) == want_rows

    out = tmp_path / "pred"
    assert main(["predict", str(run_dir), str(path), "--out", str(out), "--score-thresh", "0.0", "--fast", "off",
                 "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    cli_rows = [(r["category_id"], r["score"], r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                 r["bbox"][1] + r["bbox"][3]) for r in results]
    assert_rows_close(cli_rows, want_rows, tol=0.021)
    with Image.open(out / "phone.jpg") as drawn:
        assert drawn.size == (96, 128)

    r = client.post("/predict?score_thresh=0", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    assert r.json()["image_size"] == [128, 96]
    served = [(d["label"], d["score"], *d["box"]) for d in r.json()["detections"]]
    assert_rows_close(served, want_rows)

    # datasets (and predict --annotations, scored against them) keep the stored grid their boxes refer to
    assert tuple(load_image(path).shape) == (3, 96, 128)
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "phone.jpg", "width": 128, "height": 96}],
                               "annotations": [], "categories": [{"id": i + 1, "name": n}
                                                                 for i, n in enumerate(CLASSES)]}))
    assert main(["predict", str(run_dir), str(path), "--out", str(tmp_path / "scored"), "--score-thresh", "0.0",
                 "--fast", "off", "--device", "cpu", "--annotations", str(ann)]) == 0
    scored = json.loads((tmp_path / "scored" / "results.json").read_text())
    assert_rows_close([(r["category_id"] - 1, r["score"], r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                        r["bbox"][1] + r["bbox"][3]) for r in scored], stored_rows, tol=0.021)


# ---- videos -------------------------------------------------------------------------------------------
def test_predict_names_videos_and_does_not_call_them_corrupt(run_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A video file given by name is read as a video (tests/test_video.py); one that is only a header is named
    as a video that cannot be opened, not as a damaged image."""
    pytest.importorskip("av", reason='video needs PyAV: pip install "anchorfree[video]"')
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4_HEAD)
    assert main(["predict", str(run_dir), str(clip), "--out", str(tmp_path / "a"), "--fast", "off"]) == 2
    err = capsys.readouterr().err
    assert f"{clip} cannot be opened" in err and "check that it is a video" in err, err
    assert "image editor" not in err and "Traceback" not in err

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "shapes.png").write_bytes(png(picture(80, 64)))
    (folder / "clip.mp4").write_bytes(MP4_HEAD)
    (folder / "movie.avi").write_bytes(AVI_HEAD)
    (folder / "renamed.jpg").write_bytes(MP4_HEAD)  # a video with an image's name: found by its bytes
    assert main(["predict", str(run_dir), str(folder), "--out", str(tmp_path / "b"), "--fast", "off"]) == 0
    captured = capsys.readouterr()
    assert "on 1 images" in captured.out
    assert "skipped 2 video file(s)" in captured.err and "clip.mp4" in captured.err and "movie.avi" in captured.err
    assert "renamed.jpg: is a video (MP4)" in captured.err
    assert "corrupt" not in captured.err and "image editor" not in captured.err

    with pytest.raises(ImageReadError, match="is a video") as info:
        read_image(clip)
    assert info.value.kind == "video"
    assert video_container(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") is None  # HEIF stills are images


def test_the_server_names_an_uploaded_video(client: httpx.Client) -> None:
    r = client.post("/predict", files={"image": ("clip.mp4", MP4_HEAD, "application/octet-stream")})
    assert r.status_code == 415, r.text
    assert "is a video (MP4)" in r.json()["error"] and "not supported" in r.json()["error"]


# ---- the server's contract ----------------------------------------------------------------------------
def test_openapi_documents_every_status_predict_answers_and_requires_the_image(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/predict"]["post"]
    documented = operation["responses"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["multipart/form-data"]["schema"]["required"] == ["image"]
    error_schema = spec["components"]["schemas"]["ErrorAnswer"]
    assert error_schema["required"] == ["error"] and error_schema["properties"]["error"]["type"] == "string"

    good = png(picture(80, 64))
    requests = {
        200: {"content": good, "headers": {"Content-Type": "image/png"}},
        400: {"content": b"hello", "headers": {"Content-Type": "image/png"}},
        413: {"content": png(np.zeros((1000, 1100, 3), np.uint8)), "headers": {"Content-Type": "image/png"}},
        415: {"content": good, "headers": {"Content-Type": "application/json"}},
        422: {"content": good, "headers": {"Content-Type": "image/png"}, "params": {"score_thresh": "2"}},
    }
    for status, kwargs in requests.items():
        r = client.post("/predict", **kwargs)
        assert r.status_code == status, r.text
        assert str(status) in documented, f"{status} is answered but not in /openapi.json"
        schema = documented[str(status)]["content"]["application/json"]["schema"]
        if status == 200:
            assert schema == {"$ref": "#/components/schemas/PredictAnswer"}
            answer = spec["components"]["schemas"]["PredictAnswer"]
            assert set(r.json()) == set(answer["properties"]) == set(answer["required"])
        else:
            assert schema == {"$ref": "#/components/schemas/ErrorAnswer"}
            assert set(r.json()) == {"error"}
    assert "500" in documented  # a failure inside the model (test_serve makes one)


def test_no_page_loads_scripts_from_another_host(client: httpx.Client) -> None:
    for path in ("/docs", "/redoc"):  # FastAPI's pages fetch swagger-ui / redoc from a CDN: switched off
        r = client.get(path)
        assert r.status_code == 404, f"{path} is served: {r.text[:200]}"
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)
    assert client.get("/openapi.json").status_code == 200


def test_onnx_server_answers_422_for_an_option_the_export_cannot_apply(onnx_file: Path) -> None:
    app = create_app(load_model(onnx_file, device="cpu"), batch_window_ms=1)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as c:
        data = png(picture(80, 64))
        ok = c.post("/predict", content=data, headers={"Content-Type": "image/png"})
        assert ok.status_code == 200, ok.text
        for params, words in (({"nms": "agnostic"}, "exported with nms=classwise"),
                              ({"max_detections": "500"}, "at most 40 detections")):
            r = c.post("/predict", content=data, headers={"Content-Type": "image/png"}, params=params)
            assert r.status_code == 422, r.text
            assert words in r.json()["error"]
        assert "422" in c.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]


# ---- drawn predictions --------------------------------------------------------------------------------
def _label_box(box: list[float], caption: str, width: int) -> tuple[int, int, int, int]:
    """The caption's rectangle as torchvision draws it (inside the box's top-left corner), one pixel in."""
    margin = width + 1
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = draw.textbbox((box[0] + margin, box[1] + margin), caption,
                                             font=ImageFont.load_default())
    return int(np.ceil(left)), int(np.ceil(top)), int(right), int(bottom)


def _filled_share(image: np.ndarray, rect: tuple[int, int, int, int], colour: str, tol: int) -> float:
    left, top, right, bottom = rect
    region = image[max(top, 0):min(bottom, image.shape[0]), max(left, 0):min(right, image.shape[1])].astype(int)
    assert region.size >= 3 * 40, f"label rectangle {rect} mostly outside the image"
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
    return float((np.abs(region - rgb).max(axis=-1) <= tol).mean())


def test_predicted_images_have_filled_label_backgrounds(run_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(160, 200, 3), dtype=np.uint8)  # a texture no bare text is legible on
    box = [20.0, 30.0, 150.0, 120.0]
    drawn = draw_detections(torch.from_numpy(noise).permute(2, 0, 1).contiguous(),
                            Detections(torch.tensor([box]), torch.tensor([0.87]), torch.tensor([1])), CLASSES)
    drawn = drawn.permute(1, 2, 0).numpy()
    assert _filled_share(drawn, _label_box(box, "square 0.87", 1), class_color(1), 0) > 0.5

    (tmp_path / "noise.png").write_bytes(png(noise))
    out = tmp_path / "pred"
    assert main(["predict", str(run_dir), str(tmp_path / "noise.png"), "--out", str(out), "--score-thresh", "0.0",
                 "--max-det", "1", "--fast", "off", "--device", "cpu"]) == 0
    (result,) = json.loads((out / "results.json").read_text())
    x, y, w, h = result["bbox"]
    caption = f"{CLASSES[result['category_id']]} {result['score']:.2f}"
    with Image.open(out / "noise.jpg") as im:
        saved = np.array(im.convert("RGB"))
    share = _filled_share(saved, _label_box([x, y, x + w, y + h], caption, 1), class_color(result["category_id"]), 60)
    assert share > 0.5, f"only {share:.0%} of the label's pixels have the label colour"


# ---- exported files in Model --------------------------------------------------------------------------
def test_model_runs_an_export_and_never_calls_it_corrupt(onnx_file: Path) -> None:
    exported = Model(onnx_file, device="cpu")
    assert isinstance(exported, ExportedModel)
    image = picture(80, 64)
    got, want = exported(image, score_thresh=0.0), load_model(onnx_file, device="cpu")(image, score_thresh=0.0)
    assert len(got) > 0 and rows(got) == rows(want)
    with pytest.raises(CheckpointError) as info:  # what reads training checkpoints (eval, resume…) says what it is
        load_detector(onnx_file)
    message = str(info.value)
    assert "exported model (onnx)" in message and "anchorfree.load_model" in message and "corrupt" not in message
