# EdgeTPU-DeepLab (TF DeepLab model zoo, "EdgeTPU-DeepLab models on
# Cityscapes"): DeepLab v3 with EdgeTPU-MobileNet (model_variant
# mobilenet_edgetpu, depth multiplier 1.0) and the MobileNetV2 head of the
# zoo: image pooling + 1x1 ASPP branch (aspp_convs_filters 256) +
# projection, no atrous branches, no decoder; output stride 16 (the zoo
# evaluates at 32 and 16).
# Backbone BN: eps 1e-3, momentum 1 - 0.997 (feature_extractor's
# mobilenet_v2_arg_scope), ReLU; head BN: eps 1e-5, momentum 1 - 0.9997, ReLU.
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
        type='MobileNetV3TF',
        arch='edgetpu',
        depth_multiplier=1.0,
        output_stride=16,
        out_indices=(-1, ),
        norm_cfg=norm_cfg,
        norm_eval=False,
        with_cp=False,
        # No ImageNet checkpoint of this backbone is in TF DeepLab's zoo:
        # fine-tune a converted EdgeTPU-DeepLab checkpoint with load_from.
        init_cfg=None),
    decode_head=dict(
        type='DeepLabV3PlusTFHead',
        in_channels=1280,
        in_index=0,
        channels=256,
        # TF atrous_rates None: only the 1x1 aspp0 beside image pooling
        dilations=(1, ),
        # no decoder (decoder_output_stride None)
        c1_in_channels=0,
        add_image_level_feature=True,
        dropout_ratio=0.1,
        num_classes=19,
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
