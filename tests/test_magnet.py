"""MAGNeT generation API on the debug-size `magnet_tiny` checkpoint, span masking and error paths."""
import pytest
import torch

from audiocraft.models import MAGNeT, MagnetLMModel
from audiocraft.models.loaders import load_lm_model_magnet
from audiocraft.modules.conditioners import ConditioningAttributes

STEPS = [3, 2, 2, 2]


@pytest.fixture(scope='module')
def model(cases_dir):
    return MAGNeT.get_pretrained(str(cases_dir / 'magnet_tiny'), device='cpu')


@pytest.fixture(autouse=True)
def _reset_params(model):
    yield
    model.set_generation_params()
    model.set_custom_progress_callback(None)


def test_default_generation_params(model):
    model.set_generation_params()
    assert model.generation_params == {
        'use_sampling': True, 'temp': 3.0, 'top_k': 0, 'top_p': 0.9, 'max_cfg_coef': 10.0,
        'min_cfg_coef': 1.0, 'decoding_steps': [20, 10, 10, 10], 'span_arrangement': 'nonoverlap'}
    # MAGNeT generates exactly its training segment.
    assert model.duration == model.max_duration == model.lm.cfg.dataset.segment_duration


@pytest.mark.parametrize('arrangement,length', [('nonoverlap', 48), ('stride1', 50)])
def test_sampled_generation_shapes(model, arrangement, length):
    # 1 s at 50 Hz is 50 frames; 'nonoverlap' keeps whole spans of 3: 48 frames.
    torch.manual_seed(0)
    model.set_generation_params(decoding_steps=STEPS, span_arrangement=arrangement)
    wav, tokens = model.generate(['disco beat', 'calm piano'], return_tokens=True)
    assert tokens.shape == (2, 4, length)
    assert tokens.min() >= 0 and tokens.max() < model.lm.card  # no mask token left
    assert wav.shape == (2, 1, length * 640)
    assert torch.isfinite(wav).all()


def test_sampling_is_seeded_and_greedy_is_deterministic(model):
    model.set_generation_params(decoding_steps=STEPS, top_k=5, top_p=0.0)
    torch.manual_seed(1)
    _, a = model.generate(['disco beat'], return_tokens=True)
    torch.manual_seed(1)
    _, b = model.generate(['disco beat'], return_tokens=True)
    assert torch.equal(a, b)
    model.set_generation_params(decoding_steps=STEPS, use_sampling=False)
    _, c = model.generate(['disco beat'], return_tokens=True)
    _, d = model.generate(['disco beat'], return_tokens=True)
    assert torch.equal(c, d)


def test_progress_callback_counts_decoding_steps(model):
    calls = []
    model.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    model.set_generation_params(decoding_steps=STEPS, use_sampling=False)
    model.generate(['disco beat'], progress=True)
    total = sum(STEPS)
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_lm_callback(model):
    calls = []
    null = [ConditioningAttributes(text={'description': None}) for _ in range(2)]
    with torch.no_grad():
        codes = model.lm.generate(None, null, num_samples=2, max_gen_len=20, use_sampling=False,
                                  decoding_steps=[1, 1, 1, 1], callback=lambda d, t: calls.append((d, t)))
    assert codes.shape == (2, 4, 18)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_unconditional(model):
    model.set_generation_params(decoding_steps=STEPS, span_arrangement='stride1')
    torch.manual_seed(0)
    wav, tokens = model.generate_unconditional(3, return_tokens=True)
    assert tokens.shape == (3, 4, 50) and wav.shape == (3, 1, 32000)


@pytest.mark.parametrize('arrangement', ['nonoverlap', 'stride1'])
def test_continuation_keeps_prompt(model, arrangement):
    model.set_generation_params(decoding_steps=STEPS, use_sampling=False, span_arrangement=arrangement)
    torch.manual_seed(0)
    prompt = 0.1 * torch.randn(2, 1, int(0.2 * model.sample_rate))
    prompt_tokens, _ = model.compression_model.encode(prompt)
    assert prompt_tokens.shape[-1] == 10  # not a multiple of the span length
    _, tokens = model.generate_continuation(prompt, model.sample_rate, ['disco beat', None],
                                            return_tokens=True)
    assert torch.equal(tokens[..., :10], prompt_tokens)
    assert tokens.shape[-1] == (48 if arrangement == 'nonoverlap' else 50)


def test_attention_masks(model):
    lm = model.lm
    assert lm.attn_mask_per_stage[0] is None
    band = lm.attn_mask_per_stage[1]
    assert band.shape == (50, 50) and band.dtype == torch.bool
    assert band[10, 5] and band[10, 15] and not band[10, 4] and not band[10, 16]
    additive = lm.restricted_context_attn_mask(8)
    assert additive[0, 5] == 0 and additive[0, 6] == float('-inf')
    # A shorter sequence gets the top-left corner of the full mask.
    assert torch.equal(lm.get_stage_attn_mask(2, 20, torch.device('cpu'), torch.float32), band[:20, :20])
    assert lm.get_stage_attn_mask(0, 20, torch.device('cpu'), torch.float32) is None
    assert lm.get_stage_attn_mask(-1, 20, torch.device('cpu'), torch.float32) is None


def test_restricted_context_limits_receptive_field(model):
    # 2 layers with a context of 5 on each side: position p depends on codes within p +- 10
    # for stages above 0; stage 0 sees the whole sequence.
    lm = model.lm
    attrs, _ = model._prepare_tokens_and_attributes(['disco beat'], None)
    codes = torch.randint(0, lm.card, (1, 4, 40), generator=torch.Generator().manual_seed(0))
    changed = codes.clone()
    changed[..., 30:] = (changed[..., 30:] + 1) % lm.card
    with torch.no_grad():
        for stage, far_unchanged in [(0, False), (1, True), (3, True)]:
            a = lm.compute_predictions(codes, attrs, stage=stage).logits
            b = lm.compute_predictions(changed, attrs, stage=stage).logits
            assert torch.equal(a[..., :20, :], b[..., :20, :]) == far_unchanged
            assert not torch.equal(a[..., 20:, :], b[..., 20:, :])


def test_compute_mask_spans(model):
    lm = model.lm
    mask = lm._compute_mask_spans(torch.tensor([0, 5]), 10)
    assert mask.shape == (1, 1, 10)
    assert mask[0, 0].nonzero().flatten().tolist() == [0, 1, 2, 5, 6, 7]


def test_least_probable_span_masking(model):
    lm = model.lm
    scores = torch.zeros(1, 1, 20)
    scores[..., 4:7] = 5.0
    mask = lm._least_probable_span_masking(scores, 3)
    assert mask[0, 0].nonzero().flatten().tolist() == [4, 5, 6]
    scores = torch.rand(1, 1, 30, generator=torch.Generator().manual_seed(0))
    for target in [1, 4, 10, 17, 28]:
        n = int(lm._least_probable_span_masking(scores, target).sum())
        # Overlapping spans of 3 cannot always hit the target exactly: close to it, at least one span.
        assert max(target, 3) - 2 <= n <= max(target, 3) + 2


def test_set_generation_params_errors(model):
    with pytest.raises(ValueError, match='span_arrangement'):
        model.set_generation_params(span_arrangement='overlap')
    with pytest.raises(ValueError, match='decoding_steps'):
        model.set_generation_params(decoding_steps=[10, 10])
    with pytest.raises(ValueError, match='decoding_steps'):
        model.set_generation_params(decoding_steps=[10, 0, 10, 10])
    with pytest.raises(ValueError, match='top_k'):
        model.set_generation_params(top_k=-1)


def test_lm_generate_errors(model):
    lm = model.lm
    with pytest.raises(ValueError, match='max_cfg_coef'):
        lm.generate(None, [], num_samples=1, max_gen_len=10, cfg_coef=3.0)
    with pytest.raises(ValueError, match='two-step'):
        lm.generate(None, [], num_samples=1, max_gen_len=10, two_step_cfg=True)
    with pytest.raises(ValueError, match='remove_prompts'):
        lm.generate(None, [], num_samples=1, max_gen_len=10, remove_prompts=True)
    with pytest.raises(ValueError, match='span_scoring'):
        lm.generate(None, [], num_samples=1, max_gen_len=10, span_scoring='mean')
    # The checks are the autoregressive LM's (shared): this model cross-attends, so it needs conditions.
    with pytest.raises(ValueError, match='cross-attention'):
        lm.generate(torch.zeros(1, 4, 3, dtype=torch.long), [], max_gen_len=10)
    no_text = [ConditioningAttributes(text={'description': None})]
    with pytest.raises(ValueError, match='shorter'):
        lm.generate(torch.zeros(1, 4, 10, dtype=torch.long), no_text, max_gen_len=10)
    with pytest.raises(ValueError, match='Inconsistent'):
        lm.generate(torch.zeros(2, 4, 3, dtype=torch.long), no_text, num_samples=1, max_gen_len=10)
    with pytest.raises(ValueError, match='Prompt must be codes'):
        lm.generate(torch.zeros(1, 3, 3, dtype=torch.long), [], max_gen_len=10)
    with pytest.raises(TypeError):
        lm.generate(None, [], num_samples=1, max_gen_len=10, not_an_argument=1)
    lm.train()
    try:
        with pytest.raises(RuntimeError, match='eval'):
            lm.generate(None, [], num_samples=1, max_gen_len=10)
    finally:
        lm.eval()


def test_generate_errors(model):
    with pytest.raises(ValueError):
        model.generate('a single string')
    with pytest.raises(ValueError):
        model.generate([])
    prompt = torch.zeros(1, 1, 2 * model.sample_rate)  # longer than the 1 s segment
    with pytest.raises(ValueError, match='[Pp]rompt'):
        model.generate_continuation(prompt, model.sample_rate, ['x'])


def test_get_pretrained_errors(tmp_path, cases_dir):
    with pytest.raises(FileNotFoundError):
        MAGNeT.get_pretrained(str(tmp_path / 'missing_folder'), device='cpu')
    with pytest.raises(ValueError):
        MAGNeT.get_pretrained('', device='cpu')
    # A released name with the hub offline and nothing cached: a clear error naming the model.
    with pytest.raises(FileNotFoundError, match='facebook/magnet-small-10secs'):
        MAGNeT.get_pretrained('facebook/magnet-small-10secs', device='cpu')
    # A MusicGen checkpoint is not a MAGNeT one.
    with pytest.raises(ValueError, match='not a MAGNeT model'):
        load_lm_model_magnet(str(cases_dir / 'musicgen_text_tiny'), compression_model_frame_rate=50)


def test_magnet_lm_built_directly():
    # MagnetLMModel takes LMModel's arguments plus its own, as builders.get_lm_model passes them.
    from audiocraft.modules.codebooks_patterns import ParallelPatternProvider
    from audiocraft.modules.conditioners import ConditionFuser, ConditioningProvider
    fuser = ConditionFuser({'cross': [], 'prepend': [], 'sum': [], 'input_interpolate': []})
    lm = MagnetLMModel(pattern_provider=ParallelPatternProvider(2, empty_initial=-1),
                       condition_provider=ConditioningProvider({}), fuser=fuser, n_q=2, card=16, dim=16,
                       num_heads=2, num_layers=1, causal=False, subcodes_context=2,
                       compression_model_framerate=10, segment_duration=1, span_len=2).eval()
    assert lm.attn_mask_per_stage[0] is None and lm.attn_mask_per_stage[1].shape == (10, 10)
    torch.manual_seed(0)
    codes = lm.generate(None, [], num_samples=2, max_gen_len=10, decoding_steps=[2, 2], top_p=0.0)
    assert codes.shape == (2, 2, 10) and codes.max() < 16
    codes = lm.generate(None, [], num_samples=1, max_gen_len=9, decoding_steps=[3, 1],
                        span_arrangement='stride1', use_sampling=False)
    assert codes.shape == (1, 2, 9) and codes.max() < 16
