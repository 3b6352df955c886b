"""Builders: the only code that turns Hydra/OmegaConf config into modules.

Sections are owned by different parts of the library; keep each function's config
reading here so that model classes only ever receive plain arguments.
"""
import typing as tp

import omegaconf
import torch

from ..utils.utils import dict_from_config

# ---- compression (EnCodec, quantizers, codebook patterns) ----

# ---- conditioning (conditioners, provider, fuser) ----

# ---- language models (MusicGen / AudioGen / MAGNeT LMs) ----
