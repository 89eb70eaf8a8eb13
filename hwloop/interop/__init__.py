"""Exchange networks with other tools.

* `nir_io`: NIR graphs (the `nir` package's HDF5 files) in and out, so that
  networks trained in snnTorch, Norse, Rockpool, Lava-DL, ... can be run here
  and ours can be run there;
* `netx`: the HDF5 layout Lava-DL's ``netx`` loads onto Loihi, written from
  the same integers our bit-accurate Loihi model runs.

Both modules import their optional packages (``nir``, ``h5py``) lazily, so the
rest of hwloop works without them. See `docs/interop.md`.
"""

from __future__ import annotations

from .nir_io import ImportedNetwork, export_nir, import_nir, network_to_nir, nir_to_network

__all__ = ["export_nir", "import_nir", "network_to_nir", "nir_to_network", "ImportedNetwork"]
