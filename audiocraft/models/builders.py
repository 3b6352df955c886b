"""Builders: the only code that turns Hydra/OmegaConf config into modules.

Sections are owned by different parts of the library; keep each function's config
reading here so that model classes only ever receive plain arguments.
"""
import typing as tp

import omegaconf
import torch

from ..utils.utils import dict_from_config

if tp.TYPE_CHECKING:  # names used in annotations only; importing them here would be circular
    from ..modules.codebooks_patterns import CodebooksPatternProvider
    from ..modules.conditioners import ConditionFuser, ConditioningProvider
    from ..quantization import BaseQuantizer
    from .lm import LMModel
    from .encodec import CompressionModel

# ---- compression (EnCodec, quantizers, codebook patterns) ----


def get_quantizer(quantizer: str, cfg: omegaconf.DictConfig, dimension: int) -> 'BaseQuantizer':
    """Quantizer `quantizer` ('rvq' or 'no_quant') with its arguments from the section of that name."""
    from .. import quantization as qt
    klass = {
        'no_quant': qt.DummyQuantizer,
        'rvq': qt.ResidualVectorQuantizer,
    }
    if quantizer not in klass:
        raise KeyError(f"Unexpected quantizer {quantizer!r}, expected one of {sorted(klass)}.")
    kwargs = dict_from_config(getattr(cfg, quantizer)) if quantizer in cfg else {}
    if quantizer != 'no_quant':
        kwargs['dimension'] = dimension
    return klass[quantizer](**kwargs)


def get_encodec_autoencoder(encoder_name: str,
                            cfg: omegaconf.DictConfig) -> tp.Tuple[torch.nn.Module, torch.nn.Module]:
    """(encoder, decoder) from the `seanet` section; `seanet.encoder` / `seanet.decoder` override per side."""
    from ..modules.seanet import SEANetDecoder, SEANetEncoder
    if encoder_name != 'seanet':
        raise KeyError(f"Unexpected compression model autoencoder {encoder_name!r}, expected 'seanet'.")
    kwargs = dict_from_config(getattr(cfg, 'seanet'))
    encoder_override_kwargs = kwargs.pop('encoder', None) or {}
    decoder_override_kwargs = kwargs.pop('decoder', None) or {}
    encoder_kwargs = {**kwargs, **encoder_override_kwargs}
    decoder_kwargs = {**kwargs, **decoder_override_kwargs}
    return SEANetEncoder(**encoder_kwargs), SEANetDecoder(**decoder_kwargs)


def get_compression_model(cfg: omegaconf.DictConfig) -> 'CompressionModel':
    """Compression model from `compression_model` ('encodec') and the `encodec`, `seanet`, quantizer sections.

    Under a `torch.device('meta')` context (or with `cfg.device == 'meta'`) the weights stay on
    the meta device, ready for `load_state_dict(..., assign=True)`.
    """
    from .encodec import EncodecModel
    if cfg.compression_model != 'encodec':
        raise KeyError(f"Unexpected compression model {cfg.compression_model!r}, expected 'encodec'.")
    kwargs = dict_from_config(getattr(cfg, 'encodec'))
    encoder_name = kwargs.pop('autoencoder')
    quantizer_name = kwargs.pop('quantizer')
    encoder, decoder = get_encodec_autoencoder(encoder_name, cfg)
    quantizer = get_quantizer(quantizer_name, cfg, encoder.dimension)
    frame_rate = kwargs['sample_rate'] // encoder.hop_length
    renormalize = kwargs.pop('renormalize', False)
    kwargs.pop('renorm', None)  # deprecated name of `renormalize`
    model = EncodecModel(encoder, decoder, quantizer, frame_rate=frame_rate, renormalize=renormalize, **kwargs)
    device = cfg.get('device', 'cpu')
    if _default_device_is_meta() or str(device) == 'meta':
        return model
    return model.to(device)


def get_wrapped_compression_model(compression_model: 'CompressionModel',
                                  cfg: omegaconf.DictConfig) -> 'CompressionModel':
    """Apply the LM config's `interleave_stereo_codebooks` and `compression_model_n_q` to a codec."""
    from .encodec import InterleaveStereoCompressionModel
    if 'interleave_stereo_codebooks' in cfg and cfg.interleave_stereo_codebooks.get('use', False):
        kwargs = dict_from_config(cfg.interleave_stereo_codebooks)
        kwargs.pop('use')
        compression_model = InterleaveStereoCompressionModel(compression_model, **kwargs)
    if cfg.get('compression_model_n_q', None) is not None:
        compression_model.set_num_codebooks(cfg.compression_model_n_q)
    return compression_model


def get_codebooks_pattern_provider(n_q: int, cfg: omegaconf.DictConfig) -> 'CodebooksPatternProvider':
    """Pattern provider named by `cfg.modeling`, with arguments from the sub-section of that name."""
    from ..modules import codebooks_patterns as cp
    pattern_providers = {
        'parallel': cp.ParallelPatternProvider,
        'delay': cp.DelayedPatternProvider,
        'unroll': cp.UnrolledPatternProvider,
        'coarse_first': cp.CoarseFirstPattern,
        'musiclm': cp.MusicLMPattern,
    }
    name = cfg.modeling
    if name not in pattern_providers:
        raise KeyError(f"Unexpected codebooks pattern {name!r}, expected one of {sorted(pattern_providers)}.")
    kwargs = dict_from_config(cfg.get(name)) if cfg.get(name, None) is not None else {}
    return pattern_providers[name](n_q, **kwargs)


def get_debug_compression_model(device: tp.Union[str, torch.device] = 'cpu',
                                sample_rate: int = 32000) -> 'CompressionModel':
    """A tiny random EnCodec (frame rate 25 Hz, 4 codebooks of 400 entries) for tests."""
    from .. import quantization as qt
    from ..modules.seanet import SEANetDecoder, SEANetEncoder
    from .encodec import EncodecModel
    model_ratios = {16000: [10, 8, 8], 32000: [10, 8, 16]}  # 25 Hz at both rates
    if sample_rate not in model_ratios:
        raise ValueError(f"Debug compression model supports sample rates {sorted(model_ratios)}, got {sample_rate}.")
    ratios: tp.List[int] = model_ratios[sample_rate]
    frame_rate = 25
    seanet_kwargs: dict = {'n_filters': 4, 'n_residual_layers': 1, 'dimension': 32, 'ratios': ratios}
    encoder = SEANetEncoder(**seanet_kwargs)
    decoder = SEANetDecoder(**seanet_kwargs)
    quantizer = qt.ResidualVectorQuantizer(dimension=32, bins=400, n_q=4)
    init_x = torch.randn(8, 32, 128)
    quantizer(init_x, 1)  # initialize kmeans etc.
    compression_model = EncodecModel(encoder, decoder, quantizer, frame_rate=frame_rate,
                                     sample_rate=sample_rate, channels=1).to(device)
    return compression_model.eval()

# ---- conditioning (conditioners, provider, fuser) ----


def get_conditioner_provider(output_dim: int, cfg: omegaconf.DictConfig) -> 'ConditioningProvider':
    """Conditioners named in `cfg.conditioners` (each `{model: t5|lut|chroma_stem|clap, <model>: {...}}`).

    `cfg.device` places them; chroma conditioners get `cfg.dataset.segment_duration` as duration.
    A `conditioners.args` entry holds provider options (dataset-side keys are ignored).
    """
    from ..modules import conditioners as cond
    device = cfg.device
    dataset_cfg = cfg.get('dataset', None)
    duration = dataset_cfg.get('segment_duration', None) if dataset_cfg is not None else None
    section = cfg.get('conditioners', None)
    dict_cfg = {} if section is None else dict_from_config(section)
    provider_args = dict_cfg.pop('args', None) or {}
    for key in ('merge_text_conditions_p', 'drop_desc_p'):  # dataset-side options, not the provider's
        provider_args.pop(key, None)
    conditioners: tp.Dict[str, 'cond.BaseConditioner'] = {}
    for name, cond_cfg in dict_cfg.items():
        if not isinstance(cond_cfg, dict) or 'model' not in cond_cfg:
            raise ValueError(f"Conditioner '{name}' needs a `model` key (t5, lut, chroma_stem or clap).")
        model_type = cond_cfg['model']
        model_args = dict(cond_cfg.get(model_type) or {})
        if model_type == 't5':
            conditioners[str(name)] = cond.T5Conditioner(output_dim=output_dim, device=device, **model_args)
        elif model_type == 'lut':
            conditioners[str(name)] = cond.LUTConditioner(output_dim=output_dim, **model_args)
        elif model_type == 'chroma_stem':
            model_args.setdefault('sample_rate', cfg.get('sample_rate'))
            conditioners[str(name)] = cond.ChromaStemConditioner(
                output_dim=output_dim, duration=duration, device=device, **model_args)
        elif model_type == 'clap':
            conditioners[str(name)] = cond.CLAPEmbeddingConditioner(
                output_dim=output_dim, device=device, **model_args)
        else:
            raise ValueError(f"Unrecognized conditioning model '{model_type}' for '{name}': "
                             "expected t5, lut, chroma_stem or clap.")
    return cond.ConditioningProvider(conditioners, device=device, **provider_args)


def get_condition_fuser(cfg: omegaconf.DictConfig) -> 'ConditionFuser':
    """ConditionFuser from `cfg.fuser`: per-method lists (sum, cross, prepend, input_interpolate) + options."""
    from ..modules.conditioners import ConditionFuser
    fuser_cfg = getattr(cfg, 'fuser')
    fuser_methods = ['sum', 'cross', 'prepend', 'input_interpolate']
    fuse2cond = {k: list(fuser_cfg.get(k, None) or []) for k in fuser_methods}
    kwargs = {k: v for k, v in fuser_cfg.items() if k not in fuser_methods}
    return ConditionFuser(fuse2cond=fuse2cond, **kwargs)


def get_debug_condition_provider(output_dim: int = 16, device: tp.Union[str, torch.device] = 'cpu'
                                 ) -> 'ConditioningProvider':
    """A tiny offline provider: one white-space LUT text conditioner named 'description'."""
    from ..modules.conditioners import ConditioningProvider, LUTConditioner, WhiteSpaceTokenizer
    description = LUTConditioner(n_bins=128, dim=output_dim, output_dim=output_dim, tokenizer='noop')
    description.tokenizer = WhiteSpaceTokenizer(128, lemma=False, stopwords=False)
    return ConditioningProvider({'description': description}, device=device).to(device)

# ---- language models (MusicGen / AudioGen / MAGNeT LMs) ----


def _default_device_is_meta() -> bool:
    # `torch.get_default_device()` misses an enclosing `with torch.device(...)` on older torch releases.
    return torch.empty(0).device.type == 'meta'


def get_lm_model(cfg: omegaconf.DictConfig) -> 'LMModel':
    """Build the LM described by `cfg` (`lm_model`: 'transformer_lm' or 'transformer_lm_magnet').

    Reads `transformer_lm`, `codebooks_pattern`, `conditioners`, `fuser`,
    `classifier_free_guidance` and `attribute_dropout`. Under a `torch.device('meta')` context
    the LM weights are created on the meta device (to be loaded with `assign=True`), while the
    conditioners, whose external weights (T5, demucs) are not in the checkpoint, are real.
    """
    from .lm import LMModel
    if cfg.lm_model not in ['transformer_lm', 'transformer_lm_magnet']:
        raise KeyError(f"Unexpected LM model {cfg.lm_model!r}: expected 'transformer_lm' or 'transformer_lm_magnet'.")
    kwargs = dict_from_config(getattr(cfg, 'transformer_lm'))
    n_q = kwargs['n_q']
    q_modeling = kwargs.pop('q_modeling', None)
    codebooks_pattern_cfg = getattr(cfg, 'codebooks_pattern')
    attribute_dropout = dict_from_config(getattr(cfg, 'attribute_dropout'))
    cls_free_guidance = dict_from_config(getattr(cfg, 'classifier_free_guidance'))
    cfg_prob, cfg_coef = cls_free_guidance['training_dropout'], cls_free_guidance['inference_coef']
    meta = _default_device_is_meta()
    fuser = get_condition_fuser(cfg)
    if meta:
        with torch.device('cpu'):
            condition_provider = get_conditioner_provider(kwargs["dim"], cfg)
    else:
        condition_provider = get_conditioner_provider(kwargs["dim"], cfg).to(cfg.device)
    if len(fuser.fuse2cond.get('cross', [])) > 0:  # cross-attention is implied by the fuser
        kwargs['cross_attention'] = True
    if codebooks_pattern_cfg.modeling is None:
        if q_modeling is None:
            raise ValueError("LM model should either have a codebook pattern defined or transformer_lm.q_modeling")
        codebooks_pattern_cfg = omegaconf.OmegaConf.create(
            {'modeling': q_modeling, 'delay': {'delays': list(range(n_q))}})
    pattern_provider = get_codebooks_pattern_provider(n_q, codebooks_pattern_cfg)
    lm_class: tp.Type[LMModel] = LMModel
    if cfg.lm_model == 'transformer_lm_magnet':
        from .lm_magnet import MagnetLMModel, magnet_config_patch
        lm_class = MagnetLMModel
        # The configs hold placeholders (0 / -1, as AudioCraft's) for what the training config knows.
        for key, value in magnet_config_patch(cfg).items():
            if kwargs.get(key) in (None, 0, -1):
                kwargs[key] = value
    device = 'meta' if meta else cfg.device
    model = lm_class(
        pattern_provider=pattern_provider,
        condition_provider=condition_provider,
        fuser=fuser,
        cfg_dropout=cfg_prob,
        cfg_coef=cfg_coef,
        attribute_dropout=attribute_dropout,
        dtype=getattr(torch, cfg.dtype),
        device=device,
        **kwargs,
    )
    return model if meta else model.to(cfg.device)


def get_debug_lm_model(device: tp.Union[str, torch.device] = 'cpu') -> 'LMModel':
    """A tiny random LM (4 codebooks of 400 entries, whitespace LUT text conditioner) for tests."""
    from ..modules.codebooks_patterns import DelayedPatternProvider
    from ..modules.conditioners import ConditionFuser, ConditioningProvider, LUTConditioner, WhiteSpaceTokenizer
    from .lm import LMModel
    pattern = DelayedPatternProvider(n_q=4)
    dim = 16
    description = LUTConditioner(n_bins=128, dim=dim, output_dim=dim, tokenizer="noop")
    # Plain white-space words: no spaCy model needed, so the debug model works offline.
    description.tokenizer = WhiteSpaceTokenizer(128, lemma=False, stopwords=False)
    providers = {'description': description}
    condition_provider = ConditioningProvider(providers)
    fuser = ConditionFuser({'cross': ['description'], 'prepend': [], 'sum': [], 'input_interpolate': []})
    lm = LMModel(pattern, condition_provider, fuser, n_q=4, card=400, dim=dim, num_heads=4,
                 custom=True, num_layers=2, cross_attention=True, causal=True)
    return lm.to(device).eval()


def get_debug_magnet_lm_model(device: tp.Union[str, torch.device] = 'cpu', compression_model_framerate: int = 25,
                              segment_duration: int = 10) -> 'LMModel':
    """A tiny random MAGNeT LM (4 parallel codebooks of 400 entries, whitespace LUT text conditioner)
    for tests: the masked, non-causal counterpart of `get_debug_lm_model`."""
    from ..modules.codebooks_patterns import ParallelPatternProvider
    from ..modules.conditioners import ConditionFuser, ConditioningProvider, LUTConditioner, WhiteSpaceTokenizer
    from .lm_magnet import MagnetLMModel
    dim = 16
    description = LUTConditioner(n_bins=128, dim=dim, output_dim=dim, tokenizer="noop")
    description.tokenizer = WhiteSpaceTokenizer(128, lemma=False, stopwords=False)
    condition_provider = ConditioningProvider({'description': description})
    fuser = ConditionFuser({'cross': ['description'], 'prepend': [], 'sum': [], 'input_interpolate': []})
    lm = MagnetLMModel(pattern_provider=ParallelPatternProvider(n_q=4, empty_initial=-1),
                       condition_provider=condition_provider, fuser=fuser, n_q=4, card=400, dim=dim, num_heads=4,
                       custom=True, num_layers=2, cross_attention=True, causal=False, subcodes_context=5,
                       compression_model_framerate=compression_model_framerate,
                       segment_duration=segment_duration, span_len=3)
    return lm.to(device).eval()
