"""Released MAGNeT architectures from our config tree, and no state leaking from MAGNeT to MusicGen."""
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from audiocraft.models import MAGNeT, MagnetLMModel, MusicGen, builders

CONFIG_DIR = Path(__file__).parents[1] / 'config'
# AudioCraft's config semantics are Hydra's version_base 1.1, about which Hydra warns.
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*version_base")

# name -> (solver config, model scale, segment duration)
RELEASED = {
    'facebook/magnet-small-10secs': ('magnet/magnet_32khz', 'small', 10),
    'facebook/magnet-medium-10secs': ('magnet/magnet_32khz', 'medium', 10),
    'facebook/magnet-small-30secs': ('magnet/magnet_32khz', 'small', 30),
    'facebook/magnet-medium-30secs': ('magnet/magnet_32khz', 'medium', 30),
    'facebook/audio-magnet-small': ('magnet/audio_magnet_16khz', 'small', 10),
    'facebook/audio-magnet-medium': ('magnet/audio_magnet_16khz', 'medium', 10),
}


def _compose(solver: str, scale: str, duration: int):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base='1.1'):
        cfg = compose(config_name='config', overrides=[
            f'solver={solver}', f'model/lm/model_scale={scale}', f'dataset.segment_duration={duration}',
            'device=cpu', 'dtype=float32'])
    return cfg


@pytest.fixture(scope='module')
def released(reference_dir):
    return json.loads((reference_dir / 'released_models.json').read_text())['lm']


@pytest.mark.parametrize('name', sorted(RELEASED))
def test_released_architecture(name, released):
    solver, scale, duration = RELEASED[name]
    cfg = _compose(solver, scale, duration)
    expected = released[name]
    assert cfg.lm_model == 'transformer_lm_magnet'
    assert (cfg.sample_rate, cfg.channels, cfg.dataset.segment_duration) == \
        (expected['sample_rate'], expected['channels'], expected['segment_duration'])
    with torch.device('meta'):
        lm = builders.get_lm_model(cfg)
    assert isinstance(lm, MagnetLMModel)
    assert lm.span_len == 3 and lm.subcodes_context == 5 and lm.segment_duration == duration
    # Masks are computed values, real even when the weights are on the meta device.
    assert lm.attn_mask_per_stage[1].shape == (50 * duration, 50 * duration)
    assert not lm.attn_mask_per_stage[1].is_meta
    state = {k: list(v.shape) for k, v in lm.state_dict().items()}
    assert state == expected['state_dict']
    assert sum(v.numel() for v in lm.state_dict().values()) == expected['params']


def test_magnet_then_musicgen_in_one_process(cases_dir):
    """AudioCraft switches a process-wide attention backend when loading MAGNeT, which changes
    MusicGen's numbers afterwards; here MusicGen must still give its golden greedy tokens."""
    magnet = MAGNeT.get_pretrained(str(cases_dir / 'magnet_tiny'), device='cpu')
    magnet.set_generation_params(use_sampling=False, decoding_steps=[2, 1, 1, 1])
    magnet.generate(['disco beat'])

    io = torch.load(cases_dir / 'musicgen_text_tiny' / 'io.pt', map_location='cpu', weights_only=False)
    musicgen = MusicGen.get_pretrained(str(cases_dir / 'musicgen_text_tiny'), device='cpu')
    for name in ['text', 'unconditional']:
        gen = io['generations'][name]
        musicgen.set_generation_params(**gen['params'])
        call = gen['call']
        with torch.no_grad():
            if call['fn'] == 'generate':
                _, tokens = musicgen.generate(call['descriptions'], return_tokens=True)
            else:
                _, tokens = musicgen.generate_unconditional(call['num_samples'], return_tokens=True)
        assert torch.equal(tokens, gen['tokens']), name
    # And MAGNeT is unaffected by MusicGen in turn.
    magnet_io = torch.load(cases_dir / 'magnet_tiny' / 'io.pt', map_location='cpu', weights_only=False)
    gen = magnet_io['generations']['stride1']
    magnet.set_generation_params(**gen['params'])
    _, tokens = magnet.generate(gen['call']['descriptions'], return_tokens=True)
    assert torch.equal(tokens, gen['tokens'])
