"""torch's two ONNX exporters as
:func:`~deeplabplus_mm.apis.export.export_onnx` drives them: the dynamo
exporter (``torch.export`` + onnxscript, opset 18 and newer; symbolic axes
renamed batch / height / width) and the TorchScript one (opsets 11..17),
each returning the ``ModelProto``; and the quiet mode that hides their
progress lines and warnings.
"""
import contextlib
import logging
import os
import warnings
from typing import Dict

import torch

from .onnx_metadata import INPUT_NAME, LABELS_NAME, LOGITS_NAME

# torch's dynamo exporter writes opset 18 and newer; older opsets go through
# its TorchScript exporter, down to 11 (Resize with align_corners).
DYNAMO_MIN_OPSET = 18
MIN_OPSET = 11


@contextlib.contextmanager
def quiet_exporter(verbose: bool):
    """Silence the exporter's progress lines and its warnings about
    torchvision operators and deprecations (not ours to fix)."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in ('torch.onnx', 'onnxscript')]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', UserWarning)
        try:
            with open(os.devnull, 'w') as null, \
                    contextlib.redirect_stdout(null):
                yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def last_line(error: BaseException) -> str:
    """The error's type and first line: the reason, in one line."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return f'{type(error).__name__}: {lines[0] if lines else ""}'[:300]


def opsets(model_proto) -> Dict[str, int]:
    """The opset version of each operator domain of a ``ModelProto``."""
    return {o.domain or 'ai.onnx': o.version for o in model_proto.opset_import}


def dynamo_export(model, shape, dynamic, opset, outputs):
    """``torch.onnx.export(dynamo=True)``: torch.export, then onnxscript's
    translation and optimiser. Returns the ModelProto."""
    from torch.export import Dim

    # Batch 2 when dynamic: torch.export specialises axes of size 1.
    # Dim.AUTO lets torch.export find the valid ranges itself (the network
    # needs features of at least 2x2 where it traces; the graph still runs
    # below that) in one pass; named Dims with too low a minimum make the
    # exporter trace twice. The axes are named afterwards.
    example = torch.zeros(2 if dynamic else 1, 3, *shape)
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = {'image': {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}}
    kwargs = dict(
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamo=True,
        external_data=False,
        dynamic_shapes=dynamic_shapes,
        optimize=True)
    if opset is not None:
        kwargs['opset_version'] = opset
    program = torch.onnx.export(model, (example, ), None, **kwargs)
    proto = program.model_proto
    if dynamic:
        _name_dynamic_axes(proto)
    return proto


def _name_dynamic_axes(proto) -> None:
    """Name the input's symbolic axes batch / height / width everywhere
    (torch.export calls them s0, s1...).

    Raises:
        ValueError: An axis came out fixed: the network specialised the
            input size while being traced.
    """
    import re
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    names = {}
    for axis, name in ((0, 'batch'), (2, 'height'), (3, 'width')):
        symbol = dims[axis].dim_param
        if not symbol:
            raise ValueError(
                f'the {name} axis came out fixed ({dims[axis].dim_value}): '
                'the network specialises its input size; export without '
                '--dynamic')
        names[symbol] = name
    pattern = re.compile(r'\b(' + '|'.join(map(re.escape, names)) + r')\b')
    for info in (*proto.graph.input, *proto.graph.output,
                 *proto.graph.value_info):
        for dim in info.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)],
                                            dim.dim_param)


def torchscript_export(model, path, shape, dynamic, opset, outputs):
    """torch's TorchScript exporter (opsets below 18). Returns the
    ModelProto (read back from ``path``)."""
    import onnx
    dynamic_axes = None
    if dynamic:
        axes = {0: 'batch', 2: 'height', 3: 'width'}
        dynamic_axes = {INPUT_NAME: axes, LOGITS_NAME: axes}
        if LABELS_NAME in outputs:
            dynamic_axes[LABELS_NAME] = {0: 'batch', 1: 'height', 2: 'width'}
    torch.onnx.export(
        model, (torch.zeros(1, 3, *shape), ),
        path,
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True)
    return onnx.load(path)

