"""Exchange networks with other tools.

* `nir_io`: NIR graphs (the `nir` package's HDF5 files) in and out, in NIR's
  own convention or in the one snnTorch, Norse or Rockpool runs
  (`conventions`), with the file checked before it is read (`nir_guard`);
* `netx`: the HDF5 layout lava-dl's ``netx`` loads onto Loihi, written from
  the same integers our bit-accurate Loihi model runs;
* `peers`: load a file with the real package's own importer and run it
  (snnTorch, Norse, Rockpool, nirtorch; lava-dl's netx on Lava's simulator,
  made importable by `lava_dl_compat`).

Every module imports its optional packages lazily, so the rest of hwloop
works without them. See `docs/interop.md`.
"""

from __future__ import annotations

from .nir_io import ImportedNetwork, export_nir, import_nir, network_to_nir, nir_to_network

__all__ = ["export_nir", "import_nir", "network_to_nir", "nir_to_network", "ImportedNetwork"]
