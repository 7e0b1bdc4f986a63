"""Tests of the photograph-like synthetic dataset (anchorfree.data.synth_photos).

scikit-image is part of the test extra: without it these tests fail (they are not skipped).
"""
from __future__ import annotations

import json
import socket
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from anchorfree.data import CocoDetection, check_dataset, load_data_spec
from anchorfree.data import synth, synth_photos as sp
from anchorfree.data.synth_masks import shape_alpha
from anchorfree.data.synth_photos import (
    INSTALL_HINT,
    PHOTO_CATEGORY_IDS,
    PHOTO_CLASSES,
    PhotosUnavailableError,
    generate_photo_dataset,
)
from anchorfree.errors import DatasetError

NUM_TRAIN, NUM_VAL = 240, 40


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """280 images of 128..192 px (about 5 s)."""
    return generate_photo_dataset(tmp_path_factory.mktemp("photos"), num_train=NUM_TRAIN, num_val=NUM_VAL,
                                  image_size=(128, 192), seed=0)


def _coco(root: Path, split: str) -> dict:
    return json.loads((root / split / "annotations.json").read_text())


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- files


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    first = _all_files(generate_photo_dataset(tmp_path / "a", num_train=6, num_val=3, seed=5))
    second = _all_files(generate_photo_dataset(tmp_path / "b", num_train=6, num_val=3, seed=5))
    assert first == second
    assert len([k for k in first if k.endswith(".jpg")]) == 9
    other = _all_files(generate_photo_dataset(tmp_path / "c", num_train=6, num_val=3, seed=6))
    assert other.keys() == first.keys()
    assert other["train/annotations.json"] != first["train/annotations.json"]
    assert all(other[k] != first[k] for k in first if k.endswith(".jpg"))


def test_layout_and_spec(photos: Path) -> None:
    spec = yaml.safe_load((photos / "data.yaml").read_text())
    assert spec == {"train": {"annotations": "train/annotations.json", "images": "train/images"},
                    "val": {"annotations": "val/annotations.json", "images": "val/images"},
                    "names": list(PHOTO_CLASSES)}
    for split, count in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        coco = _coco(photos, split)
        assert coco["categories"] == [
            {"id": cid, "name": name, "supercategory": "person" if name == "face" else "shape"}
            for cid, name in zip(PHOTO_CATEGORY_IDS, PHOTO_CLASSES)]
        assert [img["file_name"] for img in coco["images"]] == [f"{i:06d}.jpg" for i in range(count)]
        for img in coco["images"][:20]:
            with Image.open(photos / split / "images" / img["file_name"]) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert im.size == (img["width"], img["height"])
                assert 128 <= im.width <= 192 and 128 <= im.height <= 192


def test_boxes_inside_images_with_declared_ids(photos: Path) -> None:
    for split in ("train", "val"):
        coco = _coco(photos, split)
        sizes = {img["id"]: (img["width"], img["height"]) for img in coco["images"]}
        ids = [a["id"] for a in coco["annotations"]]
        assert len(set(ids)) == len(ids)
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            assert all(isinstance(v, float) for v in a["bbox"])
            iw, ih = sizes[a["image_id"]]
            assert x >= 0 and y >= 0 and x + w <= iw and y + h <= ih, a
            assert w >= 1 and h >= 1, a
            assert a["area"] == w * h and a["iscrowd"] == 0
            assert a["category_id"] in PHOTO_CATEGORY_IDS


def test_negatives_classes_and_small_objects(photos: Path) -> None:
    coco = _coco(photos, "train")
    annotations = coco["annotations"]
    empty = len(coco["images"]) - len({a["image_id"] for a in annotations})
    expected = round(synth.NEGATIVE_FRACTION * NUM_TRAIN)  # 7: the planned negatives
    assert expected <= empty <= expected + 3  # plus, rarely, an image whose only object found no place
    counts = Counter(a["category_id"] for a in annotations)
    assert set(counts) == set(PHOTO_CATEGORY_IDS)
    assert min(counts.values()) >= 0.08 * len(annotations), counts  # about 1/6 each
    small = sum(a["area"] < 32 ** 2 for a in annotations) / len(annotations)
    assert 0.4 <= small <= 0.85, small  # many COCO-small objects, not only small ones
    assert max(a["area"] for a in annotations) >= 64 ** 2
    assert len(annotations) / NUM_TRAIN >= 4  # up to 12 per image


def test_loads_with_the_repo_readers_and_check_dataset_finds_no_problem(photos: Path) -> None:
    spec = load_data_spec(photos)
    assert spec.class_names == list(PHOTO_CLASSES)
    train = CocoDetection(spec.train_ann, spec.train_images, class_names=spec.class_names, train=True)
    assert len(train) == NUM_TRAIN and train.cat_ids == list(PHOTO_CATEGORY_IDS)
    assert train.stats.get("clipped", 0) == 0 and train.stats.get("dropped", 0) == 0
    image, target = train[0]
    assert image.shape[0] == 3 and target["boxes"].shape[1] == 4
    labels = np.concatenate([train[i][1]["labels"].numpy() for i in range(40)])
    assert labels.min() >= 0 and labels.max() <= len(PHOTO_CLASSES) - 1
    report = check_dataset(photos, images=True)
    assert report.ok, report.error_message()
    assert report.problems == []  # no warnings either
    assert report.images_checked == {"train": NUM_TRAIN, "val": NUM_VAL}


# ----------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("kind", PHOTO_CLASSES + sp._DISTRACTORS)
def test_box_is_the_exact_bounds_of_the_rendered_object(kind: str) -> None:
    """On a plain background, the pixels that changed span exactly the returned box: nothing is drawn
    outside it and each of its four edges has a changed pixel."""
    library = sp._photo_library()
    for seed, size in enumerate((6, 9, 17, 33, 70)):
        rng = np.random.default_rng([seed, 99])
        canvas = np.full((100, 110, 3), 127.0, dtype=np.float32)
        scene = sp._Scene(100, 110)
        box = sp._draw_item(rng, library, canvas, kind, size, scene, light=0.7, shadow=False)
        assert box is not None
        x, y, w, h = box
        outside = np.ones(canvas.shape[:2], dtype=bool)
        outside[y:y + h, x:x + w] = False
        assert (canvas[outside] == 127.0).all(), (kind, size)  # not even a faint anti-aliased edge
        changed = np.abs(canvas - 127.0).max(axis=2) > 0.5
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        assert (cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1) == box, (kind, size)
        assert w >= 3 and h >= 3
        assert max(w, h) <= 2 * size and min(w, h) >= 0.3 * size  # about the requested size


def test_masks_are_cut_to_their_alpha_above_half() -> None:
    """Each mask's first and last rows and columns hold a pixel with alpha > 0.5 (the box is the bounds of
    alpha > 0.5); clutter masks too."""
    library = sp._photo_library()
    rng = np.random.default_rng(11)
    for size in (6, 12, 40, 90):
        for kind in PHOTO_CLASSES + sp._DISTRACTORS:
            if kind in ("face", "nonface"):
                alpha, gray = sp._face_layer(rng, library, size, nonface=kind == "nonface")
                assert gray.shape == alpha.shape
            else:
                alpha = shape_alpha(rng, kind, size)
            assert alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1
            for edge in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]):
                assert edge.max() > 0.5, (kind, size)
            if kind == "frame" and size >= 40:
                assert alpha[alpha.shape[0] // 2, alpha.shape[1] // 2] < 0.5  # the hole


def test_shadow_only_darkens_outside_the_box() -> None:
    library = sp._photo_library()
    for seed in range(6):
        rng = np.random.default_rng([seed, 7])
        canvas = np.full((120, 120, 3), 127.0, dtype=np.float32)
        box = sp._draw_item(rng, library, canvas, "star", 50, sp._Scene(120, 120), light=1.0, shadow=True)
        assert box is not None
        x, y, w, h = box
        outside = np.ones((120, 120), dtype=bool)
        outside[y:y + h, x:x + w] = False
        assert (canvas[outside] <= 127.0).all()
        assert (canvas[outside] < 126.0).any()  # a shadow was cast


def test_objects_contrast_with_the_photo_behind_them() -> None:
    """A shape's mean colour differs clearly from that of the photo pixels it hides."""
    library = sp._photo_library()
    distances = []
    for seed in range(30):
        rng = np.random.default_rng([seed, 3])
        canvas = sp._background(rng, library, 160, 160)
        before = canvas.copy()
        kind = sp.PHOTO_CLASSES[seed % 5]
        box = sp._draw_item(rng, library, canvas, kind, 40, sp._Scene(160, 160), light=2.0, shadow=False)
        assert box is not None
        x, y, w, h = box
        inside = (np.abs(canvas - before).max(axis=2) > 0)[y:y + h, x:x + w]
        new, old = canvas[y:y + h, x:x + w][inside], before[y:y + h, x:x + w][inside]
        distances.append(float(np.linalg.norm(new.mean(axis=0) - old.mean(axis=0))))
    assert min(distances) > 50, distances
    assert np.median(distances) > 100


def test_backgrounds_are_photos_not_flat() -> None:
    library = sp._photo_library()
    for seed in range(10):
        pixels = sp._background(np.random.default_rng(seed), library, 64, 96)
        assert pixels.shape == (64, 96, 3) and pixels.dtype == np.float32
        assert pixels.std(axis=(0, 1)).max() > 3  # texture, not a flat colour
        gradients = np.abs(np.diff(pixels, axis=1)).mean()
        assert gradients > 0.5


def test_occlusion_keeps_annotated_objects_half_visible() -> None:
    scene = sp._Scene(20, 20)
    full = np.ones((10, 10), dtype=bool)
    scene.add(full, 0, 0, annotated=True)
    strip = np.ones((4, 10), dtype=bool)  # covers 40% of the first box and mask
    assert scene.fits(strip, 0, 0)
    scene.add(strip, 0, 0, annotated=True)
    # A second strip covers only 40% of the first box, but would leave 20% of its mask visible.
    assert sp._covered_fraction((0, 0, 10, 10), (0, 4, 10, 4)) <= sp.MAX_OCCLUSION
    assert not scene.fits(strip, 0, 4)
    assert scene.fits(np.ones((1, 10), dtype=bool), 0, 4)  # 50% stays visible: allowed
    big = np.ones((8, 8), dtype=bool)  # covers 64% of the first box
    assert not scene.fits(big, 0, 0)
    clutter = sp._Scene(20, 20)
    clutter.add(full, 0, 0, annotated=False)
    clutter.add(strip, 0, 0, annotated=True)
    assert clutter.fits(strip, 0, 4)  # clutter may be hidden more (the box rule still holds)


# ----------------------------------------------------------------------------- sources


def test_photos_come_from_the_installed_wheel_without_network(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    for name in sp.TEXTURE_PHOTOS + (sp.LFW_FILE,):
        assert (folder / name).is_file(), name

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the photos generator tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setitem(sys.modules, "pooch", None)  # scikit-image's downloader
    sp._photo_library.cache_clear()
    try:
        library = sp._photo_library()
        generate_photo_dataset(tmp_path / "offline", num_train=2, num_val=1, seed=0)
    finally:
        sp._photo_library.cache_clear()
    assert library.faces.shape == (100, 25, 25) and library.nonfaces.shape == (100, 25, 25)
    assert 0 <= library.faces.min() and library.faces.max() <= 1


def test_missing_scikit_image_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    sp._photo_library.cache_clear()
    try:
        with pytest.raises(PhotosUnavailableError) as info:
            generate_photo_dataset(tmp_path / "out", num_train=2, num_val=1)
    finally:
        sp._photo_library.cache_clear()
    assert str(info.value) == INSTALL_HINT
    assert "pip install 'anchorfree[photos]'" in str(info.value)
    assert isinstance(info.value, ImportError) and isinstance(info.value, DatasetError)
    assert not (tmp_path / "out").exists()  # fails before writing anything


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="image_size"):
        generate_photo_dataset("unused", image_size=(8, 100))
    with pytest.raises(ValueError, match="max_objects"):
        generate_photo_dataset("unused", max_objects=0)
