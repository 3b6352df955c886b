"""One validation of generation parameters for every entry point.

`set_generation_params` of MusicGen, AudioGen and MAGNeT, the command line and the Gradio
demos all call `validate_generation_params`, so a value is accepted or refused with the same
message everywhere. What is allowed:

- `duration`, `extend_stride`: a finite number of seconds, > 0 (strings are refused).
- `temperature`: finite, >= 0; 0 means greedy decoding (argmax), as `use_sampling=False`.
- `top_k`: a whole number >= 0; 0 disables top-k.
- `top_p`: in [0, 1]; 0 disables nucleus sampling, and when > 0 it replaces top-k.
- `cfg_coef`, `max_cfg_coef`, `min_cfg_coef`: finite, >= 0. 1 is the conditional model alone,
  0 the unconditional model alone; above 1 pushes further towards the conditions. Negative
  values would push away from the text and are refused as almost surely a mistake.
- `decoding_steps` (MAGNeT): whole numbers >= 1.
- `use_sampling`, `two_step_cfg`: True or False.

Long generations are allowed but logged with an estimate of their cost (`long_generation_note`);
the command line asks for confirmation (or `--yes`) above `LONG_DURATION` seconds.
"""
import logging
import math
import numbers
import typing as tp

from ..utils.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

# Above this many seconds a generation is "long": logged with an estimate, confirmed in the CLI.
LONG_DURATION = 300.0

_NONNEGATIVE_FLOATS = {
    'temperature': "0 means greedy decoding",
    'cfg_coef': "1 is the conditional model alone, larger values follow the conditions more",
    'max_cfg_coef': "MAGNeT's guidance at the first decoding step",
    'min_cfg_coef': "MAGNeT's guidance at the last decoding step",
}
_POSITIVE_SECONDS = ('duration', 'extend_stride')
_BOOLS = ('use_sampling', 'two_step_cfg')


def _real(name: str, value: tp.Any, allowed: str) -> float:
    """`value` as a finite float, or an error saying what `name` allows."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{name} must be a number ({allowed}), got {type(value).__name__} {value!r}"
                                   + (f"; pass {name}={value.strip()} without quotes." if isinstance(value, str)
                                      else "."))
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{name} must be a finite number ({allowed}), got {value!r}.")
    return number


def validate_generation_params(**params: tp.Any) -> tp.Dict[str, tp.Any]:
    """Check the given generation parameters and return them normalised (floats, ints, bools).

    Parameters left out or None are not checked and not returned. Unknown names raise, so a
    typo never passes silently. Raises `InvalidArgumentError` (a ValueError) saying what is allowed.
    """
    out: tp.Dict[str, tp.Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in _POSITIVE_SECONDS:
            seconds = _real(name, value, "seconds, > 0")
            if seconds <= 0:
                raise InvalidArgumentError(f"{name} must be positive (a number of seconds > 0), got {value!r}.")
            out[name] = seconds
        elif name in _NONNEGATIVE_FLOATS:
            allowed = f">= 0; {_NONNEGATIVE_FLOATS[name]}"
            number = _real(name, value, allowed)
            if number < 0:
                raise InvalidArgumentError(f"{name} must be >= 0 ({_NONNEGATIVE_FLOATS[name]}), got {value!r}.")
            out[name] = number
        elif name == 'top_p':
            number = _real(name, value, "between 0 and 1; 0 disables nucleus sampling")
            if not 0 <= number <= 1:
                raise InvalidArgumentError(f"top_p must be between 0 and 1 (0 disables nucleus sampling), "
                                           f"got {value!r}.")
            out[name] = number
        elif name == 'top_k':
            out[name] = _whole(name, value, minimum=0, allowed="0 disables top-k")
        elif name == 'decoding_steps':
            if isinstance(value, (str, bytes)) or not isinstance(value, tp.Iterable):
                raise InvalidArgumentError(f"decoding_steps must be a list of whole numbers >= 1 (one per "
                                           f"codebook), got {value!r}.")
            out[name] = [_whole('decoding_steps: each step count', s, minimum=1, allowed="one per codebook")
                         for s in value]
        elif name in _BOOLS:
            if not isinstance(value, (bool, int)) or isinstance(value, int) and value not in (0, 1):
                raise InvalidArgumentError(f"{name} must be True or False, got {value!r}.")
            out[name] = bool(value)
        else:
            raise InvalidArgumentError(f"Unknown generation parameter {name!r}.")
    return out


def _whole(name: str, value: tp.Any, minimum: int, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not isinstance(value, numbers.Integral) and not float(value).is_integer():
        raise InvalidArgumentError(f"{name} must be a whole number >= {minimum} ({allowed}), got {value!r}.")
    number = int(value)
    if number < minimum:
        raise InvalidArgumentError(f"{name} must be a whole number >= {minimum} ({allowed}), got {value!r}.")
    return number


def generation_cost(duration: float, max_duration: float, extend_stride: tp.Optional[float],
                    frame_rate: float) -> tp.Tuple[int, int]:
    """(decoding steps, windows) to generate `duration` seconds: past `max_duration`, each extra
    window re-generates a whole `max_duration` window to advance by `extend_stride` seconds."""
    first = min(duration, max_duration)
    steps = int(first * frame_rate)
    windows = 1
    if duration > max_duration and extend_stride:
        extra = math.ceil((duration - max_duration) / extend_stride)
        windows += extra
        steps += extra * int(max_duration * frame_rate)
    return steps, windows


def long_generation_note(duration: float, max_duration: float, extend_stride: tp.Optional[float],
                         frame_rate: float) -> tp.Optional[str]:
    """A sentence estimating the cost of a generation longer than `LONG_DURATION`, else None."""
    if duration <= LONG_DURATION:
        return None
    steps, windows = generation_cost(duration, max_duration, extend_stride, frame_rate)
    reference, _ = generation_cost(min(max_duration, 30.0), max_duration, extend_stride, frame_rate)
    return (f"duration={duration:g} s is a long generation: about {steps:,} decoding steps in {windows:,} "
            f"window(s) of up to {max_duration:g} s, roughly {steps / max(reference, 1):,.0f} times the cost of a "
            f"{min(max_duration, 30.0):g} s sample.")
