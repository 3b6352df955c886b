"""StandardSolver: the training loop shared by every solver.

An epoch runs the `train` and `valid` stages, then `evaluate` and `generate` every
`cfg.<stage>.every` epochs (and at the last epoch). Valid runs with the EMA weights when EMA
is used; evaluate and generate run with the best state. At the end of each epoch, metrics
are committed to Dora's history and a checkpoint is written atomically.
"""
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
import typing as tp

import flashy
import omegaconf
import torch
from torch import nn

from ..optim import fsdp
from ..utils import checkpoint
from ..utils.autocast import TorchAutocast
from ..utils.best_state import BestStateDictManager
from ..utils.deadlock import DeadlockDetect
from ..utils.profiler import Profiler
from ..utils.utils import copy_state, dict_from_config, model_hash, with_rank_rng

_PRETRAINED_PREFIX = '//pretrained/'
_AUTOCAST_DTYPES = {'float16': torch.float16, 'bfloat16': torch.bfloat16, 'float32': torch.float32}


class DataLoadingError(RuntimeError):
    """Reading a batch failed (e.g. a data-loader worker crashed); see `guarded_batches`."""


def guarded_batches(loader: tp.Iterable, stage: tp.Optional[str], epoch: int) -> tp.Iterator[tp.Any]:
    """Iterate `loader`, turning a failure to produce a batch into a DataLoadingError that says
    where it happened and what to try (a crashed worker otherwise only gives its pid)."""
    iterator = iter(loader)
    index = 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            crashed = 'exited unexpectedly' in str(exc) or 'worker' in str(exc).lower()
            hint = ("A data-loader worker process died (out of memory, a crash in an audio decoder, or killed). "
                    if crashed else "")
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise DataLoadingError(
                f"Loading batch {index} of the {stage} stage (epoch {epoch}) failed: {type(exc).__name__}: "
                f"{first_line}. {hint}Run with "
                "dataset.num_workers=0 to see the underlying error in the main process, check the files of the "
                "dataset manifest, or lower dataset.num_workers / dataset.batch_size.") from exc
        yield batch
        index += 1


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite (see StandardSolver.check_finite_losses)."""


class StandardSolver(ABC, flashy.BaseSolver):
    """Base solver: stages, checkpoints, best state, EMA, autocast, logging.

    Subclasses implement `build_model` (registering 'model' and its optimizer as stateful),
    `build_dataloaders`, `run_step`, `evaluate`, `generate` and `show`.
    """
    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__()
        self.logger.info(f"Instantiating solver {self.__class__.__name__} for XP {self.xp.sig}")
        self.logger.info(f"All XP logs are stored in {self.xp.folder}")
        self.cfg = cfg
        self.device = cfg.device
        self.model: nn.Module
        self._continue_best_source_keys = ['best_state', 'fsdp_best_state']
        self._fsdp_modules: tp.List[nn.Module] = []
        self._ema_sources: nn.ModuleDict = nn.ModuleDict()
        self.ema: tp.Optional[tp.Any] = None
        self.dataloaders: tp.Dict[str, torch.utils.data.DataLoader] = dict()
        self._log_updates = self.cfg.logging.get('log_updates', 10)
        if self.cfg.logging.log_tensorboard:
            self._init_logger('tensorboard', self.init_tensorboard, self.cfg.get('tensorboard'))
        if self.cfg.logging.log_wandb:
            self._init_logger('wandb', self.init_wandb, self.cfg.get('wandb'))
        if self.cfg.autocast_dtype not in _AUTOCAST_DTYPES:
            raise ValueError(f"Unknown autocast_dtype '{self.cfg.autocast_dtype}': use float16 or bfloat16.")
        self.autocast_dtype: torch.dtype = _AUTOCAST_DTYPES[self.cfg.autocast_dtype]
        # Best states are kept in the dtype the model effectively computes in.
        dtype_best: tp.Optional[torch.dtype] = None
        if self.cfg.fsdp.use:
            dtype_best = getattr(torch, self.cfg.fsdp.param_dtype)
        elif self.cfg.autocast:
            dtype_best = self.autocast_dtype
        self.best_state: BestStateDictManager = BestStateDictManager(dtype=dtype_best)
        # With FSDP, rank 0 also keeps a consolidated copy of the best state.
        self.fsdp_best_state: tp.Dict[str, tp.Any] = {}
        self.register_stateful('best_state', 'fsdp_best_state')
        self._new_best_state: bool = False
        self.build_dataloaders()
        if self.cfg.execute_only is None:
            for split in ('train', 'valid'):
                if split not in self.dataloaders:
                    raise ValueError(f"The {split} dataset split must be provided: set datasource.{split}.")
        self.train_updates_per_epoch = len(self.dataloaders['train']) if 'train' in self.dataloaders else 0
        if self.cfg.optim.updates_per_epoch:
            self.train_updates_per_epoch = self.cfg.optim.updates_per_epoch
        self.total_updates = self.train_updates_per_epoch * self.cfg.optim.epochs
        self.build_model()
        if 'model' not in self.stateful.sources:
            raise RuntimeError("build_model must register the model: self.register_stateful('model').")
        if flashy.distrib.is_distributed() and not self.cfg.fsdp.use:
            # Every worker starts from the weights of rank 0.
            flashy.distrib.broadcast_model(self.model)
        self.logger.info("Model hash: %s", model_hash(self.model))
        self.profiler = Profiler(self.model, **self.cfg.profiler)
        self.initialize_ema()
        self.register_stateful('ema')
        self.deadlock_detect = DeadlockDetect(**self.cfg.deadlock)
        model_size = sum(p.numel() for p in self.model.parameters() if p.requires_grad) / 1e6
        # weights, gradients and two Adam moments, 4 bytes each.
        mem_usage = model_size * 4 * 4 / 1000
        self.logger.info("Model size: %.2f M params", model_size)
        self.logger.info("Base memory usage, with model, grad and optim: %.2f GB", mem_usage)

    def _init_logger(self, name: str, init_fn: tp.Callable, cfg: tp.Optional[omegaconf.DictConfig]) -> None:
        try:
            init_fn(**(dict_from_config(cfg) if cfg is not None else {}))
        except ImportError as exc:
            # A missing optional logger should not stop a training run.
            self.logger.warning(f"logging.log_{name}=true but {name} is not usable ({exc}): {name} logging "
                                f"is disabled. Install it (`pip install {name}`) or set logging.log_{name}=false.")

    @property
    def autocast(self) -> TorchAutocast:
        """Autocast context for the forward passes (no-op unless cfg.autocast)."""
        device_type = torch.device(self.device).type
        return TorchAutocast(enabled=self.cfg.autocast, device_type=device_type, dtype=self.autocast_dtype)

    def _get_state_source(self, name: str) -> flashy.state.StateDictSource:
        # Sources are wrapped into AttributeWrapper, exposing the actual attribute.
        return self.stateful.sources[name]

    @property
    def best_metric_name(self) -> tp.Optional[str]:
        """Validation metric deciding the best state (lower is better); None: last state is best."""
        return None

    def register_best_state(self, *args: str) -> None:
        """Keep a copy of these stateful attributes whenever a new best validation score is reached."""
        for name in args:
            if name not in self.stateful.sources:
                raise ValueError(f"Register {name} as stateful before registering it in the best state.")
            self.best_state.register(name, self._get_state_source(name))

    def register_ema(self, *args: str) -> None:
        """Track these modules (registered as attributes) with the EMA."""
        for name in args:
            module = getattr(self, name, None)
            if not isinstance(module, nn.Module):
                raise ValueError(f"Only nn.Module can be registered for EMA, got {type(module)} for {name}.")
            self._ema_sources[name] = module

    def wrap_with_fsdp(self, model: nn.Module, *args: tp.Any, **kwargs: tp.Any) -> nn.Module:
        model = fsdp.wrap_with_fsdp(self.cfg.fsdp, model, *args, **kwargs)
        if isinstance(model, fsdp.FSDP):
            self._fsdp_modules.append(model)
        return model

    def update_best_state_from_stage(self, stage_name: str = 'valid') -> None:
        """Refresh the best state if the current `stage_name` metrics are the best so far."""
        if self.best_metric_name is None:
            self._new_best_state = True
            self.logger.info("Updating best state with current state.")
        else:
            if stage_name not in self._pending_metrics:
                raise RuntimeError(f"Metrics for stage {stage_name} not found.")
            if self.best_metric_name not in self._pending_metrics[stage_name]:
                raise RuntimeError(f"Best metric {self.best_metric_name} not found in {stage_name} metrics.")
            current_score = self._pending_metrics[stage_name][self.best_metric_name]
            all_best_metric_scores = [
                past_metrics[stage_name][self.best_metric_name]
                for past_metrics in self.history
                if stage_name in past_metrics and self.best_metric_name in past_metrics[stage_name]
            ]
            all_best_metric_scores.append(current_score)
            best_score = min(all_best_metric_scores)
            self._new_best_state = current_score == best_score
            if self._new_best_state:
                old_best = min(all_best_metric_scores[:-1] + [float('inf')])
                self.logger.info(f"New best state with {self.best_metric_name}={current_score:.3f} "
                                 f"(was {old_best:.3f})")
        if self._new_best_state:
            if self.cfg.fsdp.use:
                # Gives an empty state on every rank but 0, which gets the full model.
                with fsdp.switch_to_full_state_dict(self._fsdp_modules):
                    for name in self.best_state.states.keys():
                        self.best_state.update(name, self._get_state_source(name))
                    self.fsdp_best_state.update(self.best_state.state_dict())
            for name in self.best_state.states.keys():
                self.best_state.update(name, self._get_state_source(name))

    def _load_new_state_dict(self, state_dict: dict) -> dict:
        old_states = {}
        for name, new_state in state_dict.items():
            state_source = self._get_state_source(name)
            old_states[name] = copy_state(state_source.state_dict())
            state_source.load_state_dict(new_state)
        return old_states

    @contextmanager
    def swap_best_state(self) -> tp.Iterator[None]:
        """Temporarily load the best state into the registered sources."""
        with self._swapped_state(self.best_state.state_dict(), 'best state'):
            yield

    @contextmanager
    def swap_ema_state(self) -> tp.Iterator[None]:
        """Temporarily load the EMA weights into the tracked modules (no-op without EMA)."""
        if self.ema is None:
            yield
            return
        with self._swapped_state(self.ema.state_dict()['state'], 'EMA state'):
            yield

    @contextmanager
    def _swapped_state(self, state: tp.Dict[str, tp.Any], label: str) -> tp.Iterator[None]:
        """Load `state` (source name -> state dict) into the registered sources, restoring them on exit."""
        self.logger.debug(f"Swapping to {label} for: {', '.join(state.keys())}")
        old_states = self._load_new_state_dict(state)
        try:
            yield
        finally:
            self.logger.debug(f"Swapping back from {label} to original state")
            for name, old_state in old_states.items():
                self._get_state_source(name).load_state_dict(old_state)

    @property
    def is_training(self) -> bool:
        return self.current_stage == 'train'

    def check_finite_losses(self, losses: tp.Dict[str, torch.Tensor], step: int) -> None:
        """Stop training on a NaN or infinite loss, before it reaches the weights, naming the step.

        Raises NonFiniteLossError; the last checkpoint (end of the previous epoch) is untouched.
        """
        bad = {name: float(value.detach().float().sum()) for name, value in losses.items()
               if not bool(torch.isfinite(value.detach()).all())}
        if bad:
            values = ', '.join(f'{name}={value}' for name, value in bad.items())
            raise NonFiniteLossError(
                f"Training diverged: non-finite loss ({values}) at epoch {self.epoch}, {self.current_stage} step "
                f"{step}. The weights were not updated with it. Lower the learning rate, enable gradient clipping "
                "(optim.max_norm), check the data of this batch, or restart from the last checkpoint.")

    def log_model_summary(self, model: nn.Module) -> None:
        """Log the architecture and size of a model."""
        self.logger.info(model)
        mb = sum(p.numel() for p in model.parameters()) * 4 / 2 ** 20
        self.logger.info("Size: %.1f MB", mb)

    @abstractmethod
    def build_model(self) -> None:
        """Create the model, optimizer... and register them as stateful / best state / EMA."""

    def initialize_ema(self) -> None:
        """(Re)create the EMA of the registered sources, if cfg.optim.ema.use."""
        from .builders import get_ema
        self.ema = get_ema(self._ema_sources, self.cfg.optim.ema)
        if self.ema is None:
            self.logger.info('No EMA on the model.')
        else:
            if not self.cfg.optim.ema.updates or self.cfg.optim.ema.updates <= 0:
                raise ValueError("optim.ema.updates must be a positive number of updates.")
            self.logger.info(f'Initializing EMA on the model with decay = {self.ema.decay}'
                             f' every {self.cfg.optim.ema.updates} updates')

    @abstractmethod
    def build_dataloaders(self) -> None:
        """Fill `self.dataloaders` with one loader per split."""

    @abstractmethod
    def show(self) -> None:
        """Log information about the model(s) (`show=true`)."""

    @property
    def log_updates(self) -> int:
        return self._log_updates

    def checkpoint_path(self, **kwargs: tp.Any) -> Path:  # type: ignore[override]
        kwargs.setdefault('use_fsdp', self.cfg.fsdp.use)
        return self.folder / checkpoint.checkpoint_name(**kwargs)

    def epoch_checkpoint_path(self, epoch: int, **kwargs: tp.Any) -> Path:
        kwargs.setdefault('use_fsdp', self.cfg.fsdp.use)
        return self.folder / checkpoint.checkpoint_name(str(epoch), **kwargs)

    def checkpoint_path_with_name(self, name: str, **kwargs: tp.Any) -> Path:
        kwargs.setdefault('use_fsdp', self.cfg.fsdp.use)
        return self.folder / checkpoint.checkpoint_name(name=name, **kwargs)

    def save_checkpoints(self) -> None:
        """Atomically save the last checkpoint, and an epoch copy every `checkpoint.save_every`."""
        is_sharded = self.cfg.fsdp.use
        if not flashy.distrib.is_rank_zero() and not is_sharded:
            return
        self.logger.info("Model hash: %s", model_hash(self.model))
        state = self.state_dict()
        epoch = self.epoch - 1  # the history was already extended for this epoch
        if self.cfg.checkpoint.save_every and epoch % self.cfg.checkpoint.save_every == 0:
            minimal_state = state
            keep_every_states = self.cfg.checkpoint.keep_every_states
            if keep_every_states:
                minimal_state = {name: source for name, source in state.items() if name in keep_every_states}
            checkpoint.save_checkpoint(minimal_state, self.epoch_checkpoint_path(epoch), is_sharded)
        if self.cfg.checkpoint.save_last:
            checkpoint.save_checkpoint(state, self.checkpoint_path(), is_sharded)
        checkpoint.flush_stale_checkpoints(self.checkpoint_path(), keep_last=self.cfg.checkpoint.keep_last)

    def load_from_pretrained(self, name: str) -> dict:
        raise NotImplementedError(f"{self.__class__.__name__} cannot start from pretrained models "
                                  f"(continue_from=//pretrained/{name}).")

    def load_checkpoints(self, load_best: bool = False, ignore_state_keys: tp.List[str] = []) -> tp.Optional[dict]:
        """Load this XP's last checkpoint, else the one given by `continue_from`.

        `continue_from` may be a checkpoint path, an XP folder, `//sig/SIG` or `//pretrained/NAME`;
        from another XP only the best state is taken (optimizers etc. start fresh).
        """
        is_sharded = self.cfg.fsdp.use
        load_from_path: tp.Optional[Path] = None
        checkpoint_source: tp.Optional[checkpoint.CheckpointSource] = None
        if load_best:
            self.logger.info("Trying to load state_dict from best state.")
        state: tp.Optional[dict] = None
        rank0_checkpoint_path = self.checkpoint_path(use_fsdp=False)
        current_checkpoint_path = self.checkpoint_path()
        continue_from = self.cfg.continue_from or ''
        continue_pretrained = continue_from.startswith(_PRETRAINED_PREFIX)
        if rank0_checkpoint_path.exists():
            self.logger.info(f"Loading existing checkpoint: {current_checkpoint_path}")
            load_from_path = current_checkpoint_path
            checkpoint.check_sharded_checkpoint(current_checkpoint_path, rank0_checkpoint_path)
            checkpoint_source = checkpoint.CheckpointSource.CURRENT_XP
        elif continue_from and not continue_pretrained:
            self.logger.info(f"Continuing from provided checkpoint: {continue_from}")
            load_from_path = checkpoint.resolve_checkpoint_path(continue_from, use_fsdp=False)
            if load_from_path is None:
                raise FileNotFoundError(f"Could not resolve the continue_from checkpoint '{continue_from}': "
                                        "give an existing checkpoint file, XP folder or //sig/SIG.")
            checkpoint_source = checkpoint.CheckpointSource.OTHER

        if load_from_path is not None:
            state = checkpoint.load_checkpoint(load_from_path, is_sharded)
        elif continue_pretrained:
            self.logger.info("Loading a pretrained model. Ignoring 'load_best' and 'ignore_state_keys' params.")
            state = self.load_from_pretrained(continue_from[len(_PRETRAINED_PREFIX):])
            checkpoint_source = checkpoint.CheckpointSource.PRETRAINED
            load_best = True

        if checkpoint_source is not None and checkpoint_source != checkpoint.CheckpointSource.CURRENT_XP:
            assert state is not None
            self.logger.info("Checkpoint source is not the current xp: Load state_dict from best state.")
            load_best = True
            state = {key: state[key] for key in self._continue_best_source_keys if key in state}
            if 'fsdp_best_state' in state and state['fsdp_best_state']:
                state.pop('best_state', None)
                self.logger.info("... Loaded checkpoint has FSDP best state")
            elif self.cfg.fsdp.use:
                if 'fsdp_best_state' not in state or not state['fsdp_best_state']:
                    state['fsdp_best_state'] = state.pop('best_state')
                    self.logger.info("... Loaded checkpoint does not have FSDP best state. Use regular best state")

        if state is not None:
            if load_best:
                self.logger.info("Ignoring keys when loading best %r", ignore_state_keys)
                for key in set(ignore_state_keys):
                    state.pop(key, None)
                if 'best_state' not in state and 'fsdp_best_state' not in state:
                    raise RuntimeError("Trying to load best state but neither 'best_state' nor "
                                       "'fsdp_best_state' found in checkpoints.")
            self.load_state_dict(state)

        # Out of sync checkpoints across workers would silently corrupt training.
        epoch = float(self.epoch)
        avg_epoch = flashy.distrib.average_metrics({'epoch': epoch})['epoch']
        if avg_epoch != epoch:
            raise RuntimeError(f"Inconsistent loading of checkpoints happened, our epoch is {epoch} "
                               f"but average of epochs is {avg_epoch}, at least one worker must have a "
                               "different epoch number.")

        if load_best:
            self.logger.info("Loading state_dict from best state.")
            if not self.cfg.fsdp.use and self.fsdp_best_state:
                self.logger.info("... Loading from FSDP best state dict.")
                self.best_state.load_state_dict(self.fsdp_best_state)
            if self.cfg.fsdp.use:
                self.logger.info("FSDP is used, loading from FSDP best state.")
                with fsdp.switch_to_full_state_dict(self._fsdp_modules):
                    self.load_state_dict(self.fsdp_best_state)
            else:
                # the stateful objects permanently take their best state
                self._load_new_state_dict(self.best_state.state_dict())
            if self.ema is not None:
                self.logger.info("Re-initializing EMA from best state")
                self.initialize_ema()
            if self.cfg.fsdp.use:
                self.logger.info("Re-initializing best state after using FSDP best state.")
                for name in self.best_state.states.keys():
                    self.best_state.update(name, self._get_state_source(name))
        return state

    def restore(self, load_best: bool = False, replay_metrics: bool = False,  # type: ignore[override]
                ignore_state_keys: tp.List[str] = []) -> bool:
        """Restore weights and history; True if a checkpoint was loaded."""
        self.logger.info("Restoring weights and history.")
        restored_checkpoints = self.load_checkpoints(load_best, ignore_state_keys)
        self.logger.info("Model hash: %s", model_hash(self.model))
        if replay_metrics and len(self.history) > 0:
            self.logger.info("Replaying past metrics...")
            for epoch, stages in enumerate(self.history):
                for stage_name, metrics in stages.items():
                    self.result_logger._log_summary(stage_name, metrics, step=epoch + 1, step_name='epoch',
                                                    formatter=self.get_formatter(stage_name))
        return restored_checkpoints is not None

    def commit(self, save_checkpoints: bool = True) -> None:  # type: ignore[override]
        """Push this epoch's metrics to the history and save checkpoints."""
        self.history.append(self._pending_metrics)
        if save_checkpoints:
            self.save_checkpoints()
        self._start_epoch()
        if flashy.distrib.is_rank_zero():
            self.xp.link.update_history(self.history)

    def run_epoch(self) -> None:
        """One epoch: train, valid (EMA weights), then evaluate / generate (best weights) when due."""
        self.run_stage('train', self.train)
        with torch.no_grad():
            with self.swap_ema_state():
                self.run_stage('valid', self.valid)
                # the best state is taken from the EMA weights when EMA is used
                self.update_best_state_from_stage('valid')
            with self.swap_best_state():
                if self.should_run_stage('evaluate'):
                    self.run_stage('evaluate', self.evaluate)
                if self.should_run_stage('generate'):
                    self.run_stage('generate', with_rank_rng()(self.generate))

    def run(self) -> None:
        """Training loop, resuming from the last checkpoint of this XP if any."""
        if len(self.state_dict()) == 0:
            raise RuntimeError("Nothing registered as stateful: nothing would be checkpointed.")
        self.restore(replay_metrics=True)
        self.log_hyperparams(dict_from_config(self.cfg))
        for _ in range(self.epoch, self.cfg.optim.epochs + 1):
            if self.should_stop_training():
                return
            self.run_epoch()
            self.commit()

    def should_stop_training(self) -> bool:
        return self.epoch > self.cfg.optim.epochs

    def should_run_stage(self, stage_name: str) -> bool:
        """True at the last epoch, and every `cfg.<stage_name>.every` epochs."""
        stage_every = self.cfg[stage_name].get('every', None)
        is_last_epoch = self.epoch == self.cfg.optim.epochs
        is_epoch_every = bool(stage_every) and self.epoch % stage_every == 0
        return is_last_epoch or is_epoch_every

    @abstractmethod
    def run_step(self, idx: int, batch: tp.Any, metrics: dict) -> dict:
        """One training or validation step on a batch; returns the metrics."""

    def common_train_valid(self, dataset_split: str, **kwargs: tp.Any) -> dict:
        """Iterate `run_step` over a split, averaging metrics across steps and workers."""
        self.model.train(self.is_training)
        loader = self.dataloaders[dataset_split]
        # a different order every epoch in distributed training
        sampler = getattr(loader, 'sampler', None)
        if flashy.distrib.world_size() > 1 and isinstance(sampler, torch.utils.data.distributed.DistributedSampler):
            sampler.set_epoch(self.epoch)
        updates_per_epoch = self.train_updates_per_epoch if self.is_training else len(loader)
        if self.cfg.benchmark_no_load:
            self.logger.warning("Fake loading for benchmarking: re-using first batch")
            batch = next(iter(loader))
            loader = [batch] * updates_per_epoch  # type: ignore
        batches = guarded_batches(loader, self.current_stage, self.epoch)
        lp = self.log_progress(self.current_stage, batches, total=updates_per_epoch, updates=self.log_updates)
        average = flashy.averager()  # epoch wise average
        instant_average = flashy.averager()  # average between two log lines
        metrics: dict = {}

        with self.profiler, self.deadlock_detect:
            for idx, batch in enumerate(lp):
                self.deadlock_detect.update('batch')
                if idx >= updates_per_epoch:
                    break
                metrics = {}
                metrics = self.run_step(idx, batch, metrics)
                self.deadlock_detect.update('step')
                if self.ema is not None and self.is_training and (idx + 1) % self.cfg.optim.ema.updates == 0:
                    self.logger.debug("EMA model step")
                    self.ema.step()
                self.deadlock_detect.update('ema')
                self.profiler.step()
                instant_metrics = instant_average(metrics)
                if lp.update(**instant_metrics):
                    instant_average = flashy.averager()
                metrics = average(metrics)
                self.deadlock_detect.update('end_batch')

        metrics = flashy.distrib.average_metrics(metrics, updates_per_epoch)
        return metrics

    def train(self) -> dict:
        """Train stage."""
        return self.common_train_valid('train')

    def valid(self) -> dict:
        """Valid stage."""
        return self.common_train_valid('valid')

    @abstractmethod
    def evaluate(self) -> dict:
        """Evaluate stage."""

    @abstractmethod
    def generate(self) -> dict:
        """Generate stage."""

    def run_one_stage(self, stage_name: str) -> None:
        """Run only `stage_name` (valid, evaluate or generate) with the best state."""
        fn = {
            'generate': with_rank_rng()(self.generate),
            'evaluate': self.evaluate,
            'valid': self.valid,
        }
        if stage_name not in fn:
            raise ValueError(f"Cannot run stage '{stage_name}' alone: use one of {sorted(fn)}.")
        if len(self.state_dict()) == 0:
            raise RuntimeError("Nothing registered as stateful.")
        self._start_epoch()
        with torch.no_grad(), self.swap_best_state():
            self.run_stage(stage_name, fn[stage_name])
        if not self.cfg.execute_inplace:
            self.commit(save_checkpoints=False)

    @staticmethod
    def get_eval_solver_from_sig(sig: str, dtype: tp.Optional[str] = None,
                                 device: tp.Optional[str] = None, batch_size: int = 1,
                                 override_cfg: tp.Optional[tp.Union[dict, omegaconf.DictConfig]] = None,
                                 **kwargs: tp.Any) -> "StandardSolver":
        """Solver of XP `sig` with its best state loaded, ready for evaluation on a single device
        (no EMA, no autocast, no FSDP, no optimizer state)."""
        return load_eval_solver(sig, dtype=dtype, device=device, batch_size=batch_size, autocast=False,
                                override_cfg=override_cfg, **kwargs)


def load_eval_solver(sig: str, dtype: tp.Optional[str], device: tp.Optional[str], batch_size: tp.Optional[int],
                     autocast: bool, override_cfg: tp.Optional[tp.Union[dict, omegaconf.DictConfig]] = None,
                     **kwargs: tp.Any) -> tp.Any:
    """Solver of XP `sig` with its best state, in eval mode, without EMA, FSDP or optimizer state.

    `dtype`, `device` and `batch_size` override the XP config when not None; `override_cfg`
    is merged first, so these settings win over it.
    """
    from audiocraft import train
    our_override_cfg: tp.Dict[str, tp.Any] = {'optim': {'ema': {'use': False}}, 'autocast': autocast}
    if dtype is not None:
        our_override_cfg['dtype'] = dtype
    if device is not None:
        our_override_cfg['device'] = device
    if batch_size is not None:
        our_override_cfg['dataset'] = {'batch_size': batch_size}
    merged = omegaconf.OmegaConf.merge(
        omegaconf.DictConfig(override_cfg or {}), omegaconf.DictConfig(our_override_cfg))  # type: ignore
    solver = train.get_solver_from_sig(sig, override_cfg=merged, load_best=True,
                                       disable_fsdp=True, ignore_optimizers=True, **kwargs)
    solver.model.eval()
    return solver
