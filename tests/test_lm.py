"""Tests of LMModel: teacher forcing, streaming generation, CFG, sampling helpers, init and loading."""
import math

import omegaconf
import pytest
import torch

from audiocraft.models import builders
from audiocraft.models.lm import LMModel, LMOutput, get_init_fn, init_layer
from audiocraft.models.loaders import load_lm_model
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
from audiocraft.modules.conditioners import (ConditionFuser, ConditioningAttributes, ConditioningProvider)
from audiocraft.utils import utils


pytestmark = pytest.mark.usefixtures('single_thread')


def _unconditional_lm(**kwargs) -> LMModel:
    torch.manual_seed(0)
    fuser = ConditionFuser({'cross': [], 'prepend': [], 'sum': [], 'input_interpolate': []})
    params = dict(n_q=3, card=12, dim=16, num_heads=2, num_layers=2, causal=True, norm_first=True,
                  weight_init='gaussian', depthwise_init='current', zero_bias_init=True)
    params.update(kwargs)
    return LMModel(DelayedPatternProvider(params['n_q']), ConditioningProvider({}), fuser, **params).eval()


def _attrs(texts):
    return [ConditioningAttributes(text={'description': t}) for t in texts]


def test_forward_and_compute_predictions_shapes_and_mask():
    lm = _unconditional_lm()
    codes = torch.randint(0, 12, (2, 3, 7))
    out = lm.compute_predictions(codes, [])
    assert isinstance(out, LMOutput)
    assert out.logits.shape == (2, 3, 7, 12) and out.mask.shape == (2, 3, 7)
    # keep_only_valid_steps drops the steps past the last full timestep: codebook k loses its last k.
    expected = torch.ones(3, 7, dtype=torch.bool)
    expected[1, 6:] = False
    expected[2, 5:] = False
    assert torch.equal(out.mask[0], expected) and torch.equal(out.mask[1], expected)
    assert torch.isnan(out.logits[~out.mask]).all() and not torch.isnan(out.logits[out.mask]).any()
    full = lm.compute_predictions(codes, [], keep_only_valid_steps=False)
    assert full.mask.all()
    assert torch.allclose(full.logits[out.mask], out.logits[out.mask], atol=1e-5)
    seq = torch.randint(0, 13, (2, 3, 5))
    assert lm(seq, []).shape == (2, 3, 5, 12)
    assert lm.special_token_id == 12 and lm.num_codebooks == 3


def test_greedy_generation_agrees_with_teacher_forcing():
    """Streaming with the KV cache must predict what the full-sequence forward predicts."""
    lm = _unconditional_lm()
    codes = lm.generate(num_samples=2, max_gen_len=9, use_sampling=False)
    assert codes.shape == (2, 3, 9)
    logits = lm.compute_predictions(codes, [], keep_only_valid_steps=False).logits
    assert torch.equal(logits.argmax(-1), codes)


def test_prompt_is_kept_and_remove_prompts():
    lm = _unconditional_lm()
    prompt = torch.randint(0, 12, (2, 3, 4))
    codes = lm.generate(prompt, max_gen_len=8, use_sampling=False)
    assert torch.equal(codes[..., :4], prompt)
    tail = lm.generate(prompt, max_gen_len=8, use_sampling=False, remove_prompts=True)
    assert torch.equal(tail, codes[..., 4:])
    logits = lm.compute_predictions(codes, [], keep_only_valid_steps=False).logits
    assert torch.equal(logits.argmax(-1)[..., 4:], codes[..., 4:])


def test_callback_and_check():
    lm = _unconditional_lm()
    calls = []
    lm.generate(num_samples=1, max_gen_len=6, use_sampling=False, check=True,
                callback=lambda done, total: calls.append((done, total)))
    # Delay pattern: 1 special step + 6 timesteps + 2 delay steps; the first step is not predicted.
    assert calls == [(i, 8) for i in range(1, 9)]


def test_batched_cfg_matches_two_step_cfg():
    lm = builders.get_debug_lm_model('cpu')
    torch.manual_seed(0)
    attrs = _attrs(['a b', 'c d e'])
    lm.cfg_coef = 2.5  # the two-step path always uses the model's own coefficient (AudioCraft behaviour)
    one = lm.generate(None, attrs, max_gen_len=8, use_sampling=False, cfg_coef=2.5)
    two = lm.generate(None, attrs, max_gen_len=8, use_sampling=False, two_step_cfg=True)
    assert torch.equal(one, two)


def test_sampling_is_reproducible_and_in_range():
    lm = builders.get_debug_lm_model('cpu')
    attrs = _attrs(['x', 'y'])
    outs = []
    for _ in range(2):
        torch.manual_seed(42)
        outs.append(lm.generate(None, attrs, max_gen_len=6, use_sampling=True, top_k=5, temp=1.3))
    assert torch.equal(outs[0], outs[1])
    torch.manual_seed(1)
    top_p = lm.generate(None, attrs, max_gen_len=6, use_sampling=True, top_p=0.5)
    assert ((top_p >= 0) & (top_p < lm.card)).all()


def test_sampling_helpers():
    torch.manual_seed(0)
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).repeat(200, 1)
    top1 = utils.sample_top_k(probs.clone(), k=1)
    assert (top1 == 0).all()
    top2 = utils.sample_top_k(probs.clone(), k=2)
    assert set(top2.unique().tolist()) <= {0, 1}
    nucleus = utils.sample_top_p(probs.clone(), p=0.6)  # keeps 0.5 and 0.3
    assert set(nucleus.unique().tolist()) <= {0, 1}
    many = utils.multinomial(torch.full((2, 3, 5), 0.2), num_samples=1)
    assert many.shape == (2, 3, 1)


def test_generate_errors():
    lm = _unconditional_lm()
    with pytest.raises(ValueError, match="shorter than max_gen_len"):
        lm.generate(torch.zeros(1, 3, 5, dtype=torch.long), max_gen_len=5)
    with pytest.raises(ValueError, match="Inconsistent batch sizes"):
        lm.generate(torch.zeros(2, 3, 1, dtype=torch.long), num_samples=3, max_gen_len=4)
    with pytest.raises(ValueError, match="codes"):
        lm.generate(torch.zeros(1, 2, 1, dtype=torch.long), max_gen_len=4)
    with pytest.raises(TypeError, match="Unexpected generation arguments"):
        lm.generate(num_samples=1, max_gen_len=4, temperature=2.0)
    lm.train()
    with pytest.raises(RuntimeError, match="eval"):
        lm.generate(num_samples=1, max_gen_len=4)
    with pytest.raises(ValueError, match="codebooks"):
        lm(torch.zeros(1, 2, 3, dtype=torch.long), [])


def test_weight_init_schemes():
    lm = _unconditional_lm(dim=64, num_layers=4)
    # depthwise 'current': layer i has std 1/sqrt(dim)/sqrt(2(i+1)), truncated at 3 std.
    for idx in [0, 3]:
        w = lm.transformer.layers[idx].linear1.weight
        std = 1 / math.sqrt(64) / math.sqrt(2 * (idx + 1))
        assert w.abs().max() <= 3 * std + 1e-6
        assert abs(w.std().item() - std) < 0.2 * std
    lin = torch.nn.Linear(256, 64)
    init_layer(lin, 'uniform', zero_bias_init=True)
    bound = math.sqrt(3) / math.sqrt(256)
    assert lin.weight.abs().max() <= bound and (lin.bias == 0).all()
    with pytest.raises(ValueError, match="initialization method"):
        get_init_fn('xavier', 16)
    with pytest.raises(ValueError, match="weight_init"):
        _unconditional_lm(weight_init=None, depthwise_init='global', zero_bias_init=False)
    with pytest.raises(ValueError, match="depthwise_init"):
        _unconditional_lm(depthwise_init='local')


def _tiny_cfg(**overrides) -> omegaconf.DictConfig:
    cfg = omegaconf.OmegaConf.create({
        'device': 'cpu', 'dtype': 'float32', 'lm_model': 'transformer_lm',
        'dataset': {'segment_duration': 4},
        'codebooks_pattern': {'modeling': 'delay',
                              'delay': {'delays': [0, 1], 'flatten_first': 0, 'empty_initial': 0}},
        'transformer_lm': {'dim': 16, 'num_heads': 2, 'num_layers': 2, 'hidden_scale': 4, 'n_q': 2,
                           'card': 10, 'dropout': 0.0, 'activation': 'gelu', 'norm_first': True,
                           'bias_ff': False, 'bias_attn': False, 'bias_proj': False, 'causal': True,
                           'memory_efficient': True, 'cross_attention': False},
        'classifier_free_guidance': {'training_dropout': 0.1, 'inference_coef': 3.0},
        'attribute_dropout': {},
        'fuser': {'cross_attention_pos_emb': False, 'cross_attention_pos_emb_scale': 1, 'sum': [],
                  'prepend': [], 'cross': [], 'input_interpolate': []},
        'conditioners': {},
    })
    cfg.merge_with(overrides)
    return cfg


def test_get_lm_model_and_load_lm_model_roundtrip(tmp_path):
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    lm = builders.get_lm_model(cfg).eval()
    assert lm.cfg_coef == 3.0 and lm.cfg_dropout.p == 0.1
    assert lm.transformer.layers[0].cross_attention is None
    pkg = {'best_state': {k: v.half() for k, v in lm.state_dict().items()},  # released weights are fp16
           'xp.cfg': omegaconf.OmegaConf.to_yaml(cfg), 'version': '1.4.0', 'exported': True}
    torch.save(pkg, tmp_path / 'state_dict.bin')
    loaded = load_lm_model(tmp_path, device='cpu')
    assert loaded.cfg.dtype == 'float32' and not loaded.training
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32 and value.device.type == 'cpu', key
        assert torch.equal(value, lm.state_dict()[key].half().float()), key
    with pytest.raises(KeyError, match="Unexpected LM model"):
        builders.get_lm_model(_tiny_cfg(lm_model='rnn_lm'))


def test_get_lm_model_on_meta_device():
    with torch.device('meta'):
        lm = builders.get_lm_model(_tiny_cfg())
    assert all(p.is_meta for p in lm.parameters())


def test_export_lm_then_load(tmp_path):
    from audiocraft.utils.export import export_lm
    cfg = _tiny_cfg()
    torch.manual_seed(1)
    lm = builders.get_lm_model(cfg).eval()
    checkpoint = {'xp.cfg': cfg, 'best_state': {'model': lm.state_dict()}, 'fsdp_best_state': None,
                  'optimizer': {}, 'epoch': 3}
    torch.save(checkpoint, tmp_path / 'checkpoint.th')
    out = export_lm(tmp_path / 'checkpoint.th', tmp_path / 'export' / 'state_dict.bin')
    loaded = load_lm_model(out, device='cpu')
    codes = torch.randint(0, 10, (1, 2, 6))
    assert torch.allclose(loaded.compute_predictions(codes, []).logits.nan_to_num(),
                          lm.compute_predictions(codes, []).logits.nan_to_num(), atol=1e-6)
    with pytest.raises(FileNotFoundError):
        export_lm(tmp_path / 'missing.th', tmp_path / 'x.bin')
