# ADE20K (SceneParsing, ADEChallengeData2016): training (20,210 images) /
# validation (2,000 images), 150 classes. Label 0 ("other") is ignored, as
# TF DeepLab ignores it: ADE20KDataset's reduce_zero_label=True maps 0 to
# 255 and 1..150 to 0..149.
# TF DeepLab's ADE20K recipe (g3doc/ade20k.md: --min_resize_value=513
# --max_resize_value=513 --resize_factor=16, for training and evaluation):
# * every image first resized as TF's resize_to_range does (TFRandomScale's
#   resize_to_range: longer side 497, shorter side rounded up to 16k+1,
#   bilinear with align_corners); the test pipeline resizes with mmcv's
#   Resize to a longer side of 513 (the aspect-preserving shorter side, which
#   mmcv's Resize cannot round to 16k+1), the TTA model exactly as TF does,
# * random scale factor in {0.5, 0.75, ..., 2.0} (min_scale_factor 0.5,
#   max_scale_factor 2.0, scale_factor_step_size 0.25),
# * random 513x513 crop, no cat_max_ratio,
# * random left-right flip,
# * and nothing else: PhotoMetricDistortion is not part of TF DeepLab's
#   recipe, so it is left out on purpose.
# TFRandomScale does the scaling as TF does it (new size int(float32(h) * s),
# truncated; image bilinear with align_corners, float32, not rounded; labels
# nearest neighbour with align_corners), pads bottom/right to crop_size
# (image 127.5 = TF's mean pixel, 0 after the normalisation of our TF
# models; labels 255, ignored) and takes the random crop, all before the
# flip, as TF does: a flipped crop has its padding on the left. (mmseg's R101
# configs normalise with ImageNet's mean and std: 127.5 is (0.07, 0.20,
# 0.42) there.)
# Evaluation: the same longer-side-513 resize, padded to 513x513 by the
# model's preprocessor (test_cfg); predictions are resized back to the
# original image for the metric (mmseg's IoUMetric on the original labels;
# TF scores the resized labels).
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (513, 513)
resize_to_513 = dict(type='Resize', scale=(513, 513), keep_ratio=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='TFRandomScale',
        min_scale=0.5,
        max_scale=2.0,
        step=0.25,
        crop_size=crop_size,
        # TF's --min_resize_value=513 --max_resize_value=513
        # --resize_factor=16, first
        resize_to_range=dict(min_size=513, max_size=513, factor=16)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    resize_to_513,
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# Test-time augmentation (tools/test.py --tta, tools/infer.py --tta): TF
# DeepLab's multi-scale evaluation with the model zoo's ADE20K protocol
# (eval scales 0.5:0.25:1.75 + left-right flip).
# TFMultiScaleSegTTAModel resizes each image as TF's
# resize_to_range does (longer side 497, shorter side 16k+1; see
# tf_resize_to_range), pads each image bottom/right to the model's test
# padding size (data_preprocessor.test_cfg.size = TF's eval_crop_size, 0
# after normalisation = TF's 127.5) and then makes the views from the padded
# image as TF does, so the pipeline gives one view. Pick other scales with
# --cfg-options tta_model.scales=[1.0] tta_model.flip=False (TF's
# single-scale evaluation).
tta_model = dict(
    type='TFMultiScaleSegTTAModel',
    scales=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
    flip=True,
    # TF's --min_resize_value=513 --max_resize_value=513 --resize_factor=16
    resize_to_range=dict(min_size=513, max_size=513, factor=16))
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[[dict(type='LoadAnnotations')],
                    [dict(type='PackSegInputs')]])
]
# mmseg's protocol instead (each view scaled first, then padded to
# test_cfg.size), in a config of yours that inherits this one:
#   tta_model = dict(_delete_=True, type='AccumulatingSegTTAModel')
#   tta_pipeline = {{_base_.mmseg_tta_pipeline}}
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
mmseg_tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [resize_to_513],
            [
                dict(type='Resize', scale_factor=r, keep_ratio=True)
                for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
