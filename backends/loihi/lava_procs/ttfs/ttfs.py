"""Lava processes for first-spike-time inference, and their models.

* ``TTFSLif``: Loihi's LIF neuron that fires at most once per trial and
  records the step of that spike. Lava's fixed-point LIF has no refractory
  period (and ``LIFRefractory`` has only a float model), so the fixed-point
  model below reuses Lava's own bit-accurate LIF arithmetic
  (``AbstractPyLifModelFixed.subthr_dynamics``) unchanged and only masks the
  spike output: a neuron that has fired is refractory for the rest of the
  trial. Recording the first spike step inside the neuron (``t_spike``)
  replaces a raster sink process: reading one var after the run is much
  cheaper than shipping a spike vector per step to a monitor.
* ``SpikeTimeSource``: emits each source's single spike at a given Lava time
  step (``time_step == spike_step``), for inputs and bias spikes.

``firmware_models/loihi`` mirrors the fixed-point model exactly.
"""

import numpy as np

from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat


class TTFSLif(AbstractProcess):
    """LIF neurons (Lava's LIF dynamics) with one spike per trial.

    ``t_spike`` holds the Lava time step of each neuron's spike, -1 while silent.
    Fixed point: ``du``, ``dv`` 12-bit ints, ``vth`` 17-bit int, ``bias_mant``
    13-bit, ``bias_exp`` 3-bit. Float: ``du``, ``dv`` decay fractions.
    The neurons hold still (u = v = 0, no spikes) before Lava step
    ``t_start``, the layer's time zero: each connection delays by one step,
    so layer l starts at step l + 2, and a constant bias must not be
    integrated before then.
    """

    def __init__(self, *, shape, du=0, dv=0, vth=10, bias_mant=0, bias_exp=0, t_start=1, name=None):
        super().__init__(shape=shape, du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp,
                         t_start=t_start, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=(1,), init=dv)
        self.vth = Var(shape=(1,), init=vth)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=shape, init=bias_exp)
        self.t_spike = Var(shape=shape, init=-1)
        self.t_start = Var(shape=(1,), init=t_start)


class SpikeTimeSource(AbstractProcess):
    """``shape`` sources; source ``i`` spikes once, at Lava time step
    ``spike_step[i]`` (steps start at 1; anything else: never)."""

    def __init__(self, *, spike_step, name=None):
        spike_step = np.asarray(spike_step, dtype=np.int64).reshape(-1)
        super().__init__(shape=spike_step.shape, name=name)
        self.s_out = OutPort(shape=spike_step.shape)
        self.spike_step = Var(shape=spike_step.shape, init=spike_step)


def _held(model, dtype) -> bool:
    """Before the layer's time zero: consume the input, send nothing."""
    if model.time_step >= model.t_start:
        return False
    model.a_in.recv()
    model.s_out.send(np.zeros(model.v.shape, dtype=dtype))
    return True


def _first_spikes(model, above):
    """Mask spikes to the first per trial and record their step."""
    fire = above & (model.t_spike < 0)
    model.t_spike[fire] = model.time_step
    return fire


@implements(proc=TTFSLif, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyTTFSLifModelFixed(AbstractPyLifModelFixed):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    t_spike: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    t_start: int = LavaPyType(int, np.int32, precision=32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0

    def run_spk(self):
        if not _held(self, np.int32):
            super().run_spk()

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return _first_spikes(self, self.v > self.effective_vth)


@implements(proc=TTFSLif, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyTTFSLifModelFloat(AbstractPyLifModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    t_spike: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    t_start: int = LavaPyType(int, np.int32, precision=32)

    def run_spk(self):
        if not _held(self, float):
            super().run_spk()

    def spiking_activation(self):
        return _first_spikes(self, self.v > self.vth)


@implements(proc=SpikeTimeSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt", "bit_accurate_loihi")
class PySpikeTimeSourceModel(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, bool, precision=1)
    spike_step: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self):
        self.s_out.send(self.spike_step == self.time_step)
