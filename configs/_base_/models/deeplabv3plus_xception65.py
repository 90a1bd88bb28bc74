# DeepLab v3+ with aligned Xception-65 at output stride 16, as TF DeepLab
# builds it (research/deeplab, model zoo "xception65" PASCAL configuration).
# Backbone BN: eps 1e-3; head BN: eps 1e-5; both momentum 1 - 0.9997.
norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=3e-4, requires_grad=True)
head_norm_cfg = dict(
    type='SyncBN', eps=1e-5, momentum=3e-4, requires_grad=True)
# TF's x * (2 / 255) - 1 on RGB; padding with 0 here is TF's 127.5.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='AlignedXception',
        arch=65,
        output_stride=16,
        multi_grid=(1, 1, 1),
        out_indices=(0, -1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        with_cp=False,
        # The TF model zoo's ImageNet checkpoint, converted with
        # tools/convert_tf_checkpoint.py (see README).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/xception65_imagenet.pth')),
    decode_head=dict(
        type='DeepLabV3PlusTFHead',
        in_channels=2048,
        in_index=1,
        channels=256,
        dilations=(1, 6, 12, 18),
        c1_in_channels=256,
        c1_channels=48,
        c1_in_index=0,
        aspp_with_separable_conv=True,
        decoder_use_separable_conv=True,
        add_image_level_feature=True,
        dropout_ratio=0.1,
        num_classes=21,
        norm_cfg=head_norm_cfg,
        align_corners=True,
        loss_decode=dict(
            # TF averages over the non-ignored pixels (SUM_BY_NONZERO_WEIGHTS).
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
# Training in channels_last (ChannelsLastTrainingHook, default_runtime.py),
# where it is faster (docs/benchmarks.md, section 1, "Training in
# channels_last"). Off: --cfg-options train_channels_last=False.
train_channels_last = True
