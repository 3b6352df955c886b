"""Text conditioners: a hashed look-up table (LUT) and a frozen or fine-tuned T5 encoder."""
from copy import deepcopy
import logging
import re
import typing as tp
import warnings

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from ...utils.utils import hash_trick, length_to_mask
from .base import ConditionType, TextConditioner, autocast_dtype_for

logger = logging.getLogger(__name__)


class Tokenizer:
    """Texts (None = absent) -> (tokens [B, T], mask [B, T])."""

    def __call__(self, texts: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError()


class WhiteSpaceTokenizer(Tokenizer):
    """Word-level tokenizer hashing each word into `n_bins` buckets.

    Numbers are spelled out, punctuation dropped. Lemmatisation and stop-word removal
    need spaCy and its `language` model; with both off, words are split on white space.

    With a `vocabulary`, words are lower-cased (hyphens split), token `i + 1` is the `i`-th
    vocabulary word (0 stays the padding) and words outside it are ignored, so a prompt
    with unknown words conditions like the same prompt without them.
    """
    PUNCTUATION = "?:!.,;"

    def __init__(self, n_bins: int, pad_idx: int = 0, language: str = "en_core_web_sm",
                 lemma: bool = True, stopwords: bool = True,
                 vocabulary: tp.Optional[tp.Sequence[str]] = None) -> None:
        self.n_bins = n_bins
        self.pad_idx = pad_idx
        self.lemma = lemma
        self.stopwords = stopwords
        self.vocabulary: tp.Optional[tp.Dict[str, int]] = None
        if vocabulary is not None:
            if len(vocabulary) >= n_bins:
                raise ValueError(f"A vocabulary of {len(vocabulary)} words needs n_bins > {len(vocabulary)} "
                                 f"(one bin per word plus padding), got n_bins={n_bins}.")
            self.vocabulary = {str(word).lower(): index + 1 for index, word in enumerate(vocabulary)}
        self.nlp = None
        if lemma or stopwords:
            try:
                import spacy  # type: ignore
                self.nlp = spacy.load(language)
            except (ImportError, OSError) as exc:
                raise RuntimeError(
                    f"WhiteSpaceTokenizer with lemma/stopwords needs spaCy and its '{language}' model "
                    f"(pip install spacy && python -m spacy download {language}), or pass "
                    "lemma=False, stopwords=False.") from exc

    def _words(self, text: str) -> tp.List[str]:
        if self.vocabulary is not None:
            text = text.lower().replace('-', ' ')
        if self.nlp is None:
            words = re.findall(r"[^\s" + re.escape(self.PUNCTUATION) + r"]+", text)
        else:
            doc = self.nlp(text)
            tokens = [w for w in doc if not (self.stopwords and w.is_stop)]
            tokens = [w for w in tokens if w.text not in self.PUNCTUATION]
            words = [w.lemma_ if self.lemma else w.text for w in tokens]
        if self.vocabulary is not None:
            words = [w for w in words if w in self.vocabulary]
        return words

    def _token(self, word: str) -> int:
        return self.vocabulary[word] if self.vocabulary is not None else hash_trick(word, self.n_bins)

    def __call__(self, texts: tp.List[tp.Optional[str]], return_text: bool = False) -> tp.Any:
        from num2words import num2words
        output, lengths = [], []
        texts = deepcopy(texts)
        for i, text in enumerate(texts):
            if text is None:
                output.append(torch.Tensor([self.pad_idx]))
                lengths.append(0)
                continue
            text = re.sub(r"(\d+)", lambda m: num2words(int(m.group(0))), text)
            words = self._words(text)
            texts[i] = " ".join(words)
            lengths.append(len(words))
            output.append(torch.Tensor([self._token(w) for w in words]))
        mask = length_to_mask(torch.IntTensor(lengths)).int()
        padded = pad_sequence(output, padding_value=self.pad_idx).int().t()
        if padded.shape[1] < mask.shape[1]:
            padded = nn.functional.pad(padded, (0, mask.shape[1] - padded.shape[1]), value=self.pad_idx)
        if return_text:
            return padded, mask, texts
        return padded, mask


class NoopTokenizer(Tokenizer):
    """Hashes the whole text into a single token (for categorical attributes like genre)."""

    def __init__(self, n_bins: int, pad_idx: int = 0) -> None:
        self.n_bins = n_bins
        self.pad_idx = pad_idx

    def __call__(self, texts: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        output, lengths = [], []
        for text in texts:
            if text is None:
                output.append(self.pad_idx)
                lengths.append(0)
            else:
                output.append(hash_trick(text, self.n_bins))
                lengths.append(1)
        tokens = torch.LongTensor(output).unsqueeze(1)
        mask = length_to_mask(torch.IntTensor(lengths)).int()
        return tokens, mask


class LUTConditioner(TextConditioner):
    """Embedding look-up of hashed words (`tokenizer`: 'whitespace' or 'noop').

    `lemma`, `stopwords` and `vocabulary` configure the 'whitespace' tokenizer.
    """

    def __init__(self, n_bins: int, dim: int, output_dim: int, tokenizer: str, pad_idx: int = 0,
                 lemma: bool = True, stopwords: bool = True, vocabulary: tp.Optional[tp.Sequence[str]] = None):
        super().__init__(dim, output_dim)
        self.embed = nn.Embedding(n_bins, dim)
        self.tokenizer: Tokenizer
        if tokenizer == 'whitespace':
            # lemma=False, stopwords=False: no spaCy needed; a vocabulary ignores unknown words.
            self.tokenizer = WhiteSpaceTokenizer(n_bins, pad_idx=pad_idx, lemma=lemma, stopwords=stopwords,
                                                 vocabulary=None if vocabulary is None else list(vocabulary))
        elif tokenizer == 'noop':
            self.tokenizer = NoopTokenizer(n_bins, pad_idx=pad_idx)
        else:
            raise ValueError(f"Unknown tokenizer '{tokenizer}': use 'whitespace' or 'noop'.")

    def tokenize(self, x: tp.List[tp.Optional[str]]) -> tp.Tuple[torch.Tensor, torch.Tensor]:
        device = self.embed.weight.device
        tokens, mask = self.tokenizer(x)
        return tokens.to(device), mask.to(device)

    def forward(self, inputs: tp.Tuple[torch.Tensor, torch.Tensor]) -> ConditionType:
        tokens, mask = inputs
        embeds = self.output_proj(self.embed(tokens))
        embeds = embeds * mask.unsqueeze(-1)
        return embeds, mask


class T5Conditioner(TextConditioner):
    """Text embeddings from a pretrained T5 encoder, projected to `output_dim`.

    The encoder is loaded with `transformers` by name (offline caches work). Unless
    `finetune`, it is kept outside the module tree so checkpoints only hold `output_proj`.
    Empty or missing descriptions get an all-zero mask, hence zero embeddings.
    """
    MODELS = ["t5-small", "t5-base", "t5-large", "t5-3b", "t5-11b",
              "google/flan-t5-small", "google/flan-t5-base", "google/flan-t5-large",
              "google/flan-t5-xl", "google/flan-t5-xxl"]
    MODELS_DIMS = {
        "t5-small": 512, "t5-base": 768, "t5-large": 1024, "t5-3b": 1024, "t5-11b": 1024,
        "google/flan-t5-small": 512, "google/flan-t5-base": 768, "google/flan-t5-large": 1024,
        "google/flan-t5-xl": 2048, "google/flan-t5-xxl": 4096,
    }

    def __init__(self, name: str, output_dim: int, finetune: bool, device: tp.Union[torch.device, str] = 'cpu',
                 autocast_dtype: tp.Optional[str] = 'float32', word_dropout: float = 0.,
                 normalize_text: bool = False, seed: int = 1234):
        if not isinstance(name, str) or not name:
            raise ValueError(f"T5Conditioner needs a model name such as {self.MODELS[:3]}, got {name!r}.")
        tokenizer, t5 = self._load(name)
        # The encoder's own config gives the feature size, so any T5 checkpoint works.
        dim = int(getattr(t5.config, 'd_model', self.MODELS_DIMS.get(name, 0)))
        super().__init__(dim, output_dim)
        self.device = device
        self.name = name
        self.finetune = finetune
        self.word_dropout = word_dropout
        # Word dropout draws from its own generator: global RNG state never changes results.
        self.rng = torch.Generator()
        self.rng.manual_seed(seed)
        self.autocast_dtype = autocast_dtype_for(autocast_dtype, device)
        self.t5_tokenizer = tokenizer
        t5 = t5.train(mode=finetune)
        if finetune:
            self.t5 = t5
        else:
            # Bypass nn.Module registration so the frozen T5 stays out of state_dict().
            self.__dict__['t5'] = t5.to(device)
        self.normalize_text = normalize_text
        if normalize_text:
            self.text_normalizer = WhiteSpaceTokenizer(1, lemma=True, stopwords=True)

    @staticmethod
    def _load(name: str) -> tp.Tuple[tp.Any, nn.Module]:
        from transformers import T5EncoderModel, T5Tokenizer
        from transformers.utils import logging as hf_logging
        previous = logging.root.manager.disable
        bar_enabled = hf_logging.is_progress_bar_enabled()
        # Loading chatter is noise for users of a conditioner; both switches are restored below.
        logging.disable(logging.ERROR)
        hf_logging.disable_progress_bar()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tokenizer = T5Tokenizer.from_pretrained(name)
                t5 = T5EncoderModel.from_pretrained(name)
        except (OSError, ValueError, RuntimeError) as exc:
            raise RuntimeError(
                f"Could not load the T5 model '{name}' with transformers: {exc}. Download it once with "
                f"network access (e.g. `hf download {name}`), or point HF_HUB_CACHE at a cache "
                "that holds it when running offline (HF_HUB_OFFLINE=1).") from exc
        finally:
            logging.disable(previous)
            if bar_enabled:
                hf_logging.enable_progress_bar()
        return tokenizer, t5

    def _apply_word_dropout(self, entries: tp.List[str]) -> tp.List[str]:
        out = []
        for entry in entries:
            words = entry.split(" ")
            keep = torch.rand(len(words), generator=self.rng) >= self.word_dropout
            out.append(" ".join(w for w, k in zip(words, keep.tolist()) if k))
        return out

    def tokenize(self, x: tp.List[tp.Optional[str]]) -> tp.Dict[str, torch.Tensor]:
        entries: tp.List[str] = [xi if xi is not None else "" for xi in x]
        if self.normalize_text:
            _, _, entries = self.text_normalizer(entries, return_text=True)
        if self.word_dropout > 0. and self.training:
            entries = self._apply_word_dropout(entries)
        empty_idx = torch.LongTensor([i for i, xi in enumerate(entries) if xi == ""])
        inputs = self._tokenize_within_limit(entries)
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ('input_ids', 'attention_mask')}
        mask = inputs['attention_mask']
        mask[empty_idx, :] = 0  # absent descriptions must not be attended to
        return inputs

    def _tokenize_within_limit(self, entries: tp.List[str]) -> tp.Dict[str, torch.Tensor]:
        """Tokenize, cutting descriptions longer than the tokenizer's limit (512 tokens for T5),
        with one warning naming them (instead of transformers' "indexing errors" message).

        AudioCraft passes longer descriptions whole; T5 was trained on at most 512 tokens."""
        limit = getattr(self.t5_tokenizer, 'model_max_length', None)
        if not isinstance(limit, int) or limit > 1_000_000:  # transformers' "no limit" sentinel
            return self.t5_tokenizer(entries, return_tensors='pt', padding=True)
        # One token over the limit tells which descriptions were cut, without a second full pass.
        inputs = self.t5_tokenizer(entries, return_tensors='pt', padding=True, truncation=True,
                                   max_length=limit + 1)
        too_long = [i for i, n in enumerate(inputs['attention_mask'].sum(dim=-1).tolist()) if n > limit]
        if not too_long:
            return inputs
        logger.warning("Description(s) %s exceed the %d tokens the text encoder %r takes: they are truncated "
                       "to their first %d tokens. Shorten them to keep all of their text.",
                       too_long, limit, self.name, limit)
        return self.t5_tokenizer(entries, return_tensors='pt', padding=True, truncation=True, max_length=limit)

    def forward(self, inputs: tp.Dict[str, torch.Tensor]) -> ConditionType:
        mask = inputs['attention_mask']
        # A frozen T5 is not moved by `.to()` on the parent: feed it on its own device.
        t5_device = next(self.t5.parameters()).device
        t5_inputs = {k: v.to(t5_device) for k, v in inputs.items()}
        with torch.set_grad_enabled(self.finetune), torch.autocast(
                device_type=t5_device.type, dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None):
            embeds = self.t5(**t5_inputs).last_hidden_state
        mask = mask.to(self.output_proj.weight.device)
        embeds = self.output_proj(embeds.to(self.output_proj.weight))
        embeds = embeds * mask.unsqueeze(-1)
        return embeds, mask
