"""Helpers for tests written the way AudioCraft's own unit tests are: temp dirs and white noise."""
# flake8: noqa
from .temp_utils import TempDirMixin
from .wav_utils import get_batch_white_noise, get_white_noise, save_wav
