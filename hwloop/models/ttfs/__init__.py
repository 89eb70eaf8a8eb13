"""The first-spike-time family: at most one spike per neuron per trial,
feed-forward, closed-form spike times and their exact derivatives.

* `lif`: current-based LIF, τm = τs or 2τs (Göltz et al. 2021; Lambert W in
  `lambertw`);
* `nlif`: non-leaky IF with an exponential synapse (Mostafa 2017);
* `qif`: theta neurons with pseudospikes (Klos & Memmesheimer), its fused
  numba kernel in `qif_kernel`.

Each model implements `hwloop.models.base.TTFSModel` and is reached through
the registry, ``hwloop.models.get_model(name)``; its loss lives in
`hwloop.losses`.
"""
