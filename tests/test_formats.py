"""YOLO txt and Pascal VOC XML datasets: readers, format detection, conversion, and the CLI on them."""
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

from anchorfree.cli import main
from anchorfree.config import save_config
from anchorfree.data import (
    SYNTH_CLASSES,
    VOC_CLASSES,
    CocoDetection,
    convert_dataset,
    generate_synthetic_dataset,
    load_data_spec,
)
from anchorfree.inference.evaluate import match_image_ids
from anchorfree.errors import DatasetError
from anchorfree.evaluation import coco_evaluate

from conftest import micro_config


# ----------------------------------------------------------------------------- helpers


def write_image(path: Path, width: int, height: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)
    return path


def make_yolo(root: Path, labels: dict[str, str | None], sizes: dict[str, tuple[int, int]] | None = None,
              yaml_text: str = "train: images/train\nval: images/train\nnames: {0: cat, 1: dog}\n") -> Path:
    """``root/images/train/<name>.png`` (default 200x100, w x h) with label text (``None``: no label file)."""
    for name, text in labels.items():
        width, height = (sizes or {}).get(name, (200, 100))
        write_image(root / "images" / "train" / f"{name}.png", width, height)
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text(yaml_text)
    return root


def voc_xml(filename: str, size: tuple[int, int] | None, objects: list[tuple[str, int, tuple]]) -> str:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    objs = "".join(
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
        f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        for name, difficult, box in objects)
    return f"<annotation><filename>{filename}</filename>{size_xml}{objs}</annotation>"


def make_voc(root: Path, images: dict[str, tuple[tuple[int, int], list]], sets: dict[str, list[str]]) -> Path:
    """A VOC root: ``images`` maps id -> ((w, h), objects); ``sets`` maps image-set name -> ids."""
    for image_id, (size, objects) in images.items():
        write_image(root / "JPEGImages" / f"{image_id}.jpg", *size)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            voc_xml(f"{image_id}.jpg", size, objects))
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for name, ids in sets.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def quiet_dataset(ann, images, **kwargs) -> tuple[CocoDetection, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(ann, images, **kwargs)
    return ds, [str(w.message) for w in caught]


def boxes_by_file(data: dict) -> dict[str, list[tuple[str, int, list[float]]]]:
    """``file_name -> sorted [(class name, iscrowd, bbox)]`` of a COCO dict."""
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {img["id"]: img["file_name"] for img in data["images"]}
    out: dict[str, list] = {f: [] for f in files.values()}
    for a in data["annotations"]:
        out[files[a["image_id"]]].append((names[a["category_id"]], int(a.get("iscrowd", 0)), a["bbox"]))
    return {f: sorted(v, key=lambda t: (t[0], t[1], t[2])) for f, v in out.items()}


def assert_same_boxes(a: dict[str, list], b: dict[str, list], atol: float) -> None:
    assert a.keys() == b.keys()
    for key, boxes in a.items():
        assert [t[:2] for t in boxes] == [t[:2] for t in b[key]], key
        np.testing.assert_allclose(np.array([t[2] for t in boxes]).reshape(-1, 4),
                                   np.array([t[2] for t in b[key]]).reshape(-1, 4), rtol=0, atol=atol)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 train / 3 val images of 48..64 px, plus a category without boxes and one crowd box in val."""
    root = generate_synthetic_dataset(tmp_path_factory.mktemp("fmt_synth"), num_train=4, num_val=3,
                                      image_size=(48, 64), seed=0)
    for split in ("train", "val"):
        path = root / split / "annotations.json"
        data = json.loads(path.read_text())
        data["categories"].append({"id": 11, "name": "unused"})
        if split == "val":
            data["annotations"][0]["iscrowd"] = 1
        path.write_text(json.dumps(data))
    (root / "data.yaml").write_text((root / "data.yaml").read_text().replace("- cross\n", "- cross\n- unused\n"))
    return root


@pytest.fixture(scope="module")
def as_yolo(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("as_yolo") / "yolo"
    convert_dataset(synth, out, "yolo")
    return out


@pytest.fixture(scope="module")
def as_voc(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("as_voc") / "voc"
    convert_dataset(synth, out, "voc")
    return out


# ----------------------------------------------------------------------------- YOLO reader


def test_yolo_boxes_polygons_and_missing_labels(tmp_path: Path) -> None:
    """200x100 image: ``1 0.5 0.5 0.2 0.4`` is x 80..120, y 30..70; the polygon (0.1,0.1) (0.3,0.1) (0.2,0.5)
    spans x 20..60, y 10..50. ``b`` has no label file, ``c`` an empty one: both are negatives."""
    make_yolo(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.3 0.1 0.2 0.5\n", "b": None, "c": ""})
    spec = load_data_spec(tmp_path)
    assert spec.format == "yolo" and spec.class_names == ["cat", "dog"] and spec.splits == ["train", "val"]
    data, images = spec.split("val")
    assert images == (tmp_path / "images" / "train").resolve()
    assert [(i["id"], i["file_name"], i["width"], i["height"]) for i in data["images"]] == [
        (1, "a.png", 200, 100), (2, "b.png", 200, 100), (3, "c.png", 200, 100)]
    assert data["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(a["image_id"], a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in data["annotations"]] == [
        (1, 2, [80.0, 30.0, 40.0, 40.0], 1600.0, 0), (1, 1, [20.0, 10.0, 40.0, 40.0], 1600.0, 0)]
    ds, caught = quiet_dataset(spec.val_ann, spec.val_images, class_names=spec.class_names)
    assert caught == []
    assert ds.stats["negative_images"] == 2 and ds.stats["boxes"] == 2
    _, target = ds[0]
    assert torch.equal(target["boxes"], torch.tensor([[80.0, 30, 120, 70], [20, 10, 60, 50]]))
    assert torch.equal(target["labels"], torch.tensor([1, 0]))


def test_yolo_clipped_and_dropped_boxes_are_counted(tmp_path: Path) -> None:
    """``0.95 ± 0.1`` reaches x = 210 > 200: clipped; zero width: dropped; cx = 1.2 lies right of the
    image: dropped after clipping. One warning names the first line with a value outside 0..1."""
    make_yolo(tmp_path, {"a": "0 0.95 0.5 0.2 0.2\n0 0.5 0.5 0 0.1\n1 1.2 0.5 0.1 0.1\n"})
    spec = load_data_spec(tmp_path / "data.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDetection(spec.train_ann, spec.train_images, class_names=spec.class_names)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "1 label line(s) have coordinates outside 0..1" in messages[0]
    assert str(tmp_path / "labels" / "train" / "a.txt") in messages[0] and "line 3" in messages[0]
    assert "clipped 1 boxes" in messages[1] and "dropped 2 boxes" in messages[1]
    assert (ds.stats["clipped"], ds.stats["dropped"], ds.stats["boxes"]) == (1, 2, 1)
    _, target = ds[0]
    assert torch.allclose(target["boxes"], torch.tensor([[170.0, 40, 200, 60]]))


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("0 0.5 0.5 0.2", r"expected 5 values .* found 4"),
        ("0 0.5 0.5 0.2 0.2 0.3", r"expected 5 values .* found 6"),
        ("0 0.5 abc 0.2 0.2", r"'abc' is not a number"),
        ("0 0.5 0.5 nan 0.2", r"finite numbers"),
        ("2 0.5 0.5 0.2 0.2", r"class id 2 is out of range; 'names' has 2 classes, so ids are 0\.\.1"),
        ("-1 0.5 0.5 0.2 0.2", r"class id -1 is out of range"),
        ("1.5 0.5 0.5 0.2 0.2", r"class id 1.5 is not an integer"),
        ("0 0.1 0.1 0.3 x 0.2 0.5", r"'x' is not a number"),
    ],
)
def test_yolo_malformed_label_names_file_and_line(tmp_path: Path, bad_line: str, match: str) -> None:
    make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n\n" + bad_line + "\n"})
    spec = load_data_spec(tmp_path)
    with pytest.raises(DatasetError, match=match) as info:
        _ = spec.train_ann
    assert f"{tmp_path / 'labels' / 'train' / 'a.txt'}, line 3:" in str(info.value)


@pytest.mark.parametrize(
    ("yaml_text", "match"),
    [
        ("format: yolo\ntrain: images/train\nval: images/train\n", r"key 'names' is missing"),
        ("train: images/train\nval: images/train\n", r"(?s)'val' must be a mapping .* add the class 'names'"),
        ("val: images/train\nnames: {0: cat, 2: dog}\n", r"keys of 'names' must be the class ids 0, 1"),
        ("val: images/train\nnames: []\n", r"'names' must be a non-empty list"),
        ("val: images/train\nnames: [cat, cat]\n", r"'cat' appears twice"),
        ("val: images/train\nnames: [cat, [dog]]\n", r"not a class name"),
        ("val: images/train\nnames: [cat, dog]\nnc: 3\n", r"'nc' is 3 but 'names' has 2"),
        ("val: images/nothing\nnames: [cat]\n", r"'val' points to .*nothing, which does not exist"),
        ("train: images/train\nnames: [cat]\n", r"missing key 'val'"),
        ("format: yaml\nval: images/train\nnames: [cat]\n", r"'format' is 'yaml'; use one of coco, yolo, voc"),
    ],
)
def test_yolo_bad_yaml(tmp_path: Path, yaml_text: str, match: str) -> None:
    make_yolo(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n"}, yaml_text=yaml_text)
    with pytest.raises(DatasetError, match=match) as info:
        load_data_spec(tmp_path / "data.yaml")
    assert "data.yaml" in str(info.value)


def test_yolo_image_lists_root_path_and_lazy_splits(tmp_path: Path) -> None:
    """``path`` names the root; ``val`` is a .txt list (paths relative to the list's folder). The train
    labels are broken, but reading ``val`` alone never touches them."""
    root = tmp_path / "ds"
    make_yolo(root, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.5 0.5\n", "bad": "zero 1 2 3 4\n"})
    (root / "val.txt").write_text("./images/train/b.png\nimages/train/a.png\n")
    (tmp_path / "data.yaml").write_text("path: ds\ntrain: images/train\nval: val.txt\nnames: [cat, dog]\n")
    spec = load_data_spec(tmp_path / "data.yaml")
    assert spec.root == root.resolve()
    data = spec.val_ann
    assert [i["file_name"] for i in data["images"]] == ["b.png", "a.png"]  # list order
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in data["annotations"]] == [
        (1, 2, [50.0, 25.0, 100.0, 50.0]), (2, 1, [80.0, 40.0, 40.0, 20.0])]
    with pytest.raises(DatasetError, match=r"bad\.txt, line 1: 'zero' is not a number"):
        _ = spec.train_ann
    (root / "data.yaml").write_text("path: ../datasets/ds\nval: val.txt\nnames: [cat, dog]\n")  # as ultralytics ships
    assert load_data_spec(root).root == root.resolve()  # 'path' is not here, but the YAML's folder has 'val'
    (root / "val.txt").write_text("images/train/a.png\nimages/train/gone.png\n")
    with pytest.raises(DatasetError, match=r"val\.txt, line 2: image .*gone\.png does not exist"):
        _ = load_data_spec(tmp_path / "data.yaml").val_ann


def test_yolo_without_any_label_file_warns(tmp_path: Path) -> None:
    make_yolo(tmp_path, {"a": None, "b": None})
    with pytest.warns(UserWarning, match=r"none of the 2 images has a label file .*labels.train.a\.txt"):
        _ = load_data_spec(tmp_path).val_ann


# ----------------------------------------------------------------------------- VOC reader


def test_voc_coordinates_difficult_and_sizes(tmp_path: Path) -> None:
    """VOC xmin=11..xmax=50 (1-based, inclusive) is COCO x=10, w=40; difficult objects are crowd. ``b``'s
    XML has no <size>: its 30x20 size comes from the image header."""
    root = make_voc(tmp_path / "VOC", {"a": ((100, 80), [("dog", 0, (11, 21, 50, 60)), ("cat", 1, (1, 1, 100, 80))]),
                                       "b": ((30, 20), [("cat", 0, (2.5, 3, 10, 20))])},
                    {"train": ["a"], "val": ["a", "b"]})
    (root / "Annotations" / "b.xml").write_text(voc_xml("b.jpg", None, [("cat", 0, (2.5, 3, 10, 20))]))
    spec = load_data_spec(root)
    assert spec.format == "voc" and spec.class_names == ["cat", "dog"]  # sorted: not the 20 VOC classes
    data = spec.val_ann
    assert spec.val_images == (root / "JPEGImages").resolve()
    assert [(i["file_name"], i["width"], i["height"]) for i in data["images"]] == [("a.jpg", 100, 80),
                                                                                   ("b.jpg", 30, 20)]
    assert [(a["image_id"], a["category_id"], a["bbox"], a["iscrowd"]) for a in data["annotations"]] == [
        (1, 2, [10.0, 20.0, 40.0, 40.0], 0), (1, 1, [0.0, 0.0, 100.0, 80.0], 1), (2, 1, [1.5, 2.0, 8.5, 18.0], 0)]
    ds, caught = quiet_dataset(data, spec.val_images, class_names=spec.class_names)
    assert caught == [] and (ds.stats["boxes"], ds.stats["crowd"]) == (2, 1)
    _, target = ds[0]
    assert torch.equal(target["boxes"], torch.tensor([[10.0, 20, 50, 60]]))  # the difficult box is not a target


def test_voc_difficult_objects_are_ignored_by_coco_evaluation(tmp_path: Path) -> None:
    """GT: one normal box and one difficult box. A detection on the normal box alone gives AP 1 (the difficult
    box is not a miss), and an extra higher-scored detection on the difficult box is not a false positive.
    With the difficult flag cleared, the same single detection finds 1 of 2 boxes: AP 51/101."""
    objects = [("cat", 0, (11, 11, 50, 50)), ("cat", 1, (61, 61, 90, 90))]
    root = make_voc(tmp_path / "VOC", {"a": ((100, 100), objects)}, {"val": ["a"]})
    gt = load_data_spec(root).val_ann
    on_normal = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9}
    on_difficult = {"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.95}
    assert coco_evaluate(gt, [on_normal])["metrics"]["AP"] == pytest.approx(1.0)
    assert coco_evaluate(gt, [on_normal, on_difficult])["metrics"]["AP"] == pytest.approx(1.0)
    objects[1] = ("cat", 0, (61, 61, 90, 90))
    plain = make_voc(tmp_path / "VOC_plain", {"a": ((100, 100), objects)}, {"val": ["a"]})
    assert coco_evaluate(load_data_spec(plain).val_ann, [on_normal])["metrics"]["AP"] == pytest.approx(51 / 101)


def test_voc_class_names_rules(tmp_path: Path) -> None:
    every = [(name, 0, (1, 1, 10, 10)) for name in reversed(VOC_CLASSES)]
    root = make_voc(tmp_path / "all", {"a": ((20, 20), every)}, {"val": ["a"]})
    assert load_data_spec(root).class_names == list(VOC_CLASSES)  # VOC order, not sorted, not file order
    some = make_voc(tmp_path / "some", {"a": ((20, 20), every[:3])}, {"val": ["a"]})
    assert load_data_spec(some).class_names == sorted(VOC_CLASSES[-3:])
    (tmp_path / "named.yaml").write_text("format: voc\npath: some\nval: ImageSets/Main/val.txt\n"
                                         "names: [tvmonitor, train, sofa, extra]\n")
    spec = load_data_spec(tmp_path / "named.yaml")
    assert spec.class_names == ["tvmonitor", "train", "sofa", "extra"]
    assert [c["name"] for c in spec.val_ann["categories"]] == ["tvmonitor", "train", "sofa", "extra"]


def test_voc_devkit_folder_uses_07_plus_12(tmp_path: Path) -> None:
    """VOCdevkit with VOC2007 (trainval + test) and VOC2012 (trainval): train = both trainval, val = 2007 test."""
    obj = [("cat", 0, (1, 1, 10, 10))]
    make_voc(tmp_path / "VOCdevkit" / "VOC2007", {"000001": ((20, 20), obj), "000002": ((20, 20), obj)},
             {"trainval": ["000001"], "test": ["000002"]})
    make_voc(tmp_path / "VOCdevkit" / "VOC2012", {"2008_000001": ((20, 20), obj)},
             {"train": ["2008_000001"], "val": [], "trainval": ["2008_000001"]})
    spec = load_data_spec(tmp_path)
    assert spec.splits == ["train", "val"]
    assert [i["file_name"] for i in spec.train_ann["images"]] == ["VOC2007/JPEGImages/000001.jpg",
                                                                  "VOC2012/JPEGImages/2008_000001.jpg"]
    assert spec.train_images == (tmp_path / "VOCdevkit").resolve()
    assert [i["file_name"] for i in spec.val_ann["images"]] == ["000002.jpg"]


def _voc_error(tmp_path: Path, xml: str | None = None, names: str = "") -> pytest.ExceptionInfo:
    root = make_voc(tmp_path / "VOC", {"a": ((50, 50), [("cat", 0, (1, 1, 10, 10))]),
                                       "b": ((50, 50), [("cat", 0, (1, 1, 10, 10))])}, {"val": ["a", "b"]})
    if xml is not None:
        (root / "Annotations" / "b.xml").write_text(xml)
    (tmp_path / "data.yaml").write_text(f"format: voc\npath: VOC\n{names}")
    with pytest.raises(DatasetError) as info:
        _ = load_data_spec(tmp_path / "data.yaml").val_ann
    return info


@pytest.mark.parametrize(
    ("xml", "names", "match"),
    [
        ("<annotation><object><name>cat</name></annotation>", "", r"b\.xml is not valid XML \(mismatched tag: line 1"),
        (voc_xml("b.jpg", (50, 50), [("cta", 0, (1, 1, 5, 5))]), "names: [cat]\n",
         r"b\.xml: object\[1\]/name is 'cta', which is not one of the 1 class names \['cat'\]"),
        (voc_xml("b.jpg", (50, 50), [("cat", 0, (1, 1, 5, 5)), ("cat", 0, (1, 1, "x", 5))]), "",
         r"b\.xml: object\[2\]/bndbox/xmax is 'x', not a number"),
        ("<annotation><object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object></annotation>", "",
         r"b\.xml: object\[1\]/bndbox/ymin is missing"),
        ("<annotation><object><name>cat</name></object></annotation>", "", r"b\.xml: object\[1\] \(cat\) has no <bndbox>"),
        ("<annotation><object><bndbox/></object></annotation>", "", r"b\.xml: object\[1\] has no <name>"),
        (voc_xml("b.jpg", (50, 50), [("cat", 2, (1, 1, 5, 5))]), "", r"b\.xml: object\[1\]/difficult is '2'"),
        ("<annotation><size><width>wide</width></size></annotation>", "", r"b\.xml: size/width is 'wide'"),
        ("<voc/>", "", r"b\.xml: the root element is <voc>"),
    ],
)
def test_voc_malformed_xml_names_file_and_element(tmp_path: Path, xml: str, names: str, match: str) -> None:
    assert _voc_error(tmp_path, xml, names).match(match)


def test_voc_missing_image_and_xml_name_the_list_line(tmp_path: Path) -> None:
    cat = [("cat", 0, (1, 1, 5, 5))]
    root = make_voc(tmp_path / "VOC", {"a": ((50, 50), cat), "b": ((50, 50), cat)}, {"val": ["a", "b"]})
    assert len(load_data_spec(root).val_ann["images"]) == 2
    (root / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt, line 2: image id 'b' is listed but .*JPEGImages has no image"):
        _ = load_data_spec(root).val_ann
    (root / "ImageSets" / "Main" / "val.txt").write_text("a\n\nzz\n")
    with pytest.raises(DatasetError, match=r"val\.txt, line 3: image id 'zz' has no annotation file .*zz\.xml"):
        _ = load_data_spec(root).val_ann
    (root / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"no ImageSets/Main/val\.txt or test\.txt"):
        load_data_spec(root)


# ----------------------------------------------------------------------------- format detection


def test_format_detection_from_yaml_and_folder(synth: Path, as_yolo: Path, as_voc: Path, tmp_path: Path) -> None:
    assert load_data_spec(synth).format == "coco" and load_data_spec(synth / "data.yaml").format == "coco"
    assert load_data_spec(as_yolo).format == "yolo"
    assert load_data_spec(as_voc).format == "voc"  # data.yaml: format: voc
    (as_voc / "auto.yaml").write_text("val: ImageSets/Main/val.txt\n")  # an image-set list means VOC
    spec = load_data_spec(as_voc / "auto.yaml")
    assert spec.format == "voc" and spec.splits == ["val"]
    val = json.loads((synth / "val" / "annotations.json").read_text())
    found = {c["id"]: c["name"] for c in val["categories"]}
    assert spec.class_names == sorted({found[a["category_id"]] for a in val["annotations"]})  # no names: found, sorted
    (as_yolo / "explicit.yaml").write_text("format: yolo\nval: images/val\nnames: [a, b, c, d, e, f]\n")
    assert load_data_spec(as_yolo / "explicit.yaml").class_names == list("abcdef")
    plain = tmp_path / "plain_voc"
    shutil.copytree(as_voc, plain)
    (plain / "data.yaml").unlink()
    spec = load_data_spec(plain)  # the folder layout; train.txt + val.txt (no test.txt)
    assert spec.format == "voc" and spec.splits == ["train", "val"] and len(spec.train_ann["images"]) == 4
    yolo_without_yaml = tmp_path / "yolo_no_yaml"
    shutil.copytree(as_yolo, yolo_without_yaml)
    (yolo_without_yaml / "data.yaml").unlink()
    with pytest.raises(DatasetError, match=r"(?s)neither a data\.yaml.*looks like a YOLO dataset"):
        load_data_spec(yolo_without_yaml)


# ----------------------------------------------------------------------------- conversion


def test_coco_to_yolo_to_coco_round_trip(synth: Path, as_yolo: Path, tmp_path: Path) -> None:
    """Boxes survive to 1e-3 px (in fact 1e-6), every category keeps its name and order (also 'unused' without
    boxes); ids 1, 2, 3, 5, 7, 11 become 1..6. The crowd box is left out: YOLO has no ignore regions."""
    back = tmp_path / "back"
    summary = convert_dataset(as_yolo, back, "coco")
    assert summary["from"] == "yolo" and summary["splits"]["val"]["crowd"] == 0
    names = list(SYNTH_CLASSES) + ["unused"]
    for split in ("train", "val"):
        original = json.loads((synth / split / "annotations.json").read_text())
        again = json.loads((back / split / "annotations.json").read_text())
        assert [(c["id"], c["name"]) for c in again["categories"]] == list(enumerate(names, 1))
        expected = boxes_by_file({**original, "annotations": [a for a in original["annotations"] if not a["iscrowd"]]})
        assert sum(map(len, expected.values())) > 5
        assert_same_boxes(boxes_by_file(again), expected, atol=1e-6)
    yolo_summary = convert_dataset(synth, tmp_path / "again", "yolo", link=False)
    assert yolo_summary["splits"]["val"]["crowd_left_out"] == 1 and yolo_summary["splits"]["val"]["copied"] == 3
    val = json.loads((synth / "val/annotations.json").read_text())
    first = next(a for a in val["annotations"] if not a["iscrowd"])  # the first line of its image's label file
    img = next(i for i in val["images"] if i["id"] == first["image_id"])
    label = (tmp_path / "again/labels/val" / img["file_name"]).with_suffix(".txt").read_text().split("\n")[0].split()
    x, y, w, h = first["bbox"]
    expected_line = [(x + w / 2) / img["width"], (y + h / 2) / img["height"], w / img["width"], h / img["height"]]
    assert int(label[0]) == [1, 2, 3, 5, 7, 11].index(first["category_id"])  # class = rank of the category id
    np.testing.assert_allclose([float(v) for v in label[1:]], expected_line, rtol=1e-9)


def test_coco_to_voc_to_coco_round_trip(synth: Path, as_voc: Path, tmp_path: Path) -> None:
    """VOC XML stores the numbers as text (integers stay integers, other values keep 6 decimals), so boxes
    come back exactly; the crowd box comes back as crowd (written as difficult). Both splits share the image
    names 000000.jpg..., so the VOC image ids carry the split: train_000000, val_000000."""
    val = json.loads((synth / "val" / "annotations.json").read_text())
    crowd_image = next(i["file_name"] for i in val["images"] if i["id"] == val["annotations"][0]["image_id"])
    xml = (as_voc / "Annotations" / f"val_{Path(crowd_image).stem}.xml").read_text()
    assert xml.count("<difficult>1</difficult>") == 1
    assert (as_voc / "ImageSets/Main/trainval.txt").read_text().split() == [
        *(f"train_{i:06d}" for i in range(4)), *(f"val_{i:06d}" for i in range(3))]
    back = tmp_path / "back"
    convert_dataset(as_voc, back, "coco")
    names = list(SYNTH_CLASSES) + ["unused"]
    for split in ("train", "val"):
        original = boxes_by_file(json.loads((synth / split / "annotations.json").read_text()))
        again = json.loads((back / split / "annotations.json").read_text())
        assert [c["name"] for c in again["categories"]] == names
        renamed = {f"{split}_{name}": boxes for name, boxes in original.items()}
        assert_same_boxes(boxes_by_file(again), renamed, atol=1e-6)
    assert sum(a["iscrowd"] for a in json.loads((back / "val/annotations.json").read_text())["annotations"]) == 1


def test_voc_writes_fractional_coordinates_exactly(tmp_path: Path) -> None:
    """A COCO box [10.25, 5, 20.5, 7.125] is VOC xmin 11.25, ymin 6, xmax 30.75, ymax 12.125, and reads back
    as the same box."""
    (tmp_path / "src" / "val" / "images").mkdir(parents=True)
    write_image(tmp_path / "src/val/images/x.png", 64, 32)
    (tmp_path / "src/val/annotations.json").write_text(json.dumps({
        "images": [{"id": 9, "file_name": "x.png", "width": 64, "height": 32}],
        "annotations": [{"id": 1, "image_id": 9, "category_id": 4, "bbox": [10.25, 5, 20.5, 7.125]}],
        "categories": [{"id": 4, "name": "thing"}]}))
    convert_dataset(tmp_path / "src", tmp_path / "voc", "voc")
    xml = (tmp_path / "voc/Annotations/x.xml").read_text()
    for tag, value in (("xmin", "11.25"), ("ymin", "6"), ("xmax", "30.75"), ("ymax", "12.125")):
        assert f"<{tag}>{value}</{tag}>" in xml
    assert load_data_spec(tmp_path / "voc").val_ann["annotations"][0]["bbox"] == [10.25, 5.0, 20.5, 7.125]


def test_convert_refuses_a_non_empty_destination_and_links_images(synth: Path, as_yolo: Path,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"already exists and is not an empty folder"):
        convert_dataset(synth, as_yolo, "coco")
    image = as_yolo / "images" / "val" / "000001.jpg"
    assert image.stat().st_ino == (synth / "val" / "images" / "000001.jpg").stat().st_ino  # a hard link


# ----------------------------------------------------------------------------- datasets from dicts


def test_dataset_from_dict_keeps_gt_for_evaluation_but_not_in_workers(as_yolo: Path) -> None:
    spec = load_data_spec(as_yolo)
    ds = CocoDetection(spec.val_ann, spec.val_images, class_names=spec.class_names)
    assert ds.coco_gt is spec.val_ann and ds.coco_json_path is None
    assert ds.source == f"{as_yolo / 'data.yaml'} (val)"
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._gt_dict is None and len(copy) == 3
    assert torch.equal(copy[1][1]["boxes"], ds[1][1]["boxes"])


def test_match_image_ids_by_file_name(tmp_path: Path) -> None:
    images = [{"id": 7, "file_name": "a.jpg"}, {"id": 8, "file_name": "x/a.jpg"}, {"id": 9, "file_name": "sub/b.jpg"},
              {"id": 10, "file_name": "p/c.jpg"}, {"id": 11, "file_name": "q/c.jpg"}]
    paths = [tmp_path / "x" / "a.jpg", tmp_path / "a.jpg", tmp_path / "other" / "b.jpg", tmp_path / "d.jpg"]
    assert match_image_ids(paths, images, "ann.json") == [8, 7, 9, None]
    with pytest.raises(DatasetError, match=r"c\.jpg matches 2 images of ann\.json"):
        match_image_ids([tmp_path / "c.jpg"], images, "ann.json")


# ----------------------------------------------------------------------------- command line


def test_data_check_and_convert_on_yolo_and_voc(as_yolo: Path, as_voc: Path, tmp_path: Path, capsys) -> None:
    assert main(["data", "check", str(as_yolo), "--images"]) == 0
    out = capsys.readouterr().out
    assert f"dataset: {as_yolo / 'data.yaml'} (yolo)" in out
    assert "val: " in out and "images=3" in out and "decoded all 3 images" in out
    assert "classes (6): circle, square, triangle, star, cross, unused" in out
    assert main(["data", "check", str(as_voc)]) == 0
    out = capsys.readouterr().out
    assert "(voc)" in out and "crowd=1" in out  # the crowd box became difficult, and difficult is crowd again
    assert main(["data", "convert", str(as_voc), str(tmp_path / "y"), "--to", "yolo", "--copy"]) == 0
    out = capsys.readouterr().out
    assert "val: images=3" in out and "crowd_left_out=1" in out and "copied=3" in out
    assert (tmp_path / "y" / "data.yaml").is_file()
    bad = tmp_path / "bad"
    shutil.copytree(as_yolo, bad)
    (bad / "labels" / "val" / "000001.txt").write_text("0 0.5 0.5 0.2\n")
    assert main(["data", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "000001.txt, line 1: expected 5 values" in err and "Traceback" not in err


def test_train_eval_and_predict_on_a_yolo_dataset(as_yolo: Path, synth: Path, tmp_path: Path, capsys) -> None:
    """One training step on the YOLO view, ``eval --save-results`` (its files reproduce metrics.json), and
    ``predict --annotations`` writing the annotation file's own image and category ids."""
    config = tmp_path / "micro.yaml"
    save_config(micro_config(), config)
    run = tmp_path / "run"
    assert main(["train", str(config), "--data", str(as_yolo), "--out", str(run), "--no-progress", "train.epochs=1",
                 "model.input.min_size=64", "model.input.max_size=64"]) == 0
    assert "unused" in (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(as_yolo), "--workers", "0", "--score-thresh", "0.0",
                 "--save-results"]) == 0
    assert "results.json" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    results = json.loads((run / "results.json").read_text())
    gt = json.loads((run / "ground_truth.json").read_text())
    assert len(results) == metrics["num_detections"] > 0
    files = {i["id"]: i["file_name"] for i in gt["images"]}
    assert all(files[r["image_id"]] == r["file_name"] for r in results)
    assert coco_evaluate(gt, results)["metrics"] == pytest.approx(metrics["metrics"], abs=1e-12)

    ann = json.loads((synth / "val" / "annotations.json").read_text())
    for img in ann["images"]:
        img["id"] = 100 - img["id"]  # ids that differ from the order of the files
    for a in ann["annotations"]:
        a["image_id"] = 100 - a["image_id"]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    images = tmp_path / "images"
    shutil.copytree(synth / "val" / "images", images)
    write_image(images / "zzz_extra.png", 32, 32)  # not in ann.json: skipped
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(images), "--out", str(out), "--annotations", str(tmp_path / "ann.json"),
                 "--score-thresh", "0.0", "--fast", "off"]) == 0
    assert "1 image(s) are not listed" in capsys.readouterr().err
    predicted = json.loads((out / "results.json").read_text())
    ids = {img["file_name"]: img["id"] for img in ann["images"]}
    assert {r["image_id"] for r in predicted} == {97, 98, 99}
    assert all(ids[Path(r["file_name"]).name] == r["image_id"] for r in predicted)
    assert not (out / "zzz_extra.jpg").exists()
    plain = tmp_path / "plain"  # without --annotations: the training set's ids 1..6 and ids in file order
    assert main(["predict", str(run), str(images), "--out", str(plain), "--score-thresh", "0.0", "--fast", "off"]) == 0
    unmapped = [r for r in json.loads((plain / "results.json").read_text()) if "zzz" not in r["file_name"]]
    assert [r["bbox"] for r in unmapped] == [r["bbox"] for r in predicted]
    assert [[1, 2, 3, 5, 7, 11][r["category_id"] - 1] for r in unmapped] == [r["category_id"] for r in predicted]
    assert {r["image_id"] for r in unmapped} == {1, 2, 3}
