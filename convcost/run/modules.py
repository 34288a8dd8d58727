"""How each leaf module type becomes an operation of :mod:`convcost.cost.ops`, in a registry keyed by type.

A leaf type with no formula is "not counted", with its parameters, never a silent zero. A module whose operation
needs every input of its call (``nn.MultiheadAttention``: query, key and value) registers with
:func:`register_call`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from convcost.cost.ops import (
    ActOp,
    AdaptivePoolOp,
    ConvOp,
    FlattenOp,
    IdentityOp,
    LinearOp,
    NormOp,
    Op,
    PoolOp,
    Shape,
    UncountedOp,
)
from convcost.cost.ops_nn import (
    AttentionOp,
    ConvTransposeOp,
    EmbeddingOp,
    FeatureNormOp,
    RecurrentOp,
    UpsampleOp,
    upsample_size,
)

# this, _tuple and _numel are convcost.run.functional's too: importing one from the other adds an import floor
FeatureNorm = Literal["layernorm", "groupnorm", "instancenorm", "rmsnorm"]

# ---- leaf modules → operations ------------------------------------------------------------------------

FromModule = Callable[[str, Any, Shape], Op]
_FROM_MODULE: dict[type[nn.Module], FromModule] = {}


def register_module(*types: type[nn.Module]) -> Callable[[FromModule], FromModule]:
    """Register how a module type becomes an operation; registering a type twice is a programming error."""

    def decorate(function: FromModule) -> FromModule:
        for module_type in types:
            if module_type in _FROM_MODULE:
                raise RuntimeError(f"module type {module_type.__name__} is already registered")
            _FROM_MODULE[module_type] = function
        return function

    return decorate


def _lookup(module: nn.Module) -> FromModule | None:
    # the MRO, so a parametrized Conv2d (a subclass torch makes on the fly) is still a Conv2d
    return next((_FROM_MODULE[cls] for cls in type(module).__mro__ if cls in _FROM_MODULE), None)


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    return (value,) * dims if isinstance(value, int) else tuple(int(item) for item in value)


def _numel(tensor: Any) -> int:
    return tensor.numel() if isinstance(tensor, torch.Tensor) else 0


def _stored_params(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _parametrized(module: nn.Module) -> int | None:
    """The parameters a parametrized module (weight_norm...) stores, which its formula may not count; else None."""
    parametrizations = getattr(module, "parametrizations", None)
    return _stored_params(module) if parametrizations is not None and len(parametrizations) > 0 else None


@register_module(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(name: str, module: nn.Conv1d | nn.Conv2d | nn.Conv3d, shape: Shape) -> Op:
    dims = len(module.kernel_size)
    if len(shape) != dims + 2:
        return _uncounted(name, module, shape, f"unbatched {type(module).__name__}")
    padding = module.padding
    shared = False
    parametrizations = getattr(module, "parametrizations", None)
    if parametrizations is not None and "weight" in parametrizations:
        # a shared depthwise kernel stores one kernel per multiplier slot (see convcost.run.build.TiledKernel); other
        # parametrizations (weight_norm stores original0 and original1) are counted by what they store
        original = getattr(parametrizations["weight"], "original", None)
        shared = isinstance(original, torch.Tensor) and original.shape[0] != module.out_channels
    return ConvOp(
        name=name,
        input_shape=shape,
        cin=module.in_channels,
        cout=module.out_channels,
        kernel=_tuple(module.kernel_size, dims),
        stride=_tuple(module.stride, dims),
        padding="same" if padding == "same" else _tuple(0 if padding == "valid" else padding, dims),
        dilation=_tuple(module.dilation, dims),
        groups=module.groups,
        bias=module.bias is not None,
        shared=shared,
        stored_params=None if shared else _parametrized(module),
    )


@register_module(nn.Linear)
def _linear(name: str, module: nn.Linear, shape: Shape) -> Op:
    stored = _parametrized(module)
    return LinearOp(name, shape, module.in_features, module.out_features, module.bias is not None, stored)


@register_module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batchnorm(name: str, module: nn.BatchNorm2d, shape: Shape) -> Op:
    return NormOp(name, shape, module.num_features, module.affine)


_ACTIVATION_NAMES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.LeakyReLU: "leaky_relu",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.GELU: "gelu",
    nn.ELU: "elu",
    nn.Mish: "mish",
    nn.PReLU: "prelu",
    nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax",
}


@register_module(*_ACTIVATION_NAMES)
def _activation(name: str, module: nn.Module, shape: Shape) -> Op:
    function = next(value for cls, value in _ACTIVATION_NAMES.items() if isinstance(module, cls))
    return ActOp(name, shape, function, _stored_params(module))


@register_module(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def _pool(name: str, module: Any, shape: Shape) -> Op:
    registered = next(cls for cls in type(module).__mro__ if cls in _FROM_MODULE).__name__  # MaxPool2d...
    dims = int(registered[-2])
    mode: Literal["max", "avg"] = "max" if registered.startswith("Max") else "avg"
    sizes = (module.kernel_size, module.stride or module.kernel_size, module.padding, getattr(module, "dilation", 1))
    kernel, stride, padding, dilation = (_tuple(size, dims) for size in sizes)
    return PoolOp(name, shape, mode, kernel, stride, padding, dilation, bool(module.ceil_mode))


_ADAPTIVE = tuple(getattr(nn, f"Adaptive{mode}Pool{dims}d") for mode in ("Avg", "Max") for dims in (1, 2, 3))


@register_module(*_ADAPTIVE)
def _adaptive_pool(name: str, module: Any, shape: Shape) -> Op:
    dims = int(type(module).__name__[-2])
    mode: Literal["max", "avg"] = "max" if "Max" in type(module).__name__ else "avg"
    sizes = (module.output_size,) * dims if isinstance(module.output_size, int) else tuple(module.output_size)
    spatial = shape[-dims:]
    out = tuple(int(size) if size is not None else spatial[index] for index, size in enumerate(sizes))
    return AdaptivePoolOp(name, shape, mode, out)


@register_module(nn.Flatten)
def _flatten(name: str, module: nn.Flatten, shape: Shape) -> Op:
    return FlattenOp(name, shape, module.start_dim, module.end_dim)


@register_module(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
def _identity(name: str, module: nn.Module, shape: Shape) -> Op:
    return IdentityOp(name, shape)


@register_module(nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm)
def _feature_norm(name: str, module: nn.Module, shape: Shape) -> Op:
    names: dict[type, FeatureNorm] = {nn.LayerNorm: "layernorm", nn.GroupNorm: "groupnorm", nn.RMSNorm: "rmsnorm"}
    function: FeatureNorm = next((value for cls, value in names.items() if isinstance(module, cls)), "instancenorm")
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    return FeatureNormOp(name, shape, function, _numel(weight), _numel(bias))


@register_module(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose(name: str, module: Any, shape: Shape) -> Op:
    dims = len(module.kernel_size)
    if len(shape) != dims + 2:
        return _uncounted(name, module, shape, f"unbatched {type(module).__name__}")
    return ConvTransposeOp(
        name, shape, module.in_channels, module.out_channels, _tuple(module.kernel_size, dims),
        _tuple(module.stride, dims), _tuple(module.padding, dims), _tuple(module.output_padding, dims),
        _tuple(module.dilation, dims), module.groups, module.bias is not None,
        _parametrized(module),
    )  # fmt: skip


@register_module(nn.Upsample)
def _upsample(name: str, module: nn.Upsample, shape: Shape) -> Op:
    return UpsampleOp(name, shape, module.mode, upsample_size(shape, module.size, module.scale_factor))


@register_module(nn.Embedding)
def _embedding(name: str, module: nn.Embedding, shape: Shape) -> Op:
    return EmbeddingOp(name, shape, module.num_embeddings, module.embedding_dim)


_RECURRENT_MODES: dict[str, Literal["rnn", "gru", "lstm"]] = {"RNN_TANH": "rnn", "RNN_RELU": "rnn", "GRU": "gru",
                                                              "LSTM": "lstm"}  # fmt: skip


@register_module(nn.RNN, nn.GRU, nn.LSTM)
def _recurrent(name: str, module: nn.RNNBase, shape: Shape) -> Op:
    return RecurrentOp(
        name, shape, _RECURRENT_MODES[module.mode], module.input_size, module.hidden_size, module.num_layers,
        module.bidirectional, module.batch_first, module.bias, module.proj_size,
    )  # fmt: skip


@register_module(nn.RNNCell, nn.GRUCell, nn.LSTMCell)
def _cell(name: str, module: nn.RNNCellBase, shape: Shape) -> Op:
    mode: Literal["rnn", "gru", "lstm"] = (
        "lstm" if isinstance(module, nn.LSTMCell) else "gru" if isinstance(module, nn.GRUCell) else "rnn"
    )
    return RecurrentOp(name, shape, mode, module.input_size, module.hidden_size, bias=module.bias, cell=True)


# ---- modules whose operation needs every input of the call -------------------------------------------------

FromCall = Callable[[str, Any, tuple[Any, ...], dict[str, Any]], Op]
_FROM_CALL: dict[type[nn.Module], FromCall] = {}


def register_call(*types: type[nn.Module]) -> Callable[[FromCall], FromCall]:
    """Register a module type whose operation is built from all of its call's arguments (not only the first)."""

    def decorate(function: FromCall) -> FromCall:
        for module_type in types:
            if module_type in _FROM_CALL or module_type in _FROM_MODULE:
                raise RuntimeError(f"module type {module_type.__name__} is already registered")
            _FROM_CALL[module_type] = function
            _FROM_MODULE[module_type] = _needs_call
        return function

    return decorate


def _needs_call(name: str, module: nn.Module, shape: Shape) -> Op:
    raise RuntimeError(f"{type(module).__name__} is built from its call (from_call), not its first input")


def from_call(module: nn.Module) -> FromCall | None:
    return next((_FROM_CALL[cls] for cls in type(module).__mro__ if cls in _FROM_CALL), None)


@register_call(nn.MultiheadAttention)
def _attention(name: str, module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Op:
    names = ("query", "key", "value")
    tensors = [args[index] if index < len(args) else kwargs.get(key) for index, key in enumerate(names)]
    if not all(isinstance(tensor, torch.Tensor) for tensor in tensors):
        return _uncounted(name, module, (), "MultiheadAttention (query, key or value not a tensor)")
    query, key, value = (tuple(tensor.shape) for tensor in tensors if tensor is not None)
    need_weights = bool(args[4] if len(args) > 4 else kwargs.get("need_weights", True))
    return AttentionOp(
        name, query, key, value, module.embed_dim, module.num_heads, module.batch_first,
        module.in_proj_bias is not None, module.bias_k is not None, module.add_zero_attn, _stored_params(module),
        need_weights,
    )  # fmt: skip


def _uncounted(name: str, module: nn.Module | None, shape: Shape, type_name: str, output: Shape = ()) -> Op:
    return UncountedOp(name, shape, type_name, _stored_params(module) if module is not None else 0, output)
