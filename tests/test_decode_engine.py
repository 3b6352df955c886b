"""The one decoding engine: a single position counter and preallocated cache, cross-attention keys
projected once by an explicit prefill, and a strategy object that `generate` asks for every step."""
import inspect

import pytest
import torch

from audiocraft.models import decoding
from audiocraft.models.decoding import BatchedCFG, DecodeOptions, FixedShapeCFG, TwoStepCFG, decode_strategy
from audiocraft.models.lm import LMModel
from audiocraft.modules import attention as attention_module
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
from audiocraft.modules.conditioners import (ConditionFuser, ConditioningAttributes, ConditioningProvider,
                                             LUTConditioner)
from audiocraft.modules.kv_cache import CachePosition
from audiocraft.modules.transformer import StreamingTransformer
from audiocraft.utils.errors import InvalidArgumentError


def _lm(**kwargs) -> LMModel:
    torch.manual_seed(3)
    conditioner = LUTConditioner(n_bins=32, dim=16, output_dim=16, tokenizer='noop')
    lm = LMModel(DelayedPatternProvider(n_q=2), ConditioningProvider({'description': conditioner}),
                 ConditionFuser({'cross': ['description']}), n_q=2, card=12, dim=16, num_heads=2, num_layers=2,
                 cross_attention=True, causal=True, cfg_coef=3.0, **kwargs)
    return lm.eval()


def _attributes(texts):
    return [ConditioningAttributes(text={'description': t}) for t in texts]


def test_one_position_counter_drives_every_layer():
    torch.manual_seed(0)
    tr = StreamingTransformer(8, 2, 3, dim_feedforward=16, dropout=0., causal=True).eval()
    x = torch.randn(2, 7, 8)
    with torch.no_grad(), tr.streaming():
        tr.start_cache(7, 'cpu')
        tr(x[:, :3])
        tr(x[:, 3:4])
        position = CachePosition.read(tr._streaming_state, 'cpu')
        assert position.host == 4 and int(position.tensor) == 4
        # Tensors only, as AudioCraft's state API expects (snapshots are cloned and restored).
        assert all(isinstance(v, torch.Tensor) for v in tr.get_streaming_state().values())
        for layer in tr.layers:
            state = layer.self_attn._streaming_state
            # The layers hold keys/values only: no counter of their own, preallocated to the capacity.
            assert set(state) == {'k_cache', 'v_cache', 'capacity'}
            assert state['k_cache'].shape[2] == 7


def test_standalone_attention_streams_with_its_own_position():
    torch.manual_seed(0)
    attn = attention_module.StreamingMultiheadAttention(8, 2, causal=True).eval()
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        full = attn(x, x, x)[0]
        with attn.streaming():
            steps = [attn(x[:, t:t + 1], x[:, t:t + 1], x[:, t:t + 1])[0] for t in range(5)]
    assert torch.allclose(full, torch.cat(steps, dim=1), atol=1e-6)


def test_cross_attention_keys_are_projected_once_per_call():
    lm = _lm()
    calls = []
    for layer in lm.transformer.layers:
        layer.cross_attention.kv_proj.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        codes = lm.generate(conditions=_attributes(['a', 'b']), max_gen_len=10, use_sampling=False)
    assert codes.shape == (2, 2, 10)
    assert len(calls) == len(lm.transformer.layers)  # the prefill, not one per step
    # No memo keyed on the identity or the content of the source remains.
    source = inspect.getsource(attention_module)
    assert 'torch.equal' not in source and 'cross_src' not in source


def test_prefilled_cross_attention_equals_recomputing_it():
    lm = _lm()
    conditions = _attributes(['a', 'b', None, None])
    tensors = lm.condition_provider(lm.condition_provider.tokenize(conditions))
    sequence = torch.randint(0, lm.card, (4, 2, 6))
    with torch.no_grad():
        full = lm(sequence, [], tensors)[:, :, -1]
        with lm.streaming():
            strategy = BatchedCFG(lm, {}, 1.0, steps=6)
            strategy._start_state(tensors)
            for t in range(6):
                step = lm(sequence[..., t:t + 1], [], tensors)
    assert torch.allclose(full, step[:, :, -1], atol=1e-5)


def test_generate_asks_the_strategy_for_every_step(monkeypatch):
    lm = _lm()
    seen = []
    original = BatchedCFG.logits

    def spy(self, sequence):
        seen.append(sequence.shape[-1])
        return original(self, sequence)
    monkeypatch.setattr(BatchedCFG, 'logits', spy)
    with torch.no_grad():
        lm.generate(conditions=_attributes(['a']), max_gen_len=8, use_sampling=False)
    assert len(seen) == 8 + 1  # delay pattern: max_gen_len + n_q - 1 steps


def test_strategy_choice():
    lm = _lm()
    tensors = lm.condition_provider(lm.condition_provider.tokenize(_attributes(['a', None])))
    assert type(decode_strategy(lm, tensors, 3.0, 10, DecodeOptions())) is BatchedCFG
    assert type(decode_strategy(lm, tensors, 3.0, 10, DecodeOptions(static=True))) is FixedShapeCFG
    pair = (tensors, tensors)
    assert type(decode_strategy(lm, pair, 3.0, 10, DecodeOptions())) is TwoStepCFG
    # Two passes per step cannot share one fixed-shape state: such calls run eagerly.
    assert type(decode_strategy(lm, pair, 3.0, 10, DecodeOptions(static=True))) is TwoStepCFG


@pytest.mark.parametrize('options', [DecodeOptions(), DecodeOptions(static=True, window=4)])
def test_two_step_and_batched_cfg_agree(options):
    lm = _lm()
    lm.set_decode_options(options)
    with torch.no_grad():
        torch.manual_seed(1)
        batched = lm.generate(conditions=_attributes(['a', 'b']), max_gen_len=9, use_sampling=False)
        torch.manual_seed(1)
        two_step = lm.generate(conditions=_attributes(['a', 'b']), max_gen_len=9, use_sampling=False,
                               two_step_cfg=True)
    assert torch.equal(batched, two_step)


def test_no_per_model_code_clone():
    # The compiled step is kept on the model; no private copy of a function's code object.
    source = inspect.getsource(decoding)
    assert '__code__' not in source and 'FunctionType' not in source


def test_cache_entry_points_refuse_misuse():
    lm = _lm()
    source = torch.zeros(1, 3, 16)
    with pytest.raises(RuntimeError, match="streaming"):
        lm.transformer.prefill_cross_attention(source)
    with pytest.raises(RuntimeError, match="cross-attention layers"):
        lm.transformer.layers[0].self_attn.prefill_cross_attention(source)
    with pytest.raises(InvalidArgumentError, match="cache window"):
        lm.transformer.set_cache_window(0)
    with torch.no_grad(), lm.streaming():
        with pytest.raises(InvalidArgumentError, match="positive"):
            lm.transformer.start_cache(0, 'cpu')
