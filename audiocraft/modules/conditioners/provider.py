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

    def _names_of(self, kind: type) -> tp.List[str]:
        return [name for name, conditioner in self.conditioners.items() if isinstance(conditioner, kind)]

    @property
    def joint_embed_conditions(self) -> tp.List[str]:
        return self._names_of(JointEmbeddingConditioner)

    @property
    def has_joint_embed_conditions(self) -> bool:
        return len(self.joint_embed_conditions) > 0

    @property
    def text_conditions(self) -> tp.List[str]:
        return self._names_of(TextConditioner)

    @property
    def wav_conditions(self) -> tp.List[str]:
        return self._names_of(WaveformConditioner)

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
        return _collate_waveform_conditions(
            [sample.wav for sample in samples], self.wav_conditions, WavCondition,
            missing="Missing waveform condition '{}'; pass a null WavCondition "
                    "(a [1, 1, 1] zero wav with length 0) when there is none.",
            what="Waveform condition")

    def _collate_joint_embeds(self, samples: tp.List[ConditioningAttributes]) -> tp.Dict[str, JointEmbedCondition]:
        """Stack joint (waveform, text) conditions like `_collate_wavs`, keeping the texts."""
        return _collate_waveform_conditions(
            [sample.joint_embed for sample in samples], self.joint_embed_conditions, JointEmbedCondition,
            missing="Missing joint embedding condition '{}'.", what="Joint embedding wav")


_Cond = tp.TypeVar('_Cond', WavCondition, JointEmbedCondition)


def _collate_waveform_conditions(per_sample: tp.List[tp.Dict[str, tp.Any]], attributes: tp.List[str],
                                 cls: tp.Type[_Cond], missing: str, what: str) -> tp.Dict[str, _Cond]:
    """Batch the `cls` conditions of each sample: mono wavs right-padded to [B, 1, T_max],
    lengths concatenated, and the per-sample lists (texts, sample rates, paths...) joined."""
    collected: tp.Dict[str, tp.Dict[str, list]] = {attribute: defaultdict(list) for attribute in attributes}
    for conditions in per_sample:
        for attribute in attributes:
            if attribute not in conditions:
                raise ValueError(missing.format(attribute))
            condition = cls._make(conditions[attribute])
            if condition.wav.dim() != 3 or condition.wav.shape[0] != 1:
                raise ValueError(f"{what} '{attribute}' must be [1, C, T], got shape {tuple(condition.wav.shape)}.")
            fields = collected[attribute]
            fields['wav'].append(condition.wav.mean(1, keepdim=True).flatten())  # conditioning is mono
            fields['length'].append(condition.length)
            for name in cls._fields[1:]:
                if name != 'length':
                    fields[name].extend(getattr(condition, name))
    out: tp.Dict[str, _Cond] = {}
    for attribute in attributes:
        fields = collected[attribute]
        if not fields['wav']:
            continue
        stacked, _ = collate(fields['wav'], dim=0)
        out[attribute] = cls(**{**fields, 'wav': stacked.unsqueeze(1), 'length': torch.cat(fields['length'])})
    return out
