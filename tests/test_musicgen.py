"""Tests of the MusicGen / AudioGen generation API on tiny random (debug) models."""
import pytest
import torch

from audiocraft.models import AudioGen, BaseGenModel, MusicGen


pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope="module")
def musicgen() -> MusicGen:
    torch.manual_seed(0)
    return MusicGen.get_pretrained('debug', device='cpu')


@pytest.fixture(autouse=True)
def _reset(musicgen):
    musicgen.max_duration = 30
    musicgen.set_custom_progress_callback(None)
    musicgen.set_generation_params(duration=1.0, use_sampling=False, top_k=0)
    yield


def test_debug_model_properties(musicgen):
    assert isinstance(musicgen, BaseGenModel)
    assert (musicgen.sample_rate, musicgen.frame_rate, musicgen.audio_channels) == (32000, 25, 1)
    assert musicgen.max_duration == 30 and musicgen.device.type == 'cpu'
    default = MusicGen.get_pretrained('debug')  # device defaults to cuda if available, else cpu
    assert default.device.type == ('cuda' if torch.cuda.device_count() else 'cpu')
    assert default.duration == 15 and default.extend_stride == 18


def test_generate_returns_audio_and_tokens(musicgen):
    wav = musicgen.generate(['drums and bass', 'calm piano'])
    assert wav.shape == (2, 1, 32000)
    wav2, tokens = musicgen.generate(['drums and bass', 'calm piano'], return_tokens=True)
    assert tokens.shape == (2, 4, 25) and tokens.dtype == torch.long
    assert torch.equal(wav, wav2)  # greedy decoding is deterministic
    assert torch.allclose(musicgen.generate_audio(tokens), wav, atol=1e-6)


def test_generate_unconditional(musicgen):
    wav, tokens = musicgen.generate_unconditional(3, return_tokens=True)
    assert wav.shape == (3, 1, 32000) and tokens.shape == (3, 4, 25)
    assert ((tokens >= 0) & (tokens < 400)).all()


def test_generate_continuation_keeps_prompt_tokens(musicgen):
    prompt = torch.randn(2, 1, 8000) * 0.1
    wav, tokens = musicgen.generate_continuation(prompt, 32000, ['a', 'b'], return_tokens=True)
    prompt_tokens, _ = musicgen.compression_model.encode(prompt)
    assert tokens.shape == (2, 4, 25)
    assert torch.equal(tokens[..., :prompt_tokens.shape[-1]], prompt_tokens)
    # A [C, T] prompt gets a batch dimension; other sample rates are converted.
    _, tokens_2d = musicgen.generate_continuation(prompt[0], 32000, return_tokens=True)
    assert tokens_2d.shape == (1, 4, 25)
    _, resampled = musicgen.generate_continuation(torch.randn(1, 1, 4000) * 0.1, 16000, ['x'], return_tokens=True)
    assert resampled.shape == (1, 4, 25)
    stereo_prompt = torch.randn(1, 2, 8000) * 0.1  # converted to the model's single channel
    assert musicgen.generate_continuation(stereo_prompt, 32000).shape == (1, 1, 32000)


def test_extended_generation_past_max_duration(musicgen):
    musicgen.max_duration = 1.0
    musicgen.set_generation_params(duration=2.0, extend_stride=0.5, use_sampling=False)
    wav, tokens = musicgen.generate(['long one'], return_tokens=True)
    assert tokens.shape == (1, 4, 50) and wav.shape == (1, 1, 64000)
    # The first window is the plain generation of max_duration seconds.
    musicgen.set_generation_params(duration=1.0, use_sampling=False)
    _, first = musicgen.generate(['long one'], return_tokens=True)
    assert torch.equal(tokens[..., :25], first)


def test_progress_callback_and_printing(musicgen, capsys):
    calls = []
    musicgen.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    musicgen.generate(['x'], progress=True)
    assert calls and calls[-1][0] == calls[-1][1] == 25 + 3
    musicgen.set_custom_progress_callback(None)
    musicgen.generate(['x'], progress=True)
    captured = capsys.readouterr()
    assert captured.out == '' and '28/28' in captured.err  # a tqdm bar on stderr, not a bare counter
    calls.clear()
    # the custom callback fires whether or not progress=True
    musicgen.set_custom_progress_callback(lambda done, total: calls.append(done))
    musicgen.generate(['x'], progress=False)
    assert calls == list(range(1, 29))


def test_progress_covers_the_whole_generation_past_max_duration(musicgen):
    calls = []
    musicgen.set_custom_progress_callback(lambda done, total: calls.append((done, total)))
    old_max = musicgen.max_duration
    musicgen.max_duration = 1.0
    try:
        musicgen.set_generation_params(duration=2.0, extend_stride=0.5, use_sampling=False)
        musicgen.generate(['x'])
    finally:
        musicgen.max_duration = old_max
        musicgen.set_custom_progress_callback(None)
    # 50 tokens in windows of up to 25 advancing by 12: 25, 12, 12 and 1 new tokens, each
    # window taking 3 more steps for the delay pattern. One total from the first step on.
    assert {total for _, total in calls} == {(25 + 3) + (12 + 3) + (12 + 3) + (1 + 3)}
    assert [done for done, _ in calls] == list(range(1, 63))


def test_sampling_params_are_used(musicgen):
    musicgen.set_generation_params(duration=1.0, use_sampling=True, top_k=50, temperature=1.0)
    torch.manual_seed(3)
    _, a = musicgen.generate(['x', 'y'], return_tokens=True)
    torch.manual_seed(3)
    _, b = musicgen.generate(['x', 'y'], return_tokens=True)
    assert torch.equal(a, b)
    assert musicgen.generation_params == {'use_sampling': True, 'temp': 1.0, 'top_k': 50, 'top_p': 0.0,
                                          'cfg_coef': 3.0, 'two_step_cfg': False}


def test_generation_param_errors(musicgen):
    with pytest.raises(ValueError, match="duration must be positive"):
        musicgen.set_generation_params(duration=0)
    with pytest.raises(ValueError, match="extend_stride"):
        musicgen.set_generation_params(duration=40, extend_stride=30)
    musicgen.set_generation_params(duration=20, extend_stride=30)  # not used below max_duration: fine
    with pytest.raises(ValueError, match="top_k"):
        musicgen.set_generation_params(top_k=-1)
    musicgen.max_duration = 1.0
    musicgen.set_generation_params(duration=2.0, extend_stride=0.5)
    musicgen.extend_stride = 1.5  # set directly, bypassing the check
    with pytest.raises(ValueError, match="extend_stride"):
        musicgen.generate(['x'])


def test_input_errors(musicgen):
    with pytest.raises(ValueError, match="list of strings"):
        musicgen.generate('a single string')
    with pytest.raises(ValueError, match="empty"):
        musicgen.generate([])
    with pytest.raises(ValueError, match="string or None"):
        musicgen.generate([1, 2])
    with pytest.raises(ValueError, match="positive integer"):
        musicgen.generate_unconditional(0)
    prompt = torch.randn(2, 1, 8000)
    with pytest.raises(ValueError, match="2 prompts for 1 descriptions"):
        musicgen.generate_continuation(prompt, 32000, ['only one'])
    with pytest.raises(ValueError, match="3 dimensions"):
        musicgen.generate_continuation(torch.randn(1, 1, 1, 8000), 32000)
    with pytest.raises(ValueError, match="prompt_sample_rate"):
        musicgen.generate_continuation(prompt, 0)
    with pytest.raises(ValueError, match="torch.Tensor"):
        musicgen.generate_continuation([0.0] * 10, 32000)
    with pytest.raises(ValueError, match="Prompt is longer"):
        musicgen.generate_continuation(torch.randn(1, 1, 64000), 32000)
    with pytest.raises(RuntimeError, match="melody"):
        musicgen.generate_with_chroma(['x'], torch.randn(1, 1, 32000), 32000)
    with pytest.raises(ValueError, match="max_duration"):
        MusicGen('direct', musicgen.compression_model, musicgen.lm)  # no cfg to read it from


def test_unknown_model_names():
    with pytest.raises(FileNotFoundError):
        MusicGen.get_pretrained('/definitely/not/a/folder', device='cpu')
    with pytest.raises(FileNotFoundError, match="offline"):
        MusicGen.get_pretrained('facebook/musicgen-does-not-exist', device='cpu')
    with pytest.raises(ValueError, match="non-empty string"):
        MusicGen.get_pretrained('', device='cpu')
    with pytest.raises(FileNotFoundError):
        AudioGen.get_pretrained('/definitely/not/a/folder', device='cpu')


def test_audiogen_debug():
    torch.manual_seed(0)
    model = AudioGen.get_pretrained('debug', device='cpu')
    assert (model.sample_rate, model.max_duration, model.duration, model.extend_stride) == (16000, 10, 5, 2)
    model.set_generation_params(duration=0.5, use_sampling=False)
    wav, tokens = model.generate(['dog barking'], return_tokens=True)
    assert wav.shape == (1, 1, 12 * 640) and tokens.shape == (1, 4, 12)
    with pytest.raises(ValueError, match="extend_stride"):
        model.set_generation_params(duration=20, extend_stride=10)
