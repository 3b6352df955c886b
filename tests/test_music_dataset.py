"""MusicDataset / SoundDataset: metadata loading, conditioning attributes, text augmentation."""
import json
from pathlib import Path
import random

import pytest
import torch

from audiocraft.data.audio import audio_write
from audiocraft.data.audio_dataset import AudioMeta, load_audio_meta
from audiocraft.data.info_audio_dataset import AudioInfo, InfoAudioDataset, get_keyword_list
from audiocraft.data.music_dataset import (MusicDataset, MusicInfo, Paraphraser, augment_music_info_description,
                                           get_bpm, get_musical_key)
from audiocraft.data.sound_dataset import SoundDataset, SoundInfo
from audiocraft.modules.conditioners import ConditioningAttributes, WavCondition

REPO = Path(__file__).parent.parent
EXAMPLE = REPO / "egs" / "example"


def _example_dataset(**kwargs) -> MusicDataset:
    kwargs = {'segment_duration': 1.0, 'num_samples': 6, 'sample_rate': 16000, 'channels': 1,
              'shuffle': False, **kwargs}
    return MusicDataset.from_meta(EXAMPLE, **kwargs)


def test_example_music_dataset_returns_music_info():
    ds = _example_dataset()
    wav, info = ds[0]
    assert wav.shape == (1, 16000)
    assert isinstance(info, MusicInfo) and isinstance(info, AudioInfo)
    raw = json.loads(Path(info.meta.path).with_suffix('.json').read_text())
    assert info.description == raw['description']
    assert info.bpm == float(raw['bpm'])
    assert info.key == (raw['key'].strip().lower() or None)
    assert info.moods == raw['moods'] and info.name == raw['name']
    assert info.sample_rate == 16000  # segment values win over the metadata file
    assert isinstance(info.self_wav, WavCondition)
    assert info.self_wav.wav.shape == (1, 1, 16000)
    assert info.self_wav.path == [info.meta.path] and info.self_wav.seek_time == [info.seek_time]

    attrs = info.to_condition_attributes()
    assert isinstance(attrs, ConditioningAttributes)
    assert attrs.text['description'] == info.description
    assert attrs.text['moods'] == ' '.join(info.moods)
    assert set(attrs.wav) == {'self_wav'}
    assert 'meta' not in attrs.text and 'seek_time' not in attrs.text


def test_music_batches_collate_with_infos():
    ds = _example_dataset(num_samples=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=ds.collater)
    wav, infos = next(iter(loader))
    assert wav.shape == (2, 1, 16000)
    assert len(infos) == 2 and all(isinstance(i, MusicInfo) for i in infos)


def test_required_metadata_fields(tmp_path):
    audio_write(tmp_path / "song", 0.1 * torch.randn(1, 8000), 8000, strategy='clip')
    (tmp_path / "song.json").write_text(json.dumps({"description": "a song", "bpm": "not a number"}))
    meta = [AudioMeta(str(tmp_path / "song.wav"), 1.0, 8000)]
    with pytest.raises(KeyError, match="title"):
        MusicDataset(meta, segment_duration=None, sample_rate=8000, channels=1)[0]
    _, info = MusicDataset(meta, segment_duration=None, sample_rate=8000, channels=1,
                           info_fields_required=False)[0]
    assert info.description == "a song" and info.bpm is None and info.title is None
    # no metadata file at all: an info without music metadata
    (tmp_path / "song.json").unlink()
    _, info = MusicDataset(meta, segment_duration=None, sample_rate=8000, channels=1)[0]
    assert not info.has_music_meta and info.description is None


def test_text_augmentation_merges_fields():
    segment = {'meta': AudioMeta('/x.wav', 1., 8000), 'seek_time': 0., 'n_frames': 8000, 'total_frames': 8000,
               'sample_rate': 8000, 'channels': 1}
    info = MusicInfo.from_dict({'description': 'A calm tune.', 'bpm': 90, 'key': 'C', 'genre': 'Jazz',
                                'moods': ['calm', 'soft'], 'instrument': 'Piano', 'title': 'x', **segment})
    random.seed(0)
    merged = augment_music_info_description(info, merge_text_p=1., drop_desc_p=0., drop_other_p=1.)
    assert merged.description.startswith('A calm tune. ')
    for part in ['bpm: 90.0', 'key: c', 'genre: jazz', 'moods: calm, soft', 'instrument: piano']:
        assert part in merged.description
    assert 'title' not in merged.description
    assert info.description == 'A calm tune.'  # the original is untouched
    dropped = augment_music_info_description(info, merge_text_p=1., drop_desc_p=1., drop_other_p=1.)
    assert 'A calm tune' not in dropped.description and 'genre: jazz' in dropped.description
    unchanged = augment_music_info_description(info, merge_text_p=0.)
    assert unchanged.description == 'A calm tune.'
    ds = _example_dataset(merge_text_p=1., drop_desc_p=0., drop_other_p=1.)
    assert 'genre: ' in ds[0][1].description


def test_paraphraser(tmp_path):
    source = tmp_path / "para.json"
    source.write_text(json.dumps({'/data/song.json': ['another description']}))
    para = Paraphraser(source, paraphrase_p=1.)
    assert para.sample_paraphrase('/data/song.mp3', 'orig') == 'another description'
    assert para.sample_paraphrase('/data/other.mp3', 'orig') == 'orig'
    assert Paraphraser(source, paraphrase_p=0.).sample_paraphrase('/data/song.mp3', 'orig') == 'orig'


def test_keyword_helpers():
    assert get_bpm("120") == 120. and get_bpm("") is None and get_bpm(None) is None
    assert get_musical_key(" A Minor ") == "a minor"
    assert get_musical_key("C, D") is None and get_musical_key("") is None
    assert get_keyword_list("Rock, Pop jazz") == ["rock", "pop", "jazz"]
    assert get_keyword_list([]) is None


def test_sound_dataset(tmp_path):
    for name, desc in [("dog", ["a dog barks", "barking dog"]), ("rain", "Rain on a roof")]:
        audio_write(tmp_path / name, 0.1 * torch.randn(1, 8000), 8000, strategy='clip')
        (tmp_path / f"{name}.json").write_text(json.dumps({"description": desc}))
    meta = [AudioMeta(str(tmp_path / f"{n}.wav"), 1.0, 8000) for n in ("dog", "rain")]
    ds = SoundDataset(meta, segment_duration=None, sample_rate=8000, channels=1)
    _, dog = ds[0]
    _, rain = ds[1]
    assert isinstance(dog, SoundInfo) and dog.description in ("a dog barks", "barking dog")
    assert rain.description == "rain on a roof"  # keywords are lower-cased
    attrs = rain.to_condition_attributes()
    assert attrs.text == {'description': 'rain on a roof'} and 'self_wav' in attrs.wav
    wav, infos = ds.collater([ds[0], ds[1]])
    assert wav.shape == (2, 1, 8000) and len(infos) == 2
    (tmp_path / "rain.json").unlink()
    with pytest.raises(FileNotFoundError, match="rain"):
        ds[1]
    _, bare = SoundDataset(meta, segment_duration=None, sample_rate=8000, channels=1,
                           info_fields_required=False)[1]
    assert bare.description is None
    with pytest.raises(ValueError, match="mix_p"):
        SoundDataset(meta, segment_duration=None, aug_p=0.5)


def test_info_audio_dataset_and_manifest_of_example():
    meta = load_audio_meta(EXAMPLE / "data.jsonl")
    ds = InfoAudioDataset(meta, segment_duration=0.5, num_samples=2, sample_rate=8000, channels=2,
                          return_info=True)
    wav, info = ds[0]
    assert wav.shape == (2, 4000) and isinstance(info, AudioInfo)
    assert info.to_condition_attributes() == ConditioningAttributes()
    assert InfoAudioDataset(meta, segment_duration=0.5, num_samples=2)[0].shape == (2, 24000)
