"""LAION-CLAP in plain PyTorch: checkpoints of laion_clap load without the laion_clap package."""
# flake8: noqa
from .htsat import HTSAT, HTSATConfig, slaney_mel_filters
from .model import CLAP, CLAPModule, HTSAT_PRESETS, clap_state_dict, crop_or_repeat_pad, load_clap_module
