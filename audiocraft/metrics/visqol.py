"""ViSQOL (Virtual Speech Quality Objective Listener) MOS-LQO of degraded audio against a reference.

Two backends:
- `visqol-python` (pip, pure Python port of ViSQOL v3), used when no binary is configured;
- AudioCraft's interface to the C++ ViSQOL built with bazel (`bin` = the folder of the checkout),
  run on a CSV batch of WAV files.
"""
import csv
import logging
import shutil
from pathlib import Path
import subprocess
import tempfile
import typing as tp

import torch

logger = logging.getLogger(__name__)

_MODE_RATES = {'audio': 48_000, 'speech': 16_000}
_INSTALL_HINT = ("install the pure Python ViSQOL with `pip install visqol-python` (or `pip install "
                 "audiocraft[metrics]`), or build Google's ViSQOL with bazel and set metrics.visqol.bin to its folder")


class ViSQOL:
    """Average ViSQOL MOS-LQO (1 to 5, higher is better) over a batch.

    Args:
        bin: folder of a bazel-built ViSQOL checkout (`bazel-bin/visqol` inside); None uses visqol-python.
        mode: 'audio' (48 kHz, SVR model) or 'speech' (16 kHz).
        model: similarity-to-quality model: a path, or a file name under `<bin>/model/`. With
            visqol-python, a name that is not an existing file falls back to its bundled default model.
        debug: keep the temporary files of the binary backend and log its output.
    """

    def __init__(self, bin: tp.Union[str, Path, None] = None, mode: str = 'audio',
                 model: tp.Optional[str] = 'libsvm_nu_svr_model.txt', debug: bool = False) -> None:
        if mode not in _MODE_RATES:
            raise ValueError(f"ViSQOL mode must be 'audio' or 'speech', got {mode!r}.")
        self.mode = mode
        self.sample_rate = _MODE_RATES[mode]
        self.debug = debug
        self.bin = Path(bin) if bin else None
        self.model = model
        self._api: tp.Any = None
        if self.bin is not None:
            if not (self.bin / 'bazel-bin' / 'visqol').is_file():
                raise FileNotFoundError(f"No ViSQOL binary at {self.bin}/bazel-bin/visqol: {_INSTALL_HINT}.")
        else:
            self._api = self._python_api()

    def _python_api(self) -> tp.Any:
        try:
            from visqol import VisqolApi
        except ImportError as exc:
            raise ImportError(f"ViSQOL needs a backend: {_INSTALL_HINT}.") from exc
        model_path = None
        if self.mode == 'audio' and self.model and Path(self.model).is_file():
            model_path = str(self.model)
        elif self.mode == 'audio' and self.model and self.model != 'libsvm_nu_svr_model.txt':
            logger.warning("ViSQOL model %s is not a file: visqol-python uses its bundled SVR model.", self.model)
        api = VisqolApi()
        api.create(mode=self.mode, model_path=model_path)
        return api

    def _prepare(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        from ..data.audio_utils import convert_audio
        return convert_audio(wav.detach().float().cpu(), from_rate=sample_rate, to_rate=self.sample_rate,
                             to_channels=1)

    def __call__(self, ref_sig: torch.Tensor, deg_sig: torch.Tensor, sr: int) -> float:
        """Mean MOS-LQO of `deg_sig` against `ref_sig`, both [B, C, T] at `sr` (mixed to mono)."""
        if ref_sig.shape != deg_sig.shape:
            raise ValueError(f"ViSQOL needs reference and degraded audio of one shape, got "
                             f"{tuple(ref_sig.shape)} and {tuple(deg_sig.shape)}.")
        refs, degs = self._prepare(ref_sig, sr), self._prepare(deg_sig, sr)
        if self._api is not None:
            scores = [self._api.measure_from_arrays(ref[0].double().numpy(), deg[0].double().numpy(),
                                                    self.sample_rate).moslqo for ref, deg in zip(refs, degs)]
        else:
            scores = self._run_binary(refs, degs)
        return float(sum(scores) / len(scores))

    def _run_binary(self, refs: torch.Tensor, degs: torch.Tensor) -> tp.List[float]:
        from ..data.audio import audio_write
        assert self.bin is not None
        folder = Path(tempfile.mkdtemp(prefix='visqol_'))
        try:
            rows = []
            for index, (ref, deg) in enumerate(zip(refs, degs)):
                ref_path = audio_write(folder / f'ref_{index}', ref, self.sample_rate, strategy='clip')
                deg_path = audio_write(folder / f'deg_{index}', deg, self.sample_rate, strategy='clip')
                rows.append((str(ref_path), str(deg_path)))
            batch_csv, results_csv = folder / 'input.csv', folder / 'results.csv'
            with open(batch_csv, 'w', newline='') as handle:
                writer = csv.writer(handle)
                writer.writerow(['reference', 'degraded'])
                writer.writerows(rows)
            cmd = [str(self.bin / 'bazel-bin' / 'visqol'), '--batch_input_csv', str(batch_csv),
                   '--results_csv', str(results_csv)]
            if self.mode == 'speech':
                cmd.append('--use_speech_mode')
            elif self.model:
                model = Path(self.model) if Path(self.model).is_file() else self.bin / 'model' / self.model
                cmd += ['--similarity_to_quality_model', str(model)]
            proc = subprocess.run(cmd, cwd=self.bin, capture_output=True, text=True)
            if self.debug:
                logger.info("ViSQOL output in %s:\n%s%s", folder, proc.stdout, proc.stderr)
            if proc.returncode != 0:
                raise RuntimeError(f"ViSQOL failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
            with open(results_csv, newline='') as handle:
                return [float(row['moslqo']) for row in csv.DictReader(handle)]
        finally:
            if not self.debug:
                shutil.rmtree(folder, ignore_errors=True)
