"""AudioGen: text-to-sound generation (environmental sounds, sound effects) at 16 kHz."""
import typing as tp

import torch

from .builders import get_debug_compression_model, get_debug_lm_model
from .encodec import CompressionModel
from .genmodel import BaseGenModel, _check_model_name, check_autoregressive_lm, compression_source, default_device
from .lm import LMModel
from .loaders import load_compression_model, load_lm_model


class AudioGen(BaseGenModel):
    """AudioGen: a compression model and an LM generating its tokens from text descriptions
    of sounds. Constructor arguments as for `BaseGenModel`; generates 5 s by default.
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None):
        super().__init__(name, compression_model, lm, max_duration)
        self.set_generation_params(duration=5, extend_stride=2 if self.max_duration > 2 else self.max_duration / 2)

    @staticmethod
    def get_pretrained(name: str = 'facebook/audiogen-medium', device: tp.Optional[tp.Union[str, torch.device]] = None
                       ) -> 'AudioGen':
        """Load a pretrained AudioGen: a hub id ('facebook/audiogen-medium'), a local folder or
        file, or 'debug' for a tiny random model (offline, for tests). Device defaults to
        'cuda' if available, else 'cpu'."""
        if device is None:
            device = default_device()
        _check_model_name(name)
        if name == 'debug':
            compression_model = get_debug_compression_model(device, sample_rate=16000)
            lm = get_debug_lm_model(device)
            return AudioGen(name, compression_model, lm, max_duration=10)
        lm = load_lm_model(name, device=device)
        check_autoregressive_lm(lm, name, 'AudioGen')
        compression_model = load_compression_model(compression_source(name), device=device)
        if 'self_wav' in lm.condition_provider.conditioners:
            raise RuntimeError(f"{name!r} has waveform conditioning, which AudioGen does not support; "
                               "load it with MusicGen.get_pretrained instead.")
        return AudioGen(name, compression_model, lm)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 250, top_p: float = 0.0,
                              temperature: float = 1.0, duration: float = 10.0, cfg_coef: float = 3.0,
                              two_step_cfg: bool = False, extend_stride: float = 2) -> None:
        """Set the generation parameters (see MusicGen.set_generation_params); duration in seconds.

        Every call resets the parameters it is not given to these defaults (10 s here; a fresh
        model generates 5 s), as in AudioCraft.
        """
        self._set_sampling_params(use_sampling, top_k, top_p, temperature, duration, cfg_coef,
                                  two_step_cfg, extend_stride)
