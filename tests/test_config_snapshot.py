"""Every solver config, composed with Hydra, equals a committed snapshot (tests/data/config_snapshot.json).

The snapshot records AudioCraft's composed values (interpolations kept as written), so the config
tree cannot drift unnoticed. After a deliberate change, regenerate it and review the diff:

    python tests/test_config_snapshot.py --update

Two departures from AudioCraft are deliberate: `dora.dir` and `efficient_attention_backend: torch`.
"""
import json
from pathlib import Path
import sys
import typing as tp
import warnings

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / 'config'
SNAPSHOT = Path(__file__).resolve().parent / 'data' / 'config_snapshot.json'
# AudioCraft's config semantics are Hydra's version_base 1.1, about which Hydra warns.
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*version_base")


def solver_names() -> tp.List[str]:
    """Every solver config, as `solver=` names ('musicgen/debug', ...); the `default.yaml` files are
    bases that the others extend, not solvers of their own (as in AudioCraft)."""
    solver_dir = CONFIG_DIR / 'solver'
    return sorted(str(p.relative_to(solver_dir).with_suffix('')) for p in solver_dir.rglob('*.yaml')
                  if p.stem != 'default' and p.parent.name != 'evaluation')


def _flatten(node: tp.Any, prefix: str, out: tp.Dict[str, tp.Any]) -> None:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = node


def compose_solver(solver: str) -> tp.Dict[str, tp.Any]:
    """The composed config of `solver=<solver>` as {dotted key: value}, interpolations unresolved."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.1'):
            cfg = compose(config_name='config', overrides=[f'solver={solver}'])
    flat: tp.Dict[str, tp.Any] = {}
    _flatten(OmegaConf.to_container(cfg, resolve=False), '', flat)
    return flat


def compose_all() -> tp.Dict[str, tp.Dict[str, tp.Any]]:
    return {solver: compose_solver(solver) for solver in solver_names()}


@pytest.fixture(scope='module')
def composed() -> tp.Dict[str, tp.Dict[str, tp.Any]]:
    return compose_all()


def test_every_solver_config_equals_snapshot(composed):
    expected = json.loads(SNAPSHOT.read_text())
    assert sorted(composed) == sorted(expected), "solver configs were added or removed: regenerate the snapshot"
    problems = []
    for solver, values in composed.items():
        # Through JSON, so that tuples/lists and int/float keys compare as stored.
        values = json.loads(json.dumps(values))
        for key in sorted(set(values) | set(expected[solver])):
            got, want = values.get(key, '<missing>'), expected[solver].get(key, '<missing>')
            if got != want:
                problems.append(f"{solver}: {key} = {got!r}, snapshot has {want!r}")
    assert not problems, ("config differs from tests/data/config_snapshot.json (if deliberate, run "
                          "`python tests/test_config_snapshot.py --update` and review the diff):\n"
                          + "\n".join(problems[:50]))


# The values AudioCraft composes where this tree once differed (issue 12); spelled out so that
# regenerating the snapshot cannot silently lose them.
AUDIOCRAFT_VALUES = {
    'audiogen/debug': {
        'codebooks_pattern.modeling': 'parallel', 'compression_model_checkpoint': None,
        'dataset.generate.num_samples': 50,
        'transformer_lm.dim': 64, 'transformer_lm.num_heads': 2, 'transformer_lm.num_layers': 2,
    },
    'musicgen/debug': {'transformer_lm.dim': 64, 'transformer_lm.num_heads': 2, 'transformer_lm.num_layers': 2},
    'audiogen/audiogen_base_16khz': {'checkpoint.save_every': 50, 'dataset.generate.num_samples': 50},
    'magnet/audio_magnet_16khz': {
        'checkpoint.save_every': 50, 'dataset.generate.num_samples': 50,
        'generate.lm.decoding_steps': [20, 10, 10, 10],
        'transformer_lm.segment_duration': 0, 'transformer_lm.span_len': -1,
    },
    'magnet/magnet_32khz': {
        'dataset.segment_duration': 30, 'transformer_lm.segment_duration': 0, 'transformer_lm.span_len': -1,
    },
}


@pytest.mark.parametrize('solver', sorted(AUDIOCRAFT_VALUES))
def test_values_equal_audiocraft(solver, composed):
    values = json.loads(json.dumps(composed[solver]))
    for key, want in AUDIOCRAFT_VALUES[solver].items():
        assert values[key] == want, f"{solver}: {key}"


def test_deliberate_departures(composed):
    for values in composed.values():
        assert values['efficient_attention_backend'] == 'torch'


if __name__ == '__main__':
    if sys.argv[1:] != ['--update']:
        sys.exit("usage: python tests/test_config_snapshot.py --update")
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(compose_all(), indent=1, sort_keys=True) + '\n')
    print(f"wrote {SNAPSHOT}")
