"""Transformer language model over parallel streams of codebook tokens (MusicGen, AudioGen).

The codes [B, K, T] are laid out in a sequence [B, K, S] by a codebooks pattern (e.g. the
delay pattern); each step embeds the K tokens, sums them, runs the transformer, and predicts
the next step's K tokens with K linear heads. Generation streams over the steps through the
transformer's key/value cache, asking a decode strategy (`audiocraft.models.decoding`: batched or
two-step classifier-free guidance, fixed-shape for compiled / CUDA-graph steps) for the logits.
"""
from dataclasses import dataclass
from functools import partial
import logging
import math
import typing as tp

import torch
from torch import nn

from ..modules.activations import get_activation_fn
from ..modules.codebooks_patterns import CodebooksPatternProvider
from ..modules.conditioners import (AttributeDropout, ClassifierFreeGuidanceDropout, ConditionFuser,
                                    ConditioningAttributes, ConditioningProvider)
from ..modules.conditioners.base import ConditionType
from ..modules.streaming import StreamingModule
from .decoding import DecodeOptions, decode_strategy
from ..modules.transformer import StreamingTransformer, create_norm_fn
from ..utils import utils
from ..utils.errors import InvalidArgumentError

logger = logging.getLogger(__name__)
ConditionTensors = tp.Dict[str, ConditionType]
_ATTENTION_PROJECTIONS = ('in_proj', 'q_proj', 'kv_proj')
CFGConditions = tp.Union[ConditionTensors, tp.Tuple[ConditionTensors, ConditionTensors]]


def get_init_fn(method: str, input_dim: int, init_depth: tp.Optional[int] = None) -> tp.Callable:
    """Initialisation function for weights of fan-in `input_dim`, scaled down with depth.

    Args:
        method: 'gaussian' (truncated at 3 std) or 'uniform'.
        input_dim: Fan-in; the std is 1 / sqrt(input_dim).
        init_depth: If given, divide the std by sqrt(2 * init_depth).
    """
    std = 1 / math.sqrt(input_dim)
    if init_depth is not None:
        std = std / math.sqrt(2 * init_depth)
    if method == 'gaussian':
        return partial(torch.nn.init.trunc_normal_, mean=0.0, std=std, a=-3 * std, b=3 * std)
    if method == 'uniform':
        bound = math.sqrt(3) * std  # uniform on [-b, b] has std b / sqrt(3)
        return partial(torch.nn.init.uniform_, a=-bound, b=bound)
    raise InvalidArgumentError(f"Unsupported layer initialization method {method!r} (use 'gaussian' or 'uniform').")


def _init_tensor(weight: torch.Tensor, init_fn: tp.Callable) -> None:
    if weight.device.type == 'cpu' and weight.dtype == torch.float16:
        # Some init kernels lack half precision on CPU: initialise a float32 copy.
        tmp = weight.float()
        init_fn(tmp)
        weight.data[:] = tmp.half()
    else:
        init_fn(weight)


def init_layer(m: nn.Module, method: str, init_depth: tp.Optional[int] = None,
               zero_bias_init: bool = False) -> None:
    """Initialise a Linear or Embedding module in place (other modules are left alone)."""
    if isinstance(m, nn.Linear):
        _init_tensor(m.weight, get_init_fn(method, m.in_features, init_depth=init_depth))
        if zero_bias_init and m.bias is not None:
            nn.init.constant_(m.bias, 0)
    elif isinstance(m, nn.Embedding):
        _init_tensor(m.weight, get_init_fn(method, m.embedding_dim, init_depth=None))


class ScaledEmbedding(nn.Embedding):
    """Embedding with its own optional learning rate (`make_optim_group`)."""

    def __init__(self, *args: tp.Any, lr: tp.Optional[float] = None, **kwargs: tp.Any):
        super().__init__(*args, **kwargs)
        self.lr = lr

    def make_optim_group(self) -> tp.Dict[str, tp.Any]:
        group: tp.Dict[str, tp.Any] = {"params": list(self.parameters())}
        if self.lr is not None:
            group["lr"] = self.lr
        return group


@dataclass
class LMOutput:
    """Teacher-forced predictions: logits [B, K, T, card] and their validity mask [B, K, T]."""
    logits: torch.Tensor
    mask: torch.Tensor


class LMModel(StreamingModule):
    """Transformer LM over K codebook streams laid out by a codebooks pattern.

    Args:
        pattern_provider: Codebooks pattern provider (e.g. delay).
        condition_provider: Turns conditioning attributes into condition tensors.
        fuser: Fuses condition tensors into the transformer input / cross-attention.
        n_q: Number of codebooks.
        card: Codebook cardinality (the special token id is `card`).
        dim: Model dimension.
        num_heads: Number of attention heads.
        hidden_scale: Feed-forward size as a multiple of `dim`.
        norm: Normalization name.
        norm_first: Pre-norm transformer (then an output norm is applied).
        emb_lr: Learning rate of the embeddings.
        bias_proj: Bias in the output heads.
        weight_init: None, 'gaussian' or 'uniform'.
        depthwise_init: None, 'current' or 'global' depth rescaling of the init.
        zero_bias_init: Zero the biases when a weight_init is used.
        cfg_dropout: Classifier-free guidance dropout probability (training).
        cfg_coef: Default classifier-free guidance coefficient.
        attribute_dropout: Per-attribute dropout probabilities (training).
        two_step_cfg: Default for running conditional and unconditional passes separately.
        **kwargs: Passed to StreamingTransformer (num_layers, causal, cross_attention, ...).
    """

    # Generation feeds one step at a time through the streaming cache (see set_decode_options).
    STEP_DECODING = True

    def __init__(self, pattern_provider: CodebooksPatternProvider, condition_provider: ConditioningProvider,
                 fuser: ConditionFuser, n_q: int = 8, card: int = 1024, dim: int = 128, num_heads: int = 8,
                 hidden_scale: int = 4, norm: str = 'layer_norm', norm_first: bool = False,
                 emb_lr: tp.Optional[float] = None, bias_proj: bool = True,
                 weight_init: tp.Optional[str] = None, depthwise_init: tp.Optional[str] = None,
                 zero_bias_init: bool = False, cfg_dropout: float = 0, cfg_coef: float = 1.0,
                 attribute_dropout: tp.Dict[str, tp.Dict[str, float]] = {}, two_step_cfg: bool = False,
                 **kwargs: tp.Any):
        super().__init__()
        self.cfg_coef = cfg_coef
        self.cfg_dropout = ClassifierFreeGuidanceDropout(p=cfg_dropout)
        self.att_dropout = AttributeDropout(p=attribute_dropout)
        self.condition_provider = condition_provider
        self.fuser = fuser
        self.card = card
        embed_dim = self.card + 1
        self.n_q = n_q
        self.dim = dim
        self.pattern_provider = pattern_provider
        self.two_step_cfg = two_step_cfg
        device = kwargs.get('device')
        # As in AudioCraft, only the transformer takes `dtype`: embeddings, heads and output norm
        # stay float32 (mixed precision comes from autocast at generation time).
        self.emb = nn.ModuleList([ScaledEmbedding(embed_dim, dim, lr=emb_lr, device=device) for _ in range(n_q)])
        if 'activation' in kwargs:
            kwargs['activation'] = get_activation_fn(kwargs['activation'])
        self.transformer = StreamingTransformer(
            d_model=dim, num_heads=num_heads, dim_feedforward=int(hidden_scale * dim),
            norm=norm, norm_first=norm_first, **kwargs)
        self.out_norm: tp.Optional[nn.Module] = None
        if norm_first:
            self.out_norm = create_norm_fn(norm, dim, device=device)
        self.linears = nn.ModuleList([nn.Linear(dim, self.card, bias=bias_proj, device=device)
                                      for _ in range(n_q)])
        self._init_weights(weight_init, depthwise_init, zero_bias_init)
        # Set by the training solver when wrapping with FSDP; kept out of the module tree.
        self.__dict__['_fsdp'] = None
        self.decode_options = DecodeOptions()

    def set_decode_options(self, options: tp.Optional[DecodeOptions] = None, **kwargs: tp.Any) -> None:
        """Choose how generation runs its decoding steps, for this model only.

        Pass a `DecodeOptions` or its fields (static, compile, compile_mode, cuda_graph, window);
        no argument restores the default eager path. See `audiocraft.models.decoding`.
        """
        if options is not None and kwargs:
            raise InvalidArgumentError("Pass either a DecodeOptions or its fields, not both.")
        options = options if options is not None else DecodeOptions(**kwargs)
        if options.enabled and not self.STEP_DECODING:
            raise InvalidArgumentError(f"{type(self).__name__} decodes whole sequences, not one step at a time: "
                                       "static-cache decoding (compile, CUDA graphs) does not apply to it.")
        self.decode_options = options
        self.__dict__.pop('_compiled_cfg_logits', None)

    def _init_weights(self, weight_init: tp.Optional[str], depthwise_init: tp.Optional[str],
                      zero_bias_init: bool) -> None:
        """Initialise embeddings, transformer layers (optionally depth-scaled) and heads."""
        if depthwise_init is not None and depthwise_init not in ['current', 'global']:
            raise InvalidArgumentError(f"depthwise_init must be None, 'current' or 'global', got {depthwise_init!r}.")
        if depthwise_init is not None and weight_init is None:
            raise InvalidArgumentError("If 'depthwise_init' is defined, a 'weight_init' method should be provided.")
        if zero_bias_init and weight_init is None:
            raise InvalidArgumentError("If 'zero_bias_init', a 'weight_init' method should be provided.")
        if weight_init is None:
            return
        for emb_layer in self.emb:
            init_layer(emb_layer, method=weight_init, init_depth=None, zero_bias_init=zero_bias_init)
        for layer_idx, tr_layer in enumerate(self.transformer.layers):
            depth = None
            if depthwise_init == 'current':
                depth = layer_idx + 1
            elif depthwise_init == 'global':
                depth = len(self.transformer.layers)
            for name, module in tr_layer.named_modules():
                # As in AudioCraft, the attention input projections keep their own initialisation
                # (there they are a raw parameter, not a Linear module).
                if not name.endswith(_ATTENTION_PROJECTIONS):
                    init_layer(module, method=weight_init, init_depth=depth, zero_bias_init=zero_bias_init)
        for linear in self.linears:
            init_layer(linear, method=weight_init, init_depth=None, zero_bias_init=zero_bias_init)

    @property
    def special_token_id(self) -> int:
        return self.card

    @property
    def num_codebooks(self) -> int:
        return self.n_q

    def get_stage_attn_mask(self, stage: int, seq_len: int, device: torch.device,
                            dtype: torch.dtype) -> tp.Optional[torch.Tensor]:
        """Self-attention mask for a decoding stage; none for autoregressive LMs (MAGNeT overrides)."""
        return None

    def forward(self, sequence: torch.Tensor, conditions: tp.List[ConditioningAttributes],
                condition_tensors: tp.Optional[ConditionTensors] = None, stage: int = -1) -> torch.Tensor:
        """Logits [B, K, S, card] for a pattern sequence [B, K, S].

        Either `conditions` (attributes, tokenized and embedded here, with training dropouts)
        or precomputed `condition_tensors` must be given, not both.
        """
        B, K, S = sequence.shape
        if K != self.num_codebooks:
            raise InvalidArgumentError(f"Sequence has {K} codebooks, the model expects {self.num_codebooks}.")
        input_ = sum([self.emb[k](sequence[:, k]) for k in range(K)])
        if condition_tensors is None:
            if self._is_streaming:
                raise RuntimeError("Condition tensors should be precomputed when streaming.")
            conditions = self.cfg_dropout(conditions)
            conditions = self.att_dropout(conditions)
            tokenized = self.condition_provider.tokenize(conditions)
            condition_tensors = self.condition_provider(tokenized)
        elif conditions:
            raise InvalidArgumentError("Shouldn't pass both conditions and condition_tensors.")

        input_, cross_attention_input = self.fuser(input_, condition_tensors)
        src_mask = None
        if stage >= 0:
            src_mask = self.get_stage_attn_mask(stage, input_.shape[1], input_.device, input_.dtype)
        out = self.transformer(input_, cross_attention_src=cross_attention_input, src_mask=src_mask)
        if self.out_norm is not None:
            out = self.out_norm(out)
        logits = torch.stack([self.linears[k](out) for k in range(K)], dim=1)  # [B, K, S', card]
        # Drop the positions of prepended conditions.
        if len(self.fuser.fuse2cond.get('prepend', [])) > 0:
            logits = logits[:, :, -S:]
        return logits

    def compute_predictions(self, codes: torch.Tensor, conditions: tp.List[ConditioningAttributes],
                            condition_tensors: tp.Optional[ConditionTensors] = None, stage: int = -1,
                            keep_only_valid_steps: bool = True) -> LMOutput:
        """Teacher-forced logits for codes [B, K, T], mapped back from the pattern sequence.

        Returns LMOutput(logits [B, K, T, card], mask [B, K, T]); logits are NaN where invalid.
        """
        B, K, T = codes.shape
        codes = codes.contiguous()
        pattern = self.pattern_provider.get_pattern(T)
        sequence_codes, _, _ = pattern.build_pattern_sequence(
            codes, self.special_token_id, keep_only_valid_steps=keep_only_valid_steps)
        model = self if self._fsdp is None else self._fsdp
        logits = model(sequence_codes, conditions, condition_tensors, stage=stage)  # [B, K, S, card]
        logits = logits.permute(0, 3, 1, 2)  # [B, card, K, S]
        # NaN marks positions that no valid step predicts.
        logits, _, logits_mask = pattern.revert_pattern_logits(
            logits, float('nan'), keep_only_valid_steps=keep_only_valid_steps)
        logits = logits.permute(0, 2, 3, 1)  # [B, K, T, card]
        logits_mask = logits_mask[None, :, :].expand(B, -1, -1)  # [K, T] -> [B, K, T]
        return LMOutput(logits, logits_mask)

    @staticmethod
    def _sample_from_logits(logits: torch.Tensor, use_sampling: bool, temp: float, top_k: int,
                            top_p: float) -> torch.Tensor:
        """Next tokens [B, K, 1] from the logits [B, K, card] of one step."""
        # Greedy decoding when not sampling or with a zero temperature (avoids dividing by 0).
        sampling = use_sampling and temp > 0.0
        probs = torch.softmax(logits / temp, dim=-1) if sampling else None
        return LMModel._pick_tokens(logits, probs, top_k, top_p)

    @staticmethod
    def _pick_tokens(logits: torch.Tensor, probs: tp.Optional[torch.Tensor], top_k: int,
                     top_p: float) -> torch.Tensor:
        """One token per position ([..., 1]): sampled from `probs` (top-p wins over top-k), or the
        argmax of `logits` when `probs` is None (greedy). Shared with MAGNeT."""
        if probs is None:
            return torch.argmax(logits, dim=-1, keepdim=True)
        if top_p > 0.0:
            return utils.sample_top_p(probs, p=top_p)
        if top_k > 0:
            return utils.sample_top_k(probs, k=top_k)
        return utils.multinomial(probs, num_samples=1)

    def _cfg_condition_tensors(self, conditions: tp.List[ConditioningAttributes], two_step_cfg: bool
                               ) -> CFGConditions:
        """Condition tensors for classifier-free guidance: the conditional and null (fully dropped)
        conditions in one batch of 2B (default), or as a (conditional, null) pair for two-step CFG;
        empty without conditions. Shared with MAGNeT."""
        if not conditions:
            return {}
        null_conditions = ClassifierFreeGuidanceDropout(p=1.0)(conditions)
        if two_step_cfg:
            return (self.condition_provider(self.condition_provider.tokenize(conditions)),
                    self.condition_provider(self.condition_provider.tokenize(null_conditions)))
        return self.condition_provider(self.condition_provider.tokenize(conditions + null_conditions))

    def _check_generate_inputs(self, prompt: tp.Optional[torch.Tensor],
                               conditions: tp.List[ConditioningAttributes],
                               num_samples: tp.Optional[int], max_gen_len: int) -> int:
        """Validate generation inputs and return the batch size."""
        if self.training:
            raise RuntimeError("Generation shouldn't be used in training mode: call model.eval() first.")
        sizes = {}
        if num_samples is not None:
            sizes['num_samples'] = num_samples
        if prompt is not None:
            if prompt.dim() != 3 or prompt.shape[1] != self.num_codebooks:
                raise InvalidArgumentError(f"Prompt must be codes [B, {self.num_codebooks}, T], "
                                           f"got {tuple(prompt.shape)}.")
            sizes['prompt batch'] = prompt.shape[0]
        if conditions:
            sizes['len(conditions)'] = len(conditions)
        elif any(getattr(layer, 'cross_attention', None) is not None for layer in self.transformer.layers):
            raise InvalidArgumentError("This model uses cross-attention conditioning: pass one "
                                       "ConditioningAttributes per sample (e.g. "
                                       "ConditioningAttributes(text={'description': None}) for no text).")
        if len(set(sizes.values())) > 1:
            raise InvalidArgumentError(f"Inconsistent batch sizes: {sizes}.")
        batch = next(iter(sizes.values())) if sizes else 1
        if batch <= 0:
            raise InvalidArgumentError(f"Number of samples must be positive, got {batch}.")
        if prompt is not None and prompt.shape[-1] >= max_gen_len:
            raise InvalidArgumentError(f"Prompt length ({prompt.shape[-1]}) must be shorter than "
                                       f"max_gen_len ({max_gen_len}).")
        return batch

    @staticmethod
    def _known_codes(pattern: tp.Any, gen_sequence: torch.Tensor, ready: int) -> torch.Tensor:
        """Codes [B, K, ready] of the first `ready` (complete) timesteps of a pattern sequence."""
        codes, _, _ = pattern.revert_pattern_sequence(gen_sequence, special_token=-1)
        return codes[..., :ready].clone()

    @torch.no_grad()
    def generate(self, prompt: tp.Optional[torch.Tensor] = None,
                 conditions: tp.List[ConditioningAttributes] = [],
                 num_samples: tp.Optional[int] = None, max_gen_len: int = 256, use_sampling: bool = True,
                 temp: float = 1.0, top_k: int = 250, top_p: float = 0.0, cfg_coef: tp.Optional[float] = None,
                 two_step_cfg: tp.Optional[bool] = None, remove_prompts: bool = False, check: bool = False,
                 callback: tp.Optional[tp.Callable[[int, int], None]] = None, **kwargs: tp.Any) -> torch.Tensor:
        """Generate codes [B, K, T] autoregressively, continuing `prompt` codes if given.

        Same arguments as `iter_generate`, which this runs to the end.
        """
        steps = self.iter_generate(prompt, conditions, num_samples, max_gen_len, use_sampling, temp, top_k, top_p,
                                   cfg_coef, two_step_cfg, remove_prompts, check, callback, **kwargs)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    @staticmethod
    def _last_step_of_timesteps(pattern: tp.Any, timesteps: int) -> tp.List[int]:
        """For each timestep t < `timesteps`, the last pattern step holding one of its codes."""
        last = [0] * timesteps
        for step, coords in enumerate(pattern.layout):
            for coord in coords:
                if coord.t < timesteps:
                    last[coord.t] = max(last[coord.t], step)
        return last

    @torch.no_grad()
    def iter_generate(self, prompt: tp.Optional[torch.Tensor] = None,
                      conditions: tp.List[ConditioningAttributes] = [],
                      num_samples: tp.Optional[int] = None, max_gen_len: int = 256, use_sampling: bool = True,
                      temp: float = 1.0, top_k: int = 250, top_p: float = 0.0, cfg_coef: tp.Optional[float] = None,
                      two_step_cfg: tp.Optional[bool] = None, remove_prompts: bool = False, check: bool = False,
                      callback: tp.Optional[tp.Callable[[int, int], None]] = None, **kwargs: tp.Any
                      ) -> tp.Generator[tp.Tuple[int, tp.Callable[[], torch.Tensor]], None, torch.Tensor]:
        """Generate codes [B, K, T] step by step: after each step, yield `(ready, codes)`, where `ready`
        is the number of timesteps (prompt included) whose K codes are all known and `codes()`
        returns them [B, K, ready]. Returns (StopIteration.value) what `generate` returns.

        The model streams between steps: finish or close the generator before other uses of it.

        Args:
            prompt: Prompt codes [B, K, T_prompt] or None.
            conditions: One ConditioningAttributes per sample (may be empty: unconditional).
            num_samples: Batch size when there is neither prompt nor conditions.
            max_gen_len: Number of timesteps to produce (prompt included).
            use_sampling: Sample (else greedy argmax).
            temp, top_k, top_p: Sampling temperature and truncation (top_p wins over top_k).
            cfg_coef: Classifier-free guidance coefficient (default: the model's).
            two_step_cfg: Separate conditional and unconditional passes (default: the model's).
            remove_prompts: Drop the prompt from the output.
            check: Run extra consistency checks at each step.
            callback: Called with (steps done, total steps) after each step.
        """
        if kwargs:
            raise TypeError(f"Unexpected generation arguments: {sorted(kwargs)}.")
        num_samples = self._check_generate_inputs(prompt, conditions, num_samples, max_gen_len)
        device = next(iter(self.parameters())).device

        # CFG: one conditional and one null set of conditions, by default in a single batch of 2B
        # (twice as fast, and the streaming state sees one pass per step).
        two_step_cfg = self.two_step_cfg if two_step_cfg is None else two_step_cfg
        cfg_conditions = self._cfg_condition_tensors(conditions, two_step_cfg)

        if prompt is None:
            prompt = torch.zeros((num_samples, self.num_codebooks, 0), dtype=torch.long, device=device)
        B, K, T = prompt.shape
        start_offset = T
        pattern = self.pattern_provider.get_pattern(max_gen_len)
        unknown_token = -1  # codes not generated yet
        gen_codes = torch.full((B, K, max_gen_len), unknown_token, dtype=torch.long, device=device)
        gen_codes[..., :start_offset] = prompt
        # [B, K, S] pattern sequence and its validity mask [K, S].
        gen_sequence, _, mask = pattern.build_pattern_sequence(gen_codes, self.special_token_id)
        start_offset_sequence = pattern.get_first_step_with_timesteps(start_offset)
        if start_offset_sequence is None:
            raise RuntimeError(f"The codebooks pattern has no step for timestep {start_offset}.")

        special = torch.full([], self.special_token_id, dtype=torch.long, device=device)
        last_step = self._last_step_of_timesteps(pattern, max_gen_len)
        ready = yielded = start_offset  # the prompt is known from the start
        cfg_coef = self.cfg_coef if cfg_coef is None else cfg_coef
        with self.streaming():
            gen_sequence_len = gen_sequence.shape[-1]
            strategy = decode_strategy(self, cfg_conditions, cfg_coef, gen_sequence_len - 1, self.decode_options)
            strategy.start()
            prev_offset = 0
            for offset in range(start_offset_sequence, gen_sequence_len):
                # The streaming cache holds the steps before prev_offset.
                curr_sequence = gen_sequence[..., prev_offset:offset]
                if check:
                    curr_mask = mask[None, ..., prev_offset:offset].expand(B, -1, -1)
                    assert (curr_sequence == torch.where(curr_mask, curr_sequence, self.special_token_id)).all()
                    assert not (curr_sequence == unknown_token).any()
                next_token = self._sample_from_logits(strategy.logits(curr_sequence), use_sampling, temp, top_k, top_p)
                # Invalid positions of the pattern hold the special token (never predicted).
                valid_mask = mask[..., offset:offset + 1].expand(B, -1, -1)
                next_token = torch.where(valid_mask, next_token, special)
                # Only unknown positions are written, so prompt tokens are kept.
                current = gen_sequence[..., offset:offset + 1]
                gen_sequence[..., offset:offset + 1] = torch.where(current == unknown_token, next_token, current)
                prev_offset = offset
                if callback is not None:
                    callback(1 + offset - start_offset_sequence, gen_sequence_len - start_offset_sequence)
                while ready < max_gen_len and last_step[ready] <= offset:
                    ready += 1
                if ready > yielded:
                    yielded = ready
                    yield ready, partial(self._known_codes, pattern, gen_sequence, ready)

        if (gen_sequence == unknown_token).any():
            raise RuntimeError("Generation left unknown tokens in the sequence.")
        if not (gen_sequence == torch.where(mask[None, ...].expand(B, -1, -1), gen_sequence,
                                            self.special_token_id)).all():
            raise RuntimeError("Generated sequence does not match the codebooks pattern.")
        out_codes, _, out_mask = pattern.revert_pattern_sequence(gen_sequence, special_token=unknown_token)
        if not ((out_codes[..., :max_gen_len] != unknown_token).all() and (out_mask[..., :max_gen_len] == 1).all()):
            raise RuntimeError("Reverting the pattern left incomplete timesteps.")
        out_start_offset = start_offset if remove_prompts else 0
        out_codes = out_codes[..., out_start_offset:max_gen_len]
        if not ((out_codes >= 0).all() and (out_codes <= self.card).all()):
            raise RuntimeError("Generated codes are out of range.")
        return out_codes
