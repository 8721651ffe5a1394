"""A pure-NumPy reference of torch.optim.LBFGS, operation by operation.

It works on one flat float vector ``x`` (the params concatenated) and a
closure ``f(x) -> (loss, grad)``. Scalars that torch keeps as 0-dim tensors
are NumPy scalars of the vector's dtype; the loss and the line search's
scalars are Python floats. The line search gets ``max_eval`` minus the calls
made so far in the step, as rustoptim documents. Dot products are NumPy's, so
rustoptim matches this reference to rounding, not bitwise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["cubic_interpolate", "strong_wolfe", "ReferenceLBFGS"]

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    lower, upper = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if d2_square >= 0:
        d2 = np.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, lower), upper)
    return (lower + upper) / 2.0


def strong_wolfe(obj, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """torch's ``_strong_wolfe``; ``obj(x, t, d) -> (loss, grad)`` at ``x + t·d``."""
    d_norm = float(np.abs(d).max())
    g = g.copy()
    f_new, g_new = obj(x, t, d)
    evals = 1
    gtd_new = float(g_new @ d)
    t_prev, f_prev, g_prev, gtd_prev = 0.0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new.copy()], [gtd_prev, gtd_new]
            break
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new.copy(), gtd_new
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    insufficient_progress = False
    low, high = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0], bracket[1], bracket_f[1], bracket_gtd[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient_progress or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        f_new, g_new = obj(x, t, d)
        evals += 1
        gtd_new = float(g_new @ d)
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bracket_f[low]:
            bracket[high], bracket_f[high] = t, f_new
            bracket_g[high], bracket_gtd[high] = g_new.copy(), gtd_new
            low, high = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bracket_f[high] = bracket[low], bracket_f[low]
                bracket_g[high], bracket_gtd[high] = bracket_g[low], bracket_gtd[low]
            bracket[low], bracket_f[low] = t, f_new
            bracket_g[low], bracket_gtd[low] = g_new.copy(), gtd_new
    return bracket_f[low], bracket_g[low], bracket[low], evals


class ReferenceLBFGS:
    """torch.optim.LBFGS on a flat vector ``x`` (updated in place)."""

    def __init__(self, x: np.ndarray, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        self.x = x
        self.config = dict(
            lr=lr, max_iter=max_iter, max_eval=max_iter * 5 // 4 if max_eval is None else max_eval,
            tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
            history_size=history_size, line_search_fn=line_search_fn,
        )
        self.state: dict[str, object] = {}

    def step(self, closure: Objective) -> float:
        c, state, x = self.config, self.state, self.x
        dt = x.dtype.type
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        orig_loss, g = closure(x)
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        if np.abs(g).max() <= dt(c["tolerance_grad"]):
            return orig_loss
        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")
        n_iter = 0
        while n_iter < c["max_iter"]:
            n_iter += 1
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -g
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1
            else:
                y = g - prev_flat_grad
                s = d * dt(t)
                ys = y @ s
                if ys > dt(1e-10):
                    if len(old_dirs) == c["history_size"]:
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(dt(1.0) / ys)
                    h_diag = ys / (y @ y)
                k = len(old_dirs)
                al = state.setdefault("al", [None] * c["history_size"])
                q = -g
                for i in range(k - 1, -1, -1):
                    al[i] = (old_stps[i] @ q) * ro[i]
                    q = q + dt(-al[i]) * old_dirs[i]
                d = r = q * dt(h_diag)
                for i in range(k):
                    be_i = (old_dirs[i] @ r) * ro[i]
                    r += dt(al[i] - be_i) * old_stps[i]
            prev_flat_grad = g.copy()
            prev_loss = loss
            if state["n_iter"] == 1:
                inverse = dt(1.0) / np.abs(g).sum()
                t = float(inverse * dt(c["lr"])) if inverse < 1.0 else 1.0 * c["lr"]
            else:
                t = c["lr"]
            gtd = g @ d
            if gtd > dt(-c["tolerance_change"]):
                break
            ls_evals = 0
            if c["line_search_fn"] is not None:
                def obj(x0, step, direction, x=x):  # x bound now (B023), though only this iteration calls it
                    x[...] = x0 + dt(step) * direction
                    value, grad = closure(x)
                    x[...] = x0
                    return float(value), grad

                loss, g, t, ls_evals = strong_wolfe(
                    obj, x.copy(), t, d, loss, g, float(gtd), max_ls=c["max_eval"] - current_evals
                )
                x += dt(t) * d
                opt_cond = np.abs(g).max() <= dt(c["tolerance_grad"])
            else:
                x += dt(t) * d
                if n_iter != c["max_iter"]:
                    value, g = closure(x)
                    loss = float(value)
                    opt_cond = np.abs(g).max() <= dt(c["tolerance_grad"])
                    ls_evals = 1
            current_evals += ls_evals
            state["func_evals"] += ls_evals
            if n_iter == c["max_iter"] or current_evals >= c["max_eval"] or opt_cond:
                break
            if np.abs(d * dt(t)).max() <= dt(c["tolerance_change"]):
                break
            if abs(loss - prev_loss) < c["tolerance_change"]:
                break
        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss
