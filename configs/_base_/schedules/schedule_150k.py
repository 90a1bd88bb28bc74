# DeepLab's recipe (see schedule_30k.py) over 150k iterations.
_base_ = './schedule_30k.py'
param_scheduler = [
    dict(
        type='TFPolyLR',
        eta_min=0.0,
        power=0.9,
        begin=0,
        end=150000,
        by_epoch=False)
]
train_cfg = dict(max_iters=150000, val_interval=15000)
default_hooks = dict(checkpoint=dict(interval=15000))
