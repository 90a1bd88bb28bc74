# `make demo`: DeepLab v3+ with aligned Xception-41 (OS 16) trained from
# scratch on the synthetic VOC-layout data set (deeplabplus_mm.datasets.
# synthetic), small enough for a CPU. Same code path as the real configs:
# our VOC dataset class and checked annotation loading, split files,
# SegDataPreProcessor, TTA, IoUMetric.
_base_ = [
    '../_base_/models/deeplabv3plus_xception65.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_30k.py'
]
crop_size = (97, 97)
# Plain NCHW training: at 97x97 channels_last is slower, unlike at 513
# (docs/benchmarks.md, section 1).
train_channels_last = False
data_root = 'data/synthvoc'
# A from-scratch run of a few hundred iterations: TF's BN momentum 3e-4
# would leave the running statistics at their initial values.
norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=0.1, requires_grad=True)
head_norm_cfg = dict(type='SyncBN', eps=1e-5, momentum=0.1, requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=41, norm_cfg=norm_cfg, init_cfg=None),  # from scratch
    decode_head=dict(norm_cfg=head_norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadVOCAnnotations', num_classes=21),
    dict(
        type='RandomResize',
        scale=(130, 130),
        ratio_range=(0.5, 1.5),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadVOCAnnotations', num_classes=21),
    dict(type='PackSegInputs')
]
# TTA: TF DeepLab's multi-scale + flip evaluation (as the dataset configs),
# with 3 scales; no test padding here, so each image is its own crop.
tta_model = dict(
    type='TFMultiScaleSegTTAModel', scales=[0.75, 1.0, 1.25], flip=True)
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[[dict(type='LoadVOCAnnotations', num_classes=21)],
                    [dict(type='PackSegInputs')]])
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,  # loading is ~1% of a step; a worker would compete
    persistent_workers=False,  # with the 2 compute threads
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='PascalVOCAugDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PascalVOCAugDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# From scratch, AdamW converges several times faster than the DeepLab SGD
# recipe, which is meant for fine-tuning ImageNet weights (docs/benchmarks.md,
# section 10). Weight decay spares norms, biases and depthwise weights as in
# TF.
iters = 300
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, dwconv_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, begin=0, end=30, by_epoch=False),
    dict(
        type='TFPolyLR',
        eta_min=0.0,
        power=0.9,
        begin=30,
        end=iters,
        by_epoch=False)
]
train_cfg = dict(max_iters=iters, val_interval=100)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=2))
randomness = dict(seed=0)
