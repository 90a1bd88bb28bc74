# DeepLab v3 with MobileNetV2 (depth multiplier 1.0) at output stride 16, as
# TF DeepLab builds it (research/deeplab, model zoo "mobilenetv2_coco_voc"
# configuration): image pooling + 1x1 ASPP branch + projection, no atrous
# branches, no decoder.
# Backbone BN: eps 1e-3, momentum 1 - 0.997 (mobilenet.training_scope);
# head BN: eps 1e-5, momentum 1 - 0.9997; ReLU6 in the backbone, ReLU in the
# head.
norm_cfg = dict(type='SyncBN', eps=1e-3, momentum=3e-3, requires_grad=True)
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
        type='MobileNetV2TF',
        depth_multiplier=1.0,
        output_stride=16,
        low_level_stride=4,
        out_indices=(0, -1),
        norm_cfg=norm_cfg,
        act_cfg=dict(type='ReLU6'),
        norm_eval=False,
        with_cp=False,
        # slim's ImageNet mobilenet_v2_1.0_224, converted with
        # tools/convert_tf_checkpoint.py (see README).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/mobilenetv2_imagenet.pth')),
    decode_head=dict(
        type='DeepLabV3PlusTFHead',
        in_channels=320,
        in_index=1,
        channels=256,
        # TF atrous_rates None: only the 1x1 aspp0 beside image pooling
        dilations=(1, ),
        # no decoder (decoder_output_stride None)
        c1_in_channels=0,
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
