"""The fully measured CUBA layer (`trains_forward._MeasuredCubaLayer`): with the
spikes and membranes of every step measured, the substituted forward skips the
model's step loop and runs the loop's adjoint directly. Its values are the
measurements and its gradients those of the loop, for measurements that are not
the model's own (flipped spikes, noisy membranes)."""

import pytest
import torch

from hwloop.models.trains import CubaParams, Surrogate, cuba_network_forward
from hwloop.session.trains_forward import _fully_measured, cuba_forward


def _case(recurrent: bool, reset: str, seed: int = 11, T: int = 40, B: int = 6, n_in: int = 7, n: int = 10):
    g = torch.Generator().manual_seed(seed)
    hid = CubaParams(dt=1.0, current_decay=0.2, voltage_decay=0.1, threshold=1.0, reset=reset)
    out = CubaParams(dt=1.0, current_decay=0.25, voltage_decay=0.05, spiking=False)
    w1 = torch.randn(n_in, n, generator=g, dtype=torch.float64) * 0.9
    w2 = torch.randn(n, 4, generator=g, dtype=torch.float64) * 0.5
    r1 = torch.randn(n, n, generator=g, dtype=torch.float64) * 0.3 if recurrent else None
    raster = (torch.rand(T, B, n_in, generator=g) < 0.25).to(torch.float64)
    with torch.no_grad():
        ref = cuba_network_forward(raster, [w1, w2], [hid, out], Surrogate("superspike", 10.0), [r1, None],
                                   engine="torch", record="all")
    # measurements that are not the model's: 10 % of the spikes flipped, noisy membranes
    flip = torch.rand(ref.spikes[0].shape, generator=g) < 0.1
    s_meas = torch.where(flip, 1.0 - ref.spikes[0], ref.spikes[0])
    v_meas = [v + 0.2 * torch.randn(v.shape, generator=g, dtype=v.dtype) for v in ref.membranes]
    return (hid, out), (w1, w2), r1, raster, s_meas, v_meas


def _run(fast, params, ws, r1, raster, s_meas, v_meas, sg):
    w = [x.clone().requires_grad_(True) for x in ws]
    r = None if r1 is None else r1.clone().requires_grad_(True)
    h = cuba_forward(raster, w[0], r, params[0], sg, s_meas, v_meas[0], fast=fast)
    o = cuba_forward(h.spikes, w[1], None, params[1], sg, None, v_meas[1], fast=fast)
    # a loss that reads both outputs of both layers, as the trains loss does
    loss = (torch.log_softmax(o.membranes.max(0).values, 1)[:, 0].sum() + (h.spikes.sum(0) - 2.0).pow(2).mean()
            + 0.1 * h.membranes.pow(2).mean())
    grads = torch.autograd.grad(loss, w + ([r] if r is not None else []))
    return h, o, loss, grads


@pytest.mark.parametrize("recurrent,reset", [(False, "zero"), (True, "zero"), (True, "subtract")])
@pytest.mark.parametrize("shape", ["superspike", "sigmoid"])
def test_the_fast_layer_is_the_loop_for_foreign_measurements(recurrent, reset, shape):
    params, ws, r1, raster, s_meas, v_meas = _case(recurrent, reset)
    sg = Surrogate(shape, 10.0)
    assert _fully_measured(params[0], sg, s_meas, v_meas[0]) and _fully_measured(params[1], sg, None, v_meas[1])
    hf, of, lf, gf = _run(True, params, ws, r1, raster, s_meas, v_meas, sg)
    hs, os_, ls, gs = _run(False, params, ws, r1, raster, s_meas, v_meas, sg)
    assert torch.equal(hf.spikes, s_meas) and torch.equal(hf.membranes, v_meas[0])
    assert torch.equal(of.membranes, v_meas[1]) and torch.equal(hf.spikes, hs.spikes)
    assert float(lf.detach()) == float(ls.detach())
    for a, b in zip(gf, gs):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_loop_runs_where_the_fast_layer_does_not_apply():
    hid = CubaParams(dt=1.0, current_decay=0.2, voltage_decay=0.1, threshold=1.0)
    v = torch.zeros(3, 2, 4)
    sg = Surrogate("superspike", 10.0)
    assert _fully_measured(hid, sg, v, v)
    assert not _fully_measured(hid, sg, v, None)  # spikes only: the model's membranes
    assert not _fully_measured(hid, sg, None, v)
    assert not _fully_measured(CubaParams(dt=1.0, current_decay=0.2, voltage_decay=0.1, refractory=2), sg, v, v)
    assert not _fully_measured(hid, Surrogate("superspike", 10.0, through_reset=True), v, v)
