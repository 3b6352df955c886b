"""ViSQOL: the visqol-python backend, AudioCraft's binary interface, and the errors without a backend."""
import builtins
import sys

import pytest
import torch

from audiocraft.metrics import ViSQOL


def _tones(sample_rate: int = 24000) -> torch.Tensor:
    t = torch.arange(sample_rate) / sample_rate
    return (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.1 * torch.sin(2 * torch.pi * 3000 * t))[None, None]


def test_visqol_python_backend_scores_degradation():
    pytest.importorskip('visqol')
    visqol = ViSQOL(model='tcdaudio14_aacvopus_coresv_svrnsim_n.68_g.01_c1.model')  # AudioCraft's config value
    ref = _tones()
    torch.manual_seed(0)
    clean = visqol(ref, ref, 24000)
    noisy = visqol(ref, ref + 0.05 * torch.randn_like(ref), 24000)
    assert 4.5 < clean <= 5.0
    assert 1.0 <= noisy < clean - 1


def test_visqol_without_backend_says_what_to_install(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_visqol(name, *args, **kwargs):
        if name == 'visqol' or name.startswith('visqol.'):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, 'visqol', raising=False)
    monkeypatch.setattr(builtins, '__import__', no_visqol)
    with pytest.raises(ImportError, match="pip install visqol-python"):
        ViSQOL()
    with pytest.raises(FileNotFoundError, match="metrics.visqol.bin"):
        ViSQOL(bin=tmp_path)
    with pytest.raises(ValueError, match="'audio' or 'speech'"):
        ViSQOL(mode='music')


def test_visqol_binary_interface(tmp_path):
    """A stand-in for bazel-bin/visqol checks the batch CSV AudioCraft's interface writes and reads."""
    binary = tmp_path / 'bazel-bin' / 'visqol'
    binary.parent.mkdir()
    binary.write_text(
        "#!" + sys.executable + "\n"
        "import csv, sys\n"
        "args = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "rows = list(csv.DictReader(open(args['--batch_input_csv'])))\n"
        "assert args['--similarity_to_quality_model'].endswith('model/my.model')\n"
        "with open(args['--results_csv'], 'w') as out:\n"
        "    out.write('reference,degraded,moslqo\\n')\n"
        "    for i, row in enumerate(rows):\n"
        "        out.write(f\"{row['reference']},{row['degraded']},{3.0 + i}\\n\")\n")
    binary.chmod(0o755)
    visqol = ViSQOL(bin=tmp_path, model='my.model')
    batch = _tones().repeat(2, 2, 1)
    assert visqol(batch, batch, 24000) == pytest.approx(3.5)
