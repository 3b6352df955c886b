"""AudioCraft MusicGen -> a transformers-format folder (config.json, model.safetensors, generation_config.json,
tokenizer and feature extractor files) that `MusicgenForConditionalGeneration.from_pretrained` (or the Melody
class) loads. Refuses, saying why, what transformers cannot express (see lm_map.check_lm_cfg, encodec_map).
"""
import json
import logging
import typing as tp
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .encodec_map import encodec_state_to_hf, hf_encodec_config_from_cfg
from .errors import NotConvertibleError
from .lm_map import check_lm_cfg, hf_decoder_kwargs_from_cfg, lm_state_to_hf

if tp.TYPE_CHECKING:
    from ..musicgen import MusicGen

logger = logging.getLogger(__name__)


def _codec_config_and_state(model: 'MusicGen', source: tp.Optional[str]) -> tp.Tuple[tp.Any, dict]:
    """transformers EnCodec config and weights for the model's (mono) codec."""
    from ..encodec import EncodecModel, HFEncodecCompressionModel, InterleaveStereoCompressionModel
    from ..loaders import load_compression_model_ckpt, package_config
    codec = model.compression_model
    if isinstance(codec, InterleaveStereoCompressionModel):
        codec = codec.model  # transformers' stereo MusicGen also runs a mono codec per channel
    if isinstance(codec, HFEncodecCompressionModel):
        return codec.model.config, dict(codec.model.state_dict())
    if not isinstance(codec, EncodecModel):
        raise NotConvertibleError(f"the compression model is a {type(codec).__name__}; transformers only has "
                                  "EncodecModel.")
    codec_cfg = getattr(codec, 'cfg', None)
    if codec_cfg is None:
        if source is None:
            raise NotConvertibleError("the codec's configuration is unknown (no cfg on the model): export from the "
                                      "checkpoint folder instead of a model object.")
        pkg = load_compression_model_ckpt(source)
        codec_cfg = package_config(pkg, 'cpu')
    return hf_encodec_config_from_cfg(codec_cfg), encodec_state_to_hf(codec.state_dict())


def _check_keys(klass: type, config: tp.Any, state: tp.Dict[str, torch.Tensor]) -> None:
    """Every weight transformers' class expects, with its shape, and nothing else: else refuse."""
    with torch.device('meta'):
        expected = {k: tuple(v.shape) for k, v in klass(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if missing or unexpected or shapes:
        raise NotConvertibleError(f"the converted weights do not fit transformers' {klass.__name__}: missing "
                                  f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {shapes[:5]}.")


def _save_processor(dst: Path, tokenizer: tp.Any, melody: bool, sample_rate: int, channels: int,
                    chroma: tp.Optional[tp.Any]) -> None:
    """Tokenizer and feature extractor, so that `AutoProcessor.from_pretrained(dst)` works too."""
    import transformers
    tokenizer.save_pretrained(str(dst))
    if melody:
        assert chroma is not None
        # Written by hand: transformers' melody feature extractor needs torchaudio just to be built.
        nfft = int(chroma.get('nfft') or 2 ** int(chroma.radix2_exp))
        winhop = int(chroma.get('winhop') or 2 ** int(chroma.radix2_exp) // 4)
        settings = {'feature_extractor_type': 'MusicgenMelodyFeatureExtractor', 'processor_class':
                    'MusicgenMelodyProcessor', 'feature_size': int(chroma.n_chroma), 'sampling_rate': sample_rate,
                    'hop_length': winhop, 'chunk_length': 30, 'n_fft': nfft, 'num_chroma': int(chroma.n_chroma),
                    'padding_value': 0.0, 'return_attention_mask': False, 'stem_indices': [3, 2]}
        (dst / 'preprocessor_config.json').write_text(json.dumps(settings, indent=2) + '\n')
        return
    extractor = transformers.EncodecFeatureExtractor(feature_size=channels, sampling_rate=sample_rate)
    transformers.MusicgenProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(dst))


def musicgen_to_transformers(model: 'MusicGen', dst: tp.Union[str, Path], source: tp.Optional[str] = None,
                             dtype: tp.Optional[torch.dtype] = None) -> Path:
    """Write `model` (an AudioCraft MusicGen built from an xp.cfg) as a transformers MusicGen folder.

    Args:
        model: the MusicGen; its LM must carry its `cfg` (as get_pretrained sets it).
        dst: output folder.
        source: the checkpoint the model came from (to read the codec's xp.cfg when needed).
        dtype: weights dtype in the file (default: float32).
    """
    import transformers
    from safetensors.torch import save_file
    cfg = getattr(model.lm, 'cfg', None)
    if cfg is None:
        raise NotConvertibleError("the LM has no xp.cfg (model.lm.cfg): export a model loaded with get_pretrained.")
    if cfg.get('lm_model') == 'transformer_lm_magnet' or type(model).__name__ == 'MAGNeT':
        raise NotConvertibleError("MAGNeT is a masked, non-autoregressive model: transformers has no MAGNeT class.")
    kind = check_lm_cfg(cfg)
    melody = kind == 'melody'
    conditioner = model.lm.condition_provider.conditioners['description']
    t5 = conditioner.t5
    dim = int(cfg.transformer_lm.dim)
    if int(t5.config.d_model) == dim:
        raise NotConvertibleError(f"the T5 width equals the LM width ({dim}): transformers then feeds T5 states "
                                  "without the projection that AudioCraft's conditioner always applies.")
    codec_config, codec_state = _codec_config_and_state(model, source)
    if codec_config.audio_channels != 1 and model.lm.cfg.interleave_stereo_codebooks.get('use', False):
        raise NotConvertibleError("stereo LM over a stereo codec: transformers expects a mono codec per channel.")
    decoder_config = (transformers.MusicgenMelodyDecoderConfig if melody else transformers.MusicgenDecoderConfig)(
        **hf_decoder_kwargs_from_cfg(cfg))
    common = dict(text_encoder=t5.config.to_dict(), audio_encoder=codec_config.to_dict(),
                  decoder=decoder_config.to_dict())
    if melody:
        wav_conditioner = model.lm.condition_provider.conditioners['self_wav']
        config = transformers.MusicgenMelodyConfig(num_chroma=int(wav_conditioner.chroma.n_chroma),
                                                   chroma_length=int(wav_conditioner.chroma_len), **common)
        klass = transformers.MusicgenMelodyForConditionalGeneration
    else:
        config = transformers.MusicgenConfig(**common)
        klass = transformers.MusicgenForConditionalGeneration
    lm_state = {k: v for k, v in model.lm.state_dict().items() if '.t5.' not in k}  # finetuned T5 comes below
    state = lm_state_to_hf(lm_state, dim)
    state.update({f'text_encoder.{k}': v for k, v in t5.state_dict().items()})
    state.update({f'audio_encoder.{k}': v for k, v in codec_state.items()})
    _check_keys(klass, config, state)
    dtype = dtype or torch.float32
    # safetensors refuses shared storage (T5's tied embeddings): one contiguous copy per name.
    tensors = {k: v.detach().to('cpu', dtype=dtype if v.is_floating_point() else v.dtype).clone().contiguous()
               for k, v in state.items()}
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dst / 'model.safetensors'), metadata={'format': 'pt'})
    config.architectures = [klass.__name__]
    config.save_pretrained(str(dst))
    card = int(cfg.transformer_lm.card)
    params = getattr(model, 'generation_params', {}) or {}
    frames = int(round(model.duration * codec_config.sampling_rate / codec_config.hop_length))
    delays = int(cfg.transformer_lm.n_q) // (2 if config.decoder.audio_channels == 2 else 1)
    generation = transformers.GenerationConfig(
        decoder_start_token_id=card, pad_token_id=card, bos_token_id=card,
        do_sample=bool(params.get('use_sampling', True)), top_k=int(params.get('top_k', 250)),
        guidance_scale=float(params.get('cfg_coef', cfg.classifier_free_guidance.inference_coef)),
        temperature=float(params.get('temp', 1.0)),
        max_length=frames + delays)
    if params.get('top_p', 0.0):
        generation.top_p = float(params['top_p'])
    generation.save_pretrained(str(dst))
    chroma = cfg.conditioners.self_wav.chroma_stem if melody else None
    _save_processor(dst, conditioner.t5_tokenizer, melody, codec_config.sampling_rate,
                    codec_config.audio_channels, chroma)
    logger.info("Wrote a transformers %s to %s.", klass.__name__, dst)
    return dst


def export_musicgen_to_transformers(src: tp.Union[str, Path, 'MusicGen'], dst: tp.Union[str, Path],
                                    dtype: tp.Optional[torch.dtype] = None) -> Path:
    """Export an AudioCraft MusicGen (a pretrained folder/hub id, a training checkpoint, or a MusicGen object)."""
    from ..musicgen import MusicGen
    if isinstance(src, MusicGen):
        return musicgen_to_transformers(src, dst, dtype=dtype)
    src = str(src)
    from ..loaders import load_lm_model_ckpt, package_config
    if Path(src).is_file():
        return _export_training_checkpoint(src, dst, dtype)
    cfg = package_config(load_lm_model_ckpt(src), 'cpu')
    if cfg.get('lm_model') == 'transformer_lm_magnet':
        raise NotConvertibleError("MAGNeT is a masked, non-autoregressive model: transformers has no MAGNeT class.")
    check_lm_cfg(cfg)  # refuse before loading T5, demucs and the weights
    model = MusicGen.get_pretrained(src, device='cpu')
    return musicgen_to_transformers(model, dst, source=src, dtype=dtype)


def _export_training_checkpoint(path: str, dst: tp.Union[str, Path], dtype: tp.Optional[torch.dtype]) -> Path:
    """A solver checkpoint (checkpoint.th): export it to AudioCraft's pretrained format first, then convert."""
    from ...utils import export as ac_export
    import tempfile
    try:
        pkg = ac_export._load_training_checkpoint(path)  # the exporter's own reading of solver checkpoints
    except RuntimeError as exc:
        raise NotConvertibleError(f"{path!r} is neither a pretrained AudioCraft folder nor a training checkpoint "
                                  f"({exc}).") from exc
    if pkg.get('exported'):
        raise NotConvertibleError(f"{path!r} is a single exported file: pass the folder holding state_dict.bin and "
                                  "compression_state_dict.bin.")
    cfg = OmegaConf.create(pkg['xp.cfg'])
    codec = str(cfg.get('compression_model_checkpoint') or '')
    with tempfile.TemporaryDirectory(prefix='audiocraft_hf_') as tmp:
        ac_export.export_lm(path, Path(tmp) / 'state_dict.bin')
        if codec.startswith('//pretrained/'):
            ac_export.export_pretrained_compression_model(codec[len('//pretrained/'):],
                                                          Path(tmp) / 'compression_state_dict.bin')
        elif Path(codec).is_file():
            ac_export.export_encodec(codec, Path(tmp) / 'compression_state_dict.bin')
        else:
            raise NotConvertibleError(f"cannot resolve the codec {codec!r} of {path!r} here: export the LM and the "
                                      "codec with audiocraft.utils.export into one folder, then convert that folder.")
        return export_musicgen_to_transformers(tmp, dst, dtype)
