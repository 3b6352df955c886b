"""EnCodec model API: round-trip lengths, renormalisation, input validation, HF wrapper, stereo, export."""
import math
import os

import omegaconf
import pytest
import torch

from audiocraft.models import CompressionModel, EncodecModel, HFEncodecCompressionModel, \
    InterleaveStereoCompressionModel, builders, loaders
from audiocraft.modules import SEANetDecoder, SEANetEncoder
from audiocraft.quantization import ResidualVectorQuantizer
from audiocraft.utils.export import export_encodec, export_pretrained_compression_model


def tiny_encodec(channels=1, renormalize=False, causal=False):
    kwargs = dict(channels=channels, dimension=8, n_filters=2, ratios=[4, 2], n_residual_layers=1,
                  causal=causal, norm='weight_norm', lstm=1)
    quantizer = ResidualVectorQuantizer(dimension=8, n_q=3, bins=16, kmeans_init=False)
    return EncodecModel(SEANetEncoder(**kwargs), SEANetDecoder(**kwargs), quantizer, frame_rate=1000,
                        sample_rate=8000, channels=channels, causal=causal, renormalize=renormalize).eval()


@pytest.fixture(scope="module")
def debug_model():
    torch.manual_seed(0)
    return CompressionModel.get_pretrained('debug_compression_model')


def test_debug_model_round_trip_lengths(debug_model):
    model = debug_model
    assert (model.sample_rate, model.frame_rate, model.channels) == (32000, 25, 1)
    assert (model.num_codebooks, model.total_codebooks, model.cardinality) == (4, 4, 400)
    hop = model.sample_rate // model.frame_rate
    for length in [hop * 3, hop * 3 + 7]:
        x = torch.randn(2, 1, length)
        with torch.no_grad():
            codes, scale = model.encode(x)
            assert scale is None
            assert codes.shape == (2, 4, math.ceil(length / hop)) and codes.dtype == torch.long
            out = model.decode(codes, scale)
            assert out.shape == (2, 1, codes.shape[-1] * hop)  # no trimming of the encoder padding
            assert model.decode_latent(codes).shape == (2, 32, codes.shape[-1])
            assert model(x).x.shape == x.shape  # forward trims back to the input length


def test_set_num_codebooks(debug_model):
    model = debug_model
    x = torch.randn(1, 1, 4000)
    try:
        model.set_num_codebooks(2)
        codes, _ = model.encode(x)
        assert codes.shape[1] == 2 and model.num_codebooks == 2
        assert model.decode(codes).shape[-1] == 1280 * codes.shape[-1]
    finally:
        model.set_num_codebooks(4)
    with pytest.raises(ValueError):
        model.set_num_codebooks(5)


def test_renormalize_scale():
    torch.manual_seed(1)
    model = tiny_encodec(channels=2, renormalize=True)
    x = torch.randn(3, 2, 80) * torch.tensor([1., 5., .1]).view(3, 1, 1)
    codes, scale = model.encode(x)
    mono = x.mean(dim=1, keepdim=True)
    expected = (1e-8 + mono.pow(2).mean(dim=2, keepdim=True).sqrt()).view(-1, 1)
    assert scale.shape == (3, 1) and torch.allclose(scale, expected)
    # Encoding the normalised audio gives the same codes; decode multiplies the scale back.
    codes_norm, _ = model.encode(x / expected.view(-1, 1, 1))
    assert torch.equal(codes, codes_norm)
    assert torch.allclose(model.decode(codes, scale), model.decode(codes) * scale.view(-1, 1, 1))
    assert torch.allclose(model(x).x, model.decoder(model.quantizer(model.encoder(x / expected.view(-1, 1, 1)),
                                                                    1000).x) * scale.view(-1, 1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="renormalize"):
        tiny_encodec(causal=True, renormalize=True)
    with pytest.raises(ValueError, match="renormalize"):
        tiny_encodec().decode(codes, scale)


def test_input_validation(debug_model):
    model = debug_model
    with pytest.raises(ValueError, match="channel"):
        model.encode(torch.randn(1, 2, 1000))
    with pytest.raises(ValueError, match="3 dims"):
        model.encode(torch.randn(1000))
    with pytest.raises(ValueError, match="3 dims"):
        model(torch.randn(1, 1000))
    with pytest.raises(ValueError, match="integer"):
        model.decode(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="at most"):
        model.decode(torch.zeros(1, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[B, K, T\]"):
        model.decode(torch.zeros(4, 3, dtype=torch.long))


def test_causal_model_streaming_encoder():
    torch.manual_seed(2)
    model = tiny_encodec(causal=True)
    x = torch.randn(1, 1, 8 * 9 + 5)
    with torch.no_grad():
        codes, _ = model.encode(x)
        parts = []
        with model.streaming():
            for chunk in x.split(11, dim=-1):
                parts.append(model.encoder(chunk))
            parts.append(model.encoder.flush())
        emb = torch.cat(parts, dim=-1)
    assert torch.equal(model.quantizer.encode(emb), codes)


def test_hf_wrapper_from_local_folder(tmp_path):
    from transformers import EncodecConfig, EncodecModel as HFEncodecModel
    torch.manual_seed(3)
    config = EncodecConfig(sampling_rate=8000, upsampling_ratios=[4, 2], num_filters=4, hidden_size=16,
                           codebook_size=1024, codebook_dim=16, num_lstm_layers=1, target_bandwidths=[10.0, 20.0])
    HFEncodecModel(config).save_pretrained(tmp_path)
    model = CompressionModel.get_pretrained(str(tmp_path))
    assert isinstance(model, HFEncodecCompressionModel)
    assert (model.sample_rate, model.frame_rate, model.cardinality) == (8000, 1000, 1024)
    assert model.possible_num_codebooks == [1, 2] and model.num_codebooks == 2 == model.total_codebooks
    x = torch.randn(2, 1, 96)
    with torch.no_grad():
        codes, scale = model.encode(x)
        assert codes.shape == (2, 2, 12) and scale is None
        assert model.decode(codes, scale).shape == (2, 1, 96)
        assert model.decode_latent(codes).shape == (2, 16, 12)
        model.set_num_codebooks(1)
        assert model.encode(x)[0].shape == (2, 1, 12)
    with pytest.raises(ValueError, match="Allowed"):
        model.set_num_codebooks(3)
    with pytest.raises(NotImplementedError):
        model(x)
    with pytest.raises(ValueError, match="channel"):
        model.encode(torch.randn(1, 2, 96))


def test_hf_hub_name_offline_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        CompressionModel.get_pretrained('facebook/encodec_32khz')
    message = str(info.value)
    assert "'facebook/encodec_32khz'" in message and 'offline' in message and 'folder' in message


@pytest.mark.parametrize("per_timestep", [False, True])
def test_interleave_stereo(per_timestep):
    torch.manual_seed(4)
    mono = tiny_encodec()
    model = InterleaveStereoCompressionModel(mono, per_timestep=per_timestep)
    assert model.channels == 2 and model.sample_rate == 8000
    assert model.frame_rate == (2000 if per_timestep else 1000)
    assert model.num_codebooks == (3 if per_timestep else 6) and model.total_codebooks == 3
    x = torch.randn(2, 2, 80)
    with torch.no_grad():
        codes, scale = model.encode(x)
        left, _ = mono.encode(x[:, :1])
        right, _ = mono.encode(x[:, 1:])
        if per_timestep:
            assert codes.shape == (2, 3, 20)
            assert torch.equal(codes[..., 0::2], left) and torch.equal(codes[..., 1::2], right)
        else:
            assert codes.shape == (2, 6, 10)
            assert torch.equal(codes[:, 0::2], left) and torch.equal(codes[:, 1::2], right)
        out = model.decode(codes, scale)
        assert out.shape == (2, 2, 80)
        assert torch.allclose(out[:, :1], mono.decode(left)) and torch.allclose(out[:, 1:], mono.decode(right))
    with pytest.raises(ValueError, match="channel"):
        model.encode(torch.randn(1, 1, 80))
    with pytest.raises(ValueError):
        InterleaveStereoCompressionModel(tiny_encodec(channels=2))
    cfg = omegaconf.OmegaConf.create({'interleave_stereo_codebooks': {'use': True, 'per_timestep': per_timestep},
                                      'compression_model_n_q': 2})
    wrapped = builders.get_wrapped_compression_model(tiny_encodec(), cfg)
    assert isinstance(wrapped, InterleaveStereoCompressionModel) and wrapped.model.num_codebooks == 2


def test_export_and_reload(tmp_path):
    torch.manual_seed(5)
    cfg = omegaconf.OmegaConf.create({
        'device': 'cpu', 'sample_rate': 8000, 'channels': 1, 'compression_model': 'encodec',
        'encodec': {'autoencoder': 'seanet', 'quantizer': 'rvq', 'sample_rate': 8000, 'channels': 1,
                    'causal': False, 'renormalize': False},
        'seanet': {'dimension': 8, 'channels': 1, 'n_filters': 2, 'ratios': [4, 2], 'n_residual_layers': 1,
                   'norm': 'weight_norm', 'lstm': 1, 'encoder': {}, 'decoder': {'trim_right_ratio': 1.0}},
        'rvq': {'n_q': 3, 'bins': 16, 'kmeans_init': False},
    })
    model = builders.get_compression_model(cfg).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = tmp_path / 'checkpoint.th'
    torch.save({'xp.cfg': cfg, 'ema': {'state': {'model': state}}, 'best_state': {'model': {}}}, ckpt)
    out = export_encodec(ckpt, tmp_path / 'exported' / loaders.COMPRESSION_FILENAME)
    assert out.exists() and sorted(os.listdir(out.parent)) == [loaders.COMPRESSION_FILENAME]
    pkg = torch.load(out, weights_only=True)
    assert pkg['exported'] is True and isinstance(pkg['xp.cfg'], str) and 'version' in pkg
    reloaded = CompressionModel.get_pretrained(str(out.parent))
    x = torch.randn(1, 1, 77)
    with torch.no_grad():
        assert torch.equal(reloaded.encode(x)[0], model.encode(x)[0])
        assert torch.allclose(reloaded(x).x, model(x).x)
    pointer = export_pretrained_compression_model('debug_compression_model', tmp_path / 'p' / 'c.bin')
    assert torch.load(pointer, weights_only=True)['pretrained'] == 'debug_compression_model'
    assert loaders.load_compression_model(pointer).cardinality == 400
