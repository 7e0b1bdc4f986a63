"""The breakdowns of the side-by-side benchmarks (``--profile``, ``--profile-train``): the seconds of each stage of
``predict`` (the library's own stages: ``Detector.maps``' parts, ``Head.candidates``, ``suppress_candidates``) and
of torchvision's, per-op tables from ``torch.profiler``, and a training step's parts."""
from __future__ import annotations

import copy
import statistics
from typing import Callable

import torch

import common
from anchorfree.models.postprocess import batched_nms_all, suppress_candidates
from anchorfree.runtime import autocast
from timing import CpuMonitor, clock, median_time, wait_for_idle


def profile_anchorfree(af, images: torch.Tensor, channels_last: bool, fast: bool, repeats: int) -> dict[str, float]:
    """Median seconds of each stage of ``predict``, every stage called on its own."""
    af.set_channels_last(channels_last)
    batch = common.make_batch(images)
    sizes = batch.image_sizes
    head = af.head
    stages: dict[str, float] = {}
    with torch.no_grad(), autocast(common.DEVICE, enabled=fast):
        x = af.normalize(batch.images, sizes)
        feats = af.backbone(x)
        pyramid = af.neck(feats)
        outputs = head(pyramid)
        out32, priors = head.float_outputs_and_priors(outputs)
        opts = head.inference_options()
        found = head.candidates(outputs, sizes, opts)  # the library's own candidate stage, as predict runs it
        valid = found.scores > (float("-inf") if found.thresholded else opts.score_thresh)
        image_index = torch.arange(valid.shape[0])[:, None].expand_as(valid)[valid]
        nms_boxes, nms_scores = found.boxes[valid], found.scores[valid]
        nms_groups = image_index * head.num_classes + found.labels[valid]  # as suppress groups them

        stages["normalize"] = median_time(lambda: af.normalize(batch.images, sizes), 1, repeats)
        stages["backbone"] = median_time(lambda: af.backbone(x), 1, repeats)
        stages["neck (FPN)"] = median_time(lambda: af.neck(feats), 1, repeats)
        stages["head convs"] = median_time(lambda: head(pyramid), 1, repeats)
        stages["head.predict (decode+NMS)"] = median_time(lambda: head.predict(outputs, sizes), 1, repeats)
        stages["  .float+priors"] = median_time(lambda: head.float_outputs_and_priors(outputs), 1, repeats)
        stages["  scores_and_boxes"] = median_time(lambda: head.scores_and_boxes(out32, priors), 1, repeats)
        stages["  candidates"] = median_time(lambda: head.candidates(outputs, sizes, opts), 1, repeats)
        stages["  suppress_candidates"] = median_time(lambda: suppress_candidates(found, opts), 1, repeats)
        stages["    of which NMS"] = median_time(
            lambda: batched_nms_all(nms_boxes, nms_scores, nms_groups, opts.nms_thresh), 1, repeats)
        stages["sum of stages"] = sum(stages[k] for k in ("normalize", "backbone", "neck (FPN)", "head convs",
                                                          "head.predict (decode+NMS)"))
        stages["end-to-end predict()"] = median_time(lambda: af.predict(batch), 1, repeats)
    stages["nms_candidates"] = int(valid.sum())
    af.set_channels_last(True)
    return stages


def profile_torchvision(tv, images: torch.Tensor, repeats: int) -> dict[str, float]:
    tv_images = common.torchvision_inputs(images)
    common.set_tv_size(tv, images.shape[-1])
    stages: dict[str, float] = {}
    with torch.no_grad():
        orig = [tuple(img.shape[-2:]) for img in tv_images]
        il, _ = tv.transform(tv_images)
        body = tv.backbone.body(il.tensors)
        feats = list(tv.backbone.fpn(body).values())
        head_out = tv.head(feats)
        anchors = tv.anchor_generator(il, feats)
        # outputs per level, as the model's forward splits them: H * W locations x A anchors each
        locations = [f.size(2) * f.size(3) for f in feats]
        per_location = head_out["cls_logits"].size(1) // sum(locations)
        num = [n * per_location for n in locations]
        split_anchors = [list(a.split(num)) for a in anchors]
        dets = tv.postprocess_detections({k: list(v.split(num, dim=1)) for k, v in head_out.items()},
                                         split_anchors, il.image_sizes)

        stages["transform (normalize+resize+pad)"] = median_time(lambda: tv.transform(tv_images), 1, repeats)
        stages["  of which resize (interpolate x1.0)"] = median_time(
            lambda: [torch.nn.functional.interpolate(i[None], scale_factor=1.0, mode="bilinear",
                                                     recompute_scale_factor=True, align_corners=False)
                     for i in tv_images], 1, repeats)
        stages["backbone body"] = median_time(lambda: tv.backbone.body(il.tensors), 1, repeats)
        stages["FPN"] = median_time(lambda: tv.backbone.fpn(body), 1, repeats)
        stages["head convs"] = median_time(lambda: tv.head(feats), 1, repeats)
        stages["anchors"] = median_time(lambda: tv.anchor_generator(il, feats), 1, repeats)
        stages["postprocess_detections"] = median_time(
            lambda: tv.postprocess_detections(
                {k: list(v.split(num, dim=1)) for k, v in head_out.items()}, split_anchors, il.image_sizes),
            1, repeats)
        stages["transform.postprocess"] = median_time(
            lambda: tv.transform.postprocess([dict(d) for d in dets], il.image_sizes, orig), 1, repeats)
        stages["sum of stages"] = sum(v for k, v in stages.items() if not k.startswith(" ") and k != "sum of stages")
        stages["end-to-end model(images)"] = median_time(lambda: tv(tv_images), 1, repeats)
    return stages


def op_profile(fn: Callable[[], object], top: int) -> list[dict]:
    """Self time per aten op of one call (after a warm-up call): CPU time, or GPU time on CUDA."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    cuda = common.DEVICE.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        fn()
        clock()
    self_us = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)
    events = sorted(prof.key_averages(), key=self_us, reverse=True)
    total = sum(self_us(e) for e in events) or 1
    return [{"op": e.key, "self_ms": self_us(e) / 1e3, "pct": 100 * self_us(e) / total, "calls": e.count}
            for e in events[:top]]


def run_train_profile(spec: common.ModelSpec, tv_eval, af_eval, args) -> dict:
    """Median seconds of each part of one training step: forward, loss (assignment + losses), backward, SGD."""
    size, batch, reps = args.train_size, args.profile_train_batch, args.profile_repeats
    print(f"\n== training-step profile: {size} px, batch {batch} (median of {reps}; parts timed inside one step) ==")
    wait_for_idle(args.wait_idle)
    mon = CpuMonitor().start()
    images = common.random_images(batch, size, seed=7 + batch)
    targets = common.random_targets(batch, size, seed=11 + batch)
    tv_images, tv_targets = common.torchvision_inputs(images, targets)
    af_batch = common.make_batch(images, targets)

    def backward_and_step(loss, opt, t: list[float]) -> list[float]:
        """Finish a step whose parts so far end at the times ``t``; returns the durations of all parts."""
        loss.backward()
        t.append(clock())
        opt.step()
        opt.zero_grad(set_to_none=True)
        t.append(clock())
        return [b - a for a, b in zip(t, t[1:])]

    def parts_tv(model, opt):
        t = [clock()]
        il, tgt = model.transform(tv_images, [dict(x) for x in tv_targets])
        feats = list(model.backbone(il.tensors).values())
        head_out = model.head(feats)
        t.append(clock())
        anchors = model.anchor_generator(il, feats)
        losses = spec.torchvision_loss(model, tgt, head_out, anchors, feats)
        loss = sum(losses.values())
        t.append(clock())
        return backward_and_step(loss, opt, t)

    def parts_af(model, opt, fast):
        t = [clock()]
        with autocast(common.DEVICE, enabled=fast):
            outputs = model(af_batch.images, af_batch.image_sizes)
            t.append(clock())
            loss = sum(model.head.loss(outputs, af_batch.targets, af_batch.image_sizes).values())
        t.append(clock())
        return backward_and_step(loss, opt, t)

    variants = {}
    for label in ("torchvision", "exact (CL fp32)", "fast (CL bf16)"):
        if label == "torchvision":
            model = copy.deepcopy(tv_eval).train()
            common.set_tv_size(model, size)
        else:
            model = copy.deepcopy(af_eval).set_channels_last(True).train()
        opt = common.sgd(model)
        fn = (lambda: parts_tv(model, opt)) if label == "torchvision" else \
            (lambda: parts_af(model, opt, label.startswith("fast")))
        fn()
        runs = [fn() for _ in range(reps)]
        variants[label] = {name: statistics.median(r[i] for r in runs)
                           for i, name in enumerate(("forward", "loss (assign + losses)", "backward", "SGD step"))}
        variants[label]["total"] = sum(variants[label].values())
        del model, opt
    print(f"  {'part':28s}" + "".join(f"{v:>18s}" for v in variants))
    for name in variants["torchvision"]:
        print(f"  {name:28s}" + "".join(f"{variants[v][name] * 1e3:15.1f} ms" for v in variants))
    background = mon.stop()
    print(f"  (ran with a background load of {'?' if background is None else f'{background:.2f}'} cores; "
          "torchvision's forward includes its transform, its loss the anchor generator)")
    return {"size": size, "batch": batch, "parts_s": variants, "background_cores": background}


def run_profile(tv, af, args) -> dict:
    size, batch = args.profile_size, 1
    images = common.random_images(batch, size, seed=size * 100 + batch)
    reps = args.profile_repeats
    wait_for_idle(args.wait_idle)
    mon = CpuMonitor().start()
    print(f"\n== profile: {size} px, batch {batch} (median of {reps} per stage; each stage timed on its own) ==")
    variants = {
        "exact (CL fp32)": profile_anchorfree(af, images, True, False, reps),
        "NCHW fp32": profile_anchorfree(af, images, False, False, reps),
        "fast (CL bf16)": profile_anchorfree(af, images, True, True, reps),
    }
    names = list(variants["exact (CL fp32)"])
    print(f"\nanchorfree stages{'':18s}" + "".join(f"{v:>18s}" for v in variants))
    for n in names:
        if n == "nms_candidates":
            continue
        cells = "".join(f"{variants[v][n] * 1e3:15.1f} ms" for v in variants)
        print(f"  {n:33s}{cells}")
    print(f"  (NMS input: {variants['exact (CL fp32)']['nms_candidates']} boxes)")

    tvp = profile_torchvision(tv, images, reps)
    print("\ntorchvision stages (NCHW fp32)")
    for n, v in tvp.items():
        print(f"  {n:40s}{v * 1e3:10.1f} ms")

    ops = {}
    if args.top_ops > 0:
        batch_obj = common.make_batch(images)
        tv_images = common.torchvision_inputs(images)

        def af_call(cl, fast):
            def fn():
                af.set_channels_last(cl)
                with torch.no_grad(), autocast(common.DEVICE, enabled=fast):
                    af.predict(batch_obj)
            return fn

        def tv_call():
            with torch.no_grad():
                tv(tv_images)

        for label, fn in (("anchorfree exact (CL fp32)", af_call(True, False)),
                          ("anchorfree fast (CL bf16)", af_call(True, True)),
                          ("anchorfree NCHW fp32", af_call(False, False)),
                          ("torchvision (NCHW fp32)", tv_call)):
            rows = op_profile(fn, args.top_ops)
            ops[label] = rows
            print(f"\ntop ops by self {'GPU' if common.DEVICE.type == 'cuda' else 'CPU'} time: {label}")
            for r in rows:
                print(f"  {r['op']:42s}{r['self_ms']:10.1f} ms {r['pct']:5.1f}%  x{r['calls']}")
        af.set_channels_last(True)
    background = mon.stop()
    print(f"\n(profile ran with a background load of {'?' if background is None else f'{background:.2f}'} cores)")
    return {"size": size, "batch": batch, "background_cores": background, "anchorfree_stages_s": variants, "torchvision_stages_s": tvp, "top_ops": ops}
