"""Long runs and load: memory stays flat over many generations, and model instances used from two
threads at once give the tokens each gives alone (caches and streaming state are per instance)."""
import gc
import threading

import pytest
import torch

from audiocraft.models import MAGNeT, MusicGen

pytestmark = pytest.mark.usefixtures('single_thread')


def _rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; psutil elsewhere)."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * 4096
    except OSError:
        psutil = pytest.importorskip('psutil')
        return psutil.Process().memory_info().rss


def test_soak_200_generations_memory_stays_flat():
    torch.manual_seed(0)
    model = MusicGen.get_pretrained('debug', device='cpu')
    model.set_generation_params(duration=0.08, use_sampling=True, top_k=50)  # 2 frames: many calls, fast
    prompt = 0.1 * torch.randn(1, 1, 1280)
    steps = []
    model.set_custom_progress_callback(lambda done, total: steps.append(done))
    samples = []
    for call in range(200):
        if call % 2:
            wav = model.generate(['soak test'])
        else:
            wav = model.generate_continuation(prompt, 32000, ['soak test'])
        assert wav.shape[-1] > 0
        if call == 9:
            gc.collect()
            samples.append(_rss_bytes())
        elif call > 9 and call % 10 == 9:
            gc.collect()
            samples.append(_rss_bytes())
    baseline, peak = samples[0], max(samples)
    assert peak <= baseline * 1.05, f"memory grew from {baseline / 2**20:.1f} MB to {peak / 2**20:.1f} MB"
    # nothing accumulates on the model between calls (no leftover streaming state)
    assert all(not module._streaming_state for module in model.lm.modules() if hasattr(module, '_streaming_state'))
    assert len(steps) > 200


def _generate_tokens(model, prompts, results, key):
    torch.manual_seed(0)
    _, tokens = model.generate(prompts, return_tokens=True)
    results[key] = tokens


@pytest.mark.parametrize('cls, params', [
    (MusicGen, dict(duration=0.6, use_sampling=False)),
    (MAGNeT, dict(use_sampling=False, decoding_steps=[2, 1, 1, 1])),
])
def test_two_threads_two_instances_give_the_same_tokens_as_alone(cls, params):
    torch.manual_seed(1)
    first = cls.get_pretrained('debug', device='cpu')
    torch.manual_seed(2)
    second = cls.get_pretrained('debug', device='cpu')
    for model in (first, second):
        model.set_generation_params(**params)
    alone: dict = {}
    _generate_tokens(first, ['alone one', 'b'], alone, 'first')
    _generate_tokens(second, ['alone two'], alone, 'second')
    for _ in range(2):
        together: dict = {}
        threads = [threading.Thread(target=_generate_tokens, args=(first, ['alone one', 'b'], together, 'first')),
                   threading.Thread(target=_generate_tokens, args=(second, ['alone two'], together, 'second'))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert torch.equal(together['first'], alone['first'])
        assert torch.equal(together['second'], alone['second'])
