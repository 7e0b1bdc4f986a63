"""A seeded synthetic detection dataset that looks like photographs: textured objects and faces on photos.

:func:`generate_photo_dataset` writes the same layout, JSON fields and conventions as
:func:`anchorfree.data.synth.generate_synthetic_dataset` (``OUT/data.yaml``, ``OUT/{train,val}/images/*.jpg``,
``OUT/{train,val}/annotations.json`` in COCO format, about 3% negative images, byte-identical files for
the same seed), with six classes: ``circle``, ``square``, ``triangle``, ``star``, ``cross`` and ``face``.

What an image holds:

* **Background**: a random crop (random scale and position) of a sample photograph, resized to the
  image size, flipped at random, with a mild change of contrast, brightness and colour balance;
  grayscale photos are tinted.
* **Shapes** (the five shape classes): an anti-aliased mask (drawn 4x larger, then box-downsampled),
  slightly rotated and stretched, filled with a texture cut from another photograph whose mean colour
  is moved away from the local background (so that the object stays visible), shaded by a light
  gradient shared by all objects of the image, with a thin darker or lighter rim and often a soft
  drop shadow cast away from the light.
* **Faces**: one of the 100 face crops of LFW (25x25 gray), upscaled bilinearly, contrast-stretched,
  tinted with a skin tone and blended in with a soft elliptical mask.
* **Clutter** (0-6 items per image, also on negative images, never annotated): lumpy blobs,
  rounded frames with a hole and crescents, textured and shaded exactly like the shapes, and
  non-face LFW patches rendered exactly like faces, so that a detector has to learn the shapes and
  faces, not "a textured patch". Clutter is at least 12 px (smaller, it could not be told apart
  from a tiny object) and at most 0.45 of the short side.
* Object sizes are log-uniform from 6 px to 0.6 of the image's short side, so many objects are COCO
  small (< 32x32 px); a light sensor noise is added last.

Boxes: every box is the exact pixel bounds ``[x, y, w, h]`` of its object's rendered mask where
alpha > 0.5 (mask pixels outside those bounds are dropped, so nothing of the object is drawn
outside its box; a drop shadow is not part of the object and may fall outside). Items are drawn
largest first and later ones (annotated or clutter) may overlap earlier ones: a new item covers at
most ``MAX_OCCLUSION`` (half) of any earlier box, as in the shapes dataset, and every annotated
object keeps at least half of its mask visible however many items cover it. The box of an occluded
object stays the bounds of its full mask (amodal), as in the shapes dataset.

Photographs: only files shipped inside the scikit-image wheel (``skimage/data/``) are read; nothing
is downloaded. Their licences, as stated in the ``skimage.data`` docstrings (the bundled
``README.txt`` says nothing about licences):

* CC0 / public domain: ``chelsea.png``, ``coffee.png`` (CC0 by their photographers),
  ``grass.png``, ``gravel.png``, ``brick.png`` (CC0 textures), ``rocket.jpg`` (SpaceX, released into
  the public domain), ``hubble_deep_field.jpg`` (NASA, public domain), ``retina.jpg`` (CC0,
  Wikimedia), ``text.png`` (public domain);
* "no known copyright restrictions" without a named licence: ``coins.png`` (Brooklyn Museum),
  ``immunohistochemistry`` (``ihc.png``);
* no licence stated at all: ``moon.png``, ``page.png``, and ``motorcycle_left/right.png`` (down-sampled
  from the Middlebury 2014 stereo benchmark, credited to its authors);
* ``lfw_subset.npy``: 25x25 crops from Labeled Faces in the Wild (100 faces, then 100 non-face
  patches from the same photos), whose images are news photographs collected from the web; no
  licence is stated for them, so treat the faces as research data, not as freely licensed content.

scikit-image's own BSD-3-Clause licence covers its code, not these images. The generated datasets
contain resized crops of these files.

``astronaut.png`` and ``camera.png`` are never used (their unannotated human faces would contradict
the ``face`` class), nor are photos dominated by circles (``coins.png``, ``retina.jpg``) used as
backgrounds; they may appear only inside the masks of objects, as texture.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from anchorfree.data.synth import (
    MAX_OCCLUSION,
    MIN_OBJECT_SIZE,
    SynthStyle,
    _contrasting_color,
    _covered_fraction,
    write_synthetic_dataset,
)
from anchorfree.data.synth_masks import SHAPE_KINDS, cast_shadow, erode, mask_bounds, shape_alpha
from anchorfree.errors import DatasetError

__all__ = ["PHOTO_CATEGORY_IDS", "PHOTO_CLASSES", "PhotosUnavailableError", "generate_photo_dataset"]

PHOTO_CLASSES: tuple[str, ...] = (*SHAPE_KINDS, "face")
# Deliberately non-contiguous so that the category id -> label mapping is exercised.
PHOTO_CATEGORY_IDS: tuple[int, ...] = (1, 2, 3, 5, 7, 9)

MAX_OBJECT_FRACTION = 0.6  # of the image's short side
MAX_DISTRACTORS = 6  # unannotated clutter items per image
MIN_CLUTTER_SIZE = 12  # pixels: smaller clutter could not be told from a tiny object
MAX_CLUTTER_FRACTION = 0.45  # of the image's short side
MAX_PHOTO_SIDE = 640  # photos are shrunk to this once, when loaded
_NOISE_TILE = 512  # side of the cached sensor-noise tile
INSTALL_HINT = "the photos style needs scikit-image's bundled sample photographs: pip install 'anchorfree[photos]'"

BACKGROUND_PHOTOS: tuple[str, ...] = (
    "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png", "rocket.jpg", "grass.png",
    "gravel.png", "brick.png", "moon.png", "page.png", "text.png", "hubble_deep_field.jpg", "ihc.png",
)
TEXTURE_PHOTOS: tuple[str, ...] = BACKGROUND_PHOTOS + ("coins.png", "retina.jpg")
LFW_FILE = "lfw_subset.npy"
NUM_LFW_FACES = 100  # lfw_subset.npy: the first 100 crops are faces, the last 100 are not

_SHAPES = SHAPE_KINDS
_DISTRACTORS = ("blob", "frame", "crescent", "nonface")
# Skin tones (relative RGB) for the gray LFW crops, light to dark.
_SKIN_TONES = np.array([(1.00, 0.87, 0.76), (0.98, 0.80, 0.66), (0.92, 0.70, 0.54), (0.80, 0.56, 0.40),
                        (0.62, 0.42, 0.30), (0.45, 0.30, 0.21)], dtype=np.float32)

_FACE_PAD = 16  # LFW crop pixels of edge padding around a face, for the soft edge of its mask

Box = tuple[int, int, int, int]


class PhotosUnavailableError(DatasetError, ImportError):
    """scikit-image (or one of its bundled sample files) is missing; the message says how to install it."""


@dataclass(frozen=True)
class _Library:
    """The photographs and LFW crops, loaded once per process (see :func:`_photo_library`)."""

    backgrounds: tuple[Image.Image, ...]  # mode "RGB" or "L"
    textures: tuple[Image.Image, ...]
    faces: np.ndarray  # float32 [100, 25, 25] in [0, 1]
    nonfaces: np.ndarray  # float32 [100, 25, 25] in [0, 1]


def generate_photo_dataset(
    out: str | Path,
    num_train: int = 600,
    num_val: int = 100,
    image_size: tuple[int, int] = (192, 320),
    seed: int = 0,
    max_objects: int = 12,
) -> Path:
    """Write a reproducible photograph-like synthetic COCO dataset to ``out`` and return ``out``.

    Args:
        out: output folder (created; existing files with the same names are overwritten).
        num_train / num_val: number of images per split.
        image_size: ``(lo, hi)`` range of both the height and the width, drawn independently.
        seed: the same seed gives byte-identical JSON and JPEG files.
        max_objects: upper bound of annotated objects per (non-negative) image.

    Raises:
        PhotosUnavailableError: scikit-image is not installed (a :class:`DatasetError` and an
            :class:`ImportError`).
    """
    library = _photo_library()
    style = SynthStyle(PHOTO_CLASSES, PHOTO_CATEGORY_IDS,
                       tuple("person" if name == "face" else "shape" for name in PHOTO_CLASSES),
                       "anchorfree synthetic photos",
                       lambda rng, h, w, n: _render_image(rng, library, h, w, n))
    return write_synthetic_dataset(out, num_train, num_val, image_size, seed, max_objects, style)


@functools.cache
def _photo_library() -> _Library:
    """Load scikit-image's bundled photos (shrunk to ``MAX_PHOTO_SIDE``) and LFW crops, once per process."""
    try:
        import skimage.data
    except ImportError as e:
        raise PhotosUnavailableError(INSTALL_HINT) from e
    folder = Path(skimage.data.__file__).parent
    photos: dict[str, Image.Image] = {}
    for name in TEXTURE_PHOTOS:
        path = folder / name
        try:
            with Image.open(path) as im:
                im = im.convert("L" if im.mode in ("L", "I", "I;16") else "RGB")
        except OSError as e:
            raise PhotosUnavailableError(f"{INSTALL_HINT} (cannot read {path}: {e}; reinstall scikit-image)") from e
        scale = MAX_PHOTO_SIDE / max(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        photos[name] = im
    try:
        lfw = np.load(folder / LFW_FILE).astype(np.float32)
    except OSError as e:
        raise PhotosUnavailableError(f"{INSTALL_HINT} (cannot read {folder / LFW_FILE}: {e})") from e
    if lfw.max() > 1.5:  # uint8 in some versions, float in [0, 1] in others
        lfw /= 255.0
    return _Library(backgrounds=tuple(photos[n] for n in BACKGROUND_PHOTOS),
                    textures=tuple(photos[n] for n in TEXTURE_PHOTOS),
                    faces=lfw[:NUM_LFW_FACES], nonfaces=lfw[NUM_LFW_FACES:])


# --------------------------------------------------------------------------- image


def _render_image(rng: np.random.Generator, library: _Library, h: int, w: int,
                  num_objects: int) -> tuple[np.ndarray, list[tuple[int, Box]]]:
    """Return ``uint8 [h, w, 3]`` pixels and ``[(label, (x, y, w, h)), ...]`` of the annotated objects."""
    canvas = _background(rng, library, h, w)
    light = float(rng.uniform(0, 2 * math.pi))  # one light direction per photo
    labels = rng.integers(len(PHOTO_CLASSES), size=num_objects).tolist()
    clutter = rng.integers(len(_DISTRACTORS), size=int(rng.integers(0, MAX_DISTRACTORS + 1))).tolist()
    short = min(h, w)
    log_min = math.log(MIN_OBJECT_SIZE)
    items: list[tuple[float, str, int | None]] = [
        (float(math.exp(rng.uniform(log_min, math.log(MAX_OBJECT_FRACTION * short)))), PHOTO_CLASSES[lab], lab)
        for lab in labels]
    items += [(float(math.exp(rng.uniform(math.log(MIN_CLUTTER_SIZE), math.log(MAX_CLUTTER_FRACTION * short)))),
               _DISTRACTORS[k], None) for k in clutter]
    items.sort(key=lambda item: -item[0])  # largest first: small objects are not hidden behind big ones

    scene = _Scene(h, w)
    objects: list[tuple[int, Box]] = []
    for size, kind, label in items:
        box = _draw_item(rng, library, canvas, kind, size, scene, light, annotated=label is not None)
        if box is not None and label is not None:
            objects.append((label, box))
    sigma = np.float32(rng.uniform(0.5, 3.0))  # sensor noise (luminance)
    if h <= _NOISE_TILE and w <= _NOISE_TILE:
        oy, ox = (int(v) for v in rng.integers(0, _NOISE_TILE - np.array([h, w]) + 1))
        noise = _noise_tile()[oy:oy + h, ox:ox + w] * sigma
    else:
        noise = rng.standard_normal(size=(h, w, 1), dtype=np.float32) * sigma
    noise += np.float32(0.5)  # rounds in the cast below
    canvas += noise
    return np.clip(canvas, 0, 255, out=canvas).astype(np.uint8), objects


def _background(rng: np.random.Generator, library: _Library, h: int, w: int) -> np.ndarray:
    """A random crop of a random photo, ``float32 [h, w, 3]``, flipped and recoloured at random."""
    photo = library.backgrounds[int(rng.integers(len(library.backgrounds)))]
    crop = _photo_crop(rng, photo, h, w, min_scale=0.3, max_scale=1.0)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    contrast = rng.uniform(0.75, 1.15)
    gains = rng.uniform(0.88, 1.12, size=3) * rng.uniform(0.75, 1.2)
    if crop.mode == "L":
        crop = crop.convert("RGB")
        tint = 1 + rng.uniform(-0.15, 0.15, size=3)
        gains *= tint / tint.mean()
    # One lookup table per channel: contrast about mid-gray, then brightness and colour balance.
    levels = (np.arange(256) - 127.5) * contrast + 127.5
    lut = np.rint(np.clip(levels[None, :] * gains[:, None], 0, 255)).astype(np.uint8)
    return np.asarray(crop.point(lut.ravel().tolist()), dtype=np.float32)


def _photo_crop(rng: np.random.Generator, photo: Image.Image, h: int, w: int, min_scale: float,
                max_scale: float) -> Image.Image:
    """A crop of ``photo`` with the aspect ratio of ``(h, w)`` and a log-uniform ``scale`` (relative to the
    largest such crop), resized to ``w x h`` (same mode as ``photo``)."""
    fit = min(photo.width / w, photo.height / h)
    scale = math.exp(rng.uniform(math.log(min_scale), math.log(max_scale)))
    cw, ch = w * fit * scale, h * fit * scale
    x0, y0 = rng.uniform(0, max(photo.width - cw, 0.0)), rng.uniform(0, max(photo.height - ch, 0.0))
    return photo.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))


def _texture(rng: np.random.Generator, library: _Library, h: int, w: int) -> np.ndarray:
    """A crop of a random photo at a random zoom (0.6 to 3 photo pixels per pixel), ``float32 [h, w, 3]``
    (a gray photo repeated in 3 channels)."""
    photo = library.textures[int(rng.integers(len(library.textures)))]
    zoom = min(math.exp(rng.uniform(math.log(0.6), math.log(3.0))), photo.width / w, photo.height / h)
    cw, ch = w * zoom, h * zoom
    x0, y0 = rng.uniform(0, max(photo.width - cw, 0.0)), rng.uniform(0, max(photo.height - ch, 0.0))
    crop = photo.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    pixels = np.asarray(crop, dtype=np.float32)
    return pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)


@functools.cache
def _noise_tile() -> np.ndarray:
    """Fixed standard-normal noise ``float32 [N, N, 1]``, cut at random offsets for the sensor noise."""
    return np.random.default_rng(20240601).standard_normal(size=(_NOISE_TILE, _NOISE_TILE, 1), dtype=np.float32)


# --------------------------------------------------------------------------- objects


def _draw_item(rng: np.random.Generator, library: _Library, canvas: np.ndarray, kind: str, size: float,
               scene: _Scene, light: float, annotated: bool = True, shadow: bool | None = None) -> Box | None:
    """Render one object or clutter item of nominal ``size`` px onto ``canvas`` (float32, in place).

    The item is put where ``scene`` allows (a few tries, else it is skipped and ``None`` returned)
    and recorded there (``annotated``: keep it at least half visible). Returns its box
    ``(x, y, w, h)``, the exact bounds of its alpha > 0.5 mask: nothing of the item is drawn outside
    it. ``light``: direction (radians) of the shading and shadows; ``shadow``: cast a drop shadow
    (shapes and clutter shapes only; ``None``: at random).
    """
    h, w = canvas.shape[:2]
    is_face = kind in ("face", "nonface")
    if is_face:
        alpha, gray = _face_layer(rng, library, size, nonface=kind == "nonface")
    else:
        alpha, gray = shape_alpha(rng, kind, size), None
    if alpha is None:
        return None
    bh, bw = alpha.shape
    if bh > h or bw > w:
        return None
    mask = alpha > 0.5
    for _ in range(10):  # a few tries to avoid hiding earlier objects
        x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        if scene.fits(mask, x, y):
            break
    else:
        return None
    region = canvas[y:y + bh, x:x + bw]
    step = max(1, min(bh, bw) // 12)  # a subsample is enough for the mean colour
    background = region[::step, ::step][mask[::step, ::step]].mean(axis=0)
    if is_face:
        assert gray is not None
        pixels = _face_pixels(rng, gray, background)
    else:
        pixels = _shape_pixels(rng, library, alpha, background, light)
        if shadow if shadow is not None else rng.random() < 0.6:
            cast_shadow(rng, canvas, alpha, x, y, light)
    pixels -= region
    pixels *= alpha[..., None]
    region += pixels  # region + alpha (pixels - region)
    return scene.add(mask, x, y, annotated)


class _Scene:
    """Where the items of one image are, to limit occlusion.

    A new item may cover at most ``MAX_OCCLUSION`` of any earlier item's box (as in the shapes
    dataset), and never so much that an annotated object keeps less than ``1 - MAX_OCCLUSION`` of
    its mask visible, counting all the items drawn over it.
    """

    def __init__(self, h: int, w: int) -> None:
        self.owner = np.full((h, w), -1, dtype=np.int32)  # index of the topmost item's mask per pixel
        self.boxes: list[Box] = []
        self.min_visible: list[float] = []  # pixels of each item that must stay visible (0 for clutter)
        self.visible: list[int] = []

    def fits(self, mask: np.ndarray, x: int, y: int) -> bool:
        """Whether ``mask`` may be put with its top-left corner at ``(x, y)``."""
        box = (x, y, mask.shape[1], mask.shape[0])
        if any(_covered_fraction(b, box) > MAX_OCCLUSION for b in self.boxes):
            return False
        return all(self.visible[i] - n >= self.min_visible[i] for i, n in self._covered(mask, x, y))

    def add(self, mask: np.ndarray, x: int, y: int, annotated: bool) -> Box:
        """Record ``mask`` at ``(x, y)`` on top of the earlier items; return its box."""
        for i, n in self._covered(mask, x, y):
            self.visible[i] -= n
        self.owner[y:y + mask.shape[0], x:x + mask.shape[1]][mask] = len(self.boxes)
        box = (x, y, mask.shape[1], mask.shape[0])
        area = int(mask.sum())
        self.boxes.append(box)
        self.visible.append(area)
        self.min_visible.append((1 - MAX_OCCLUSION) * area if annotated else 0.0)
        return box

    def _covered(self, mask: np.ndarray, x: int, y: int) -> list[tuple[int, int]]:
        """``(item index, pixels of it that mask would cover)`` for the items under ``mask``."""
        under = self.owner[y:y + mask.shape[0], x:x + mask.shape[1]][mask]
        under = under[under >= 0]
        if under.size == 0:
            return []
        counts = np.bincount(under)
        return [(int(i), int(counts[i])) for i in np.flatnonzero(counts)]


def _shape_pixels(rng: np.random.Generator, library: _Library, alpha: np.ndarray, background: np.ndarray,
                  light: float) -> np.ndarray:
    """Colour of a shape: a photo texture moved to a colour contrasting with ``background``, shaded along
    the light direction, with a thin darker or lighter rim; ``float32 [h, w, 3]``."""
    h, w = alpha.shape
    texture = _texture(rng, library, h, w)
    mean = texture.reshape(-1, 3).mean(axis=0)
    gain = rng.uniform(10, 32) / (float(texture.std()) + 1.0)
    colour = np.array(_contrasting_color(rng, background), dtype=np.float32)
    # Shading: brighter towards the light, darker away from it.
    angle = light + rng.uniform(-0.3, 0.3)
    strength = 2 * rng.uniform(0.15, 0.45) / max(h, w)
    tx = (np.arange(w, dtype=np.float32) - w / 2) * np.float32(strength * math.cos(angle))
    ty = (np.arange(h, dtype=np.float32) - h / 2) * np.float32(strength * math.sin(angle))
    shade = 1 + ty[:, None] + tx[None, :]
    # Rim: the band between the mask and its erosion, darker (mostly) or lighter.
    rim = alpha - erode(alpha, 1 if min(h, w) < 40 else 2)
    dark = rng.random() < 0.7
    k = np.float32(rng.uniform(0.35, 0.6) if dark else rng.uniform(0.3, 0.55))
    scale = shade * (1 - k * rim)
    # (colour + gain * (texture - mean)) * scale [+ 255 k rim for a lighter rim], in few passes
    texture *= np.float32(gain)
    texture += colour - np.float32(gain) * mean
    texture *= scale[..., None]
    if not dark:
        texture += (np.float32(255) * k * rim)[..., None]
    return texture


def _face_layer(rng: np.random.Generator, library: _Library, size: float,
                nonface: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """A soft elliptical mask (cut to its alpha > 0.5 bounds, the face's ellipse) and the matching gray LFW
    crop (a face, or a non-face patch for clutter) upscaled bilinearly to it."""
    pool = library.nonfaces if nonface else library.faces
    crop = pool[int(rng.integers(len(pool)))]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    ranked = np.sort(crop, axis=None)
    lo, hi = ranked[len(ranked) // 50], ranked[-1 - len(ranked) // 50]  # 2nd and 98th percentiles
    crop = np.clip((crop - lo) / max(hi - lo, 0.05), 0, 1)  # contrast stretch
    aspect = rng.uniform(1.05, 1.3)  # height / width of the face ellipse
    fw, fh = size / math.sqrt(aspect), size * math.sqrt(aspect)
    # Half-width of the soft edge, relative to the radius (at most 5 px, so large faces are not ghostly).
    soft = min(rng.uniform(0.12, 0.3), 10 / min(fw, fh))
    pw, ph = math.ceil(fw * (1 + soft)) + 2, math.ceil(fh * (1 + soft)) + 2
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    r = np.hypot((xx + 0.5 - pw / 2) / (fw / 2), (yy + 0.5 - ph / 2) / (fh / 2))
    alpha = np.clip((1 + soft - r) / (2 * soft), 0, 1).astype(np.float32)  # 0.5 on the ellipse r = 1
    # The crop spans the ellipse's bounding box (its corners hold hair, ears and background); the patch
    # around it is filled from the crop's edge-padded copy.
    sx, sy = crop.shape[1] / fw, crop.shape[0] / fh  # crop pixels per patch pixel
    fx, fy = (pw - fw) / 2 * sx, (ph - fh) / 2 * sy
    padded = np.pad(crop, _FACE_PAD, mode="edge")
    box = (max(_FACE_PAD - fx, 0.0), max(_FACE_PAD - fy, 0.0), min(_FACE_PAD - fx + pw * sx, padded.shape[1]),
           min(_FACE_PAD - fy + ph * sy, padded.shape[0]))
    gray = np.asarray(Image.fromarray(np.ascontiguousarray(padded)).resize((pw, ph), Image.Resampling.BILINEAR,
                                                                           box=box), dtype=np.float32)
    cut = mask_bounds(alpha)
    if cut is None:
        return None, gray
    return np.ascontiguousarray(alpha[cut]), np.ascontiguousarray(gray[cut])


def _face_pixels(rng: np.random.Generator, gray: np.ndarray, background: np.ndarray) -> np.ndarray:
    """A (contrast-stretched) gray LFW crop tinted with a random skin tone, kept at least a little
    lighter or darker than ``background``; ``float32 [h, w, 3]``."""
    tone = _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))] * rng.uniform(0.94, 1.06, size=3).astype(np.float32)
    tone *= np.float32(255 * rng.uniform(0.8, 1.05))
    pixels = (np.float32(rng.uniform(0.2, 0.35)) + np.float32(0.8) * gray)[..., None] * tone
    gap = float(pixels.mean() - background.mean())
    if abs(gap) < 40:  # too close to the background's brightness: move away from it
        pixels += (40 - abs(gap)) * (1 if gap >= 0 and pixels.mean() < 215 else -1)
    return np.clip(pixels, 0, 255)
