"""PyTorch (CPU or CUDA), with fused ``addmm`` fast paths."""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat
import numpy as np

from .._typing import Array, Device, Namespace
from ..errors import BackendUnavailableError, DeviceSpecError, install_command
from ._base import Backend

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """PyTorch's fused BLAS calls: one ``addmm`` instead of a matmul plus an add.

    Each saves an operator dispatch (~4 us on the CPU, a kernel launch on a
    GPU) and a temporary; the weight update accumulates straight into the
    weights (BLAS ``beta=1``).
    """

    name = "torch"
    library = "torch"
    namespace_module = "array_api_compat.torch"
    install_hint = install_command("torch")
    casts_numpy_input_on_host = True  # torch has no uint16/uint32/uint64 tensors

    def __init__(self, *args: Any) -> None:
        self._torch = importlib.import_module("torch")
        self._addmm = self._torch.addmm
        self._index_select = self._torch.index_select
        self._threshold_backward = self._torch.ops.aten.threshold_backward
        super().__init__(*args)

    @classmethod
    def is_namespace(cls, ns: Namespace) -> bool:
        return array_api_compat.is_torch_namespace(ns)

    @classmethod
    def resolve_device(cls, device: Any) -> Device:
        torch = importlib.import_module("torch")
        dev = _parse_device(torch, device)
        if dev.type == "cuda":
            dev = _visible_cuda_device(torch, dev)
        return dev

    @property
    def shares_host_memory(self) -> bool:
        # CPU tensors can view a NumPy buffer (torch.from_dlpack); CUDA ones cannot.
        return self.device.type == "cpu"

    def to_numpy(self, x: Array) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            x = x.detach().cpu().numpy()
        return np.array(x, copy=True)

    def synchronize(self) -> None:
        if getattr(self.device, "type", "cpu") == "cuda":
            self._torch.cuda.synchronize(self.device)

    # -- fast paths (twins: the Backend methods of the same names) ---------------
    def take_rows(self, x: Array, idx: Array) -> Array:
        # array-api-compat's take costs ~6 us more per call than index_select
        # (twice per training step); same rows, same result.
        return self._index_select(x, 0, idx)

    def relu(self, x: Array) -> Array:
        # array-api-compat's maximum turns the scalar 0.0 into a tensor on every call
        return self._torch.relu(x)

    def relu_backward(self, x: Array, grad: Array) -> Array:
        # torch's own ReLU backward kernel: one dispatch (3 us on the CPU) where
        # comparing and multiplying take two (8.6 us); grad where x > 0, else 0.
        # (Where x is NaN it passes grad on instead of 0; the forward pass made
        # that row's loss NaN already, which the divergence guard reports.)
        return self._threshold_backward(grad, x, 0)

    def affine(self, x: Array, w: Array, b: Array) -> Array:
        return self._addmm(b, x, w)

    def sub_matmul_(self, w: Array, a: Array, b: Array) -> Array:
        return w.addmm_(a, b, alpha=-1)

    def softmax_crossentropy(self, logits: Array, onehot: Array) -> tuple[Array, Array]:
        # torch's fused log_softmax: five dispatches where the portable kernel
        # takes fourteen (13.8 against 27.7 us a step at batch 32 on the CPU).
        log_p = self._torch.log_softmax(logits, 1)
        loss_sum = -(log_p * onehot).sum()
        return loss_sum, (log_p.exp_() - onehot).mul_(1.0 / logits.shape[0])

    def dense_sgd_step_(self, w: Array, b: Array, x: Array, grad_out: Array,
                        lr: Any) -> tuple[Array, Array]:
        # The learning rate rides on addmm_'s alpha and sub_'s alpha: two
        # dispatches fewer per layer than scaling the gradient first.
        if not isinstance(lr, (int, float)):
            return super().dense_sgd_step_(w, b, x, grad_out, lr)
        return w.addmm_(x.T, grad_out, alpha=-lr), b.sub_(grad_out.sum(0), alpha=lr)

    def momentum_step_(self, param: Array, velocity: Array, grad: Array, *, lr: Any,
                       momentum: float, nesterov: bool, decay: Any = None) -> tuple[Array, Array]:
        # In place, with torch's fused scalar multiply-adds (add_(x, alpha=a)):
        # six passes and no temporaries where the twin makes ten.
        if not isinstance(lr, (int, float)):
            return super().momentum_step_(param, velocity, grad, lr=lr, momentum=momentum,
                                          nesterov=nesterov, decay=decay)
        velocity.mul_(momentum)
        if isinstance(decay, (int, float)):
            velocity.add_(param, alpha=-lr * decay)
        elif decay is not None:  # a 0-d tensor (the batch's total sample weight)
            velocity.sub_(param * (decay * lr))
        velocity.add_(grad, alpha=-lr)  # momentum * v - lr * (grad + decay * param)
        if not nesterov:
            return param.add_(velocity), velocity
        if decay is not None:
            param.mul_(1.0 - lr * decay)
        return param.add_(grad, alpha=-lr).add_(velocity, alpha=momentum), velocity

    def adam_step_(self, param: Array, exp_avg: Array, exp_avg_sq: Array, grad: Array, *,
                   step_size: Any, beta1: float, beta2: float, eps: float,
                   decay: Any = None) -> tuple[Array, Array, Array]:
        # In place with torch's fused addcmul_/addcdiv_: one temporary (the denominator).
        if not isinstance(step_size, (int, float)):
            return super().adam_step_(param, exp_avg, exp_avg_sq, grad, step_size=step_size,
                                      beta1=beta1, beta2=beta2, eps=eps, decay=decay)
        g = grad if decay is None else grad + param * decay
        exp_avg.mul_(beta1).add_(g, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps)
        return param.addcdiv_(exp_avg, denom, value=-step_size), exp_avg, exp_avg_sq


def _parse_device(torch: Any, device: Any) -> Any:
    """``None`` -> cpu, an int -> that CUDA device, else whatever torch.device accepts."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, int):
        return torch.device("cuda", device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceSpecError(f"cannot interpret device={device!r} for torch: {exc}") from exc


def _visible_cuda_device(torch: Any, dev: Any) -> Any:
    """``dev`` with an explicit index, or why torch cannot use it here."""
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"torch device {str(dev)!r} requested but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
            "Use device='cpu' or install a CUDA build of torch on a machine with a GPU."
        )
    index = 0 if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise BackendUnavailableError(
            f"torch device {str(dev)!r} requested but only "
            f"{torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return torch.device("cuda", index)
