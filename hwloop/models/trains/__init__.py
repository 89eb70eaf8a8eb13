"""The spike-train family: discrete-time CUBA LIF networks (the Loihi
neuron) whose neurons fire many times, reset, and may be recurrent; trained
by backpropagation through time with a surrogate derivative, or online by
the SuperSpike rule (`superspike`).

* `functional`: the neuron as pure functions (`CubaParams`, `Surrogate`,
  `cuba_step`, the plain-autograd reference loop);
* `kernel`: the fused numba forward and hand-written backward of one layer;
* `qif_trains`: the discrete-time QIF spike-train neuron of the QIF chip
  (``"qif-trains"``, docs/models-qif-trains.md) and `trains_network_forward`,
  which runs CUBA or QIF layers;
* `layer`: the autograd function over a trial (`cuba_layer`) and the
  network forward (`cuba_network_forward`).

See docs/models-cuba.md and docs/superspike.md.
"""

from .functional import CubaParams, CubaState, Surrogate, cuba_layer_reference, cuba_step
from .layer import TrainsOutput, cuba_layer, cuba_network_forward
from .qif_trains import QifState, QifTrainsParams, qif_integrate, qif_layer, qif_reset, qif_step, trains_network_forward

__all__ = ["CubaParams", "CubaState", "QifState", "QifTrainsParams", "Surrogate", "TrainsOutput", "cuba_layer",
           "cuba_layer_reference", "cuba_network_forward", "cuba_step", "qif_integrate", "qif_layer", "qif_reset",
           "qif_step", "trains_network_forward"]
