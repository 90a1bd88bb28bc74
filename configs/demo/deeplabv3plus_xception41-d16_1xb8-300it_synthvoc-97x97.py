# `make demo`: DeepLab v3+ with aligned Xception-41 (OS 16) trained from
# scratch on the synthetic VOC-layout data set (deeplabplus_mm.datasets.
# synthetic) on 2 CPU cores in minutes. Same code path as the real configs:
# VOC dataset class, split files, SegDataPreProcessor, TTA, IoUMetric.
_base_ = [
    '../_base_/models/deeplabv3plus_xception65.py',
    '../_base_/default_runtime.py', '../_base_/schedules/schedule_30k.py'
]
crop_size = (97, 97)
data_root = 'data/synthvoc'
# A from-scratch run of a few hundred iterations: TF's BN momentum 3e-4
# would leave the running statistics at their initial values.
norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=0.05, requires_grad=True)
head_norm_cfg = dict(
    type='SyncBN', eps=1e-5, momentum=0.05, requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch=41, norm_cfg=norm_cfg, init_cfg=None),  # from scratch
    decode_head=dict(norm_cfg=head_norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
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
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
img_ratios = [0.75, 1.0, 1.25]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[[
            dict(type='Resize', scale_factor=r, keep_ratio=True)
            for r in img_ratios
        ],
                    [
                        dict(type='RandomFlip', prob=0., direction='horizontal'),
                        dict(type='RandomFlip', prob=1., direction='horizontal')
                    ], [dict(type='LoadAnnotations')],
                    [dict(type='PackSegInputs')]])
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='PascalVOCDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/train.txt',
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='PascalVOCDataset',
        data_root=data_root,
        data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'),
        ann_file='ImageSets/Segmentation/val.txt',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

iters = 300
optimizer = dict(lr=0.01)
optim_wrapper = dict(optimizer=optimizer)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=iters,
         by_epoch=False)
]
train_cfg = dict(max_iters=iters, val_interval=100)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=2))
randomness = dict(seed=0)
