"""AudioDataset returning conditioning-ready segment infos, and keyword preprocessing helpers."""
from dataclasses import dataclass, fields
import logging
import math
import re
import typing as tp

import torch

from .audio_dataset import AudioDataset, AudioMeta, SegmentInfo
from ..environment import AudioCraftEnvironment
from ..modules.conditioners import ConditioningAttributes, SegmentWithAttributes

logger = logging.getLogger(__name__)

# SegmentInfo / AudioInfo fields that describe the segment, not a conditioning attribute.
SEGMENT_FIELDS = ('meta', 'seek_time', 'n_frames', 'total_frames', 'sample_rate', 'channels', 'audio_tokens')


def _clusterify_meta(meta: AudioMeta, env: AudioCraftEnvironment) -> AudioMeta:
    """Rewrite paths with the cluster's dataset mappers."""
    meta.path = env.apply_dataset_mappers(meta.path)
    if meta.info_path is not None:
        meta.info_path.zip_path = env.apply_dataset_mappers(meta.info_path.zip_path)
    return meta


def clusterify_all_meta(meta: tp.List[AudioMeta]) -> tp.List[AudioMeta]:
    """Apply the cluster's dataset mappers to every meta."""
    env = AudioCraftEnvironment()
    return [_clusterify_meta(m, env) for m in meta]


@dataclass
class AudioInfo(SegmentInfo, SegmentWithAttributes):
    """Segment info with (no) conditioning attributes; base of the music / sound infos."""
    audio_tokens: tp.Optional[torch.Tensor] = None  # filled when training an LM from cached tokens.

    def to_condition_attributes(self) -> ConditioningAttributes:
        return ConditioningAttributes()


class InfoAudioDataset(AudioDataset):
    """AudioDataset whose items are `(wav, AudioInfo)` when `return_info=True`.

    See `audiocraft.data.audio_dataset.AudioDataset` for the arguments.
    """
    def __init__(self, meta: tp.List[AudioMeta], **kwargs: tp.Any):
        super().__init__(clusterify_all_meta(meta), **kwargs)

    def __getitem__(self, index: int) -> tp.Union[torch.Tensor, tp.Tuple[torch.Tensor, SegmentWithAttributes]]:
        if not self.return_info:
            wav = super().__getitem__(index)
            assert isinstance(wav, torch.Tensor)
            return wav
        wav, meta = super().__getitem__(index)
        return wav, AudioInfo(**meta.to_dict())


def get_keyword_or_keyword_list(value: tp.Optional[str]) -> tp.Union[tp.Optional[str], tp.Optional[tp.List[str]]]:
    """Preprocess a keyword, or each keyword of a list."""
    if isinstance(value, list):
        return get_keyword_list(value)
    return get_keyword(value)


def get_string(value: tp.Optional[str]) -> tp.Optional[str]:
    """Strip a string; empty values and 'None' become None."""
    if value is None or not isinstance(value, str) or len(value) == 0 or value == 'None':
        return None
    return value.strip()


def get_keyword(value: tp.Optional[str]) -> tp.Optional[str]:
    """Strip and lower-case a keyword; empty values and 'None' become None."""
    if value is None or not isinstance(value, str) or len(value) == 0 or value == 'None':
        return None
    return value.strip().lower()


def get_keyword_list(values: tp.Union[str, tp.List[str]]) -> tp.Optional[tp.List[str]]:
    """Preprocess a list of keywords (or a comma / space separated string of them)."""
    if isinstance(values, str):
        values = [v.strip() for v in re.split(r'[,\s]', values)]
    elif isinstance(values, float) and math.isnan(values):
        values = []
    if not isinstance(values, list):
        logger.debug("Unexpected keyword list %r", values)
        values = [str(values)]
    kws = [get_keyword(v) for v in values]
    kws = [kw for kw in kws if kw is not None]
    return kws if kws else None


def attributes_from_fields(info: tp.Any, wav_fields: tp.Sequence[str] = ('self_wav',),
                           joint_embed_field: tp.Optional[str] = None) -> ConditioningAttributes:
    """Conditioning attributes of a dataclass info: text fields, wav fields, joint embeddings."""
    out = ConditioningAttributes()
    for _field in fields(info):
        key, value = _field.name, getattr(info, _field.name)
        if key in SEGMENT_FIELDS:
            continue
        if key in wav_fields:
            if value is not None:
                out.wav[key] = value
        elif key == joint_embed_field:
            for embed_attribute, embed_cond in value.items():
                out.joint_embed[embed_attribute] = embed_cond
        else:
            if isinstance(value, list):
                value = ' '.join(value)
            out.text[key] = value
    return out


def info_from_dict(cls: tp.Any, dictionary: dict, fields_required: bool, post_init_attributes: tp.Sequence[str],
                   optional_fields: tp.Sequence[str], kind: str) -> tp.Any:
    """Build the info dataclass `cls` from a metadata dict, preprocessing values with `cls.attribute_getter`.

    Fields in `post_init_attributes` are filled after loading and never read from `dictionary`;
    with `fields_required`, every other field except `optional_fields` must be present.
    """
    _dictionary: tp.Dict[str, tp.Any] = {}
    for _field in fields(cls):
        if _field.name in post_init_attributes:
            continue
        if _field.name not in dictionary:
            if fields_required and _field.name not in optional_fields:
                raise KeyError(f"Missing {kind} metadata field '{_field.name}'. Add it to the metadata "
                               "JSON or set info_fields_required=False.")
            continue
        preprocess_func = cls.attribute_getter(_field.name)
        value = dictionary[_field.name]
        if preprocess_func:
            value = preprocess_func(value)
        _dictionary[_field.name] = value
    return cls(**_dictionary)
