"""Discriminators used as adversaries: multi-period, multi-scale and multi-scale STFT."""
# flake8: noqa
from .base import MultiDiscriminator
from .mpd import MultiPeriodDiscriminator
from .msd import MultiScaleDiscriminator
from .msstftd import MultiScaleSTFTDiscriminator
