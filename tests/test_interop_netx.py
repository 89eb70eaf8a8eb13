"""hwloop's netx files in lava-dl's own loader, run on Lava's CPU simulator.

`hwloop.interop.peers.run_netx` loads the file with
``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6.0, made importable by
`hwloop.interop.lava_dl_compat`) and runs it with ``Loihi2SimCfg``
(fixed point). The reference is our bit-accurate core model running the
integers the file holds (`read_netx`), which the ``bitexact`` target's tests
already tie to Lava spike for spike; so every difference measured here is a
difference in what netx does with the file:

* netx re-fires (plain Lava LIF, reset to 0): only the first layer's first
  spikes keep their meaning natively;
* netx has no spike sources of its own: hidden layers' bias spikes (the
  ``hwlBias*`` keys) are ignored;
* netx reads weight exponent 0 only: the file's thresholds carry ``2^-e``
  (`netx_core`), measured against the compiled network here.

Lava is slow on 2 shared cores (several ms per step per process), hence the
few samples for the Lava runs; the core-model comparisons use the whole test
split. Each test prints its figure (``INTEROP ...``) for docs/interop.md.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hwloop.backends import open_target
from hwloop.data import load_dataset
from hwloop.data.decoding import decode
from hwloop.firmware_models.loihi import CoreConfig, simulate
from hwloop.interop.netx import export_netx, netx_core, read_netx
from hwloop.interop.peers import netx_input_steps, run_netx

from test_interop_peers import nets, nobias_lif, shipped_lif  # noqa: F401 - shared session fixtures

STEPS = 100
N_LAVA = 12

pytestmark = [pytest.mark.slow, pytest.mark.lava]


def report(*words, figs):
    print("\nINTEROP", *words, json.dumps(figs))


def core_run(core, info, t_in):
    return simulate(core, netx_input_steps(info, t_in), engine="numpy")


def pred(steps_out):
    return decode(np.where(steps_out >= 0, steps_out.astype(float), np.inf))[0]


def without_hidden_bias(core: CoreConfig) -> CoreConfig:
    layers = [core.layers[0]] + [dataclasses.replace(layer, bias_weight=np.zeros_like(layer.bias_weight))
                                 for layer in core.layers[1:]]
    return CoreConfig(tuple(layers), core.steps)


@pytest.mark.parametrize("which", ["biased", "nobias"])
def test_netx_file_runs_in_lava_dl_layer_by_layer_spike_for_spike(tmp_path, nets, which):
    """First spike only between layers: every layer equals the file's integers on our core model,
    once the hidden-layer bias spikes netx cannot express are left out of the reference."""
    net = nets[which]
    path, _ = export_netx(net, tmp_path / "net.net", steps=STEPS)
    core, info = read_netx(path)
    t_in = net.encoding.encode(load_dataset("yinyang", "test").x)[:N_LAVA]
    lava = run_netx(path, t_in, first_spike_only=True)
    ours = core_run(without_hidden_bias(core), info, t_in)
    assert (ours[0] >= 0).sum() > 0 and (ours[-1] >= 0).sum() > 0
    same = [float((a == b).mean()) for a, b in zip(lava.steps, ours)]
    report("lava-dl", "export", which, "first-spike-only", figs={"layers_identical": same, "n": N_LAVA})
    assert same == [1.0] * len(same)


def test_netx_file_runs_in_lava_dl_natively(tmp_path, nets):
    """netx's own semantics: the first layer is spike for spike ours, later layers see re-fired spikes."""
    net = nets["nobias"]
    path, _ = export_netx(net, tmp_path / "net.net", steps=STEPS)
    core, info = read_netx(path)
    t_in = net.encoding.encode(load_dataset("yinyang", "test").x)[:N_LAVA]
    lava = run_netx(path, t_in)
    ours = core_run(core, info, t_in)
    figs = {"L0_identical": float((lava.steps[0] == ours[0]).mean()),
            "class_vs_core": float((pred(lava.steps[-1]) == pred(ours[-1])).mean()),
            "max_spikes_per_neuron": int(max(c.max() for c in lava.counts)), "n": N_LAVA}
    report("lava-dl", "export", "nobias", "native", figs=figs)
    assert figs["L0_identical"] == 1.0
    assert figs["max_spikes_per_neuron"] > 1  # re-firing is real


@pytest.mark.parametrize("which", ["biased", "nobias"])
def test_netx_integers_against_the_network(nets, which):
    """What the file's integers compute, on the whole test split (core model, no Lava): against the
    compiled network (bitexact target) and against the float network (software target)."""
    net = nets[which]
    compiled, core, _ = netx_core(net, STEPS)
    bias_steps = compiled.core.layers[0].bias_steps.tolist()
    info = {"dt": compiled.dt, "steps": STEPS, "input_channels": {"features": net.encoding.n_features,
                                                                  "bias_steps": bias_steps}}
    t_in = net.encoding.encode(load_dataset("yinyang", "test").x)
    with open_target(f"bitexact?steps={STEPS}&engine=numpy") as b:
        b.load(net)
        bitexact = b.run(t_in).times
    with open_target("software") as b:
        b.load(net)
        software = b.run(t_in).times
    p_file = pred(core_run(core, info, t_in)[-1])
    p_file_netx = pred(core_run(without_hidden_bias(core), info, t_in)[-1])  # as netx runs it, first spikes
    figs = {"class_vs_bitexact": float((p_file == decode(bitexact[-1])[0]).mean()),
            "class_vs_software": float((p_file == decode(software[-1])[0]).mean()),
            "class_vs_software_hidden_bias_ignored": float((p_file_netx == decode(software[-1])[0]).mean()),
            "bitexact_vs_software": float((decode(bitexact[-1])[0] == decode(software[-1])[0]).mean()),
            "weight_exp": [layer.weight_exp for layer in compiled.core.layers]}
    report("lava-dl", "integers", which, figs=figs)
    assert figs["class_vs_bitexact"] >= 0.98
    # exponent 0 costs at most a point against what the Loihi mapping itself keeps of the float network
    assert figs["class_vs_software"] >= figs["bitexact_vs_software"] - 0.01
    if which == "nobias":
        assert figs["class_vs_software_hidden_bias_ignored"] == figs["class_vs_software"]
