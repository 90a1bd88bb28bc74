# PASCAL Context, 60 classes (59 + background as class 0): train (4,996
# images) / val (5,104 images). Make SegmentationClassContext/ with mmseg's
# tools/dataset_converters/pascal_context.py.
# TF DeepLab's training recipe (research/deeplab/train.py defaults):
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
# Evaluation: original resolution, no resize (as TF evaluates); TTA below.
dataset_type = 'PascalContextDataset'
data_root = 'data/VOCdevkit/VOC2010'
crop_size = (513, 513)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(
        type='TFRandomScale',
        min_scale=0.5,
        max_scale=2.0,
        step=0.25,
        crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# Test-time augmentation (tools/test.py --tta, tools/infer.py --tta): TF
# DeepLab's multi-scale evaluation with the model zoo's PASCAL VOC / ADE20K
# protocol (eval scales 0.5:0.25:1.75 + left-right flip).
# TFMultiScaleSegTTAModel pads each image bottom/right to the model's test
# padding size (data_preprocessor.test_cfg.size = TF's eval_crop_size, 0
# after normalisation = TF's 127.5) and then makes the views from the padded
# image as TF does, so the pipeline gives one view. Pick other scales with
# --cfg-options tta_model.scales=[1.0] tta_model.flip=False (TF's
# single-scale evaluation).
tta_model = dict(
    type='TFMultiScaleSegTTAModel',
    scales=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75],
    flip=True)
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
            img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/train.txt',
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
            img_path='JPEGImages', seg_map_path='SegmentationClassContext'),
        ann_file='ImageSets/SegmentationContext/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
