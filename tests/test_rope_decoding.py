"""Rotary positions in step-by-step (cached) generation, checked against full passes.

Every logit the cached generation samples from is recomputed by a full, non-streaming pass
over the sequence so far, with the rotary positions made explicit:

- `memory_efficient=False`: true positions, so cached decoding equals the plain full pass;
- `memory_efficient=True`: AudioCraft's cached positions (`StreamingMultiheadAttention._rope_start`):
  the first chunk of each `lm.generate` call at its true positions, every later step at position
  `num_kv_heads`. The golden case `musicgen_variants_tiny` pins this behaviour to AudioCraft's.

Covered: 'rope', 'sin_rope', xPos, kv_repeat, prepend and cross-attention fusers, with and without
a prompt, the static cache, and windowed extension (each window is its own `lm.generate` call).
"""
import typing as tp

import pytest
import torch

from audiocraft.models.builders import get_debug_compression_model
from audiocraft.models.decoding import cfg_logits
from audiocraft.models.lm import LMModel
from audiocraft.models.musicgen import MusicGen
from audiocraft.modules.attention import StreamingMultiheadAttention
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
from audiocraft.modules.conditioners import (ClassifierFreeGuidanceDropout, ConditionFuser, ConditioningAttributes,
                                             ConditioningProvider, LUTConditioner,
                                             WhiteSpaceTokenizer)
from audiocraft.modules.rope import RotaryEmbedding

pytestmark = pytest.mark.usefixtures('single_thread')

CFG_COEF = 3.0


def _lm(fuser: str = 'prepend', n_q: int = 3, card: int = 24, **kwargs: tp.Any) -> LMModel:
    torch.manual_seed(0)
    dim = 16
    description = LUTConditioner(n_bins=32, dim=8, output_dim=dim, tokenizer='noop')
    description.tokenizer = WhiteSpaceTokenizer(32, lemma=False, stopwords=False)  # no spaCy model needed
    fuser_module = ConditionFuser({'cross': [], 'prepend': [], 'sum': [], 'input_interpolate': [],
                                   fuser: ['description']})
    params: tp.Dict[str, tp.Any] = dict(n_q=n_q, card=card, dim=dim, num_heads=4, num_layers=2, causal=True,
                                        weight_init='gaussian', cross_attention=fuser == 'cross',
                                        positional_embedding='rope')
    params.update(kwargs)
    return LMModel(DelayedPatternProvider(n_q), ConditioningProvider({'description': description}),
                   fuser_module, **params).eval()


def _rotate_at(rope: RotaryEmbedding, x: torch.Tensor, positions: tp.List[int], invert_decay: bool) -> torch.Tensor:
    """Rotate x [B, H, T, D] with an explicit position per time step."""
    return torch.cat([rope.rotate(x[:, :, i:i + 1], start=pos, time_dim=2, invert_decay=invert_decay)
                      for i, pos in enumerate(positions)], dim=2)


class _ExplicitPositions:
    """While active, every attention of `lm` rotates its (full-pass) queries and keys at `positions`."""

    def __init__(self, lm: LMModel, positions: tp.List[int]):
        self.rope = lm.transformer.rope
        self.positions = positions

    def rotate_qk(self, query, key, start=0, time_dim=1):
        assert time_dim == 2 and start == 0 and query.shape[2] == key.shape[2] == len(self.positions)
        return (_rotate_at(self.rope, query, self.positions, False),
                _rotate_at(self.rope, key, self.positions, True))

    def __enter__(self):
        self.rope.rotate_qk = self.rotate_qk  # instance attribute: every layer shares this rope
        return self

    def __exit__(self, *exc):
        del self.rope.rotate_qk


def _expected_positions(lm: LMModel, first_chunk: int, length: int) -> tp.List[int]:
    """Rotary positions that cached decoding gives `length` positions fed as a first chunk of
    `first_chunk` positions, then one step at a time."""
    attn = lm.transformer.layers[0].self_attn
    if not attn.memory_efficient:
        return list(range(length))
    kv_heads = attn.num_heads // attn.kv_repeat
    return list(range(first_chunk)) + [kv_heads] * (length - first_chunk)


def _check_generate_against_full_pass(lm: LMModel, prompt: tp.Optional[torch.Tensor],
                                      conditions: tp.List[ConditioningAttributes], max_gen_len: int,
                                      num_samples: tp.Optional[int] = None,
                                      generate: tp.Optional[tp.Callable[..., torch.Tensor]] = None) -> torch.Tensor:
    """Generate greedily, recording the logits of every step; recompute each with a full pass."""
    recorded: tp.List[torch.Tensor] = []
    sample = lm._sample_from_logits

    def record(logits, *args):
        recorded.append(logits.clone())
        return sample(logits, *args)

    lm._sample_from_logits = record  # type: ignore
    try:
        out = (generate or lm.generate)(prompt, conditions, num_samples=num_samples, max_gen_len=max_gen_len,
                                        use_sampling=False, cfg_coef=CFG_COEF)
    finally:
        del lm._sample_from_logits
    pattern = lm.pattern_provider.get_pattern(max_gen_len)
    sequence, _, _ = pattern.build_pattern_sequence(out, lm.special_token_id)
    first = pattern.get_first_step_with_timesteps(0 if prompt is None else prompt.shape[-1])
    assert first is not None and len(recorded) == sequence.shape[-1] - first
    if conditions:
        tokenized = lm.condition_provider.tokenize(conditions + ClassifierFreeGuidanceDropout(p=1.0)(conditions))
        condition_tensors = lm.condition_provider(tokenized)
        prepended = sum(condition_tensors[name][0].shape[1] for name in lm.fuser.fuse2cond['prepend'])
    else:
        condition_tensors, prepended = {}, 0
    for step, offset in enumerate(range(first, sequence.shape[-1])):
        positions = _expected_positions(lm, prepended + first, prepended + offset)
        with torch.no_grad(), _ExplicitPositions(lm, positions):
            full = cfg_logits(lm, sequence[..., :offset], condition_tensors, CFG_COEF)
        torch.testing.assert_close(recorded[step], full, atol=2e-5, rtol=1e-4,
                                   msg=lambda m: f"step {offset}: {m}")
    return out


VARIANTS = {
    'rope': {},
    'sin_rope': {'positional_embedding': 'sin_rope'},
    'xpos': {'xpos': True},
    'sin_rope_xpos_kv_repeat': {'positional_embedding': 'sin_rope', 'xpos': True, 'kv_repeat': 2},
}


@pytest.mark.parametrize('memory_efficient', [False, True], ids=['time_axis_1', 'memory_efficient'])
@pytest.mark.parametrize('fuser', ['prepend', 'cross'])
@pytest.mark.parametrize('variant', list(VARIANTS), ids=list(VARIANTS))
@pytest.mark.parametrize('with_prompt', [False, True], ids=['no_prompt', 'prompt'])
def test_cached_logits_equal_full_pass(variant, fuser, memory_efficient, with_prompt):
    lm = _lm(fuser=fuser, memory_efficient=memory_efficient, **VARIANTS[variant])
    conditions = [ConditioningAttributes(text={'description': 'happy rock'}),
                  ConditioningAttributes(text={'description': None})]
    prompt = torch.randint(0, lm.card, (2, lm.num_codebooks, 4)) if with_prompt else None
    _check_generate_against_full_pass(lm, prompt, conditions, max_gen_len=14)


def test_unconditional_cached_logits_equal_full_pass():
    _check_generate_against_full_pass(_lm(memory_efficient=True, xpos=True), None, [], 12, num_samples=2)


@pytest.mark.parametrize('memory_efficient', [False, True], ids=['time_axis_1', 'memory_efficient'])
def test_static_cache_tokens_equal_default_with_rope(memory_efficient):
    lm = _lm(fuser='cross', memory_efficient=memory_efficient, positional_embedding='sin_rope', xpos=True)
    conditions = [ConditioningAttributes(text={'description': 'sad jazz'})] * 2
    prompt = torch.randint(0, lm.card, (2, lm.num_codebooks, 3))
    kwargs = dict(prompt=prompt, conditions=conditions, max_gen_len=20, use_sampling=False)
    expected = lm.generate(**kwargs)
    lm.set_decode_options(static=True, window=8)
    assert torch.equal(lm.generate(**kwargs), expected)


@pytest.mark.parametrize('memory_efficient', [False, True], ids=['time_axis_1', 'memory_efficient'])
@pytest.mark.parametrize('fuser', ['prepend', 'cross'])
def test_windowed_extension_each_window_matches_full_pass(fuser, memory_efficient):
    # The debug codec: 4 codebooks of 400 entries at 25 Hz; windows of 0.4 s, stride 0.2 s.
    lm = _lm(fuser=fuser, n_q=4, card=400, memory_efficient=memory_efficient, positional_embedding='sin_rope')
    model = MusicGen('rope-test', get_debug_compression_model('cpu'), lm, max_duration=0.4)
    model.set_generation_params(use_sampling=False, duration=0.8, extend_stride=0.2, cfg_coef=CFG_COEF)
    calls: tp.List[tp.Optional[int]] = []
    generate = lm.generate

    def checked_generate(prompt, conditions, callback=None, max_gen_len=256, **kwargs):
        calls.append(None if prompt is None else prompt.shape[-1])
        return _check_generate_against_full_pass(lm, prompt, conditions, max_gen_len, generate=generate)

    lm.generate = checked_generate  # type: ignore
    try:
        _, tokens = model.generate(['happy rock', 'sad jazz'], return_tokens=True)
    finally:
        del lm.generate
    assert calls == [None, 5, 5] and tokens.shape == (2, 4, 20)
    # The default path generates the same tokens the checked windows did.
    assert torch.equal(model.generate(['happy rock', 'sad jazz'], return_tokens=True)[1], tokens)
    assert generate == lm.generate


@pytest.mark.parametrize('kv_repeat', [1, 2])
def test_attention_rotates_later_chunks_at_kv_heads_when_memory_efficient(kv_repeat):
    # Module-level statement of the rule, independent of the LM: keys and queries of the first
    # chunk at their true positions, of every later chunk from position num_heads // kv_repeat.
    torch.manual_seed(3)
    rope = RotaryEmbedding(4, xpos=True)
    attn = StreamingMultiheadAttention(16, 4, causal=True, rope=rope, memory_efficient=True,
                                       kv_repeat=kv_repeat, dropout=0.).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        with attn.streaming():
            out = torch.cat([attn(c, c, c)[0] for c in (x[:, :5], x[:, 5:6], x[:, 6:8], x[:, 8:9])], dim=1)
        kv_heads = 4 // kv_repeat
        positions = [0, 1, 2, 3, 4, kv_heads, kv_heads, kv_heads + 1, kv_heads]
        explicit = _ExplicitPositions.__new__(_ExplicitPositions)
        explicit.rope, explicit.positions = rope, positions
        rope.rotate_qk = explicit.rotate_qk
        try:
            attn.memory_efficient = False  # full pass: start 0, the explicit positions apply
            full = attn(x, x, x)[0]
        finally:
            del rope.rotate_qk
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-4)
