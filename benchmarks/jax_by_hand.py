"""The seed MLP's training epoch written directly in JAX: one ``jax.lax.scan`` in ``jax.jit``.

What a JAX user would write to train the tutorial's network as fast as JAX
allows: no xpnet, no layers, the whole epoch one compiled program (batch
gather inside, parameters donated). Same arithmetic as xpnet's compiled epoch
(its plain SGD step: ``g = grad * lr``, ``w - x.T @ g``; the fused softmax
cross-entropy), the same initial weights (drawn by ``xpnet.Sequential.mlp``)
and the same batch order (one ``rng.permutation(n)`` per epoch). It is the
floor of the ``xpnet jax`` contender: the gap between the two is xpnet's own
overhead on JAX, and the gap to NumPy is XLA's.
"""

from __future__ import annotations

from .workload import LEARNING_RATE


def make_epoch(jax):
    """``epoch(params, X, onehot, rows) -> (params, loss sum)``, compiled, ``params`` donated."""
    jnp = jax.numpy

    def step(params, X, onehot, idx):
        xb, tb = jnp.take(X, idx, axis=0), jnp.take(onehot, idx, axis=0)
        acts = [xb]
        for k, (w, b) in enumerate(params):
            h = acts[-1] @ w + b
            acts.append(jnp.maximum(h, 0) if k < len(params) - 1 else h)
        log_p = jax.nn.log_softmax(acts[-1], axis=1)
        loss = -jnp.sum(log_p * tb)
        g = (jnp.exp(log_p) - tb) / idx.shape[0]
        new = list(params)
        for k in range(len(params) - 1, -1, -1):
            w, b = params[k]
            g_in = g @ w.T if k else None  # before the update; layer 0 needs none
            g_lr = g * LEARNING_RATE
            new[k] = (w - acts[k].T @ g_lr, b - jnp.sum(g_lr, axis=0))
            if k:
                g = g_in * (acts[k] > 0)
        return new, loss

    def epoch(params, X, onehot, rows):
        def body(carry, idx):
            params, total = carry
            params, loss = step(params, X, onehot, idx)
            return (params, total + loss), None

        (params, total), _ = jax.lax.scan(body, (params, jnp.zeros((), X.dtype)), rows)
        return params, total

    return jax.jit(epoch, donate_argnums=(0,))
