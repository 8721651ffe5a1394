"""``python -m rustoptim``: train a small MLP with rustoptim, then time its Adam step.

1. A 2 -> 64 -> 64 -> 2 tanh MLP with softmax cross-entropy learns the
   two-spirals task (hand-written backprop in NumPy), once with
   ``rustoptim.Adam`` and once with ``rustoptim.SGD(momentum=0.9)``, each with a
   learning-rate schedule (``OneCycleLR``: warm-up, then cosine decay, stepped
   once per batch) and gradient clipping by global norm, fused into the step
   (``clip_grad_norm_scale``, then ``step(grad_scale=...)``); the lr is
   printed with the progress.
2. rustoptim's ``Adam.step()`` is timed against the same update written as
   in-place NumPy ufuncs, on the MLP's parameter shapes and on a few
   million-element tensors. The two are run alternately, so both see the same
   machine conditions, and the medians are compared.

The optimizers take the model's arrays themselves and update them in place;
gradients are passed to ``step(grads=[...])``, one per array, in order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Callable, Protocol

import numpy as np

import rustoptim

Arrays = list[np.ndarray]
DTYPE = np.float32


class GradientOptimizer(Protocol):
    """An optimizer whose step takes the gradients: every rustoptim optimizer but LBFGS."""

    param_groups: list[dict[str, Any]]

    def step(self, closure: None = None, *, grads: Sequence[np.ndarray], grad_scale: float | None = None) -> Any: ...


def make_spirals(
    n_per_class: int = 500, turns: float = 1.75, radius: float = 3.0, noise: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals of ``turns`` turns out to ``radius``: ``x`` of shape (2n, 2), labels ``y`` in {0, 1}."""
    rng = np.random.default_rng(seed)
    theta = np.sqrt(rng.random(n_per_class)) * turns * 2 * np.pi  # sqrt: even density along the arm
    arm = np.stack([np.cos(theta), np.sin(theta)], axis=1) * (radius * theta / (turns * 2 * np.pi))[:, None]
    x = np.concatenate([arm, -arm]) + noise * rng.standard_normal((2 * n_per_class, 2))
    y = np.repeat([0, 1], n_per_class)
    return x.astype(DTYPE), y


def init_mlp(sizes: Sequence[int] = (2, 64, 64, 2), seed: int = 0) -> Arrays:
    """``[w1, b1, w2, b2, ...]`` with Xavier-uniform weights (suits tanh) and zero biases."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params.append(rng.uniform(-limit, limit, size=(fan_in, fan_out)).astype(DTYPE))
        params.append(np.zeros(fan_out, dtype=DTYPE))
    return params


def forward_backward(params: Arrays, x: np.ndarray, y: np.ndarray) -> tuple[float, float, Arrays]:
    """Mean softmax cross-entropy, accuracy, and the gradient of the loss for every param."""
    weights, biases = params[0::2], params[1::2]
    activations = [x]
    for w, b in zip(weights[:-1], biases[:-1]):
        activations.append(np.tanh(activations[-1] @ w + b))
    logits = activations[-1] @ weights[-1] + biases[-1]

    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = -float(log_probs[rows, y].mean())
    accuracy = float((logits.argmax(axis=1) == y).mean())

    delta = np.exp(log_probs)  # d loss / d logits = (softmax - onehot) / n
    delta[rows, y] -= 1
    delta /= len(y)
    grads: Arrays = []
    for layer in reversed(range(len(weights))):
        grads.append(delta.sum(axis=0))
        grads.append(activations[layer].T @ delta)
        if layer:
            delta = (delta @ weights[layer].T) * (1 - activations[layer] ** 2)  # tanh' = 1 - tanh²
    return loss, accuracy, grads[::-1]  # [dw1, db1, dw2, db2, ...]


def train(
    make_optimizer: Callable[[Arrays], GradientOptimizer],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 300,
    batch_size: int = 100,
    report_every: int = 50,
    verbose: bool = True,
    seed: int = 0,
    max_norm: float = 5.0,
) -> tuple[Arrays, list[tuple[int, float, float]]]:
    """Minibatch training from a fresh ``init_mlp(seed=seed)``, with a one-cycle
    lr schedule (peak: the optimizer's lr) and gradients clipped to ``max_norm``.

    Returns the trained params and ``(epoch, loss, accuracy)`` on the whole set
    at epoch 0, every ``report_every`` epochs and at the end (printed if ``verbose``).
    """
    params = init_mlp(seed=seed)
    optimizer = make_optimizer(params)
    steps_per_epoch = -(-len(y) // batch_size)
    scheduler = rustoptim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=epochs * steps_per_epoch
    )
    # The same with rustoptim.Parameter, torch style:
    #     params = [rustoptim.Parameter(a) for a in init_mlp()]
    #     optimizer = rustoptim.Adam(params, lr=1e-2)
    #     ... for p, g in zip(params, grads): p.grad = g
    #     optimizer.step(); optimizer.zero_grad()
    rng = np.random.default_rng(seed)
    loss, accuracy, _ = forward_backward(params, x, y)
    history = [(0, loss, accuracy)]
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            _, _, grads = forward_backward(params, x[batch], y[batch])
            # Clipping fused into the step: the same numbers as clip_grad_norm_(grads, max_norm)
            # then step(grads=grads), without writing the gradients (plain arrays are the gradients).
            norm, scale = rustoptim.clip_grad_norm_scale(grads, max_norm)
            optimizer.step(grads=grads, grad_scale=scale)
            scheduler.step()
        if epoch % report_every == 0 or epoch == epochs:
            loss, accuracy, _ = forward_backward(params, x, y)
            history.append((epoch, loss, accuracy))
            if verbose:
                print(f"  epoch {epoch:4d}   loss {loss:.4f}   accuracy {accuracy:6.1%}   "
                      f"lr {scheduler.get_last_lr()[0]:.2e}   grad norm {norm:.3f}")
    return params, history


def numpy_adam_step(
    params: Arrays,
    grads: Arrays,
    state: dict[str, Any],
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """The update of ``torch.optim.Adam`` (no weight decay), in place: NumPy ufuncs and one scratch array per param."""
    state["step"] = step = state.get("step", 0) + 1
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = np.sqrt(1 - beta2**step)
    if "exp_avg" not in state:
        state["exp_avg"] = [np.zeros_like(p) for p in params]
        state["exp_avg_sq"] = [np.zeros_like(p) for p in params]
        state["scratch"] = [np.empty_like(p) for p in params]
    for p, g, m, v, tmp in zip(params, grads, state["exp_avg"], state["exp_avg_sq"], state["scratch"]):
        np.subtract(g, m, out=tmp)  # m <- m + (1 - β1)(g - m)
        tmp *= 1 - beta1
        m += tmp
        v *= beta2  # v <- β2 v + (1 - β2) g²
        np.multiply(g, g, out=tmp)
        tmp *= 1 - beta2
        v += tmp
        np.sqrt(v, out=tmp)  # p <- p - step_size · m / (sqrt(v) / sqrt(1 - β2^t) + ε)
        tmp /= bias_correction2_sqrt
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        p -= tmp


def time_steps(shapes: Sequence[tuple[int, ...]], *, repeats: int, seed: int = 0) -> tuple[float, float, float]:
    """Median seconds per Adam step, rustoptim and NumPy, alternating; and their largest param difference."""
    rng = np.random.default_rng(seed)
    start = [rng.standard_normal(shape).astype(DTYPE) for shape in shapes]
    grads = [rng.standard_normal(shape).astype(DTYPE) for shape in shapes]
    rust_params, numpy_params = [a.copy() for a in start], [a.copy() for a in start]
    optimizer = rustoptim.Adam(rust_params, lr=1e-3)
    numpy_state: dict[str, Any] = {}
    rust_times, numpy_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        optimizer.step(grads=grads)
        t1 = time.perf_counter()
        numpy_adam_step(numpy_params, grads, numpy_state, lr=1e-3)
        t2 = time.perf_counter()
        rust_times.append(t1 - t0)
        numpy_times.append(t2 - t1)
    difference = max(float(np.abs(a - b).max()) for a, b in zip(rust_params, numpy_params))
    return float(np.median(rust_times)), float(np.median(numpy_times)), difference


def main() -> None:
    x, y = make_spirals()
    print(f"two spirals: {len(y)} points; MLP 2-64-64-2, tanh, softmax cross-entropy, {DTYPE.__name__}\n")
    runs = {
        "Adam(lr=1e-2)": lambda params: rustoptim.Adam(params, lr=1e-2),
        "SGD(lr=0.05, momentum=0.9)": lambda params: rustoptim.SGD(params, lr=0.05, momentum=0.9),
    }
    results = {}
    for name, make_optimizer in runs.items():
        print(f"rustoptim.{name}")
        t0 = time.perf_counter()
        _, history = train(make_optimizer, x, y)
        results[name] = (history[-1][2], time.perf_counter() - t0)
        print()
    for name, (accuracy, seconds) in results.items():
        print(f"final accuracy  {name:26s} {accuracy:6.1%}   ({seconds:.1f} s)")

    print(f"\nAdam step: rustoptim ({rustoptim.get_num_threads()} threads, {rustoptim.get_simd_level()}) "
          "vs in-place NumPy ufuncs, medians, float32")
    mlp_shapes = [p.shape for p in init_mlp()]
    benchmarks = {
        f"the MLP's {len(mlp_shapes)} params ({sum(map(math.prod, mlp_shapes)):,} elements)": (mlp_shapes, 2000),
        "4 params of 1024 x 1024": ([(1024, 1024)] * 4, 100),
    }
    for label, (shapes, repeats) in benchmarks.items():
        rust, numpy_, difference = time_steps(shapes, repeats=repeats)
        print(f"  {label}, {repeats} steps each:")
        print(f"    rustoptim {rust * 1e3:8.3f} ms   NumPy {numpy_ * 1e3:8.3f} ms   speed-up {numpy_ / rust:.1f}x   "
              f"(params differ by at most {difference:.1e}: float32 rounding)")


if __name__ == "__main__":
    main()
