"""Convolutions as records, the ``state_dict`` entries they create, and
TF's output-stride rule that every backbone's schedule follows."""
from typing import (Dict, Iterable, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

_BN_ENTRIES = ('weight', 'bias', 'running_mean', 'running_var')


class ConvSpec(NamedTuple):
    """One convolution of a model, as its module path and shape.

    ``norm=True`` is an mmcv ``ConvModule`` with BN and no bias (parameters
    ``<path>.conv.weight`` and ``<path>.bn.*``); ``norm=False`` a plain
    ``nn.Conv2d`` (``<path>.weight`` and, with ``bias``, ``<path>.bias``),
    such as mmseg's ``conv_seg``.
    """
    path: str
    in_channels: int
    out_channels: int
    kernel_size: Union[int, Tuple[int, int]]
    groups: int = 1
    norm: bool = True
    bias: bool = False

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    def weight_shape(self) -> Tuple[int, int, int, int]:
        """``(out, in / groups, kh, kw)``: torch's layout."""
        k = self.kernel_size
        kh, kw = (k, k) if isinstance(k, int) else tuple(k)
        return (self.out_channels, self.in_channels // self.groups, kh, kw)

    def with_prefix(self, prefix: str) -> 'ConvSpec':
        return self._replace(path=prefix + self.path)


def state_shapes(convs: Iterable[ConvSpec]) -> Dict[str, tuple]:
    """``state_dict`` key -> shape of the modules ``convs`` describe, in
    their order (``num_batches_tracked`` buffers included, shape ``()``)."""
    shapes = {}
    for spec in convs:
        if spec.norm:
            shapes[f'{spec.path}.conv.weight'] = spec.weight_shape()
            for entry in _BN_ENTRIES:
                shapes[f'{spec.path}.bn.{entry}'] = (spec.out_channels, )
            shapes[f'{spec.path}.bn.num_batches_tracked'] = ()
        else:
            shapes[f'{spec.path}.weight'] = spec.weight_shape()
            if spec.bias:
                shapes[f'{spec.path}.bias'] = (spec.out_channels, )
    return shapes


def separable(path: str, in_channels: int, out_channels: int,
              kernel_size=3) -> Tuple[ConvSpec, ConvSpec]:
    """mmcv's ``DepthwiseSeparableConvModule`` with BN after both convs:
    ``<path>.depthwise_conv`` and ``<path>.pointwise_conv``."""
    return (ConvSpec(f'{path}.depthwise_conv', in_channels, in_channels,
                     kernel_size, groups=in_channels),
            ConvSpec(f'{path}.pointwise_conv', in_channels, out_channels, 1))


def atrous_schedule(strides: Sequence[int], output_stride: Optional[int]
                    ) -> List[Tuple[int, int]]:
    """``(stride, rate)`` of each layer of nominal ``strides`` for an
    ``output_stride``, by TF's rule (``resnet_utils.stack_blocks_dense``,
    ``mobilenet.mobilenet_base``): once the running stride reaches the
    target, layers run at stride 1 with the current atrous rate, and the
    rate grows by each such layer's nominal stride after it.

    Args:
        strides: Nominal stride of each layer, in order.
        output_stride: The target; None: no atrous conv (all strides kept).

    Raises:
        ValueError: the strides never reach ``output_stride``.
    """
    schedule, current, rate = [], 1, 1
    for stride in strides:
        if output_stride is not None and current == output_stride:
            schedule.append((1, rate))
            rate *= stride
        else:
            schedule.append((stride, 1))
            current *= stride
    if output_stride is not None and current != output_stride:
        raise ValueError(f'output stride {output_stride} cannot be reached '
                         f'with strides {tuple(strides)}')
    return schedule


def scale_dimension(dim: int, scale: float) -> int:
    """TF DeepLab's ``model.scale_dimension``: ``int((dim - 1) * scale + 1)``
    (e.g. 65, 97, 129, 161, 193, 225 for a 129 crop at 0.5 ... 1.75; 769
    at 1 / 32: 25)."""
    return int((float(dim) - 1.0) * scale + 1.0)
