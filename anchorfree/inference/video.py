"""Video in: files (mp4, avi, mov, mkv, webm), a folder or glob of frames, streams (rtsp/http URLs) and webcams,
decoded by PyAV (the ``video`` extra); detections per frame, optionally tracked across frames with ByteTrack
(Zhang et al., ECCV 2022) from the ``trackers`` package; out: a drawn video (same frame rate and size), one JSON
line per frame, and with tracking a MOT-challenge ``.txt``.

Memory stays constant on long videos: frames are decoded, predicted and written one at a time. A stream runs
until stopped (Ctrl-C) or until it ends or drops; what was written is kept and closed properly either way.
"""
from __future__ import annotations

import glob
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnchorfreeError
from ..images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_image

VIDEO_EXTRA = 'video needs PyAV: pip install "anchorfree[video]"'
TRACK_EXTRA = 'tracking needs the trackers package: pip install "anchorfree[video]"'


@dataclass
class Frame:
    index: int  # in the source (before --vid-stride)
    time_s: float  # timestamp in seconds (index / fps for frame folders)
    image: np.ndarray  # uint8 [H, W, 3] RGB


@dataclass
class VideoInfo:
    kind: str  # file | frames | stream | webcam
    fps: float
    width: int
    height: int
    frames: int | None  # total frames when known


def _av():
    try:
        import av
    except ImportError:
        raise AnchorfreeError(VIDEO_EXTRA) from None
    return av


def is_video_source(source: str | Path) -> bool:
    """A video file, a stream URL or a webcam index (what ``predict`` sends here instead of reading images)."""
    text = str(source)
    return (text.isdigit() or text.startswith(("rtsp://", "rtmp://", "http://", "https://"))
            or Path(text).suffix.lower() in VIDEO_SUFFIXES)


def open_frames(source: str | Path, vid_stride: int = 1, max_frames: int | None = None) -> tuple[Iterator[Frame], VideoInfo]:
    """The frames of ``source`` (every ``vid_stride``-th, at most ``max_frames``) and what is known of it. A source
    that cannot be opened raises :class:`AnchorfreeError` naming it and why."""
    if vid_stride < 1:
        raise AnchorfreeError(f"--vid-stride must be >= 1, got {vid_stride}")
    text = str(source)
    if Path(text).is_dir() or any(c in text for c in "*?["):
        return _frame_files(text, vid_stride, max_frames)
    av = _av()
    kind = "webcam" if text.isdigit() else "stream" if "://" in text else "file"
    if kind == "file" and not Path(text).is_file():
        raise AnchorfreeError(f"{text} does not exist")
    try:
        if kind == "webcam":
            container = av.open(f"/dev/video{text}", format="v4l2")
        else:
            container = av.open(text, timeout=10.0 if kind == "stream" else None)
        stream = container.streams.video[0]
    except (av.error.FFmpegError, IndexError, OSError) as e:
        what = "has no video stream" if isinstance(e, IndexError) else f"cannot be opened ({e})"
        raise AnchorfreeError(f"{text} {what}: check that it is a video (mp4, avi, mov, mkv, webm) that is not "
                              "damaged, or that the stream / camera is reachable") from None
    fps = float(stream.average_rate or stream.guessed_rate or 25.0)
    info = VideoInfo(kind, fps, stream.codec_context.width, stream.codec_context.height, stream.frames or None)
    return _decode(container, stream, text, vid_stride, max_frames), info


def _decode(container: Any, stream: Any, name: str, vid_stride: int, max_frames: int | None) -> Iterator[Frame]:
    av = _av()
    produced = 0
    try:
        for index, frame in enumerate(container.decode(stream)):
            if index % vid_stride:
                continue
            time_s = float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
            yield Frame(index, time_s, frame.to_ndarray(format="rgb24"))
            produced += 1
            if max_frames is not None and produced >= max_frames:
                break
    except av.error.FFmpegError as e:  # truncated file or dropped stream: end here, with what was decoded
        if produced == 0:
            raise AnchorfreeError(f"{name} could not be decoded ({e}): the file is damaged or its codec is not "
                                  "supported; re-encode it (e.g. ffmpeg -i in.avi -c:v libx264 out.mp4)") from None
        print(f"note: {name} ended early after {produced} frames ({e}); what was decoded is kept")
    finally:
        container.close()


def _frame_files(pattern: str, vid_stride: int, max_frames: int | None) -> tuple[Iterator[Frame], VideoInfo]:
    path = Path(pattern)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else \
        sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise AnchorfreeError(f"no frames (images: {', '.join(sorted(IMAGE_SUFFIXES))}) in {pattern}")
    first = read_image(files[0])
    files = files[::vid_stride][:max_frames]

    def frames() -> Iterator[Frame]:
        for i, f in enumerate(files):
            yield Frame(i * vid_stride, i * vid_stride / 25.0, read_image(f))

    return frames(), VideoInfo("frames", 25.0, first.shape[1], first.shape[0], len(files))


class VideoWriter:
    """An H.264 (yuv420p; yuv444p for odd sizes) video of the drawn frames, at the source's frame rate and size."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        av = _av()
        self.path = path
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("libx264", rate=max(1, round(fps)))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        av = _av()
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def make_tracker(fps: float) -> Any:
    """ByteTrack from the ``trackers`` package, at the video's frame rate."""
    try:
        from trackers import ByteTrackTracker
    except ImportError:
        raise AnchorfreeError(TRACK_EXTRA) from None
    return ByteTrackTracker(frame_rate=fps, track_activation_threshold=0.25, high_conf_det_threshold=0.5)


def track(tracker: Any, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """One frame's detections through the tracker: ``(boxes, scores, labels, track_ids)`` of the tracked ones."""
    import supervision as sv

    found = sv.Detections(xyxy=boxes.astype(np.float32).reshape(-1, 4), confidence=scores.astype(np.float32),
                          class_id=labels.astype(int))
    out = tracker.update(found)
    ids = out.tracker_id if out.tracker_id is not None else np.full(len(out), -1)
    keep = ids >= 0  # tracks not yet confirmed carry -1
    return out.xyxy[keep], out.confidence[keep], out.class_id[keep], ids[keep].astype(int)


def stream_predictions(model: Any, source: str | Path, vid_stride: int = 1, max_frames: int | None = None,
                       tracking: bool = False, options: dict[str, Any] | None = None) -> Iterator[tuple[Frame, Any]]:
    """``(frame, prediction)`` for every frame of ``source``, one at a time (constant memory on long videos); with
    ``tracking`` the prediction holds the tracked objects and their ``track_ids``."""
    frames, info = open_frames(source, vid_stride, max_frames)
    tracker = make_tracker(info.fps / vid_stride) if tracking else None
    for frame in frames:
        pred = model(frame.image, **(options or {}))
        if tracker is not None:
            boxes, scores, labels, ids = track(tracker, *(np.asarray(v) for v in (pred.boxes, pred.scores, pred.labels)))
            pred = type(pred)(boxes, scores, labels, pred.class_names, pred.label_to_cat_id, ids)
        yield frame, pred


@dataclass
class VideoResult:
    video: Path | None
    jsonl: Path
    mot: Path | None
    frames: int
    detections: int
    seconds: float
    interrupted: bool = False
    tracks: set[int] = field(default_factory=set)


def predict_video(model: Any, source: str | Path, out: str | Path, options: dict[str, Any] | None = None,
                  vid_stride: int = 1, max_frames: int | None = None, tracking: bool = False,
                  draw: bool = True, progress: bool = True) -> VideoResult:
    """Detect (and with ``tracking`` track) objects in every frame of ``source``: ``out/<name>.mp4`` (drawn),
    ``out/<name>.jsonl`` (one line per frame: ``frame``, ``time_s``, ``detections`` with ``box``, ``score``,
    ``label``, ``class_name`` and ``track_id``) and with tracking ``out/<name>.mot.txt`` (MOT challenge:
    ``frame, id, x, y, w, h, score, -1, -1, -1``, frames from 1). Ctrl-C stops it cleanly, keeping what was written."""
    from tqdm import tqdm

    from ..visualize import draw_tracks

    frames, info = open_frames(source, vid_stride, max_frames)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = "webcam" if str(source).isdigit() else Path(str(source).rstrip("/").split("?")[0]).stem or "stream"
    writer = VideoWriter(out / f"{name}.mp4", info.fps / vid_stride, info.width, info.height) if draw else None
    tracker = make_tracker(info.fps / vid_stride) if tracking else None
    jsonl, mot = out / f"{name}.jsonl", (out / f"{name}.mot.txt") if tracking else None
    total = info.frames and -(-info.frames // vid_stride)
    total = min(total, max_frames) if total and max_frames else (total or max_frames)
    result = VideoResult(writer.path if writer else None, jsonl, mot, 0, 0, 0.0)
    trails: dict[int, list[tuple[float, float]]] = {}
    start = time.perf_counter()
    bar = tqdm(total=total, desc="video", unit="frame", disable=not progress)
    with open(jsonl, "w", encoding="utf-8") as lines, (open(mot, "w") if mot else _Null()) as mot_file:
        try:
            for frame in frames:
                pred = model(frame.image, **(options or {}))
                boxes, scores, labels = (np.asarray(v) for v in (pred.boxes, pred.scores, pred.labels))
                ids = np.full(len(boxes), -1)
                if tracker is not None:
                    boxes, scores, labels, ids = track(tracker, boxes, scores, labels)
                    for box, tid, score in zip(boxes, ids, scores):
                        trails.setdefault(int(tid), []).append(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
                        x1, y1, x2, y2 = (float(v) for v in box)
                        mot_file.write(f"{result.frames + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                                       f"{float(score):.4f},-1,-1,-1\n")
                    result.tracks.update(int(t) for t in ids)
                dets = [{"box": [round(float(v), 2) for v in b], "score": round(float(s), 4), "label": int(c),
                         "class_name": str(model.class_names[int(c)]), "track_id": int(t)}
                        for b, s, c, t in zip(boxes, scores, labels, ids)]
                lines.write(json.dumps({"frame": frame.index, "time_s": round(frame.time_s, 4),
                                        "detections": dets}) + "\n")
                if writer is not None:
                    writer.write(draw_tracks(frame.image, boxes, scores, labels, ids, model.class_names, trails))
                result.frames += 1
                result.detections += len(dets)
                bar.update(1)
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    result.seconds = time.perf_counter() - start
    return result


class _Null:
    def __enter__(self) -> "_Null":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def write(self, text: str) -> None:
        pass


__all__ = ["Frame", "VideoInfo", "VideoResult", "VideoWriter", "is_video_source", "open_frames", "predict_video",
           "stream_predictions"]
