"""``import deeplabplus_mm`` registers our modules and changes nothing else
in mmengine, mmseg or torch; ``setup_runtime()`` and
``register_model_names()`` make their changes only when called. Each case
runs in a fresh interpreter, where nothing was imported before."""
import json
import textwrap

from conftest import run_tool

# What the package used to change on import, as comparable text: the
# functions by identity, torch's allow-list by names.
PROBE = textwrap.dedent("""\
    import json, sys
    import torch
    from mmengine.config import config as config_module
    from mmengine.logging import HistoryBuffer
    from mmengine.registry import HOOKS
    from mmseg.apis import MMSegInferencer
    from mmseg.registry import MODELS

    def state():
        return dict(
            reduce=id(HistoryBuffer.__dict__.get('__reduce__')),
            setstate=id(HistoryBuffer.__dict__.get('__setstate__')),
            format_code=id(config_module.FormatCode),
            inferencer_init=id(MMSegInferencer.__init__),
            safe_globals=sorted(map(repr,
                                    torch.serialization.get_safe_globals())),
            registered='AlignedXception' in MODELS.module_dict
            and 'RuntimeSetupHook' in HOOKS.module_dict)

    before = state()
    {action}
    print('STATE', json.dumps(dict(before=before, after=state())))
    """)


def _before_after(action):
    out = run_tool('-c', PROBE.format(action=action)).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith('STATE '))
    states = json.loads(line[len('STATE '):])
    return states['before'], states['after']


def test_import_registers_and_patches_nothing():
    before, after = _before_after('import deeplabplus_mm')
    assert not before['registered'] and after['registered']
    after['registered'] = before['registered']
    assert after == before


def test_setup_runtime_patches_on_request():
    before, after = _before_after(
        'import deeplabplus_mm\n'
        'deeplabplus_mm.setup_runtime()\n'
        'deeplabplus_mm.setup_runtime()  # idempotent')
    for key in ('reduce', 'setstate', 'format_code'):
        assert after[key] != before[key], key
    assert any('HistoryBuffer' in g for g in after['safe_globals'])
    assert not any('HistoryBuffer' in g for g in before['safe_globals'])
    assert after['inferencer_init'] == before['inferencer_init']


def test_model_names_are_opt_in():
    before, after = _before_after(
        'from deeplabplus_mm.apis import register_model_names\n'
        'register_model_names()')
    assert after['inferencer_init'] != before['inferencer_init']
    assert after['safe_globals'] == before['safe_globals']
