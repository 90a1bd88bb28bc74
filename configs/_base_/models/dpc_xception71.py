# DeepLab v3+ with aligned Xception-71 and the Dense Prediction Cell at
# output stride 16, as TF DeepLab builds it (model zoo
# "xception71_dpc_cityscapes": --model_variant=xception_71
# --dense_prediction_cell_json=core/dense_prediction_cell_branch5_top1_cityscapes.json
# --decoder_output_stride=4). The cell replaces image pooling + ASPP.
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
        arch=71,
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
            checkpoint='checkpoints/xception71_imagenet.pth')),
    decode_head=dict(
        type='DensePredictionCellHead',
        in_channels=2048,
        in_index=1,
        channels=256,
        # dense_prediction_cell_branch5_top1_cityscapes.json: (input branch,
        # (rate_h, rate_w) at output stride 16); -1 = backbone features
        branches=[(-1, (1, 6)), (0, (18, 15)), (1, (6, 3)), (0, (1, 1)),
                  (0, (6, 21))],
        # TF: conv_rate_multiplier = 16 // output_stride
        output_stride=16,
        c1_in_channels=256,
        c1_channels=48,
        c1_in_index=0,
        decoder_use_separable_conv=True,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=head_norm_cfg,
        align_corners=True,
        loss_decode=dict(
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
