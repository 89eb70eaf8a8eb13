"""Oscillatory QIF ("theta") neurons with δ-pulse inputs and pseudospikes.

Klos & Memmesheimer (arXiv 2309.14523): ``τ dV/dt = V(V−1) + I0`` with
``I0 > 1/4`` and input jumps ``V → V + w``. Spikes (``V = +∞``) can only
appear or vanish at the trial end, so first-spike times are continuous in the
weights; silent neurons get *pseudospike* times after the trial end, so they
have gradients too. The equations, the pseudospike definition and the
trainer-facing API are specified in ``docs/models-qif.md``; this module
follows its numbering.

How the simulation is organised (why it is fast and never overflows): the
state of a neuron is the unit vector ``(cos α, sin α)``, ``V = ½ − r cot α``.
In the frame rotating with the free flow, free flow is the identity and an
input at time ``s`` is a *linear* shear, so a layer is a sweep over the
time-sorted inputs doing a few multiply-adds per (sample, neuron), with no
trigonometry and no poles of ``tan``. The sign of ``sin α`` just before each
input tells whether the neuron has spiked since the previous one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ...errors import NetworkSpecError
from ...network import Layer, NeuronParams

_OPTIONS = ("i0", "v0")
#: elements of per-step state kept for the backward sweep before the batch is split
_VJP_STORE_LIMIT = 1 << 24
#: renormalise the forward state vector this often (pure overflow guard)
_RENORM_EVERY = 16


@dataclass(frozen=True)
class ThetaConstants:
    """Derived constants of one QIF layer (section 1 of the doc)."""

    tau: float
    i0: float
    v0: float

    @property
    def r(self) -> float:
        return math.sqrt(self.i0 - 0.25)

    @property
    def omega(self) -> float:  # angular speed of the free flow, α = ω φ
        return self.r / self.tau

    @property
    def period(self) -> float:  # Θ, the free period = phase threshold
        return math.pi / self.omega

    @property
    def alpha0(self) -> float:  # angle of V(0) = v0
        return math.atan2(self.r, 0.5 - self.v0)

    @classmethod
    def of(cls, params: NeuronParams) -> "ThetaConstants":
        opts = dict(params.options)
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise NetworkSpecError(f"qif: unknown option(s) {unknown}; known: {list(_OPTIONS)}")
        i0 = float(opts.get("i0", 1.25))
        v0 = float(opts.get("v0", 0.5))
        tau = float(params.tau_mem)
        if not (math.isfinite(i0) and i0 > 0.25):
            raise NetworkSpecError(f"qif: option i0 must be > 1/4 (oscillatory regime), got {i0}")
        if not math.isfinite(v0):
            raise NetworkSpecError(f"qif: option v0 must be finite, got {v0}")
        if not (math.isfinite(tau) and tau > 0):
            raise NetworkSpecError(f"qif: tau_mem must be > 0, got {tau}")
        return cls(tau=tau, i0=i0, v0=v0)


def pseudo_rate(t: torch.Tensor, t_max: float, period: float) -> torch.Tensor:
    """ρ(t): weight factor of an input that was not delivered in the trial
    (section 3): 1 − (t − T)/Θ for T < t < T + Θ, else 0."""
    inside = (t > t_max) & (t < t_max + period)
    return torch.where(inside, 1.0 - (t - t_max) / period, torch.zeros_like(t))


def _check(t_in: torch.Tensor, w: torch.Tensor, t_max: float) -> torch.dtype:
    if t_in.dim() != 2 or w.dim() != 2 or t_in.shape[1] != w.shape[0]:
        raise NetworkSpecError(
            f"qif: need t_in (batch, n_src) and w (n_src, n_out), got {tuple(t_in.shape)} and {tuple(w.shape)}"
        )
    if not (math.isfinite(t_max) and t_max > 0):
        raise NetworkSpecError(f"qif: t_max must be finite and > 0, got {t_max}")
    return torch.promote_types(t_in.dtype, w.dtype)


class _Schedule:
    """The delivered inputs (``t ≤ T``) of a batch as a sequence of jumps.

    Step ``k`` of sample ``b`` happens at ``times[b, k]`` and adds ``u_k[b]``
    (weights / r) to ``cot``-space; a final weightless step at ``T`` closes
    the trial. Two layouts with identical results:

    * ``gather``: one step per input in time order (padding: weightless steps at T);
    * ``merged``: one step per distinct input time of the whole batch, the
      weights of simultaneous inputs summed by a matmul. Chosen when the batch
      has few distinct times (binary pixels, quantised encodings): no sort.
    """

    def __init__(self, t_in: torch.Tensor, w: torch.Tensor, t_max: float, c: ThetaConstants,
                 dtype: torch.dtype, merge: bool | None = None):
        B, S = t_in.shape
        self.B, self.S, self.n = B, S, w.shape[1]
        self.t_in = t_in
        self.u_src = (w / c.r).to(dtype)
        delivered = t_in <= t_max  # False for inf and nan
        K = int(delivered.sum(1).max()) if B else 0
        if merge is None or merge:
            lo = torch.where(delivered, t_in, torch.full_like(t_in, math.inf)).min() if K else None
            hi = torch.where(delivered, t_in, torch.full_like(t_in, -math.inf)).max() if K else None
            if K and bool(lo == hi):  # one input time for the whole batch (binary pixels)
                distinct = lo.reshape(1)
            else:
                distinct = torch.unique(t_in[delivered])
            if merge is None:
                merge = 8 * distinct.numel() <= K
        self.mode = "merged" if merge else "gather"
        if self.mode == "merged":
            # the same few event times for every sample; a sample without an
            # input at one of them just gets a zero jump there
            E = distinct.numel()
            self.distinct = distinct
            times = distinct[None, :].expand(B, E)
        else:
            key = torch.where(delivered, t_in, torch.full_like(t_in, math.inf))
            s_sorted, order = torch.sort(key, dim=1, stable=True)
            s_sorted, order = s_sorted[:, :K], order[:, :K]
            valid = torch.isfinite(s_sorted)
            times = torch.where(valid, s_sorted, torch.full_like(s_sorted, t_max))
            self.idx = torch.where(valid, order, torch.full_like(order, S)).t().contiguous()  # (K, B)
            self.u_table = torch.cat([self.u_src, self.u_src.new_zeros(1, self.n)])
        times = torch.cat([times.to(dtype), torch.full((B, 1), float(t_max), dtype=dtype)], dim=1)
        self.times = times  # (B, steps)
        self.steps = times.shape[1]
        ang = c.omega * times
        self.cos, self.sin = torch.cos(ang).t().contiguous(), torch.sin(ang).t().contiguous()  # (steps, B)
        gaps = torch.diff(times, dim=1, prepend=torch.zeros(B, 1, dtype=dtype))
        long = (gaps >= c.period).t().contiguous()
        self.long = long if bool(long.any()) else None

    def u(self, k: int) -> torch.Tensor:
        """Jump of step k in cot-space units (w / r), (B, n)."""
        if k == self.steps - 1:
            return self.u_src.new_zeros(self.B, self.n)
        if self.mode == "gather":
            return self.u_table.index_select(0, self.idx[k])
        return self.onehot(k) @ self.u_src

    def onehot(self, k: int) -> torch.Tensor:
        """(B, S) indicator of the inputs merged into step k (merged layout)."""
        return (self.t_in == self.distinct[k]).to(self.u_src.dtype)

    def add_weight_grad(self, k: int, contrib: torch.Tensor, g_w: torch.Tensor) -> None:
        """g_w[i] += Σ_b contrib[b] over the inputs i of step k (g_w has a spare last row)."""
        if k == self.steps - 1:
            return
        if self.mode == "gather":
            g_w.index_add_(0, self.idx[k], contrib)
        else:
            g_w[:-1] += self.onehot(k).t() @ contrib


def _sweep(sched: _Schedule, c: ThetaConstants, dtype, freeze: bool):
    """Forward sweep with spike detection (section 2).

    Returns (z̃x, z̃y, alive, n_alive): the final rotating-frame state (frozen
    at the first spike when ``freeze``), whether the neuron is still without a
    spike at T, and how many steps it took while alive (its last one before
    the spike is step ``n_alive − 1``).
    """
    B, n = sched.B, sched.n
    zx = torch.full((B, n), math.cos(c.alpha0), dtype=dtype)
    zy = torch.full((B, n), math.sin(c.alpha0), dtype=dtype)
    alive = torch.ones(B, n, dtype=dtype)  # 1.0 until the first spike
    n_alive = torch.zeros(B, n, dtype=dtype)
    d = torch.empty(B, n, dtype=dtype)
    spiked = torch.empty(B, n, dtype=dtype)
    q = torch.empty(B, n, dtype=dtype)
    for k in range(sched.steps):
        ck, sk = sched.cos[k][:, None], sched.sin[k][:, None]
        torch.mul(zx, sk, out=d)
        d.addcmul_(zy, ck)  # physical sin α just before step k (scaled)
        torch.gt(d, 0, out=spiked)  # 1.0 where no spike since the previous step
        alive.mul_(spiked)
        if sched.long is not None:
            alive.mul_(~sched.long[k][:, None])
        n_alive.add_(alive)
        torch.mul(sched.u(k), d, out=q)
        if freeze:
            q.mul_(alive)
        zx.addcmul_(q, ck, value=-1.0)
        zy.addcmul_(q, sk)
        if k % _RENORM_EVERY == _RENORM_EVERY - 1:
            nrm = torch.hypot(zx, zy)
            zx.div_(nrm)
            zy.div_(nrm)
    alive = alive > 0
    return zx, zy, alive, n_alive


def _physical(zx, zy, cos, sin):
    """Physical (cos α, sin α) direction at the time whose ωt has these cos/sin."""
    return cos * zx - sin * zy, sin * zx + cos * zy


def _pseudo_from_state(x, y, inp, c: ThetaConstants, t_max: float):
    """t̃ = T + Θ − H(φ(T), I) from the physical direction (x, y) at T."""
    nrm = torch.hypot(x, y)
    x, y = x / nrm, y / nrm
    xp = x - (inp / c.r) * y
    a_post = torch.atan2(y, xp)  # in (0, π) when y > 0
    t = t_max + (math.pi - a_post) / c.omega
    after = torch.nextafter(torch.tensor(float(t_max), dtype=t.dtype), torch.tensor(math.inf, dtype=t.dtype))
    return torch.maximum(t, after)


class QIF:
    """The theta neuron as a `TTFSModel` (see module and docs/models-qif.md)."""

    name = "qif"

    # ------------------------------------------------------------- forward
    def _forward(self, t_in, w, params, t_max, extended: bool, merge=None, engine=None):
        dtype = _check(t_in, w, t_max)
        c = ThetaConstants.of(params)
        from . import qif_kernel
        if qif_kernel.use_kernel(engine, t_in, w):  # same results, fused per-sample loop
            return qif_kernel.layer_forward(t_in, w, c, t_max, dtype, extended=extended, merge=merge)
        t_in, w = t_in.detach().to(dtype), w.detach().to(dtype)
        sched = _Schedule(t_in, w, t_max, c, dtype, merge)
        zx, zy, alive, n_alive = _sweep(sched, c, dtype, freeze=True)
        # spike time of the neurons that spiked: last step taken alive is the reference
        ref = (n_alive.long() - 1).clamp(min=0)
        s_ref = torch.gather(sched.times, 1, ref)
        cos_ref = torch.gather(sched.cos.t(), 1, ref)
        sin_ref = torch.gather(sched.sin.t(), 1, ref)
        x, y = _physical(zx, zy, cos_ref, sin_ref)
        took = n_alive > 0
        s_ref = torch.where(took, s_ref, torch.zeros_like(s_ref))
        x = torch.where(took, x, torch.full_like(x, math.cos(c.alpha0)))
        y = torch.where(took, y, torch.full_like(y, math.sin(c.alpha0)))
        t_spk = s_ref + (math.pi - torch.atan2(y, x)) / c.omega
        t_spk = torch.clamp(t_spk, max=float(t_max))
        out = torch.where(alive, torch.full_like(t_spk, math.inf), t_spk)
        if extended and bool(alive.any()):
            xT, yT = _physical(zx, zy, sched.cos[-1][:, None], sched.sin[-1][:, None])
            inp = self._pseudo_input(t_in, w, t_max, c)
            out = torch.where(alive, _pseudo_from_state(xT, yT, inp, c, t_max), out)
        return out

    @staticmethod
    def _pseudo_input(t_in, w, t_max, c):
        """I_j = Σ_i w_ij ρ(t_i) (section 3); skips the matmul when no input is late."""
        late = (t_in > t_max) & (t_in < t_max + c.period)
        if not bool(late.any()):
            return t_in.new_zeros(t_in.shape[0], w.shape[1])
        return pseudo_rate(t_in, t_max, c.period) @ w

    def spike_times(self, t_in: torch.Tensor, w: torch.Tensor, params: NeuronParams, t_max: float) -> torch.Tensor:
        """Ordinary first spike times, ``inf`` for neurons silent in [0, t_max]."""
        return self._forward(t_in, w, params, t_max, extended=False)

    def pseudo_spike_times(self, t_in, w, params: NeuronParams, t_max: float) -> torch.Tensor:
        """Extended times: ordinary where the neuron spikes, its pseudospike
        time (> t_max) where it is silent (section 3)."""
        return self._forward(t_in, w, params, t_max, extended=True)

    def pseudospikes_for_measured(self, t_src, w, t_measured, params: NeuronParams, t_max: float, engine=None):
        """``t_measured`` with every ``inf`` (silent on the target) replaced by
        the pseudospike time computed from the *measured* inputs ``t_src``.

        The neuron's phase at T is the model's, through all delivered inputs.
        If the model says that phase already passed Θ (the target is silent
        where the model spikes), the pseudospike is put just after T: the
        nearest value consistent with the measured silence.
        """
        dtype = _check(t_src, w, t_max)
        c = ThetaConstants.of(params)
        t_src, w = t_src.detach().to(dtype), w.detach().to(dtype)
        t_measured = t_measured.detach().to(dtype)
        silent = torch.isinf(t_measured)
        if not bool(silent.any()):
            return t_measured
        from . import qif_kernel
        if qif_kernel.use_kernel(engine, t_src, w):
            t_ps = qif_kernel.layer_forward(t_src, w, c, t_max, dtype, extended=True, freeze=False)
            return torch.where(silent, t_ps, t_measured)
        sched = _Schedule(t_src, w, t_max, c, dtype)
        zx, zy, alive, _ = _sweep(sched, c, dtype, freeze=False)
        xT, yT = _physical(zx, zy, sched.cos[-1][:, None], sched.sin[-1][:, None])
        t_ps = _pseudo_from_state(xT, yT, self._pseudo_input(t_src, w, t_max, c), c, t_max)
        after = torch.nextafter(torch.tensor(float(t_max), dtype=dtype), torch.tensor(math.inf, dtype=dtype))
        t_ps = torch.where(alive, t_ps, after.expand_as(t_ps))
        return torch.where(silent, t_ps, t_measured)

    # ------------------------------------------------------------- training
    def training_loss(self, times, y, *, layers, weights, x, t_max, cfg):
        """The trainer's loss on *extended* output times (section 5).

        Times straight from `network_forward` carry ``inf`` for silent neurons;
        then the extended forward is computed here so that pseudospikes carry
        the gradient (times from the in-the-loop path are already completed).
        """
        from ...losses import ttfs_loss

        if any(not bool(torch.isfinite(t).all()) for t in times):
            times = pseudo_network_forward(layers, weights, x, t_max)
        return ttfs_loss(times[-1], y, t_max, cfg.tau, cfg.xi, cfg.alpha, cfg.beta)

    @staticmethod
    def default_train_overrides(dataset: str, hidden: Sequence[int] | None = None) -> dict:
        """Training defaults in the trainer's units (τs = ``tau``); measured
        choices are in docs/results-qif.md.

        Neuron and trial as in the paper (Klos & Memmesheimer): trial
        T = 2.5 τs, free period Θ = 3 T (``tau_mem`` = Θ/π with I0 = 5/4,
        r = 1), every neuron starting at V = ½ (phase Θ/2), so a neuron is
        silent unless its inputs advance its phase by Θ/2 − T.

        Loss: cross-entropy on −t/(ξ τs) with the trial end as an extra
        competitor (``end_logit``). Without it the loss is already small when
        the label's *pseudospike* comes first, and the network learns to
        order pseudospikes after T (high "pseudo" accuracy, outputs silent in
        the trial). ξ = 0.5 (sharper than the paper's Θ/6: inputs span only
        ~T, so class differences are a fraction of T); early-spike term
        γ (exp(t/T) − 1), γ = 0.01 as in the paper.

        Weights: zero-mean, std 0.5/sqrt(3 n_in) (the paper's uniform
        ±0.5/sqrt(n_in)): on digits ≥ 97 % of the hidden neurons are silent
        on the whole training set at initialisation and the pseudospike
        gradients bring them in. Yin-Yang has only 5 inputs, all of which
        arrive in the trial: there the first layer starts with a positive
        mean so that a third of the hidden neurons spike from the start
        (fewer dead neurons, faster). Digits inputs arrive in [0.15, 1] τs
        (bright pixel first; the default [0.15, 2] leaves dim pixels too
        little time before T to change the outcome).
        """
        n_in = {"yinyang": (5, 121), "digits": (65, 101), "mnist": (785, 351)}.get(dataset, (65, 101))
        out = {
            "t_max": 2.5,
            "tau_ratio": 7.5 / math.pi,  # tau_mem = Θ/π with r = 1
            "weight_mean": (0.0,),
            "weight_std": tuple(0.5 / math.sqrt(3 * n) for n in n_in),
            "model_options": {"i0": 1.25, "v0": 0.5},
            "xi": 0.5,
            "alpha": 0.01,
            "beta": 2.5,
            "end_logit": True,
            "batch_size": 32,
        }
        if dataset == "yinyang":
            out.update(hidden=(120,), weight_mean=(0.15, 0.0), weight_std=(0.3, 0.5 / math.sqrt(3 * n_in[1])),
                       lr=0.01, lr_step=10, lr_gamma=0.7, epochs=60)
        elif dataset == "digits":
            out.update(hidden=(100,), input_t_late=1.0, lr=0.005, lr_step=20, lr_gamma=0.95, epochs=60)
        if hidden is not None and len(hidden) > 1:
            # Deep nets (docs/results-qif.md, "Deep, initially silent network"):
            # the trial-end competitor joins the loss only once the label output
            # (pseudo)spikes first for 90 % of the training set; before that it
            # drives every output into the trial before classes are ordered.
            out.update(end_logit_after=0.9)
            if dataset != "yinyang":
                # pixels: std 0.8 x 0.5/sqrt(3 fan-in) of each layer's real fan-in,
                # so that (nearly) every hidden neuron starts silent, the regime
                # this configuration exists to show (1x trains as well)
                fan_in = (n_in[0], *(int(h) + 1 for h in hidden))
                out.update(weight_std=tuple(0.8 * 0.5 / math.sqrt(3 * n) for n in fan_in))
        return out

    # ------------------------------------------------------------ backward
    def vjp(self, t_in, w, t_out, grad_out, params: NeuronParams, t_max: float, merge=None, engine=None):
        """Exact gradients at the given output times (section 4)."""
        dtype = _check(t_in, w, t_max)
        c = ThetaConstants.of(params)
        from . import qif_kernel
        if qif_kernel.use_kernel(engine, t_in, w):
            return qif_kernel.layer_vjp(t_in, w, t_out, grad_out, c, t_max, dtype, merge)
        t_in, w = t_in.detach().to(dtype), w.detach().to(dtype)
        t_out, grad_out = t_out.detach().to(dtype), grad_out.detach().to(dtype)
        B, S = t_in.shape
        g_w = torch.zeros_like(w)
        g_in = torch.zeros_like(t_in)
        if B == 0:
            return g_in, g_w
        steps_bound = int((t_in <= t_max).sum(1).max()) + 1
        chunk = max(1, _VJP_STORE_LIMIT // max(1, steps_bound * w.shape[1]))
        for b0 in range(0, B, chunk):
            sl = slice(b0, b0 + chunk)
            gi, gw = self._vjp_chunk(t_in[sl], w, t_out[sl], grad_out[sl], c, t_max, dtype, merge)
            g_in[sl] = gi
            g_w += gw
        return g_in, g_w

    def _vjp_chunk(self, t_in, w, t_out, grad_out, c, t_max, dtype, merge):
        B, S = t_in.shape
        n = w.shape[1]
        sched = _Schedule(t_in, w, t_max, c, dtype, merge)
        K = sched.steps
        finite = torch.isfinite(t_out)
        pseudo = finite & (t_out > t_max)
        go = torch.where(finite & torch.isfinite(grad_out), grad_out, torch.zeros_like(grad_out))
        # forward again over the causal inputs (t_i < t_out), unit vectors, storing
        # ∂H/∂φ and ∂H/∂w of every step
        zx = torch.full((B, n), math.cos(c.alpha0), dtype=dtype)
        zy = torch.full((B, n), math.sin(c.alpha0), dtype=dtype)
        h_phi = torch.empty(K, B, n, dtype=dtype)
        h_w = torch.empty(K, B, n, dtype=dtype)
        merged = sched.mode == "merged"
        if merged:
            post_a = torch.empty(K, B, n, dtype=dtype)  # y'^2/N' and 2x'y'/N' (physical, post-step)
            post_c = torch.empty(K, B, n, dtype=dtype)
        kw = c.tau / c.r ** 2
        d = torch.empty(B, n, dtype=dtype)
        q = torch.empty(B, n, dtype=dtype)
        causal = torch.empty(B, n, dtype=dtype)
        nrm = torch.empty(B, n, dtype=dtype)
        for k in range(K):
            ck, sk = sched.cos[k][:, None], sched.sin[k][:, None]
            torch.mul(zx, sk, out=d)
            d.addcmul_(zy, ck)
            torch.lt(sched.times[:, k:k + 1], t_out, out=causal)
            torch.mul(sched.u(k), d, out=q)
            q.mul_(causal)
            zx.addcmul_(q, ck, value=-1.0)
            zy.addcmul_(q, sk)
            inv = h_phi[k]
            torch.mul(zx, zx, out=nrm)
            nrm.addcmul_(zy, zy)
            torch.reciprocal(nrm, out=inv)  # ∂H/∂φ = 1/|post|² (pre-vector is a unit vector)
            hw = h_w[k]
            torch.mul(d, d, out=hw)
            hw.mul_(inv).mul_(causal).mul_(kw)  # ∂H/∂w = (τ/r²) y²/|post|²
            if merged:
                torch.mul(d, d, out=post_a[k]).mul_(inv).mul_(causal)
                xp = ck * zx - sk * zy
                torch.mul(xp, d, out=post_c[k]).mul_(inv).mul_(causal).mul_(2.0)
            nrm.sqrt_()
            zx.div_(nrm)
            zy.div_(nrm)
        g = -torch.ones(B, n, dtype=dtype)  # ∂t/∂θ_m: −1 for an ordinary spike
        g_w = w.new_zeros(S + 1, n)  # spare last row collects the padding steps
        g_in = torch.zeros(B, S, dtype=dtype)
        if bool(pseudo.any()):
            xT, yT = _physical(zx, zy, sched.cos[-1][:, None], sched.sin[-1][:, None])
            inp = self._pseudo_input(t_in, w, t_max, c)
            xp = xT - (inp / c.r) * yT
            inv = 1.0 / (xp * xp + yT * yT)
            g = torch.where(pseudo, -inv, g)  # −∂H/∂φ(φ(T), I)
            p = go * torch.where(pseudo, -kw * yT * yT * inv, torch.zeros_like(inv))  # ∂L/∂I
            rho = pseudo_rate(t_in, t_max, c.period)
            g_w[:-1] += rho.t() @ p
            g_in += torch.where(rho > 0, (p @ w.t()) * (-1.0 / c.period), torch.zeros_like(g_in))
        G = go * g
        g_s = torch.zeros(B, K, dtype=dtype)
        for k in range(K - 1, -1, -1):
            sched.add_weight_grad(k, G * h_w[k], g_w)
            if merged and k < K - 1:
                u = sched.u_src
                onehot = sched.onehot(k)
                g_in += onehot * ((G * post_a[k]) @ (u * u).t() + (G * post_c[k]) @ u.t())
            else:
                g_s[:, k] = (G * (h_phi[k] - 1.0)).sum(1)
            G = G * h_phi[k]
        if not merged:
            idx = sched.idx.t()  # (B, K-1), S marks padding
            full = torch.zeros(B, S + 1, dtype=dtype)
            full.scatter_add_(1, idx, g_s[:, :-1])
            g_in += full[:, :S]
        return g_in, g_w[:-1]


# ------------------------------------------------------------------ network level
def extended_times(layers: Sequence[Layer], weights: Sequence[torch.Tensor], t_features: torch.Tensor,
                   t_max: float, measured: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Extended spike times of every layer (no autograd; section 5).

    Without ``measured``: each QIF layer's ordinary times, with pseudospikes
    for its silent neurons, computed from the previous layer's *extended*
    times. With ``measured`` (one tensor per layer, ``inf`` = silent on the
    target): the measured times, silences replaced by pseudospikes computed
    from the measured (completed) inputs. Non-QIF layers pass their own
    model's times through unchanged.
    """
    from .. import get_model
    from ..base import with_bias

    if measured is not None and len(measured) != len(layers):
        raise NetworkSpecError(f"{len(layers)} layers but {len(measured)} measured time tensors")
    out: list[torch.Tensor] = []
    t = t_features.detach()
    with torch.no_grad():
        for i, (layer, w) in enumerate(zip(layers, weights)):
            model = get_model(layer.neuron.model)
            src = with_bias(t, layer.bias_times)
            if measured is not None:
                t = measured[i].detach().to(src.dtype)
                if isinstance(model, QIF):
                    t = model.pseudospikes_for_measured(src, w, t, layer.neuron, t_max)
            elif isinstance(model, QIF):
                t = model.pseudo_spike_times(src, w, layer.neuron, t_max)
            else:
                t = model.spike_times(src, w.detach(), layer.neuron, t_max)
            out.append(t)
    return out


def pseudo_network_forward(layers: Sequence[Layer], weights: Sequence[torch.Tensor], t_features: torch.Tensor,
                           t_max: float, measured: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Extended times of every layer wired into autograd: what a trainer of a
    QIF network calls instead of `network_forward` (software: ``measured=None``;
    in the loop: the target's measured times)."""
    from .. import network_forward

    ext = extended_times(layers, weights, t_features, t_max, measured)
    return network_forward(layers, weights, t_features, t_max, measured=ext)


__all__ = ["QIF", "ThetaConstants", "extended_times", "pseudo_network_forward", "pseudo_rate"]
