"""Mosaic and random-affine augmentation: exact geometry, label pairing, RNG, workers, close_mosaic."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from anchorfree.data import CocoDetection, MosaicDetection, build_transforms, load_data_spec, make_collate
from anchorfree.data.transforms import DetectionTransform, RandomColorJitter, RandomHSV
from anchorfree.engine.trainer import Trainer

from conftest import micro_config

S = 64  # mosaic output side; the canvas is 128 x 128 and the identity output is its window [32, 96]

# (height, width, color, [(bbox xywh, category id)]); categories 1..5 are labels 0..4
TILES = [
    (48, 64, (200, 0, 0), [([40, 30, 20, 16], 1), ([0, 0, 10, 10], 2), ([30, 0, 10, 26], 2)]),
    (64, 40, (0, 200, 0), [([4, 20, 20, 40], 3), ([0, 0, 40, 6], 4)]),
    (32, 32, (0, 0, 200), [([10, 4, 10, 8], 5)]),
    (64, 20, (90, 90, 0), []),
]
CENTER = (72, 56)  # (cx, cy) on the canvas


@pytest.fixture(scope="module")
def tiles(tmp_path_factory: pytest.TempPathFactory) -> CocoDetection:
    """Four solid-color images (lossless PNG) with the boxes of :data:`TILES`."""
    root = tmp_path_factory.mktemp("tiles")
    (root / "images").mkdir()
    images, annotations = [], []
    for index, (h, w, color, boxes) in enumerate(TILES):
        Image.new("RGB", (w, h), color).save(root / "images" / f"{index}.png")
        images.append({"id": index + 10, "file_name": f"{index}.png", "width": w, "height": h})
        annotations += [{"id": len(annotations) + 1, "image_id": index + 10, "bbox": bbox, "category_id": cat}
                        for bbox, cat in boxes]
    categories = [{"id": i, "name": f"c{i}"} for i in range(1, 6)]
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                               "categories": categories}))
    return CocoDetection(root / "ann.json", root / "images", build_transforms(True, S, S, hflip_prob=0.0), train=True)


def identity_mosaic(dataset: CocoDetection, **kwargs) -> MosaicDetection:
    return MosaicDetection(dataset, S, scale=(1.0, 1.0), translate=0.0, hflip_prob=0.0, **kwargs)


def test_identity_mosaic_places_every_tile_exactly(tiles: CocoDetection) -> None:
    # Tile 0 (top-left), 48x64, kept at scale 1, its bottom-right corner at the center: canvas
    # offset (72 - 64, 56 - 48) = (8, 8), output offset (8 - 32, 8 - 32) = (-24, -24).
    #   [40, 30, 60, 46] -> [16, 6, 36, 22]; [0, 0, 10, 10] -> outside the output: dropped;
    #   [30, 0, 40, 26] -> [6, -24, 16, 2], clipped to [6, 0, 16, 2]: 20 of 260 px2 (< 10 %): dropped.
    # Tile 1 (top-right), 64x40, bottom-left corner at the center: canvas offset (72, -8) -> rows
    # 0..7 of the image are cut off; output offset (40, -40).
    #   [4, 20, 24, 60] -> [44, -20, 64, 20], clipped to [44, 0, 64, 20] (half kept);
    #   [0, 0, 40, 6] lies in the cut-off rows: dropped.
    # Tile 2 (bottom-left), 32x32 resized x2 to 64x64, top-right corner at the center: canvas offset
    # (8, 56), output offset (-24, 24).  [10, 4, 20, 12] x2 = [20, 8, 40, 24] -> [-4, 32, 16, 48],
    # clipped to [0, 32, 16, 48].
    # Tile 3 (bottom-right), 64x20, no boxes: output columns 40..60, rows 24..64; gray right of it.
    image, target = identity_mosaic(tiles).load_mosaic([0, 1, 2, 3], CENTER)
    assert image.shape == (3, S, S) and image.dtype == torch.uint8
    assert torch.equal(target["boxes"], torch.tensor([[16.0, 6, 36, 22], [44, 0, 64, 20], [0, 32, 16, 48]]))
    assert torch.equal(target["labels"], torch.tensor([0, 2, 4]))
    for (y, x), color in [((10, 10), TILES[0][2]), ((10, 50), TILES[1][2]), ((40, 10), TILES[2][2]),
                          ((40, 50), TILES[3][2]), ((40, 62), (114, 114, 114))]:
        assert image[:, y, x].tolist() == list(color), (y, x)
    assert image[:, :24, :40].unique(dim=1).shape[1] == 1  # tile 0 fills its whole quarter
    assert target["image_id"] == 10
    assert torch.equal(target["orig_size"], torch.tensor([S, S])) and torch.equal(target["scale"], torch.ones(2))


def test_zoomed_shifted_mosaic_by_hand(tiles: CocoDetection) -> None:
    """zoom 0.5, shift (4, -2): canvas point p lands at 0.5 p + S/2 - 0.5 S + shift = 0.5 p + (4, -2).
    Tile 0 (64x48, canvas corner (8, 8)) becomes 32x24 at (8, 2): its box [40, 30, 60, 46] -> [28, 17, 38, 25];
    [0, 0, 10, 10] -> [8, 2, 13, 7] (whole); [30, 0, 40, 26] -> [23, 2, 28, 15]. Tile 1 (40x64 at canvas (72, -8))
    becomes 20x32 at (40, -6), its rows above the canvas (output y < -2) cut off: [4, 20, 24, 60] -> [42, 4, 52, 24];
    [0, 0, 40, 6] -> [40, -6, 60, -3] lies in the cut rows: dropped. Tile 2 (32x32 resized to 64x64, canvas
    (8, 56)) becomes 32x32 at (8, 26), i.e. the original's own size: [10, 4, 20, 12] -> [18, 30, 28, 38]."""
    mosaic = identity_mosaic(tiles)
    image, boxes, labels = mosaic.compose([0, 1, 2, 3], CENTER, zoom=0.5, shift=(4.0, -2.0))
    assert image.shape == (3, S, S)
    expected = torch.tensor([[28.0, 17, 38, 25], [8, 2, 13, 7], [23, 2, 28, 15], [42, 4, 52, 24], [18, 30, 28, 38]])
    assert torch.equal(boxes, expected) and torch.equal(labels, torch.tensor([0, 1, 1, 2, 4]))
    for (y, x), color in [((10, 10), TILES[0][2]), ((10, 45), TILES[1][2]), ((40, 20), TILES[2][2]),
                          ((0, 0), (114, 114, 114)), ((62, 20), (114, 114, 114)), ((60, 60), (114, 114, 114))]:
        assert image[:, y, x].tolist() == list(color), (y, x)


def test_flipped_mosaic_moves_boxes_with_pixels(tiles: CocoDetection) -> None:
    """zoom 0.5 without shift, then a certain flip: tile 0's box [40, 30, 60, 46] -> [24, 19, 34, 27] ->
    mirrored [30, 19, 40, 27]; tile 0's color now fills the top right."""
    mosaic = MosaicDetection(tiles, S, scale=(0.5, 0.5), translate=0.0, hflip_prob=1.0)
    image, target = mosaic.load_mosaic([0, 3, 3, 3], CENTER)
    assert torch.equal(target["boxes"][0], torch.tensor([30.0, 19, 40, 27]))
    assert image[:, 10, S - 1 - 10].tolist() == list(TILES[0][2]) and image[:, 10, 10].tolist() == [114] * 3


def test_direct_mosaic_matches_the_canvas_mosaic(small_synth: Path) -> None:
    """The direct path (no rotation or shear) and the canvas path (v2 affine on the 2S canvas, used with
    rotation) give the same boxes for the same zoom and shift, up to the canvas path's rounding."""
    spec = load_data_spec(small_synth)
    plain = CocoDetection(spec.train_ann, spec.train_images, build_transforms(True, S, S, hflip_prob=0.0), train=True)
    direct = MosaicDetection(plain, S, scale=(0.75, 0.75), translate=0.0, hflip_prob=0.0, min_area_ratio=0.0)
    canvas = MosaicDetection(plain, S, scale=(0.75, 0.75), translate=0.0, hflip_prob=0.0, min_area_ratio=0.0)
    canvas.direct = False
    matched = 0
    for start in range(0, 12, 4):
        indices = [start, start + 1, start + 2, start + 3]
        _, a = direct.load_mosaic(indices, (60, 70))
        _, b = canvas.load_mosaic(indices, (60, 70))
        big_a = a["boxes"][(a["boxes"][:, 2:] - a["boxes"][:, :2]).min(1).values > 4]
        big_b = b["boxes"][(b["boxes"][:, 2:] - b["boxes"][:, :2]).min(1).values > 4]
        assert len(big_a) == len(big_b)
        assert torch.allclose(big_a, big_b, atol=1.5)
        matched += len(big_a)
    assert matched > 5


def test_hsv_matrix_by_hand() -> None:
    assert torch.allclose(RandomHSV.matrix(0.0, 1.0, 1.0), torch.eye(3), atol=1e-6)
    pixel = torch.tensor([200.0, 30.0, 50.0])
    # a third of a turn about the gray axis cycles the channels: (r, g, b) -> (b, r, g)
    assert torch.allclose(RandomHSV.matrix(2 * math.pi / 3, 1.0, 1.0) @ pixel, torch.tensor([50.0, 200, 30]), atol=1e-3)
    gray = 0.299 * 200 + 0.587 * 30 + 0.114 * 50
    assert torch.allclose(RandomHSV.matrix(0.0, 0.0, 1.0) @ pixel, torch.full((3,), gray), atol=1e-3)  # no saturation
    assert torch.allclose(RandomHSV.matrix(0.0, 1.0, 0.5) @ pixel, pixel / 2, atol=1e-4)  # value halved
    # every matrix keeps gray gray (a gray pixel only changes brightness)
    assert torch.allclose(RandomHSV.matrix(1.0, 0.3, 1.2) @ torch.full((3,), 100.0), torch.full((3,), 120.0), atol=1e-3)


def test_hsv_transform_changes_colors_not_boxes() -> None:
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 3, 12, 15]])
    transform = DetectionTransform([RandomHSV(0.0, 0.0, 0.0)])  # zero gains: the identity
    out, out_boxes, _, _ = transform(image, boxes, torch.tensor([1]))
    assert torch.equal(out, image) and torch.equal(out_boxes, boxes)
    torch.manual_seed(0)
    out, out_boxes, _, _ = DetectionTransform([RandomHSV(0.1, 0.7, 0.4)])(image, boxes, torch.tensor([1]))
    assert out.dtype == torch.uint8 and not torch.equal(out, image) and torch.equal(out_boxes, boxes)


def test_color_jitter_as_one_affine_map_by_hand() -> None:
    jitter = RandomColorJitter(0.2)
    flat = torch.full((3, 2, 2), 100, dtype=torch.uint8)
    assert jitter.transform(flat, {"brightness": 1.2, "contrast": 1.0, "matrix": torch.eye(3)}).unique().tolist() == [120]
    # contrast 0.5 pulls values halfway to the mean luma (100): 0 -> 50, 200 -> 150
    two = torch.tensor([[[0, 200]]] * 3, dtype=torch.uint8)
    assert jitter.transform(two, {"brightness": 1.0, "contrast": 0.5, "matrix": torch.eye(3)}).flatten().tolist() == \
        [50, 150] * 3
    torch.manual_seed(0)
    params = [jitter.make_params([]) for _ in range(200)]
    assert all(0.8 <= p["brightness"] <= 1.2 and 0.8 <= p["contrast"] <= 1.2 for p in params)


def test_area_filter_threshold(tiles: CocoDetection) -> None:
    _, target = identity_mosaic(tiles, min_area_ratio=0.0).load_mosaic([0, 1, 2, 3], CENTER)
    assert torch.equal(target["boxes"][1], torch.tensor([6.0, 0, 16, 2]))  # the 8 %-visible box is kept
    assert torch.equal(target["labels"], torch.tensor([0, 1, 2, 4]))


def test_tile_order_and_empty_images(tiles: CocoDetection) -> None:
    """Tile 1 placed top-left: its right edge touches the center and its box moves with it."""
    image, target = identity_mosaic(tiles).load_mosaic([1, 3, 3, 3], CENTER)
    # canvas offset (72 - 40, 56 - 64) = (32, -8), output offset (0, -40): [4, 20, 24, 60] -> [4, -20, 24, 20]
    assert torch.equal(target["boxes"], torch.tensor([[4.0, 0, 24, 20]]))
    assert torch.equal(target["labels"], torch.tensor([2]))
    image, target = identity_mosaic(tiles).load_mosaic([3, 3, 3, 3], CENTER)  # no boxes at all
    assert image.shape == (3, S, S) and target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_random_mosaics_keep_boxes_inside_and_labels_paired(small_synth: Path) -> None:
    spec = load_data_spec(small_synth)
    plain = CocoDetection(spec.train_ann, spec.train_images, build_transforms(True, S, S), train=True)
    mosaic = MosaicDetection(plain, S, degrees=10.0, shear=5.0, color_jitter=0.2)
    torch.manual_seed(0)
    counts = []
    for index in range(len(plain)):
        image, target = mosaic[index]
        boxes = target["boxes"]
        assert image.shape == (3, S, S) and image.dtype == torch.uint8
        assert boxes.dtype == torch.float32 and len(boxes) == len(target["labels"])
        assert (boxes >= 0).all() and (boxes <= S).all() and (boxes[:, 2:] - boxes[:, :2] >= 1).all()
        assert set(target["labels"].tolist()) <= set(range(plain.num_classes))
        counts.append(len(boxes))
    assert sum(counts) > len(plain)  # mosaics gather boxes from several images


def test_solid_tiles_keep_their_labels_under_random_affine(tiles: CocoDetection) -> None:
    """A box's label is that of the tile it came from: the pixel at its center has that tile's color."""
    color_of_label = {0: TILES[0][2], 1: TILES[0][2], 2: TILES[1][2], 3: TILES[1][2], 4: TILES[2][2]}
    mosaic = MosaicDetection(tiles, S, scale=(0.9, 1.1), translate=0.05, hflip_prob=0.5, min_area_ratio=0.5)
    torch.manual_seed(1)
    checked = 0
    for _ in range(20):
        image, target = mosaic[0]
        for box, label in zip(target["boxes"], target["labels"].tolist()):
            if (box[2:] - box[:2]).min() >= 6:  # large enough for the center pixel to be inside
                x, y = ((box[:2] + box[2:]) / 2).long().tolist()
                color = torch.tensor(color_of_label[label])
                assert (image[:, y, x].int() - color).abs().max() <= 2, (box, label)
                checked += 1
    assert checked > 10


def test_plain_pipeline_when_off(tiles: CocoDetection) -> None:
    """mosaic_prob=0 without affine, or a disabled dataset, gives exactly the plain items."""
    switched_off = MosaicDetection(tiles, S, affine=True)
    switched_off.enabled = False  # as in the close_mosaic epochs
    for mosaic in (MosaicDetection(tiles, S, mosaic_prob=0.0), switched_off):
        for index in range(len(tiles)):
            torch.manual_seed(index)
            image, target = mosaic[index]
            torch.manual_seed(index)
            expected_image, expected = tiles[index]
            assert torch.equal(image, expected_image)
            assert target.keys() == expected.keys()
            assert all(torch.equal(torch.as_tensor(target[k]), torch.as_tensor(expected[k])) for k in target)


def test_affine_only_keeps_the_plain_size(tiles: CocoDetection) -> None:
    mosaic = MosaicDetection(tiles, S, mosaic_prob=0.0, affine=True, scale=(0.5, 0.5), translate=0.0)
    image, target = mosaic[1]  # the 64x40 image halved about its center (20, 32)
    plain_image, plain = tiles[1]
    assert image.shape == plain_image.shape == (3, 64, 40)
    # [4, 20, 24, 60] -> [12, 26, 22, 46]; [0, 0, 40, 6] -> [10, 16, 30, 19]
    assert torch.allclose(target["boxes"], torch.tensor([[12.0, 26, 22, 46], [10, 16, 30, 19]]))
    assert torch.equal(target["labels"], torch.tensor([2, 3]))
    assert torch.equal(target["scale"], plain["scale"]) and torch.equal(target["orig_size"], plain["orig_size"])
    assert image[:, 0, 0].tolist() == [114, 114, 114] and image[:, 32, 20].tolist() == [0, 200, 0]


def test_reproducible_under_torch_seed(small_synth: Path) -> None:
    spec = load_data_spec(small_synth)
    plain = CocoDetection(spec.train_ann, spec.train_images, build_transforms(True, S, S, color_jitter=0.2))
    mosaic = MosaicDetection(plain, S, mosaic_prob=0.5, affine=True, color_jitter=0.2)

    def draw(seed: int) -> list:
        torch.manual_seed(seed)
        return [mosaic[i] for i in range(6)]

    first, again, other = draw(0), draw(0), draw(1)
    for (a, ta), (b, tb) in zip(first, again):
        assert torch.equal(a, b) and torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
    assert any(a.shape != b.shape or not torch.equal(a, b) for (a, _), (b, _) in zip(first, other))


def test_dataloader_workers_and_switch_reach_them(small_synth: Path) -> None:
    """Picklable for 2 workers; setting ``enabled`` before an epoch's iterator reaches the workers."""
    spec = load_data_spec(small_synth)
    plain = CocoDetection(spec.train_ann, spec.train_images, build_transforms(True, S, S), train=True)
    mosaic = MosaicDetection(plain, S)
    loader = DataLoader(mosaic, batch_size=4, num_workers=2, collate_fn=make_collate(1))
    sizes_on = {tuple(size) for batch in loader for size in batch.image_sizes.tolist()}
    mosaic.enabled = False
    sizes_off = {tuple(size) for batch in loader for size in batch.image_sizes.tolist()}
    assert sizes_on == {(S, S)}
    assert len(sizes_off) > 1  # the plain keep-ratio sizes of the non-square synthetic images


def test_close_mosaic_switches_at_the_right_epoch(small_synth: Path, tmp_path: Path) -> None:
    """2 epochs with close_mosaic=1 and 2 workers: mosaic batches in epoch 1, plain ones in epoch 2."""
    cfg = micro_config()
    t = cfg.train
    t.epochs, t.workers, t.eval_interval, t.ema, t.batch_size = 2, 2, 0, False, 8
    t.augment.mosaic_prob, t.augment.close_mosaic = 1.0, 1
    trainer = Trainer(cfg, load_data_spec(small_synth), tmp_path / "run", progress=False)
    sizes: dict[int, set] = {}
    real_loss = trainer.model.loss

    def recording_loss(batch):
        sizes.setdefault(trainer.epoch, set()).update(map(tuple, batch.image_sizes.tolist()))
        return real_loss(batch)

    trainer.model.loss = recording_loss
    trainer.validate = lambda: {"epoch": trainer.epoch, "metrics": {"AP": 0.0}}
    trainer.fit()
    side = cfg.model.input.min_size
    assert sizes[0] == {(side, side)}
    assert len(sizes[1]) > 1  # the plain keep-ratio sizes
    log = (tmp_path / "run" / "train.log").read_text()
    assert "epoch 2: mosaic/affine augmentation off (close_mosaic=1)" in log
    assert log.count("mosaic/affine augmentation") == 1


def test_large_image_crops_keep_boxes_correct_on_hand_made_cases():
    """A window of a large image: boxes shifted into window pixels, clipped to it, and dropped when less than half
    of their area is inside; the window stays inside the image; auto picks input.max_size for large images only."""
    from anchorfree.data.crops import crop_sample, large_image_crop, random_window

    image = torch.arange(3 * 100 * 200, dtype=torch.int64).reshape(3, 100, 200).to(torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0],     # fully inside the window (0..64, 0..64) → shifted by (5, 5)
                          [50.0, 50.0, 90.0, 60.0],     # 19 of 40 px wide inside: 47.5% of its area, dropped
                          [60.0, 40.0, 72.0, 50.0],     # 9 of 12 px inside: 75%, kept and clipped at x = 69 - 5
                          [150.0, 10.0, 160.0, 20.0]])  # outside
    labels = torch.tensor([1, 2, 3, 4])
    window, got, kept = crop_sample(image, boxes, labels, 5, 5, 64)
    assert window.shape == (3, 64, 64) and torch.equal(window, image[:, 5:69, 5:69])
    assert kept.tolist() == [1, 3]
    assert got.tolist() == [[5.0, 5.0, 25.0, 25.0], [55.0, 35.0, 64.0, 45.0]]
    # a window at the border is cut to the image
    window, got, kept = crop_sample(image, boxes, labels, 180, 80, 64)
    assert window.shape == (3, 20, 20) and kept.tolist() == []
    torch.manual_seed(0)
    for _ in range(200):
        x0, y0 = random_window(100, 200, 64, boxes)
        assert 0 <= x0 <= 200 - 64 and 0 <= y0 <= 100 - 64
    assert random_window(30, 40, 64, boxes[:0]) == (0, 0)  # a small image: the whole image
    sizes = torch.tensor([[3000, 4000], [2000, 2500], [3000, 4000]])
    assert large_image_crop(sizes, 640) == 640 and large_image_crop(torch.tensor([[480, 640]]), 640) == 0
