"""API compatibility with AudioCraft: modules, quantization and models.

These tests use the package the way AudioCraft's own unit tests (tests/modules, tests/quantization,
tests/models) use AudioCraft: same import paths, constructor arguments, return types, and the
same exception types (AudioCraft signals bad arguments with assertions, so errors raised here
must also be catchable as AssertionError).
"""
import math
import random
from itertools import product

import numpy as np
import pytest
import torch
from torch import nn

from audiocraft.models import AudioGen, EncodecModel, MusicGen
from audiocraft.modules import (NormConv1d, NormConvTranspose1d, SEANetDecoder, SEANetEncoder, StreamableConv1d,
                                StreamableConvTranspose1d, StreamableLSTM, pad1d, unpad1d)
from audiocraft.modules.activations import CustomGLU, get_activation_fn
from audiocraft.modules.codebooks_patterns import (DelayedPatternProvider, ParallelPatternProvider, Pattern,
                                                   UnrolledPatternProvider)
from audiocraft.modules.rope import RotaryEmbedding
from audiocraft.modules.seanet import SEANetResnetBlock
from audiocraft.modules.transformer import (StreamingMultiheadAttention, StreamingTransformer,
                                            set_efficient_attention_backend)
from audiocraft.quantization import DummyQuantizer, QuantizedResult
from audiocraft.quantization.vq import ResidualVectorQuantizer


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    random.seed(1234)


# ---------------------------------------------------------------- conv / seanet / lstm

def test_pad1d_and_unpad1d():
    x = torch.randn(1, 1, 20)
    for mode in ['constant', 'reflect']:
        for (left, right) in [(0, 5), (5, 5), (0, 0), (10, 30)]:
            assert pad1d(x, (left, right), mode=mode, value=0.).shape[-1] == 20 + left + right
        for bad in [(-1, 0), (0, -1), (-1, -1)]:
            with pytest.raises(AssertionError):
                pad1d(x, bad, mode=mode, value=0.)
    assert unpad1d(x, (5, 5)).shape[-1] == 10
    assert unpad1d(x, (0, 5)).shape[-1] == 15
    assert unpad1d(x, (0, 0)).shape[-1] == 20
    with pytest.raises(AssertionError):
        unpad1d(x, (-1, 0))


def test_norm_conv_modules():
    N, C, T = 2, 2, 513
    x = torch.randn(N, C, T)
    wn = NormConv1d(C, 1, kernel_size=4, norm='weight_norm')
    gn = NormConv1d(C, 1, kernel_size=4, norm='time_group_norm')
    plain = NormConv1d(C, 1, kernel_size=4, norm='none')
    assert isinstance(wn.norm, nn.Identity) and isinstance(wn.conv, nn.Conv1d)
    assert isinstance(gn.norm, nn.GroupNorm) and isinstance(plain.norm, nn.Identity)
    for conv in [wn, gn, plain]:
        assert list(conv(x).shape) == [N, 1, T - 3]
    tr = NormConvTranspose1d(C, 1, kernel_size=4, stride=1, norm='weight_norm')
    assert isinstance(tr.convtr, nn.ConvTranspose1d)
    assert list(tr(x).shape) == [N, 1, T + 3]


def test_streamable_conv_lengths():
    N, C, T = 2, 2, 1001
    x = torch.randn(N, C, T)
    for causal, (k, s, d) in product([False, True], [(4, 1, 1), (4, 2, 1), (3, 1, 3), (10, 5, 1), (3, 2, 3)]):
        padding_total = (k - 1) * d - (s - 1)
        n_frames = (T - k + padding_total) / s + 1
        ideal_length = (math.ceil(n_frames) - 1) * s + (k - padding_total)
        conv = StreamableConv1d(C, 1, kernel_size=k, stride=s, dilation=d, causal=causal)
        assert list(conv(x).shape) == [N, 1, ideal_length // s]
    for (causal, trim), (k, s) in product([(False, 1.0), (True, 1.0), (True, 0.5), (True, 0.0)],
                                          [(4, 1), (4, 2), (3, 1), (10, 5)]):
        convtr = StreamableConvTranspose1d(C, 1, kernel_size=k, stride=s, causal=causal, trim_right_ratio=trim)
        assert list(convtr(x).shape) == [N, 1, (T - 1) * s - (k - s) + k]
    with pytest.raises(AssertionError):
        StreamableConvTranspose1d(C, 1, kernel_size=4, causal=False, trim_right_ratio=0.5)


def test_seanet_base_shapes():
    x = torch.randn(1, 1, 3200)  # 10 frames of the default 320 hop
    for kwargs in [{}, {'causal': True}, {'true_skip': False}]:
        encoder, decoder = SEANetEncoder(**kwargs), SEANetDecoder(**kwargs)
        z = encoder(x)
        assert list(z.shape) == [1, 128, 10]
        assert decoder(z).shape == x.shape
    decoder = SEANetDecoder(true_skip=False, final_activation='Tanh')
    y = decoder(torch.randn(1, 128, 10))
    assert y.shape == x.shape and y.abs().max() <= 1


def test_seanet_disable_norm_outer_blocks():
    n_disable = 2
    encoder = SEANetEncoder(n_residual_layers=1, norm='weight_norm', disable_norm_outer_blocks=n_disable)
    n_blocks = 0
    for layer in encoder.model:
        if isinstance(layer, StreamableConv1d):
            n_blocks += 1
            assert layer.conv.norm_type == ('none' if n_blocks <= n_disable else 'weight_norm')
        elif isinstance(layer, SEANetResnetBlock):
            for inner in layer.block:
                if isinstance(inner, StreamableConv1d):
                    assert inner.conv.norm_type == ('none' if n_blocks + 1 <= n_disable else 'weight_norm')
    decoder = SEANetDecoder(norm='weight_norm', disable_norm_outer_blocks=n_disable)
    assert decoder.n_blocks == len(decoder.ratios) + 2
    n_blocks = 0
    for layer in decoder.model:
        if isinstance(layer, (StreamableConv1d, StreamableConvTranspose1d)):
            n_blocks += 1
            norm_conv = layer.conv if isinstance(layer, StreamableConv1d) else layer.convtr
            assert norm_conv.norm_type == ('none' if decoder.n_blocks - n_blocks < n_disable else 'weight_norm')
    for cls in [SEANetEncoder, SEANetDecoder]:
        with pytest.raises(AssertionError):
            cls(disable_norm_outer_blocks=-1)
        with pytest.raises(AssertionError):
            cls(ratios=[1, 1, 2, 2], disable_norm_outer_blocks=7)


def test_lstm_shapes():
    B, C, T = 4, 2, 37
    for skip in [False, True]:
        lstm = StreamableLSTM(C, 3, skip=skip)
        assert lstm(torch.randn(B, C, T)).shape == torch.Size([B, C, T])


def test_activations():
    glu = CustomGLU(nn.Identity())
    x = torch.arange(12.).view(2, 6)
    y = glu(x)
    assert torch.equal(y, x[:, :3] * x[:, 3:])
    assert isinstance(get_activation_fn('swiglu'), CustomGLU)
    assert get_activation_fn('gelu') == 'gelu'


# ---------------------------------------------------------------- transformer / rope

def _stream(model: nn.Module, x: torch.Tensor, frame: int = 1) -> torch.Tensor:
    with model.streaming():
        return torch.cat([model(x[:, i:i + frame]) for i in range(0, x.shape[1], frame)], dim=1)


def test_transformer_causal_streaming():
    for context, custom in product([None, 10], [False, True]):
        tr = StreamingTransformer(16, 4, 1 if context else 2, causal=True, past_context=context,
                                  custom=custom, dropout=0.)
        steps = 20
        for k in [0, 10, 19]:
            x = torch.randn(4, steps, 16, requires_grad=True)
            tr(x)[:, k].abs().sum().backward()
            if k + 1 < steps:
                assert torch.allclose(x.grad[:, k + 1:], torch.tensor(0.))
            assert not torch.allclose(x.grad[:, :k + 1], torch.tensor(0.))
            if context is not None and k > context:
                assert torch.allclose(x.grad[:, :k - context - 1], torch.tensor(0.))
        x = torch.randn(4, steps, 16)
        y = tr(x)
        delta = torch.norm(_stream(tr, x) - y) / torch.norm(y)
        assert delta < 1e-6, delta


def test_transformer_vs_pytorch_encoder():
    for custom in [False, True]:
        tr = StreamingTransformer(16, 4, 2, causal=False, custom=custom, dropout=0., positional_scale=0.)
        layer = nn.TransformerEncoderLayer(16, 4, dropout=0., batch_first=True)
        ref = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        tr.load_state_dict(ref.state_dict())
        x = torch.randn(4, 20, 16)
        y, y_ref = tr(x), ref(x)
        assert torch.norm(y - y_ref) / torch.norm(y) < 1e-6


@torch.no_grad()
def test_streaming_state_api():
    tr = StreamingTransformer(16, 4, 2, causal=True, dropout=0.).eval()
    x = torch.randn(1, 12, 16)
    with tr.streaming():
        tr(x[:, :1])
        state = {k: v.clone() for k, v in tr.get_streaming_state().items()}
        y = tr(x[:, 1:2])
        tr.set_streaming_state(state)
        y2 = tr(x[:, 1:2])
        assert torch.allclose(y, y2)
        assert tr.flush() is None


@torch.no_grad()
def test_memory_efficient_matches_custom():
    set_efficient_attention_backend('torch')
    tr = StreamingTransformer(16, 4, 2, custom=True, dropout=0., layer_scale=0.1).eval()
    tr_me = StreamingTransformer(16, 4, 2, dropout=0., memory_efficient=True, layer_scale=0.1).eval()
    tr_me.load_state_dict(tr.state_dict())
    x = torch.randn(3, 12, 16)
    assert torch.allclose(tr(x), tr_me(x), atol=1e-6)
    causal = StreamingTransformer(16, 4, 2, dropout=0., memory_efficient=True, causal=True).eval()
    ref = causal(x)
    assert torch.norm(_stream(causal, x) - ref) / torch.norm(ref) < 1e-6


def test_cross_attention():
    for norm_first in [True, False]:
        m = StreamingTransformer(16, 4, 2, cross_attention=False, norm_first=norm_first, dropout=0., custom=True)
        m_cross = StreamingTransformer(16, 4, 2, cross_attention=True, norm_first=norm_first,
                                       dropout=0., custom=True)
        m_cross.load_state_dict(m.state_dict(), strict=False)
        x, cross_x = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
        y_ref = m(x)
        y_zero = m_cross(x, cross_attention_src=0 * cross_x)
        assert torch.allclose(y_ref, y_zero, atol=0. if norm_first else 1e-6)
        assert not torch.allclose(m_cross(x, cross_attention_src=cross_x), y_zero, atol=1e-2)
        with pytest.raises(AssertionError):
            m_cross(x)
        with pytest.raises(AssertionError):
            m(x, cross_attention_src=cross_x)


def test_cross_attention_loads_torch_mha():
    dim, heads = 128, 2
    with pytest.raises(AssertionError):
        StreamingMultiheadAttention(dim, heads, causal=True, cross_attention=True)
    cross = StreamingMultiheadAttention(dim, heads, dropout=0, cross_attention=True, custom=True)
    ref = nn.MultiheadAttention(dim, heads, dropout=0, batch_first=True)
    cross.load_state_dict(ref.state_dict())
    q, k, v = torch.randn(3, 7, dim), torch.randn(3, 9, dim), torch.randn(3, 9, dim)
    out = cross(q, k, v)
    assert isinstance(out, tuple)
    y = out[0]
    assert torch.allclose(y, ref(q, k, v)[0], atol=1e-6)
    with cross.streaming():
        y_stream = torch.cat([cross(q[:, i:i + 1], k, v)[0] for i in range(q.shape[1])], dim=1)
    assert torch.allclose(y_stream, y, atol=1e-6)


def test_kv_repeat_and_qk_layer_norm():
    dim = 8 * 16
    with pytest.raises(AssertionError):
        StreamingMultiheadAttention(dim, 8, causal=True, kv_repeat=4, cross_attention=True)
    mha = StreamingMultiheadAttention(dim, 8, causal=True, kv_repeat=4, custom=True)
    x = torch.randn(2, 18, dim)
    assert mha(x, x, x)[0].shape == x.shape
    x = torch.randn(3, 12, 16)
    tr = StreamingTransformer(16, 4, 2, custom=True, dropout=0., qk_layer_norm=True, bias_attn=False)
    assert tr(x).shape == x.shape
    tr = StreamingTransformer(16, 4, 2, custom=True, dropout=0., qk_layer_norm=True, cross_attention=True)
    assert tr(x, cross_attention_src=torch.randn(3, 21, 16)).shape == x.shape


def test_attention_as_float32_changes_bf16_result():
    tr = StreamingTransformer(16, 4, 2, dropout=0., dtype=torch.bfloat16, custom=True)
    tr32 = StreamingTransformer(16, 4, 2, dropout=0., attention_as_float32=True, dtype=torch.bfloat16, custom=True)
    tr32.load_state_dict(tr.state_dict())
    x = torch.randn(3, 12, 16, dtype=torch.bfloat16)
    with torch.no_grad():
        assert not torch.allclose(tr(x), tr32(x))


def test_rope():
    B, T, H, C = 2, 15, 4, 32
    rope = RotaryEmbedding(dim=C)
    xq, xk = torch.rand(B, T, H, C), torch.rand(B, T, H, C)
    q_out, k_out = rope.rotate_qk(xq, xk, start=7)
    assert list(q_out.shape) == [B, T, H, C] and list(k_out.shape) == [B, T, H, C]
    # Rotations keep norms, and a zero scale disables the embedding.
    assert torch.allclose(q_out.norm(dim=-1), xq.norm(dim=-1), atol=1e-5)
    q_id, k_id = RotaryEmbedding(dim=C, xpos=True, scale=0.0).rotate_qk(xq, xk, start=7)
    assert torch.allclose(q_id, xq) and torch.allclose(k_id, xk)
    for dtype in [torch.float32, torch.float64]:
        out, _ = RotaryEmbedding(dim=C, dtype=dtype).rotate_qk(xq.half(), xk.half())
        assert out.dtype == torch.float16
    q_x, _ = RotaryEmbedding(dim=C, xpos=True).rotate_qk(xq, xk, start=7)
    assert q_x.shape == xq.shape


@torch.no_grad()
def test_transformer_with_rope_streaming():
    tr = StreamingTransformer(16, 4, 2, causal=True, dropout=0., custom=True, positional_embedding='rope').eval()
    x = torch.randn(3, 12, 16)
    ref = tr(x)
    assert torch.allclose(_stream(tr, x), ref, atol=1e-5)
    tr = StreamingTransformer(16, 4, 1, causal=True, dropout=0., past_context=5, positional_embedding='rope').eval()
    ref = tr(x)
    assert torch.allclose(_stream(tr, x), ref, atol=1e-5)


# ---------------------------------------------------------------- codebook patterns

@pytest.mark.parametrize("n_q", [1, 4])
@pytest.mark.parametrize("timesteps", [0, 1, 16])
def test_pattern_layouts(n_q: int, timesteps: int):
    parallel = ParallelPatternProvider(n_q).get_pattern(timesteps)
    assert len(parallel.layout) == timesteps + 1 and parallel.max_delay == 0
    for s, v in enumerate(parallel.layout):
        assert [c.q for c in v] == list(range(len(v)))
        assert all(c.t == s - 1 for c in v)
    for delays in [list(range(n_q)), [0] + [1] * (n_q - 1), [0] + [4] * (n_q - 1)]:
        pattern = DelayedPatternProvider(n_q, delays).get_pattern(timesteps)
        assert len(pattern.layout) == timesteps + max(delays) + 1
        assert pattern.max_delay == max(delays)
        assert len(pattern.valid_layout) == len(pattern.layout) - pattern.max_delay
    for s, v in enumerate(DelayedPatternProvider(n_q).get_pattern(timesteps).layout):
        for i, code in enumerate(v):
            assert i == code.q and code.t == max(0, s - code.q - 1)
    flattening, delays = [0] + [1] * (n_q - 1), [0] + [5] * (n_q - 1)
    unrolled = UnrolledPatternProvider(n_q, flattening, delays)
    pattern = unrolled.get_pattern(timesteps)
    assert len(pattern.layout) == unrolled.num_virtual_steps(timesteps) + max(delays)
    assert pattern.max_delay == max(delays)


def _ref_build(z: torch.Tensor, pattern: Pattern, special: int) -> torch.Tensor:
    bs, n_q, T = z.shape
    out = torch.full((bs, n_q, len(pattern.layout)), special, dtype=torch.long)
    for s, v in enumerate(pattern.layout):
        for (t, q) in v:
            if t < T:
                out[:, q, s] = z[:, q, t]
    return out


@pytest.mark.parametrize("n_q", [1, 4])
def test_pattern_build_and_revert(n_q: int):
    bs, card, timesteps = 2, 16, 12
    providers = [ParallelPatternProvider(n_q), DelayedPatternProvider(n_q, list(range(n_q))),
                 UnrolledPatternProvider(n_q, flattening=list(range(n_q)), delays=[0] * n_q),
                 UnrolledPatternProvider(n_q, flattening=[0] + [1] * (n_q - 1), delays=[0] + [5] * (n_q - 1))]
    for provider in providers:
        pattern = provider.get_pattern(timesteps)
        assert pattern.n_q == n_q and pattern.timesteps == timesteps
        z = torch.randint(0, card, (bs, n_q, timesteps))
        seq, indexes, mask = pattern.build_pattern_sequence(z, card)
        assert torch.equal(seq, _ref_build(z, pattern, card))
        assert mask.dtype == torch.bool and indexes.shape[-1] == seq.shape[-1]
        out, _, _ = pattern.revert_pattern_sequence(seq, card)
        assert torch.equal(out, z)
        logits = torch.randn(bs, card, n_q, seq.shape[-1])
        out_logits, _, out_mask = pattern.revert_pattern_logits(logits, float('nan'))
        assert out_logits.shape == torch.Size([bs, card, n_q, timesteps])
        with pytest.raises(AssertionError):
            pattern.build_pattern_sequence(torch.randint(0, card, (bs, n_q, timesteps + 1)), card)
        with pytest.raises(AssertionError):
            pattern.build_pattern_sequence(torch.randint(0, card, (bs, n_q + 1, timesteps)), card)


# ---------------------------------------------------------------- quantization / encodec

def test_rvq_result():
    x = torch.randn(1, 16, 256)
    vq = ResidualVectorQuantizer(n_q=8, dimension=16, bins=8)
    res = vq(x, 1.)
    assert isinstance(res, QuantizedResult)
    assert res.x.shape == torch.Size([1, 16, 256])
    assert res.codes.shape == torch.Size([1, 8, 256]) and res.codes.dtype == torch.long
    assert res.penalty is not None and res.bandwidth.numel() == 1
    assert vq.total_codebooks == 8 and vq.cardinality == 8
    vq.set_num_codebooks(4)
    assert vq.num_codebooks == 4 and vq.encode(x).shape == torch.Size([1, 4, 256])
    assert vq.decode(vq.encode(x)).shape == x.shape


def _encodec(channels: int, **kwargs) -> EncodecModel:
    ratios = [5, 4, 3, 2]
    enc = SEANetEncoder(channels=channels, dimension=5, n_filters=3, n_residual_layers=1, ratios=ratios)
    dec = SEANetDecoder(channels=channels, dimension=5, n_filters=3, n_residual_layers=1, ratios=ratios)
    return EncodecModel(enc, dec, DummyQuantizer(), frame_rate=np.prod(ratios), sample_rate=24_000,
                        channels=channels, **kwargs)


def test_encodec_model_with_dummy_quantizer():
    model = _encodec(1)
    renorm = _encodec(1, renormalize=True)
    for length in [1, 119, 121, 2345]:
        x = torch.randn(2, 1, length)
        res = model(x)
        assert res.x.shape == x.shape
        codes, scale = model.encode(x)
        assert scale is None and codes.shape[:2] == (2, 1)
        assert model.decode(codes, scale).shape[-1] >= length
        _, scale = renorm.encode(x)
        assert scale is not None and scale.shape == (2, 1)


# ---------------------------------------------------------------- generation models

def _check_gen_model(model, sample_rate: int) -> None:
    assert model.frame_rate == 25 and model.sample_rate == sample_rate and model.audio_channels == 1
    model.set_generation_params(duration=0.4, extend_stride=2.)
    n = int(0.4 * sample_rate)
    assert list(model.generate_unconditional(2).shape) == [2, 1, n]
    assert list(model.generate(['youpi', 'lapin dort']).shape) == [2, 1, n]
    prompt = torch.randn(2, 1, sample_rate // 5)
    assert list(model.generate_continuation(prompt, sample_rate).shape) == [2, 1, n]
    wav, tokens = model.generate_continuation(prompt, sample_rate, ['youpi', 'lapin dort'], return_tokens=True)
    assert list(wav.shape) == [2, 1, n] and list(tokens.shape) == [2, 4, 10]
    with pytest.raises(AssertionError):
        model.generate_continuation(prompt, sample_rate, ['youpi', 'lapin dort', 'one too many'])
    model.max_duration = 0.6
    model.set_generation_params(duration=0.8, extend_stride=0.4)
    assert list(model.generate(['youpi']).shape) == [1, 1, int(0.8 * sample_rate)]


def test_musicgen_debug():
    mg = MusicGen.get_pretrained(name='debug', device='cpu')
    assert mg.name == 'debug' and mg.device.type == 'cpu'
    _check_gen_model(mg, 32000)
    mg.max_duration = 30.
    mg.set_generation_params(duration=0.4, extend_stride=2., two_step_cfg=True)
    assert list(mg.generate(['youpi', 'lapin dort']).shape) == [2, 1, int(0.4 * 32000)]
    mg.set_generation_params(duration=0.4, use_sampling=True, top_k=0, top_p=0.9, temperature=0.5,
                             cfg_coef=2.)
    assert mg.generation_params['top_p'] == 0.9 and mg.duration == 0.4
    steps = []
    mg.set_custom_progress_callback(lambda done, total: steps.append((done, total)))
    mg.generate(['x'], progress=True)
    assert steps and steps[-1][0] == steps[-1][1]


def test_audiogen_debug():
    _check_gen_model(AudioGen.get_pretrained(name='debug', device='cpu'), 16000)
