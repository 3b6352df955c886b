"""A compiled dependency that fails to load disables one feature, with an error that says how to fix it."""
import subprocess
import sys
import textwrap

import pytest

from audiocraft.utils.dependencies import CompiledDependencyError, import_compiled, installed_version

# Makes `import torchaudio` and `import av` fail the way a wheel built for another torch does.
_BROKEN_WHEELS = textwrap.dedent("""
    import sys

    class BrokenWheels:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('torchaudio', 'av'):
                raise OSError(f"Could not load this library: .../{name}/lib/lib{name}.so "
                              "(undefined symbol: torch_exception_get_what_without_backtrace)")
            return None

    sys.meta_path.insert(0, BrokenWheels())
""")


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BROKEN_WHEELS + textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


def test_generation_works_when_torchaudio_and_av_do_not_load(tmp_path):
    result = _run("""
        import torch
        import audiocraft
        from audiocraft.models import MusicGen
        try:
            import torchaudio  # noqa
        except OSError:
            pass
        else:
            raise SystemExit('the simulated broken torchaudio imported')
        model = MusicGen.get_pretrained('debug')
        model.set_generation_params(duration=0.2)
        wav = model.generate(['drums'])
        assert wav.shape[0] == 1 and torch.isfinite(wav).all()
        assert 'torchaudio' not in sys.modules and 'av' not in sys.modules
        print('GENERATED', tuple(wav.shape))
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "GENERATED" in result.stdout


def test_audio_io_with_a_broken_av_says_what_to_reinstall(tmp_path):
    result = _run("""
        import torch
        from audiocraft.data.audio import audio_write
        from audiocraft.utils.dependencies import CompiledDependencyError
        try:
            audio_write('out', torch.zeros(1, 1600), 16000)
        except CompiledDependencyError as exc:
            print('MESSAGE', exc)
        else:
            raise SystemExit('audio_write did not fail')
    """, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout
    assert f"av {installed_version('av')}" in message
    assert f"torch {installed_version('torch')}" in message
    assert "undefined symbol" in message
    assert "pip install -c requirements-lock.txt --force-reinstall av torch" in message


def test_missing_package_names_the_install_command():
    with pytest.raises(CompiledDependencyError, match="pip install no_such_pkg_xyz"):
        import_compiled("no_such_pkg_xyz", "testing")


def test_library_metadata_has_ranges_not_single_release_pins():
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    requirements = [line.split('#')[0].strip() for line in (root / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in requirements if line]
    assert requirements, "requirements.txt lists the runtime dependencies"
    for line in requirements:
        assert "==" not in line, f"{line}: the library's metadata takes ranges; exact versions go in the lock"
    assert not any(line.startswith("torchaudio") for line in requirements)
    lock = (root / "requirements-lock.txt").read_text().splitlines()
    pinned = {line.split("==")[0].lower().replace("_", "-")
              for line in lock if "==" in line and not line.startswith("#")}
    for line in requirements:
        name = line.split(">")[0].split("<")[0].split("[")[0].strip().lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements-lock.txt: run `make lock`"
