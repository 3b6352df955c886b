"""Convolutions: AudioCraft padding rules, weight-norm key names, causal streaming == whole signal."""
import copy
import math

import pytest
import torch
from torch import nn

from audiocraft.modules.conv import (
    NormConv1d, NormConv2d, NormConvTranspose1d, NormConvTranspose2d, StreamableConv1d,
    StreamableConvTranspose1d, get_extra_padding_for_conv1d, pad1d, pad_for_conv1d, unpad1d,
)
from audiocraft.modules.lstm import StreamableLSTM


def stream(module, x, sizes):
    """Feed `x` chunk by chunk (sizes cycle), then flush; return the concatenated output."""
    outs, i, k = [], 0, 0
    with module.streaming():
        while i < x.shape[-1]:
            size = sizes[k % len(sizes)]
            outs.append(module(x[..., i:i + size]))
            i += size
            k += 1
        last = module.flush()
        if last is not None:
            outs.append(last)
    return torch.cat(outs, dim=-1)


def test_pad1d_reflect_small_input():
    x = torch.arange(1., 3.).view(1, 1, 2)
    y = pad1d(x, (3, 1), mode='reflect')
    # zero-pad to 4, reflect, then drop the temporary right zeros
    assert torch.equal(y, torch.tensor([[[0., 0., 2., 1., 2., 0.]]]))
    assert torch.equal(pad1d(x, (1, 2)), torch.tensor([[[0., 1., 2., 0., 0.]]]))
    assert torch.equal(unpad1d(y, (3, 1)), x)


def test_extra_padding():
    x = torch.zeros(1, 1, 10)
    assert get_extra_padding_for_conv1d(x, kernel_size=8, stride=4, padding_total=4) == 2
    assert get_extra_padding_for_conv1d(torch.zeros(1, 1, 12), 8, 4, 4) == 0
    assert pad_for_conv1d(x, 8, 4, 4).shape[-1] == 12


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kernel_size,stride", [(8, 4), (7, 1), (3, 1), (10, 5)])
def test_conv_output_length(causal, kernel_size, stride):
    conv = StreamableConv1d(2, 3, kernel_size, stride=stride, causal=causal)
    for length in [1, 17, 40]:
        y = conv(torch.randn(2, 2, length))
        assert y.shape == (2, 3, math.ceil(length / stride))
    convtr = StreamableConvTranspose1d(3, 2, kernel_size, stride=stride, causal=causal)
    assert convtr(torch.randn(2, 3, 9)).shape == (2, 2, 9 * stride)


def test_non_causal_padding_split_matches_manual():
    torch.manual_seed(0)
    conv = StreamableConv1d(1, 1, 8, stride=4, pad_mode='constant')
    x = torch.randn(1, 1, 30)
    # padding_total = 4: right = 2, left = 2; extra = 2 so that the last window is full.
    manual = nn.functional.conv1d(nn.functional.pad(x, (2, 4)), conv.conv.conv.weight, conv.conv.conv.bias, stride=4)
    assert torch.allclose(conv(x), manual)
    convtr = StreamableConvTranspose1d(1, 1, 10, stride=5)
    z = torch.randn(1, 1, 6)
    full = nn.functional.conv_transpose1d(z, convtr.convtr.convtr.weight, convtr.convtr.convtr.bias, stride=5)
    # padding_total = 5: right = 2, left = 3.
    assert torch.allclose(convtr(z), full[..., 3:-2])


def test_weight_norm_keys_and_deepcopy():
    conv = StreamableConv1d(4, 8, 3, norm='weight_norm')
    assert sorted(conv.state_dict()) == ['conv.conv.bias', 'conv.conv.weight_g', 'conv.conv.weight_v']
    assert conv.state_dict()['conv.conv.weight_g'].shape == (8, 1, 1)
    convtr = StreamableConvTranspose1d(8, 4, 8, stride=4, norm='weight_norm')
    assert convtr.state_dict()['convtr.convtr.weight_g'].shape == (8, 1, 1)
    convtr(torch.randn(1, 8, 5)).sum().backward()
    assert convtr.convtr.convtr.weight_v.grad is not None
    clone = copy.deepcopy(convtr)  # would fail with a non-leaf `weight` attribute
    x = torch.randn(1, 8, 5)
    assert torch.allclose(clone(x), convtr(x))
    torch.nn.utils.remove_weight_norm(clone.convtr.convtr)
    assert torch.allclose(clone(x), convtr(x), atol=1e-6)


def test_other_norms():
    conv = NormConv1d(2, 4, 3, norm='time_group_norm')
    assert isinstance(conv.norm, nn.GroupNorm)
    assert conv(torch.randn(2, 2, 10)).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="causal"):
        NormConv1d(2, 4, 3, causal=True, norm='time_group_norm')
    with pytest.raises(ValueError, match="Unknown norm"):
        NormConv1d(2, 4, 3, norm='batch_norm')
    assert NormConv2d(1, 2, (3, 3), norm='spectral_norm')(torch.randn(1, 1, 5, 5)).shape == (1, 2, 3, 3)
    assert NormConvTranspose2d(2, 1, (2, 2), stride=2, norm='weight_norm')(torch.randn(1, 2, 3, 3)).shape \
        == (1, 1, 6, 6)
    assert NormConvTranspose1d(2, 1, 4, stride=2)(torch.randn(1, 2, 3)).shape == (1, 1, 8)
    with pytest.raises(ValueError, match="trim_right_ratio"):
        StreamableConvTranspose1d(2, 2, 4, stride=2, causal=False, trim_right_ratio=0.5)


def test_bad_inputs():
    conv = StreamableConv1d(2, 3, 3)
    with pytest.raises(ValueError, match="channels"):
        conv(torch.randn(1, 3, 10))
    with pytest.raises(ValueError, match=r"\[B, C, T\]"):
        conv(torch.randn(2, 10))
    with pytest.raises(RuntimeError, match="causal"):
        with conv.streaming():
            conv(torch.randn(1, 2, 10))


@pytest.mark.parametrize("pad_mode", ['constant', 'reflect'])
@pytest.mark.parametrize("kernel_size,stride,dilation", [(8, 4, 1), (3, 1, 2), (7, 1, 1), (4, 4, 1), (5, 2, 1)])
def test_causal_conv_streaming_equals_whole(pad_mode, kernel_size, stride, dilation):
    torch.manual_seed(1)
    conv = StreamableConv1d(2, 3, kernel_size, stride=stride, dilation=dilation, causal=True,
                            pad_mode=pad_mode, norm='weight_norm')
    for length, sizes in [(37, [1, 2, 5, 3]), (40, [8]), (3, [1]), (1, [1]), (23, [11, 1])]:
        x = torch.randn(2, 2, length)
        whole = conv(x)
        streamed = stream(conv, x, sizes)
        assert streamed.shape == whole.shape, (length, sizes)
        assert torch.allclose(streamed, whole, atol=1e-6), (length, sizes)


@pytest.mark.parametrize("trim_right_ratio", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("kernel_size,stride", [(8, 4), (16, 8), (4, 4), (3, 1)])
def test_causal_convtr_streaming_equals_whole(trim_right_ratio, kernel_size, stride):
    torch.manual_seed(2)
    convtr = StreamableConvTranspose1d(3, 2, kernel_size, stride=stride, causal=True,
                                       trim_right_ratio=trim_right_ratio, norm='weight_norm')
    z = torch.randn(2, 3, 9)
    whole = convtr(z)
    for sizes in [[1], [1, 3, 2], [9]]:
        streamed = stream(convtr, z, sizes)
        assert streamed.shape == whole.shape
        assert torch.allclose(streamed, whole, atol=1e-6)


def test_streaming_state_is_cleared_and_restorable():
    conv = StreamableConv1d(1, 1, 4, stride=2, causal=True)
    x = torch.randn(1, 1, 20)
    with conv.streaming():
        first = conv(x[..., :7])
        state = conv.get_streaming_state()
        assert 'buffer' in state
        a = conv(x[..., 7:])
        conv.set_streaming_state(state)
        b = conv(x[..., 7:])
        assert torch.equal(a, b)
    assert conv.get_streaming_state() == {}
    assert torch.allclose(torch.cat([first, a], -1), conv(x))


def test_lstm_streaming_and_keys():
    torch.manual_seed(3)
    lstm = StreamableLSTM(6, num_layers=2)
    assert 'lstm.weight_ih_l1' in lstm.state_dict()
    x = torch.randn(2, 6, 13)
    whole = lstm(x)
    assert whole.shape == x.shape
    assert torch.allclose(stream(lstm, x, [4, 1, 3]), whole, atol=1e-6)
    no_skip = StreamableLSTM(6, num_layers=1, skip=False)
    assert not torch.allclose(no_skip(x), no_skip.lstm(x.permute(2, 0, 1))[0].permute(1, 2, 0) + x)
    with pytest.raises(ValueError):
        lstm(torch.randn(2, 5, 3))
