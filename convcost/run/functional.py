"""Functional calls between leaf modules as operations: what ``F.linear``, ``@``, ``einsum``,
``F.scaled_dot_product_attention``, ``F.layer_norm``, ``F.interpolate``, residual adds and SE multiplies did.

The tracer (:mod:`convcost.run.trace`) sees every torch function a container's ``forward`` calls; each one with a
formula becomes an op here. A parameter of the model passed to one (``F.linear(x, self.weight)``, LayerScale's
``x * self.gamma``) is that op's params, counted at its first use.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal, cast

import torch

from convcost.cost.ops import ActOp, AdaptivePoolOp, AddOp, ConvOp, LinearOp, NormOp, Op, Shape
from convcost.cost.ops_nn import (
    AttentionOp,
    ConvTransposeOp,
    ElementwiseOp,
    EmbeddingOp,
    FeatureNormOp,
    MatmulOp,
    MulOp,
    ParameterUseOp,
    ReduceOp,
    UpsampleOp,
    upsample_size,
)

ADDS = {"add", "add_", "__add__", "__iadd__", "__radd__"}
MULS = {"mul", "mul_", "__mul__", "__imul__", "__rmul__", "multiply"}
ACTIVATIONS = {"relu", "relu_", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu", "leaky_relu",
               "softmax", "log_softmax", "mish", "elu"}  # fmt: skip
MATMULS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "addmm", "addmm_", "baddbmm", "baddbmm_",
           "addbmm", "addmv"}  # fmt: skip
CONVS = {"conv1d", "conv2d", "conv3d"}
CONV_TRANSPOSES = {"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
# reductions and scans: one other op per input element (a tuple output, max(dim)'s values and indices: its first)
REDUCTIONS = {"mean", "sum", "amax", "amin", "prod", "logsumexp", "var", "std", "nansum", "nanmean", "max", "min",
              "argmax", "argmin", "median", "nanmedian", "mode", "norm", "all", "any", "count_nonzero", "topk", "sort",
              "argsort", "kthvalue", "cumsum", "cumprod", "cummax", "cummin", "logcumsumexp", "var_mean", "std_mean",
              "aminmax", "vector_norm", "linalg_vector_norm"}  # fmt: skip
# arithmetic without MACs: one other op per output element (a multiply or add by a number included)
ELEMENTWISE = {
    "add", "add_", "__add__", "__iadd__", "__radd__", "mul", "mul_", "__mul__", "__imul__", "__rmul__", "multiply",
    "sub", "sub_", "__sub__", "__isub__", "__rsub__", "rsub", "subtract", "div", "div_", "__truediv__",
    "__itruediv__", "__rtruediv__", "true_divide", "divide", "floor_divide", "__floordiv__", "neg", "__neg__",
    "negative", "exp", "exp_", "exp2", "expm1", "log", "log_", "log2", "log10", "log1p", "sqrt", "sqrt_", "rsqrt",
    "rsqrt_", "pow", "pow_", "__pow__", "__rpow__", "__ipow__", "square", "abs", "abs_", "sign", "clamp", "clamp_",
    "clip", "clip_", "clamp_min", "clamp_max", "maximum", "minimum", "fmax", "fmin", "where", "masked_fill",
    "masked_fill_", "addcmul", "addcmul_", "addcdiv", "addcdiv_", "lerp", "lerp_", "erf", "erfc", "erfinv", "sin",
    "cos", "tan", "atan", "atan2", "sinh", "cosh", "asin", "acos", "reciprocal", "reciprocal_", "floor", "ceil",
    "round", "trunc", "frac", "fmod", "remainder", "__mod__", "eq", "ne", "lt", "le", "gt", "ge", "__eq__",
    "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "logical_and", "logical_or", "logical_not", "logical_xor",
    "__and__", "__or__", "__xor__", "__invert__", "bitwise_and", "bitwise_or", "bitwise_not", "isnan", "isinf",
    "isfinite", "nan_to_num", "softplus", "softsign", "tanhshrink", "logsigmoid", "hardtanh", "hardtanh_",
    "threshold", "glu", "celu", "selu", "rrelu", "relu6_", "silu_", "gelu_", "sigmoid_", "tanh_", "hardswish_",
    "hardsigmoid_", "mish_", "elu_", "leaky_relu_", "prelu", "normalize", "hypot", "xlogy", "copysign", "heaviside",
}  # fmt: skip
NORMS = {"layer_norm", "group_norm", "instance_norm", "rms_norm", "batch_norm"}
ELEMENTWISE_ONLY = ELEMENTWISE - {*ADDS, *MULS}  # adds and multiplies that are not ops of their own: see elementwise()

# functional calls with MACs that have no formula here: listed as not counted (the counters show what they cost)
# (and a call of the others with no formula here, an einsum with an ellipsis or a matmul given as keywords)
UNCOUNTED = {"bilinear", "tensordot", "multi_head_attention_forward", "einsum", "linear", "embedding",
             "scaled_dot_product_attention", *MATMULS, *CONVS, *CONV_TRANSPOSES}  # fmt: skip

FeatureNorm = Literal["layernorm", "groupnorm", "instancenorm", "rmsnorm"]
Consume = Callable[[Any], int]  # a tensor → its elements if it is a parameter of the model not counted yet, else 0
Label = Callable[[str], str]  # an op's short name → its unique label under the calling container


def functional_op(function: str, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor,
                  label: Label, consume: Consume) -> Op | None:  # fmt: skip
    """The op a functional call performed, or None when it is not one (a view, a scalar add, a reduction...)."""
    first = args[0] if args and isinstance(args[0], torch.Tensor) else None
    shape = tuple(output.shape)
    input_shape: Shape = tuple(first.shape) if first is not None else ()

    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    if function in ADDS or function in MULS:
        other = arg(1, "other")
        if first is None or not isinstance(other, torch.Tensor) or first.dim() == 0 or other.dim() == 0:
            return None  # scalars (a.sum() + b.sum()) or a scale by a number: not an op between activations
        if function in ADDS:  # a residual add, or one broadcast (token + position embeddings, a parameter added)
            fits = shape in (first.shape, other.shape)  # the output the shape of one of them
            return AddOp(label("add"), shape, consume(first) + consume(other)) if fits else None
        params = consume(first) + consume(other)
        if first.shape != output.shape:  # the operand of the output's shape first
            first, other = other, first
        return MulOp(label("mul"), tuple(first.shape), tuple(other.shape), params)
    if function.startswith("adaptive_") and function[-2].isdigit() and first is not None:
        dims = int(function[-2])
        mode: Literal["max", "avg"] = "max" if "max" in function else "avg"
        return AdaptivePoolOp(label(function), input_shape, mode, shape[-dims:])
    if function in ACTIVATIONS and first is not None:
        return ActOp(label(function.rstrip("_")), input_shape, function.rstrip("_"))
    if function in REDUCTIONS and first is not None and first.dim() > 0:
        return ReduceOp(label(function), input_shape, function, shape)
    if function in ELEMENTWISE_ONLY and first is not None:
        return ElementwiseOp(label(function.strip("_")), input_shape, function.strip("_"), shape)
    if function in MATMULS:
        return _matmul(function, args, kwargs, label, consume)
    if function == "einsum":
        return _einsum(args, label, consume)
    if function == "linear" and first is not None:
        weight, bias = arg(1, "weight"), arg(2, "bias")
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            return None
        linear = _params(consume, weight, bias)
        return LinearOp(label("linear"), input_shape, weight.shape[1], weight.shape[0], bias is not None, linear)
    if function == "scaled_dot_product_attention":
        query, key, value = arg(0, "query"), arg(1, "key"), arg(2, "value")
        if all(isinstance(tensor, torch.Tensor) for tensor in (query, key, value)):
            return AttentionOp(label(function), tuple(query.shape), tuple(key.shape), tuple(value.shape))
    if function in CONVS and first is not None:
        return _conv(function, first, arg, label, consume)
    if function in CONV_TRANSPOSES and first is not None:
        weight, bias = arg(1, "weight"), arg(2, "bias")
        dims = int(function[-2])
        transposed = _params(consume, weight, bias)
        groups = int(arg(6, "groups", 1))
        return ConvTransposeOp(
            label(function), input_shape, weight.shape[0], weight.shape[1] * groups, tuple(weight.shape[2:]),
            _tuple(arg(3, "stride", 1), dims), _tuple(arg(4, "padding", 0), dims),
            _tuple(arg(5, "output_padding", 0), dims), _tuple(arg(7, "dilation", 1), dims), groups,
            bias is not None, transposed,
        )  # fmt: skip
    if function in NORMS and first is not None:
        return _norm(function, args, kwargs, label, consume)
    if function == "interpolate" and first is not None:
        size = upsample_size(input_shape, arg(1, "size"), arg(2, "scale_factor"))
        return UpsampleOp(label("interpolate"), input_shape, str(arg(3, "mode", "nearest")), size)
    if function == "embedding" and first is not None:
        weight = arg(1, "weight")
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return EmbeddingOp(label("embedding"), input_shape, weight.shape[0], weight.shape[1], consume(weight))
    return None


def operands(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> list[Any]:
    """A call's arguments, a list's or tuple's items included (torch.cat's tensors)."""
    given = [*args, *kwargs.values()]
    return given + [item for value in given if isinstance(value, (list, tuple)) for item in value]


def parameter_use(function: str, args: tuple[Any, ...], kwargs: dict[str, Any], output: torch.Tensor, label: Label,
                   consume: Consume) -> Op | None:  # fmt: skip
    """A call that reads a parameter of the model its own op (if any) did not count (``cls_token.expand``,
    ``torch.cat`` of it, ``table[index]``, ``torch.sigmoid(self.gate)``): the parameter's op, with no cost."""
    given = operands(args, kwargs)
    parameters = [item for item in given if isinstance(item, torch.nn.Parameter)]
    used = sum(consume(item) for item in parameters)
    if not used:
        return None
    first = next((item for item in given if isinstance(item, torch.Tensor)), None)
    first_shape = tuple(first.shape) if first is not None else ()
    return ParameterUseOp(label(function.strip("_")), first_shape, function.strip("_"), used, tuple(output.shape))


def _params(consume: Consume, *tensors: Any) -> int | None:
    """None (the formula counts them from the shapes) where every weight given is a parameter used here first;
    else the parameters' elements used first here (0 for a weight computed from activations, or one reused)."""
    given = [tensor for tensor in tensors if isinstance(tensor, torch.Tensor)]
    used = sum(consume(tensor) for tensor in given)
    parameters = given and all(isinstance(tensor, torch.nn.Parameter) for tensor in given)
    return None if parameters and used == sum(tensor.numel() for tensor in given) else used


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    return (value,) * dims if isinstance(value, int) else tuple(int(item) for item in value)


def _numel(tensor: Any) -> int:
    return tensor.numel() if isinstance(tensor, torch.Tensor) else 0


def _matmul(function: str, args: tuple[Any, ...], kwargs: dict[str, Any], label: Label, consume: Consume) -> Op | None:
    tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
    added = function.startswith(("addm", "baddbmm", "addbmm"))
    if added:  # addmm(input, mat1, mat2): the product is of the last two
        tensors = tensors[1:3]
        if "mat1" in kwargs or "batch1" in kwargs or "vec" in kwargs:
            return None
    if len(tensors) != 2 or tensors[0].dim() == 0 or tensors[1].dim() == 0:
        return None
    left, right = tensors if function != "__rmatmul__" else tensors[::-1]
    params = sum(consume(tensor) for tensor in (*tensors, *args[:1]) if isinstance(tensor, torch.Tensor))
    return MatmulOp(label(function.strip("_")), tuple(left.shape), tuple(right.shape), "", added,
                    function == "addbmm", params, function.strip("_"))  # fmt: skip


def _einsum(args: tuple[Any, ...], label: Label, consume: Consume) -> Op | None:
    if not args or not isinstance(args[0], str):
        return None
    operands = list(args[1][0:]) if len(args) == 2 and isinstance(args[1], (list, tuple)) else list(args[1:])
    equation = args[0].replace(" ", "")
    if len(operands) != 2 or "." in equation or not all(isinstance(item, torch.Tensor) for item in operands):
        return None  # one operand, three, or an ellipsis: no formula (listed as not counted)
    if "->" not in equation:  # implicit output: the letters used once, in alphabetical order
        letters = equation.replace(",", "")
        equation += "->" + "".join(sorted(letter for letter in set(letters) if letters.count(letter) == 1))
    left, right = operands
    params = consume(left) + consume(right)
    return MatmulOp(label("einsum"), tuple(left.shape), tuple(right.shape), equation, params=params, function="einsum")


def _conv(function: str, first: torch.Tensor, arg: Callable[..., Any], label: Label, consume: Consume) -> Op | None:
    weight, bias = arg(1, "weight"), arg(2, "bias")
    dims = int(function[-2])
    if not isinstance(weight, torch.Tensor) or first.dim() != dims + 2:
        return None
    groups = int(arg(6, "groups", 1))
    padding = arg(4, "padding", 0)
    return ConvOp(
        name=label(function),
        input_shape=tuple(first.shape),
        cin=first.shape[1],
        cout=weight.shape[0],
        kernel=tuple(weight.shape[2:]),
        stride=_tuple(arg(3, "stride", 1), dims),
        padding="same" if padding == "same" else _tuple(0 if padding == "valid" else padding, dims),
        dilation=_tuple(arg(5, "dilation", 1), dims),
        groups=groups,
        bias=bias is not None,
        stored_params=_params(consume, weight, bias),
    )


def _norm(function: str, args: tuple[Any, ...], kwargs: dict[str, Any], label: Label, consume: Consume) -> Op:
    first: torch.Tensor = args[0]
    positions = {"layer_norm": (2, 3), "group_norm": (2, 3), "instance_norm": (3, 4), "rms_norm": (2, -1),
                 "batch_norm": (3, 4)}[function]  # fmt: skip
    weight = args[positions[0]] if len(args) > positions[0] else kwargs.get("weight")
    bias = args[positions[1]] if positions[1] > 0 and len(args) > positions[1] else kwargs.get("bias")
    consume(weight)  # nothing for a weight that is not a tensor (None)
    consume(bias)
    shape: Shape = tuple(first.shape)
    if function == "batch_norm":
        return NormOp(label("batch_norm"), shape, first.shape[1], isinstance(weight, torch.Tensor))
    name = cast(FeatureNorm, function.replace("_", ""))  # layer_norm: layernorm
    return FeatureNormOp(label(function), shape, name, _numel(weight), _numel(bias))


@contextlib.contextmanager
def without_fast_paths() -> Iterator[None]:
    """Turn off torch's fused inference paths while counting.

    In ``eval()`` under ``no_grad``, ``nn.MultiheadAttention`` and the transformer layers call one fused kernel
    (``_native_multi_head_attention``) for the whole block; with the fast path off they run their projections and
    attention one call at a time, which the tracer sees module by module. The counters still cannot count
    ``scaled_dot_product_attention`` on the CPU: that op's figures are ours alone, and the op says which counters
    did not see it. Torch's warning that an even kernel with padding 'same' copies its input is silenced here.
    """
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Using padding='same'")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)
