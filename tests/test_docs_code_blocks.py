"""Every code block of README.md and docs/*.md is either executed here or explicitly not run.

Python blocks of one file run in order in one namespace, in a temporary folder holding a copy of
the repository's `assets/` (`assets/melody.wav`, `assets/prompt.wav`, shipped for the docs'
examples). Released model names are
mapped to the tiny offline models of tests/reference/cases (see `tiny_model_for`: the test
replaces the `get_pretrained` of MusicGen, AudioGen, MAGNeT and CompressionModel by a wrapper
that maps the name, then calls the real one), and requested durations are capped to
`MAX_DURATION` seconds so the blocks run in seconds on CPU (a continuation then gets
`MAX_DURATION` seconds past its prompt).

Shell blocks are run line by line with bash (in the same kind of temporary folder, with this
interpreter first on PATH) unless the line starts with one of the `NOT_RUN` prefixes, each of
which carries the reason it is not run here.
"""
import os
import re
import shutil
import subprocess
import sys
import typing as tp
from pathlib import Path

import pytest
import torch

from audiocraft.models import AudioGen, CompressionModel, MAGNeT, MusicGen

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / 'tests' / 'reference' / 'cases'
DOCS = [ROOT / 'README.md'] + sorted((ROOT / 'docs').glob('*.md'))
MAX_DURATION = 0.5  # seconds
FENCE = re.compile(r'^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$', re.MULTILINE | re.DOTALL)
PYTHON = ('python', 'py')
SHELL = ('bash', 'shell', 'sh', 'console')

NOT_RUN = {
    'make demo': 'generates 8 s with the default model or the shipped demo model (tests/test_demo_model.py '
                 'loads it; tests/test_cli.py covers the command); make may also reinstall the venv',
    'make test': 'would run this test suite from inside itself',
    'make check-reference': 'runs the reference checker over every case: minutes of CPU, its own make target',
    'make lint': 'lint is a separate CI step',
    'make bench': 'benchmarks write ~5 GB of random checkpoints and take minutes',
    'dora ': 'trains models (a minute for the smallest debug run, days for real ones); solvers have their own tests',
    'hf download': 'needs the network (Hugging Face Hub)',
    'python -m demos.': 'starts a long-running web server; tests/test_demos_browser.py drives the demos',
    'audiocraft generate --model facebook/': 'downloads released weights from the Hugging Face Hub',
    'HF_HUB_OFFLINE=1 audiocraft generate --model checkpoints/': 'needs the weights downloaded by `hf download`',
    'python -m audiocraft.data.audio_dataset /path/to/': 'placeholder paths for the user\'s own audio',
    'python -m audiocraft.data.synth_music --out dataset/synth --num-samples 2000':
        'writes 2000 clips (a minute or more); tests/test_synth_music.py runs the generator at small size',
    'python -m audiocraft.metrics.demo_eval': 'generates 32 clips of 8 s with the demo model (minutes); '
                                              'tests/test_demo_model.py measures a few',
}


def code_blocks(path: Path) -> tp.List[tp.Tuple[str, str, int]]:
    """(language, code, line number) of each fenced block of a Markdown file."""
    text = path.read_text()
    return [(m.group(1).lower(), m.group(2), text.count('\n', 0, m.start()) + 1) for m in FENCE.finditer(text)]


def shell_commands(code: str) -> tp.List[str]:
    """Commands of a shell block: continuation lines joined, blank and comment lines dropped."""
    joined = re.sub(r'\\\n\s*', ' ', code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith('#')]


def tiny_model_for(name: str) -> str:
    """The tiny offline stand-in for a released model name (local paths that exist are kept)."""
    if Path(name).exists() or name.startswith('debug'):
        return name
    lowered = name.lower()
    if 'magnet' in lowered:
        return str(CASES / 'magnet_tiny')
    if 'melody' in lowered:
        return str(CASES / 'musicgen_melody_tiny')
    if 'encodec' in lowered:
        return str(CASES / 'encodec_32khz_mono')
    if 'audiogen' in lowered or 'musicgen' in lowered or lowered in ('small', 'medium', 'large'):
        return str(CASES / 'musicgen_text_tiny')
    raise AssertionError(f'no tiny stand-in for {name!r}: extend tiny_model_for')


@pytest.fixture
def doc_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary working folder holding a copy of the repository's assets, as a user's checkout does."""
    shutil.copytree(ROOT / 'assets', tmp_path / 'assets')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_asset_the_docs_use_is_shipped() -> None:
    for doc in DOCS:
        for asset in re.findall(r"['\"](assets/[\w./-]+)['\"]", doc.read_text()):
            assert (ROOT / asset).is_file(), f'{doc.name} uses {asset}, which the repository does not have'


@pytest.fixture
def tiny_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Map released names to tiny models and cap durations (the documented substitution)."""
    for cls in (MusicGen, AudioGen, MAGNeT, CompressionModel):
        real = cls.get_pretrained

        def get_pretrained(name: str, device: tp.Any = None, _real: tp.Any = real, **kwargs: tp.Any) -> tp.Any:
            model = _real(tiny_model_for(name), device='cpu', **kwargs)
            if isinstance(model, (MusicGen, AudioGen)):
                model.duration = min(model.duration, MAX_DURATION)
            return model

        monkeypatch.setattr(cls, 'get_pretrained', staticmethod(get_pretrained))
    for cls in (MusicGen, AudioGen):
        real_set = cls.set_generation_params

        def set_generation_params(self: tp.Any, *args: tp.Any, _real: tp.Any = real_set, **kwargs: tp.Any) -> None:
            assert not args, 'docs pass generation parameters by keyword'
            if 'duration' in kwargs:
                kwargs['duration'] = min(float(kwargs['duration']), MAX_DURATION)
            _real(self, **kwargs)

        monkeypatch.setattr(cls, 'set_generation_params', set_generation_params)
        real_continuation = cls.generate_continuation

        def generate_continuation(self: tp.Any, prompt: torch.Tensor, prompt_sample_rate: int, *args: tp.Any,
                                  _real: tp.Any = real_continuation, **kwargs: tp.Any) -> tp.Any:
            # The capped duration may be shorter than the shipped prompt: generate a little past it.
            self.duration = max(self.duration, prompt.shape[-1] / prompt_sample_rate + MAX_DURATION)
            return _real(self, prompt, prompt_sample_rate, *args, **kwargs)

        monkeypatch.setattr(cls, 'generate_continuation', generate_continuation)


@pytest.mark.slow
@pytest.mark.parametrize('doc', DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_python_blocks_run(doc: Path, doc_workdir: Path, tiny_models: None) -> None:
    namespace: tp.Dict[str, tp.Any] = {'__name__': '__doc_test__'}
    for language, code, line in code_blocks(doc):
        if language not in PYTHON:
            continue
        torch.manual_seed(0)
        try:
            exec(compile(code, f'{doc.name}:{line}', 'exec'), namespace)
        except Exception as exc:
            raise AssertionError(f'{doc.name}, python block at line {line} failed: {exc!r}\n{code}') from exc


@pytest.mark.parametrize('doc', DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_shell_blocks_run_or_are_marked(doc: Path, doc_workdir: Path) -> None:
    env = dict(os.environ, PATH=f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}',
               PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    for language, code, line in code_blocks(doc):
        if language not in SHELL:
            continue
        for command in shell_commands(code):
            if any(command.startswith(prefix) for prefix in NOT_RUN):
                continue
            result = subprocess.run(['bash', '-c', command], env=env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, (f'{doc.name}:{line}: `{command}` failed ({result.returncode})\n'
                                            f'{result.stdout[-2000:]}\n{result.stderr[-2000:]}')


def test_every_block_has_a_known_language_and_not_run_entries_are_used() -> None:
    used = set()
    python_blocks = 0
    for doc in DOCS:
        for language, code, line in code_blocks(doc):
            assert language, f'{doc.name}:{line}: give the code block a language (python, shell, yaml, text...)'
            python_blocks += language in PYTHON
            if language in SHELL:
                for command in shell_commands(code):
                    used.update(prefix for prefix in NOT_RUN if command.startswith(prefix))
    assert python_blocks >= 10
    stale = set(NOT_RUN) - used
    assert not stale, f'NOT_RUN entries no doc uses any more: {sorted(stale)}'


def test_readme_quick_start_is_two_commands() -> None:
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Quick start', 1)[1].split('\n## ', 1)[0]
    commands = [c for lang, code, _ in [(m.group(1), m.group(2), 0) for m in FENCE.finditer(section)]
                for c in shell_commands(code)]
    assert commands == ['make demo', 'make test']
