"""Golden reference files from mmdetection 3.3.0's CenterNetHead and CornerHead.

Produces (relative to the repository root):

* ``tests/fixtures/mmdet_centernet.pt`` -- ``CenterNetHead`` (in_channels=16, feat_channels=16,
  num_classes=3, default losses: GaussianFocalLoss w=1, L1 wh w=0.1, L1 offset w=1): random
  (perturbed) weights, input features, ground truth, raw forward outputs, ``get_targets`` outputs,
  every ``loss_by_feat`` term, ``predict_by_feat(rescale=False, with_nms=False)`` detections, and a
  ``near_perfect`` set (heatmap = clamp(target, 1e-4, 1 - 1e-4) * (1 - 0.05 u), u ~ U(0, 1) to
  break top-k ties; wh / offset = target + 0.01 * randn) with its losses and detections.
* ``tests/fixtures/mmdet_cornernet.pt`` -- ``CornerHead`` with two feature levels
  (num_classes=3, in_channels=16, corner_emb_channels=1, AE pull/push weight 0.1, the test_cfg of
  ``configs/cornernet/cornernet_hourglass104_8xb6-210e-mstest_coco.py``): weights, features,
  ground truth, per-level raw forward outputs (heatmap *logits*), ``get_targets(with_corner_emb=True)``
  outputs, per-level loss terms, ``predict_by_feat(rescale=False, with_nms=True)`` detections and the
  same with ``with_nms=False`` (``raw_pairs``: the top-1000 corner pairs after mmdet drops the
  rejected pairs with score -1, before soft-NMS).

Both files are ``torch.save`` of plain dicts of tensors / lists / ints / floats / strings, so they
load with plain ``torch.load`` without mmdet installed. Common inputs: a padded batch of 4 images
with ``batch_input_shape = pad_shape = (128, 128)`` and stride 4 (32x32 feature maps); image 0 has
3-4 objects and a smaller ``img_shape`` (100, 128), image 1 has no objects, image 2 has 26 objects
(same-class overlaps, two same-class boxes whose centres fall in the same feature cell, and two
different-class boxes with the same centre cell), image 3 has boxes touching the borders
(x1 = 0, y1 = 0, x2 = 128, y2 = 128) and a tiny 2x3 box. mmdet builds targets from
``batch_input_shape`` (not ``img_shape``). All image metas carry ``border = (0, 0, 0, 0)``
(top, bottom, left, right offsets that mmdet's RandomCenterCropPad would set; CenterNetHead's
predict requires the key, CornerHead uses it when present), so boxes are not shifted.

Weights: the head is built, ``init_weights()`` is called as mmdet does, then every parameter gets
``p += 0.05 * randn`` (seeded) and every BatchNorm gets random running_mean ~ N(0, 0.1),
running_var ~ U(0.5, 1.5), weight ~ U(0.5, 1.5), bias ~ N(0, 0.1). Everything runs in ``eval()``
mode under ``torch.no_grad()``; the losses use the same eval-mode forward outputs.
CornerHead only: after the perturbation the last 1x1 conv of each of the four heatmap branches
(tl_heat / br_heat, both levels) is affinely rescaled so that its logits on the saved features
have mean -2.5 and std 1.5 (see ``calibrate_heat_``; without it the level-1 logits reach ~30 and
saturate sigmoid in float32). The saved ``state_dict`` is the rescaled one, and the file's
``heat_calibration`` entry records the scale factors.

Install the mmdet venv (outside the anchorfree environment; see ../shared/refs/mmdet-on-cpu.md)::

    python3 -m venv ../mmdet-venv
    ../mmdet-venv/bin/pip install torch torchvision          # the same versions as anchorfree's env
    ../mmdet-venv/bin/pip install mmengine==0.10.7 mmdet==3.3.0 mmcv-lite==2.1.0
    ../mmdet-venv/bin/pip install -e . --no-deps              # anchorfree, from the repo root

(The venv used for the committed files was created with ``--system-site-packages`` so that torch
and torchvision come from the system Python.) mmcv's compiled ops are missing in mmcv-lite; the
shim ``../shared/refs/mmcv_lite_shim.py`` (or the directory in ``$MMCV_SHIM_DIR``) routes ``nms``
to torchvision and ``softnms`` to a NumPy port of mmcv's CPU soft-NMS.

Run from the repository root::

    ../mmdet-venv/bin/python scripts/mmdet_keypoint_golden.py
"""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIM_DIR = os.environ.get("MMCV_SHIM_DIR", str(REPO.parent / "shared" / "refs"))
sys.path.insert(0, SHIM_DIR)

import mmcv_lite_shim  # noqa: E402

mmcv_lite_shim.install()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.config import ConfigDict  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

import mmdet  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

register_all_modules()

OUT_DIR = REPO / "tests" / "fixtures"
NUM_CLASSES = 3
BATCH_INPUT_SHAPE = (128, 128)
FEAT = 32
BORDER = (0, 0, 0, 0)
IMG_SHAPES = [(100, 128), (96, 120), (128, 128), (128, 128)]


# --------------------------------------------------------------------------- ground truth
def make_ground_truth():
    g = torch.Generator().manual_seed(1234)
    bboxes, labels = [], []

    # image 0: a few objects, non-integer coordinates, inside the valid area (100 x 128)
    bboxes.append(torch.tensor([[10.3, 12.7, 50.9, 60.2],
                                [60.25, 5.5, 120.75, 95.1],
                                [30.6, 70.4, 45.2, 88.8],
                                [90.1, 40.3, 99.9, 52.7]], dtype=torch.float32))
    labels.append(torch.tensor([0, 2, 1, 1], dtype=torch.long))

    # image 1: no objects
    bboxes.append(torch.zeros((0, 4), dtype=torch.float32))
    labels.append(torch.zeros((0,), dtype=torch.long))

    # image 2: many objects of random sizes 4..80 px
    n_rand = 20
    wh = 4.0 + torch.rand((n_rand, 2), generator=g) * 76.0
    ctr = torch.rand((n_rand, 2), generator=g) * 128.0
    b = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1).clamp(0.0, 128.0)
    # keep at least 4 px after clamping
    b[:, 2] = torch.maximum(b[:, 2], b[:, 0] + 4.0).clamp(max=128.0)
    b[:, 3] = torch.maximum(b[:, 3], b[:, 1] + 4.0).clamp(max=128.0)
    b[:, 0] = torch.minimum(b[:, 0], b[:, 2] - 4.0)
    b[:, 1] = torch.minimum(b[:, 1], b[:, 3] - 4.0)
    lab = torch.randint(0, NUM_CLASSES, (n_rand,), generator=g)
    extra = torch.tensor([
        # same class (0), overlapping, centres in the same 4-px cell: (50.3, 60.2) and (50.9, 61.0)
        [30.3, 40.2, 70.3, 80.2],
        [40.9, 51.0, 60.9, 71.0],
        # same class (1), heavily overlapping, different centre cells
        [80.0, 80.0, 120.0, 110.0],
        [84.5, 78.0, 124.5, 104.0],
        # different classes (2 and 0) with the same centre cell (about (20.5, 100.5))
        [10.1, 90.2, 30.9, 110.8],
        [14.0, 96.0, 27.0, 105.0],
    ], dtype=torch.float32)
    bboxes.append(torch.cat([b, extra], dim=0))
    labels.append(torch.cat([lab, torch.tensor([0, 0, 1, 1, 2, 0])]).long())

    # image 3: objects at / touching the border, whole-image box, a tiny 2x3 box
    bboxes.append(torch.tensor([[0.0, 0.0, 40.5, 30.25],
                                [100.2, 90.7, 128.0, 128.0],
                                [0.0, 60.0, 128.0, 128.0],
                                [0.0, 0.0, 128.0, 128.0],
                                [70.0, 0.0, 90.0, 20.0],
                                [63.3, 41.1, 65.3, 44.1]], dtype=torch.float32))
    labels.append(torch.tensor([1, 0, 2, 0, 2, 1], dtype=torch.long))
    return bboxes, labels


def img_metas():
    return [dict(batch_input_shape=BATCH_INPUT_SHAPE, pad_shape=BATCH_INPUT_SHAPE,
                 img_shape=s, border=BORDER) for s in IMG_SHAPES]


def gt_instances(bboxes, labels):
    out = []
    for b, l in zip(bboxes, labels):
        inst = InstanceData()
        inst.bboxes = b.clone()
        inst.labels = l.clone()
        out.append(inst)
    return out


# --------------------------------------------------------------------------- weights
def perturb_(head, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for m in head.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def check_no_topk_ties(heat, k, what):
    """The golden detections depend on torch.topk's order; make sure it is unambiguous: the k+1
    largest local-maximum values of each image are all distinct."""
    from mmdet.models.utils import get_local_maximum
    lm = get_local_maximum(heat, kernel=3).flatten(1)
    top = lm.topk(k + 1, dim=1).values
    for i in range(top.shape[0]):
        if torch.unique(top[i]).numel() != k + 1:
            raise RuntimeError(f'{what}: tied top-{k} values in image {i}')


def state_dict_of(head):
    return {k: v.detach().clone() for k, v in head.state_dict().items()}


def to_plain(obj):
    """ConfigDict / tuple -> plain dict / list (for torch.load without mmengine)."""
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def scalar(x):
    return float(x.item()) if torch.is_tensor(x) else float(x)


def dets_of(results):
    return dict(bboxes=[r.bboxes.detach().clone() for r in results],
                scores=[r.scores.detach().clone() for r in results],
                labels=[r.labels.detach().clone().long() for r in results])


def common(bboxes, labels, feats, head_name, head_args, test_cfg, head):
    """What both golden files hold: inputs, ground truth, versions, the head's arguments and weights."""
    return dict(
        head=head_name,
        head_args=to_plain(head_args),
        test_cfg=to_plain(test_cfg),
        state_dict=state_dict_of(head),
        feats=feats,
        gt_bboxes=[b.clone() for b in bboxes],
        gt_labels=[l.clone() for l in labels],
        img_shapes=[list(s) for s in IMG_SHAPES],
        batch_input_shape=list(BATCH_INPUT_SHAPE),
        pad_shape=list(BATCH_INPUT_SHAPE),
        border=list(BORDER),
        stride=4,
        num_classes=NUM_CLASSES,
        mmdet_version=str(mmdet.__version__),
        torch_version=str(torch.__version__),
    )


# --------------------------------------------------------------------------- CenterNet
def centernet(bboxes, labels):
    head_args = dict(in_channels=16, feat_channels=16, num_classes=NUM_CLASSES,
                     loss_center_heatmap=dict(type='GaussianFocalLoss', loss_weight=1.0),
                     loss_wh=dict(type='L1Loss', loss_weight=0.1),
                     loss_offset=dict(type='L1Loss', loss_weight=1.0))
    test_cfg = dict(topk=100, local_maximum_kernel=3, max_per_img=100)
    torch.manual_seed(0)
    head = MODELS.build(dict(type='CenterNetHead', **head_args, test_cfg=ConfigDict(test_cfg)))
    head.init_weights()
    perturb_(head, seed=1)
    head.eval()

    feats = torch.randn((4, 16, FEAT, FEAT), generator=torch.Generator().manual_seed(2))
    metas = img_metas()
    with torch.no_grad():
        hm, wh, off = head([feats])
        targets, avg_factor = head.get_targets(bboxes, labels, hm[0].shape, BATCH_INPUT_SHAPE)
        losses = head.loss_by_feat(hm, wh, off, gt_instances(bboxes, labels), metas)
        dets = head.predict_by_feat(hm, wh, off, batch_img_metas=metas,
                                    rescale=False, with_nms=False)

        # near-perfect prediction
        g = torch.Generator().manual_seed(3)
        # clamp(target, 1e-4, 1 - 1e-4), times (1 - 0.05 u) with u a random permutation of
        # 0, 1/N, ..., (N-1)/N over the N cells, so that the top-k has no ties among the 1e-4
        # background cells
        tgt_hm = targets['center_heatmap_target']
        u = (torch.randperm(tgt_hm.numel(), generator=g).float() / tgt_hm.numel()).view(
            tgt_hm.shape)
        np_hm = tgt_hm.clamp(1e-4, 1 - 1e-4) * (1 - 0.05 * u)
        np_wh = targets['wh_target'] + 0.01 * torch.randn(targets['wh_target'].shape, generator=g)
        np_off = targets['offset_target'] + 0.01 * torch.randn(
            targets['offset_target'].shape, generator=g)
        np_losses = head.loss_by_feat([np_hm], [np_wh], [np_off],
                                      gt_instances(bboxes, labels), metas)
        np_dets = head.predict_by_feat([np_hm], [np_wh], [np_off], batch_img_metas=metas,
                                       rescale=False, with_nms=False)

    check_no_topk_ties(hm[0], 100, 'CenterNet heatmap')
    check_no_topk_ties(np_hm, 100, 'CenterNet near-perfect heatmap')

    out = common(bboxes, labels, feats, 'CenterNetHead', head_args, test_cfg, head)
    out.update(
        center_heatmap_pred=hm[0].clone(),   # after sigmoid, as mmdet's forward returns it
        wh_pred=wh[0].clone(),
        offset_pred=off[0].clone(),
        targets=dict(center_heatmap_target=targets['center_heatmap_target'],
                     wh_target=targets['wh_target'],
                     offset_target=targets['offset_target'],
                     wh_offset_target_weight=targets['wh_offset_target_weight'],
                     avg_factor=scalar(avg_factor)),
        losses={k: scalar(v) for k, v in losses.items()},
        detections=dets_of(dets),
        near_perfect=dict(
            center_heatmap_pred=np_hm, wh_pred=np_wh, offset_pred=np_off,
            losses={k: scalar(v) for k, v in np_losses.items()},
            detections=dets_of(np_dets)),
    )
    return out


# --------------------------------------------------------------------------- CornerNet
HEAT_MEAN, HEAT_STD = -2.5, 1.5


def calibrate_heat_(head, feats):
    """Affinely rescale the last 1x1 conv of every corner-heatmap branch so that its logits on
    ``feats`` have mean HEAT_MEAN and std HEAT_STD.

    With the 0.05 perturbation on top of mmdet's init, the 256-wide hidden layers of CornerHead
    amplify the signal and the level-1 top-left logits reach ~30 (27% of the cells give
    sigmoid == 1.0 in float32), so GaussianFocalLoss would be dominated by its 1e-12 eps and by
    float32 rounding of 1 - sigmoid. The rescaled weights are the ones saved in ``state_dict``.
    """
    info = []
    for lvl, x in enumerate(feats):
        tl_heat, br_heat = head.forward_single(x, lvl)[:2]
        for name, logits in (('tl_heat', tl_heat), ('br_heat', br_heat)):
            conv = getattr(head, name)[lvl][-1].conv
            mean, std = logits.mean().item(), logits.std().item()
            a = HEAT_STD / std
            conv.weight.mul_(a)
            conv.bias.copy_(a * (conv.bias - mean) + HEAT_MEAN)
            info.append(dict(module=f'{name}.{lvl}.1.conv', logit_mean_before=mean,
                             logit_std_before=std, scale=a))
    return info


def cornernet(bboxes, labels):
    head_args = dict(num_classes=NUM_CLASSES, in_channels=16, num_feat_levels=2,
                     corner_emb_channels=1,
                     loss_heatmap=dict(type='GaussianFocalLoss', alpha=2.0, gamma=4.0,
                                       loss_weight=1),
                     loss_embedding=dict(type='AssociativeEmbeddingLoss', pull_weight=0.1,
                                         push_weight=0.1),
                     loss_offset=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1))
    test_cfg = dict(corner_topk=100, local_maximum_kernel=3, distance_threshold=0.5,
                    score_thr=0.05, max_per_img=100,
                    nms=dict(type='soft_nms', iou_threshold=0.5, method='gaussian'))
    torch.manual_seed(10)
    head = MODELS.build(dict(type='CornerHead', **head_args, test_cfg=ConfigDict(test_cfg)))
    head.init_weights()
    perturb_(head, seed=11)
    head.eval()

    g = torch.Generator().manual_seed(12)
    feats = [torch.randn((4, 16, FEAT, FEAT), generator=g) for _ in range(2)]
    metas = img_metas()
    with torch.no_grad():
        heat_calibration = calibrate_heat_(head, feats)
        outs = head(feats)
        tl_heat, br_heat, tl_emb, br_emb, tl_off, br_off = outs
        targets = head.get_targets(bboxes, labels, tl_heat[-1].shape, BATCH_INPUT_SHAPE,
                                   with_corner_emb=True)
        losses = head.loss_by_feat(*outs, gt_instances(bboxes, labels), metas)
        dets = head.predict_by_feat(*outs, batch_img_metas=metas, rescale=False, with_nms=True)
        raw = head.predict_by_feat(*outs, batch_img_metas=metas, rescale=False, with_nms=False)

    check_no_topk_ties(tl_heat[-1].sigmoid(), 100, 'CornerNet tl heatmap')
    check_no_topk_ties(br_heat[-1].sigmoid(), 100, 'CornerNet br heatmap')
    for i, r in enumerate(raw):
        if torch.unique(r.scores).numel() != r.scores.numel():
            raise RuntimeError(f'tied corner-pair scores in image {i}')
    counts = [int(r.bboxes.shape[0]) for r in dets]
    if sum(c > 5 for c in counts) < 2:
        raise RuntimeError(f'too few CornerNet detections after soft-NMS: {counts}')

    out = common(bboxes, labels, feats, 'CornerHead', head_args, test_cfg, head)
    out.update(
        outputs=dict(tl_heat=[t.clone() for t in tl_heat],   # logits (no sigmoid)
                     br_heat=[t.clone() for t in br_heat],
                     tl_emb=[t.clone() for t in tl_emb],
                     br_emb=[t.clone() for t in br_emb],
                     tl_off=[t.clone() for t in tl_off],
                     br_off=[t.clone() for t in br_off]),
        targets=dict(topleft_heatmap=targets['topleft_heatmap'],
                     bottomright_heatmap=targets['bottomright_heatmap'],
                     topleft_offset=targets['topleft_offset'],
                     bottomright_offset=targets['bottomright_offset'],
                     corner_embedding=[[[[int(v) for v in c] for c in m] for m in img]
                                       for img in targets['corner_embedding']]),
        losses={k: [scalar(v) for v in vals] for k, vals in losses.items()},
        detections=dets_of(dets),
        raw_pairs=dets_of(raw),
        detection_counts=counts,
        heat_calibration=dict(target_logit_mean=HEAT_MEAN, target_logit_std=HEAT_STD,
                              modules=heat_calibration),
    )
    return out


def main():
    torch.set_num_threads(1)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    bboxes, labels = make_ground_truth()
    for name, fn in (('mmdet_centernet.pt', centernet), ('mmdet_cornernet.pt', cornernet)):
        data = fn(bboxes, labels)
        path = OUT_DIR / name
        torch.save(data, path)
        print(f'wrote {path} ({path.stat().st_size / 1e6:.2f} MB)')
        if 'losses' in data:
            print('  losses:', data['losses'])
        print('  detections per image:', [int(b.shape[0]) for b in data['detections']['bboxes']])
        if 'raw_pairs' in data:
            print('  raw pairs per image:', [int(b.shape[0]) for b in data['raw_pairs']['bboxes']])


if __name__ == '__main__':
    main()
