"""A synthetic video with tracking ground truth (``anchorfree data synth --video OUT``): the shape classes of the
synthetic dataset moving over a fixed procedural background at constant velocities, bouncing off the borders,
crossing each other and occluding one another (later objects are drawn over earlier ones; an object more than
``MAX_HIDDEN`` hidden in a frame is left out of that frame's ground truth, as MOT annotations leave out fully
occluded people).

Writes ``OUT/video.mp4`` (H.264, PyAV), ``OUT/gt.txt`` (MOT challenge: ``frame, id, x, y, w, h, 1, class, 1``,
frames and ids from 1, boxes in pixels) and ``OUT/classes.txt``. Seeded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import AnchorfreeError
from .synth import SYNTH_CLASSES, _background, _contrasting_color, _draw_shape

MAX_HIDDEN = 0.7  # an object this much covered by later ones is not in that frame's ground truth


def _visible_fraction(box: np.ndarray, over: list[np.ndarray]) -> float:
    """The share of ``box``'s pixels that the boxes drawn over it leave visible (a pixel mask, exact)."""
    x, y, w, h = (int(v) for v in box)
    mask = np.ones((h, w), bool)
    for ox, oy, ow, oh in (tuple(int(v) for v in b) for b in over):
        x0, y0, x1, y1 = max(ox, x) - x, max(oy, y) - y, min(ox + ow, x + w) - x, min(oy + oh, y + h) - y
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = False
    return float(mask.mean())


def generate_video(out: str | Path, frames: int = 60, size: tuple[int, int] = (240, 320), objects: int = 5,
                   fps: int = 10, seed: int = 0) -> Path:
    """Write the video and its ground truth to ``out`` (see the module docstring); returns ``out``."""
    try:
        import av
    except ImportError:
        raise AnchorfreeError('data synth --video needs PyAV: pip install "anchorfree[video]"') from None
    height, width = size
    rng = np.random.default_rng(seed)
    background = _background(rng, height, width)
    sides = rng.integers(max(16, min(size) // 10), max(24, min(size) // 4), size=(objects, 2))
    pos = np.column_stack((rng.uniform(0, width - sides[:, 0]), rng.uniform(0, height - sides[:, 1])))
    vel = rng.uniform(2, 6, size=(objects, 2)) * np.where(rng.random((objects, 2)) < 0.5, -1, 1)  # px per frame
    labels = rng.integers(len(SYNTH_CLASSES), size=objects)
    colors = [_contrasting_color(rng, background.reshape(-1, 3).mean(0)) for _ in range(objects)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with av.open(str(out / "video.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            canvas = Image.fromarray(background)
            draw = ImageDraw.Draw(canvas)
            boxes = [np.array([round(pos[i, 0]), round(pos[i, 1]), sides[i, 0], sides[i, 1]]) for i in range(objects)]
            for i in range(objects):
                x, y, w, h = (int(v) for v in boxes[i])
                _draw_shape(draw, SYNTH_CLASSES[int(labels[i])], x, y, w, h, colors[i])
            for i in range(objects):
                if _visible_fraction(boxes[i], boxes[i + 1:]) >= 1 - MAX_HIDDEN:
                    x, y, w, h = (int(v) for v in boxes[i])
                    rows.append(f"{t + 1},{i + 1},{x},{y},{w},{h},1,{int(labels[i]) + 1},1")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")):
                container.mux(packet)
            pos += vel
            for axis, limit in ((0, width), (1, height)):  # bounce off the borders
                low, high = pos[:, axis] < 0, pos[:, axis] > limit - sides[:, axis]
                vel[low | high, axis] *= -1
                pos[:, axis] = np.clip(pos[:, axis], 0, limit - sides[:, axis])
        for packet in stream.encode(None):
            container.mux(packet)
    (out / "gt.txt").write_text("\n".join(rows) + "\n")
    (out / "classes.txt").write_text("\n".join(SYNTH_CLASSES) + "\n")
    return out


def read_mot(path: str | Path) -> dict[int, list[tuple[int, list[float]]]]:
    """A MOT-challenge file as ``{frame: [(id, [x, y, w, h]), ...]}``."""
    out: dict[int, list[tuple[int, list[float]]]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            f, i, x, y, w, h, *_ = line.split(",")
            out.setdefault(int(f), []).append((int(i), [float(x), float(y), float(w), float(h)]))
    return out


__all__ = ["MAX_HIDDEN", "generate_video", "read_mot"]
