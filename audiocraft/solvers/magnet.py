"""Solver training MAGNeT: a non-autoregressive LM predicting masked spans of one codebook at a time."""
import math
import random
import typing as tp

import numpy as np
import omegaconf
import torch
from torch.nn import functional as F

from . import builders
from .musicgen import MusicGenSolver
from ..models.lm_magnet import apply_magnet_config_patch
from ..modules.conditioners import SegmentWithAttributes


class MagnetSolver(MusicGenSolver):
    """MAGNeT training (masked span prediction, one random codebook per step).

    For each batch a codebook ("stage") k is drawn uniformly. A masking rate is drawn from a
    cosine schedule; spans of `masking.span_len` steps of codebook k are masked to reach that
    rate, codebooks above k are fully masked, codebooks below k are kept as context. The loss
    is the cross-entropy of codebook k on its masked positions.
    """
    DATASET_TYPE: builders.DatasetType = builders.DatasetType.MUSIC

    def __init__(self, cfg: omegaconf.DictConfig):
        super().__init__(cfg)
        lm_cfg = self.cfg.generate.lm
        self.generation_params = {
            'use_sampling': lm_cfg.use_sampling,
            'temp': lm_cfg.temp,
            'top_k': lm_cfg.top_k,
            'top_p': lm_cfg.top_p,
            'max_cfg_coef': lm_cfg.max_cfg_coef,
            'min_cfg_coef': lm_cfg.min_cfg_coef,
            'decoding_steps': list(lm_cfg.decoding_steps),
            'anneal_temp': lm_cfg.anneal_temp,
            'span_scoring': lm_cfg.span_scoring,
            'span_arrangement': lm_cfg.span_arrangement,
        }
        sequence_len = int(cfg.dataset.segment_duration * self.compression_model.frame_rate)
        self.mean_maskrate_to_u = torch.tensor(self._calc_mean_maskrate_to_u_LUT(sequence_len),
                                               device=self.device)
        # Only one codebook is trained per step: report the latest value seen for each.
        self.ce_per_codebook = [torch.log(torch.tensor(self.compression_model.cardinality, device=self.device))
                                for _ in range(cfg.transformer_lm.n_q)]

    def build_model(self) -> None:
        # The LM's attention masks depend on the training segment and span lengths.
        apply_magnet_config_patch(self.cfg)
        super().build_model()

    def _calc_mean_maskrate_to_u_LUT(self, T: int) -> tp.List[int]:
        """Table from a masking percentage (0..100) to the number u of spans of length L whose
        random placement masks that fraction of T steps on average (1 - ((T - L) / T) ** u)."""
        L = self.cfg.masking.span_len
        u2mean = [0.0]  # u = 0 masks nothing
        v = (T - L) / float(T)
        for u in range(1, T):
            u2mean.append(1 - v ** u)
        mean2u = []
        for maskperc in range(101):
            maskrate = maskperc / float(100)
            mean2u.append(int(np.searchsorted(u2mean, maskrate)))
        return mean2u

    def _non_spans_mask(self, mask_probs: torch.Tensor, B: int, T: int, device: torch.device) -> torch.Tensor:
        """Mask round(T * p) random steps of each item (at least one)."""
        num_token_masked = (T * mask_probs).round().clamp(min=1)
        batch_randperm = torch.rand((B, T), device=device).argsort(dim=-1)
        return batch_randperm < num_token_masked[:, None]

    def _spans_mask(self, mask_probs: torch.Tensor, B: int, T: int, device: torch.device) -> torch.Tensor:
        """Mask spans of `span_len` steps starting at u random positions (u from the lookup table)."""
        rounded_probs = torch.round(100 * mask_probs).long()
        k = self.mean_maskrate_to_u[rounded_probs].clamp(min=1)  # number of span starts
        batch_randperm = torch.rand((B, T), device=device).argsort(dim=-1)
        mask = batch_randperm < k[:, None]
        shifted_mask = mask.clone()
        for _ in range(self.cfg.masking.span_len - 1):
            shifted_mask = torch.cat((torch.zeros((B, 1), dtype=torch.bool, device=device),
                                      shifted_mask[:, :-1]), dim=1)
            mask = torch.logical_or(mask, shifted_mask)
        return mask

    def _get_mask(self, mask_probs: torch.Tensor, B: int, T: int, device: torch.device) -> torch.Tensor:
        if self.cfg.masking.span_len <= 1:
            return self._non_spans_mask(mask_probs, B, T, device)
        return self._spans_mask(mask_probs, B, T, device)

    def _compute_cross_entropy_magnet(self, logits: torch.Tensor, targets: torch.Tensor,
                                      mask: torch.Tensor, stage: int) -> torch.Tensor:
        """Cross-entropy of codebook `stage` over the positions where `mask` is True."""
        if logits.shape[:-1] != targets.shape or mask.shape != targets.shape:
            raise ValueError(f"Shape mismatch: logits {tuple(logits.shape)}, targets {tuple(targets.shape)}, "
                             f"mask {tuple(mask.shape)}.")
        logits_k = logits[:, stage, ...].contiguous().view(-1, logits.size(-1))  # [B x T, card]
        targets_k = targets[:, stage, ...].contiguous().view(-1).clone()  # [B x T]
        mask_k = mask[:, stage, ...].contiguous().view(-1)  # [B x T]
        ignore_index = -1
        targets_k[~mask_k] = ignore_index
        return F.cross_entropy(logits_k, targets_k, ignore_index=ignore_index)

    def run_step(self, idx: int, batch: tp.Tuple[torch.Tensor, tp.List[SegmentWithAttributes]],
                 metrics: dict) -> dict:
        """One training or valid step of masked span prediction."""
        check_sync = self._checks_sync(idx)
        condition_tensors, audio_tokens, padding_mask = self._prepare_tokens_and_attributes(batch, check_sync)
        self.deadlock_detect.update('tokens_and_conditions')
        B, K, T = audio_tokens.shape
        device = audio_tokens.device

        stage = random.randint(0, K - 1)
        rand_time = torch.zeros((B,), device=device).uniform_(0, 1)
        rand_mask_probs = torch.cos(rand_time * math.pi * 0.5)
        stage_mask = self._get_mask(rand_mask_probs, B, T, device)  # [B, T]
        stage_mask = stage_mask & padding_mask[:, stage, :]
        input_mask = torch.zeros((B, K, T), dtype=torch.bool, device=device)
        input_mask[:, stage, :] = stage_mask
        input_mask[:, stage + 1:, :] = True  # higher codebooks are unknown at this stage
        input_tokens = audio_tokens.clone()
        input_tokens[input_mask] = self.model.special_token_id
        loss_mask = torch.zeros((B, K, T), dtype=torch.bool, device=device)
        loss_mask[:, stage, :] = stage_mask

        with self._sync_debug(check_sync), self.autocast:
            model_output = self.model.compute_predictions(input_tokens, [], condition_tensors, stage=stage)
            logits = model_output.logits
            loss_mask = loss_mask & model_output.mask
            ce = self._compute_cross_entropy_magnet(logits, audio_tokens, loss_mask, stage)
            loss = ce
        self.deadlock_detect.update('loss')
        if self.is_training:
            self.check_finite_losses({'ce': loss}, idx)
            self._optimize(loss, metrics)
        self.ce_per_codebook[stage] = ce.detach()
        return self._add_ce_metrics(metrics, ce, self.ce_per_codebook)


class AudioMagnetSolver(MagnetSolver):
    """MAGNeT training on sound datasets (AudioMAGNeT)."""
    DATASET_TYPE: builders.DatasetType = builders.DatasetType.SOUND
