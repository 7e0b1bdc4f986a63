"""Mosaic and random-affine augmentation: exact geometry, label pairing, RNG, workers, close_mosaic."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from anchorfree.data import CocoDetection, MosaicDetection, build_transforms, load_data_spec, make_collate
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
