"""Planning (pure core): the walkway network, travel along it, patrol
simulation and response analysis. Standard library and numpy only.

The modules are imported on use; this package runs nothing at import.
"""

from coverwatch.planning.network import (
    ReachField,
    SegmentGrid,
    WalkwayNetwork,
    build_network,
    snap_pairs,
)

__all__ = ["ReachField", "SegmentGrid", "WalkwayNetwork", "build_network", "snap_pairs"]
