"""`python -m audiocraft.metrics METRIC REF_DIR GEN_DIR` on folders of WAV files."""
import json
import math
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from audiocraft.data.audio import audio_write
from audiocraft.metrics import cli

REPO = Path(__file__).parent.parent


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp('metrics_cli')
    torch.manual_seed(0)
    t = torch.arange(16000 * 2) / 16000
    for index, freq in enumerate((220., 330., 440.)):
        ref = 0.3 * torch.sin(2 * math.pi * freq * t)[None]
        audio_write(root / 'ref' / f'item{index}', ref, 16000, strategy='clip')
        audio_write(root / 'gen' / f'item{index}', ref + 0.05 * torch.randn_like(ref), 16000, strategy='clip')
        (root / 'gen' / f'item{index}.txt').write_text(f'a tone at {freq} Hz')
    return root / 'ref', root / 'gen'


def test_cli_chroma_prints_one_number_and_json(folders, capsys):
    ref, gen = folders
    assert cli.main(['chroma', str(ref), str(gen), '--radix2-exp', '10', '--chroma-rate', '16000']) == 0
    captured = capsys.readouterr()
    name, value = captured.out.strip().split(': ')
    assert name == 'chroma_cosine' and 0.5 < float(value) <= 1.0
    assert 'chroma' in captured.err  # the progress bar
    assert cli.main(['chroma', str(ref), str(ref), '--json', '--radix2-exp', '10']) == 0
    assert json.loads(capsys.readouterr().out)['chroma_cosine'] == pytest.approx(1.0, abs=1e-5)


def test_cli_fad_and_kld_with_local_weights(folders, tmp_path, capsys):
    from audiocraft.metrics.passt import PasstTagger
    from audiocraft.metrics.vggish import VGGish
    ref, gen = folders
    torch.manual_seed(0)
    torch.save(VGGish(postprocess=False).state_dict(), tmp_path / 'vggish.pth')
    assert cli.main(['fad', str(ref), str(gen), '--vggish', str(tmp_path / 'vggish.pth'), '--no-pca', '--json']) == 0
    assert json.loads(capsys.readouterr().out)['fad'] > 0
    torch.save(PasstTagger(input_tdim=998).net.state_dict(), tmp_path / 'passt.pt')
    assert cli.main(['kld', str(ref), str(ref), '--passt', str(tmp_path / 'passt.pt'), '--json']) == 0
    values = json.loads(capsys.readouterr().out)
    assert set(values) == {'kld', 'kld_pq', 'kld_qp', 'kld_both'} and abs(values['kld']) < 1e-3  # 527 labels x epsilon


def test_cli_errors_are_clear(folders, tmp_path):
    ref, _ = folders
    proc = subprocess.run([sys.executable, '-m', 'audiocraft.metrics', 'fad', str(ref), str(tmp_path),
                           '--vggish', str(tmp_path / 'none.pth')], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and 'VGGish weights not found' in proc.stderr and 'METRICS.md' in proc.stderr
    assert cli.main(['chroma', str(ref), str(tmp_path)]) == 1  # no audio files there
    with pytest.raises(SystemExit):
        cli.main(['nope', str(ref), str(ref)])
    assert cli.main(['clap', str(ref), str(ref)]) == 1
