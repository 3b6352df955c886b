"""Music dataset: audio segments with their music metadata (description, bpm, key, genre...).

Metadata lives in a JSON file next to each audio file (`song.mp3` -> `song.json`).
"""
from dataclasses import dataclass, field, fields, replace
import gzip
import json
import logging
from pathlib import Path
import random
import typing as tp

import torch

from .info_audio_dataset import (AudioInfo, InfoAudioDataset, attributes_from_fields,
                                 get_keyword, get_keyword_list, get_string, info_from_dict)
from ..modules.conditioners import ConditioningAttributes, JointEmbedCondition, WavCondition

logger = logging.getLogger(__name__)


@dataclass
class MusicInfo(AudioInfo):
    """Segment info augmented with music metadata."""
    title: tp.Optional[str] = None
    artist: tp.Optional[str] = None  # anonymized artist id, to avoid overlap between splits
    key: tp.Optional[str] = None
    bpm: tp.Optional[float] = None
    genre: tp.Optional[str] = None
    moods: tp.Optional[list] = None
    keywords: tp.Optional[list] = None
    description: tp.Optional[str] = None
    name: tp.Optional[str] = None
    instrument: tp.Optional[str] = None
    # the waveform of the segment, for waveform conditioners (e.g. chroma).
    self_wav: tp.Optional[WavCondition] = None
    # attribute name -> joint text / audio embedding condition.
    joint_embed: tp.Dict[str, JointEmbedCondition] = field(default_factory=dict)

    @property
    def has_music_meta(self) -> bool:
        return self.name is not None

    def to_condition_attributes(self) -> ConditioningAttributes:
        return attributes_from_fields(self, wav_fields=('self_wav',), joint_embed_field='joint_embed')

    @staticmethod
    def attribute_getter(attribute: str) -> tp.Optional[tp.Callable]:
        if attribute == 'bpm':
            return get_bpm
        if attribute == 'key':
            return get_musical_key
        if attribute in ['moods', 'keywords']:
            return get_keyword_list
        if attribute in ['genre', 'name', 'instrument']:
            return get_keyword
        if attribute in ['title', 'artist', 'description']:
            return get_string
        return None

    @classmethod
    def from_dict(cls, dictionary: dict, fields_required: bool = False) -> "MusicInfo":
        return info_from_dict(cls, dictionary, fields_required, post_init_attributes=('self_wav', 'joint_embed'),
                              optional_fields=('keywords', 'audio_tokens'), kind='music')


def augment_music_info_description(music_info: MusicInfo, merge_text_p: float = 0.,
                                   drop_desc_p: float = 0., drop_other_p: float = 0.) -> MusicInfo:
    """Merge other metadata fields into the description, with dropout.

    With probability `merge_text_p`, the description is extended with "field: value" pairs
    (each field kept with probability `drop_other_p`), and the original description is then
    dropped with probability `drop_desc_p`.
    """
    def is_valid_field(field_name: str, field_value: tp.Any) -> bool:
        valid_field_name = field_name in ['key', 'bpm', 'genre', 'moods', 'instrument', 'keywords']
        valid_field_value = field_value is not None and isinstance(field_value, (int, float, str, list))
        keep_field = random.uniform(0, 1) < drop_other_p
        return valid_field_name and valid_field_value and keep_field

    def process_value(v: tp.Any) -> str:
        if isinstance(v, (int, float, str)):
            return str(v)
        if isinstance(v, list):
            return ", ".join(v)
        raise ValueError(f"Unknown type for text value! ({type(v), v})")

    description = music_info.description
    metadata_text = ""
    if random.uniform(0, 1) < merge_text_p:
        meta_pairs = [f'{_field.name}: {process_value(getattr(music_info, _field.name))}'
                      for _field in fields(music_info)
                      if is_valid_field(_field.name, getattr(music_info, _field.name))]
        random.shuffle(meta_pairs)
        metadata_text = ". ".join(meta_pairs)
        description = description if not random.uniform(0, 1) < drop_desc_p else None
        logger.debug("Text augmentation: description=%s, metadata=%s", description, metadata_text)

    if description is None:
        description = metadata_text if len(metadata_text) > 1 else None
    else:
        description = ". ".join([description.rstrip('.'), metadata_text])
    description = description.strip() if description else None

    music_info = replace(music_info)
    music_info.description = description
    return music_info


class Paraphraser:
    """Swap descriptions for paraphrases read from a JSON {info path: [paraphrases]} file."""
    def __init__(self, paraphrase_source: tp.Union[str, Path], paraphrase_p: float = 0.):
        self.paraphrase_p = paraphrase_p
        open_fn = gzip.open if str(paraphrase_source).lower().endswith('.gz') else open
        with open_fn(paraphrase_source, 'rb') as f:  # type: ignore
            self.paraphrase_source = json.loads(f.read())
        logger.info("Loaded paraphrasing source from: %s", paraphrase_source)

    def sample_paraphrase(self, audio_path: str, description: str) -> str:
        if random.random() >= self.paraphrase_p:
            return description
        info_path = str(Path(audio_path).with_suffix('.json'))
        if info_path not in self.paraphrase_source:
            logger.warning("%s not in paraphrase source!", info_path)
            return description
        new_desc = random.choice(self.paraphrase_source[info_path])
        logger.debug("%s -> %s", description, new_desc)
        return new_desc


class MusicDataset(InfoAudioDataset):
    """Audio dataset returning `(wav, MusicInfo)`.

    Args:
        info_fields_required: every MusicInfo field must be in the metadata JSON.
        merge_text_p: probability of merging other metadata fields into the description.
        drop_desc_p: probability of dropping the original description when merging.
        drop_other_p: probability of keeping each other field when merging.
        joint_embed_attributes: attributes for which joint embedding conditions are built.
        paraphrase_source: JSON (or .json.gz) mapping info paths to lists of paraphrases.
        paraphrase_p: probability of using a paraphrase.

    See `audiocraft.data.info_audio_dataset.InfoAudioDataset` for the other arguments.
    """
    def __init__(self, *args: tp.Any, info_fields_required: bool = True,
                 merge_text_p: float = 0., drop_desc_p: float = 0., drop_other_p: float = 0.,
                 joint_embed_attributes: tp.List[str] = [],
                 paraphrase_source: tp.Optional[str] = None, paraphrase_p: float = 0,
                 **kwargs: tp.Any):
        kwargs['return_info'] = True  # metadata is the point of this dataset.
        super().__init__(*args, **kwargs)
        self.info_fields_required = info_fields_required
        self.merge_text_p = merge_text_p
        self.drop_desc_p = drop_desc_p
        self.drop_other_p = drop_other_p
        self.joint_embed_attributes = list(joint_embed_attributes)
        self.paraphraser: tp.Optional[Paraphraser] = None
        if paraphrase_source is not None:
            self.paraphraser = Paraphraser(paraphrase_source, paraphrase_p)

    def __getitem__(self, index: int) -> tp.Tuple[torch.Tensor, MusicInfo]:  # type: ignore
        wav, info = super().__getitem__(index)
        info_data = info.to_dict()
        music_info_path = Path(info.meta.path).with_suffix('.json')

        if music_info_path.exists():
            with open(music_info_path, 'r') as json_file:
                try:
                    music_data = json.load(json_file)
                except ValueError as exc:
                    raise ValueError(f"Invalid music metadata JSON {music_info_path}: {exc}") from exc
            music_data.update(info_data)
            music_info = MusicInfo.from_dict(music_data, fields_required=self.info_fields_required)
            if self.paraphraser is not None and music_info.description is not None:
                music_info.description = self.paraphraser.sample_paraphrase(
                    music_info.meta.path, music_info.description)
            if self.merge_text_p:
                music_info = augment_music_info_description(
                    music_info, self.merge_text_p, self.drop_desc_p, self.drop_other_p)
        else:
            music_info = MusicInfo.from_dict(info_data, fields_required=False)

        music_info.self_wav = WavCondition(
            wav=wav[None], length=torch.tensor([info.n_frames]),
            sample_rate=[info.sample_rate], path=[info.meta.path], seek_time=[info.seek_time])

        for att in self.joint_embed_attributes:
            att_value = getattr(music_info, att)
            music_info.joint_embed[att] = JointEmbedCondition(
                wav[None], [att_value], torch.tensor([info.n_frames]),
                sample_rate=[info.sample_rate], path=[info.meta.path], seek_time=[info.seek_time])
        return wav, music_info


def get_musical_key(value: tp.Optional[str]) -> tp.Optional[str]:
    """Lower-cased key; empty or multiple (comma separated) keys become None."""
    if value is None or not isinstance(value, str) or len(value) == 0 or value == 'None':
        return None
    if ',' in value:
        return None
    return value.strip().lower()


def get_bpm(value: tp.Optional[str]) -> tp.Optional[float]:
    """BPM as a float, None when missing or not a number."""
    if value is None:
        return None
    try:
        return float(value)
    except (ValueError, TypeError):
        return None
