"""transformers-format MusicGen -> AudioCraft: in memory (`MusicGen.get_pretrained`) or on disk (`--to audiocraft`).

The text encoder is the checkpoint's own T5 (`text_encoder.*`), the codec the checkpoint's
transformers `EncodecModel` (wrapped as `HFEncodecCompressionModel`, as for facebook/encodec_32khz),
and the LM is AudioCraft's, with the weights renamed (see lm_map).
"""
import json
import logging
import os
import typing as tp
from pathlib import Path

import torch
from torch import nn

from .errors import NotConvertibleError
from .lm_map import CHROMA_WINDOW, lm_cfg_from_hf, lm_state_from_hf, order_like_audiocraft
from ...modules.conditioners import ConditioningProvider, T5Conditioner

if tp.TYPE_CHECKING:
    from ..lm import LMModel
    from ..musicgen import MusicGen

logger = logging.getLogger(__name__)

MODEL_TYPES = {'musicgen': 'MusicgenForConditionalGeneration',
               'musicgen_melody': 'MusicgenMelodyForConditionalGeneration'}
# The real sizes of the T5 encoders AudioCraft names, to name a checkpoint's text encoder in xp.cfg.
_T5_BY_DIM = {512: 't5-small', 768: 't5-base', 1024: 't5-large'}


class _PreloadedT5Conditioner(T5Conditioner):
    """A T5Conditioner around an already loaded tokenizer and encoder (a checkpoint's own)."""

    def __init__(self, tokenizer: tp.Any, t5: nn.Module, name: str, output_dim: int,
                 device: tp.Union[str, torch.device] = 'cpu'):
        # Set before T5Conditioner.__init__, which asks _load for them.
        self.__dict__['_preloaded'] = (tokenizer, t5)
        super().__init__(name=name, output_dim=output_dim, finetune=False, device=device)
        del self.__dict__['_preloaded']

    def _load(self, name: str) -> tp.Tuple[tp.Any, nn.Module]:  # type: ignore[override]
        return self.__dict__['_preloaded']


def _read_config(name: str) -> tp.Optional[dict]:
    path = Path(name) / 'config.json'
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_transformers_musicgen(name: tp.Union[str, Path]) -> bool:
    """True for a local folder holding a transformers MusicGen (config.json of model_type musicgen[_melody])
    and no AudioCraft `state_dict.bin` (folders holding both load in AudioCraft's format)."""
    name = str(name)
    if not os.path.isdir(name) or (Path(name) / 'state_dict.bin').is_file():
        return False
    config = _read_config(name)
    return config is not None and config.get('model_type') in MODEL_TYPES


def hub_transformers_model_type(name: str) -> tp.Optional[str]:
    """model_type of a hub repo's config.json when it is a transformers MusicGen, else None (also offline)."""
    from huggingface_hub import hf_hub_download
    from ..loaders import get_audiocraft_cache_dir
    try:
        path = hf_hub_download(repo_id=name, filename='config.json', cache_dir=get_audiocraft_cache_dir())
        model_type = json.loads(Path(path).read_text()).get('model_type')
    except Exception:  # offline, no such repo/file, not JSON: not a transformers MusicGen we can load
        return None
    return model_type if model_type in MODEL_TYPES else None


def load_transformers_model(name: str, model_type: tp.Optional[str] = None) -> nn.Module:
    """The transformers MusicGen (or Melody) model of a folder or hub repo, in float32 on CPU, eval mode."""
    import transformers
    from ..loaders import get_audiocraft_cache_dir
    if model_type is None:
        config = _read_config(name)
        model_type = config.get('model_type') if config else hub_transformers_model_type(name)
    if model_type not in MODEL_TYPES:
        raise NotConvertibleError(f"{name!r} is not a transformers MusicGen (config.json model_type={model_type!r}, "
                                  f"expected one of {sorted(MODEL_TYPES)}).")
    klass = getattr(transformers, MODEL_TYPES[model_type])
    model = klass.from_pretrained(name, dtype=torch.float32, cache_dir=get_audiocraft_cache_dir())
    return model.eval()


def _load_tokenizer(name: str, t5_name: str) -> tp.Any:
    from transformers import T5Tokenizer
    from ..loaders import get_audiocraft_cache_dir
    errors = []
    for source in (name, t5_name):  # the checkpoint's own tokenizer first (processor files)
        try:
            return T5Tokenizer.from_pretrained(source, cache_dir=get_audiocraft_cache_dir())
        except Exception as exc:  # missing files, offline: try the next source
            errors.append(f"{source}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise FileNotFoundError(f"No T5 tokenizer for {name!r}: neither the checkpoint nor {t5_name!r} provides one "
                            f"({'; '.join(errors)}). Put the tokenizer files (spiece.model, tokenizer_config.json) "
                            "in the checkpoint folder.")


def t5_name_of(hf_model: nn.Module) -> str:
    """Name of the checkpoint's T5 encoder for xp.cfg (its `_name_or_path`, else by width)."""
    config = hf_model.config.text_encoder
    name = getattr(config, '_name_or_path', '') or ''
    if name in T5Conditioner.MODELS:
        return name
    return _T5_BY_DIM.get(int(config.d_model), 't5-base')


def _is_melody(hf_model: nn.Module) -> bool:
    return getattr(hf_model.config, 'model_type', '') == 'musicgen_melody'


def _check_hf_model(hf_model: nn.Module) -> None:
    dec = hf_model.config.decoder
    if dec.hidden_size == hf_model.config.text_encoder.d_model and not hasattr(hf_model, 'enc_to_dec_proj'):
        raise NotConvertibleError("the decoder reads the T5 states without projection (same width); AudioCraft's "
                                  "T5 conditioner always projects them.")
    if _is_melody(hf_model) and not hasattr(hf_model, 'audio_enc_to_dec_proj'):
        raise NotConvertibleError("the melody model feeds chroma to the decoder without projection; AudioCraft's "
                                  "chroma conditioner always projects it.")


def lm_from_transformers(hf_model: nn.Module, tokenizer: tp.Any, device: tp.Union[str, torch.device] = 'cpu',
                         segment_duration: float = 30.0) -> 'LMModel':
    """Our LMModel (with `.cfg`) holding the weights of a transformers MusicGen; the T5 is the checkpoint's own."""
    from .. import builders
    from ..lm import LMModel
    from ..loaders import build_meta_and_load
    from ...utils.utils import dict_from_config
    _check_hf_model(hf_model)
    melody = _is_melody(hf_model)
    cfg = lm_cfg_from_hf(hf_model.config, melody, t5_name_of(hf_model), segment_duration=segment_duration,
                         cfg_coef=float(getattr(hf_model.generation_config, 'guidance_scale', None) or 3.0))
    cfg.device = str(device)
    cfg.dtype = 'float32' if str(device) == 'cpu' else 'float16'
    dim = int(cfg.transformer_lm.dim)
    state = lm_state_from_hf(hf_model.state_dict())
    text_encoder = hf_model.text_encoder
    conditioners: dict = {'description': _PreloadedT5Conditioner(tokenizer, text_encoder, t5_name_of(hf_model),
                                                                 dim, device=device)}
    if melody:
        wav_cfg = cfg.copy()
        del wav_cfg.conditioners['description']
        with torch.device('cpu'):
            wav_provider = builders.get_conditioner_provider(dim, wav_cfg)
        conditioners['self_wav'] = wav_provider.conditioners['self_wav']
        state[CHROMA_WINDOW] = conditioners['self_wav'].state_dict()['chroma.spec.window']
    # The order of xp.cfg (self_wav first for melody) is the order of AudioCraft's state_dict.
    conditioners = {name: conditioners[name] for name in cfg.conditioners}
    provider = ConditioningProvider(conditioners, device=device)
    for key, value in provider.state_dict().items():  # the T5 projection comes from the checkpoint
        assert f'condition_provider.{key}' in state, f"missing {key} in converted weights"
    kwargs = dict_from_config(cfg.transformer_lm)
    pattern = builders.get_codebooks_pattern_provider(kwargs['n_q'], cfg.codebooks_pattern)
    fuser = builders.get_condition_fuser(cfg)

    cfg_coef = float(cfg.classifier_free_guidance.inference_coef)

    def build() -> LMModel:
        return LMModel(pattern, provider, fuser, cfg_dropout=0.0, cfg_coef=cfg_coef, attribute_dropout={},
                       dtype=getattr(torch, cfg.dtype), device='meta', **kwargs)

    lm = build_meta_and_load(build, state, device=device, name='transformers MusicGen')
    lm.eval()
    lm.cfg = cfg
    text_encoder.to(device)
    return lm


def generation_params_from_transformers(generation_config: tp.Any, frame_rate: float,
                                        num_codebooks: int) -> tp.Dict[str, tp.Any]:
    """`set_generation_params` arguments equivalent to a transformers `GenerationConfig` (only those it sets)."""
    params: tp.Dict[str, tp.Any] = {}
    if generation_config is None:
        return params
    if generation_config.do_sample is not None:
        params['use_sampling'] = bool(generation_config.do_sample)
    if generation_config.top_k is not None:
        params['top_k'] = int(generation_config.top_k)
    if generation_config.top_p is not None and generation_config.top_p < 1.0:
        params['top_p'] = float(generation_config.top_p)
    if generation_config.temperature is not None:
        params['temperature'] = float(generation_config.temperature)
    if generation_config.guidance_scale is not None:
        params['cfg_coef'] = float(generation_config.guidance_scale)
    # transformers counts decoder steps (one start step, then the delayed codebooks' tail).
    steps = generation_config.max_new_tokens
    if steps is None and generation_config.max_length is not None:
        steps = generation_config.max_length - 1
    if steps is not None:
        params['duration'] = max(1, int(steps) + 1 - num_codebooks) / frame_rate
    return params


def musicgen_from_transformers(name: str, device: tp.Union[str, torch.device] = 'cpu',
                               hf_model: tp.Optional[nn.Module] = None) -> 'MusicGen':
    """A MusicGen from a transformers-format folder or hub repo, converted in memory."""
    from ..encodec import HFEncodecCompressionModel
    from ..musicgen import MusicGen
    hf_model = hf_model if hf_model is not None else load_transformers_model(name)
    tokenizer = _load_tokenizer(name, t5_name_of(hf_model))
    lm = lm_from_transformers(hf_model, tokenizer, device=device)
    compression_model = HFEncodecCompressionModel(hf_model.audio_encoder.to(device).eval())
    model = MusicGen(name, compression_model, lm)
    if 'self_wav' in lm.condition_provider.conditioners:
        lm.condition_provider.conditioners['self_wav'].match_len_on_eval = True
    stereo_steps = 2 if lm.cfg.interleave_stereo_codebooks.use else 1
    params = generation_params_from_transformers(hf_model.generation_config, model.frame_rate,
                                                 lm.num_codebooks // stereo_steps)
    if params:
        logger.info("Generation parameters from the checkpoint's generation_config.json of %s: %s",
                    name, ", ".join(f"{k}={v}" for k, v in params.items()))
        if 'duration' in params:
            params['duration'] = min(params['duration'], model.max_duration)
        model.set_generation_params(**params)
    return model


def convert_transformers_to_audiocraft(src: str, dst: tp.Union[str, Path], embed_text_encoder: bool = True
                                       ) -> Path:
    """Write AudioCraft's pretrained format (`state_dict.bin`, `compression_state_dict.bin`) for a transformers
    MusicGen folder or hub repo. With `embed_text_encoder` the checkpoint's T5 weights go into
    `state_dict.bin` (`finetune: true`), so a fine-tuned text encoder survives; else T5 loads by name."""
    from .encodec_map import compression_cfg_from_hf, encodec_state_from_hf
    from .. import builders
    from ... import __version__
    from ...utils.export import _atomic_save, _cfg_to_yaml
    hf_model = load_transformers_model(src)
    _check_hf_model(hf_model)
    t5_name = t5_name_of(hf_model)
    cfg = lm_cfg_from_hf(hf_model.config, _is_melody(hf_model), t5_name,
                         cfg_coef=float(getattr(hf_model.generation_config, 'guidance_scale', None) or 3.0),
                         embed_text_encoder=embed_text_encoder)
    state = lm_state_from_hf(hf_model.state_dict())
    if _is_melody(hf_model):
        from ...modules.chroma import ChromaExtractor
        chroma = cfg.conditioners.self_wav.chroma_stem
        extractor = ChromaExtractor(int(chroma.sample_rate), int(chroma.n_chroma), int(chroma.radix2_exp))
        state[CHROMA_WINDOW] = extractor.state_dict()['spec.window']
    if embed_text_encoder:
        for key, value in hf_model.text_encoder.state_dict().items():
            state[f'condition_provider.conditioners.description.t5.{key}'] = value
    state = order_like_audiocraft(state, list(cfg.conditioners))
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    dst = Path(dst)
    _atomic_save({'best_state': state, 'xp.cfg': _cfg_to_yaml(cfg), 'version': __version__, 'exported': True},
                 dst / 'state_dict.bin')
    codec_cfg = compression_cfg_from_hf(hf_model.audio_encoder.config)
    build_cfg = codec_cfg.copy()
    build_cfg.device = 'meta'
    with torch.device('meta'):
        reference = builders.get_compression_model(build_cfg).state_dict().keys()
    codec_state = encodec_state_from_hf(hf_model.audio_encoder.state_dict(), reference)
    codec_state = {k: v.detach().clone().contiguous() for k, v in codec_state.items()}
    _atomic_save({'best_state': codec_state, 'xp.cfg': _cfg_to_yaml(codec_cfg), 'version': __version__,
                  'exported': True}, dst / 'compression_state_dict.bin')
    logger.info("Wrote AudioCraft checkpoints for %s to %s (text encoder %s).", src, dst,
                "embedded" if embed_text_encoder else f"loaded by name {t5_name!r}")
    return dst
