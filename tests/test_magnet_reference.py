"""The `magnet_tiny` golden case inside pytest: conditions, per-stage predictions, greedy generations.

Same checks as ../shared/reference/check_reference.py, on the copy in tests/reference/cases.
"""
import pytest
import torch

from audiocraft.models import MAGNeT, MagnetLMModel

CASE = 'magnet_tiny'


@pytest.fixture(scope='module')
def case(cases_dir):
    path = cases_dir / CASE
    io = torch.load(path / 'io.pt', map_location='cpu', weights_only=False)
    model = MAGNeT.get_pretrained(str(path), device='cpu')
    return model, io


def _attributes(model, descriptions):
    attrs, prompt_tokens = model._prepare_tokens_and_attributes(descriptions, None)
    assert prompt_tokens is None
    return attrs


def test_meta(case):
    model, io = case
    assert isinstance(model.lm, MagnetLMModel)
    assert (model.sample_rate, model.frame_rate, model.max_duration) == \
        (io['sample_rate'], io['frame_rate'], io['max_duration'])
    assert model.duration == model.max_duration
    assert model.lm.span_len == 3 and model.lm.subcodes_context == 5


def test_condition_tensors(case):
    model, io = case
    lm = model.lm
    attrs = _attributes(model, io['descriptions'])
    with torch.no_grad():
        conds = lm.condition_provider(lm.condition_provider.tokenize(attrs))
    for key, (emb, mask) in io['condition_tensors'].items():
        assert conds[key][0].shape == emb.shape
        torch.testing.assert_close(conds[key][0], emb, atol=1e-4, rtol=0)
        assert torch.equal(conds[key][1].bool(), mask.bool())


@pytest.mark.parametrize('stage', [0, 1, 2, 3])
def test_predictions_per_stage(case, stage):
    model, io = case
    expected_logits, expected_mask = io['predictions_per_stage'][stage]
    attrs = _attributes(model, io['descriptions'])
    with torch.no_grad():
        out = model.lm.compute_predictions(io['codes'], attrs, stage=stage)
    assert torch.equal(out.mask.bool(), expected_mask.bool())
    valid = expected_mask.bool()
    assert out.logits.shape == expected_logits.shape
    torch.testing.assert_close(out.logits[valid], expected_logits[valid], atol=1e-4, rtol=0)


def test_stages_differ_by_restricted_context(case):
    # Stage 0 attends everywhere, stages above use the band mask: their logits must differ,
    # and all stages above 0 share the same mask.
    model, io = case
    attrs = _attributes(model, io['descriptions'])
    with torch.no_grad():
        logits = {s: model.lm.compute_predictions(io['codes'], attrs, stage=s).logits for s in range(4)}
    assert not torch.allclose(logits[0], logits[1])
    torch.testing.assert_close(logits[1], logits[2], atol=0, rtol=0)
    torch.testing.assert_close(logits[1], logits[3], atol=0, rtol=0)


@pytest.mark.parametrize('name', ['text', 'stride1'])
def test_generations(case, name):
    model, io = case
    gen = io['generations'][name]
    model.set_generation_params(**gen['params'])
    call = gen['call']
    assert call['fn'] == 'generate'
    with torch.no_grad():
        wav, tokens = model.generate(call['descriptions'], return_tokens=True)
    assert tokens.shape == gen['tokens'].shape
    assert torch.equal(tokens, gen['tokens'])
    assert wav.shape == gen['wav'].shape
    torch.testing.assert_close(wav, gen['wav'], atol=1e-4, rtol=0)
