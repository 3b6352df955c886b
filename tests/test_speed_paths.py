"""The optimised inference paths compute what the plain ones do (no timing assertions here).

- the kernels of `audiocraft.modules.optimized` (swapped into plain nn.Linear models) vs `F.linear`,
  and the per-model choice among the exact ones;
- generation with the KV cache vs recomputing the whole prefix at every step;
- opt-in packed weights (`optimize_for_cpu`): 'fp16' is exact up to summation order for
  float16-representable weights (as released checkpoints are), 'bf16' and 'int8' stay within
  the tolerances documented in docs/MUSICGEN.md ("Performance");
- loading memory-maps the checkpoint but never keeps references into the file;
- the benchmark suite runs end to end in its quick mode.
"""
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from audiocraft.models import MusicGen
from audiocraft.models.loaders import load_lm_model
from audiocraft.models.decoding import cfg_logits
from audiocraft.modules import optimized
from audiocraft.modules.conditioners import ClassifierFreeGuidanceDropout, ConditioningAttributes

# Documented tolerances of the reduced precisions on logits: max |error| / max |fp32 logit|.
RELATIVE_TOLERANCE = {'fp16': 1e-5, 'bf16': 3e-2, 'int8': 1.5e-1}


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope="module")
def musicgen(cases_dir):
    model = MusicGen.get_pretrained(str(cases_dir / 'musicgen_text_tiny'), device='cpu')
    yield model
    model.optimize_for_cpu('fp32')


def _greedy_tokens(model: MusicGen, descriptions=('80s pop', 'calm piano'), duration: float = 0.5):
    model.set_generation_params(use_sampling=False, duration=duration, cfg_coef=3.0)
    return model.generate(list(descriptions), return_tokens=True)[1]


def _swapped(layer: torch.nn.Linear, kernel: str) -> optimized.OptimizedLinear:
    holder = torch.nn.Sequential(layer)
    optimized.optimize_linears(holder, kernel=kernel)
    return holder[0]


@pytest.mark.parametrize('kernel', ['onednn', 'f_linear', 'fp16'])
def test_exact_kernels_match_f_linear(kernel):
    torch.manual_seed(0)
    plain = torch.nn.Linear(64, 96)
    with torch.no_grad():
        plain.weight.copy_(plain.weight.half().float())  # float16-representable, as released weights
    layer = _swapped(torch.nn.Linear(64, 96), kernel)
    layer.weight, layer.bias = plain.weight, plain.bias
    for shape in [(1, 64), (2, 1, 64), (4, 3, 64), (40, 64)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            out = layer(x)
        assert torch.allclose(out, F.linear(x, plain.weight, plain.bias), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        x = torch.randn(64, 2).t()  # non-contiguous
        assert torch.allclose(layer(x), F.linear(x, plain.weight, plain.bias), atol=1e-5)
        assert layer(torch.randn(0, 64)).shape == (0, 96)
        with torch.autocast('cpu', dtype=torch.bfloat16):  # mixed precision stays autocast's business
            assert layer(torch.randn(2, 64)).dtype == torch.bfloat16


def test_swapped_layers_keep_parameters_state_dict_and_autograd():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    kernel, _ = optimized.optimize_linears(model, 'fp32')
    assert kernel in ('onednn', 'f_linear') and isinstance(model[0], optimized.OptimizedLinear)
    assert list(model.parameters()) == params and list(model.state_dict()) == list(state)
    x = torch.randn(2, 8, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and model[0].weight.grad is not None
    assert optimized.restore_linears(model) == 2 and type(model[0]) is torch.nn.Linear
    assert list(model.parameters()) == params


def test_auto_picks_fp16_only_for_float16_representable_weights():
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    assert 'fp16' not in optimized.exact_kernels(model)  # random float32 weights: fp16 is not exact
    with torch.no_grad():
        model[0].weight.copy_(model[0].weight.half().float())
        model[0].bias.copy_(model[0].bias.half().float())
    if optimized.fbgemm_available():
        assert 'fp16' in optimized.exact_kernels(model)
    kernel, timings = optimized.optimize_linears(model, 'auto')
    assert kernel in optimized.EXACT_KERNELS and kernel == min(timings, key=timings.get)
    forced, _ = optimized.optimize_linears(model, kernel='f_linear')
    assert forced == 'f_linear' and model[0].kernel == 'f_linear'


def test_default_path_kernel_is_logged_and_forcible(musicgen):
    assert musicgen.linear_kernel in ('onednn', 'f_linear')  # the golden case is stored in float32
    fast = _greedy_tokens(musicgen)
    try:
        musicgen.optimize_for_cpu(kernel='f_linear')
        assert musicgen.linear_kernel == 'f_linear'
        assert torch.equal(fast, _greedy_tokens(musicgen))
    finally:
        musicgen.optimize_for_cpu('auto')


def test_kv_cache_matches_full_recomputation(musicgen):
    """Greedy CFG decoding with the streaming cache equals re-running the whole prefix each step."""
    lm = musicgen.lm
    cached = _greedy_tokens(musicgen, duration=0.3)
    attributes, _ = musicgen._prepare_tokens_and_attributes(['80s pop', 'calm piano'], None)
    conditions = attributes + ClassifierFreeGuidanceDropout(p=1.0)(attributes)
    with torch.no_grad():
        cfg_conditions = lm.condition_provider(lm.condition_provider.tokenize(conditions))
        B, K, T = len(attributes), lm.num_codebooks, cached.shape[-1]
        pattern = lm.pattern_provider.get_pattern(T)
        codes = torch.full((B, K, T), -1, dtype=torch.long)
        sequence, _, mask = pattern.build_pattern_sequence(codes, lm.special_token_id)
        for offset in range(pattern.get_first_step_with_timesteps(0), sequence.shape[-1]):
            # No streaming(): every call recomputes all steps before `offset` from scratch.
            logits = cfg_logits(lm, sequence[..., :offset], cfg_conditions, 3.0)
            next_token = lm._sample_from_logits(logits, use_sampling=False, temp=1.0, top_k=0, top_p=0.0)
            next_token = torch.where(mask[..., offset:offset + 1], next_token, lm.special_token_id)
            sequence[..., offset:offset + 1] = next_token
        recomputed, _, _ = pattern.revert_pattern_sequence(sequence, special_token=-1)
    assert torch.equal(recomputed[..., :T], cached)


def _relative_logit_error(lm, precision: str) -> float:
    torch.manual_seed(1)
    codes = torch.randint(0, lm.card, (2, lm.num_codebooks, 20))
    attributes = [ConditioningAttributes(text={'description': d}) for d in ['80s pop', None]]
    with torch.no_grad():
        optimized.restore_linears(lm)
        ref = lm.compute_predictions(codes, attributes).logits
        optimized.optimize_linears(torch.nn.ModuleList([lm.transformer, lm.linears]), precision)
        out = lm.compute_predictions(codes, attributes).logits
        optimized.restore_linears(lm)
    valid = ~torch.isnan(ref)
    return ((out - ref)[valid].abs().max() / ref[valid].abs().max()).item()


@pytest.mark.parametrize('precision', ['fp16', 'bf16', 'int8'])
def test_reduced_precision_logits_within_tolerance(cases_dir, precision):
    lm = load_lm_model(cases_dir / 'musicgen_text_tiny', device='cpu')
    with torch.no_grad():  # as released: float16-representable weights
        for param in lm.parameters():
            param.copy_(param.half().float())
    error = _relative_logit_error(lm, precision)
    assert 0 < error <= RELATIVE_TOLERANCE[precision] or (precision == 'fp16' and error == 0), error


def test_fp16_generation_tokens_equal_fp32(musicgen):
    with torch.no_grad():
        for param in musicgen.lm.parameters():
            param.copy_(param.half().float())  # released weights are float16
    reference = _greedy_tokens(musicgen)
    musicgen.optimize_for_cpu('fp16')
    try:
        assert torch.equal(_greedy_tokens(musicgen), reference)
        # Weights now float16-representable: the default path may pick the fp16 kernel, exactly.
        musicgen.optimize_for_cpu('auto')
        assert torch.equal(_greedy_tokens(musicgen), reference)
    finally:
        musicgen.optimize_for_cpu('fp32')


def test_bf16_and_int8_generation_then_back_to_fp32(musicgen):
    reference = _greedy_tokens(musicgen)
    for precision in ['bf16', 'int8']:
        musicgen.optimize_for_cpu(precision)
        tokens = _greedy_tokens(musicgen)
        assert tokens.shape == reference.shape
        assert ((tokens >= 0) & (tokens < musicgen.lm.card)).all(), precision
        # Tiny random models have near-tied logits, so agreement with fp32 is only reported by the
        # benchmark (`token_agreement_vs_fp32`); accuracy is bounded by the logits test above.
        assert musicgen.lm.linears[0].kernel == precision
        musicgen.optimize_for_cpu('fp32')
        assert musicgen.lm.linears[0].kernel in ('onednn', 'f_linear')
        assert torch.equal(_greedy_tokens(musicgen), reference)


def test_packed_weights_follow_parameter_updates():
    torch.manual_seed(0)
    layer = _swapped(torch.nn.Linear(64, 32).eval(), 'fp16')
    x = torch.randn(3, 64)
    with torch.no_grad():
        layer(x)  # packs
        layer.weight.mul_(2.0)  # in-place update after packing
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-3)
        layer.weight = torch.nn.Parameter(torch.randn(32, 64))  # replaced parameter
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-2)
    # Under autograd the float32 parameters are used: gradients flow as usual.
    layer(x).sum().backward()
    assert layer.weight.grad is not None


def test_optimize_for_cpu_rejects_bad_precision(musicgen):
    with pytest.raises(ValueError, match='precision'):
        musicgen.optimize_for_cpu('fp8')
    with pytest.raises(ValueError, match='kernel'):
        musicgen.optimize_for_cpu(kernel='mkl')
    with pytest.raises(ValueError, match='precision'):
        optimized.optimize_linears(musicgen.lm, 'float16')
    assert musicgen.optimize_for_cpu('fp32') is musicgen


def test_loaded_weights_do_not_alias_the_checkpoint_file(cases_dir, tmp_path):
    folder = tmp_path / 'model'
    shutil.copytree(cases_dir / 'musicgen_text_tiny', folder)
    lm = load_lm_model(folder, device='cpu')
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    path = folder / 'state_dict.bin'
    size = path.stat().st_size
    with open(path, 'r+b') as f:  # overwrite the file in place: a memory map would see this
        f.write(b'\0' * size)
    for key, value in lm.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_benchmark_quick_mode(tmp_path):
    from benchmarks import run
    out = tmp_path / 'results.json'
    results = run.main(['--quick', '--cache-dir', str(tmp_path / 'cache'), '--out', str(out),
                        '--precisions', 'fp32,int8', '--modes', 'greedy', '--threads', str(torch.get_num_threads())])
    saved = json.loads(out.read_text())
    assert saved['results'] == results['results']
    sections = {row['section'] for row in saved['results']}
    assert sections == {'generate', 'magnet', 'codec', 'load'}
    generate = [row for row in saved['results'] if row['section'] == 'generate']
    assert {row['precision'] for row in generate} == {'fp32', 'int8'}
    assert all(row['steps_per_s'] > 0 and row['ar_steps'] == 53 for row in generate)
    assert 0 <= generate[-1]['token_agreement_vs_fp32'] <= 1
    with pytest.raises(SystemExit):
        run.main(['--quick', '--sections', 'nope'])
    # GPU-only or CPU-only choices are refused up front, with the valid ones named.
    for bad in (['--decode', 'cudagraph'], ['--decode', 'jit'], ['--precisions', 'fp8']):
        with pytest.raises(SystemExit):
            run.parse_args(['--quick'] + bad)


def test_no_custom_op_at_import_and_compile_op_on_demand():
    import subprocess
    import sys
    code = ("import torch, audiocraft.models\n"
            "ns = getattr(torch.ops, 'audiocraft', None)\n"
            "print(ns is not None and hasattr(ns, 'onednn_linear'))\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == 'False'
    optimized.register_compile_op()
    optimized.register_compile_op()  # idempotent
    x, weight, bias = torch.randn(2, 8), torch.randn(4, 8), torch.randn(4)
    assert torch.allclose(torch.ops.audiocraft.onednn_linear(x, weight, bias), F.linear(x, weight, bias), atol=1e-5)
