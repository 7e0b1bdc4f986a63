"""Flat-array datasets, and ``check_dataset`` / ``data check`` agreeing with what training stops on."""
from __future__ import annotations

import gc
import json
import shutil
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anchorfree.cli import main
from anchorfree.data import (
    CocoDetection,
    DatasetWarning,
    check_dataset,
    check_images,
    convert_dataset,
    generate_synthetic_dataset,
    load_data_spec,
    preflight,
)
from anchorfree.errors import DatasetError

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A COCO dataset (3 train, 2 val images of 40..48 px) and its YOLO and VOC conversions."""
    root = tmp_path_factory.mktemp("check_base")
    coco = generate_synthetic_dataset(root / "coco", num_train=3, num_val=2, image_size=(40, 48), seed=1,
                                      max_objects=3)
    convert_dataset(coco, root / "yolo", "yolo")
    convert_dataset(coco, root / "voc", "voc")
    return root


def copy_of(base: Path, tmp_path: Path, fmt: str) -> Path:
    shutil.copytree(base / fmt, tmp_path / fmt)
    return tmp_path / fmt


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def first_image(root: Path, split: str = "train") -> Path:
    return sorted((root / split / "images").iterdir())[0]


def train_side(path: Path) -> tuple[str | None, list[str]]:
    """What training does with a dataset: read the spec, build the train and val sets (val against the train
    class names, as the trainer does) and load every sample. Returns the error it stops with (``None``:
    it trains) and the dataset warnings it shows."""
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spec = load_data_spec(path)
            train = CocoDetection(spec.train_ann, spec.train_images, None, spec.class_names, train=True)
            val = CocoDetection(spec.val_ann, spec.val_images, None, train.class_names)
            for dataset in (train, val):
                for index in range(len(dataset)):
                    dataset[index]
        except DatasetError as e:
            error = str(e)
    return error, [str(w.message) for w in caught if isinstance(w.message, DatasetWarning)]


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def resave(path: Path, size: tuple[int, int]) -> None:
    """Replace an image file by one of ``size`` (w, h), same format."""
    Image.new("RGB", size, (10, 200, 30)).save(path, format=Image.open(path).format)


def coco_json(root: Path, split: str = "train") -> Path:
    return root / split / "annotations.json"


# --- the bad datasets: (format, change) -> whether training stops; both sides must agree


def _bbox3(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["annotations"][0].update(bbox=[1, 2, 3]))


def _unknown_category(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["annotations"][0].update(category_id=99))


def _unknown_image(root: Path) -> None:
    edit_json(coco_json(root, "val"), lambda d: d["annotations"][0].update(image_id=999))


def _duplicate_image_id(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["images"][1].update(id=d["images"][0]["id"]))


def _zero_width(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["images"][0].update(width=0))


def _missing_field(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["images"][0].pop("file_name"))


def _infinite_box(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["annotations"][0].update(bbox=[1, 2, float("inf"), 3]))


def _bool_box_value(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["annotations"][0].update(bbox=[1, 2, True, 3]))


def _size_mismatch(root: Path) -> None:
    resave(first_image(root, "val"), (30, 20))


def _missing_image(root: Path) -> None:
    first_image(root).unlink()


def _truncated_jpeg(root: Path) -> None:
    truncate(first_image(root))


def _jpeg_without_end_marker(root: Path) -> None:
    path = first_image(root)
    path.write_bytes(path.read_bytes()[:-2])


def _jpeg_with_trailing_bytes(root: Path) -> None:  # decodes fine: no problem on either side
    path = first_image(root)
    path.write_bytes(path.read_bytes() + b"\0" * 3000)


def _not_an_image(root: Path) -> None:
    first_image(root).write_text("just text")


def _clipped_boxes(root: Path) -> None:
    edit_json(coco_json(root), lambda d: d["annotations"][-1].update(bbox=[-5, -5, 20, 20]))


def _names_mismatch(root: Path) -> None:
    (root / "data.yaml").write_text((root / "data.yaml").read_text().replace("- circle", "- disc"))


def _val_categories_differ(root: Path) -> None:
    edit_json(coco_json(root, "val"), lambda d: d["categories"][0].update(name="disc"))
    text = (root / "data.yaml").read_text()
    (root / "data.yaml").write_text(text[:text.index("names:")])


def _unknown_yaml_key(root: Path) -> None:
    (root / "data.yaml").write_text((root / "data.yaml").read_text() + "nmaes: [x]\n")


def _invalid_json(root: Path) -> None:
    coco_json(root, "val").write_text('{"images": [')


def _missing_image_folder(root: Path) -> None:
    shutil.rmtree(root / "val" / "images")


def _yolo_bad_line(root: Path) -> None:
    label = min((root / "labels" / "train").iterdir())
    label.write_text(label.read_text() + "0 0.5 0.5\n")


def _yolo_class_out_of_range(root: Path) -> None:
    label = sorted((root / "labels" / "val").iterdir())[0]
    label.write_text("7 0.5 0.5 0.2 0.2\n")


def _yolo_outside_unit_range(root: Path) -> None:
    label = sorted((root / "labels" / "val").iterdir())[0]
    label.write_text("0 0.9 0.5 0.4 0.2\n")


def _yolo_names_misspelt(root: Path) -> None:
    (root / "data.yaml").write_text((root / "data.yaml").read_text().replace("names:", "nmaes:"))


def _yolo_truncated_image(root: Path) -> None:  # the YOLO reader reads headers; training decodes
    truncate(sorted((root / "images" / "val").iterdir())[0])


def _voc_unknown_class(root: Path) -> None:
    xml = sorted((root / "Annotations").iterdir())[0]
    xml.write_text(xml.read_text().replace("<name>", "<name>x", 1))
    (root / "data.yaml").write_text((root / "data.yaml").read_text())


def _voc_invalid_xml(root: Path) -> None:
    sorted((root / "Annotations").iterdir())[0].write_text("<annotation><size>")


def _voc_size_mismatch(root: Path) -> None:
    resave(sorted((root / "JPEGImages").iterdir())[0], (20, 30))


CASES = {
    "clean": ("coco", lambda root: None, False),
    "bbox of 3 numbers": ("coco", _bbox3, True),
    "unknown category": ("coco", _unknown_category, True),
    "unknown image id": ("coco", _unknown_image, True),
    "duplicate image id": ("coco", _duplicate_image_id, True),
    "zero width": ("coco", _zero_width, True),
    "missing file_name": ("coco", _missing_field, True),
    "infinite box": ("coco", _infinite_box, True),
    "bool in a box": ("coco", _bool_box_value, True),
    "declared size differs": ("coco", _size_mismatch, True),
    "missing image": ("coco", _missing_image, True),
    "truncated jpeg": ("coco", _truncated_jpeg, True),
    "jpeg without end marker": ("coco", _jpeg_without_end_marker, True),
    "jpeg with trailing bytes": ("coco", _jpeg_with_trailing_bytes, False),
    "text file as image": ("coco", _not_an_image, True),
    "clipped boxes": ("coco", _clipped_boxes, False),
    "names differ from json": ("coco", _names_mismatch, True),
    "val categories differ": ("coco", _val_categories_differ, True),
    "unknown yaml key": ("coco", _unknown_yaml_key, False),
    "invalid json": ("coco", _invalid_json, True),
    "missing image folder": ("coco", _missing_image_folder, True),
    "yolo: line of 3 values": ("yolo", _yolo_bad_line, True),
    "yolo: class out of range": ("yolo", _yolo_class_out_of_range, True),
    "yolo: outside 0..1": ("yolo", _yolo_outside_unit_range, False),
    "yolo: names misspelt": ("yolo", _yolo_names_misspelt, True),
    "yolo: truncated image": ("yolo", _yolo_truncated_image, True),
    "voc: unknown class": ("voc", _voc_unknown_class, True),
    "voc: invalid xml": ("voc", _voc_invalid_xml, True),
    "voc: xml size differs": ("voc", _voc_size_mismatch, True),
}


# ----------------------------------------------------------------------------- flat arrays


def test_per_sample_data_is_in_flat_arrays(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 40} for i in range(300)]
    annotations = [{"id": k, "image_id": k % 300, "category_id": 1 + k % 2, "bbox": [1, 2, 3, 4]} for k in range(900)]
    ds = CocoDetection({"images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, tmp_path)
    arrays = ds.arrays()
    assert set(arrays) == {"image_ids", "sizes", "name_bytes", "name_offsets", "boxes", "labels", "box_offsets"}
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())
    assert arrays["boxes"].dtype == np.float32 and arrays["boxes"].shape == (900, 4)
    assert arrays["box_offsets"].shape == (301,) and arrays["name_offsets"].shape == (301,)
    assert not arrays["boxes"].flags.writeable
    for name, value in vars(ds).items():  # nothing per image or per box as Python objects
        if name == "_gt_dict":  # the COCO dict given, kept for evaluation only (left out of worker copies)
            continue
        if isinstance(value, (list, tuple, dict, set)):
            assert len(value) < 10, name
        elif isinstance(value, np.ndarray):
            assert value.dtype != object, name


def test_items_are_the_known_boxes(tmp_path: Path) -> None:
    """A generated dataset's items equal boxes computed here from the JSON (xywh -> xyxy, clipped, crowd and
    degenerate boxes out, per image in file order), with unicode and repeated file names."""
    rng = np.random.default_rng(5)
    names = ["a.png", "ü/b.png", "c d.png", "a.png"]
    (tmp_path / "ü").mkdir()
    images, annotations, expected = [], [], {}
    sizes: dict[str, tuple[int, int]] = {}
    for index, name in enumerate(names):
        w, h = sizes.setdefault(name, (int(rng.integers(20, 40)), int(rng.integers(20, 40))))
        Image.new("RGB", (w, h)).save(tmp_path / name)
        image_id = 10 * (len(names) - index)  # ids in another order than the entries
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        expected[index] = []
        for k in range(int(rng.integers(0, 5))):
            x, y = rng.uniform(-5, w), rng.uniform(-5, h)
            bw, bh = rng.uniform(0, 15), rng.uniform(0, 15)
            crowd = int(k == 2)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": [3, 8][k % 2],
                                "bbox": [x, y, bw, bh], "iscrowd": crowd})
            box = [max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)]
            if not crowd and box[2] - box[0] >= 1 and box[3] - box[1] >= 1:
                expected[index].append((box, k % 2))
    categories = [{"id": 8, "name": "b"}, {"id": 3, "name": "a"}]
    data = {"images": images, "annotations": annotations, "categories": categories}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the clipped and dropped boxes
        ds = CocoDetection(data, tmp_path)
    for index, name in enumerate(names):
        image, target = ds[index]
        boxes = [b for b, _ in expected[index]]
        assert ds.get_image_info(index) == images[index] and ds.file_name(index) == name
        assert image.shape[1:] == (images[index]["height"], images[index]["width"])
        np.testing.assert_allclose(target["boxes"].numpy(), np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        assert target["labels"].tolist() == [label for _, label in expected[index]]
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
        assert target["image_id"] == images[index]["id"]


def test_memory_is_linear_in_arrays_not_dicts(tmp_path: Path) -> None:
    """20k images, 100k boxes: the dataset keeps under 26 bytes per box and 75 per image (its arrays hold
    16 + 8 bytes per box; per image an id, a size, a 13-byte name, 2 offsets and the sorted id lookup), under
    a tenth of the dict it is read from (measured alongside)."""
    num_images, num_boxes = 20_000, 100_000
    rng = np.random.default_rng(0)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        image_of = rng.integers(0, num_images, num_boxes).tolist()
        xy = np.round(rng.uniform(0, 50, (num_boxes, 2)), 2).tolist()
        data = {
            "images": [{"id": i + 1, "file_name": f"{i:09d}.jpg", "width": 64, "height": 64}
                       for i in range(num_images)],
            "annotations": [{"id": k + 1, "image_id": i + 1, "category_id": 1 + k % 3, "bbox": [*p, 5.0, 6.0],
                             "area": 30.0, "iscrowd": 0} for k, (i, p) in enumerate(zip(image_of, xy))],
            "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)],
        }
        del image_of, xy
        gc.collect()
        dict_bytes = tracemalloc.get_traced_memory()[0] - start
        before = tracemalloc.get_traced_memory()[0]
        ds = CocoDetection(data, tmp_path)
        gc.collect()
        dataset_bytes = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    array_bytes = sum(a.nbytes for a in ds.arrays().values())
    assert array_bytes >= num_boxes * 24 + num_images * (8 + 16 + 13 + 16)
    assert dataset_bytes < 26 * num_boxes + 75 * num_images + 64_000, (dataset_bytes, array_bytes)
    assert dataset_bytes < 0.1 * dict_bytes, (dataset_bytes, dict_bytes)
    assert len(ds) == num_images and ds.stats["boxes"] == num_boxes


def test_clean_annotations_skip_the_entry_by_entry_checks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The vectorised parse takes well-formed files; one bad entry sends the file through the checks that name it."""
    from anchorfree.data import coco

    calls = []
    checked_images, checked_annotations = coco.checked_image_columns, CocoDetection._checked_annotation_columns
    monkeypatch.setattr(coco, "checked_image_columns", lambda *a: calls.append("images") or checked_images(*a))
    monkeypatch.setattr(CocoDetection, "_checked_annotation_columns",
                        lambda *a: calls.append("annotations") or checked_annotations(*a))
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100.0} for i in range(500)],
            "annotations": [{"id": k, "image_id": k % 500, "category_id": 1, "bbox": [1.0, 2, 3, 4.5],
                             "iscrowd": k % 7 == 0} for k in range(5000)],
            "categories": [{"id": 1, "name": "a"}]}
    ds = CocoDetection(data, tmp_path)
    assert calls == [] and ds.stats["boxes"] == 5000 - 715 and ds.stats["crowd"] == 715
    data["annotations"][4321]["bbox"] = [1, 2, 3, True]
    with pytest.raises(DatasetError, match=r"annotation 4321 has bbox \[1, 2, 3, True\]; it must be 4 numbers"):
        CocoDetection(data, tmp_path)
    assert calls == ["annotations"]
    data["annotations"][4321]["bbox"] = [1, 2, 3, 4]
    data["images"][7]["id"] = "7"
    with pytest.raises(DatasetError, match=r"images\[7\] has id '7'; image ids must be integers"):
        CocoDetection(data, tmp_path)
    assert calls == ["annotations", "images"]


# ----------------------------------------------------------------------------- check and training agree


@pytest.mark.parametrize("case", list(CASES))
def test_check_and_training_agree(case: str, base: Path, tmp_path: Path) -> None:
    fmt, change, stops = CASES[case]
    root = copy_of(base, tmp_path, fmt)
    change(root)
    error, train_warnings = train_side(root)
    assert (error is not None) == stops, error
    for images in ("headers", True):
        report = check_dataset(root, images=images)
        assert report.ok == (error is None), (images, report.errors)
        messages = [p.message for p in report.errors]
        if error is not None:
            assert error in messages, (images, error, messages)
        else:
            assert sorted(p.message for p in report.warnings) == sorted(train_warnings)
        assert "Traceback" not in "".join(messages)


def test_several_problems_are_listed_at_once(base: Path, tmp_path: Path) -> None:
    root = copy_of(base, tmp_path, "coco")
    _bbox3(root)
    _unknown_image(root)
    _zero_width(root)
    _missing_image(root)  # images[0] of train: also the zero-width entry, left out; so take val's too
    first_image(root, "val").unlink()
    truncate(sorted((root / "train" / "images").iterdir())[1])
    _clipped_boxes(root)
    report = check_dataset(root)
    text = "\n".join(p.message for p in report.errors)
    assert len(report.errors) == 5, text
    assert "has bbox [1, 2, 3]" in text and "image_id 999" in text and "width=0" in text
    assert "does not exist (image id" in text and "truncated" in text
    assert [p.where for p in report.errors][:2] == ["images[0]", "annotations[0]"]
    assert all(p.file for p in report.errors)


def test_many_problems_of_one_kind_are_counted(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "width": 10, "height": 10} for i in range(1, 4)]
    annotations = [{"id": k, "image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5]} for k in range(50)]
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "images").mkdir()
    (tmp_path / "ann.json").write_text(json.dumps(data))
    (tmp_path / "data.yaml").write_text("val: {annotations: ann.json, images: images}\n")
    report = check_dataset(tmp_path / "data.yaml")
    unknown = [p for p in report.errors if "category_id 7" in p.message]
    assert len(unknown) == 20
    assert any("30 more errors of this kind (category_id)" in p.message and p.count == 30 for p in report.errors)
    assert any("3 more image files" not in p.message for p in report.errors)
    missing = [p for p in report.errors if "does not exist (image id" in p.message]
    assert len(missing) == 3 and sum(p.count for p in report.errors) == 50 + 3
    assert any("no train split" in p.message for p in report.warnings)


def test_size_mismatch_is_the_same_error_in_both_places(base: Path, tmp_path: Path) -> None:
    root = copy_of(base, tmp_path, "coco")
    edit_json(coco_json(root), lambda d: d["images"][0].update(width=40, height=30))
    resave(first_image(root), (30, 40))  # the sides swapped, as an image saved with its EXIF rotation applied
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the boxes of the smaller declared size are clipped
        ds = CocoDetection(coco_json(root), root / "train" / "images")
    with pytest.raises(DatasetError) as info:
        ds[0]
    assert "sides are swapped" in str(info.value)
    for decode in (False, True):
        problems = check_images(ds, decode=decode)
        assert [p.message for p in problems] == [str(info.value)]
    assert preflight(ds).error_message().count(str(info.value)) == 1
    with pytest.raises(DatasetError, match="would stop training"):
        preflight(ds, ds).raise_if_errors()


def test_unknown_yaml_key_is_reported_with_a_suggestion(base: Path, tmp_path: Path) -> None:
    root = copy_of(base, tmp_path, "coco")
    (root / "data.yaml").write_text((root / "data.yaml").read_text() + "vall: x\nzzz: 1\n")
    with pytest.warns(DatasetWarning) as caught:
        load_data_spec(root)
    keys = "The keys of a COCO dataset YAML are: format, train, val, test, names, nc."
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        f"unknown key 'vall' (did you mean 'val'?) is ignored. {keys}", f"unknown key 'zzz' is ignored. {keys}"]
    report = check_dataset(root, images=False)
    assert report.ok
    messages = [p.message for p in report.warnings]
    assert any("unknown key 'vall' (did you mean 'val'?)" in m for m in messages)
    assert any("unknown key 'zzz' is ignored" in m and "did you mean" not in m for m in messages)
    yolo = copy_of(base, tmp_path, "yolo")
    _yolo_names_misspelt(yolo)
    report = check_dataset(yolo)
    assert any("'names' is missing" in p.message and "'nmaes': a misspelling of 'names'?" in p.message
               for p in report.errors)
    assert any("unknown key 'nmaes' (did you mean 'names'?)" in p.message for p in report.warnings)


def test_header_pass_finds_truncated_and_missing_files(base: Path, tmp_path: Path) -> None:
    root = copy_of(base, tmp_path, "coco")
    files = sorted((root / "train" / "images").iterdir())
    truncate(files[0])
    files[1].unlink()
    ds = CocoDetection(coco_json(root), root / "train" / "images")
    for threads in (1, 4):
        problems = check_images(ds, threads=threads)
        assert [p.file for p in problems] == [str(files[0]), str(files[1])]
        assert "is corrupt or not a supported image (image id" in problems[0].message
        assert "does not exist (image id" in problems[1].message
    assert check_images(CocoDetection(coco_json(root, "val"), root / "val" / "images")) == []


def test_data_check_cli(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = copy_of(base, tmp_path, "coco")
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: " in out and "  read the headers of all 3 images\nval: " in out and "0 error(s)" in out
    assert main(["data", "check", str(root), "--images"]) == 0
    assert "  decoded all 2 images\nclasses (5)" in capsys.readouterr().out
    _bbox3(root)
    _unknown_yaml_key(root)
    truncate(first_image(root, "val"))
    assert main(["data", "check", str(root)]) == 2
    captured = capsys.readouterr()
    assert "warning: " in captured.out and "did you mean 'names'" in captured.out
    assert captured.err.startswith("error: 2 problems in ") and "would stop training" in captured.err
    assert "has bbox [1, 2, 3]" in captured.err and "truncated" in captured.err and "Traceback" not in captured.err
    assert main(["data", "check", str(root), "--no-images"]) == 2
    err = capsys.readouterr().err
    assert "1 problem in" in err and "truncated" not in err


def test_object_sizes_at_the_input_are_computed_by_hand_and_data_check_says_when_they_vanish(small_synth):
    """Two images (long sides 400 and 1000 px), three boxes: sqrt(w h) = 20, 40 and 10 px as stored; at a 100 px
    input they become 20 * 100/400 = 5, 40 * 100/400 = 10 and 10 * 100/1000 = 1 px: median 5, two of three under
    8 px. ``data check --input-size`` prints it, and the note to train on windows and predict with --slice."""
    from anchorfree.data.crops import object_sizes

    sizes = torch.tensor([[300, 400], [1000, 600]])
    boxes = torch.tensor([[0.0, 0.0, 20.0, 20.0], [10.0, 10.0, 90.0, 30.0], [5.0, 5.0, 15.0, 15.0]])
    got = object_sizes(sizes, boxes, torch.tensor([0, 0, 1]), 100)
    assert got["images_long_side"] == 400.0  # torch's median of (400, 1000): the lower one
    assert got["object_px"] == 20.0 and got["object_px_at_input"] == pytest.approx(5.0)
    assert got["tiny_share"] == pytest.approx(2 / 3) and got["auto_crop"] == 100.0
    assert main(["data", "check", str(small_synth), "--no-images", "--input-size", "32"]) == 0
    report = check_dataset(small_synth, images=False, input_size=32)
    lines = report.format_text()
    assert "resized whole to a 32 px input" in lines and "predict with --slice" in lines
    assert "note:" not in check_dataset(small_synth, images=False, input_size=320).format_text()
