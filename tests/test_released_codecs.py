"""Released codecs: the golden case `encodec_32khz_mono`, and the 32/16 kHz configs against the
key/shape inventory of the released checkpoints."""
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from audiocraft.models import CompressionModel, builders, loaders

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / 'config')
pytestmark = pytest.mark.filterwarnings("ignore:(?s).*version_base")


@pytest.fixture(scope="module")
def case(cases_dir):
    path = cases_dir / 'encodec_32khz_mono'
    io = torch.load(path / 'io.pt', map_location='cpu', weights_only=False)
    model = CompressionModel.get_pretrained(str(path), device='cpu').eval()
    return model, io


def test_case_meta_and_codes(case):
    model, io = case
    assert (model.sample_rate, model.frame_rate, model.channels, model.num_codebooks, model.cardinality) == \
        (io['sample_rate'], io['frame_rate'], io['channels'], io['num_codebooks'], io['cardinality'])
    with torch.no_grad():
        codes, scale = model.encode(io['wav'])
        assert torch.equal(codes, io['codes'])
        assert scale is None and io['scale'] is None
        codes_odd, scale_odd = model.encode(io['wav_odd'])
        assert torch.equal(codes_odd, io['codes_odd'])


def test_case_decode_paths(case):
    model, io = case
    with torch.no_grad():
        assert (model.decode(io['codes'], io['scale']) - io['decoded']).abs().max() <= 1e-4
        assert (model.decode_latent(io['codes']) - io['latent']).abs().max() <= 1e-4
        assert (model(io['wav']).x - io['forward']).abs().max() <= 1e-4
        decoded_odd = model.decode(io['codes_odd'], None)
        assert decoded_odd.shape == io['decoded_odd'].shape == (1, 1, 10880)  # 17 frames * 640
        assert (decoded_odd - io['decoded_odd']).abs().max() <= 1e-4


def _compose(solver, overrides=()):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base='1.1'):
        return compose(config_name='config', overrides=[f'solver={solver}', 'device=cpu', *overrides])


def test_case_config_is_the_musicgen_codec_config(cases_dir):
    # The case checkpoint's xp.cfg is encodec_musicgen_32khz with tiny widths.
    pkg = loaders.load_compression_model_ckpt(cases_dir / 'encodec_32khz_mono')
    expected = OmegaConf.to_container(OmegaConf.create(pkg['xp.cfg']), resolve=True)
    cfg = _compose('compression/encodec_musicgen_32khz',
                   ['seanet.dimension=16', 'seanet.n_filters=4', 'seanet.lstm=1', 'rvq.bins=64'])
    got = OmegaConf.to_container(cfg, resolve=True)
    for cfg_dict in (expected, got):
        cfg_dict.pop('dora')
    assert got == expected


@pytest.mark.parametrize("solver,released", [
    ('compression/encodec_musicgen_32khz', 'encodec 32 kHz (musicgen, magnet: compression_state_dict.bin)'),
    ('compression/encodec_audiogen_16khz', 'encodec 16 kHz (audiogen, audio-magnet: compression_state_dict.bin)'),
])
def test_released_codec_layout(reference_dir, solver, released):
    inventory = json.loads((reference_dir / 'released_models.json').read_text())['compression'][released]
    cfg = _compose(solver)
    with torch.device('meta'):
        model = builders.get_compression_model(cfg)
    state = model.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == inventory['state_dict']
    assert sum(p.numel() for p in model.parameters()) == inventory['params']
    assert (model.frame_rate, model.num_codebooks, model.cardinality) == (50, 4, 2048)
