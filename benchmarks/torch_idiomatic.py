"""The seed MLP as a PyTorch user would write it: nn + autograd + optim.SGD.

``nn.Sequential`` of ``nn.Linear``/``nn.ReLU``, ``nn.CrossEntropyLoss`` (mean
over the batch), ``optim.SGD(lr=0.1)``, the classic
``zero_grad / forward / loss / backward / step`` loop. The data stays on the
device as tensors and batches are gathered with ``X[idx]`` (what one writes
for an in-memory dataset; a ``DataLoader`` would only add per-sample Python
overhead).

For a like-with-like comparison the weights are copied from the host init
``xpnet.Sequential.mlp(sizes, seed=seed)`` uses (``nn.Linear`` stores the
transpose) and the batch order comes from the same ``rng.permutation``.
The summed loss stays on the device and is read once per epoch, as xpnet does.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TorchMLP", "host_init"]


def host_init(sizes, seed=0):
    """The float64 weight matrices (in, out) xpnet's ``Sequential.mlp`` draws."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return [rng.standard_normal((a, b)) * 0.01 for a, b in zip(sizes[:-1], sizes[1:])]


class TorchMLP:
    """Model, loss and optimizer, plus ``train_epoch`` and ``predict``.

    Parameters
    ----------
    sizes : sequence of int
    seed : int or numpy.random.Generator
        Host init (same numbers as xpnet's).
    dtype : "float32" or "float64"
    device : str or torch.device
    learning_rate : float
    """

    def __init__(self, sizes=(784, 100, 200, 10), *, seed=0, dtype="float32",
                 device="cpu", learning_rate=0.1):
        import torch
        from torch import nn

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        layers = []
        for i, w in enumerate(host_init(sizes, seed)):
            if i:
                layers.append(nn.ReLU())
            # Built in the target dtype, so the float64 init is cast once (as xpnet does).
            lin = nn.Linear(w.shape[0], w.shape[1], dtype=self.dtype, device=self.device)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(w.T.copy()))
                lin.bias.zero_()
            layers.append(lin)
        self.model = nn.Sequential(*layers)
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=learning_rate)

    def tensor(self, host, labels=False):
        """Copy a host array to the device (float data in the model's dtype)."""
        dtype = self.torch.int64 if labels else self.dtype
        return self.torch.tensor(np.asarray(host), dtype=dtype, device=self.device)

    def train_epoch(self, X, y, batch_size, rng):
        """One epoch in ``rng.permutation`` order (last partial batch dropped); mean loss."""
        torch = self.torch
        model, loss_fn, opt = self.model, self.loss_fn, self.optimizer
        model.train()
        n = X.shape[0]
        perm = torch.from_numpy(rng.permutation(n)).to(self.device)
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        steps = 0
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start:start + batch_size]
            xb, yb = X[idx], y[idx]
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.detach()
            steps += 1
        return float(total) / max(steps, 1)

    def predict(self, X):
        """Predicted classes (a device tensor), one forward pass without autograd."""
        torch = self.torch
        self.model.eval()
        with torch.inference_mode():
            return self.model(X).argmax(dim=1)

    def synchronize(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def weights(self):
        """Host copies of the (in, out) weight matrices and the biases, in layer order."""
        out = []
        for m in self.model:
            if hasattr(m, "weight"):
                out.append((m.weight.detach().cpu().numpy().T.copy(),
                            m.bias.detach().cpu().numpy().copy()))
        return out
