"""ConditioningProvider: batches per-sample attributes and runs every conditioner on them."""
from collections import defaultdict
from itertools import chain
import typing as tp

import torch
from torch import nn

from ...utils.utils import collate
from .base import (BaseConditioner, ConditionType, ConditioningAttributes, JointEmbedCondition,
                   TextConditioner, WavCondition, WaveformConditioner)
from .clap import JointEmbeddingConditioner


class ConditioningProvider(nn.Module):
    """Owns the named conditioners; `tokenize` collates attributes, `forward` embeds them.

    The output dict lists text conditions first, then waveform, then joint-embedding
    ones, each in the order of `conditioners`. Prepend fusing follows that order.
    """

    def __init__(self, conditioners: tp.Dict[str, BaseConditioner], device: tp.Union[torch.device, str] = "cpu"):
        super().__init__()
        self.device = device
        self.conditioners = nn.ModuleDict(conditioners)

    @property
    def joint_embed_conditions(self) -> tp.List[str]:
        return [k for k, v in self.conditioners.items() if isinstance(v, JointEmbeddingConditioner)]

    @property
    def has_joint_embed_conditions(self) -> bool:
        return len(self.joint_embed_conditions) > 0

    @property
    def text_conditions(self) -> tp.List[str]:
        return [k for k, v in self.conditioners.items() if isinstance(v, TextConditioner)]

    @property
    def wav_conditions(self) -> tp.List[str]:
        return [k for k, v in self.conditioners.items() if isinstance(v, WaveformConditioner)]

    @property
    def has_wav_condition(self) -> bool:
        return len(self.wav_conditions) > 0

    def tokenize(self, inputs: tp.List[ConditioningAttributes]) -> tp.Dict[str, tp.Any]:
        """Collate a batch of attributes and tokenize each attribute with its conditioner.

        Text attributes missing from a sample count as absent (None); waveform and joint
        attributes must be present in every sample (use null conditions instead).
        """
        if not all(isinstance(x, ConditioningAttributes) for x in inputs):
            raise TypeError("ConditioningProvider.tokenize expects a list of ConditioningAttributes, "
                            f"got {[type(x).__name__ for x in inputs]}.")
        text = self._collate_text(inputs)
        wavs = self._collate_wavs(inputs)
        joint_embeds = self._collate_joint_embeds(inputs)
        given = set(text.keys()) | set(wavs.keys()) | set(joint_embeds.keys())
        unknown = given - set(self.conditioners.keys())
        if unknown:
            raise ValueError(f"Unexpected conditioning attributes {sorted(unknown)}; this model's "
                             f"conditioners are {list(self.conditioners.keys())}.")
        output = {}
        for attribute, batch in chain(text.items(), wavs.items(), joint_embeds.items()):
            output[attribute] = self.conditioners[attribute].tokenize(batch)
        return output

    def forward(self, tokenized: tp.Dict[str, tp.Any]) -> tp.Dict[str, ConditionType]:
        """Embed tokenized attributes: {name: (embeddings [B, T, D], mask [B, T])}."""
        output = {}
        for attribute, inputs in tokenized.items():
            condition, mask = self.conditioners[attribute](inputs)
            output[attribute] = (condition, mask)
        return output

    def _collate_text(self, samples: tp.List[ConditioningAttributes]) -> tp.Dict[str, tp.List[tp.Optional[str]]]:
        """{attribute: [text of sample 0, text of sample 1, ...]} with None for absent texts."""
        out: tp.Dict[str, tp.List[tp.Optional[str]]] = defaultdict(list)
        for sample in samples:
            for condition in self.text_conditions:
                out[condition].append(sample.text.get(condition))
        return out

    def _collate_wavs(self, samples: tp.List[ConditioningAttributes]) -> tp.Dict[str, WavCondition]:
        """Stack per-sample mono waveforms [1, C, T] into a right-padded [B, 1, T_max] batch."""
        wavs: tp.Dict[str, tp.List[torch.Tensor]] = defaultdict(list)
        lengths: tp.Dict[str, tp.List[torch.Tensor]] = defaultdict(list)
        sample_rates: tp.Dict[str, tp.List[int]] = defaultdict(list)
        paths: tp.Dict[str, tp.List[tp.Optional[str]]] = defaultdict(list)
        seek_times: tp.Dict[str, tp.List[tp.Optional[float]]] = defaultdict(list)
        out: tp.Dict[str, WavCondition] = {}
        for sample in samples:
            for attribute in self.wav_conditions:
                if attribute not in sample.wav:
                    raise ValueError(f"Missing waveform condition '{attribute}'; pass a null WavCondition "
                                     "(a [1, 1, 1] zero wav with length 0) when there is none.")
                wav, length, sample_rate, path, seek_time = sample.wav[attribute]
                if wav.dim() != 3 or wav.shape[0] != 1:
                    raise ValueError(f"Waveform condition '{attribute}' must be [1, C, T], "
                                     f"got shape {tuple(wav.shape)}.")
                wav = wav.mean(1, keepdim=True)  # conditioning is mono
                wavs[attribute].append(wav.flatten())
                lengths[attribute].append(length)
                sample_rates[attribute].extend(sample_rate)
                paths[attribute].extend(path)
                seek_times[attribute].extend(seek_time)
        for attribute in self.wav_conditions:
            if not wavs[attribute]:
                continue
            stacked, _ = collate(wavs[attribute], dim=0)
            out[attribute] = WavCondition(stacked.unsqueeze(1), torch.cat(lengths[attribute]),
                                          sample_rates[attribute], paths[attribute], seek_times[attribute])
        return out

    def _collate_joint_embeds(self, samples: tp.List[ConditioningAttributes]) -> tp.Dict[str, JointEmbedCondition]:
        """Stack joint (waveform, text) conditions like `_collate_wavs`, keeping the texts."""
        texts: tp.Dict[str, tp.List[tp.Optional[str]]] = defaultdict(list)
        wavs: tp.Dict[str, tp.List[torch.Tensor]] = defaultdict(list)
        lengths: tp.Dict[str, tp.List[torch.Tensor]] = defaultdict(list)
        sample_rates: tp.Dict[str, tp.List[int]] = defaultdict(list)
        paths: tp.Dict[str, tp.List[tp.Optional[str]]] = defaultdict(list)
        seek_times: tp.Dict[str, tp.List[tp.Optional[float]]] = defaultdict(list)
        out: tp.Dict[str, JointEmbedCondition] = {}
        for sample in samples:
            for attribute in self.joint_embed_conditions:
                if attribute not in sample.joint_embed:
                    raise ValueError(f"Missing joint embedding condition '{attribute}'.")
                wav, text, length, sample_rate, path, seek_time = sample.joint_embed[attribute]
                if wav.dim() != 3 or wav.shape[0] != 1:
                    raise ValueError(f"Joint embedding wav '{attribute}' must be [1, C, T], "
                                     f"got shape {tuple(wav.shape)}.")
                wav = wav.mean(1, keepdim=True)
                wavs[attribute].append(wav.flatten())
                texts[attribute].extend(text)
                lengths[attribute].append(length)
                sample_rates[attribute].extend(sample_rate)
                paths[attribute].extend(path)
                seek_times[attribute].extend(seek_time)
        for attribute in self.joint_embed_conditions:
            if not wavs[attribute]:
                continue
            stacked, _ = collate(wavs[attribute], dim=0)
            out[attribute] = JointEmbedCondition(stacked.unsqueeze(1), texts[attribute],
                                                 torch.cat(lengths[attribute]), sample_rates[attribute],
                                                 paths[attribute], seek_times[attribute])
        return out
