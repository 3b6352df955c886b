"""Melody conditioning: chroma of the melodic stems (vocals + other) separated by demucs."""
import contextlib
import logging
import math
from pathlib import Path
import typing as tp

import torch
import torch.nn.functional as F

from ...data.audio_utils import convert_audio_channels
from ...data.resample import ResamplerCache
from ..chroma import ChromaExtractor
from .base import WavCondition, WaveformConditioner

logger = logging.getLogger(__name__)


def _load_demucs(name: str, device: tp.Union[torch.device, str]) -> torch.nn.Module:
    try:
        from demucs import pretrained
    except ImportError as exc:
        raise RuntimeError("ChromaStemConditioner needs the `demucs` package: pip install demucs.") from exc
    try:
        model = pretrained.get_model(name)
    except Exception as exc:  # demucs raises several types for a missing model
        raise RuntimeError(
            f"Could not load the demucs model '{name}': {exc}. Download it once with network access, "
            "or set TORCH_HOME to a torch hub cache holding it when running offline.") from exc
    return model.to(device).eval()


@contextlib.contextmanager
def _without_mha_fastpath() -> tp.Iterator[None]:
    """Run demucs' attention through `scaled_dot_product_attention` rather than the fused MHA
    "fast path", which materialises the whole [T, T] score matrix: on a 1 s melody the tiny test
    htdemucs attends over 22k positions, 18.6 s per call against 8 s without it (2-core EPYC).
    The switch is process-wide in torch, so it is restored on exit."""
    mha = torch.backends.mha
    enabled = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(enabled)


class ChromaStemConditioner(WaveformConditioner):
    """Chroma features [B, T, n_chroma] of the melodic part of a waveform, projected to `output_dim`.

    demucs (`htdemucs`) separates the input; the vocals and other stems are summed and
    turned into (by default one-hot) chroma frames. Null conditions (1-sample waveforms)
    skip demucs. With `match_len_on_eval`, the chroma is cut or tiled to the length that
    `duration` seconds give, and masking is turned off (the whole tiled sequence counts).

    Args:
        output_dim: model dimension.
        sample_rate: sample rate of the incoming waveforms.
        n_chroma, radix2_exp: chroma extractor parameters (window 2 ** radix2_exp).
        duration: training segment duration in seconds, fixes the chroma length.
        match_len_on_eval: cut/tile chroma to that length (pretrained MusicGen sets it).
        eval_wavs: optional dataset manifest whose waveforms replace the inputs in eval.
        n_eval_wavs: how many of those to load.
        cache_path: optional folder for a chroma cache (needs `audiocraft.utils.cache`).
        device: where demucs and the chroma extractor run.
        **kwargs: extra `ChromaExtractor` arguments (argmax, nfft, winlen, winhop, norm).
    """

    def __init__(self, output_dim: int, sample_rate: int, n_chroma: int, radix2_exp: int, duration: float,
                 match_len_on_eval: bool = True, eval_wavs: tp.Optional[str] = None, n_eval_wavs: int = 0,
                 cache_path: tp.Optional[tp.Union[str, Path]] = None,
                 device: tp.Union[torch.device, str] = 'cpu', **kwargs: tp.Any):
        super().__init__(dim=n_chroma, output_dim=output_dim, device=device)
        if duration is None or duration <= 0:
            raise ValueError(f"ChromaStemConditioner needs a positive duration in seconds, got {duration}.")
        self.sample_rate = sample_rate
        self.duration = duration
        self._match_len_on_eval = False
        self.match_len_on_eval = match_len_on_eval
        # Kept outside the module tree: demucs weights are not part of LM checkpoints.
        self.__dict__['demucs'] = _load_demucs('htdemucs', device)
        sources: tp.List[str] = list(self.demucs.sources)
        self.stem_indices = torch.LongTensor([sources.index('vocals'), sources.index('other')]).to(device)
        self.chroma = ChromaExtractor(sample_rate=sample_rate, n_chroma=n_chroma, radix2_exp=radix2_exp,
                                      **kwargs).to(device)
        # Computed from the STFT geometry: running the extractor at init would only cost time.
        self.chroma_len = self.chroma.num_frames(int(sample_rate * duration))
        self.eval_wavs: tp.Optional[torch.Tensor] = self._load_eval_wavs(eval_wavs, n_eval_wavs)
        self.rng = torch.Generator()
        self.rng.manual_seed(1234)
        # Kernels for 32 <-> 44.1 kHz, built once for this conditioner.
        self._resamplers = ResamplerCache()
        self.cache = None
        if cache_path is not None:
            try:
                from ...utils.cache import EmbeddingCache  # type: ignore
            except ImportError as exc:
                raise RuntimeError("cache_path needs audiocraft.utils.cache.EmbeddingCache, which is not "
                                   "available; set cache_path to null.") from exc
            self.cache = EmbeddingCache(Path(cache_path) / 'wav', self.device,
                                        compute_embed_fn=self._get_full_chroma_for_cache,
                                        extract_embed_fn=self._extract_chroma_chunk)

    @property
    def match_len_on_eval(self) -> bool:
        return self._match_len_on_eval

    @match_len_on_eval.setter
    def match_len_on_eval(self, value: bool) -> None:
        # A tiled chroma is valid everywhere, so matching lengths implies no masking.
        self._match_len_on_eval = bool(value)
        if value:
            self._use_masking = False

    def _downsampling_factor(self) -> int:
        return self.chroma.winhop

    def _load_eval_wavs(self, path: tp.Optional[str], num_samples: int) -> tp.Optional[torch.Tensor]:
        if path is None:
            return None
        from ...data.audio_dataset import AudioDataset  # type: ignore
        dataset = AudioDataset.from_meta(path, segment_duration=self.duration, min_audio_duration=self.duration,
                                         sample_rate=self.sample_rate, channels=1)
        if len(dataset) == 0:
            raise ValueError(f"No evaluation wavs of at least {self.duration}s found in {path}.")
        eval_wavs = dataset.collater([dataset[i] for i in range(min(num_samples, len(dataset)))])
        logger.info("Using %d evaluation wavs for the chroma-stem conditioner", len(eval_wavs))
        return eval_wavs.to(self.device)

    def _sample_eval_wavs(self, num_samples: int) -> torch.Tensor:
        assert self.eval_wavs is not None
        out = self.eval_wavs
        if num_samples > len(out):
            out = out.repeat(num_samples // len(out) + 1, 1, 1)
        perm = torch.randperm(len(out), generator=self.rng)
        return out[perm.to(out.device)][:num_samples]

    @torch.no_grad()
    def _get_stemmed_wav(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Sum of the melodic stems of `wav` [B, C, T], back at `self.sample_rate`, mono."""
        from demucs.apply import apply_model
        # demucs is outside the module tree, so `.to()` on a parent does not move it: use its own device.
        param = next(self.demucs.parameters(), None)
        device = param.device if param is not None else torch.device(self.device)
        resample = self._resamplers
        with torch.autocast(device_type=device.type, enabled=False), _without_mha_fastpath():
            # demucs' own convert_audio would rebuild julius' 441-phase filters at every call.
            wav = convert_audio_channels(wav, self.demucs.audio_channels)
            wav = resample(wav, sample_rate, self.demucs.samplerate)
            # One item at a time: demucs' attention memory grows with the batch (16 GB for the
            # 4 items of a CFG batch with the tiny test model), and items are independent; an item
            # equal to an earlier one (the same melody for several prompts) reuses its stems.
            stems: tp.List[torch.Tensor] = []
            for index, item in enumerate(wav):
                same = next((j for j in range(index) if torch.equal(wav[j], item)), None)
                stems.append(stems[same] if same is not None else
                             apply_model(self.demucs, item[None].float(), device=device))
            melodic = torch.cat(stems)[:, self.stem_indices.to(device)]
            mix_wav = convert_audio_channels(melodic.sum(1), 1)
            return resample(mix_wav, self.demucs.samplerate, self.sample_rate)

    @torch.no_grad()
    def _extract_chroma(self, wav: torch.Tensor) -> torch.Tensor:
        device = self.chroma.spec.window.device
        with torch.autocast(device_type=device.type, enabled=False):
            return self.chroma(wav.to(device=device, dtype=torch.float32))

    @torch.no_grad()
    def _compute_wav_embedding(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Chroma [B, T, n_chroma] of `wav` [B, C, T]; 1-sample (null) inputs bypass demucs."""
        if wav.shape[-1] == 1:
            return self._extract_chroma(wav)
        stems = self._get_stemmed_wav(wav, sample_rate)
        return self._extract_chroma(stems)

    @torch.no_grad()
    def _get_full_chroma_for_cache(self, path: tp.Union[str, Path], x: WavCondition, idx: int) -> torch.Tensor:
        from ...data.audio import audio_read
        from ...data.audio_utils import convert_audio
        wav, sr = audio_read(path)
        wav = convert_audio(wav[None].to(self.device), sr, self.sample_rate, to_channels=1,
                            resamplers=self._resamplers)
        return self._compute_wav_embedding(wav, self.sample_rate)[0]

    def _extract_chroma_chunk(self, full_chroma: torch.Tensor, x: WavCondition, idx: int) -> torch.Tensor:
        seek_time = x.seek_time[idx]
        if seek_time is None:
            raise ValueError("WavCondition.seek_time is required to read chroma chunks from the cache.")
        frame_rate = self.sample_rate / self._downsampling_factor()
        target_length = int(frame_rate * x.wav.shape[-1] / self.sample_rate)
        index = int(frame_rate * seek_time)
        out = full_chroma.float()[index: index + target_length]
        out = F.pad(out[None], (0, 0, 0, target_length - out.shape[0]))[0]
        return out.to(self.device)

    @torch.no_grad()
    def _get_wav_embedding(self, x: WavCondition) -> torch.Tensor:
        sampled_wav: tp.Optional[torch.Tensor] = None
        if not self.training and self.eval_wavs is not None:
            sampled_wav = self._sample_eval_wavs(len(x.wav))
        no_undefined_paths = all(p is not None for p in x.path)
        no_nullified_cond = x.wav.shape[-1] > 1
        if sampled_wav is not None:
            chroma = self._compute_wav_embedding(sampled_wav, self.sample_rate)
        elif self.cache is not None and no_undefined_paths and no_nullified_cond:
            paths = [Path(p) for p in x.path if p is not None]
            chroma = self.cache.get_embed_from_cache(paths, x)
        else:
            if any(sr != x.sample_rate[0] for sr in x.sample_rate):
                raise ValueError(f"All melody sample rates in a batch must be equal, got {x.sample_rate}.")
            chroma = self._compute_wav_embedding(x.wav, x.sample_rate[0])
        if self.match_len_on_eval:
            length = chroma.shape[1]
            if length > self.chroma_len:
                chroma = chroma[:, :self.chroma_len]
            elif length < self.chroma_len:
                chroma = chroma.repeat(1, int(math.ceil(self.chroma_len / length)), 1)[:, :self.chroma_len]
        return chroma

    def tokenize(self, x: WavCondition) -> WavCondition:
        x = super().tokenize(x)
        if self.cache is not None and all(p is not None for p in x.path):
            self.cache.populate_embed_cache([Path(p) for p in x.path if p is not None], x)
        return x
