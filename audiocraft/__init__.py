"""AudioCraft-compatible audio generation: EnCodec, MusicGen, AudioGen and MAGNeT.

Released AudioCraft checkpoints load unchanged; see `audiocraft.models`.
"""
# flake8: noqa
from . import data, modules, models

__version__ = '1.4.0a1'
