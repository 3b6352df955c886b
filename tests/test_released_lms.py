"""Released LM architectures from our config tree, and loading scaled-down copies of each family.

For each of the 17 released LMs, the config is composed with Hydra from `config/` (solver,
model scale, conditioner and the documented overrides), the LM is built on the meta device, and
its state_dict keys and shapes must equal the released checkpoint's (released_models.json).
"""
import json
from pathlib import Path
import shutil

from hydra import compose, initialize_config_dir
import omegaconf
import pytest
import torch

from audiocraft.models import AudioGen, MusicGen, builders

CONFIG_DIR = Path(__file__).parents[1] / 'config'
# AudioCraft's config semantics are Hydra's version_base 1.1, about which Hydra warns.
pytestmark = [pytest.mark.filterwarnings("ignore:(?s).*version_base"), pytest.mark.usefixtures('single_thread')]

STEREO = ['channels=2', 'interleave_stereo_codebooks.use=true', 'transformer_lm.n_q=8',
          'codebooks_pattern.delay.delays=[0,0,1,1,2,2,3,3]']
MELODY = 'musicgen/musicgen_melody_32khz'
TEXT = 'musicgen/musicgen_base_32khz'
# name -> (solver, model scale, extra overrides)
RELEASED = {
    'facebook/musicgen-small': (TEXT, 'small', []),
    'facebook/musicgen-medium': (TEXT, 'medium', []),
    'facebook/musicgen-large': (TEXT, 'large', []),
    'facebook/musicgen-melody': (MELODY, 'medium', []),
    'facebook/musicgen-melody-large': (MELODY, 'large', []),
    'facebook/musicgen-stereo-small': (TEXT, 'small', STEREO),
    'facebook/musicgen-stereo-medium': (TEXT, 'medium', STEREO),
    'facebook/musicgen-stereo-large': (TEXT, 'large', STEREO),
    'facebook/musicgen-stereo-melody': (MELODY, 'medium', STEREO),
    'facebook/musicgen-stereo-melody-large': (MELODY, 'large', STEREO),
    'facebook/audiogen-medium': ('audiogen/audiogen_base_16khz', 'medium', []),
    'facebook/magnet-small-10secs': ('magnet/magnet_32khz', 'small', ['dataset.segment_duration=10']),
    'facebook/magnet-medium-10secs': ('magnet/magnet_32khz', 'medium', ['dataset.segment_duration=10']),
    'facebook/magnet-small-30secs': ('magnet/magnet_32khz', 'small', ['dataset.segment_duration=30']),
    'facebook/magnet-medium-30secs': ('magnet/magnet_32khz', 'medium', ['dataset.segment_duration=30']),
    'facebook/audio-magnet-small': ('magnet/audio_magnet_16khz', 'small', []),
    'facebook/audio-magnet-medium': ('magnet/audio_magnet_16khz', 'medium', []),
}


def _compose(solver: str, scale: str, overrides: list) -> omegaconf.DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.1'):
        return compose(config_name='config', overrides=[
            f'solver={solver}', f'model/lm/model_scale={scale}', 'device=cpu', 'dtype=float32'] + overrides)


@pytest.fixture(scope='module')
def released(reference_dir):
    return json.loads((reference_dir / 'released_models.json').read_text())['lm']


def test_every_released_lm_is_covered(released):
    assert set(released) == set(RELEASED)


@pytest.mark.parametrize('name', sorted(RELEASED))
def test_released_architecture(name, released):
    solver, scale, overrides = RELEASED[name]
    cfg = _compose(solver, scale, overrides)
    expected = released[name]
    assert (cfg.sample_rate, cfg.channels, cfg.dataset.segment_duration) == \
        (expected['sample_rate'], expected['channels'], expected['segment_duration'])
    with torch.device('meta'):
        lm = builders.get_lm_model(cfg)
    state = lm.state_dict()
    shapes = {key: list(value.shape) for key, value in state.items()}
    assert set(shapes) == set(expected['state_dict']), \
        (sorted(set(shapes) - set(expected['state_dict']))[:5], sorted(set(expected['state_dict']) - set(shapes))[:5])
    assert shapes == expected['state_dict']
    assert sum(p.numel() for p in lm.parameters()) == expected['params']  # buffers are not counted
    # The LM itself is on meta (no memory spent); conditioners are real modules.
    assert lm.transformer.layers[0].linear1.weight.is_meta


# Scaled-down copies of each family, saved in the pretrained format next to the tiny 32 kHz codec
# of the reference cases (4 codebooks of 64 entries), then loaded with get_pretrained.
FAMILIES = {
    'text': (MusicGen, TEXT, []),
    'melody': (MusicGen, MELODY, []),
    'stereo': (MusicGen, TEXT, STEREO),
    'stereo-melody': (MusicGen, MELODY, STEREO),
    'audiogen': (AudioGen, 'audiogen/audiogen_base_16khz', ['sample_rate=32000']),
}
TINY = ['transformer_lm.dim=32', 'transformer_lm.num_heads=2', 'transformer_lm.num_layers=2',
        'transformer_lm.card=64', 'dataset.segment_duration=2']


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_get_pretrained_scaled_down_family(family, tmp_path, cases_dir):
    klass, solver, overrides = FAMILIES[family]
    cfg = _compose(solver, 'small', overrides + TINY)
    torch.manual_seed(0)
    lm = builders.get_lm_model(cfg)
    state = {key: value.half() for key, value in lm.state_dict().items()}  # released weights are fp16
    torch.save({'best_state': state, 'xp.cfg': omegaconf.OmegaConf.to_yaml(cfg), 'version': '1.4.0',
                'exported': True}, tmp_path / 'state_dict.bin')
    shutil.copy(cases_dir / 'musicgen_text_tiny' / 'compression_state_dict.bin', tmp_path)

    model = klass.get_pretrained(str(tmp_path), device='cpu')
    assert isinstance(model, klass) and model.max_duration == 2
    assert model.lm.cfg.dtype == 'float32'
    assert all(p.dtype == torch.float32 for p in model.lm.parameters())
    channels = 2 if 'stereo' in family else 1
    assert model.audio_channels == channels
    model.set_generation_params(duration=0.2, use_sampling=False)
    wav, tokens = model.generate(['happy rock', 'sad jazz'], return_tokens=True)
    assert tokens.shape == (2, 4 * channels, 10)
    assert wav.shape == (2, channels, 10 * 640)
    # The loaded weights are the saved ones.
    loaded = model.lm.state_dict()
    assert all(torch.equal(loaded[key].half(), value) for key, value in state.items())


def _flat(tree: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


@pytest.mark.parametrize('case,solver', [('musicgen_text_tiny', TEXT), ('musicgen_melody_tiny', MELODY)])
def test_composed_config_equals_audiocraft_xp_cfg(case, solver, cases_dir):
    """Every key of the cases' real AudioCraft `xp.cfg` is reproduced by our config tree."""
    pkg = torch.load(cases_dir / case / 'state_dict.bin', map_location='cpu', weights_only=False)
    reference = _flat(omegaconf.OmegaConf.to_container(omegaconf.OmegaConf.create(pkg['xp.cfg']), resolve=True))
    tiny = [f'transformer_lm.{k}={reference["transformer_lm." + k]}'
            for k in ['dim', 'num_heads', 'num_layers', 'card']]
    cfg = _compose(solver, 'small', tiny)
    ours = _flat(omegaconf.OmegaConf.to_container(cfg, resolve=True))
    ignored = {'dora.dir'}  # the experiment folder of the machine that trained it
    # Documented departures (docs/METRICS.md): FAD runs on a PyTorch VGGish (`model: vggish`, its own
    # keys) instead of TensorFlow, and PaSST weights can be given as a path.
    ignored |= {key for key in ours if key.startswith('metrics.fad.vggish.')}
    ignored |= {'metrics.fad.model', 'metrics.kld.passt.model_path'}
    diff = {}
    for key in (set(reference) | set(ours)) - ignored:
        if reference.get(key, '<missing>') != ours.get(key, '<missing>'):
            diff[key] = (reference.get(key, '<missing>'), ours.get(key, '<missing>'))
    assert not diff


@pytest.mark.parametrize('solver,sample_rate', [('musicgen/debug', 32000), ('audiogen/debug', 16000)])
def test_debug_solver_configs_build(solver, sample_rate):
    cfg = _compose(solver, 'xsmall', [])
    assert (cfg.solver, cfg.sample_rate) == (solver.split('/')[0], sample_rate)
    # As in AudioCraft: audiogen/debug names no codec (the integration recipe passes //sig/...).
    expected_codec = '//pretrained/debug_compression_model' if solver == 'musicgen/debug' else None
    assert cfg.compression_model_checkpoint == expected_codec
    with torch.device('meta'):
        lm = builders.get_lm_model(cfg)
    assert (lm.n_q, lm.card, lm.dim, len(lm.transformer.layers)) == (4, 400, 64, 2)
    assert lm.transformer.layers[0].cross_attention is not None  # T5 descriptions through cross-attention
