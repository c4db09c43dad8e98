"""Many peers: the composition root, the command line, launcher, discovery, sync and fitness.

The public API is re-exported here; implementation lives in private modules.
"""

from colony._root import RunningNode as RunningNode
from colony._root import run_node_forever as run_node_forever
from colony._root import serve_node as serve_node
from colony._root import setup_logging as setup_logging
from colony._service import ColonyService as ColonyService

__all__ = [
    "ColonyService",
    "RunningNode",
    "run_node_forever",
    "serve_node",
    "setup_logging",
]
