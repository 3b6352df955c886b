"""Solver training MusicGen: a conditional transformer LM over the tokens of a frozen codec."""
import contextlib
import logging
import math
from pathlib import Path
import time
import typing as tp

import flashy
import omegaconf
import torch
from torch.nn import functional as F

from . import base, builders
from .compression import CompressionSolver
from .. import models
from ..data.audio_dataset import AudioDataset
from ..data.audio_utils import normalize_audio
from ..data.info_audio_dataset import AudioInfo
from ..data.music_dataset import MusicDataset, MusicInfo
from ..modules.conditioners import (ConditioningAttributes, JointEmbedCondition, SegmentWithAttributes,
                                    WavCondition)
from ..utils.cache import CachedBatchLoader, CachedBatchWriter
from ..utils.samples.manager import SampleManager
from ..utils.utils import get_dataset_from_loader, is_jsonable, model_hash

logger = logging.getLogger(__name__)


def _drop_text_conditions(attributes: tp.List[ConditioningAttributes]) -> tp.List[ConditioningAttributes]:
    """Copies of the attributes with every text condition set to None."""
    out = []
    for attr in attributes:
        out.append(ConditioningAttributes(text={k: None for k in attr.text}, wav=dict(attr.wav),
                                          joint_embed=dict(attr.joint_embed)))
    return out


class MusicGenSolver(base.StandardSolver):
    """Train a MusicGen LM with per-codebook cross-entropy on the codec's tokens.

    Tokens come from encoding the audio with the frozen compression model given by
    `cfg.compression_model_checkpoint`, or from a token cache (`cfg.cache`).
    """
    DATASET_TYPE: builders.DatasetType = builders.DatasetType.MUSIC

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        self.generation_params = {
            'use_sampling': self.cfg.generate.lm.use_sampling,
            'temp': self.cfg.generate.lm.temp,
            'top_k': self.cfg.generate.lm.top_k,
            'top_p': self.cfg.generate.lm.top_p,
        }
        self._best_metric_name: tp.Optional[str] = 'ce'
        self._cached_batch_writer: tp.Optional[CachedBatchWriter] = None
        self._cached_batch_loader: tp.Optional[CachedBatchLoader] = None
        if cfg.cache.path:
            if cfg.cache.write:
                self._cached_batch_writer = CachedBatchWriter(Path(cfg.cache.path))
                if self.cfg.cache.write_num_shards > 1:
                    self.logger.warning("Multiple shard cache, best_metric_name will be set to None.")
                    self._best_metric_name = None
            else:
                self._cached_batch_loader = CachedBatchLoader(
                    Path(cfg.cache.path), cfg.dataset.batch_size,
                    cfg.dataset.num_workers, min_length=self.cfg.optim.updates_per_epoch or 1)
                self.dataloaders['original_train'] = self.dataloaders['train']
                self.dataloaders['train'] = self._cached_batch_loader  # type: ignore

    @staticmethod
    def get_eval_solver_from_sig(sig: str, dtype: tp.Optional[str] = None,  # type: ignore[override]
                                 device: tp.Optional[str] = None, autocast: bool = True,
                                 batch_size: tp.Optional[int] = None,
                                 override_cfg: tp.Optional[tp.Union[dict, omegaconf.DictConfig]] = None,
                                 **kwargs: tp.Any) -> "MusicGenSolver":
        """Solver of XP `sig` with its best state, for evaluation (EMA off, FSDP off)."""
        return base.load_eval_solver(sig, dtype=dtype, device=device, batch_size=batch_size, autocast=autocast,
                                     override_cfg=override_cfg, **kwargs)

    def get_formatter(self, stage_name: str) -> flashy.Formatter:
        return flashy.Formatter({
            'lr': '.2E',
            'ce': '.3f',
            'ppl': '.3f',
            'grad_norm': '.3E',
        }, exclude_keys=['ce_q*', 'ppl_q*'])

    @property
    def best_metric_name(self) -> tp.Optional[str]:
        return self._best_metric_name

    def build_model(self) -> None:
        """Load the compression model, then create the LM, its optimizer and schedule."""
        self.compression_model = CompressionSolver.wrapped_model_from_checkpoint(
            self.cfg, self.cfg.compression_model_checkpoint, device=self.device)
        if self.compression_model.sample_rate != self.cfg.sample_rate:
            raise ValueError(f"Compression model sample rate is {self.compression_model.sample_rate} but "
                             f"the solver sample rate is {self.cfg.sample_rate}: set sample_rate to match.")
        if self.cfg.transformer_lm.card != self.compression_model.cardinality:
            raise ValueError("Cardinalities of the LM and compression model don't match: LM cardinality is "
                             f"{self.cfg.transformer_lm.card} vs compression model cardinality "
                             f"{self.compression_model.cardinality}. Set transformer_lm.card.")
        if self.cfg.transformer_lm.n_q != self.compression_model.num_codebooks:
            raise ValueError("Numbers of codebooks of the LM and compression models don't match: LM has "
                             f"{self.cfg.transformer_lm.n_q} vs compression model "
                             f"{self.compression_model.num_codebooks}. Set transformer_lm.n_q "
                             "(or compression_model_n_q).")
        self.logger.info("Compression model has %d codebooks with %d cardinality, and a framerate of %d",
                         self.compression_model.num_codebooks, self.compression_model.cardinality,
                         self.compression_model.frame_rate)
        self.model: models.LMModel = models.builders.get_lm_model(self.cfg).to(self.device)
        if self.cfg.fsdp.use:
            if self.cfg.autocast:
                raise ValueError("Cannot use autocast with fsdp: set autocast=false.")
            self.model = self.wrap_with_fsdp(self.model)  # type: ignore
        self.register_ema('model')
        self.optimizer = builders.get_optimizer(builders.get_optim_parameter_groups(self.model), self.cfg.optim)
        self.lr_scheduler = builders.get_lr_scheduler(self.optimizer, self.cfg.schedule, self.total_updates)
        self.register_stateful('model', 'optimizer', 'lr_scheduler')
        self.register_best_state('model')
        self.scaler: tp.Optional[torch.amp.GradScaler] = None
        if self.cfg.fsdp.use:
            need_scaler = self.cfg.fsdp.param_dtype == 'float16'
        else:
            need_scaler = self.cfg.autocast and self.autocast_dtype is torch.float16
        if need_scaler:
            if self.cfg.fsdp.use:
                from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
                self.scaler = ShardedGradScaler()  # type: ignore
            else:
                self.scaler = torch.amp.GradScaler(torch.device(self.device).type)
            self.register_stateful('scaler')

    def build_dataloaders(self) -> None:
        self.dataloaders = builders.get_audio_datasets(self.cfg, dataset_type=self.DATASET_TYPE)

    def show(self) -> None:
        self.logger.info("Compression model:")
        self.log_model_summary(self.compression_model)
        self.logger.info("LM model:")
        self.log_model_summary(self.model)

    def load_state_dict(self, state: dict) -> None:
        if 'condition_provider' in state:
            model_state = state['model']
            condition_provider_state = state.pop('condition_provider')
            for key, value in condition_provider_state.items():
                key = 'condition_provider.' + key
                assert key not in model_state
                model_state[key] = value
        if 'compression_model' in state:
            # The compression model is read from cfg.compression_model_checkpoint; a checkpoint
            # holding a different one would make post-training evaluation inconsistent.
            compression_model_state = state.pop('compression_model')
            before_hash = model_hash(self.compression_model)
            self.compression_model.load_state_dict(compression_model_state)
            if model_hash(self.compression_model) != before_hash:
                raise RuntimeError("The compression model stored in the checkpoint differs from the one given "
                                   "by compression_model_checkpoint, which is not supported.")
        super().load_state_dict(state)

    def load_from_pretrained(self, name: str) -> dict:
        lm_pkg = models.loaders.load_lm_model_ckpt(name)
        return {'best_state': {'model': lm_pkg['best_state']}}

    def _compute_cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor,
                               mask: torch.Tensor) -> tp.Tuple[torch.Tensor, tp.List[torch.Tensor]]:
        """Cross-entropy averaged over codebooks, each over its valid (masked) steps.

        Args:
            logits: [B, K, T, card]; targets: [B, K, T]; mask: [B, K, T] valid positions.
        Returns: the average cross-entropy and the per-codebook values (detached).
        """
        B, K, T = targets.shape
        if logits.shape[:-1] != targets.shape or mask.shape != targets.shape:
            raise ValueError(f"Shape mismatch: logits {tuple(logits.shape)}, targets {tuple(targets.shape)}, "
                             f"mask {tuple(mask.shape)}.")
        ce = torch.zeros([], device=targets.device)
        ce_per_codebook: tp.List[torch.Tensor] = []
        for k in range(K):
            logits_k = logits[:, k, ...].contiguous().view(-1, logits.size(-1))  # [B x T, card]
            targets_k = targets[:, k, ...].contiguous().view(-1)  # [B x T]
            mask_k = mask[:, k, ...].contiguous().view(-1)  # [B x T]
            q_ce = F.cross_entropy(logits_k[mask_k], targets_k[mask_k])
            ce += q_ce
            ce_per_codebook.append(q_ce.detach())
        ce = ce / K
        return ce, ce_per_codebook

    def _prepare_tokens_and_attributes(
        self, batch: tp.Tuple[torch.Tensor, tp.List[SegmentWithAttributes]],
        check_synchronization_points: bool = False
    ) -> tp.Tuple[dict, torch.Tensor, torch.Tensor]:
        """Condition tensors, audio tokens [B, K, T] and padding mask [B, K, T] of a batch."""
        audio_tokens: tp.Optional[torch.Tensor]
        if self._cached_batch_loader is None or self.current_stage != "train":
            audio, infos = batch
            audio = audio.to(self.device)
            audio_tokens = None
            if audio.size(0) != len(infos):
                raise RuntimeError(f"Mismatch between number of items in audio batch ({audio.size(0)}) "
                                   f"and in metadata ({len(infos)})")
        else:
            audio = None
            infos, = batch  # type: ignore
            if not all(isinstance(info, AudioInfo) and info.audio_tokens is not None for info in infos):
                raise RuntimeError("Cached batches must hold AudioInfo with audio_tokens.")
            audio_tokens = torch.stack([info.audio_tokens for info in infos]).to(self.device)  # type: ignore
            audio_tokens = audio_tokens.long()
            for info in infos:
                if isinstance(info, MusicInfo):
                    # Waveform conditioners must then be served from their own cache (NaN otherwise).
                    info.self_wav = WavCondition(
                        torch.full([1, info.channels, info.total_frames], float('NaN')),
                        length=torch.tensor([info.n_frames]), sample_rate=[info.sample_rate],
                        path=[info.meta.path], seek_time=[info.seek_time])
                    dataset = get_dataset_from_loader(self.dataloaders['original_train'])
                    assert isinstance(dataset, MusicDataset), type(dataset)
                    if dataset.paraphraser is not None and info.description is not None:
                        info.description = dataset.paraphraser.sample_paraphrase(info.meta.path, info.description)
        attributes = [info.to_condition_attributes() for info in infos]
        attributes = self.model.cfg_dropout(attributes)
        attributes = self.model.att_dropout(attributes)
        tokenized = self.model.condition_provider.tokenize(attributes)

        with self._sync_debug(self.device == "cuda" and check_synchronization_points):
            if audio_tokens is None:
                with torch.no_grad():
                    audio_tokens, scale = self.compression_model.encode(audio)
                    if scale is not None:
                        raise RuntimeError("Scaled compression models (renormalize=true) are not supported by the LM.")
            with self.autocast:
                condition_tensors = self.model.condition_provider(tokenized)

            padding_mask = torch.ones_like(audio_tokens, dtype=torch.bool, device=audio_tokens.device)
            if self.cfg.tokens.padding_with_special_token:
                # tokens of zero padded audio become the special token and are not trained on
                audio_tokens = audio_tokens.clone()
                padding_mask = padding_mask.clone()
                token_sample_rate = self.compression_model.frame_rate
                B, K, T_s = audio_tokens.shape
                for i in range(B):
                    n_samples = infos[i].n_frames  # type: ignore
                    audio_sample_rate = infos[i].sample_rate  # type: ignore
                    valid_tokens = math.floor(float(n_samples) / audio_sample_rate * token_sample_rate)
                    audio_tokens[i, :, valid_tokens:] = self.model.special_token_id
                    padding_mask[i, :, valid_tokens:] = 0

        if self._cached_batch_writer is not None and self.current_stage == 'train':
            assert self._cached_batch_loader is None
            for info, one_audio_tokens in zip(infos, audio_tokens):
                assert isinstance(info, AudioInfo)
                if isinstance(info, MusicInfo):
                    if info.joint_embed:
                        raise RuntimeError("joint_embed conditions cannot be cached.")
                    info.self_wav = None
                assert one_audio_tokens.max() < 2**15, one_audio_tokens.max().item()
                info.audio_tokens = one_audio_tokens.short().cpu()
            self._cached_batch_writer.save(infos)
        return condition_tensors, audio_tokens, padding_mask

    def _optimize(self, loss: torch.Tensor, metrics: dict) -> None:
        """Backward, gradient sync across workers, clipping, optimizer and schedule steps."""
        metrics['lr'] = self.optimizer.param_groups[0]['lr']
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        self.deadlock_detect.update('scale')
        if self.cfg.fsdp.use:
            loss.backward()
            flashy.distrib.average_tensors(self.model.buffers())
        elif self.cfg.optim.eager_sync:
            with flashy.distrib.eager_sync_model(self.model):
                loss.backward()
        else:
            # slower, but supports several backwards
            loss.backward()
            flashy.distrib.sync_model(self.model)
        self.deadlock_detect.update('backward')
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.optim.max_norm:
            if self.cfg.fsdp.use:
                metrics['grad_norm'] = self.model.clip_grad_norm_(self.cfg.optim.max_norm)  # type: ignore
            else:
                metrics['grad_norm'] = torch.nn.utils.clip_grad_norm_(
                    self.model.parameters(), self.cfg.optim.max_norm)
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        if self.lr_scheduler:
            self.lr_scheduler.step()
        self.optimizer.zero_grad()
        self.deadlock_detect.update('optim')
        if self.scaler is not None:
            metrics['grad_scale'] = self.scaler.get_scale()
        if not loss.isfinite().all():
            raise RuntimeError("Model probably diverged: the loss is not finite.")

    def _checks_sync(self, idx: int) -> bool:
        """Whether step `idx` runs under torch's CUDA sync debug mode (the second step, on CUDA:
        the first warms up), to report host synchronisations in the training step."""
        return idx == 1 and self.device == 'cuda'

    @staticmethod
    @contextlib.contextmanager
    def _sync_debug(enabled: bool) -> tp.Iterator[None]:
        """Warn on every CUDA host synchronisation inside the block when `enabled`."""
        if not enabled:
            yield
            return
        torch.cuda.set_sync_debug_mode('warn')
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode('default')

    def run_step(self, idx: int, batch: tp.Tuple[torch.Tensor, tp.List[SegmentWithAttributes]],
                 metrics: dict) -> dict:
        """One training or valid step: teacher-forced cross-entropy of the audio tokens."""
        check_sync = self._checks_sync(idx)
        condition_tensors, audio_tokens, padding_mask = self._prepare_tokens_and_attributes(batch, check_sync)
        self.deadlock_detect.update('tokens_and_conditions')
        with self._sync_debug(check_sync), self.autocast:
            model_output = self.model.compute_predictions(audio_tokens, [], condition_tensors)  # type: ignore
            logits = model_output.logits
            mask = padding_mask & model_output.mask
            ce, ce_per_codebook = self._compute_cross_entropy(logits, audio_tokens, mask)
            loss = ce
        self.deadlock_detect.update('loss')
        if self.is_training:
            self._optimize(loss, metrics)
        return self._add_ce_metrics(metrics, ce, ce_per_codebook)

    @staticmethod
    def _add_ce_metrics(metrics: dict, ce: torch.Tensor, ce_per_codebook: tp.Sequence[torch.Tensor]) -> dict:
        """Record the cross-entropy and perplexity, overall and per codebook (`ce_q1`, `ppl_q1`...)."""
        ce = ce.detach()
        metrics['ce'] = ce
        metrics['ppl'] = torch.exp(ce)
        for k, ce_q in enumerate(ce_per_codebook):
            metrics[f'ce_q{k + 1}'] = ce_q
            metrics[f'ppl_q{k + 1}'] = torch.exp(ce_q)
        return metrics

    @torch.no_grad()
    def run_generate_step(self, batch: tp.Tuple[torch.Tensor, tp.List[SegmentWithAttributes]],
                          gen_duration: float, prompt_duration: tp.Optional[float] = None,
                          remove_prompt: bool = False, remove_text_conditioning: bool = False) -> dict:
        """Generate `gen_duration` seconds for each batch item, optionally continuing the first
        `prompt_duration` seconds of its audio."""
        bench_start = time.time()
        audio, meta = batch
        if audio.size(0) != len(meta):
            raise RuntimeError(f"Mismatch between number of items in audio batch ({audio.size(0)}) "
                               f"and in metadata ({len(meta)})")
        attributes = [x.to_condition_attributes() for x in meta]
        if remove_text_conditioning:
            attributes = _drop_text_conditions(attributes)
        if prompt_duration is None:
            prompt_audio = None
        else:
            if prompt_duration >= gen_duration:
                raise ValueError("Prompt duration must be lower than target generation duration.")
            prompt_audio_frames = int(prompt_duration * self.compression_model.sample_rate)
            prompt_audio = audio[..., :prompt_audio_frames]
        if prompt_audio is None or prompt_audio.nelement() == 0:
            num_samples = len(attributes)
            prompt_tokens = None
        else:
            num_samples = None
            prompt_audio = prompt_audio.to(self.device)
            prompt_tokens, scale = self.compression_model.encode(prompt_audio)
            if scale is not None:
                raise RuntimeError("Compression model in MusicGen should not require rescaling.")
        extra = {'remove_prompts': True} if remove_prompt else {}
        with self.autocast:
            total_gen_len = math.ceil(gen_duration * self.compression_model.frame_rate)
            gen_tokens = self.model.generate(
                prompt_tokens, attributes, max_gen_len=total_gen_len,
                num_samples=num_samples, **self.generation_params, **extra)
        assert gen_tokens.dim() == 3
        gen_audio = self.compression_model.decode(gen_tokens, None)
        bench_end = time.time()
        return {
            'rtf': (bench_end - bench_start) / gen_duration,
            'ref_audio': audio,
            'gen_audio': gen_audio,
            'gen_tokens': gen_tokens,
            'prompt_audio': prompt_audio,
            'prompt_tokens': prompt_tokens,
        }

    def _hydrated_conditions(self, meta: tp.List[SegmentWithAttributes]) -> tp.List[dict]:
        """JSON-friendly conditions of each item, restricted to the model's conditioners."""
        conditioners = self.model.condition_provider.conditioners.keys()
        hydrated_conditions = []
        for sample in [x.to_condition_attributes() for x in meta]:
            cond_dict: dict = {}
            for cond_type in ('text', 'wav', 'joint_embed'):
                for cond_key, cond_val in getattr(sample, cond_type).items():
                    if cond_key not in conditioners:
                        continue
                    if is_jsonable(cond_val):
                        cond_dict[cond_key] = cond_val
                    elif isinstance(cond_val, WavCondition):
                        cond_dict[cond_key] = cond_val.path
                    elif isinstance(cond_val, JointEmbedCondition):
                        cond_dict[cond_key] = cond_val.text  # only text is used at inference
                    else:
                        cond_dict[cond_key] = str(type(cond_val))
            hydrated_conditions.append(cond_dict)
        return hydrated_conditions

    def generate_audio(self) -> dict:
        """Generate samples for the generate split and store them with the SampleManager."""
        sample_manager = SampleManager(self.xp)
        self.logger.info(f"Generating samples in {sample_manager.base_folder}")
        loader = self.dataloaders['generate']
        updates = len(loader)
        lp = self.log_progress(self.current_stage, loader, total=updates, updates=self.log_updates)
        dataset = get_dataset_from_loader(loader)
        dataset_duration = dataset.segment_duration
        if not isinstance(dataset, AudioDataset) or dataset_duration is None:
            raise ValueError("The generate split needs a segment_duration (dataset.generate.segment_duration).")
        lm_cfg = self.cfg.generate.lm
        target_duration = lm_cfg.get('gen_duration') or dataset_duration
        prompt_duration = lm_cfg.get('prompt_duration')
        if prompt_duration is None:
            prompt_duration = dataset_duration / 4
        if prompt_duration >= dataset_duration:
            raise ValueError(f"Specified prompt duration ({prompt_duration}s) is longer than reference "
                             f"audio duration ({dataset_duration}s)")
        no_text = bool(lm_cfg.get('no_text_conditioning', False))
        sample_generation_params = {
            **{f'classifier_free_guidance_{k}': v for k, v in self.cfg.classifier_free_guidance.items()},
            **self.generation_params,
        }
        metrics: dict = {}
        average = flashy.averager()
        for batch in lp:
            audio, meta = batch
            hydrated_conditions = self._hydrated_conditions(meta)
            rtf = 1.
            if lm_cfg.get('unprompted_samples', True):
                if lm_cfg.get('gen_gt_samples', False):
                    self.logger.warning("Use ground truth instead of audio generation as "
                                        "generate.lm.gen_gt_samples=true")
                    gen_unprompted_audio = audio
                else:
                    outputs = self.run_generate_step(batch, gen_duration=target_duration, prompt_duration=None,
                                                     remove_text_conditioning=no_text)
                    gen_unprompted_audio = outputs['gen_audio'].cpu()
                    rtf = outputs['rtf']
                sample_manager.add_samples(gen_unprompted_audio, self.epoch, hydrated_conditions,
                                           ground_truth_wavs=audio, generation_args=sample_generation_params)
            if lm_cfg.get('prompted_samples', True):
                outputs = self.run_generate_step(batch, gen_duration=target_duration,
                                                 prompt_duration=prompt_duration,
                                                 remove_prompt=bool(lm_cfg.get('remove_prompts', False)),
                                                 remove_text_conditioning=no_text)
                rtf = outputs['rtf']
                sample_manager.add_samples(outputs['gen_audio'].cpu(), self.epoch, hydrated_conditions,
                                           prompt_wavs=outputs['prompt_audio'].cpu(), ground_truth_wavs=audio,
                                           generation_args=sample_generation_params)
            metrics['rtf'] = rtf
            metrics = average(metrics)
        flashy.distrib.barrier()
        return metrics

    def generate(self) -> dict:
        """Generate stage."""
        self.model.eval()
        with torch.no_grad():
            return self.generate_audio()

    def run_epoch(self) -> None:
        if self.cfg.cache.write:
            if ((self.epoch - 1) % self.cfg.cache.write_num_shards) != self.cfg.cache.write_shard:
                return
        super().run_epoch()

    def train(self) -> dict:
        """Train stage."""
        if self._cached_batch_writer is not None:
            self._cached_batch_writer.start_epoch(self.epoch)
        if self._cached_batch_loader is None:
            dataset = get_dataset_from_loader(self.dataloaders['train'])
            assert isinstance(dataset, AudioDataset)
            dataset.current_epoch = self.epoch
        else:
            self._cached_batch_loader.start_epoch(self.epoch)
        return super().train()

    def evaluate_audio_generation(self) -> dict:
        """Objective metrics of audio generated for the evaluate split (`cfg.evaluate.metrics`)."""
        text_consistency = chroma_cosine = None
        eval_chroma_wavs: tp.Optional[torch.Tensor] = None
        metric_flags = self.cfg.evaluate.metrics
        # FAD and KLD need external models this library does not ship: their builders raise, with
        # what to do, so asking for them fails up front rather than after generating.
        if metric_flags.get('fad', False):
            builders.get_fad(self.cfg.metrics.fad)
        if metric_flags.get('kld', False):
            builders.get_kldiv(self.cfg.metrics.kld)
        if metric_flags.get('text_consistency', False):
            text_consistency = builders.get_text_consistency(self.cfg.metrics.text_consistency).to(self.device)
        if metric_flags.get('chroma_cosine', False):
            chroma_cosine = builders.get_chroma_cosine_similarity(self.cfg.metrics.chroma_cosine).to(self.device)
            conditioners = self.model.condition_provider.conditioners
            if 'self_wav' in conditioners and getattr(conditioners['self_wav'], 'eval_wavs', None) is not None:
                # predefined evaluation melodies would make the similarity meaningless
                self.logger.warning("Resetting the pre-defined eval chromas to None for evaluation.")
                eval_chroma_wavs = conditioners['self_wav'].eval_wavs
                conditioners['self_wav'].eval_wavs = None
        if text_consistency is None and chroma_cosine is None:
            return {}

        def get_compressed_audio(audio: torch.Tensor) -> torch.Tensor:
            audio_tokens, scale = self.compression_model.encode(audio.to(self.device))
            compressed_audio = self.compression_model.decode(audio_tokens, scale)
            return compressed_audio[..., :audio.shape[-1]]

        metrics: dict = {}
        loader = self.dataloaders['evaluate']
        lp = self.log_progress(f'{self.current_stage}_generation inference', loader, total=len(loader),
                               updates=self.log_updates)
        average = flashy.averager()
        self.logger.info(f"Computing evaluation metrics on {len(get_dataset_from_loader(loader))} samples")
        try:
            for batch in lp:
                audio, meta = batch
                target_duration = audio.shape[-1] / self.cfg.sample_rate
                if self.cfg.evaluate.fixed_generation_duration:
                    target_duration = self.cfg.evaluate.fixed_generation_duration
                gen_outputs = self.run_generate_step(batch, gen_duration=target_duration)
                y_pred = gen_outputs['gen_audio'].detach()[..., :audio.shape[-1]]
                y_pred = _normalize_generated(y_pred, self.cfg).cpu()
                y = audio.cpu()
                sizes = torch.tensor([m.n_frames for m in meta])
                sample_rates = torch.tensor([m.sample_rate for m in meta])
                if text_consistency is not None:
                    texts = [getattr(m, 'description', None) or '' for m in meta]
                    pred = y if self.cfg.metrics.text_consistency.use_gt else y_pred
                    text_consistency.update(pred, texts, sizes, sample_rates)
                if chroma_cosine is not None:
                    pred = get_compressed_audio(y).cpu() if self.cfg.metrics.chroma_cosine.use_gt else y_pred
                    chroma_cosine.update(pred, y, sizes, sample_rates)
        finally:
            if eval_chroma_wavs is not None:
                self.model.condition_provider.conditioners['self_wav'].eval_wavs = eval_chroma_wavs
        flashy.distrib.barrier()
        if text_consistency is not None:
            metrics['text_consistency'] = text_consistency.compute()
        if chroma_cosine is not None:
            metrics['chroma_cosine'] = chroma_cosine.compute()
        metrics = average(metrics)
        return flashy.distrib.average_metrics(metrics, len(loader))

    def evaluate(self) -> dict:
        """Evaluate stage: cross-entropy on the evaluate split, and generation metrics."""
        self.model.eval()
        with torch.no_grad():
            metrics: dict = {}
            if self.cfg.evaluate.metrics.base:
                metrics.update(self.common_train_valid('evaluate'))
            gen_metrics = self.evaluate_audio_generation()
            return {**metrics, **gen_metrics}


def _normalize_generated(y_pred: torch.Tensor, cfg: omegaconf.DictConfig) -> torch.Tensor:
    normalize_kwargs = dict(cfg.generate.audio)
    normalize_kwargs.pop('format', None)
    if normalize_kwargs.get('sample_rate') is None:
        normalize_kwargs['sample_rate'] = cfg.sample_rate
    return torch.stack([normalize_audio(w, **normalize_kwargs) for w in y_pred], dim=0)
