"""audiocraft.models"""
# flake8: noqa
from . import builders, loaders
from .encodec import (
    CompressionModel, EncodecModel, HFEncodecCompressionModel, InterleaveStereoCompressionModel,
)
from .lm import LMModel
from .genmodel import BaseGenModel
from .musicgen import MusicGen
from .audiogen import AudioGen
from .lm_magnet import MagnetLMModel
from .magnet import MAGNeT
