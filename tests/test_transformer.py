"""Tests of the streaming transformer: numerics, masks, streaming cache, options and errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from audiocraft.modules.rope import RotaryEmbedding
from audiocraft.modules.transformer import (LayerScale, StreamingMultiheadAttention, StreamingTransformer,
                                            StreamingTransformerLayer, set_efficient_attention_backend)


pytestmark = pytest.mark.usefixtures('single_thread')


def _naive_attention(attn: StreamingMultiheadAttention, x: torch.Tensor, causal: bool,
                     src: torch.Tensor = None) -> torch.Tensor:
    """Attention written out by hand from AudioCraft's parameter layout: [q; k; v] rows, heads as (h d)."""
    E, H = attn.embed_dim, attn.num_heads
    D = E // H
    W = attn.in_proj_weight
    src = x if src is None else src
    q, k, v = x @ W[:E].T, src @ W[E:2 * E].T, src @ W[2 * E:].T
    B, T, S = x.shape[0], x.shape[1], src.shape[1]
    q, k, v = [t.reshape(B, -1, H, D).transpose(1, 2) for t in (q, k, v)]
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    if causal:
        scores = scores.masked_fill(~torch.ones(T, S, dtype=torch.bool).tril(), float('-inf'))
    out = torch.softmax(scores, dim=-1) @ v
    return attn.out_proj(out.transpose(1, 2).reshape(B, T, E))


def test_attention_matches_handwritten_formula():
    torch.manual_seed(0)
    attn = StreamingMultiheadAttention(32, 4, causal=True, bias=False, memory_efficient=True).eval()
    x = torch.randn(2, 9, 32)
    assert torch.allclose(attn(x, x, x)[0], _naive_attention(attn, x, causal=True), atol=1e-5)
    cross = StreamingMultiheadAttention(32, 4, cross_attention=True, bias=False).eval()
    src = torch.randn(2, 5, 32)
    assert torch.allclose(cross(x, src, src)[0], _naive_attention(cross, x, False, src), atol=1e-5)


def test_parameter_names_follow_audiocraft_layout():
    layer = StreamingTransformerLayer(16, 2, 64, bias_ff=False, bias_attn=False, cross_attention=True,
                                      norm_first=True)
    keys = set(layer.state_dict().keys())
    assert keys == {
        'self_attn.in_proj_weight', 'self_attn.out_proj.weight', 'linear1.weight', 'linear2.weight',
        'norm1.weight', 'norm1.bias', 'norm2.weight', 'norm2.bias',
        'cross_attention.in_proj_weight', 'cross_attention.out_proj.weight',
        'norm_cross.weight', 'norm_cross.bias'}
    assert layer.self_attn.in_proj_weight.shape == (48, 16)
    with_bias = StreamingMultiheadAttention(16, 2, bias=True)
    assert {'in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias'} == set(with_bias.state_dict())


def test_loads_nn_multihead_attention_keys():
    """Checkpoints of AudioCraft's non-custom attention store torch MHA keys under 'mha.'."""
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    state = {'mha.' + k: v for k, v in mha.state_dict().items()}
    attn = StreamingMultiheadAttention(16, 2, bias=True)
    attn.load_state_dict(state)
    x = torch.randn(1, 4, 16)
    assert torch.allclose(attn(x, x, x)[0], mha(x, x, x, need_weights=False)[0], atol=1e-5)


def test_sin_positional_embedding_formula():
    tr = StreamingTransformer(8, 2, 0, positional_scale=0.5, max_period=100)
    x = torch.zeros(1, 5, 8)
    pos = torch.arange(5.).view(1, -1, 1)
    phase = pos / 100 ** (torch.arange(4.) / 3)
    expected = 0.5 * torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)
    assert torch.allclose(tr(x), expected, atol=1e-6)


@pytest.mark.parametrize("positional_embedding", ['sin', 'rope', 'sin_rope'])
@pytest.mark.parametrize("past_context", [None, 4])
@pytest.mark.parametrize("cross_attention,kv_repeat", [(False, 1), (True, 1), (False, 2)])
def test_streaming_matches_full_sequence(positional_embedding, past_context, cross_attention, kv_repeat):
    torch.manual_seed(1)
    tr = StreamingTransformer(32, 4, 2, dim_feedforward=64, dropout=0., causal=True, past_context=past_context,
                              cross_attention=cross_attention, positional_embedding=positional_embedding,
                              norm_first=True, kv_repeat=kv_repeat, activation='gelu').eval()
    x = torch.randn(2, 17, 32)
    kwargs = {'cross_attention_src': torch.randn(2, 6, 32)} if cross_attention else {}
    full = tr(x, **kwargs)
    with tr.streaming():
        chunks = [tr(x[:, :5], **kwargs)]  # a multi-step first chunk, then uneven chunks
        for start, end in [(5, 6), (6, 9), (9, 10), (10, 17)]:
            chunks.append(tr(x[:, start:end], **kwargs))
    assert torch.allclose(full, torch.cat(chunks, dim=1), atol=1e-5)


def test_causality_future_does_not_leak():
    torch.manual_seed(2)
    tr = StreamingTransformer(16, 2, 2, dim_feedforward=32, dropout=0., causal=True).eval()
    x = torch.randn(1, 10, 16)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 16)
    assert torch.allclose(tr(x)[:, :6], tr(y)[:, :6], atol=1e-6)
    assert not torch.allclose(tr(x)[:, 6:], tr(y)[:, 6:], atol=1e-3)


def test_kv_cache_grows_past_preallocation_and_state_roundtrip():
    torch.manual_seed(3)
    tr = StreamingTransformer(8, 2, 1, dim_feedforward=16, dropout=0., causal=True).eval()
    x = torch.randn(1, 300, 8)  # longer than the initial cache capacity
    full = tr(x)
    with tr.streaming():
        outs = [tr(x[:, t:t + 1]) for t in range(290)]
        snapshot = tr.get_streaming_state()
        branch = tr(torch.randn(1, 5, 8))  # a different continuation, then roll back
        assert branch.shape == (1, 5, 8)
        tr.set_streaming_state(snapshot)
        outs.append(tr(x[:, 290:]))
    assert torch.allclose(full, torch.cat(outs, dim=1), atol=1e-5)


def test_src_mask_boolean_float_and_padded():
    torch.manual_seed(4)
    tr = StreamingTransformer(16, 2, 2, dim_feedforward=32, dropout=0., causal=False).eval()
    x = torch.randn(2, 6, 16)
    pos = torch.arange(6)
    band = (pos[:, None] - pos[None, :]).abs() <= 1
    additive = torch.zeros(6, 6).masked_fill(~band, float('-inf'))
    out_bool = tr(x, src_mask=band)
    out_float = tr(x, src_mask=additive)
    padded = torch.zeros(1, 2, 8, 8)  # MAGNeT-style [1, H, L8, L8] mask padded to a multiple of 8
    padded[..., :6, :6] = additive
    out_padded = tr(x, src_mask=padded)
    assert torch.allclose(out_bool, out_float, atol=1e-6)
    assert torch.allclose(out_bool, out_padded, atol=1e-6)
    # Only the band matters: changing a far away step leaves step 0 alone after one layer.
    one = StreamingTransformer(16, 2, 1, dim_feedforward=32, dropout=0.).eval()
    y = x.clone()
    y[:, 4] += 1
    assert torch.allclose(one(x, src_mask=band)[:, 0], one(y, src_mask=band)[:, 0], atol=1e-6)
    assert not torch.allclose(one(x)[:, 0], one(y)[:, 0], atol=1e-4)


def test_causal_with_src_mask_and_key_padding():
    torch.manual_seed(5)
    attn = StreamingMultiheadAttention(16, 2, causal=True).eval()
    x = torch.randn(1, 5, 16)
    everything = torch.ones(5, 5, dtype=torch.bool)
    assert torch.allclose(attn(x, x, x, attn_mask=everything)[0], attn(x, x, x)[0], atol=1e-6)
    no_pad = torch.zeros(1, 5, dtype=torch.bool)
    assert torch.allclose(attn(x, x, x, key_padding_mask=no_pad)[0], attn(x, x, x)[0], atol=1e-6)


@pytest.mark.parametrize("activation", ['relu', 'gelu', 'swiglu', 'geglu', 'reglu'])
def test_options_activations_layer_scale_post_norm(activation):
    torch.manual_seed(6)
    tr = StreamingTransformer(16, 2, 2, dim_feedforward=32, activation=activation, layer_scale=0.1,
                              norm_first=False, cross_attention=True, qk_layer_norm=True,
                              qk_layer_norm_cross=True, bias_ff=True, bias_attn=True, causal=True).eval()
    assert isinstance(tr.layers[0].layer_scale_1, LayerScale)
    out = tr(torch.randn(2, 4, 16), cross_attention_src=torch.randn(2, 3, 16))
    assert out.shape == (2, 4, 16) and torch.isfinite(out).all()


def test_torch_checkpointing_gives_same_gradients():
    torch.manual_seed(7)
    ref = StreamingTransformer(16, 2, 2, dim_feedforward=32, dropout=0., causal=True)
    ckpt = StreamingTransformer(16, 2, 2, dim_feedforward=32, dropout=0., causal=True, checkpointing='torch')
    ckpt.load_state_dict(ref.state_dict())
    x = torch.randn(2, 5, 16)
    ref(x).pow(2).sum().backward()
    ckpt(x).pow(2).sum().backward()
    for (name, a), (_, b) in zip(ref.named_parameters(), ckpt.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_rope_rotation_preserves_norm_and_relative_positions():
    rope = RotaryEmbedding(8)
    q = torch.randn(1, 2, 6, 8)
    rotated = rope.rotate(q, start=3, time_dim=2)
    assert torch.allclose(rotated.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    # Scores depend only on relative positions: shifting both by the same offset changes nothing.
    k = torch.randn(1, 2, 6, 8)
    qa, ka = rope.rotate_qk(q, k, start=0, time_dim=2)
    qb, kb = rope.rotate_qk(q, k, start=11, time_dim=2)
    assert torch.allclose(qa @ ka.transpose(-1, -2), qb @ kb.transpose(-1, -2), atol=1e-4)


def test_rope_is_a_persistent_buffer():
    tr = StreamingTransformer(16, 2, 1, positional_embedding='rope')
    assert 'rope.frequencies' in tr.state_dict()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="positional_embedding"):
        StreamingTransformer(16, 2, 1, positional_embedding='alibi')
    with pytest.raises(ValueError, match="divisible"):
        StreamingTransformer(15, 2, 1)
    with pytest.raises(ValueError, match="checkpointing"):
        StreamingTransformer(16, 2, 1, checkpointing='magic')
    with pytest.raises(ValueError, match="Causal cannot work with cross attention"):
        StreamingMultiheadAttention(16, 2, causal=True, cross_attention=True)
    with pytest.raises(ValueError, match="past_context"):
        StreamingMultiheadAttention(16, 2, past_context=3)
    with pytest.raises(ValueError, match="Unknown activation"):
        StreamingTransformerLayer(16, 2, 32, activation='nope')
    with pytest.raises(TypeError, match="Unexpected arguments"):
        StreamingTransformerLayer(16, 2, 32, not_an_option=1)
    with pytest.raises(ValueError, match="backend"):
        set_efficient_attention_backend('flash-magic')
    set_efficient_attention_backend('xformers')  # accepted, changes nothing
    layer = StreamingTransformerLayer(16, 2, 32, cross_attention=True)
    with pytest.raises(ValueError, match="cross_attention_src is required"):
        layer(torch.randn(1, 2, 16))
    bidirectional = StreamingTransformer(16, 2, 1, causal=False).eval()
    with bidirectional.streaming(), pytest.raises(RuntimeError, match="Streaming is only available"):
        bidirectional(torch.randn(1, 2, 16))


def test_attention_as_float32_under_half_inputs():
    torch.manual_seed(8)
    attn = StreamingMultiheadAttention(16, 2, causal=True, attention_as_float32=True).eval()
    x = torch.randn(1, 4, 16)
    ref = attn(x, x, x)[0]
    attn_half = attn.to(torch.bfloat16)
    xh = x.to(torch.bfloat16)
    out = attn_half(xh, xh, xh)[0]
    assert out.dtype == torch.bfloat16
    assert F.mse_loss(out.float(), ref) < 1e-3


def test_cache_is_allocated_once_at_its_capacity():
    torch.manual_seed(9)
    tr = StreamingTransformer(8, 2, 1, dim_feedforward=16, dropout=0., causal=True).eval()
    x = torch.randn(1, 12, 8)
    full = tr(x)
    with tr.streaming():
        tr.start_cache(12, 'cpu')
        outs = [tr(x[:, :4])]
        cache = tr.layers[0].self_attn._streaming_state['k_cache']
        assert cache.shape[2] == 12
        outs += [tr(x[:, t:t + 1]) for t in range(4, 12)]
        assert tr.layers[0].self_attn._streaming_state['k_cache'] is cache
    assert torch.allclose(full, torch.cat(outs, dim=1), atol=1e-5)
    with pytest.raises(RuntimeError, match="streaming"):
        tr.start_cache(3, 'cpu')
