"""Hostile and careless inputs: one validator for generation parameters everywhere, and a clear
message (said before any long work) for each mistake a new user makes."""
import logging
import math
from pathlib import Path

import pytest
import torch

from audiocraft.__main__ import LONG_DURATION as CLI_LONG_DURATION
from audiocraft.__main__ import build_parser, main
from audiocraft.models import AudioGen, MAGNeT, MusicGen
from audiocraft.models.generation_params import LONG_DURATION, validate_generation_params

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def musicgen() -> MusicGen:
    return MusicGen.get_pretrained('debug', device='cpu')


@pytest.fixture(scope='module')
def magnet() -> MAGNeT:
    return MAGNeT.get_pretrained('debug', device='cpu')


BAD = [
    (dict(top_p=1.5), 'top_p must be between 0 and 1'),
    (dict(top_p=-0.1), 'top_p must be between 0 and 1'),
    (dict(temperature=math.nan), 'temperature must be a finite number'),
    (dict(temperature=-1.0), 'temperature must be >= 0'),
    (dict(top_k=-1), 'top_k must be a whole number >= 0'),
    (dict(top_k=2.5), 'top_k must be a whole number >= 0'),
    (dict(top_k='50'), 'top_k must be a whole number'),
    (dict(temperature='hot'), 'temperature must be a number'),
]
BAD_AR = BAD + [
    (dict(cfg_coef=-3.0), 'cfg_coef must be >= 0'),
    (dict(cfg_coef=math.inf), 'cfg_coef must be a finite number'),
    (dict(duration=math.inf), 'duration must be a finite number'),
    (dict(duration=math.nan), 'duration must be a finite number'),
    (dict(duration='2'), "duration must be a number .*got str '2'; pass duration=2 without quotes"),
    (dict(duration=0), 'duration must be positive'),
    (dict(extend_stride=-1.0), 'extend_stride must be positive'),
]
BAD_MAGNET = BAD + [
    (dict(max_cfg_coef=-3.0), 'max_cfg_coef must be >= 0'),
    (dict(min_cfg_coef=math.nan), 'min_cfg_coef must be a finite number'),
    (dict(decoding_steps=[20, 0, 10, 10]), 'decoding_steps: each step count must be a whole number >= 1'),
    (dict(decoding_steps='20'), 'decoding_steps must be a list'),
]


@pytest.mark.parametrize('params, message', BAD_AR)
def test_autoregressive_models_refuse_bad_params(musicgen, params, message):
    with pytest.raises(ValueError, match=message):
        musicgen.set_generation_params(**params)
    with pytest.raises(ValueError, match=message):
        validate_generation_params(**params)


@pytest.mark.parametrize('params, message', BAD_MAGNET)
def test_magnet_refuses_the_same_bad_params(magnet, params, message):
    with pytest.raises(ValueError, match=message):
        magnet.set_generation_params(**params)


def test_valid_edge_values_are_accepted(musicgen, magnet):
    musicgen.set_generation_params(duration=1, top_k=0, top_p=1.0, temperature=0.0, cfg_coef=0.0)
    assert musicgen.generation_params['temp'] == 0.0 and musicgen.duration == 1.0
    musicgen.set_generation_params(duration=2.0, top_k=250.0)  # a whole float is a whole number
    assert musicgen.generation_params['top_k'] == 250 and isinstance(musicgen.generation_params['top_k'], int)
    magnet.set_generation_params(temperature=0.0, top_p=1.0, max_cfg_coef=0.0, min_cfg_coef=0.0)
    with pytest.raises(ValueError, match='Unknown generation parameter'):
        validate_generation_params(temprature=1.0)


def test_every_entry_point_uses_the_one_validator():
    import inspect
    import demos.common
    import demos.magnet_app
    import demos.musicgen_app
    from audiocraft import __main__ as cli
    from audiocraft.models import genmodel, magnet
    for module in (cli, genmodel, magnet, demos.common):
        assert 'validate_generation_params(' in inspect.getsource(module), module
    for app in (demos.musicgen_app, demos.magnet_app):
        assert 'check_generation_params(' in inspect.getsource(app)
    assert CLI_LONG_DURATION == LONG_DURATION


def test_demo_apps_refuse_bad_params_with_the_same_message():
    gr = pytest.importorskip('gradio')
    from demos.magnet_app import MagnetApp
    from demos.musicgen_app import MusicGenApp
    app = MusicGenApp(model_path='debug', device='cpu')
    # The MusicGen app streams (a generator, as Gradio expects): the check fails at its first update.
    with pytest.raises(gr.Error, match='top_p must be between 0 and 1'):
        next(app.predict('debug', 'x', None, 1.0, 250, 1.5, 1.0, 3.0, -1))
    with pytest.raises(gr.Error, match='cfg_coef must be >= 0'):
        next(app.predict('debug', 'x', None, 1.0, 250, 0.0, 1.0, -3.0, -1))
    with pytest.raises(gr.Error, match='temperature must be a finite number'):
        next(app.predict('debug', 'x', None, 1.0, 250, 0.0, math.nan, 3.0, -1))
    magnet_app = MagnetApp(model_path='debug', device='cpu')
    with pytest.raises(gr.Error, match='temperature must be >= 0'):
        magnet_app.predict('debug', 'x', -1.0, 0.9, 10.0, 1.0, 2, 2, 2, 2, 'nonoverlap', -1)


def test_long_duration_logs_an_estimate(musicgen, caplog):
    with caplog.at_level(logging.WARNING):
        musicgen.set_generation_params(duration=10_000)
    assert 'long generation' in caplog.text and 'decoding steps' in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        musicgen.set_generation_params(duration=LONG_DURATION)
    assert caplog.text == ''


def test_defaults_are_documented_and_reset(musicgen):
    # AudioCraft's semantics, documented: each call resets what it is not given.
    musicgen.set_generation_params(duration=1)
    musicgen.set_generation_params(top_k=50)
    assert musicgen.duration == 30
    assert 'resets' in MusicGen.set_generation_params.__doc__
    assert AudioGen.set_generation_params.__doc__ and 'resets' in AudioGen.set_generation_params.__doc__


def test_magnet_debug_model_generates(magnet):
    assert magnet.name == 'debug' and magnet.duration == 10
    magnet.set_generation_params(decoding_steps=[2, 1, 1, 1])
    wav = magnet.generate(['a b'])
    assert wav.shape[:2] == (1, 1) and torch.isfinite(wav).all()


def test_melody_and_prompt_errors(musicgen, cases_dir):
    melody_model = MusicGen.get_pretrained(str(cases_dir / 'musicgen_melody_tiny'), device='cpu')
    melody_model.set_generation_params(duration=0.2)
    nan_melody = torch.zeros(1, 1, 3200)
    nan_melody[..., 10] = math.nan
    with pytest.raises(ValueError, match='Melody 0 contains NaN'):
        melody_model.generate_with_chroma(['x'], nan_melody, 32000)
    with pytest.raises(ValueError, match='Melody 0 is empty'):
        melody_model.generate_with_chroma(['x'], torch.zeros(1, 1, 0), 32000)
    with pytest.raises(ValueError, match='Melody 1 is empty'):
        melody_model.generate_with_chroma(['x', 'y'], [torch.zeros(1, 10), torch.zeros(1, 0)], 32000)
    nan_prompt = torch.zeros(1, 1, 1600)
    nan_prompt[..., 3] = math.inf
    with pytest.raises(ValueError, match='prompt contains NaN or infinite'):
        musicgen.generate_continuation(nan_prompt, 32000)


def test_missing_relative_path_says_no_such_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(FileNotFoundError) as info:
        MusicGen.get_pretrained('my_models/musicgen', device='cpu')
    message = str(info.value)
    assert 'no such file or folder' in message and str(tmp_path / 'my_models' / 'musicgen') in message
    assert 'hf download my_models/musicgen' in message and 'huggingface-cli' not in message


def test_audio_write_names_the_path_and_warns_on_double_suffix(tmp_path, caplog):
    from audiocraft.data.audio import audio_write
    wav = torch.full((1, 800), 0.1)
    target = Path('/proc/audiocraft_cannot_write_here')
    with pytest.raises(OSError, match=str(target) + '.wav'):
        audio_write(target, wav, 16000)
    with caplog.at_level(logging.WARNING):
        path = audio_write(tmp_path / 'y.wav', wav, 16000)
    assert path.name == 'y.wav.wav' and "'.wav'" in caplog.text and 'add_suffix=False' in caplog.text


def test_long_prompt_is_truncated_with_one_warning(caplog):
    from audiocraft.modules.conditioners.text import T5Conditioner
    conditioner = T5Conditioner('t5-small', output_dim=8, finetune=False, device='cpu')
    with caplog.at_level(logging.WARNING):
        tokens = conditioner.tokenize(['word ' * 2000, 'short'])
    assert tokens['input_ids'].shape[-1] == 512
    assert 'Token indices sequence length' not in caplog.text
    assert caplog.text.count('truncated') == 1 and '[0]' in caplog.text
    embeds, mask = conditioner(tokens)
    assert embeds.shape[:2] == (2, 512) and mask[1].sum() < 512


# ---- command line: every check before loading or generating ----

def _error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_cli_checks_the_output_before_generating(tmp_path, capsys, monkeypatch):
    import audiocraft.__main__ as cli
    loaded = []
    monkeypatch.setattr(cli, 'load_model', lambda *args: loaded.append(args))
    existing = tmp_path / 'file.txt'
    existing.write_text('x')
    assert main(['generate', '--model', 'debug', '--output', str(existing), 'x']) == 2
    assert 'is an existing file' in _error(capsys)
    assert main(['generate', '--model', 'debug', '--output', str(existing / 'sub'), 'x']) == 2
    assert 'is a file' in _error(capsys)
    read_only = tmp_path / 'read_only'
    read_only.mkdir()
    real_access = cli.os.access
    monkeypatch.setattr(cli.os, 'access', lambda path, mode: Path(path) != read_only and real_access(path, mode))
    assert main(['generate', '--model', 'debug', '--output', str(read_only / 'out'), 'x']) == 2
    assert 'is read-only' in _error(capsys)
    from audiocraft.data import audio
    monkeypatch.setattr(audio, '_has_av_encoder', lambda name: False)
    monkeypatch.setattr(audio.shutil, 'which', lambda name: None)
    out = tmp_path / 'ogg_out'
    assert main(['generate', '--model', 'debug', '--format', 'ogg', '--output', str(out), 'x']) == 2
    assert 'ffmpeg' in _error(capsys)
    assert not out.exists() and loaded == []


def test_cli_long_duration_needs_confirmation(tmp_path, capsys, monkeypatch):
    import io
    import audiocraft.__main__ as cli
    monkeypatch.setattr(cli, 'load_model', lambda *args: pytest.fail('loaded before confirming'))
    assert main(['generate', '--model', 'debug', '--duration', '1000', '--output', str(tmp_path), 'x']) == 2
    assert 'Pass --yes to confirm' in _error(capsys)
    stdin = io.StringIO('n\n')
    stdin.isatty = lambda: True  # type: ignore
    monkeypatch.setattr(cli.sys, 'stdin', stdin)
    assert main(['generate', '--model', 'debug', '--duration', '1000', '--output', str(tmp_path), 'x']) == 2
    err = capsys.readouterr().err
    assert 'Continue? [y/N]' in err and 'cancelled' in err


def test_cli_prints_the_duration_and_help_has_no_none_default(tmp_path, capsys):
    assert main(['generate', '--model', 'debug', '--output', str(tmp_path), '--no-progress',
                 '--duration', '0.2', 'x']) == 0
    assert 'Generating 0.2 s of audio per sample' in capsys.readouterr().err
    parser = build_parser()
    gen = parser._subparsers._group_actions[0].choices['generate']
    text = gen.format_help()
    assert '(default: None)' not in text and "(default: the model's)" in text
    assert '(default: wav)' in text  # real defaults are still shown
