"""MAGNeT: text-to-music and text-to-sound generation by masked, non-autoregressive decoding.

The model always generates a full segment of its training duration (10 s or 30 s for the
released models); `duration` is therefore fixed to `max_duration`.
"""
import typing as tp

import torch

from .builders import get_debug_compression_model, get_debug_magnet_lm_model
from .encodec import CompressionModel
from .genmodel import BaseGenModel, compression_source, default_device
from .lm import LMModel
from .generation_params import validate_generation_params
from .loaders import load_compression_model, load_lm_model_magnet
from ..utils.errors import InvalidArgumentError

RELEASED_MAGNET_MODELS = (
    'facebook/magnet-small-10secs',
    'facebook/magnet-medium-10secs',
    'facebook/magnet-small-30secs',
    'facebook/magnet-medium-30secs',
    'facebook/audio-magnet-small',
    'facebook/audio-magnet-medium',
)
SPAN_ARRANGEMENTS = ('nonoverlap', 'stride1')


class MAGNeT(BaseGenModel):
    """MAGNeT main model, with convenient generation API.

    Args:
        name (str): name of the model.
        compression_model (CompressionModel): compression model used to map audio to tokens.
        lm (LMModel): a `MagnetLMModel` over the compression model's tokens.
        max_duration (float, optional): segment duration in seconds; read from the LM's config if None.
    """

    def __init__(self, name: str, compression_model: CompressionModel, lm: LMModel,
                 max_duration: tp.Optional[float] = None):
        super().__init__(name, compression_model, lm, max_duration)
        # MAGNeT works on sequences of fixed length: its training segment duration.
        cfg = getattr(lm, 'cfg', None)
        if cfg is not None:
            self.duration = cfg.dataset.segment_duration
        else:
            self.duration = self.max_duration
        self.set_generation_params()

    @staticmethod
    def get_pretrained(name: str = 'facebook/magnet-small-10secs',
                       device: tp.Optional[tp.Union[str, torch.device]] = None) -> 'MAGNeT':
        """Return a pretrained model: a hub id, a folder holding `state_dict.bin` and
        `compression_state_dict.bin`, or a file. The released models are:

        - facebook/magnet-small-10secs (300M), text to music, 10-second samples;
        - facebook/magnet-medium-10secs (1.5B), text to music, 10-second samples;
        - facebook/magnet-small-30secs (300M), text to music, 30-second samples;
        - facebook/magnet-medium-30secs (1.5B), text to music, 30-second samples;
        - facebook/audio-magnet-small (300M), text to sound-effect, 10 seconds;
        - facebook/audio-magnet-medium (1.5B), text to sound-effect, 10 seconds;
        - 'debug': a tiny random model (offline, for tests), 10-second samples.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("MAGNeT.get_pretrained expects a model name, folder or file path, "
                             f"e.g. one of {RELEASED_MAGNET_MODELS}; got {name!r}.")
        if device is None:
            device = default_device()
        if name == 'debug':
            # A tiny random model, offline, for tests and smoke runs (as MusicGen's and AudioGen's).
            compression_model = get_debug_compression_model(device)
            lm = get_debug_magnet_lm_model(device, compression_model_framerate=int(compression_model.frame_rate),
                                           segment_duration=10)
            return MAGNeT(name=name, compression_model=compression_model, lm=lm, max_duration=10)
        compression_model = load_compression_model(compression_source(name), device=device)
        lm = load_lm_model_magnet(name, compression_model_frame_rate=int(compression_model.frame_rate),
                                  device=device)
        if 'self_wav' in lm.condition_provider.conditioners:
            lm.condition_provider.conditioners['self_wav'].match_len_on_eval = True
        return MAGNeT(name=name, compression_model=compression_model, lm=lm)

    def set_generation_params(self, use_sampling: bool = True, top_k: int = 0,
                              top_p: float = 0.9, temperature: float = 3.0,
                              max_cfg_coef: float = 10.0, min_cfg_coef: float = 1.0,
                              decoding_steps: tp.Sequence[int] = (20, 10, 10, 10),
                              span_arrangement: str = 'nonoverlap') -> None:
        """Set the generation parameters for MAGNeT.

        Args:
            use_sampling (bool): sample (True) or take the most likely token (False).
            top_k (int): top_k used for sampling when top_p is 0.
            top_p (float): top_p used for sampling; takes precedence over top_k when > 0.
            temperature (float): initial softmax temperature, annealed linearly to 0 within each stage.
            max_cfg_coef (float): classifier free guidance coefficient at the first decoding step.
            min_cfg_coef (float): classifier free guidance coefficient reached at the last step.
            decoding_steps (list of int): number of decoding steps for each codebook.
            span_arrangement (str): 'nonoverlap' (spans on a fixed grid) or 'stride1' (overlapping spans).
        """
        if span_arrangement not in SPAN_ARRANGEMENTS:
            raise InvalidArgumentError(f"span_arrangement must be one of {SPAN_ARRANGEMENTS}, "
                                       f"got {span_arrangement!r}.")
        checked = validate_generation_params(use_sampling=use_sampling, top_k=top_k, top_p=top_p,
                                             temperature=temperature, max_cfg_coef=max_cfg_coef,
                                             min_cfg_coef=min_cfg_coef, decoding_steps=decoding_steps)
        steps = checked['decoding_steps']
        n_q = self.lm.n_q
        if len(steps) < n_q:
            raise InvalidArgumentError(f"decoding_steps needs one positive number of steps for each of the "
                                       f"{n_q} codebooks, got {list(decoding_steps)}.")
        self.generation_params = {
            'use_sampling': checked['use_sampling'],
            'temp': checked['temperature'],
            'top_k': checked['top_k'],
            'top_p': checked['top_p'],
            'max_cfg_coef': checked['max_cfg_coef'],
            'min_cfg_coef': checked['min_cfg_coef'],
            'decoding_steps': steps,
            'span_arrangement': span_arrangement,
        }
