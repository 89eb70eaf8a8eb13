"""SuperSpike (Zenke & Ganguli 2018, arXiv 1705.11146): the online,
voltage-based three-factor rule for multilayer networks of deterministic
spiking neurons, on the CUBA LIF neuron of this family.

For a synapse from j to i, the weight moves along

    dw_ij/dt ∝ e_i(t) * lambda_ij(t),
    lambda_ij = alpha * ( sigma'(U_i - threshold) * (epsilon * S_j) )      eligibility trace
    e_i       = alpha * ( S^target_i - S_i )                                output error (van Rossum)
    e_k       = sum_i B_ki e_i                                              hidden error (feedback)

with ``epsilon * S_j`` the presynaptic trace (the postsynaptic potential
that input j alone would cause: the neuron's own current and membrane
filters, no threshold), ``sigma'`` the SuperSpike surrogate
1 / (beta |x| + 1)^2 of the membrane U, and ``alpha`` the normalised
double-exponential kernel exp(-t/tau_decay) - exp(-t/tau_rise) (peak 1).
Hidden units get the output errors through a feedback matrix B: the
transposed output weights (``symmetric``), a fixed random matrix
(``random``, feedback alignment) or all ones (``uniform``), as in the
paper; ``none`` leaves the hidden layer unlearnt (a control).

Updates: the integrand is summed over ``update_every`` steps into m_ij;
then g_ij = m_ij / steps, and the per-synapse RMS-max normaliser
v_ij <- max(gamma v_ij, g_ij^2), gamma = exp(-update interval / tau_rms),
sets the step w_ij += r0 g_ij / (sqrt(v_ij) + eps), clipped to
[w_min, w_max]. Everything is computed online, forward in time: no
backpropagation through time. docs/superspike.md has the derivation and the
constants.

The trial loop is one numba kernel; the neuron update uses the family's
shared step functions (`functional.integrate`, `reset`, `refractory`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import NetworkSpecError
from . import functional as F

FEEDBACK = ("symmetric", "random", "uniform", "none")


@dataclass(frozen=True)
class SuperSpikeConfig:
    """Network, rule and optimiser constants (times in ms, voltages in mV
    above rest). Defaults follow the paper's set-up (tau_mem 10 ms, tau_syn
    5 ms, threshold 10 mV above rest, 5 ms refractory, surrogate steepness
    1/mV, error and eligibility kernels with 5 ms rise and 10 ms decay,
    tau_rms of the order of tens of seconds) on a 1 ms grid."""

    dt: float = 1.0
    tau_syn: float = 5.0
    tau_mem: float = 10.0
    threshold: float = 10.0
    refractory: float = 5.0
    beta: float = 1.0
    tau_rise: float = 5.0
    tau_decay: float = 10.0
    r0: float = 0.1
    tau_rms: float = 30000.0
    eps: float = 1e-12
    update_every: int = 500  # steps between weight updates
    w_min: float = -10.0
    w_max: float = 10.0
    feedback: str = "symmetric"
    n_hidden: int = 64
    sigma_u: float = 5.0  # initial membrane std (mV, half the threshold) from the fluctuation-driven initialisation
    learn_hidden: bool = True

    def __post_init__(self):
        if self.feedback not in FEEDBACK:
            raise NetworkSpecError(f"superspike: feedback must be one of {list(FEEDBACK)}, got {self.feedback!r}")
        for name in ("dt", "tau_syn", "tau_mem", "threshold", "beta", "tau_rise", "tau_decay", "r0", "tau_rms"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise NetworkSpecError(f"superspike: {name} must be a finite number > 0, got {v!r}")
        if not self.tau_decay > self.tau_rise:
            raise NetworkSpecError("superspike: tau_decay must exceed tau_rise")
        if self.update_every < 1 or self.n_hidden < 1:
            raise NetworkSpecError("superspike: update_every and n_hidden must be >= 1")
        if not self.w_max > self.w_min:
            raise NetworkSpecError("superspike: w_max must exceed w_min")

    def neuron(self) -> F.CubaParams:
        return F.CubaParams.from_time_constants(self.dt, self.tau_syn, self.tau_mem, threshold=self.threshold,
                                                reset="zero", refractory=int(round(self.refractory / self.dt)))

    def kernel_constants(self) -> tuple[float, float, float]:
        """Per-step decays of the rise and decay exponentials and 1 / peak."""
        tr, td = self.tau_rise, self.tau_decay
        t_peak = tr * td / (td - tr) * math.log(td / tr)
        peak = math.exp(-t_peak / td) - math.exp(-t_peak / tr)
        return math.exp(-self.dt / tr), math.exp(-self.dt / td), 1.0 / peak


try:
    import numba as nb
except ImportError:  # pragma: no cover
    nb = None

if nb is not None:
    _integrate = nb.njit(cache=True, inline="always")(F.integrate)
    _reset = nb.njit(cache=True, inline="always")(F.reset)
    _refractory = nb.njit(cache=True, inline="always")(F.refractory)

    @nb.njit(cache=True, inline="always")
    def _step_layer(x, i, v, r, a_out, s_out, alpha, beta, theta, n_ref, u_out):
        """One CUBA step of a layer (zero reset): s_out, u_out (membrane before
        reset) and a_out (active mask) written in place."""
        for j in range(x.shape[0]):
            a = 1.0 if r[j] < 0.5 else 0.0
            ij, vj = _integrate(i[j], v[j], x[j], a, alpha, beta)
            sj = 1.0 if (vj > theta and a > 0.0) else 0.0
            i[j] = ij
            u_out[j] = vj
            a_out[j] = a
            s_out[j] = sj
            v[j] = _reset(vj, sj, theta, 0.0)
            r[j] = _refractory(r[j], sj, n_ref)

    @nb.njit(cache=True)
    def _trial(s_in, target, w1, w2, fb, symmetric, learn1, learn2, alpha, beta, theta, n_ref, sbeta, kr, kd, inv_peak,
               update_every, r0, gamma, eps, w_min, w_max, v1, v2, s_h_out, s_o_out):
        """One trial: network forward, traces, errors, eligibilities and the
        RMS-max weight updates every ``update_every`` steps (online: an update
        acts on the rest of the trial). Returns the van Rossum distance
        between the spikes the trial produced and the target, divided by dt."""
        T, n_in = s_in.shape
        n_h = w1.shape[1]
        n_o = w2.shape[1]
        # neuron states
        ih = np.zeros(n_h); vh = np.zeros(n_h); rh = np.zeros(n_h); ah = np.zeros(n_h)
        uh = np.zeros(n_h); sh = np.zeros(n_h)
        io = np.zeros(n_o); vo = np.zeros(n_o); ro = np.zeros(n_o); ao = np.zeros(n_o)
        uo = np.zeros(n_o); so = np.zeros(n_o)
        xh = np.zeros(n_h); xo = np.zeros(n_o)
        # presynaptic traces epsilon * S (the neuron's own current and membrane filters)
        q_in = np.zeros(n_in); p_in = np.zeros(n_in)
        q_h = np.zeros(n_h); p_h = np.zeros(n_h)
        # eligibility filters (rise and decay parts) and gradient accumulators
        e1r = np.zeros((n_in, n_h)); e1d = np.zeros((n_in, n_h))
        e2r = np.zeros((n_h, n_o)); e2d = np.zeros((n_h, n_o))
        m1 = np.zeros((n_in, n_h)); m2 = np.zeros((n_h, n_o))
        # error filters
        er = np.zeros(n_o); ed = np.zeros(n_o); err_o = np.zeros(n_o); err_h = np.zeros(n_h)
        sg_h = np.zeros(n_h); sg_o = np.zeros(n_o)
        dist = 0.0
        since = 0
        for t in range(T):
            # ---- forward: input -> hidden -> output (same step)
            xh[:] = 0.0
            for k in range(n_in):
                if s_in[t, k] != 0.0:
                    for j in range(n_h):
                        xh[j] += s_in[t, k] * w1[k, j]
            _step_layer(xh, ih, vh, rh, ah, sh, alpha, beta, theta, n_ref, uh)
            xo[:] = 0.0
            for k in range(n_h):
                if sh[k] != 0.0:
                    for j in range(n_o):
                        xo[j] += w2[k, j]
            _step_layer(xo, io, vo, ro, ao, so, alpha, beta, theta, n_ref, uo)
            for j in range(n_h):
                s_h_out[t, j] = sh[j]
            for j in range(n_o):
                s_o_out[t, j] = so[j]
            # ---- presynaptic traces
            for k in range(n_in):
                q_in[k] = alpha * q_in[k] + s_in[t, k]
                p_in[k] = beta * p_in[k] + q_in[k]
            for k in range(n_h):
                q_h[k] = alpha * q_h[k] + sh[k]
                p_h[k] = beta * p_h[k] + q_h[k]
            # ---- surrogate at the membranes
            for j in range(n_h):
                d = sbeta * abs(uh[j] - theta) + 1.0
                sg_h[j] = ah[j] / (d * d)
            for j in range(n_o):
                d = sbeta * abs(uo[j] - theta) + 1.0
                sg_o[j] = ao[j] / (d * d)
            # ---- output error: van Rossum-filtered difference
            for j in range(n_o):
                diff = target[t, j] - so[j]
                er[j] = kr * er[j] + diff
                ed[j] = kd * ed[j] + diff
                err_o[j] = (ed[j] - er[j]) * inv_peak
                dist += 0.5 * err_o[j] * err_o[j]
            # ---- hidden error: through the current output weights (symmetric),
            # or through the fixed feedback matrix fb (n_o, n_h)
            if symmetric:
                for j in range(n_h):
                    acc = 0.0
                    for o in range(n_o):
                        acc += w2[j, o] * err_o[o]
                    err_h[j] = acc
            else:
                for j in range(n_h):
                    err_h[j] = 0.0
                for o in range(n_o):
                    eo = err_o[o]
                    if eo != 0.0:
                        for j in range(n_h):
                            err_h[j] += eo * fb[o, j]
            # ---- eligibility traces and the integrand
            if learn2:
                for k in range(n_h):
                    pk = p_h[k]
                    for j in range(n_o):
                        x = sg_o[j] * pk
                        e2r[k, j] = kr * e2r[k, j] + x
                        e2d[k, j] = kd * e2d[k, j] + x
                        m2[k, j] += err_o[j] * (e2d[k, j] - e2r[k, j]) * inv_peak
            if learn1:
                for k in range(n_in):
                    pk = p_in[k]
                    for j in range(n_h):
                        x = sg_h[j] * pk
                        e1r[k, j] = kr * e1r[k, j] + x
                        e1d[k, j] = kd * e1d[k, j] + x
                        m1[k, j] += err_h[j] * (e1d[k, j] - e1r[k, j]) * inv_peak
            since += 1
            # ---- RMS-max normalised update
            if since == update_every or t == T - 1:
                if learn2:
                    for k in range(n_h):
                        for j in range(n_o):
                            g = m2[k, j] / since
                            v2[k, j] = max(gamma * v2[k, j], g * g)
                            w = w2[k, j] + r0 * g / (math.sqrt(v2[k, j]) + eps)
                            w2[k, j] = min(w_max, max(w_min, w))
                            m2[k, j] = 0.0
                if learn1:
                    for k in range(n_in):
                        for j in range(n_h):
                            g = m1[k, j] / since
                            v1[k, j] = max(gamma * v1[k, j], g * g)
                            w = w1[k, j] + r0 * g / (math.sqrt(v1[k, j]) + eps)
                            w1[k, j] = min(w_max, max(w_min, w))
                            m1[k, j] = 0.0
                since = 0
        return dist


@dataclass
class SuperSpikeNet:
    """Input -> hidden -> output weights, the feedback matrix and the RMS
    state of the optimiser."""

    w1: np.ndarray
    w2: np.ndarray
    feedback_fixed: np.ndarray  # (n_out, n_hidden); used by "random" and "uniform"
    v1: np.ndarray
    v2: np.ndarray
    cfg: SuperSpikeConfig

    def feedback(self) -> np.ndarray:
        """The matrix B (n_out, n_hidden) the hidden errors are formed with:
        the current W2^T for symmetric feedback (it follows W2 as it learns)."""
        if self.cfg.feedback == "symmetric":
            return np.ascontiguousarray(self.w2.T)
        return self.feedback_fixed


def init_net(n_in: int, n_out: int, input_rate: float, cfg: SuperSpikeConfig, seed: int) -> SuperSpikeNet:
    """Zero-mean Gaussian weights with the fluctuation-driven scale
    (membrane std ``sigma_u`` for inputs at ``input_rate`` spikes per step;
    the hidden rate is assumed equal), a fixed feedback matrix for the
    ``random`` (Gaussian, the scale of W2^T) and ``uniform`` (all ones)
    variants."""
    from ...trains_training import fluctuation_std

    rng = np.random.default_rng(seed)
    p = cfg.neuron()
    steps = int(10 * cfg.tau_mem / cfg.dt)
    s1 = fluctuation_std(n_in, input_rate, p, steps, cfg.sigma_u)
    s2 = fluctuation_std(cfg.n_hidden, input_rate, p, steps, cfg.sigma_u)
    w1 = np.clip(rng.normal(0.0, s1, (n_in, cfg.n_hidden)), cfg.w_min, cfg.w_max)
    w2 = np.clip(rng.normal(0.0, s2, (cfg.n_hidden, n_out)), cfg.w_min, cfg.w_max)
    fb_rng = np.random.default_rng([seed, 1])
    if cfg.feedback == "uniform":
        fb = np.ones((n_out, cfg.n_hidden))
    else:
        fb = fb_rng.normal(0.0, s2, (n_out, cfg.n_hidden))
    return SuperSpikeNet(w1, w2, np.ascontiguousarray(fb), np.zeros_like(w1), np.zeros_like(w2), cfg)


def run_trial(net: SuperSpikeNet, s_in: np.ndarray, target: np.ndarray, learn: bool = True):
    """One trial of the frozen input; with ``learn`` the weights move online.
    Returns (van Rossum distance of the trial, hidden raster, output raster)."""
    if nb is None:  # pragma: no cover
        raise NetworkSpecError("superspike: needs numba")
    cfg = net.cfg
    p = cfg.neuron()
    kr, kd, inv_peak = cfg.kernel_constants()
    interval = cfg.update_every * cfg.dt
    gamma = math.exp(-interval / cfg.tau_rms)
    s_in = np.ascontiguousarray(s_in, dtype=np.float64)
    target = np.ascontiguousarray(target, dtype=np.float64)
    T = s_in.shape[0]
    s_h = np.zeros((T, net.w1.shape[1]))
    s_o = np.zeros((T, net.w2.shape[1]))
    learn1 = learn and cfg.learn_hidden and cfg.feedback != "none"
    d = _trial(s_in, target, net.w1, net.w2, net.feedback_fixed, cfg.feedback == "symmetric", learn1, learn, p.alpha, p.beta, p.threshold,
               float(p.refractory), cfg.beta, kr, kd, inv_peak, cfg.update_every, cfg.r0, gamma, cfg.eps,
               cfg.w_min, cfg.w_max, net.v1, net.v2, s_h, s_o)
    return d * cfg.dt, s_h, s_o


def train_pattern(s_in: np.ndarray, target: np.ndarray, cfg: SuperSpikeConfig, trials: int, seed: int = 0,
                  input_rate: float | None = None, on_trial=None) -> dict:
    """Train on the pattern task for ``trials`` trials; returns the distance
    of every trial (the first is the untrained network), the final rasters
    and the network."""
    rate = float(np.mean(s_in)) if input_rate is None else input_rate
    net = init_net(s_in.shape[1], target.shape[1], rate, cfg, seed)
    d_start, _, _ = run_trial(net, s_in, target, learn=False)
    dists = []
    for k in range(trials):
        d, s_h, s_o = run_trial(net, s_in, target, learn=True)
        dists.append(d)
        if on_trial is not None:
            on_trial(k, d)
    d_final, s_h, s_o = run_trial(net, s_in, target, learn=False)
    return {"start_distance": d_start, "distances": dists, "final_distance": d_final, "hidden": s_h, "output": s_o,
            "net": net}
