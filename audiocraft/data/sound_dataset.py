"""Sound dataset: environmental sounds with text descriptions, and mixing augmentation."""
from dataclasses import dataclass, replace
import json
import logging
from pathlib import Path
import random
import typing as tp

import numpy as np
import torch

from .info_audio_dataset import (AudioInfo, InfoAudioDataset, attributes_from_fields, get_keyword_or_keyword_list,
                                 info_from_dict)
from ..modules.conditioners import ConditioningAttributes, WavCondition

logger = logging.getLogger(__name__)

EPS = torch.finfo(torch.float32).eps
TARGET_LEVEL_LOWER = -35
TARGET_LEVEL_UPPER = -15


@dataclass
class SoundInfo(AudioInfo):
    """Segment info augmented with a sound description."""
    description: tp.Optional[str] = None
    self_wav: tp.Optional[WavCondition] = None

    @property
    def has_sound_meta(self) -> bool:
        return self.description is not None

    def to_condition_attributes(self) -> ConditioningAttributes:
        return attributes_from_fields(self, wav_fields=('self_wav',))

    @staticmethod
    def attribute_getter(attribute: str) -> tp.Optional[tp.Callable]:
        return get_keyword_or_keyword_list if attribute == 'description' else None

    @classmethod
    def from_dict(cls, dictionary: dict, fields_required: bool = False) -> "SoundInfo":
        return info_from_dict(cls, dictionary, fields_required, post_init_attributes=('self_wav',),
                              optional_fields=('audio_tokens',), kind='sound')


class SoundDataset(InfoAudioDataset):
    """Audio dataset returning `(wav, SoundInfo)`.

    Args:
        info_fields_required: the metadata JSON must hold every SoundInfo field.
        external_metadata_source: folder holding `<audio stem>.json` metadata files, used when
            no JSON sits next to the audio file.
        aug_p: probability of mixing augmentation for a batch.
        mix_p: proportion of the batch items mixed together when augmenting.
        mix_snr_low / mix_snr_high: bounds of the SNR (dB) drawn for mixing.
        mix_min_overlap: minimum overlap between the mixed files.

    See `audiocraft.data.info_audio_dataset.InfoAudioDataset` for the other arguments.
    """
    def __init__(self, *args: tp.Any, info_fields_required: bool = True,
                 external_metadata_source: tp.Optional[str] = None, aug_p: float = 0.,
                 mix_p: float = 0., mix_snr_low: int = -5, mix_snr_high: int = 5,
                 mix_min_overlap: float = 0.5, **kwargs: tp.Any):
        kwargs['return_info'] = True
        super().__init__(*args, **kwargs)
        self.info_fields_required = info_fields_required
        self.external_metadata_source = external_metadata_source
        self.aug_p = aug_p
        self.mix_p = mix_p
        if self.aug_p > 0:
            if self.mix_p <= 0:
                raise ValueError("SoundDataset: aug_p > 0 requires a mixing proportion mix_p > 0.")
            if self.channels != 1:
                raise ValueError("SoundDataset mixing augmentation only supports mono audio (channels=1).")
        self.mix_snr_low = mix_snr_low
        self.mix_snr_high = mix_snr_high
        self.mix_min_overlap = mix_min_overlap

    def _get_info_path(self, path: tp.Union[str, Path]) -> tp.Optional[Path]:
        """Metadata JSON next to the audio file, else in the external source, else None."""
        info_path = Path(path).with_suffix('.json')
        if info_path.exists():
            return info_path
        if self.external_metadata_source and (Path(self.external_metadata_source) / info_path.name).exists():
            return Path(self.external_metadata_source) / info_path.name
        if self.info_fields_required:
            raise FileNotFoundError(f"No metadata JSON for {path}: expected {info_path} or a file named "
                                    f"{info_path.name} in external_metadata_source.")
        return None

    def __getitem__(self, index: int) -> tp.Tuple[torch.Tensor, SoundInfo]:  # type: ignore
        wav, info = super().__getitem__(index)
        info_data = info.to_dict()
        info_path = self._get_info_path(info.meta.path)
        if info_path is not None:
            with open(info_path, 'r') as json_file:
                sound_data = json.load(json_file)
            sound_data.update(info_data)
            sound_info = SoundInfo.from_dict(sound_data, fields_required=self.info_fields_required)
            # several descriptions: draw one.
            if isinstance(sound_info.description, list):
                sound_info.description = random.choice(sound_info.description)
        else:
            sound_info = SoundInfo.from_dict(info_data, fields_required=False)

        sound_info.self_wav = WavCondition(
            wav=wav[None], length=torch.tensor([info.n_frames]),
            sample_rate=[sound_info.sample_rate], path=[info.meta.path], seek_time=[info.seek_time])
        return wav, sound_info

    def collater(self, samples: tp.List[tp.Any]) -> tp.Any:
        wav, sound_info = super().collater(samples)
        if self.aug_p > 0:
            wav, sound_info = mix_samples(wav, sound_info, self.aug_p, self.mix_p,
                                          snr_low=self.mix_snr_low, snr_high=self.mix_snr_high,
                                          min_overlap=self.mix_min_overlap)
        return wav, sound_info


def rms_f(x: torch.Tensor) -> torch.Tensor:
    return (x ** 2).mean(1).pow(0.5)


def normalize(audio: torch.Tensor, target_level: int = -25) -> torch.Tensor:
    """Normalize the signal to the target level (dB RMS)."""
    rms = rms_f(audio)
    scalar = 10 ** (target_level / 20) / (rms + EPS)
    return audio * scalar.unsqueeze(1)


def is_clipped(audio: torch.Tensor, clipping_threshold: float = 0.99) -> torch.Tensor:
    return (abs(audio) > clipping_threshold).any(1)


def mix_pair(src: torch.Tensor, dst: torch.Tensor, min_overlap: float) -> torch.Tensor:
    """Add `src` to `dst` at a random offset keeping at least `min_overlap` of overlap."""
    start = random.randint(0, int(src.shape[1] * (1 - min_overlap)))
    remainder = src.shape[1] - start
    if dst.shape[1] > remainder:
        src[:, start:] = src[:, start:] + dst[:, :remainder]
    else:
        src[:, start:start + dst.shape[1]] = src[:, start:start + dst.shape[1]] + dst
    return src


def snr_mixer(clean: torch.Tensor, noise: torch.Tensor, snr: int, min_overlap: float,
              target_level: int = -25, clipping_threshold: float = 0.99) -> torch.Tensor:
    """Mix `noise` into `clean` at the given SNR, avoiding clipping."""
    if clean.shape[1] > noise.shape[1]:
        noise = torch.nn.functional.pad(noise, (0, clean.shape[1] - noise.shape[1]))
    else:
        noise = noise[:, :clean.shape[1]]
    clean = clean / (clean.max(1)[0].abs().unsqueeze(1) + EPS)
    clean = normalize(clean, target_level)
    rmsclean = rms_f(clean)
    noise = noise / (noise.max(1)[0].abs().unsqueeze(1) + EPS)
    noise = normalize(noise, target_level)
    rmsnoise = rms_f(noise)
    noisescalar = (rmsclean / (10 ** (snr / 20)) / (rmsnoise + EPS)).unsqueeze(1)
    noisenewlevel = noise * noisescalar
    noisyspeech = mix_pair(clean, noisenewlevel, min_overlap)
    noisy_rms_level = np.random.randint(TARGET_LEVEL_LOWER, TARGET_LEVEL_UPPER)
    rmsnoisy = rms_f(noisyspeech)
    scalarnoisy = (10 ** (noisy_rms_level / 20) / (rmsnoisy + EPS)).unsqueeze(1)
    noisyspeech = noisyspeech * scalarnoisy
    if is_clipped(noisyspeech, clipping_threshold).any():
        noisyspeech_maxamplevel = noisyspeech.max(1)[0].abs().unsqueeze(1) / (clipping_threshold - EPS)
        noisyspeech = noisyspeech / noisyspeech_maxamplevel
    return noisyspeech


def snr_mix(src: torch.Tensor, dst: torch.Tensor, snr_low: int, snr_high: int, min_overlap: float) -> torch.Tensor:
    snr = snr_low if snr_low == snr_high else np.random.randint(snr_low, snr_high)
    return snr_mixer(src, dst, snr, min_overlap)


def mix_text(src_text: str, dst_text: str) -> str:
    """Description of a mix of two sounds."""
    return src_text + " " + dst_text


def mix_samples(wavs: torch.Tensor, infos: tp.List[SoundInfo], aug_p: float, mix_p: float,
                snr_low: int, snr_high: int, min_overlap: float) -> tp.Tuple[torch.Tensor, tp.List[SoundInfo]]:
    """Mix pairs of batch items with probability `aug_p` (mono audio only)."""
    if random.uniform(0, 1) >= aug_p:
        return wavs, infos
    # items are mixed with a shuffled copy of the batch
    k = max(1, int(len(wavs) * mix_p))
    mixed_sources_idx = torch.randperm(len(wavs))[:k]
    mixed_targets_idx = torch.randperm(len(wavs))[:k]
    aug_wavs = snr_mix(wavs[mixed_sources_idx].view(k, -1), wavs[mixed_targets_idx].view(k, -1),
                       snr_low, snr_high, min_overlap)
    descriptions = [info.description for info in infos]
    aug_infos = []
    for i, j in zip(mixed_sources_idx, mixed_targets_idx):
        text = mix_text(descriptions[i] or "", descriptions[j] or "").strip()
        aug_infos.append(replace(infos[i], description=text or None))
    aug_wavs = aug_wavs.unsqueeze(1)
    return torch.cat([wavs, aug_wavs.to(wavs)], dim=0)[:len(wavs) + k], infos + aug_infos
