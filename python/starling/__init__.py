"""starling from Python: read a model file, or talk to a server.

    starling.Model(path, journal=None)    the model file by mmap, with the server's answers
    starling.Client(host, port, password) a starling server over redis-py
    starling.ShardedClient(nutcracker_yml) user-sharded servers, routed as twemproxy routes
    starling.Journal(path)                the records of a journal file

Every question returns a list of (id, score) tuples (str, float), best first,
as a starling.Result, which also carries .source. docs/PYTHON.md is the guide.
"""
from ._common import Result, StarlingError
from .journal import Journal
from .model import Model

__version__ = "0.1.0"
__all__ = ["Model", "Journal", "Result", "StarlingError", "Client", "ShardedClient", "__version__"]


def __getattr__(name):
    # The clients need redis-py; Model and Journal do not.
    if name == "Client":
        from .client import Client
        return Client
    if name == "ShardedClient":
        from .shard import ShardedClient
        return ShardedClient
    raise AttributeError(f"module 'starling' has no attribute {name!r}")
