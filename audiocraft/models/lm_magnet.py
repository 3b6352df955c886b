"""MAGNeT's masked, non-autoregressive language model.

MAGNeT predicts every time step of one codebook at once and refines the prediction over a
few decoding steps: at each step the least confident spans are masked again and re-predicted.
Codebooks are generated one after the other ("stages"). For stages above the first, self
attention only sees `subcodes_context` steps on each side: a band mask passed to the
transformer as `src_mask`, applied by plain PyTorch attention (SDPA), on any device.
"""
import math
import typing as tp

import torch

from ..modules.conditioners import ConditioningAttributes, ConditionTensors
from .decoding import mix_cfg
from .lm import LMModel


def magnet_config_patch(cfg: tp.Any, compression_model_framerate: tp.Optional[int] = None) -> tp.Dict[str, tp.Any]:
    """The `transformer_lm` entries a MAGNeT LM needs beyond its training config, in one place:
    the attention masks are sized from the training `dataset.segment_duration` and the codec
    frame rate, and spans from `masking.span_len`. Used by the loader, the builder and the solver."""
    patch: tp.Dict[str, tp.Any] = {}
    if 'dataset' in cfg and cfg.dataset.get('segment_duration') is not None:
        patch['segment_duration'] = cfg.dataset.segment_duration
    if 'masking' in cfg and cfg.masking.get('span_len') is not None:
        patch['span_len'] = cfg.masking.span_len
    if compression_model_framerate is not None:
        patch['compression_model_framerate'] = compression_model_framerate
    return patch


def apply_magnet_config_patch(cfg: tp.Any, compression_model_framerate: tp.Optional[int] = None) -> None:
    """Write `magnet_config_patch` into `cfg.transformer_lm` (in place)."""
    import omegaconf
    with omegaconf.open_dict(cfg.transformer_lm):
        for key, value in magnet_config_patch(cfg, compression_model_framerate).items():
            cfg.transformer_lm[key] = value


# Score given to tokens that must never be masked again (prompt, already decided spans).
DONT_REMASK_ME_SCORE = -1e4
SPAN_ARRANGEMENTS = ('nonoverlap', 'stride1')
SPAN_SCORINGS = ('max', 'prod')


class MagnetLMModel(LMModel):
    """Transformer LM for MAGNeT (masked generation over the parallel codebook pattern).

    Args:
        subcodes_context (int): attention context, in steps on each side, for codebooks above
            the first; -1 means unrestricted.
        compression_model_framerate (int): frame rate of the codec, to size the attention masks.
        segment_duration (int): duration in seconds of the sequences the model generates.
        span_len (int): length of the masked spans.
        **kwargs: the `LMModel` arguments.
    """
    STEP_DECODING = False  # each decoding pass runs the whole sequence

    def __init__(self, subcodes_context: int = 5, compression_model_framerate: int = 50,
                 segment_duration: int = 10, span_len: int = 3, **kwargs: tp.Any):
        super().__init__(**kwargs)
        self.causal = kwargs.get('causal', False)
        self.subcodes_context = subcodes_context
        self.span_len = span_len
        self.compression_model_framerate = compression_model_framerate
        self.segment_duration = segment_duration
        self._build_attn_masks(compression_model_framerate=compression_model_framerate,
                               segment_duration=segment_duration,
                               num_heads=kwargs.get('num_heads', 8),
                               device=kwargs.get('device'), dtype=kwargs.get('dtype'))

    # ---- attention masks ----

    def restricted_context_attn_mask(self, seq_len: int, device: tp.Optional[torch.device] = None,
                                     dtype: tp.Optional[torch.dtype] = None) -> torch.Tensor:
        """Additive [seq_len, seq_len] mask (0 / -inf) letting each step see `subcodes_context` steps
        on each side."""
        valid = self._band(seq_len, device)
        dtype = dtype or torch.float32
        zero = torch.zeros([], device=valid.device, dtype=dtype)
        return torch.where(valid, zero, torch.full([], float('-inf'), device=valid.device, dtype=dtype))

    def _band(self, seq_len: int, device: tp.Optional[torch.device] = None) -> torch.Tensor:
        """Boolean [seq_len, seq_len] 'may attend' mask: |query - key| <= subcodes_context."""
        if device is None or torch.device(device).type == 'meta':
            device = torch.device('cpu')  # masks are computed values, never weights: keep them real
        positions = torch.arange(seq_len, device=device)
        return (positions[:, None] - positions[None, :]).abs() <= self.subcodes_context

    def _stage_attn_mask(self, stage: int, seq_len: int, num_heads: tp.Optional[int] = None,
                         device: tp.Optional[torch.device] = None,
                         dtype: tp.Optional[torch.dtype] = None) -> tp.Optional[torch.Tensor]:
        """Boolean self-attention mask of a stage ([seq_len, seq_len], True = may attend), None if
        the stage attends everywhere (the first codebook, or subcodes_context < 0).

        `num_heads` and `dtype` are accepted for AudioCraft's signature: SDPA broadcasts a boolean
        mask over batch and heads, so no per-head copy or alignment padding is built.
        """
        if stage <= 0 or self.subcodes_context < 0:
            return None
        return self._band(seq_len, device)

    def _build_attn_masks(self, compression_model_framerate: int, segment_duration: float, num_heads: int,
                          device: tp.Optional[torch.device] = None, dtype: tp.Optional[torch.dtype] = None) -> None:
        """Per-stage masks for the model's own sequence length, kept as `attn_mask_per_stage`.

        AudioCraft stores them repeated over heads and padded to a multiple of 8 for xformers;
        SDPA broadcasts over batch and heads, so a boolean [L, L] mask per stage is enough.
        """
        seq_len = int(compression_model_framerate * segment_duration)
        self.num_heads = num_heads
        self.attn_mask_per_stage: tp.List[tp.Optional[torch.Tensor]] = [
            self._stage_attn_mask(stage, seq_len, num_heads) for stage in range(self.n_q)]

    def get_stage_attn_mask(self, stage: int, seq_len: int, device: torch.device,
                            dtype: torch.dtype) -> tp.Optional[torch.Tensor]:
        """Self-attention mask used by `forward(..., stage=stage)` for `seq_len` steps, or None.

        Built for the actual length and device (the band of a shorter sequence is the top-left
        corner of the model's full-length mask, as AudioCraft's cropping gives).
        """
        if stage < 0 or stage >= self.n_q:
            return None
        return self._stage_attn_mask(stage, seq_len, device=device)

    # ---- span masking ----

    def _compute_mask_spans(self, spans: torch.Tensor, T: int, device: tp.Optional[torch.device] = None
                            ) -> torch.Tensor:
        """[1, 1, T] boolean mask, True on every span of `span_len` steps starting at the indices `spans`."""
        mask = torch.full((1, 1, T), False, device=device)
        mask[:, :, spans] = True
        shifted = mask.clone()
        for _ in range(self.span_len - 1):
            shifted = torch.cat((torch.full((1, 1, 1), False, device=device), shifted[:, :, :-1]), dim=-1)
            mask = torch.logical_or(mask, shifted)
        return mask

    def _least_probable_span_masking(self, scores: torch.Tensor, num_masked_trg: int) -> torch.Tensor:
        """Mask overlapping (stride 1) spans with the highest scores, about `num_masked_trg` tokens in all.

        Args:
            scores (torch.Tensor): [1, 1, T] token scores (higher means less probable).
            num_masked_trg (int): wanted number of masked tokens.
        Returns:
            torch.Tensor: [1, 1, T] boolean mask.
        """
        T = scores.shape[-1]
        device = scores.device
        span_scores = scores.unfold(2, self.span_len, 1).sum(dim=-1)  # product of probs in log space
        spans_by_scores = torch.argsort(span_scores[0, 0], descending=True)

        num_masked_trg = max(num_masked_trg, self.span_len)
        # Binary search on the number of spans: between fully disjoint and fully overlapping spans.
        min_u = num_masked_trg // self.span_len
        max_u = num_masked_trg - self.span_len + 1
        mid = round(0.5 * (min_u + max_u))
        if mid == min_u or mid == max_u:
            return self._compute_mask_spans(spans_by_scores[:mid], T, device)
        mask = self._compute_mask_spans(spans_by_scores[:mid], T, device)
        while min_u < mid < max_u:
            mask = self._compute_mask_spans(spans_by_scores[:mid], T, device)
            if mask.sum() > num_masked_trg:
                max_u = mid
            else:
                min_u = mid
            mid = round(0.5 * (min_u + max_u))
        return mask

    # ---- generation ----

    @torch.no_grad()
    def generate(self, prompt: tp.Optional[torch.Tensor] = None,
                 conditions: tp.List[ConditioningAttributes] = [],
                 num_samples: tp.Optional[int] = None,
                 max_gen_len: int = 256,
                 use_sampling: bool = True,
                 temp: float = 1.0,
                 top_k: int = 250,
                 top_p: float = 0.0,
                 cfg_coef: tp.Optional[float] = None,
                 two_step_cfg: tp.Optional[bool] = None,
                 remove_prompts: bool = False,
                 check: bool = False,
                 callback: tp.Optional[tp.Callable[[int, int], None]] = None,
                 **kwargs: tp.Any) -> torch.Tensor:
        """Generate codes [B, K, T] by iterative masked decoding, one codebook after the other.

        Extra keyword arguments (`max_cfg_coef`, `min_cfg_coef`, `decoding_steps`, `anneal_temp`,
        `span_scoring`, `span_arrangement`) go to the MAGNeT decoding loop. With the
        'nonoverlap' arrangement T is rounded down to a multiple of `span_len`.
        """
        if cfg_coef is not None:
            raise ValueError("MAGNeT does not use cfg_coef: set max_cfg_coef and min_cfg_coef instead.")
        if two_step_cfg:
            raise ValueError("MAGNeT does not support two-step classifier free guidance.")
        if remove_prompts:
            raise ValueError("MAGNeT does not support remove_prompts: the prompt is part of the output.")
        if check:
            raise ValueError("MAGNeT does not support check=True.")
        return self._generate_magnet(prompt=prompt, conditions=conditions, num_samples=num_samples,
                                     max_gen_len=max_gen_len, use_sampling=use_sampling, temp=temp,
                                     top_k=top_k, top_p=top_p, callback=callback, **kwargs)

    @torch.no_grad()
    def _generate_magnet(self, prompt: tp.Optional[torch.Tensor] = None,
                         conditions: tp.List[ConditioningAttributes] = [],
                         num_samples: tp.Optional[int] = None,
                         max_gen_len: int = 256,
                         use_sampling: bool = True,
                         temp: float = 3.0,
                         top_k: int = 0,
                         top_p: float = 0.9,
                         callback: tp.Optional[tp.Callable[[int, int], None]] = None,
                         max_cfg_coef: float = 10.0,
                         min_cfg_coef: float = 1.0,
                         decoding_steps: tp.Sequence[int] = (20, 10, 10, 10),
                         anneal_temp: bool = True,
                         span_scoring: str = 'max',
                         span_arrangement: str = 'nonoverlap') -> torch.Tensor:
        if self.training:
            raise RuntimeError("MAGNeT generation must run in eval mode: call model.eval() first.")
        if span_arrangement not in SPAN_ARRANGEMENTS:
            raise ValueError(f"span_arrangement must be one of {SPAN_ARRANGEMENTS}, got {span_arrangement!r}.")
        if span_scoring not in SPAN_SCORINGS:
            raise ValueError(f"span_scoring must be one of {SPAN_SCORINGS}, got {span_scoring!r}.")
        if len(decoding_steps) < self.n_q or any(int(s) < 1 for s in decoding_steps[:self.n_q]):
            raise ValueError(f"decoding_steps needs one positive number of steps per codebook "
                             f"({self.n_q}), got {list(decoding_steps)}.")
        device = next(iter(self.parameters())).device
        # The LM's checks and CFG batch: conditional and null conditions in one batch of 2B.
        batch = self._check_generate_inputs(prompt, conditions, num_samples, max_gen_len)
        cfg_conditions = self._cfg_condition_tensors(conditions, two_step_cfg=False)
        assert isinstance(cfg_conditions, dict)

        if prompt is None:
            prompt = torch.zeros((batch, self.num_codebooks, 0), dtype=torch.long, device=device)
        start_offset = prompt.shape[-1]

        gen_sequence = torch.full((batch, prompt.shape[1], max_gen_len), self.special_token_id,
                                  dtype=torch.long, device=device)
        gen_sequence[..., :start_offset] = prompt

        curr_step = 0
        total_steps = sum(int(s) for s in decoding_steps[:self.n_q])
        for stage, n_steps in zip(range(self.n_q), decoding_steps):
            gen_sequence, curr_step = self._generate_stage(
                gen_sequence, cfg_conditions, stage=stage, device=device, prompt_length=start_offset,
                prompt=prompt, temp=temp, max_cfg_coef=max_cfg_coef, min_cfg_coef=min_cfg_coef,
                top_k=top_k, top_p=top_p, timesteps=int(n_steps), anneal_temp=anneal_temp,
                span_scoring=span_scoring, use_sampling=use_sampling, span_arrangement=span_arrangement,
                curr_step=curr_step, total_steps=total_steps, callback=callback)
        return gen_sequence

    @torch.no_grad()
    def _generate_stage(self, gen_sequence: torch.Tensor,
                        condition_tensors: tp.Optional[ConditionTensors],
                        stage: int,
                        device: torch.device,
                        prompt_length: int = 0,
                        prompt: tp.Optional[torch.Tensor] = None,
                        use_sampling: bool = True,
                        temp: float = 3.0,
                        max_cfg_coef: float = 10.0,
                        min_cfg_coef: float = 1.0,
                        top_k: int = 0,
                        top_p: float = 0.0,
                        timesteps: int = 10,
                        anneal_temp: bool = True,
                        span_scoring: str = 'max',
                        span_arrangement: str = 'nonoverlap',
                        curr_step: int = 0,
                        total_steps: int = 0,
                        callback: tp.Optional[tp.Callable[[int, int], None]] = None
                        ) -> tp.Tuple[torch.Tensor, int]:
        """Decode codebook `stage` of `gen_sequence` [B, K, T] in `timesteps` refinement steps.

        Returns the updated sequence (cut to a multiple of `span_len` with the 'nonoverlap'
        arrangement) and the number of steps done so far over all stages.
        """
        B, K, T = gen_sequence.shape
        shape = (B, 1, T)
        mask_id = self.special_token_id
        stage_gen_seq = torch.full(shape, mask_id, dtype=torch.long, device=device)
        chunk_masking = self.span_len > 1 and span_arrangement == 'nonoverlap'

        if chunk_masking:
            # One score per non-overlapping span; the tail that does not fill a span is dropped.
            n_chunks = T // self.span_len
            if T % self.span_len != 0:
                T = self.span_len * n_chunks
                gen_sequence = gen_sequence[..., :T]
                stage_gen_seq = stage_gen_seq[..., :T]
            chunked_shape = (B, 1, n_chunks)
            n_prompt_chunks = prompt_length // self.span_len
            scores = torch.zeros(chunked_shape, dtype=torch.float32, device=device)
            scores[..., :n_prompt_chunks] = DONT_REMASK_ME_SCORE
            num_chunks_to_gen = n_chunks - n_prompt_chunks
        else:
            scores = torch.zeros(shape, dtype=torch.float32, device=device)
            scores[..., :prompt_length] = DONT_REMASK_ME_SCORE
            gen_T = T - prompt_length

        run_lps_masking = span_arrangement == 'stride1' and self.span_len > 1
        for timestep, steps_left in zip(torch.linspace(0, 1, timesteps, device=device),
                                        reversed(range(timesteps))):
            mask_p = torch.cos(timestep * math.pi * 0.5)  # cosine schedule of the masking rate
            if chunk_masking:
                num_masked = max(int((mask_p * num_chunks_to_gen).item()), 1)
            else:
                num_masked = max(int((mask_p * gen_T).item()), 1)

            if run_lps_masking:
                mask = torch.cat([self._least_probable_span_masking(scores[[i], :, :], num_masked).to(device)
                                  for i in range(B)], dim=0)
                stage_gen_seq[mask] = mask_id
            else:
                masked = scores.topk(num_masked, dim=-1).indices
                if chunk_masking:
                    chunks_mask = torch.full(chunked_shape, False, dtype=torch.bool, device=device)
                    chunks_mask = chunks_mask.scatter(2, masked, True)
                    mask = torch.repeat_interleave(chunks_mask, self.span_len, dim=-1)
                    stage_gen_seq[mask] = mask_id
                else:
                    stage_gen_seq = stage_gen_seq.scatter(2, masked, mask_id)

            if prompt is not None and prompt_length > 0:
                kept = min(prompt_length, T)  # the prompt may reach into the dropped tail
                stage_gen_seq[..., :kept] = prompt[:, stage, :kept].unsqueeze(1)

            gen_sequence[:, [stage], :] = stage_gen_seq
            if condition_tensors:
                sequence = torch.cat([gen_sequence, gen_sequence], dim=0)
            else:
                sequence = gen_sequence
            model = self if self._fsdp is None else self._fsdp
            all_logits = model(sequence, [], condition_tensors or {}, stage=stage)

            if condition_tensors:
                # Classifier free guidance, annealed with the masking rate.
                cond_logits, uncond_logits = all_logits.split(B, dim=0)
                cfg = float(mask_p) * max_cfg_coef + (1 - float(mask_p)) * min_cfg_coef
                logits = mix_cfg(cond_logits, uncond_logits, cfg)
            else:
                logits = all_logits

            t = temp * (steps_left / timesteps) if anneal_temp else temp  # linear temperature annealing
            logits = logits[:, stage, :, :].unsqueeze(1)
            probs = torch.softmax(logits / max(t, 1e-2), dim=-1)
            sampled_tokens = self._pick_tokens(logits, probs if use_sampling else None, top_k, top_p)

            mask = stage_gen_seq == mask_id
            stage_gen_seq = torch.where(mask, sampled_tokens[..., 0], stage_gen_seq)
            gen_sequence[:, [stage], :] = stage_gen_seq

            sampled_probs = torch.gather(probs, 3, sampled_tokens)[..., 0]
            if chunk_masking:
                if span_scoring == 'max':
                    scores = 1 - torch.max(sampled_probs.reshape((B, 1, n_chunks, -1)), dim=-1)[0]
                else:
                    scores = torch.sum(-torch.log(sampled_probs).reshape((B, 1, n_chunks, -1)), dim=-1)
                scores = scores.masked_fill(~chunks_mask, DONT_REMASK_ME_SCORE)
            else:
                scores = -torch.log(sampled_probs)
                scores = scores.masked_fill(~mask, DONT_REMASK_ME_SCORE)

            if callback is not None:
                curr_step += 1
                callback(curr_step, total_steps)
        return gen_sequence, curr_step
