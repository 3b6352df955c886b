"""audiocraft.data"""
# flake8: noqa
from . import audio, audio_utils
from . import audio_dataset, info_audio_dataset, music_dataset, sound_dataset, zip
from .audio_dataset import AudioDataset, AudioMeta, SegmentInfo
from .info_audio_dataset import AudioInfo, InfoAudioDataset
from .music_dataset import MusicDataset, MusicInfo
from .sound_dataset import SoundDataset, SoundInfo
