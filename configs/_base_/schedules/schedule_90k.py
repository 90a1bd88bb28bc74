# DeepLab's recipe (see schedule_30k.py) over 90k iterations.
_base_ = './schedule_30k.py'
param_scheduler = [
    dict(
        type='TFPolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=90000,
        by_epoch=False)
]
train_cfg = dict(max_iters=90000, val_interval=9000)
default_hooks = dict(checkpoint=dict(interval=9000))
