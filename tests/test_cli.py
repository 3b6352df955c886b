"""Tests of the command line interface ``python -m audiocraft generate``."""
import os
import subprocess
import sys
import typing as tp
import wave
from pathlib import Path

import pytest
import torch

from audiocraft.__main__ import build_parser, main, output_stem, resolve_model

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / 'tests' / 'reference' / 'cases'


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, '-m', 'audiocraft', *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _wav_info(path: Path) -> tp.Tuple[int, int, int]:
    with wave.open(str(path)) as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getnframes()


def _error_line(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert lines, 'no error message'
    assert 'Traceback' not in captured.err
    assert captured.out == ''
    return lines[-1]


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['generate', '--help'])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ('--model', '--duration', '--top-k', '--top-p', '--temperature', '--cfg-coef', '--greedy',
                   '--seed', '--melody', '--continuation', '--output', '--format', '--strategy', '--family',
                   '--device', '--prompts-file'):
        assert option in out, option
    assert 'facebook/musicgen-small' in out


def test_defaults():
    args = build_parser().parse_args(['generate', 'a prompt'])
    assert args.prompts == ['a prompt']
    assert args.model == 'facebook/musicgen-small'
    assert args.family == 'auto' and args.device == 'auto'
    assert args.format == 'wav' and args.strategy == 'loudness'
    assert args.duration is None and args.seed is None and not args.greedy
    assert args.top_k is None and args.top_p is None and args.temperature is None and args.cfg_coef is None
    assert args.output == Path('outputs') and args.num_samples == 1


def test_no_command_prints_usage(capsys):
    assert main([]) == 2
    assert 'generate' in capsys.readouterr().err


def test_writes_wav_with_debug_model(tmp_path):
    """The same command line as `make demo`: prints the path of a valid WAV file."""
    result = _run_cli('generate', '--model', 'debug', '--duration', '0.5', '--output', str(tmp_path),
                      'warm lo-fi piano with soft drums')
    assert result.returncode == 0, result.stderr
    paths = result.stdout.split()
    assert len(paths) == 1
    path = Path(paths[0])
    assert path.suffix == '.wav' and path.parent == tmp_path and path.exists()
    assert path.name == output_stem(0, 'warm lo-fi piano with soft drums') + '.wav'
    rate, channels, frames = _wav_info(path)
    assert channels == 1 and rate > 0
    assert abs(frames / rate - 0.5) < 0.05


def test_bad_model_name_is_one_line_without_traceback(tmp_path):
    result = _run_cli('generate', '--model', 'facebook/no-such-model', '--duration', '1',
                      '--output', str(tmp_path), 'jazz')
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('audiocraft generate: error:')
    assert 'facebook/no-such-model' in last and 'folder' in last
    assert result.stdout == '' and not list(tmp_path.iterdir())


@pytest.mark.parametrize('argv, expected', [
    (['--duration', '0'], '--duration: duration must be positive'),
    (['--duration', '-3'], '--duration: duration must be positive'),
    (['--duration', 'inf'], '--duration: duration must be a finite number'),
    (['--duration', '10000'], 'Pass --yes to confirm'),
    (['--melody', 'missing_melody.wav'], "--melody file 'missing_melody.wav' does not exist"),
    (['--continuation', 'missing.wav'], "--continuation file 'missing.wav' does not exist"),
    (['--model', './no/such/folder'], "'./no/such/folder' does not exist"),
    (['--prompts-file', 'missing_prompts.txt'], "prompts file 'missing_prompts.txt' does not exist"),
    (['--num-samples', '0'], '--num-samples must be at least 1'),
    (['--top-p', '1.5'], '--top-p: top_p must be between 0 and 1'),
    (['--temperature', '-1'], '--temperature: temperature must be >= 0'),
    (['--temperature', 'nan'], '--temperature: temperature must be a finite number'),
    (['--cfg-coef', '-3'], '--cfg-coef: cfg_coef must be >= 0'),
    (['--top-k', '-1'], '--top-k: top_k must be a whole number >= 0'),
])
def test_clear_errors(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(['generate', '--model', 'debug', *argv, 'some prompt']) == 2
    line = _error_line(capsys)
    assert line.startswith('audiocraft generate: error:') and expected in line, line


def test_empty_prompts_file_and_folder_without_checkpoint(tmp_path, capsys):
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('# only a comment\n\n')
    assert main(['generate', '--model', 'debug', '--prompts-file', str(prompts)]) == 2
    assert 'holds no prompt' in _error_line(capsys)
    empty = tmp_path / 'empty_model'
    empty.mkdir()
    assert main(['generate', '--model', str(empty), 'x']) == 2
    assert 'has no state_dict.bin' in _error_line(capsys)


def test_melody_needs_a_melody_model(tmp_path, capsys):
    melody = tmp_path / 'melody.wav'
    _write_tone(melody, seconds=0.5)
    code = main(['generate', '--model', str(CASES / 'musicgen_text_tiny'), '--duration', '0.5',
                 '--melody', str(melody), '--output', str(tmp_path / 'out'), 'x'])
    assert code == 2
    assert 'takes no melody' in _error_line(capsys)


def test_family_detection():
    assert resolve_model(str(CASES / 'magnet_tiny'))[1] == 'magnet'
    assert resolve_model(str(CASES / 'musicgen_text_tiny'))[1] == 'musicgen'
    assert resolve_model('facebook/audiogen-medium')[1] == 'audiogen'
    assert resolve_model('facebook/audio-magnet-small')[1] == 'magnet'
    assert resolve_model('small')[1] == 'musicgen'
    assert resolve_model(str(CASES / 'magnet_tiny'), 'musicgen')[1] == 'musicgen'


def test_seed_and_prompts_file_give_reproducible_outputs(tmp_path, capsys):
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('first prompt\n# skipped\n\nsecond prompt\n')
    outputs = []
    for run in ('a', 'b'):
        out = tmp_path / run
        code = main(['generate', '--model', str(CASES / 'musicgen_text_tiny'), '--duration', '0.3',
                     '--seed', '7', '--prompts-file', str(prompts), '--output', str(out), '--no-progress'])
        assert code == 0
        printed = capsys.readouterr().out.split()
        assert [Path(p).name for p in printed] == ['00_first_prompt.wav', '01_second_prompt.wav']
        outputs.append([Path(p).read_bytes() for p in printed])
    assert outputs[0] == outputs[1]


def test_magnet_model_and_fixed_length(tmp_path, capsys):
    out = tmp_path / 'out'
    code = main(['generate', '--model', str(CASES / 'magnet_tiny'), '--decoding-steps', '2,1,1,1',
                 '--greedy', '--format', 'flac', '--output', str(out), 'disco'])
    assert code == 0
    captured = capsys.readouterr()
    (path,) = [Path(p) for p in captured.out.split()]
    assert path.suffix == '.flac' and path.stat().st_size > 0
    assert 'generating' in captured.err  # the progress bar
    code = main(['generate', '--model', str(CASES / 'magnet_tiny'), '--duration', '5', '--output', str(out), 'x'])
    assert code == 2
    assert 'fixed length' in _error_line(capsys)


def test_continuation_keeps_total_duration(tmp_path, capsys):
    prompt = tmp_path / 'prompt.wav'
    _write_tone(prompt, seconds=0.2)
    code = main(['generate', '--model', str(CASES / 'musicgen_text_tiny'), '--duration', '0.5', '--greedy',
                 '--continuation', str(prompt), '--output', str(tmp_path / 'out'), '--no-progress'])
    assert code == 0
    (path,) = [Path(p) for p in capsys.readouterr().out.split()]
    assert path.name == '00_unconditional.wav'
    rate, _, frames = _wav_info(path)
    assert abs(frames / rate - 0.5) < 0.05
    code = main(['generate', '--model', str(CASES / 'musicgen_text_tiny'), '--duration', '0.1',
                 '--continuation', str(prompt), '--output', str(tmp_path / 'out'), 'x'])
    assert code == 2
    assert 'must be longer' in _error_line(capsys)


def _write_tone(path: Path, seconds: float, sample_rate: int = 32000) -> None:
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    samples = (0.3 * torch.sin(2 * torch.pi * 440 * t) * 32767).to(torch.int16)
    with wave.open(str(path), 'wb') as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.numpy().tobytes())
