# TF DeepLab's MobileNetV3 segmentation model (model zoo
# mobilenetv3_{large,small}_cityscapes_trainfine; the MobileNetV3 paper's
# LR-ASPP): MobileNetV3-Large (mobilenet_v3_large_seg, last block's filters
# halved) at output stride 32 and LRASPPTFHead with the zoo's flags
# (model_zoo.md): image_pooling_crop_size=769,769, image_pooling_stride=4,5,
# aspp_convs_filters=128, aspp_with_squeeze_and_excitation,
# image_se_uses_qsigmoid, aspp_with_concat_projection=0,
# decoder_use_sum_merge, decoder_filters=<classes>, decoder_output_is_logits,
# decoder_output_stride=8 (the low-level feature: layer_7/depthwise_output).
# Backbone BN: eps 1e-3, momentum 1 - 0.997 (mobilenet_v2_arg_scope); head
# BN: eps 1e-5, momentum 1 - 0.9997.
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
        arch='large',
        output_stride=32,
        low_level_stride=8,
        out_indices=(0, -1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        with_cp=False),
    decode_head=dict(
        type='LRASPPTFHead',
        in_channels=480,
        in_index=1,
        c1_in_channels=120,
        c1_in_index=0,
        channels=128,
        # the pooling window: image_pooling_crop_size / output stride
        # (25x25), moved by image_pooling_stride (h, w)
        image_pooling_crop_size=(769, 769),
        image_pooling_stride=(4, 5),
        output_stride=32,
        image_se_uses_qsigmoid=True,
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
