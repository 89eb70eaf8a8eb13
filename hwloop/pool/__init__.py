"""Many boards and sweeps on Ray: a board pool and `hwloop sweep` (docs/sweeps.md).

`config` (the pool file), `health` (the check before every lease), `boards`
(one Ray actor per board: `BoardPool`, `BoardWorker`), `rebind` (a session
moved to another board), `sweep` (the grid, the scheduler, the summary).
Ray is imported only when a pool starts.
"""

from .boards import BoardPool, BoardWorker
from .config import Board, PoolConfig, PoolConfigError, PoolError
from .health import check_board
from .rebind import RebindError, bindings, rebind_session
from .sweep import Sweep, SweepError, expand_grid

__all__ = ["Board", "PoolConfig", "PoolConfigError", "PoolError", "BoardPool", "BoardWorker", "check_board",
           "RebindError", "rebind_session", "bindings", "Sweep", "SweepError", "expand_grid"]
