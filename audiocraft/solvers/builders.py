"""Builders for everything a solver needs from its config: solver, optimizer, schedule, EMA,
losses, adversaries, evaluation metrics and data loaders."""
from enum import Enum
import logging
import typing as tp

import flashy
import omegaconf
import torch
from torch import nn

from .. import adversarial, losses, metrics, optim
from ..data import info_audio_dataset, music_dataset, sound_dataset
from ..utils.utils import dict_from_config, get_loader

if tp.TYPE_CHECKING:
    from .base import StandardSolver

logger = logging.getLogger(__name__)


class DatasetType(Enum):
    AUDIO = "audio"
    MUSIC = "music"
    SOUND = "sound"


def _solver_classes() -> tp.Dict[str, tp.Callable[[], type]]:
    # Imported lazily: each solver pulls its own models and this keeps `get_solver` cheap.
    def _compression():
        from .compression import CompressionSolver
        return CompressionSolver

    def _musicgen():
        from .musicgen import MusicGenSolver
        return MusicGenSolver

    def _audiogen():
        from .audiogen import AudioGenSolver
        return AudioGenSolver

    def _magnet():
        from .magnet import MagnetSolver
        return MagnetSolver

    def _audio_magnet():
        from .magnet import AudioMagnetSolver
        return AudioMagnetSolver

    return {
        'compression': _compression,
        'musicgen': _musicgen,
        'audiogen': _audiogen,
        'magnet': _magnet,
        'audio_magnet': _audio_magnet,
        'lm': _musicgen,  # backward compatibility
        'sound_lm': _audiogen,  # backward compatibility
    }


def get_solver(cfg: omegaconf.DictConfig) -> "StandardSolver":
    """Instantiate the solver named by `cfg.solver`."""
    classes = _solver_classes()
    name = cfg.get('solver')
    if name not in classes:
        raise ValueError(f"Unknown solver '{name}'. Available solvers: {sorted(classes)}. "
                         "Pick one with e.g. `solver=musicgen/debug`.")
    return classes[name]()(cfg)


def get_optim_parameter_groups(model: nn.Module) -> tp.List[dict]:
    """Parameter groups of `model`: modules defining `make_optim_group()` (e.g. embeddings with
    their own learning rate) get their own group, all other parameters share the default one."""
    other_groups = []
    grouped: tp.Set[int] = set()
    for module in model.modules():
        if hasattr(module, 'make_optim_group'):
            group = module.make_optim_group()
            params = list(group['params'])
            if set(id(p) for p in params) & grouped:
                raise RuntimeError("Some parameters appear in several optimizer groups.")
            grouped.update(id(p) for p in params)
            other_groups.append(dict(group, params=params))
    default_params = [p for p in model.parameters() if id(p) not in grouped]
    return [{'params': default_params}] + other_groups


def get_optimizer(params: tp.Union[nn.Module, tp.Iterable[torch.Tensor], tp.List[dict]],
                  cfg: omegaconf.DictConfig) -> torch.optim.Optimizer:
    """Optimizer named by `cfg.optimizer` (adam, adamw or dadam) with `cfg.lr` and `cfg.adam` options."""
    if 'optimizer' not in cfg:
        if getattr(cfg, 'optim', None) is not None:
            raise KeyError("Optimizer not found in config. Try instantiating optimizer from cfg.optim?")
        raise KeyError("Optimizer not found in config.")
    parameters = get_optim_parameter_groups(params) if isinstance(params, nn.Module) else params
    adam_kwargs = dict_from_config(cfg.adam) if 'adam' in cfg else {}
    if cfg.optimizer == 'adam':
        return torch.optim.Adam(parameters, lr=cfg.lr, **adam_kwargs)
    if cfg.optimizer == 'adamw':
        return torch.optim.AdamW(parameters, lr=cfg.lr, **adam_kwargs)
    if cfg.optimizer == 'dadam':
        return optim.DAdaptAdam(parameters, lr=cfg.lr, **adam_kwargs)
    raise ValueError(f"Unsupported optimizer '{cfg.optimizer}': use adam, adamw or dadam.")


def get_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: omegaconf.DictConfig,
                     total_updates: int) -> tp.Optional[torch.optim.lr_scheduler.LRScheduler]:
    """Learning rate scheduler named by `cfg.lr_scheduler` (None for a constant rate)."""
    if 'lr_scheduler' not in cfg:
        raise KeyError("LR Scheduler not found in config")
    name = cfg.lr_scheduler
    if name is None:
        return None
    if name == 'step':
        return torch.optim.lr_scheduler.StepLR(optimizer, **dict_from_config(cfg.step))
    if name == 'exponential':
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.exponential.lr_decay)
    if name in ('cosine', 'polynomial_decay', 'inverse_sqrt', 'linear_warmup'):
        kwargs = dict_from_config(cfg[name])
        warmup_steps = kwargs.pop('warmup')
        if name == 'cosine':
            return optim.CosineLRScheduler(optimizer, warmup_steps=warmup_steps, total_steps=total_updates,
                                           **kwargs)
        if name == 'polynomial_decay':
            return optim.PolynomialDecayLRScheduler(optimizer, warmup_steps=warmup_steps,
                                                    total_steps=total_updates, **kwargs)
        if name == 'inverse_sqrt':
            return optim.InverseSquareRootLRScheduler(optimizer, warmup_steps=warmup_steps, **kwargs)
        return optim.LinearWarmupLRScheduler(optimizer, warmup_steps=warmup_steps, **kwargs)
    raise ValueError(f"Unsupported LR scheduler '{name}': use step, exponential, cosine, "
                     "polynomial_decay, inverse_sqrt, linear_warmup or null.")


def get_ema(module_dict: nn.ModuleDict, cfg: omegaconf.DictConfig) -> tp.Optional[optim.ModuleDictEMA]:
    """EMA of the modules in `module_dict` if `cfg.use`, else None."""
    kw: tp.Dict[str, tp.Any] = dict(cfg)
    use = kw.pop('use', False)
    decay = kw.pop('decay', None)
    device = kw.pop('device', None)
    if not use:
        return None
    if len(module_dict) == 0:
        raise ValueError("Trying to build EMA but an empty module_dict source is provided!")
    if device is not None and torch.device(device).type == 'cuda' and not torch.cuda.is_available():
        logger.warning("optim.ema.device=%s but CUDA is not available: keeping the EMA on cpu.", device)
        device = 'cpu'
    return optim.ModuleDictEMA(module_dict, decay=decay, device=device)


def _pick_class(kind: str, name: str, classes: tp.Dict[str, tp.Any]) -> tp.Any:
    """`classes[name]`, or a ValueError listing the known names."""
    if name not in classes:
        names = list(classes)
        raise ValueError(f"Unknown {kind} '{name}': use {', '.join(names[:-1])} or {names[-1]}.")
    return classes[name]


def get_loss(loss_name: str, cfg: omegaconf.DictConfig) -> nn.Module:
    """Loss module `loss_name`, configured by the `cfg.<loss_name>` section."""
    klass = _pick_class('loss', loss_name, {
        'l1': torch.nn.L1Loss,
        'l2': torch.nn.MSELoss,
        'mel': losses.MelSpectrogramL1Loss,
        'mrstft': losses.MRSTFTLoss,
        'msspec': losses.MultiScaleMelSpectrogramLoss,
        'sisnr': losses.SISNR,
    })
    kwargs = dict(getattr(cfg, loss_name, None) or {})
    return klass(**kwargs)


def get_balancer(loss_weights: tp.Dict[str, float], cfg: omegaconf.DictConfig) -> losses.Balancer:
    """Gradient balancer over the weighted losses."""
    return losses.Balancer(loss_weights, **dict_from_config(cfg))


def get_adversary(name: str, cfg: omegaconf.DictConfig) -> nn.Module:
    """Discriminator `name` (msd, mpd or msstftd) configured by `cfg.<name>`."""
    klass = _pick_class('adversary', name, {
        'msd': adversarial.MultiScaleDiscriminator,
        'mpd': adversarial.MultiPeriodDiscriminator,
        'msstftd': adversarial.MultiScaleSTFTDiscriminator,
    })
    return klass(**dict_from_config(getattr(cfg, name)))


def get_adversarial_losses(cfg: omegaconf.DictConfig) -> nn.ModuleDict:
    """One `AdversarialLoss` (discriminator + its own optimizer) per `cfg.adversarial.adversaries`."""
    device = cfg.device
    adv_cfg = getattr(cfg, 'adversarial')
    adversaries = adv_cfg.get('adversaries', [])
    adv_loss_name = adv_cfg['adv_loss']
    feat_loss_name = adv_cfg.get('feat_loss')
    normalize = adv_cfg.get('normalize', True)
    feat_loss: tp.Optional[adversarial.FeatureMatchingLoss] = None
    if feat_loss_name:
        if feat_loss_name not in ['l1', 'l2']:
            raise ValueError(f"Feature loss only supports l1 or l2, got '{feat_loss_name}'.")
        feat_loss = adversarial.FeatureMatchingLoss(get_loss(feat_loss_name, cfg), normalize)
    loss = adversarial.get_adv_criterion(adv_loss_name)
    loss_real = adversarial.get_real_criterion(adv_loss_name)
    loss_fake = adversarial.get_fake_criterion(adv_loss_name)
    adv_losses = nn.ModuleDict()
    for adv_name in adversaries:
        adversary = get_adversary(adv_name, cfg).to(device)
        optimizer = get_optimizer(adversary.parameters(), cfg.optim)
        adv_losses[adv_name] = adversarial.AdversarialLoss(
            adversary, optimizer, loss=loss, loss_real=loss_real, loss_fake=loss_fake,
            loss_feat=feat_loss, normalize=normalize)
    return adv_losses


def get_visqol(cfg: omegaconf.DictConfig) -> metrics.ViSQOL:
    """ViSQOL (`metrics.visqol`): the visqol-python package, or the AudioCraft binary when `bin` is set."""
    kwargs = dict_from_config(cfg)
    return metrics.ViSQOL(**kwargs)


def get_fad(cfg: omegaconf.DictConfig) -> metrics.FrechetAudioDistanceMetric:
    """Fréchet Audio Distance (`metrics.fad`) with VGGish in PyTorch (`model: vggish`)."""
    if cfg.model == 'tf':
        raise ValueError("metrics.fad.model=tf is AudioCraft's TensorFlow FAD, which this package replaces: "
                         "set metrics.fad.model=vggish and metrics.fad.vggish.model_path / pca_params_path "
                         "(see docs/METRICS.md).")
    if cfg.model != 'vggish':
        raise ValueError(f"Unknown FAD model '{cfg.model}': only vggish is supported.")
    return metrics.FrechetAudioDistanceMetric(**dict_from_config(cfg.get('vggish'))).eval()


def get_kldiv(cfg: omegaconf.DictConfig) -> metrics.KLDivergenceMetric:
    """KL divergence of PaSST label distributions (`metrics.kld`, `model: passt`)."""
    if cfg.model != 'passt':
        raise ValueError(f"Unknown KLD model '{cfg.model}': only passt is supported.")
    return metrics.PasstKLDivergenceMetric(**dict_from_config(cfg.get('passt'))).eval()


def get_text_consistency(cfg: omegaconf.DictConfig) -> metrics.TextConsistencyMetric:
    """CLAP text consistency metric (needs a LAION-CLAP checkpoint, see docs/METRICS.md)."""
    from ..environment import AudioCraftEnvironment
    if cfg.model != 'clap':
        raise ValueError(f"Unknown text consistency model '{cfg.model}': only clap is supported.")
    kwargs = dict_from_config(cfg.get('clap'))
    kwargs['model_path'] = AudioCraftEnvironment.resolve_reference_path(kwargs['model_path'])
    return metrics.CLAPTextConsistencyMetric(**kwargs).eval()


def get_chroma_cosine_similarity(cfg: omegaconf.DictConfig) -> metrics.ChromaCosineSimilarityMetric:
    """Chroma cosine similarity metric (melody adherence)."""
    if cfg.model != 'chroma_base':
        raise ValueError(f"Unknown chroma cosine model '{cfg.model}': only chroma_base is supported.")
    return metrics.ChromaCosineSimilarityMetric(**dict_from_config(cfg.get('chroma_base'))).eval()


def _resolve_datasource_path(path: str) -> str:
    from dora import to_absolute_path
    return str(to_absolute_path(path))


def get_audio_datasets(cfg: omegaconf.DictConfig,
                       dataset_type: DatasetType = DatasetType.AUDIO) -> tp.Dict[str, torch.utils.data.DataLoader]:
    """Data loaders of every split listed in `cfg.datasource`, configured by `cfg.dataset`.

    `cfg.dataset.<split>` entries override the shared `cfg.dataset` values for that split.
    `batch_size` is the batch size of each distributed worker (`audiocraft.train.get_solver`
    turns the configured global batch size into it).
    """
    sample_rate = cfg.sample_rate
    channels = cfg.channels
    seed = cfg.seed
    max_sample_rate = cfg.datasource.max_sample_rate
    max_channels = cfg.datasource.max_channels
    if cfg.get('dataset') is None:
        raise KeyError("Could not find dataset definition in config.")
    dataset_cfg = dict_from_config(cfg.dataset)
    splits_cfg: dict = {}
    for split in ['train', 'valid', 'evaluate', 'generate']:
        splits_cfg[split] = dataset_cfg.pop(split, None) or {}
    execute_only_stage = cfg.get('execute_only', None)
    world_size = flashy.distrib.world_size()

    dataloaders = {}
    for split, path in cfg.datasource.items():
        if not isinstance(path, str):
            continue
        if split not in splits_cfg:
            raise KeyError(f"Unknown datasource split '{split}': use train, valid, evaluate or generate.")
        if execute_only_stage is not None and split != execute_only_stage:
            continue
        logger.info("Loading audio data split %s: %s", split, path)
        if sample_rate > max_sample_rate:
            raise ValueError(f"The datasource supports audio up to {max_sample_rate} Hz but the solver asks "
                             f"for sample_rate={sample_rate}. Use a matching dset or lower sample_rate.")
        if channels > max_channels:
            raise ValueError(f"The datasource supports up to {max_channels} channels but the solver asks "
                             f"for channels={channels}. Use a matching dset or lower channels.")
        kwargs = {**dataset_cfg, **splits_cfg[split]}
        kwargs['sample_rate'] = sample_rate
        kwargs['channels'] = channels
        if kwargs.get('permutation_on_files') and cfg.optim.updates_per_epoch:
            kwargs['num_samples'] = world_size * cfg.dataset.batch_size * cfg.optim.updates_per_epoch

        num_samples = kwargs['num_samples']
        shuffle = kwargs['shuffle']
        return_info = kwargs.pop('return_info')
        batch_size = kwargs.pop('batch_size', None)
        num_workers = kwargs.pop('num_workers')
        if batch_size is None:
            raise ValueError("dataset.batch_size must be set.")

        path = _resolve_datasource_path(path)
        if dataset_type == DatasetType.MUSIC:
            dataset = music_dataset.MusicDataset.from_meta(path, **kwargs)
        elif dataset_type == DatasetType.SOUND:
            dataset = sound_dataset.SoundDataset.from_meta(path, **kwargs)
        elif dataset_type == DatasetType.AUDIO:
            dataset = info_audio_dataset.InfoAudioDataset.from_meta(path, return_info=return_info, **kwargs)
        else:
            raise ValueError(f"Dataset type is unsupported: {dataset_type}")

        dataloaders[split] = get_loader(
            dataset, num_samples, batch_size=batch_size, num_workers=num_workers, seed=seed,
            collate_fn=dataset.collater, shuffle=shuffle)
    return dataloaders
