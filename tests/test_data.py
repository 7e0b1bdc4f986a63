"""Tests of the data pipeline: synthetic data, COCO loading, transforms, collation, specs."""
from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anchorfree.data import (
    SYNTH_CATEGORY_IDS,
    SYNTH_CLASSES,
    CocoDetection,
    build_transforms,
    collate,
    generate_synthetic_dataset,
    keep_ratio_size,
    load_data_spec,
    make_collate,
)
from anchorfree.errors import DatasetError
from anchorfree.structures import Batch


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synth"), num_train=8, num_val=4, seed=0)


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_coco(folder: Path, images: list[dict], annotations: list[dict],
               categories: list[dict] | None = None, write_files: bool = True) -> Path:
    """Write ``annotations.json`` and lossless PNG files (random pixels) for ``images``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    if write_files:
        for index, img in enumerate(images):
            Image.fromarray(_pixels(img["height"], img["width"], index)).save(folder / "images" / img["file_name"])
    categories = categories if categories is not None else [{"id": 4, "name": "a"}, {"id": 9, "name": "b"}]
    ann_file = folder / "annotations.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file


def ann(ann_id: int, image_id: int, bbox: list[float], category_id: int = 4, iscrowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": image_id, "bbox": bbox, "category_id": category_id, "iscrowd": iscrowd}


IMG = {"id": 1, "file_name": "wide.png", "width": 200, "height": 100}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """One 100x200 (h x w) image with two boxes and one 60x40 negative image."""
    return write_coco(tmp_path, [IMG, {"id": 2, "file_name": "neg.png", "width": 40, "height": 60}],
                      [ann(1, 1, [20, 10, 40, 30], 4), ann(2, 1, [100, 0, 50, 100], 9)])


def load(ann_file: Path, **kwargs) -> CocoDetection:
    return CocoDetection(ann_file, ann_file.parent / "images", **kwargs)


# ----------------------------------------------------------------------------- synthetic data


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_is_reproducible(synth: Path, tmp_path: Path) -> None:
    again = generate_synthetic_dataset(tmp_path / "again", num_train=8, num_val=4, seed=0)
    first, second = _all_files(synth), _all_files(again)
    assert len([f for f in first if f.endswith(".jpg")]) == 12
    assert first == second
    other = _all_files(generate_synthetic_dataset(tmp_path / "other", num_train=8, num_val=4, seed=1))
    assert other.keys() == first.keys()
    assert other["train/annotations.json"] != first["train/annotations.json"]
    assert all(other[f] != first[f] for f in first if f.endswith(".jpg"))


def test_synth_layout_and_json(synth: Path) -> None:
    for split, count in (("train", 8), ("val", 4)):
        coco = json.loads((synth / split / "annotations.json").read_text())
        assert len(coco["images"]) == count
        assert [c["id"] for c in coco["categories"]] == list(SYNTH_CATEGORY_IDS)
        assert [c["name"] for c in coco["categories"]] == list(SYNTH_CLASSES)
        for img in coco["images"]:
            with Image.open(synth / split / "images" / img["file_name"]) as im:
                assert im.format == "JPEG" and im.size == (img["width"], img["height"])
        for a in coco["annotations"]:
            assert a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3]
    sizes = {(i["height"], i["width"]) for i in json.loads((synth / "train/annotations.json").read_text())["images"]}
    assert len({h / w for h, w in sizes}) > 1 and all(256 <= s <= 320 for hw in sizes for s in hw)


def test_synth_category_ids_are_non_contiguous_and_map_round_trip(synth: Path) -> None:
    assert list(SYNTH_CATEGORY_IDS) != list(range(1, len(SYNTH_CATEGORY_IDS) + 1))
    ds = CocoDetection(synth / "train/annotations.json", synth / "train/images")
    assert ds.cat_ids == list(SYNTH_CATEGORY_IDS) and ds.class_names == list(SYNTH_CLASSES)
    assert all(ds.cat_id_to_label[ds.label_to_cat_id[label]] == label for label in range(len(ds.cat_ids)))
    assert sorted(ds.cat_id_to_label.values()) == list(range(len(SYNTH_CLASSES)))
    coco = json.loads(ds.coco_json_path.read_text())
    for index in range(len(ds)):
        _, target = ds[index]
        expected = sorted(a["category_id"] for a in coco["annotations"] if a["image_id"] == target["image_id"])
        assert sorted(ds.label_to_cat_id[int(l)] for l in target["labels"]) == expected


def test_synth_negatives_boxes_inside_and_size_range(synth: Path) -> None:
    small = large = False
    for split in ("train", "val"):
        coco = json.loads((synth / split / "annotations.json").read_text())
        images = {i["id"]: i for i in coco["images"]}
        assert set(images) - {a["image_id"] for a in coco["annotations"]}, f"{split} has no negative image"
        for a in coco["annotations"]:
            x, y, w, h = a["bbox"]
            img = images[a["image_id"]]
            assert 0 <= x and 0 <= y and x + w <= img["width"] and y + h <= img["height"] and w >= 1 and h >= 1
            small |= min(w, h) < 16
            large |= max(w, h) > 0.5 * min(img["width"], img["height"])
    assert small and large


def test_synth_objects_are_drawn(synth: Path) -> None:
    """Squares are solid: the pixels inside differ clearly from a ring just outside the box."""
    coco = json.loads((synth / "train/annotations.json").read_text())
    names = {img["id"]: img["file_name"] for img in coco["images"]}
    checked = 0
    for a in coco["annotations"]:
        x, y, w, h = (int(v) for v in a["bbox"])
        if a["category_id"] != SYNTH_CATEGORY_IDS[SYNTH_CLASSES.index("square")] or min(w, h) < 20:
            continue
        pixels = np.asarray(Image.open(synth / "train/images" / names[a["image_id"]]), dtype=np.float32)
        inner = pixels[y + 4:y + h - 4, x + 4:x + w - 4].reshape(-1, 3)
        assert inner.std(axis=0).max() < 25  # solid fill (JPEG noise and occluders aside)
        checked += 1
    assert checked > 0


# ----------------------------------------------------------------------------- CocoDetection


def test_dataset_without_transforms(tiny: Path) -> None:
    ds = load(tiny)
    assert len(ds) == 2 and ds.cat_ids == [4, 9] and ds.class_names == ["a", "b"]
    assert ds.get_image_info(0) == IMG
    image, target = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 100, 200)
    assert torch.equal(image, torch.from_numpy(_pixels(100, 200, 0)).permute(2, 0, 1))
    assert target["boxes"].dtype == torch.float32
    assert torch.equal(target["boxes"], torch.tensor([[20.0, 10, 60, 40], [100, 0, 150, 100]]))
    assert torch.equal(target["labels"], torch.tensor([0, 1]))
    assert target["image_id"] == 1
    assert torch.equal(target["orig_size"], torch.tensor([100, 200]))
    assert torch.equal(target["scale"], torch.tensor([1.0, 1.0]))


def test_negative_image_is_a_normal_sample(tiny: Path) -> None:
    for transforms in (None, build_transforms(True, 50, 400, hflip_prob=1.0, color_jitter=0.2)):
        image, target = load(tiny, transforms=transforms)[1]
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
        assert target["labels"].dtype == torch.int64 and image.shape[0] == 3


def test_resize_to_known_scale(tiny: Path) -> None:
    ds = load(tiny, transforms=build_transforms(False, 50, 400))
    image, target = ds[0]
    assert image.shape == (3, 50, 100)
    assert torch.equal(target["scale"], torch.tensor([0.5, 0.5]))
    assert torch.equal(target["orig_size"], torch.tensor([100, 200]))
    assert torch.allclose(target["boxes"], torch.tensor([[10.0, 5, 30, 20], [50, 0, 75, 50]]))
    assert torch.equal(target["labels"], torch.tensor([0, 1]))


def test_keep_ratio_size_rule() -> None:
    assert keep_ratio_size(100, 200, 50, 400) == (50, 100)
    assert keep_ratio_size(100, 400, 100, 200) == (50, 200)  # long side capped by max_size
    assert keep_ratio_size(480, 640, 800, 1333) == (800, 1066)  # floor, like interpolate(scale_factor)


def test_keep_ratio_size_matches_torch_interpolate() -> None:
    """Same output size as torchvision's GeneralizedRCNNTransform (interpolate with scale_factor)."""
    for h in range(60, 140, 3):
        for w in (h + 7, 2 * h + 1):
            scale = min(100 / min(h, w), 170 / max(h, w))
            out = torch.nn.functional.interpolate(torch.zeros(1, 1, h, w), scale_factor=scale, mode="bilinear",
                                                  recompute_scale_factor=True)
            assert tuple(out.shape[-2:]) == keep_ratio_size(h, w, 100, 170), (h, w)


def test_resize_pixels_match_float_bilinear_interpolation() -> None:
    """uint8 resize equals torchvision-detection style float interpolation up to rounding."""
    image = torch.from_numpy(_pixels(37, 53)).permute(2, 0, 1).contiguous()
    transform = build_transforms(False, 90, 1000)
    resized, _, _, scale = transform(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    expected = torch.nn.functional.interpolate(image[None].float(), size=resized.shape[-2:], mode="bilinear",
                                               align_corners=False)[0]
    assert resized.shape == (3, 90, 128) and torch.allclose(scale, torch.tensor([90 / 37, 128 / 53]))
    assert (resized.float() - expected).abs().max() <= 1.0


def test_multiscale_training_draws_each_size(tiny: Path) -> None:
    ds = load(tiny, transforms=build_transforms(True, (50, 100), 1000, hflip_prob=0.0), train=True)
    torch.manual_seed(0)
    short_sides = {int(min(ds[0][0].shape[-2:])) for _ in range(20)}
    assert short_sides == {50, 100}
    eval_image, _ = load(tiny, transforms=build_transforms(False, (50, 100), 1000))[0]
    assert eval_image.shape == (3, 100, 200)


def test_horizontal_flip(tiny: Path) -> None:
    original, _ = load(tiny)[0]
    ds = load(tiny, transforms=build_transforms(True, 100, 1000, hflip_prob=1.0), train=True)
    image, target = ds[0]
    assert torch.equal(image, original.flip(-1))
    assert torch.equal(target["boxes"], torch.tensor([[140.0, 10, 180, 40], [50, 0, 100, 100]]))
    assert torch.equal(target["labels"], torch.tensor([0, 1]))


def test_flip_and_resize_together(tiny: Path) -> None:
    ds = load(tiny, transforms=build_transforms(True, 50, 400, hflip_prob=1.0, color_jitter=0.3), train=True)
    image, target = ds[0]
    assert image.shape == (3, 50, 100) and image.dtype == torch.uint8
    assert torch.allclose(target["boxes"], torch.tensor([[70.0, 5, 90, 20], [25, 0, 50, 50]]))


def test_clipping_dropping_crowd_and_single_warning(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [IMG], [
        ann(1, 1, [-10, 5, 30, 20]),       # clipped -> [0, 5, 20, 25]
        ann(2, 1, [190, 90, 20, 20], 9),   # clipped -> [190, 90, 200, 100]
        ann(3, 1, [250, 10, 10, 10]),      # entirely outside -> dropped
        ann(4, 1, [10, 10, 0, 5]),         # zero width -> dropped
        ann(5, 1, [10, 10, -5, 5]),        # negative width -> dropped
        ann(6, 1, [5, 5, 10, 10], iscrowd=1),  # crowd -> excluded, not counted as dropped
        ann(7, 1, [50, 50, 10, 10], 9),    # fine
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load(ann_file)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "annotations.json" in messages[0]
    assert "clipped 2 boxes" in messages[0] and "dropped 3 boxes" in messages[0]
    assert ds.stats["clipped"] == 2 and ds.stats["dropped"] == 3
    assert ds.stats["crowd"] == 1 and ds.stats["boxes"] == 3
    _, target = ds[0]
    assert torch.equal(target["boxes"], torch.tensor([[0.0, 5, 20, 25], [190, 90, 200, 100], [50, 50, 60, 60]]))
    assert torch.equal(target["labels"], torch.tensor([0, 1, 1]))


def test_clean_dataset_does_not_warn(tiny: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load(tiny).stats == {"images": 2, "annotations": 2, "boxes": 2, "crowd": 0, "clipped": 0,
                                    "dropped": 0, "negative_images": 1}


def test_crowd_boxes_excluded_in_train_and_eval(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [IMG], [ann(1, 1, [5, 5, 10, 10], iscrowd=1), ann(2, 1, [20, 20, 10, 10])])
    for train in (True, False):
        _, target = load(ann_file, train=train)[0]
        assert torch.equal(target["boxes"], torch.tensor([[20.0, 20, 30, 30]]))


def test_class_names_must_match_json(tiny: Path) -> None:
    assert load(tiny, class_names=["a", "b"]).class_names == ["a", "b"]
    with pytest.raises(DatasetError, match=r"label 1 \(category id 9\).*'b'.*'dog'"):
        load(tiny, class_names=["a", "dog"])
    with pytest.raises(DatasetError, match="2 categories.*3 class names"):
        load(tiny, class_names=["a", "b", "c"])


def test_corrupt_image_raises(tiny: Path) -> None:
    (tiny.parent / "images" / "wide.png").write_bytes(b"\xff\xd8\xff\xe0 definitely not a JPEG")
    with pytest.raises(DatasetError, match=r"wide\.png.*image id 1") as info:
        load(tiny)[0]
    assert str(tiny.parent / "images" / "wide.png") in str(info.value)


def test_missing_image_file_raises(tiny: Path) -> None:
    (tiny.parent / "images" / "neg.png").unlink()
    with pytest.raises(DatasetError, match=r"neg\.png does not exist \(image id 2\)"):
        load(tiny)[1]


def test_image_size_mismatch_raises(tmp_path: Path) -> None:
    ann_file = write_coco(tmp_path, [IMG], [])
    Image.fromarray(_pixels(120, 200)).save(tmp_path / "images" / "wide.png")
    with pytest.raises(DatasetError, match=r"wide\.png.*120x200.*height=100, width=200"):
        load(ann_file)[0]


def test_malformed_json_raises_with_position(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [\n  {"id": 1,, }\n]}')
    with pytest.raises(DatasetError, match=r"broken\.json is not valid JSON.*line 2, column 12"):
        CocoDetection(bad, tmp_path / "images")


def test_missing_annotation_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.json does not exist"):
        CocoDetection(tmp_path / "nope.json", tmp_path)


def test_missing_image_folder_raises(tiny: Path) -> None:
    with pytest.raises(DatasetError, match=r"Image folder .*elsewhere \(for .*annotations\.json\) does not exist"):
        CocoDetection(tiny, tiny.parent / "elsewhere")


@pytest.mark.parametrize(
    ("images", "annotations", "match"),
    [
        ([], [], r"annotations\.json has an empty 'images' list"),
        ([{"id": 1, "width": 200, "height": 100}], [], r"images\[0\] is missing field\(s\) 'file_name'"),
        ([IMG], [{"id": 3, "image_id": 1, "category_id": 4}], r"annotations\[0\] is missing field\(s\) 'bbox'"),
        ([IMG], [{"id": 3, "bbox": [1, 2, 3, 4], "category_id": 4}], r"missing field\(s\) 'image_id'"),
        ([IMG], [ann(3, 1, [1, 2, 3])], r"annotation 3 has bbox \[1, 2, 3\]; it must be 4 numbers"),
        ([IMG], [ann(3, 1, [1, 2, 3, "4"])], r"annotation 3 has bbox .*4 numbers"),
        ([IMG], [ann(8, 1, [1, 2, 3, 4], category_id=6)],
         r"annotation 8 uses category_id 6, which is not declared in 'categories'.*Add the category"),
        ([IMG], [ann(8, 5, [1, 2, 3, 4])], r"annotation 8 refers to image_id 5, which is not in 'images'"),
        ([IMG, IMG], [], r"image id 1 appears more than once"),
        ([{**IMG, "width": 0}], [], r"width=0"),
    ],
)
def test_invalid_annotation_content_raises(tmp_path: Path, images: list, annotations: list, match: str) -> None:
    ann_file = write_coco(tmp_path, images, annotations, write_files=False)
    with pytest.raises(DatasetError, match=match):
        load(ann_file)


@pytest.mark.parametrize("missing", ["images", "annotations", "categories"])
def test_missing_top_level_key_raises(tmp_path: Path, missing: str) -> None:
    data = {"images": [IMG], "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    del data[missing]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=rf"ann\.json: top-level key '{missing}' is missing"):
        CocoDetection(tmp_path / "ann.json", tmp_path)


def test_dataset_and_collate_are_picklable(tiny: Path) -> None:
    ds = load(tiny, transforms=build_transforms(True, (50, 100), 400, color_jitter=0.2), train=True)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == 2 and clone.cat_id_to_label == {4: 0, 9: 1}
    assert pickle.loads(pickle.dumps(make_collate(32))).keywords == {"size_divisor": 32}


# ----------------------------------------------------------------------------- collate


def _sample(h: int, w: int, image_id: int, boxes: list[list[float]]) -> tuple[torch.Tensor, dict]:
    image = torch.randint(1, 256, (3, h, w), dtype=torch.uint8)
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
              "labels": torch.arange(len(boxes)), "image_id": image_id,
              "orig_size": torch.tensor([2 * h, 2 * w]), "scale": torch.tensor([0.5, 0.5])}
    return image, target


def test_collate_pads_to_multiple_and_preserves_content() -> None:
    samples = [_sample(50, 100, 7, [[1, 2, 3, 4]]), _sample(130, 70, 8, [])]
    batch = collate(samples)
    assert isinstance(batch, Batch) and len(batch) == 2
    assert batch.images.shape == (2, 3, 256, 128) and batch.images.dtype == torch.uint8
    assert torch.equal(batch.image_sizes, torch.tensor([[50, 100], [130, 70]]))
    for canvas, (image, _) in zip(batch.images, samples):
        h, w = image.shape[-2:]
        assert torch.equal(canvas[:, :h, :w], image)
        assert canvas[:, h:].sum() == 0 and canvas[:, :, w:].sum() == 0
    assert batch.image_ids == [7, 8]
    assert torch.equal(batch.orig_sizes, torch.tensor([[100, 200], [260, 140]]))
    assert torch.equal(batch.scales, torch.full((2, 2), 0.5))
    assert torch.equal(batch.targets[0]["boxes"], torch.tensor([[1.0, 2, 3, 4]]))
    assert batch.targets[1]["boxes"].shape == (0, 4) and set(batch.targets[1]) == {"boxes", "labels"}
    assert make_collate(32)(samples).images.shape == (2, 3, 160, 128)
    assert collate(samples, size_divisor=1).images.shape == (2, 3, 130, 100)


def test_collate_real_dataset(synth: Path) -> None:
    ds = CocoDetection(synth / "val/annotations.json", synth / "val/images",
                       transforms=build_transforms(False, 200, 333))
    batch = collate([ds[i] for i in range(len(ds))], size_divisor=64)
    assert batch.images.shape[-2] % 64 == 0 and batch.images.shape[-1] % 64 == 0
    for size, scale, orig, target in zip(batch.image_sizes, batch.scales, batch.orig_sizes, batch.targets):
        assert torch.allclose(scale, size / orig)
        assert tuple(size.tolist()) == keep_ratio_size(*orig.tolist(), 200, 333)
        boxes = target["boxes"]
        assert (boxes >= 0).all() and (boxes[:, 2] <= size[1]).all() and (boxes[:, 3] <= size[0]).all()


# ----------------------------------------------------------------------------- dataset specs


def test_spec_from_synth_folder_and_its_yaml(synth: Path) -> None:
    for source in (synth, synth / "data.yaml"):
        spec = load_data_spec(source)
        assert spec.root == synth.resolve()
        assert spec.train_ann == synth.resolve() / "train/annotations.json"
        assert spec.train_images == synth.resolve() / "train/images"
        assert spec.val_ann == synth.resolve() / "val/annotations.json"
        assert spec.val_images.is_dir()
        assert spec.class_names == list(SYNTH_CLASSES)


def test_spec_from_conventional_folder_without_yaml(tiny: Path, tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    shutil.copytree(tiny.parent / "images", root / "val" / "images")
    shutil.copy(tiny, root / "val" / "annotations.json")
    spec = load_data_spec(root)
    assert spec.train_ann is None and spec.train_images is None
    assert spec.val_ann == root.resolve() / "val/annotations.json"
    assert spec.class_names == ["a", "b"]  # from the JSON categories sorted by id


def test_spec_yaml_relative_paths_and_default_names(tiny: Path, tmp_path: Path) -> None:
    config = tmp_path / "configs" / "mine.yaml"
    config.parent.mkdir()
    config.write_text("val:\n  annotations: ../annotations.json\n  images: ../images\n"
                      "train: {annotations: ../annotations.json, images: ../images}\n")
    spec = load_data_spec(config)
    assert spec.val_ann.resolve() == tiny.resolve() and spec.train_images.resolve() == (tmp_path / "images").resolve()
    assert spec.class_names == ["a", "b"]
    config.write_text(config.read_text() + "names: [x, y]\n")
    assert load_data_spec(config).class_names == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("val: [unclosed\n", r"bad\.yaml does not parse at line \d+, column \d+"),
        ("train:\n  annotations: annotations.json\n  images: images\n", r"(?s)missing key 'val'.*annotations:"),
        ("val:\n  annotations: annotations.json\n", r"(?s)key 'val\.images' is missing.*images:"),
        ("val:\n  annotations: missing.json\n  images: images\n", r"'val\.annotations' points to .*missing\.json"),
        ("val: images/\n", r"'val' must be a mapping"),
        ("val: {annotations: annotations.json, images: images}\nnames: cat\n", r"'names' must be a non-empty list"),
        ("- just\n- a list\n", r"must be a mapping"),
    ],
)
def test_bad_spec_yaml_raises(tiny: Path, text: str, match: str) -> None:
    bad = tiny.parent / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(DatasetError, match=match) as info:
        load_data_spec(bad)
    assert "bad.yaml" in str(info.value)


def test_spec_missing_path_and_unknown_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere does not exist"):
        load_data_spec(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"has neither a data\.yaml nor val/annotations\.json"):
        load_data_spec(tmp_path)
