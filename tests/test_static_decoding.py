"""The static-cache decoding paths (audiocraft.models.decoding) generate what the default path does.

- golden cases: the static cache (several key windows) and torch.compile reproduce AudioCraft's
  greedy tokens exactly;
- positional variants the golden cases lack (RoPE, xPos, past_context, kv_repeat, prompts):
  static tokens equal default tokens;
- one static step is capturable: no host sync, and the only state it changes is changed in place
  (what a CUDA graph replay needs);
- the CUDA-graph bookkeeping (warm-up, capture and replay per key window) runs on CPU with a
  stand-in that records a step's operations once and replays only them, as a CUDA graph does:
  the golden tokens must come out;
- the options are validated; on CUDA machines the CUDA-graph path is checked against eager.
"""
import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._python_dispatch import TorchDispatchMode

from audiocraft.models import MusicGen, decoding
from audiocraft.models.decoding import DecodeOptions, FixedShapeCFG
from audiocraft.models.lm import LMModel
from audiocraft.modules.codebooks_patterns import DelayedPatternProvider
from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout, ConditionFuser, ConditioningProvider
from audiocraft.utils.errors import InvalidArgumentError
from test_reference_cases import _check_case, run_case

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.mark.parametrize('decode', [{'static': True, 'window': 8}, {'compile': True, 'window': 32}],
                         ids=['static', 'compile'])
def test_golden_tokens_on_static_paths(cases_dir, decode):
    _check_case(cases_dir / 'musicgen_text_tiny', decode)


def test_golden_rope_tokens_with_static_cache(cases_dir):
    # RoPE with memory_efficient=True: the static cache reproduces AudioCraft's cached positions.
    _check_case(cases_dir / 'musicgen_variants_tiny', {'static': True, 'window': 8})


@pytest.mark.slow
def test_golden_melody_tokens_with_static_cache(cases_dir):
    # Melody conditions are prepended: they enter the static cache with the first chunk.
    _check_case(cases_dir / 'musicgen_melody_tiny', {'static': True, 'window': 16})


def _lm(**kwargs) -> LMModel:
    torch.manual_seed(0)
    fuser = ConditionFuser({'cross': [], 'prepend': [], 'sum': [], 'input_interpolate': []})
    params = dict(n_q=3, card=12, dim=16, num_heads=4, num_layers=2, causal=True, norm_first=True,
                  weight_init='gaussian')
    params.update(kwargs)
    return LMModel(DelayedPatternProvider(params['n_q']), ConditioningProvider({}), fuser, **params).eval()


@pytest.mark.parametrize('variant', [
    {'positional_embedding': 'rope'},
    {'positional_embedding': 'sin_rope', 'xpos': True},
    {'past_context': 5},
    {'positional_embedding': 'rope', 'kv_repeat': 2},
    {'qk_layer_norm': True},
], ids=['rope', 'sin_rope_xpos', 'past_context', 'kv_repeat', 'qk_layer_norm'])
@pytest.mark.parametrize('with_prompt', [False, True], ids=['no_prompt', 'prompt'])
def test_static_tokens_equal_default(variant, with_prompt):
    lm = _lm(**variant)
    prompt = torch.randint(0, 12, (2, 3, 4)) if with_prompt else None
    kwargs = dict(prompt=prompt, num_samples=None if with_prompt else 2, max_gen_len=30, use_sampling=False)
    expected = lm.generate(**kwargs)
    lm.set_decode_options(static=True, window=8)
    assert torch.equal(lm.generate(**kwargs), expected)
    lm.set_decode_options()
    assert not lm.decode_options.enabled


class _NoHostSync(TorchDispatchMode):
    """Fails on the operations a CUDA graph cannot capture: reading a value back to the host."""
    FORBIDDEN = ('_local_scalar_dense', 'item', 'equal', 'is_nonzero', 'nonzero', 'masked_select')

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split('.')[0] in self.FORBIDDEN:
            raise AssertionError(f"host sync in a static decoding step: {func}")
        return func(*args, **(kwargs or {}))


def test_static_step_is_capturable(cases_dir):
    model = MusicGen.get_pretrained(str(cases_dir / 'musicgen_text_tiny'), device='cpu')
    lm = model.lm
    attributes, _ = model._prepare_tokens_and_attributes(['80s pop', None], None)
    conditions = attributes + ClassifierFreeGuidanceDropout(p=1.0)(attributes)
    condition_tensors = lm.condition_provider(lm.condition_provider.tokenize(conditions))
    tokens = torch.randint(0, lm.card, (2, lm.num_codebooks, 1))
    with torch.no_grad(), lm.streaming():
        runner = FixedShapeCFG(lm, condition_tensors, 3.0, steps=20, options=DecodeOptions(static=True, window=8))
        runner.start()
        runner.logits(tokens)  # first chunk: allocates the caches
        position = lm.transformer._streaming_state['position']
        before = lm.get_streaming_state()
        with _NoHostSync():
            logits = runner.logits(tokens)
        after = lm.get_streaming_state()
    assert logits.shape == (2, lm.num_codebooks, lm.card)
    assert int(position) == 2
    assert set(after) == set(before)
    # A replayed graph sees the tensors it was captured with: state must only change in place.
    # (The fuser's flag only marks that the first chunk was fed; the step never reads it.)
    replaced = [key for key in before if after[key] is not before[key] and not key.startswith('fuser.')]
    assert not replaced


class _RecordedGraphs:
    """CPU stand-in for `decoding.CudaGraphs`, with the contract that matters: capture runs the
    step's Python once and records its tensor operations (on the very tensors it touched);
    each replay runs only those operations. State kept on the Python side, or tensors replaced
    instead of updated in place, would be stale on replay, exactly as in a CUDA graph."""
    events: list = []

    def __init__(self, device):
        self.device = device

    def warm_up(self, step):
        self.events.append('warm_up')
        return step()

    def capture(self, step):
        self.events.append('capture')
        # make_fx runs the step while recording it (a CUDA capture does not): the first replay
        # returns that run's output instead of running the step a second time.
        first = []
        graph = make_fx(lambda: first.append(step()) or first[0])()

        def replay():
            self.events.append('replay')
            return first.pop().clone() if first else graph().clone()
        return replay


def test_graph_capture_and_replay_reproduce_golden_tokens(cases_dir, monkeypatch):
    monkeypatch.setattr(decoding, 'CudaGraphs', _RecordedGraphs)
    _RecordedGraphs.events = []
    results = run_case(cases_dir / 'musicgen_text_tiny', {'cuda_graph': True, 'window': 16})
    failures = [f"{name}: {detail}" for name, ok, detail in results if not ok]
    assert not failures, "\n".join(failures)
    events = _RecordedGraphs.events
    # Most steps are replays; each window is warmed up once then captured once per generate call.
    assert events.count('replay') > 10 * events.count('capture') > 0
    assert events.count('warm_up') == events.count('capture')


def test_decode_option_errors(cases_dir):
    with pytest.raises(InvalidArgumentError, match="window"):
        DecodeOptions(window=0)
    lm = _lm()
    with pytest.raises(InvalidArgumentError, match="either"):
        lm.set_decode_options(DecodeOptions(), static=True)
    with pytest.raises(RuntimeError, match="streaming"):
        lm.transformer.start_cache(10, 'cpu')
    with torch.no_grad(), lm.streaming():
        with pytest.raises(InvalidArgumentError, match="positive"):
            lm.transformer.start_cache(0, 'cpu')
        lm.transformer(torch.zeros(1, 2, 16))  # a first chunk on the default cache
        with pytest.raises(RuntimeError, match="before the first chunk"):
            lm.transformer.start_cache(10, 'cpu')
    lm.set_decode_options(cuda_graph=True)
    with pytest.raises(InvalidArgumentError, match="CUDA"):
        lm.generate(num_samples=1, max_gen_len=5)

    from audiocraft.models.lm_magnet import MagnetLMModel
    magnet_lm = MagnetLMModel(pattern_provider=DelayedPatternProvider(2), condition_provider=ConditioningProvider({}),
                              fuser=ConditionFuser({}), n_q=2, card=8, dim=16, num_heads=2, num_layers=1)
    with pytest.raises(InvalidArgumentError, match="whole sequences"):
        magnet_lm.set_decode_options(compile=True)
    magnet_lm.set_decode_options()  # the default stays allowed

    model = MusicGen.get_pretrained(str(cases_dir / 'musicgen_text_tiny'), device='cpu')
    with pytest.raises(InvalidArgumentError, match="CUDA device"):
        model.optimize_for_gpu()
    with pytest.raises(InvalidArgumentError, match="Unknown dtype"):
        model.optimize_for_gpu('fp8')
    with pytest.raises(InvalidArgumentError, match="fp32"):
        model.optimize_for_cpu('int8', compile=True)
    model.optimize_for_cpu('int8')
    model.lm.set_decode_options(compile=True)
    model.set_generation_params(duration=0.1)
    with pytest.raises(InvalidArgumentError, match="packed"):
        model.generate(['80s pop'])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need an NVIDIA GPU")
@pytest.mark.parametrize('dtype', ['fp32', 'fp16'])
def test_cuda_graph_tokens_match_eager(cases_dir, dtype):
    model = MusicGen.get_pretrained(str(cases_dir / 'musicgen_text_tiny'), device='cuda')
    model.optimize_for_gpu(dtype, cuda_graph=False)
    model.set_generation_params(use_sampling=False, duration=2.0, cfg_coef=3.0)
    expected = model.generate(['80s pop', 'calm piano'], return_tokens=True)[1]
    model.lm.set_decode_options(cuda_graph=True, window=32)
    tokens = model.generate(['80s pop', 'calm piano'], return_tokens=True)[1]
    agreement = (tokens == expected).float().mean().item()
    assert agreement == 1.0 if dtype == 'fp32' else agreement > 0.9
