"""Entry point of every training run, wrapped by Dora and Hydra.

    dora run solver=compression/debug dset=audio/example device=cpu
    python -m audiocraft.train solver=musicgen/debug dset=audio/example
    dora run -d --ddp_workers 2 solver=...        # local distributed run (gloo on CPU)
    dora grid musicgen.musicgen_base_32khz --dry_run --init

The configuration is composed by Hydra from `config/config.yaml`; Dora derives the XP
signature from the overrides and stores everything under `<dora dir>/xps/<sig>`, where
`<dora dir>` comes from `AudioCraftEnvironment` (AUDIOCRAFT_DORA_DIR or the team config).
"""
import logging
import multiprocessing
import os
from pathlib import Path
import sys
import typing as tp
import warnings

from dora import git_save, hydra_main, XP
import flashy
import hydra
import omegaconf
import torch

from .environment import AudioCraftEnvironment

if tp.TYPE_CHECKING:
    from .solvers.base import StandardSolver

logger = logging.getLogger(__name__)

# AudioCraft's config semantics need Hydra's version_base 1.1, about which Hydra warns at every
# config composition (several times per command); the warnings carry no information for users.
try:
    from hydra.errors import Hydra14MigrationWarning
    warnings.filterwarnings('ignore', category=Hydra14MigrationWarning)
except ImportError:
    pass
warnings.filterwarnings('ignore', message='.*version_base.*', module='hydra')
warnings.filterwarnings('ignore', message='Future Hydra versions will no longer change working directory')

_DATASET_SPLITS = ['train', 'valid', 'evaluate', 'generate']


def resolve_config_dset_paths(cfg: omegaconf.DictConfig) -> None:
    """Make datasource paths absolute with respect to the directory the run was started from
    (Hydra moves into the XP folder, and Dora into a git clone for grids)."""
    for key, value in cfg.datasource.items():
        if isinstance(value, str) and key in _DATASET_SPLITS:
            cfg.datasource[key] = str(git_save.to_absolute_path(value))


def _check_device(cfg: omegaconf.DictConfig) -> None:
    device = torch.device(cfg.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        logger.warning("device=%s requested but CUDA is not available: running on cpu.", cfg.device)
        cfg.device = 'cpu'


def get_solver(cfg: omegaconf.DictConfig) -> "StandardSolver":
    """Solver for `cfg`, with the global batch size split across distributed workers."""
    from . import solvers
    _check_device(cfg)
    world_size = flashy.distrib.world_size()
    if cfg.dataset.batch_size % world_size != 0:
        raise ValueError(f"dataset.batch_size={cfg.dataset.batch_size} is the global batch size and must be "
                         f"divisible by the number of workers ({world_size}).")
    cfg.dataset.batch_size //= world_size
    for split in _DATASET_SPLITS:
        split_cfg = cfg.dataset.get(split)
        if split_cfg is not None and split_cfg.get('batch_size') is not None:
            if split_cfg.batch_size % world_size != 0:
                raise ValueError(f"dataset.{split}.batch_size={split_cfg.batch_size} must be divisible by the "
                                 f"number of workers ({world_size}).")
            split_cfg.batch_size //= world_size
    resolve_config_dset_paths(cfg)
    return solvers.get_solver(cfg)


def get_solver_from_xp(xp: XP, override_cfg: tp.Optional[tp.Union[dict, omegaconf.DictConfig]] = None,
                       restore: bool = True, load_best: bool = True, ignore_optimizers: bool = True,
                       disable_fsdp: bool = True) -> "StandardSolver":
    """Solver of an existing XP, optionally restored from its checkpoint.

    Args:
        xp: the Dora XP.
        override_cfg: config values overriding the XP's.
        restore: load the XP's checkpoint.
        load_best: load the best state rather than the last one.
        ignore_optimizers: do not restore optimizer states.
        disable_fsdp: turn FSDP off (needs load_best).
    """
    logger.info(f"Loading solver from XP {xp.sig}. Overrides used: {xp.argv}")
    cfg = xp.cfg
    if override_cfg is not None:
        cfg = omegaconf.OmegaConf.merge(cfg, omegaconf.DictConfig(override_cfg))
    ignore_state_keys: tp.List[str] = []
    if disable_fsdp and cfg.fsdp.use:
        cfg.fsdp.use = False
        if not load_best:
            raise ValueError("Disabling FSDP requires load_best=True.")
        # Sharded states cannot be loaded without FSDP: the consolidated fsdp_best_state is used.
        ignore_state_keys += ['model', 'ema', 'best_state']
    if ignore_optimizers:
        ignore_state_keys.append('optimizer')
    try:
        with xp.enter():
            solver = get_solver(cfg)
            if restore:
                solver.restore(load_best=load_best, ignore_state_keys=ignore_state_keys)
        return solver
    finally:
        hydra.core.global_hydra.GlobalHydra.instance().clear()


def get_solver_from_sig(sig: str, *args: tp.Any, **kwargs: tp.Any) -> "StandardSolver":
    """Solver of the XP with signature `sig` (see `get_solver_from_xp` for the arguments)."""
    xp = main.get_xp_from_sig(sig)
    return get_solver_from_xp(xp, *args, **kwargs)


def init_seed_and_system(cfg: omegaconf.DictConfig) -> None:
    """Seed every RNG, set the thread count and the multiprocessing start method."""
    import numpy as np
    import random
    multiprocessing.set_start_method(cfg.mp_start_method, force=True)
    logger.debug('Setting mp start method to %s', cfg.mp_start_method)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    os.environ['MKL_NUM_THREADS'] = str(cfg.num_threads)
    os.environ['OMP_NUM_THREADS'] = str(cfg.num_threads)
    logger.debug('Setting num threads to %d', cfg.num_threads)
    # efficient_attention_backend is read by the model builders: there is no process-wide switch.
    if 'SLURM_JOB_ID' in os.environ:
        tmpdir = Path('/scratch/slurm_tmpdir/' + os.environ['SLURM_JOB_ID'])
        if tmpdir.exists():
            os.environ['TMPDIR'] = str(tmpdir)


def _distrib_backend(cfg: omegaconf.DictConfig) -> str:
    return 'nccl' if torch.device(cfg.device).type == 'cuda' and torch.cuda.is_available() else 'gloo'


@hydra_main(config_path='../config', config_name='config', version_base='1.1')
def main(cfg: omegaconf.DictConfig) -> tp.Any:
    init_seed_and_system(cfg)
    log_name = '%s.log.{rank}' % cfg.execute_only if cfg.execute_only else 'solver.log.{rank}'
    flashy.setup_logging(level=str(cfg.logging.level).upper(), log_name=log_name)
    _check_device(cfg)
    flashy.distrib.init(backend=_distrib_backend(cfg))
    solver = get_solver(cfg)
    if cfg.show:
        solver.show()
        return
    if cfg.execute_only:
        if not (cfg.execute_inplace or cfg.continue_from is not None):
            raise ValueError("With execute_only, give the checkpoint to use with continue_from=<sig or path>, "
                             "or set execute_inplace=true to use this XP's own checkpoint.")
        solver.restore(replay_metrics=False)
        solver.run_one_stage(cfg.execute_only)
        return
    return solver.run()


# Dora reads these from `main` itself: where XPs live, and the SLURM defaults of this cluster.
main.dora.dir = AudioCraftEnvironment.get_dora_dir()
main._base_cfg.slurm.partition = AudioCraftEnvironment.get_slurm_partitions()

if main.dora.shared is not None and not os.access(main.dora.shared, os.R_OK):
    print("No read permission on dora.shared folder, ignoring it.", file=sys.stderr)
    main.dora.shared = None

if __name__ == '__main__':
    main()
