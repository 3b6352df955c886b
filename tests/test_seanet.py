"""SEANet encoder/decoder: shapes, released key layout, causal streaming == whole signal."""
import pytest
import torch

from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder, SEANetResnetBlock

from test_conv import stream


def tiny(cls, **kwargs):
    args = dict(channels=1, dimension=8, n_filters=2, ratios=[4, 2], n_residual_layers=1, norm='weight_norm',
                pad_mode='constant', lstm=1)
    args.update(kwargs)
    return cls(**args)


def test_shapes_and_hop_length():
    enc, dec = tiny(SEANetEncoder), tiny(SEANetDecoder)
    assert enc.hop_length == dec.hop_length == 8
    x = torch.randn(2, 1, 8 * 7 + 3)
    z = enc(x)
    assert z.shape == (2, 8, 8)
    assert dec(z).shape == (2, 1, 64)
    assert enc.ratios == [2, 4] and dec.ratios == [4, 2]


def test_released_key_layout():
    # The 32 kHz EnCodec layout: ratios 8,5,4,4, one residual layer, LSTM, weight norm.
    enc = SEANetEncoder(dimension=16, n_filters=4, n_residual_layers=1, ratios=[8, 5, 4, 4], lstm=1,
                        norm='weight_norm')
    dec = SEANetDecoder(dimension=16, n_filters=4, n_residual_layers=1, ratios=[8, 5, 4, 4], lstm=1,
                        norm='weight_norm')
    enc_keys = enc.state_dict()
    assert enc_keys['model.0.conv.conv.weight_v'].shape == (4, 1, 7)
    assert enc_keys['model.1.block.1.conv.conv.weight_v'].shape == (2, 4, 3)
    assert enc_keys['model.3.conv.conv.weight_v'].shape == (8, 4, 8)
    assert enc_keys['model.12.conv.conv.weight_v'].shape == (64, 32, 16)
    assert enc_keys['model.13.lstm.weight_ih_l0'].shape == (256, 64)
    assert enc_keys['model.15.conv.conv.weight_v'].shape == (16, 64, 7)
    dec_keys = dec.state_dict()
    assert dec_keys['model.1.lstm.weight_hh_l0'].shape == (256, 64)
    assert dec_keys['model.3.convtr.convtr.weight_v'].shape == (64, 32, 16)
    assert dec_keys['model.13.block.3.conv.conv.weight_v'].shape == (4, 2, 1)
    assert dec_keys['model.15.conv.conv.weight_g'].shape == (1, 1, 1)
    assert len(enc_keys) == len(dec_keys) == 46


def test_options():
    enc = tiny(SEANetEncoder, disable_norm_outer_blocks=1, true_skip=False, lstm=0)
    keys = enc.state_dict()
    assert 'model.0.conv.conv.weight' in keys  # no weight norm on the outer block
    assert 'model.1.shortcut.conv.conv.weight_v' in keys
    dec = tiny(SEANetDecoder, final_activation='Tanh')
    assert isinstance(dec.model[-1], torch.nn.Tanh)
    assert dec(torch.randn(1, 8, 3)).abs().max() <= 1
    with pytest.raises(ValueError):
        tiny(SEANetEncoder, disable_norm_outer_blocks=9)
    with pytest.raises(ValueError):
        SEANetResnetBlock(4, kernel_sizes=[3, 1], dilations=[1])
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        tiny(SEANetEncoder)(torch.randn(1, 2, 100))
    with pytest.raises(ValueError, match="latents"):
        tiny(SEANetDecoder)(torch.randn(1, 7, 10))


@pytest.mark.parametrize("pad_mode", ['constant', 'reflect'])
def test_causal_encoder_streaming_equals_whole(pad_mode):
    torch.manual_seed(0)
    enc = tiny(SEANetEncoder, causal=True, pad_mode=pad_mode, n_residual_layers=2).eval()
    x = torch.randn(2, 1, 8 * 13 + 3)
    with torch.no_grad():
        whole = enc(x)
        for sizes in [[5, 17, 8], [8], [1, 2, 3, 50]]:
            streamed = stream(enc, x, sizes)
            assert streamed.shape == whole.shape
            assert torch.allclose(streamed, whole, atol=1e-5)


@pytest.mark.parametrize("trim_right_ratio", [1.0, 0.5])
def test_causal_decoder_streaming_equals_whole(trim_right_ratio):
    torch.manual_seed(0)
    dec = tiny(SEANetDecoder, causal=True, trim_right_ratio=trim_right_ratio).eval()
    z = torch.randn(2, 8, 11)
    with torch.no_grad():
        whole = dec(z)
        streamed = stream(dec, z, [1, 4, 2])
    assert streamed.shape == whole.shape == (2, 1, 88)
    assert torch.allclose(streamed, whole, atol=1e-5)
