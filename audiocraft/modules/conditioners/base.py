"""Conditioning attributes, condition containers and the base conditioner classes.

A conditioner turns one attribute (a text, a waveform, a joint text/audio embedding) into
a `ConditionType`: an embedding [B, T, output_dim] and a mask [B, T].
"""
from dataclasses import dataclass, field
import typing as tp

import torch
from torch import nn

ConditionType = tp.Tuple[torch.Tensor, torch.Tensor]  # (embeddings [B, T, D], mask [B, T])
TextCondition = tp.Optional[str]  # a text attribute; None when absent
ConditionTensors = tp.Dict[str, ConditionType]
CFGConditions = tp.Union[ConditionTensors, tp.Tuple[ConditionTensors, ConditionTensors]]


class WavCondition(tp.NamedTuple):
    """A batch of waveforms [B, C, T] with their lengths, sample rates and provenance."""
    wav: torch.Tensor
    length: torch.Tensor
    sample_rate: tp.List[int]
    path: tp.List[tp.Optional[str]] = []
    seek_time: tp.List[tp.Optional[float]] = []


class JointEmbedCondition(tp.NamedTuple):
    """A waveform batch plus matching texts, for conditioners embedding either (e.g. CLAP)."""
    wav: torch.Tensor
    text: tp.List[tp.Optional[str]]
    length: torch.Tensor
    sample_rate: tp.List[int]
    path: tp.List[tp.Optional[str]] = []
    seek_time: tp.List[tp.Optional[float]] = []


@dataclass
class ConditioningAttributes:
    """Per-sample conditioning: named texts, waveforms and joint embeddings."""
    text: tp.Dict[str, tp.Optional[str]] = field(default_factory=dict)
    wav: tp.Dict[str, WavCondition] = field(default_factory=dict)
    joint_embed: tp.Dict[str, JointEmbedCondition] = field(default_factory=dict)

    def __getitem__(self, item: str) -> tp.Any:
        return getattr(self, item)

    @property
    def text_attributes(self) -> tp.KeysView[str]:
        return self.text.keys()

    @property
    def wav_attributes(self) -> tp.KeysView[str]:
        return self.wav.keys()

    @property
    def joint_embed_attributes(self) -> tp.KeysView[str]:
        return self.joint_embed.keys()

    @property
    def attributes(self) -> tp.Dict[str, tp.KeysView[str]]:
        return {
            "text": self.text_attributes,
            "wav": self.wav_attributes,
            "joint_embed": self.joint_embed_attributes,
        }

    def to_flat_dict(self) -> tp.Dict[str, tp.Any]:
        """Flatten to {'text.<name>': ..., 'wav.<name>': ..., 'joint_embed.<name>': ...}."""
        return {
            **{f"text.{k}": v for k, v in self.text.items()},
            **{f"wav.{k}": v for k, v in self.wav.items()},
            **{f"joint_embed.{k}": v for k, v in self.joint_embed.items()},
        }

    @classmethod
    def from_flat_dict(cls, x: tp.Dict[str, tp.Any]) -> "ConditioningAttributes":
        """Inverse of `to_flat_dict`."""
        out = cls()
        for key, value in x.items():
            kind, _, name = key.partition(".")
            if kind not in ("text", "wav", "joint_embed") or not name:
                raise ValueError(f"Invalid flat attribute key '{key}': expected 'text.<name>', "
                                 "'wav.<name>' or 'joint_embed.<name>'.")
            out[kind][name] = value
        return out


class SegmentWithAttributes:
    """Mixin for dataset segment infos that can be turned into conditioning attributes."""

    def to_condition_attributes(self) -> ConditioningAttributes:
        raise NotImplementedError()


def nullify_condition(condition: ConditionType, dim: int = 1) -> ConditionType:
    """Zero condition of length 1 along `dim` (never the batch) and an all-zero int mask [B, 1]."""
    if dim == 0:
        raise ValueError("nullify_condition: dim cannot be the batch dimension.")
    if not (isinstance(condition, tuple) and isinstance(condition[0], torch.Tensor)
            and isinstance(condition[1], torch.Tensor)):
        raise TypeError("nullify_condition expects a (tensor, mask tensor) tuple.")
    cond, _ = condition
    batch = cond.shape[0]
    last_dim = cond.dim() - 1
    out = cond.transpose(dim, last_dim)
    out = 0. * out[..., :1]
    out = out.transpose(dim, last_dim)
    mask = torch.zeros((batch, 1), device=out.device).int()
    return out, mask


def nullify_wav(cond: WavCondition) -> WavCondition:
    """A null waveform condition: one zero sample per item, zero length, no path."""
    null_wav, _ = nullify_condition((cond.wav, torch.zeros_like(cond.wav)), dim=cond.wav.dim() - 1)
    batch = cond.wav.shape[0]
    return WavCondition(
        wav=null_wav,
        length=torch.tensor([0] * batch, device=cond.wav.device),
        sample_rate=cond.sample_rate,
        path=[None] * batch,
        seek_time=[None] * batch,
    )


def nullify_joint_embed(embed: JointEmbedCondition) -> JointEmbedCondition:
    """A null joint-embedding condition: zero waveform of one sample and no text."""
    null_wav, _ = nullify_condition((embed.wav, torch.zeros_like(embed.wav)), dim=embed.wav.dim() - 1)
    return JointEmbedCondition(
        wav=null_wav, text=[None] * len(embed.text),
        length=torch.LongTensor([0]).to(embed.wav.device),
        sample_rate=embed.sample_rate, path=[None] * embed.wav.shape[0],
        seek_time=[0] * embed.wav.shape[0],
    )


def autocast_dtype_for(autocast_dtype: tp.Optional[str],
                       device: tp.Union[torch.device, str]) -> tp.Optional[torch.dtype]:
    """The torch dtype named `autocast_dtype` ('float16', ...), or None (no autocast) on CPU or when None."""
    if autocast_dtype is None or str(device) == 'cpu':
        return None
    dtype = getattr(torch, autocast_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"Invalid autocast_dtype '{autocast_dtype}'.")
    return dtype


class BaseConditioner(nn.Module):
    """Projects `dim`-sized features to the model's `output_dim` with `output_proj`.

    Subclasses implement `tokenize` (cheap, may run in a data loader, moves data to
    the right device) and `forward` (tokenized input -> `ConditionType`).
    """

    def __init__(self, dim: int, output_dim: int):
        super().__init__()
        self.dim = dim
        self.output_dim = output_dim
        self.output_proj = nn.Linear(dim, output_dim)

    def tokenize(self, *args: tp.Any, **kwargs: tp.Any) -> tp.Any:
        raise NotImplementedError()

    def forward(self, inputs: tp.Any) -> ConditionType:
        raise NotImplementedError()


class TextConditioner(BaseConditioner):
    """Conditioners fed with a list of optional strings (None means 'absent')."""


class WaveformConditioner(BaseConditioner):
    """Conditioners fed with a `WavCondition`; embeddings come from `_get_wav_embedding`."""

    def __init__(self, dim: int, output_dim: int, device: tp.Union[torch.device, str]):
        super().__init__(dim, output_dim)
        self.device = device
        # Subclasses that tile a short condition over a fixed length turn masking off.
        self._use_masking = True

    def tokenize(self, x: WavCondition) -> WavCondition:
        wav, length, sample_rate, path, seek_time = x
        if length is None:
            raise ValueError("WavCondition.length is required.")
        return WavCondition(wav.to(self.device), length.to(self.device), sample_rate, path, seek_time)

    def _get_wav_embedding(self, x: WavCondition) -> torch.Tensor:
        """Embedding [B, T, dim] of the waveforms in `x`."""
        raise NotImplementedError()

    def _downsampling_factor(self) -> int:
        """Number of waveform samples per embedding frame."""
        raise NotImplementedError()

    def forward(self, x: WavCondition) -> ConditionType:
        lengths = x.length
        with torch.no_grad():
            embeds = self._get_wav_embedding(x)
        embeds = embeds.to(self.output_proj.weight)
        embeds = self.output_proj(embeds)
        if lengths is not None and self._use_masking:
            frames = lengths / self._downsampling_factor()
            mask = (torch.arange(embeds.shape[1], device=embeds.device)[None, :]
                    < frames.to(embeds.device)[:, None]).int()
        else:
            mask = torch.ones_like(embeds[..., 0])
        embeds = embeds * mask.unsqueeze(-1)
        return embeds, mask
