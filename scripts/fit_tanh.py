#!/usr/bin/env python3
"""Fit the odd rational approximation of tanh used by Sources/RNNCore/VectorMath.swift.

    tanh(x) ~= x * P(s) / Q(s),  s = x^2,  |x| <= 9 (the kernel clamps x to +-8.8, where
                                           the float evaluation already reaches 1),

P of degree M and Q of degree N in s, P(0) = Q(0) = 1 (so the kernel returns x itself where
tanh(x) rounds to x), minimising the maximum *relative* error over [0, 9]: tanh(x)/x is even
and smooth in s, so this is a rational minimax fit of g(s) = tanh(sqrt(s))/sqrt(s) with
weight 1/g. Rational Remez exchange in mpmath (30 digits): on a reference of (free
coefficients + 1) points solve
    P(s_i) - g_i Q(s_i) = (-1)^i E g_i Q_prev(s_i)
(linear in the coefficients and E, Q_prev from the previous pass), then move the reference
to the extrema of the error on a 4001-point grid. The start is a least-squares fit.
The coefficients are then rounded to float32 one at a time, highest degree first, refitting
the still-free ones after each (greedy fpminimax): 0.16 ulp instead of 0.41 ulp of error
from rounding them all at once.

Last, the float32 evaluation the kernel does (clamp, Horner with fused multiply-adds, x * P,
one division, clamp to 1) is emulated on every float in [0, 9.5] (np.float32 arithmetic;
each fused multiply-add is done in float64, where a*b is exact, then rounded once more, a
correct fma except in double-rounding ties, far too rare to move a maximum). It reports the
maximum absolute and relative (in units of 2^-23) error against float64 tanh; the Swift
kernel measured the same (3.14e-7, 2.64 ulp at x = 6.079866 for degrees 6, 3).

Run: python3 scripts/fit_tanh.py [M N [STEP]]   (default: the kernel's degrees 6 3 and every
     float, about 8 minutes; STEP > 1 checks every STEP-th float only, to compare degrees)
Prints the coefficients as Swift Float literals.
"""
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 30
XMAX = 9.0  # fit interval [0, XMAX] in x; the kernel's clamp constant is chosen below

ULP = 2.0 ** -23


def g(s):
    """tanh(sqrt(s)) / sqrt(s), with its limit 1 at s = 0."""
    if s == 0:
        return mp.mpf(1)
    r = mp.sqrt(s)
    return mp.tanh(r) / r


def poly(c, s):
    acc = mp.mpf(0)
    for a in reversed(c):
        acc = acc * s + a
    return acc


def split(c, m):
    return c[: m + 1], c[m + 1:]


def solve_reference(ref, m, n, fixed, cprev):
    """Levels the weighted error on the reference: the free coefficients of
    c = (p0..pm, q0..qn) and E solve P(s_i) - g_i Q(s_i) = (-1)^i E g_i Qprev(s_i), with the
    coefficients in `fixed` (index -> value) held."""
    free = [j for j in range(m + n + 2) if j not in fixed]
    k = len(free) + 1
    _, qprev = split(cprev, m)
    A = mp.matrix(k, k)
    b = mp.matrix(k, 1)
    for i, s in enumerate(ref):
        gi = g(s)
        # basis value of coefficient j in P - g Q
        basis = [s ** j for j in range(m + 1)] + [-gi * s ** j for j in range(n + 1)]
        for col, j in enumerate(free):
            A[i, col] = basis[j]
        A[i, k - 1] = -((-1) ** i) * gi * poly(qprev, s)
        b[i] = -sum(basis[j] * v for j, v in fixed.items())
    sol = mp.lu_solve(A, b)
    c = [mp.mpf(0)] * (m + n + 2)
    for j, v in fixed.items():
        c[j] = mp.mpf(v)
    for col, j in enumerate(free):
        c[j] = sol[col]
    return c, sol[k - 1]


def rel_error(c, m, s, gs):
    p, q = split(c, m)
    return (poly(p, s) / poly(q, s) - gs) / gs


class Grid:
    def __init__(self, xmax, size=4000):
        smax = mp.mpf(xmax) ** 2
        self.smax = smax
        self.s = [smax * (1 - mp.cos(mp.pi * i / size)) / 2 for i in range(size + 1)]
        self.g = [g(s) for s in self.s]

    def worst(self, c, m):
        return max(abs(rel_error(c, m, s, gs)) for s, gs in zip(self.s, self.g))


def least_squares_start(m, n, grid, fixed):
    # Linearised least squares: minimise sum ((P - g Q) / g)^2 over the grid.
    free = [j for j in range(m + n + 2) if j not in fixed]
    rows, rhs = [], []
    for s, gi in zip(grid.s[::20], grid.g[::20]):
        basis = [s ** j for j in range(m + 1)] + [-gi * s ** j for j in range(n + 1)]
        rows.append([basis[j] / gi for j in free])
        rhs.append(-sum(basis[j] * v for j, v in fixed.items()) / gi)
    A = mp.matrix(rows)
    b = mp.matrix(rhs)
    sol = mp.lu_solve(A.T * A, A.T * b)
    c = [mp.mpf(0)] * (m + n + 2)
    for j, v in fixed.items():
        c[j] = mp.mpf(v)
    for col, j in enumerate(free):
        c[j] = sol[col]
    return c


def remez(m, n, grid, fixed, iterations=30):
    """Minimax relative fit of g by P/Q (degrees m, n in s) with the coefficients in `fixed`
    held; returns the coefficient list (p0..pm, q0..qn) and the maximum error on the grid."""
    k = m + n + 2 - len(fixed) + 1
    c = least_squares_start(m, n, grid, fixed)
    ref = [grid.smax * (1 - mp.cos(mp.pi * i / (k - 1))) / 2 for i in range(k)]
    best, best_err = c, grid.worst(c, m)
    for _ in range(iterations):
        cprev = c
        for _ in range(4):
            c, E = solve_reference(ref, m, n, fixed, cprev)
            cprev = c
        errs = [rel_error(c, m, s, gs) for s, gs in zip(grid.s, grid.g)]
        worst = max(abs(e) for e in errs)
        if worst < best_err:
            best, best_err = c, worst
        # New reference: one extremum per run of equal sign, keep k of them alternating.
        runs = []
        start = 0
        for i in range(1, len(errs) + 1):
            if i == len(errs) or mp.sign(errs[i]) != mp.sign(errs[start]):
                runs.append(max(range(start, i), key=lambda t: abs(errs[t])))
                start = i
        while len(runs) > k:  # drop the smaller end extremum
            if abs(errs[runs[0]]) < abs(errs[runs[-1]]):
                runs.pop(0)
            else:
                runs.pop()
        if len(runs) < k or abs(worst - abs(E)) < 1e-3 * worst:
            break
        ref = [grid.s[j] for j in runs]
    return best, best_err


def fit_float32(m, n, xmax):
    """p0 = q0 = 1 (so x is returned wherever x^2 underflows: tiny and subnormal x, where
    tanh(x) rounds to x), then the other coefficients are rounded to float32 one at a time,
    highest degree first, each time refitting the ones still free (the greedy form of
    fpminimax: the free coefficients absorb most of each rounding error)."""
    grid = Grid(xmax)
    fixed = {0: 1.0, m + 1: 1.0}
    c, exact_err = remez(m, n, grid, fixed)
    order = [j for j in range(m, 0, -1)] + [m + 1 + j for j in range(n, 0, -1)]
    order.sort(key=lambda j: -(j if j <= m else j - m - 1))  # highest degree first
    for j in order:
        fixed[j] = float(np.float32(float(c[j])))
        if len(fixed) < m + n + 2:
            c, _ = remez(m, n, grid, fixed)
    c = [mp.mpf(fixed[j]) for j in range(m + n + 2)]
    return c, exact_err, grid.worst(c, m)


def fma32(a, b, c):
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def kernel32(x, p32, q32, clamp, clamp_output=True):
    """The float32 operation sequence of VectorMath.tanh for x >= 0: clamp x, Horner in
    s = x^2 with fused multiply-adds, x * P / Q, clamp the result to 1."""
    x = np.minimum(x, np.float32(clamp))
    s = x * x
    pa = np.full_like(x, p32[-1])
    for a in reversed(p32[:-1]):
        pa = fma32(pa, s, np.full_like(x, a))
    qa = np.full_like(x, q32[-1])
    for a in reversed(q32[:-1]):
        qa = fma32(qa, s, np.full_like(x, a))
    y = (x * pa) / qa
    return np.minimum(y, np.float32(1)) if clamp_output else y


def main():
    m, n = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) >= 3 else (6, 3)
    c, exact_err, rounded_err = fit_float32(m, n, XMAX)
    print(f"degrees P {m}, Q {n} in s = x^2 on [0, {XMAX}]: minimax relative error"
          f" {mp.nstr(exact_err, 4)} ({mp.nstr(exact_err / ULP, 3)} ulp); with float32 coefficients"
          f" {mp.nstr(rounded_err, 4)} ({mp.nstr(rounded_err / ULP, 3)} ulp)")
    p, q = split(c, m)
    p32 = [np.float32(float(v)) for v in p]
    q32 = [np.float32(float(v)) for v in q]

    # Clamp constant: the smallest float in [8.8, 9.1] at which the float32 pipeline reaches 1
    # (the output clamp makes it exactly 1), so saturation is exact for every |x| >= clamp.
    lo, hi = np.float32(8.8).view(np.uint32), np.float32(9.1).view(np.uint32)
    cands = np.arange(lo, hi + 1, dtype=np.uint32).view(np.float32)
    hits = np.nonzero(kernel32(cands, p32, q32, 1e9, clamp_output=False) >= np.float32(1))[0]
    if hits.size == 0:
        sys.exit("no float in [8.8, 9.1] evaluates to 1 or more: refit")
    clamp = cands[hits[0]]
    # Every non-negative float up to 9.5 (past the clamp), in chunks; with a step, every
    # step-th float (quicker, for comparing degrees).
    step = int(sys.argv[3]) if len(sys.argv) == 4 else 1
    last = int(np.float32(9.5).view(np.uint32))
    max_abs = max_rel = 0.0
    at_abs = at_rel = 0.0
    max_out = 0.0
    raw_above_one = 0
    chunk = 1 << 24
    for lo in range(0, last + 1, chunk * step):
        bits = np.arange(lo, min(lo + chunk * step, last + 1), step, dtype=np.uint32)
        xs = bits.view(np.float32)
        ys = kernel32(xs, p32, q32, clamp).astype(np.float64)
        exact = np.tanh(xs.astype(np.float64))
        err = np.abs(ys - exact)
        rel = np.where(exact > 0, err / np.where(exact > 0, exact, 1) / ULP, 0)
        if err.max() > max_abs:
            max_abs, at_abs = err.max(), xs[err.argmax()]
        if rel.max() > max_rel:
            max_rel, at_rel = rel.max(), xs[rel.argmax()]
        max_out = max(max_out, ys.max())
        raw_above_one += int(np.count_nonzero(kernel32(xs, p32, q32, clamp, clamp_output=False) > 1))
    what = "all floats" if step == 1 else f"every {step}th float"
    print(f"float32 pipeline on {what} in [0, 9.5]: max abs {max_abs:.3g} at x = {at_abs!r},"
          f" max rel {max_rel:.3f} ulp at x = {at_rel!r}; max output {max_out!r}"
          f" ({raw_above_one} inputs above 1 before the output clamp)")
    print(f"clamp constant: {clamp!r} (bits 0x{clamp.view(np.uint32):08X})")
    # Shortest decimal strings that read back as the same float32 (Swift Float literals).
    print("P coefficients (s^0 first):", ", ".join(np.format_float_positional(c) if abs(c) >= 1e-3 else np.format_float_scientific(c) for c in p32))
    print("Q coefficients (s^0 first):", ", ".join(np.format_float_positional(c) if abs(c) >= 1e-3 else np.format_float_scientific(c) for c in q32))


if __name__ == "__main__":
    main()
