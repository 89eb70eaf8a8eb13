"""The spike-train family: discrete-time CUBA LIF networks (the Loihi
neuron) whose neurons fire many times, reset, and may be recurrent; trained
by backpropagation through time with a surrogate derivative, or online by
the SuperSpike rule (`superspike`).

* `functional`: the neuron as pure functions (`CubaParams`, `Surrogate`,
  `cuba_step`, the plain-autograd reference loop);
* `kernel`: the fused numba forward and hand-written backward of one layer;
* `layer`: the autograd function over a trial (`cuba_layer`) and the
  network forward (`cuba_network_forward`).

See docs/models-cuba.md and docs/superspike.md.
"""

from .functional import CubaParams, CubaState, Surrogate, cuba_layer_reference, cuba_step
from .layer import TrainsOutput, cuba_layer, cuba_network_forward

__all__ = ["CubaParams", "CubaState", "Surrogate", "TrainsOutput", "cuba_layer", "cuba_layer_reference",
           "cuba_network_forward", "cuba_step"]
