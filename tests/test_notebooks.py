"""The demo notebooks run top to bottom (nbclient) on tiny offline models.

`AUDIOCRAFT_DEMO_MODEL` (and `AUDIOCRAFT_DEMO_MELODY_MODEL`) point the notebooks at the tiny
models of tests/reference/cases instead of the released ones.
"""
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / 'tests' / 'reference' / 'cases'
NOTEBOOKS = {
    'musicgen_demo.ipynb': CASES / 'musicgen_text_tiny',
    'audiogen_demo.ipynb': CASES / 'musicgen_text_tiny',
    'magnet_demo.ipynb': CASES / 'magnet_tiny',
}


@pytest.mark.slow
@pytest.mark.parametrize('notebook', sorted(NOTEBOOKS))
def test_notebook_runs(notebook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('AUDIOCRAFT_DEMO_MODEL', str(NOTEBOOKS[notebook]))
    monkeypatch.setenv('AUDIOCRAFT_DEMO_MELODY_MODEL', str(CASES / 'musicgen_melody_tiny'))
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    # The kernel must import this checkout, whatever folder it starts in.
    monkeypatch.setenv('PYTHONPATH', str(ROOT))
    nb = nbformat.read(ROOT / 'demos' / notebook, as_version=4)
    assert all(not cell.get('outputs') for cell in nb.cells if cell.cell_type == 'code'), \
        'commit notebooks without outputs'
    # Appended check: the kernel runs this interpreter, so the notebooks test this install.
    nb.cells.append(nbformat.v4.new_code_cell(
        'import sys, audiocraft; print(sys.executable); print(audiocraft.__file__)'))
    client = NotebookClient(nb, timeout=180, kernel_name='python3', allow_errors=False,
                            resources={'metadata': {'path': str(tmp_path)}})
    client.execute()
    outputs = [out for cell in nb.cells if cell.cell_type == 'code' for out in cell.get('outputs', [])]
    # Audio players were displayed and files written.
    assert any('text/html' in out.get('data', {}) and '<audio' in out['data']['text/html'] for out in outputs)
    assert list(tmp_path.glob('*.wav'))
    executable, package = ''.join(out.get('text', '') for out in nb.cells[-1].outputs).split()
    assert executable == sys.executable
    assert Path(package).resolve().is_relative_to(ROOT)
