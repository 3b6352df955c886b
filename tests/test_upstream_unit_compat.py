"""Points of AudioCraft's own unit tests that code written against AudioCraft relies on.

- `audiocraft.losses.loudnessloss.TFLoudnessRatio` (and `TLoudnessRatio`) exist and behave as
  loudness ratios;
- the non-custom attention exposes `.mha` (AudioCraft's `nn.MultiheadAttention`), and casting it
  to float32 makes `attention_as_float32` compute in float32, as `test_attention_as_float32` does.
"""
import pytest
import torch
import torch.nn.functional as F

from audiocraft.losses import TFLoudnessRatio, TLoudnessRatio
from audiocraft.losses.loudnessloss import basic_loudness
from audiocraft.modules.transformer import StreamingMultiheadAttention, StreamingTransformer

pytestmark = pytest.mark.usefixtures('single_thread')


def test_loudness_losses_import_like_audiocraft():
    from audiocraft.losses.loudnessloss import TFLoudnessRatio as Imported
    assert Imported is TFLoudnessRatio


@pytest.mark.parametrize('n_bands', [0, 1, 4])
def test_tf_loudness_ratio_grows_with_the_difference(n_bands):
    torch.manual_seed(0)
    sr = 16000
    ref = 0.1 * torch.randn(2, 1, sr)
    loss = TFLoudnessRatio(sample_rate=sr, n_bands=n_bands)
    same = loss(ref, ref)
    quiet = loss(ref + 0.01 * torch.randn_like(ref), ref)
    loud = loss(ref + 0.1 * torch.randn_like(ref), ref)
    assert same < quiet < loud
    # An identical output is as quiet as the loudness measure goes (about -70 dB): far below a
    # reference of about -20 dB (less in each of several bands), for each of the 2 items.
    assert same.item() / 2 < -25
    out = (ref + 0.01 * torch.randn_like(ref)).requires_grad_()
    loss(out, ref).backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def test_t_loudness_ratio_and_input_checks():
    ref = 0.1 * torch.randn(1, 1, 16000)
    assert TLoudnessRatio()(ref, ref) < TLoudnessRatio()(2 * ref, ref)
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        TFLoudnessRatio()(torch.zeros(1, 2, 16000), torch.zeros(1, 2, 16000))
    with pytest.raises(ValueError, match="0.4 s"):
        basic_loudness(torch.zeros(1, 1, 100), 16000)


def test_basic_loudness_of_a_full_scale_sine():
    # BS.1770 reads a full-scale 1 kHz sine at -3.0 LKFS; this simplified K-weighting (a 4 dB shelf
    # around 1.5 kHz whose output is clamped to [-1, 1], as torchaudio's lfilter does) reads -3.3.
    sr = 16000
    t = torch.arange(sr) / sr
    sine = torch.sin(2 * torch.pi * 1000 * t).view(1, 1, -1)
    loudness = basic_loudness(sine, sr)
    assert loudness.shape == (1, 7)
    assert torch.allclose(loudness[:, 1:], torch.full_like(loudness[:, 1:], -3.3), atol=0.1)


def test_non_custom_attention_exposes_mha():
    attn = StreamingMultiheadAttention(16, 4)
    mha = attn.mha
    assert mha.in_proj_weight is attn.in_proj_weight and mha.out_proj is attn.out_proj
    assert set(attn.state_dict()) == {'in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias'}
    for kwargs in [{'custom': True}, {'memory_efficient': True}, {'kv_repeat': 2}]:
        assert not hasattr(StreamingMultiheadAttention(16, 4, **kwargs), 'mha')


def test_attention_as_float32_through_mha():
    # AudioCraft's test_attention_as_float32, both paths.
    torch.manual_seed(1234)
    for case in [{'custom': True}, {'custom': False}]:
        tr = StreamingTransformer(16, 4, 2, dropout=0., dtype=torch.bfloat16, **case)
        tr_float32 = StreamingTransformer(16, 4, 2, dropout=0., attention_as_float32=True,
                                          dtype=torch.bfloat16, **case)
        if not case['custom']:
            for layer in tr_float32.layers:
                layer.self_attn.mha.to(torch.float32)
            assert tr_float32.layers[0].self_attn.in_proj_weight.dtype == torch.float32
        tr_float32.load_state_dict(tr.state_dict())
        x = torch.randn(3, 12, 16, dtype=torch.bfloat16)
        with torch.no_grad():
            y, y2 = tr(x), tr_float32(x)
        assert y2.dtype == torch.bfloat16
        assert not torch.allclose(y, y2), (y - y2).norm()
        if not case['custom']:
            # float32 attention, projections included: close to a float32 model.
            tr32 = StreamingTransformer(16, 4, 2, dropout=0.).to(torch.float32)
            tr32.load_state_dict({k: v.float() for k, v in tr.state_dict().items()})
            with torch.no_grad():
                attn32 = tr32.layers[0].self_attn(x.float(), x.float(), x.float())[0]
                attn = tr_float32.layers[0].self_attn(x, x, x)[0]
            assert torch.allclose(attn.float(), attn32, atol=1e-2)


def test_cross_attention_compat():
    # AudioCraft's test_cross_attention_compat: nn.MultiheadAttention weights load, and streaming
    # one query at a time agrees with the full pass within 1e-7.
    torch.manual_seed(1234)
    num_heads = 2
    dim = num_heads * 64
    with pytest.raises(AssertionError):
        StreamingMultiheadAttention(dim, num_heads, causal=True, cross_attention=True)
    cross_attn = StreamingMultiheadAttention(dim, num_heads, dropout=0, cross_attention=True, custom=True)
    ref_attn = torch.nn.MultiheadAttention(dim, num_heads, dropout=0, batch_first=True)
    cross_attn.load_state_dict(ref_attn.state_dict())
    queries, keys, values = torch.randn(3, 7, dim), torch.randn(3, 9, dim), torch.randn(3, 9, dim)
    y = cross_attn(queries, keys, values)[0]
    y_ref = ref_attn(queries, keys, values)[0]
    assert torch.allclose(y, y_ref, atol=1e-7), (y - y_ref).norm() / y_ref.norm()
    with cross_attn.streaming():
        ys = [cross_attn(queries[:, step: step + 1], keys, values)[0] for step in range(queries.shape[1])]
    assert torch.allclose(torch.cat(ys, dim=1), y, atol=1e-7)


@pytest.mark.parametrize('dim,num_heads,src_len', [(128, 2, 9), (48, 3, 20), (64, 4, 33)])
def test_streaming_cross_attention_is_bit_exact_on_cpu(dim, num_heads, src_len):
    # Each query row is computed independently of the rows around it (fixed-size products), so
    # streaming equals the full pass exactly, with the cached source and with key padding.
    torch.manual_seed(0)
    attn = StreamingMultiheadAttention(dim, num_heads, dropout=0, cross_attention=True).eval()
    queries, src = torch.randn(2, 21, dim), torch.randn(2, src_len, dim)
    padding = torch.zeros(2, src_len, dtype=torch.bool)
    padding[1, src_len // 2:] = True
    with torch.no_grad():
        full = attn(queries, src, src, key_padding_mask=padding)[0]
        with attn.streaming():
            steps = [attn(queries[:, t:t + 1], src, src, key_padding_mask=padding)[0] for t in range(21)]
    assert torch.equal(torch.cat(steps, dim=1), full)
    # The same attention as SDPA, up to rounding.
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q, k, v = (F.linear(x, w[i * dim:(i + 1) * dim], b[i * dim:(i + 1) * dim])
               for i, x in enumerate([queries, src, src]))

    def heads(x):
        return x.view(2, -1, num_heads, dim // num_heads).transpose(1, 2)
    with torch.no_grad():
        x = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=~padding[:, None, None, :])
        reference = attn.out_proj(x.transpose(1, 2).reshape(2, 21, dim))
    assert torch.allclose(full, reference, atol=1e-5)
