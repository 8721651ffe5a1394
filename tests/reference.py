"""A small pure-NumPy reference of every element-wise optimizer, in torch's update order.

It follows torch.optim's single-tensor code path operation by operation:
Python-double scalars are rounded to the array dtype where they are applied,
and the operations torch computes as one fused multiply-add (``lerp``,
``addcmul``, ``add`` with ``alpha``) are fused here too, so the Rust kernels can
be compared with it at a few ulps. NumPy has no FMA: float32 FMAs are computed
exactly in float64 and rounded once, float64 FMAs with error-free
transformations (Dekker's product, Knuth's sum).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import math

import numpy as np

__all__ = [
    "fma",
    "ReferenceAdam",
    "ReferenceSGD",
    "ReferenceRAdam",
    "ReferenceASGD",
    "ReferenceRprop",
    "ReferenceAdagrad",
    "ReferenceRMSprop",
    "ReferenceAdadelta",
    "ReferenceAdamax",
    "ReferenceNAdam",
    "ReferenceAdafactor",
    "ReferenceMuon",
]


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a):
    c = 134217729.0 * a  # 2**27 + 1
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def fma(a, b, c, dtype):
    """``a*b + c`` rounded once to ``dtype`` (float32 or float64)."""
    if dtype == np.float32:
        wide = np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)
        return wide.astype(np.float32)
    a, b, c = (np.asarray(x, np.float64) for x in (a, b, c))
    p, e = _two_prod(a, b)
    s, t = _two_sum(p, c)
    return np.asarray(s + (t + e), np.float64)



def _float32_step(step: float) -> float:
    """``step += 1`` on torch's float32 0-d step tensor."""
    return float(np.float32(step) + np.float32(1))


def lerp(start, end, weight: float, dtype):
    """``start.lerp_(end, weight)`` as torch rounds it (one FMA in the form torch picks)."""
    dt = np.dtype(dtype).type
    w = dt(weight)
    if abs(w) < 0.5:
        return fma(w, end - start, start, dtype)
    return fma(w - dt(1), end - start, end, dtype)


def decay_add_square(v: np.ndarray, g: np.ndarray, beta: float) -> None:
    """``v.mul_(beta).addcmul_(g, g, value=1 - beta)``: a running average of squares, in place."""
    dt = v.dtype.type
    v *= dt(beta)
    v[...] = fma(dt(1 - beta) * g, g, v, v.dtype)


def with_weight_decay(p: np.ndarray, g: np.ndarray, weight_decay: float, lr: float = 0.0,
                      decoupled: bool = False) -> np.ndarray:
    """torch's weight decay: ``g.add(p, alpha=weight_decay)`` (one FMA), or, decoupled
    (AdamW's), ``p.mul_(1 - lr * weight_decay)`` in place with ``g`` unchanged."""
    dt = p.dtype.type
    if weight_decay == 0:
        return g
    if decoupled:
        p *= dt(1 - lr * weight_decay)
        return g
    return fma(dt(weight_decay), p, g, p.dtype)


class _Reference:
    """Shared bookkeeping: copies of the params, per-param state, ``step(grads)``
    with None entries skipping a param. Hyperparameters are attributes and may be
    changed between steps."""

    def __init__(self, params: Sequence[np.ndarray]) -> None:
        self.params = [np.array(p, copy=True) for p in params]
        self.state: List[Optional[Dict[str, object]]] = [None] * len(self.params)

    def step(self, grads: Sequence[Optional[np.ndarray]]) -> None:
        for i, grad in enumerate(grads):
            if grad is not None:
                self._update(i, self.params[i], grad)

    def _grad(self, grad: np.ndarray) -> np.ndarray:
        return -grad if self.maximize else np.array(grad, copy=True)

    def _update(self, i: int, p: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError


class ReferenceAdam(_Reference):
    """Adam/AdamW."""

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.amsgrad, self.maximize, self.decoupled_weight_decay = amsgrad, maximize, decoupled_weight_decay

    def _update(self, i, p, grad):
        dt = p.dtype.type
        lr, (beta1, beta2), eps = self.lr, self.betas, self.eps
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
            if self.amsgrad:
                self.state[i]["max_exp_avg_sq"] = np.zeros_like(p)
        st = self.state[i]
        g = self._grad(grad)
        st["step"] += 1.0
        t = st["step"]
        g = with_weight_decay(p, g, self.weight_decay, lr, self.decoupled_weight_decay)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m[...] = lerp(m, g, 1 - beta1, p.dtype)
        decay_add_square(v, g, beta2)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5  # torch: C pow, not sqrt
        if self.amsgrad:
            vmax = st["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            denom = np.sqrt(vmax) / dt(bias_correction2_sqrt) + dt(eps)
        else:
            denom = np.sqrt(v) / dt(bias_correction2_sqrt) + dt(eps)
        # param.addcdiv_(exp_avg, denom, value=-step_size)
        p += (dt(-step_size) * m) / denom


class ReferenceSGD(_Reference):
    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr, self.momentum, self.dampening, self.weight_decay = lr, momentum, dampening, weight_decay
        self.nesterov, self.maximize = nesterov, maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        g = with_weight_decay(p, self._grad(grad), self.weight_decay)
        if self.momentum != 0:
            if self.state[i] is None:
                self.state[i] = {"momentum_buffer": np.array(g, copy=True)}
            else:
                buf = self.state[i]["momentum_buffer"]
                buf[...] = fma(dt(1 - self.dampening), g, buf * dt(self.momentum), p.dtype)
            buf = self.state[i]["momentum_buffer"]
            g = fma(dt(self.momentum), buf, g, p.dtype) if self.nesterov else buf
        p[...] = fma(dt(-self.lr), g, p, p.dtype)


# ------------------------------------------------------------ RAdam, ASGD, Rprop


class ReferenceRAdam(_Reference):
    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.decoupled_weight_decay, self.maximize = decoupled_weight_decay, maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        lr, (beta1, beta2), eps = self.lr, self.betas, self.eps
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "exp_avg": np.zeros_like(p), "exp_avg_sq": np.zeros_like(p)}
        st = self.state[i]
        g = self._grad(grad)
        st["step"] = t = _float32_step(st["step"])
        g = with_weight_decay(p, g, self.weight_decay, lr, self.decoupled_weight_decay)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m[...] = lerp(m, g, 1 - beta1, p.dtype)
        decay_add_square(v, g, beta2)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        m_hat = m / dt(bias_correction1)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * t * (beta2**t) / bias_correction2
        if rho_t > 5.0:
            # (bias_correction2 ** 0.5) / (sqrt(v) + eps): torch's scalar / tensor is reciprocal * scalar.
            adaptive_lr = (dt(1) / (np.sqrt(v) + dt(eps))) * dt(bias_correction2**0.5)
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            update = ((m_hat * dt(lr)) * adaptive_lr) * dt(rect)
        else:
            update = m_hat * dt(lr)
        p -= update



class ReferenceASGD(_Reference):
    """ASGD. ``step``, ``eta`` and ``mu`` are float32 values, as torch keeps them."""

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0.0,
        maximize: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr, self.lambd, self.alpha, self.t0, self.weight_decay = lr, lambd, alpha, t0, weight_decay
        self.maximize = maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        lr, lambd = self.lr, self.lambd
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "eta": float(np.float32(lr)), "mu": 1.0, "ax": np.zeros_like(p)}
        st = self.state[i]
        g = self._grad(grad)
        st["step"] = t = _float32_step(st["step"])
        g = with_weight_decay(p, g, self.weight_decay)
        eta, mu = st["eta"], st["mu"]
        p *= dt(1 - lambd * eta)
        p[...] = fma(dt(-eta), g, p, p.dtype)
        ax = st["ax"]
        if mu != 1:
            ax[...] = ax + (p - ax) * dt(mu)
        else:
            ax[...] = p
        st["eta"] = float(np.float32(lr / ((1 + lambd * lr * t) ** self.alpha)))
        st["mu"] = float(np.float32(1 / max(1, t - self.t0)))


class ReferenceRprop(_Reference):
    """Rprop. Follows torch's masked assignments literally (σ from the sign of the
    rounded product, then ``σ>0 → η+``, ``σ<0 → η−``, ``σ=0 → 1`` in that order,
    and zeroing where ``σ == η−``), with torch's ``sign(NaN) = 0``.
    """

    def __init__(
        self,
        params: Sequence[np.ndarray],
        lr: float = 1e-2,
        etas=(0.5, 1.2),
        step_sizes=(1e-6, 50),
        maximize: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr, self.etas, self.step_sizes, self.maximize = lr, tuple(etas), tuple(step_sizes), maximize

    @staticmethod
    def _torch_sign(x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), 0, np.sign(x)).astype(x.dtype)

    def _update(self, i, p, grad):
        dt = p.dtype.type
        (etaminus, etaplus), (size_min, size_max) = self.etas, self.step_sizes
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "prev": np.zeros_like(p), "step_size": np.full_like(p, dt(self.lr))}
        st = self.state[i]
        g = self._grad(grad)
        st["step"] = _float32_step(st["step"])
        prev, step_size = st["prev"], st["step_size"]
        sign = self._torch_sign(np.asarray(g * prev))
        sign = np.where(sign > 0, dt(etaplus), sign)
        sign = np.where(sign < 0, dt(etaminus), sign)
        sign = np.where(sign == 0, dt(1), sign)
        step_size[...] = np.minimum(np.maximum(step_size * sign, dt(size_min)), dt(size_max))
        g = np.where(sign == dt(etaminus), dt(0), g)
        p[...] = fma(-self._torch_sign(np.asarray(g)), step_size, p, p.dtype)
        prev[...] = g


# ------------------------------------------- Adagrad, RMSprop, Adadelta, Adamax, NAdam


class ReferenceAdagrad(_Reference):
    """Adagrad; its state exists from construction, as in torch."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 maximize=False) -> None:
        super().__init__(params)
        self.lr, self.lr_decay, self.weight_decay, self.eps, self.maximize = lr, lr_decay, weight_decay, eps, maximize
        self.state = [{"step": 0.0, "sum": np.full_like(p, initial_accumulator_value)} for p in self.params]

    def _update(self, i, p, grad):
        dt = p.dtype.type
        st = self.state[i]
        st["step"] = _float32_step(st["step"])
        g = with_weight_decay(p, self._grad(grad), self.weight_decay)
        clr = self.lr / (1 + (st["step"] - 1) * self.lr_decay)
        s = st["sum"]
        s[...] = fma(g, g, s, p.dtype)                      # sum.addcmul_(g, g, value=1)
        std = np.sqrt(s) + dt(self.eps)
        p[...] = p + (dt(-clr) * g) / std                   # param.addcdiv_(g, std, value=-clr)


class ReferenceRMSprop(_Reference):
    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 maximize=False) -> None:
        super().__init__(params)
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered, self.maximize = momentum, centered, maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "square_avg": np.zeros_like(p)}
            if self.momentum > 0:
                self.state[i]["momentum_buffer"] = np.zeros_like(p)
            if self.centered:
                self.state[i]["grad_avg"] = np.zeros_like(p)
        st = self.state[i]
        g = self._grad(grad)
        st["step"] = _float32_step(st["step"])
        g = with_weight_decay(p, g, self.weight_decay)
        v = st["square_avg"]
        decay_add_square(v, g, self.alpha)
        if self.centered:
            ga = st["grad_avg"]
            ga[...] = lerp(ga, g, 1 - self.alpha, p.dtype)
            avg = np.sqrt(fma(-ga, ga, v, p.dtype))        # square_avg.addcmul(ga, ga, value=-1).sqrt_()
        else:
            avg = np.sqrt(v)
        avg = avg + dt(self.eps)
        if self.momentum > 0:
            b = st["momentum_buffer"]
            b *= dt(self.momentum)
            b[...] = b + g / avg                            # buf.addcdiv_(g, avg)
            p[...] = fma(dt(-self.lr), b, p, p.dtype)
        else:
            p[...] = p + (dt(-self.lr) * g) / avg


class ReferenceAdadelta(_Reference):
    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False) -> None:
        super().__init__(params)
        self.lr, self.rho, self.eps, self.weight_decay, self.maximize = lr, rho, eps, weight_decay, maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "square_avg": np.zeros_like(p), "acc_delta": np.zeros_like(p)}
        st = self.state[i]
        st["step"] = _float32_step(st["step"])
        g = with_weight_decay(p, self._grad(grad), self.weight_decay)
        v, u = st["square_avg"], st["acc_delta"]
        decay_add_square(v, g, self.rho)
        std = np.sqrt(v + dt(self.eps))
        delta = np.sqrt(u + dt(self.eps)) / std * g
        decay_add_square(u, delta, self.rho)
        p[...] = fma(dt(-self.lr), delta, p, p.dtype)


class ReferenceAdamax(_Reference):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False) -> None:
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay, self.maximize = lr, tuple(betas), eps, weight_decay, maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "exp_avg": np.zeros_like(p), "exp_inf": np.zeros_like(p)}
        st = self.state[i]
        g = self._grad(grad)
        st["step"] = _float32_step(st["step"])
        g = with_weight_decay(p, g, self.weight_decay)
        beta1, beta2 = self.betas
        m, u = st["exp_avg"], st["exp_inf"]
        m[...] = lerp(m, g, 1 - beta1, p.dtype)
        u[...] = np.maximum(u * dt(beta2), np.abs(g) + dt(self.eps))
        clr = self.lr / (1 - beta1 ** st["step"])
        p[...] = p + (dt(-clr) * m) / u


class ReferenceNAdam(_Reference):
    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, maximize=False) -> None:
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, tuple(betas), eps, weight_decay
        self.momentum_decay, self.decoupled_weight_decay, self.maximize = momentum_decay, decoupled_weight_decay, maximize

    def _update(self, i, p, grad):
        dt = p.dtype.type
        if self.state[i] is None:
            self.state[i] = {"step": 0.0, "mu_product": 1.0, "exp_avg": np.zeros_like(p),
                             "exp_avg_sq": np.zeros_like(p)}
        st = self.state[i]
        g = self._grad(grad)
        st["step"] = t = _float32_step(st["step"])
        lr, (beta1, beta2), psi = self.lr, self.betas, self.momentum_decay
        bias_correction2 = 1 - beta2**t
        g = with_weight_decay(p, g, self.weight_decay, lr, self.decoupled_weight_decay)
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (t * psi)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((t + 1) * psi)))
        st["mu_product"] = mu_product = float(np.float32(st["mu_product"]) * np.float32(mu))
        m, v = st["exp_avg"], st["exp_avg_sq"]
        m[...] = lerp(m, g, 1 - beta1, p.dtype)
        decay_add_square(v, g, beta2)
        denom = np.sqrt(v / dt(bias_correction2)) + dt(self.eps)
        p[...] = p + (dt(-lr * (1.0 - mu) / (1.0 - mu_product)) * g) / denom
        mu_product_next = mu_product * mu_next
        p[...] = p + (dt((-lr * mu_next) / (1.0 - mu_product_next)) * m) / denom


# ---------------------------------------------------------------------------
# Adafactor and Muon (whole-tensor optimizers). Their sums of squares follow the
# Rust core's fixed order (src/row_sums.rs): squares in float64; a row summed
# over 16 interleaved lanes (lane k takes columns k, k+16, ...), lanes added in
# order; a column summed over blocks of 32 rows, each block row by row, blocks
# in order; a whole tensor as its row sums in order.

_LANES, _ROW_BLOCK = 16, 32


def _as_matrices(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-ordered (batch, rows, cols) array (0-d: 1x1, 1-d: one row)."""
    if x.ndim == 0:
        return x.reshape(1, 1, 1)
    if x.ndim == 1:
        return x.reshape(1, 1, -1)
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def _sequential_sum(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum along ``axis`` one element after the other, starting from 0.0."""
    return np.cumsum(x, axis=axis).take(-1, axis=axis) + 0.0


def row_sums_of_squares(x: np.ndarray) -> np.ndarray:
    """Each row's sum of squares, shape (batch, rows)."""
    squares = _as_matrices(np.asarray(x)).astype(np.float64) ** 2
    b, r, c = squares.shape
    padded = np.zeros((b, r, -(-c // _LANES) * _LANES))
    padded[:, :, :c] = squares
    lanes = _sequential_sum(padded.reshape(b, r, -1, _LANES), axis=2)
    return _sequential_sum(lanes, axis=-1)


def column_sums_of_squares(x: np.ndarray) -> np.ndarray:
    """Each column's sum of squares, shape (batch, cols)."""
    squares = _as_matrices(np.asarray(x)).astype(np.float64) ** 2
    blocks = [_sequential_sum(squares[:, i:i + _ROW_BLOCK], axis=1) for i in range(0, squares.shape[1], _ROW_BLOCK)]
    return _sequential_sum(np.stack(blocks, axis=1), axis=1)


def sum_of_squares(x: np.ndarray) -> float:
    return float(_sequential_sum(row_sums_of_squares(x).reshape(-1), axis=0))


class ReferenceAdafactor(_Reference):
    """torch 2.15's Adafactor."""

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0, maximize=False):
        super().__init__(params)
        self.lr, self.beta2_decay, self.eps, self.d = lr, beta2_decay, tuple(eps), d
        self.weight_decay, self.maximize = weight_decay, maximize

    def step(self, grads) -> None:
        present = [i for i, g in enumerate(grads) if g is not None]
        eps1 = self.eps[0]
        if eps1 is None and present:
            eps1 = float(np.finfo(self.params[present[0]].dtype).eps)  # the group's first param, as torch
        for i in present:
            self._update(i, self.params[i], grads[i], eps1)

    def _update(self, i, p, grad, eps1) -> None:
        dtype = p.dtype
        dt = dtype.type
        if self.state[i] is None:
            state = {"step": 0.0}
            if p.ndim >= 2:
                state["row_var"] = np.zeros(p.shape[:-1] + (1,), dtype)
                state["col_var"] = np.zeros(p.shape[:-2] + (1, p.shape[-1]), dtype)
            else:
                state["variance"] = np.zeros(p.shape, dtype)
            self.state[i] = state
        st = self.state[i]
        st["step"] = step = _float32_step(st["step"])
        n = p.size
        if n == 0:
            return
        beta2_hat = dt(step ** self.beta2_decay)
        rho = min(self.lr, 1 / step ** 0.5)
        param_norm = float(dt(math.sqrt(sum_of_squares(p))))
        alpha = max(self.eps[1], param_norm / n ** 0.5) * rho
        g = self._grad(grad)
        if p.ndim >= 2:
            rows, cols = p.shape[-2], p.shape[-1]
            row_norm = np.sqrt(row_sums_of_squares(g)).astype(dtype).reshape(st["row_var"].shape)
            col_norm = np.sqrt(column_sums_of_squares(g)).astype(dtype).reshape(st["col_var"].shape)
            st["row_var"][...] = lerp(st["row_var"], row_norm * row_norm / dt(cols), beta2_hat, dtype)
            st["col_var"][...] = lerp(st["col_var"], col_norm * col_norm / dt(rows), beta2_hat, dtype)
            row_var = st["row_var"]
            mean = (_sequential_sum(row_var.astype(np.float64), axis=-2).astype(dtype) / dt(rows))[..., None, :]
            mean = np.maximum(mean, dt(eps1))
            variance = (row_var * st["col_var"]) / mean
        else:
            st["variance"][...] = lerp(st["variance"], g * g, beta2_hat, dtype)
            variance = st["variance"]
        u = (dt(1) / np.sqrt(np.maximum(variance, dt(eps1 * eps1)))) * g
        update_norm = float(dt(math.sqrt(sum_of_squares(u))))
        denominator = max(1.0, update_norm / (n ** 0.5 * self.d))
        decay = dt(1 - self.lr * self.weight_decay) if self.weight_decay != 0 else dt(1)
        p[...] = fma(dt(-alpha / denominator), u, p * decay, dtype)


class ReferenceMuon(_Reference):
    """torch 2.15's Muon with the Newton-Schulz iteration in the params' dtype
    (NumPy's matrix products: equal to the Rust core's up to rounding)."""

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None):
        super().__init__(params)
        self.lr, self.weight_decay, self.momentum, self.nesterov = lr, weight_decay, momentum, nesterov
        self.ns_coefficients, self.eps, self.ns_steps, self.adjust_lr_fn = ns_coefficients, eps, ns_steps, adjust_lr_fn

    def _ratio(self, a: int, b: int) -> float:
        if self.adjust_lr_fn in (None, "original"):
            return math.sqrt(max(1, a / b))
        if self.adjust_lr_fn == "match_rms_adamw":
            return 0.2 * math.sqrt(max(a, b))
        return math.sqrt(a / b)

    def _update(self, i, p, grad) -> None:
        dtype = p.dtype
        dt = dtype.type
        if self.state[i] is None:
            self.state[i] = {"momentum_buffer": np.zeros_like(p)}
        buf = self.state[i]["momentum_buffer"]
        buf[...] = lerp(buf, grad, dt(1 - self.momentum), dtype)
        update = lerp(grad, buf, dt(self.momentum), dtype) if self.nesterov else buf.copy()
        rows, cols = p.shape
        if p.size == 0:
            return  # nothing to update (torch divides by zero in its lr adjustment for 0 columns)
        x = update.T.copy() if rows > cols else update.copy()
        if x.size:
            norm = np.maximum(dt(math.sqrt(sum_of_squares(x))), dt(self.eps))
            x = x / norm
            a, b, c = (dt(v) for v in self.ns_coefficients)
            for _ in range(self.ns_steps):
                gram = x @ x.T
                x = a * x + (b * gram + c * (gram @ gram)) @ x
        orthogonal = x.T if rows > cols else x
        decayed = p * dt(1 - self.lr * self.weight_decay)
        p[...] = fma(dt(-(self.lr * self._ratio(rows, cols))), orthogonal, decayed, dtype)
