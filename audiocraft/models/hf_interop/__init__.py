"""Both ways with Hugging Face transformers' MusicGen (`MusicgenForConditionalGeneration`, Melody, stereo).

- `musicgen_from_transformers(folder_or_repo)`: a transformers-format checkpoint as an AudioCraft MusicGen
  (`MusicGen.get_pretrained` calls it for such folders and repos).
- `convert_transformers_to_audiocraft(src, dst)`: the same checkpoint written in AudioCraft's format.
- `export_musicgen_to_transformers(src, dst)`: an AudioCraft MusicGen written in transformers' format.
See docs/TRANSFORMERS.md for the name mapping and numeric conventions.
"""
# flake8: noqa
from .errors import NotConvertibleError
from .from_transformers import (convert_transformers_to_audiocraft, generation_params_from_transformers,
                                hub_transformers_model_type, is_transformers_musicgen, lm_from_transformers,
                                load_transformers_model, musicgen_from_transformers)
from .to_transformers import export_musicgen_to_transformers, musicgen_to_transformers
