"""Codebook patterns: layouts, build/revert round trips, logits revert, and agreement with a
step-by-step reference of AudioCraft's index construction."""
import time

import pytest
import torch

from audiocraft.modules.codebooks_patterns import (
    CoarseFirstPattern, DelayedPatternProvider, LayoutCoord, MusicLMPattern, ParallelPatternProvider,
    Pattern, UnrolledPatternProvider,
)

PROVIDERS = [
    lambda: DelayedPatternProvider(4),
    lambda: DelayedPatternProvider(4, delays=[0, 0, 1, 3]),
    lambda: DelayedPatternProvider(4, flatten_first=2),
    lambda: DelayedPatternProvider(4, empty_initial=2),
    lambda: DelayedPatternProvider(4, empty_initial=-1),
    lambda: ParallelPatternProvider(4),
    lambda: UnrolledPatternProvider(4),
    lambda: UnrolledPatternProvider(4, flattening=[0, 0, 1, 1], delays=[0, 0, 2, 2]),
    lambda: UnrolledPatternProvider(4, flattening=[0, 1, 1, 3], delays=[0, 1, 1, 2]),
    lambda: CoarseFirstPattern(4),
    lambda: CoarseFirstPattern(4, delays=[0, 1, 2]),
    lambda: MusicLMPattern(4, group_by=2),
]


def _reference_build_indexes(pattern, timesteps, n_q, valid):
    layout = pattern.valid_layout if valid else pattern.layout
    indexes = torch.full((n_q, len(layout)), n_q * timesteps, dtype=torch.long)
    mask = torch.zeros(n_q, len(layout), dtype=torch.bool)
    for s, coords in enumerate(layout):
        for c in coords:
            if c.t < timesteps:
                indexes[c.q, s] = c.t + c.q * timesteps
                mask[c.q, s] = True
    return indexes, mask


def _reference_revert_indexes(pattern, steps, n_q, valid, model_output):
    layout = pattern.valid_layout if valid else pattern.layout
    if model_output and pattern.starts_with_special_token():
        layout = layout[1:]
    T = pattern.timesteps
    indexes = torch.full((n_q, T), n_q * steps, dtype=torch.long)
    mask = torch.zeros(n_q, T, dtype=torch.bool)
    for s, coords in enumerate(layout):
        if s < steps:
            for c in coords:
                if c.t < T:
                    indexes[c.q, c.t] = s + c.q * steps
                    mask[c.q, c.t] = True
    return indexes, mask


@pytest.mark.parametrize("make", PROVIDERS)
@pytest.mark.parametrize("timesteps", [1, 7])
def test_indexes_match_reference(make, timesteps):
    pattern = make().get_pattern(timesteps)
    for valid in [False, True]:
        ref = _reference_build_indexes(pattern, timesteps, 4, valid)
        got = pattern._build_pattern_sequence_scatter_indexes(timesteps, 4, valid)
        assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
        max_steps = len(pattern.valid_layout if valid else pattern.layout)
        for steps in sorted({1, max_steps // 2, max_steps}):
            for model_output in [False, True]:
                ref = _reference_revert_indexes(pattern, steps, 4, valid, model_output)
                got = pattern._build_reverted_sequence_scatter_indexes(steps, 4, valid, model_output)
                assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


@pytest.mark.parametrize("make", PROVIDERS)
def test_build_revert_round_trip(make):
    T, K, B, special = 9, 4, 2, 2048
    pattern = make().get_pattern(T)
    z = torch.randint(0, 2048, (B, K, T))
    seq, indexes, mask = pattern.build_pattern_sequence(z, special)
    assert seq.shape == (B, K, len(pattern.layout)) and indexes.shape == mask.shape == seq.shape[1:]
    assert (seq[:, ~mask] == special).all()
    back, _, back_mask = pattern.revert_pattern_sequence(seq, special)
    assert back.shape == z.shape and back_mask.all()
    assert torch.equal(back, z)


def test_delayed_pattern_layout():
    pattern = DelayedPatternProvider(3).get_pattern(3)
    assert pattern.layout[0] == []
    assert pattern.layout[1] == [LayoutCoord(0, 0)]
    assert pattern.layout[2] == [LayoutCoord(1, 0), LayoutCoord(0, 1)]
    # Steps past the end still list every codebook (t >= timesteps is ignored when building).
    assert pattern.layout[-1] == [LayoutCoord(4, 0), LayoutCoord(3, 1), LayoutCoord(2, 2)]
    assert pattern.max_delay == 2 and pattern.num_sequence_steps == 5
    assert len(pattern.valid_layout) == len(pattern.layout) - 2
    assert pattern.get_first_step_with_timesteps(1) == 2
    assert pattern.get_first_step_with_timesteps(1, q=2) == 4
    assert pattern.get_sequence_coords_with_timestep(2, 1) == [(4, LayoutCoord(2, 1))]
    assert ParallelPatternProvider(3).get_pattern(4).max_delay == 0


def test_delayed_sequence_values():
    z = torch.arange(12).view(1, 3, 4)  # codebook q, time t -> 4 q + t
    seq, _, mask = DelayedPatternProvider(3).get_pattern(4).build_pattern_sequence(z, -1)
    expected = torch.tensor([[-1, 0, 1, 2, 3, -1, -1],
                             [-1, -1, 4, 5, 6, 7, -1],
                             [-1, -1, -1, 8, 9, 10, 11]])
    assert torch.equal(seq[0], expected)
    assert torch.equal(mask, expected >= 0)
    valid, _, _ = DelayedPatternProvider(3).get_pattern(4).build_pattern_sequence(z, -1, keep_only_valid_steps=True)
    assert torch.equal(valid[0], expected[:, :5])


def test_revert_logits_with_valid_steps():
    # What the LM does: logits at step s predict the codes of step s + 1.
    T, K, card = 6, 4, 5
    pattern = DelayedPatternProvider(K).get_pattern(T)
    z = torch.randint(0, card, (2, K, T))
    seq, _, _ = pattern.build_pattern_sequence(z, card, keep_only_valid_steps=True)
    S = seq.shape[-1]
    assert S == len(pattern.valid_layout) == T + 1
    # Fake "perfect" logits: one-hot of the next input step.
    nxt = torch.cat([seq[..., 1:], torch.full_like(seq[..., :1], card)], dim=-1)
    logits = torch.nn.functional.one_hot(nxt, card + 1)[..., :card].permute(0, 3, 1, 2).float()
    out, _, mask = pattern.revert_pattern_logits(logits, float('nan'), keep_only_valid_steps=True)
    assert out.shape == (2, card, K, T) and mask.shape == (K, T)
    # With valid steps only, the last K - 1 - q timesteps of codebook q are not predicted.
    for q in range(K):
        assert mask[q].sum() == T - q
    assert torch.isnan(out[:, :, ~mask]).all()
    assert torch.equal(out.argmax(1)[:, mask], z[:, mask])


def test_revert_logits_full_layout():
    T, K, card = 5, 3, 4
    pattern = DelayedPatternProvider(K).get_pattern(T)
    z = torch.randint(0, card, (1, K, T))
    seq, _, _ = pattern.build_pattern_sequence(z, card)
    nxt = torch.cat([seq[..., 1:], torch.full_like(seq[..., :1], card)], dim=-1)
    logits = torch.nn.functional.one_hot(nxt, card + 1)[..., :card].permute(0, 3, 1, 2).float()
    out, _, mask = pattern.revert_pattern_logits(logits, 0., keep_only_valid_steps=False)
    assert mask.all()
    assert torch.equal(out.argmax(1), z)


def test_invalid_layouts_and_inputs():
    with pytest.raises(ValueError, match="Past timesteps"):
        Pattern([[], [LayoutCoord(1, 0)], [LayoutCoord(0, 0)]], timesteps=2, n_q=1)
    with pytest.raises(ValueError, match="Multiple entries"):
        Pattern([[], [LayoutCoord(0, 0), LayoutCoord(1, 0)]], timesteps=2, n_q=1)
    with pytest.raises(ValueError):
        Pattern([], timesteps=1, n_q=1)
    with pytest.raises(ValueError):
        DelayedPatternProvider(3, delays=[0, 2, 1])
    with pytest.raises(ValueError):
        DelayedPatternProvider(3, delays=[0, 1])
    with pytest.raises(ValueError):
        UnrolledPatternProvider(2, flattening=[0, 0], delays=[0, 1])
    pattern = DelayedPatternProvider(2).get_pattern(4)
    with pytest.raises(ValueError, match="codebooks"):
        pattern.build_pattern_sequence(torch.zeros(1, 3, 4, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="timesteps"):
        pattern.build_pattern_sequence(torch.zeros(1, 2, 5, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="longer"):
        pattern.revert_pattern_sequence(torch.zeros(1, 2, 99, dtype=torch.long), 0)


def test_provider_cache_and_speed():
    provider = DelayedPatternProvider(4)
    assert provider.get_pattern(10) is provider.get_pattern(10)
    start = time.perf_counter()
    pattern = provider.get_pattern(1500)
    z = torch.randint(0, 2048, (8, 4, 1500))
    for _ in range(20):
        seq, _, _ = pattern.build_pattern_sequence(z, 2048, keep_only_valid_steps=True)
        pattern.revert_pattern_sequence(seq, 2048, keep_only_valid_steps=True)
    assert time.perf_counter() - start < 5.0
    # A shorter request reuses a longer pattern's prefix semantics.
    short, _, _ = pattern.build_pattern_sequence(z[..., :100], 2048)
    assert short.shape[-1] == len(pattern.layout)
