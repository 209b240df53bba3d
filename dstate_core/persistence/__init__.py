"""Storage of a node's own shards: the backend port, the shipped backends, incarnations.

:class:`StatePersistence` is what a backend provides (``save``/``load``);
:class:`FilePersistence` and :class:`SqlitePersistence` are the shipped ones,
sharing one checksummed record format; :class:`IncarnationFile` keeps a node's
last incarnation so a fresh start never reuses one. The engine never calls a
backend: the shell does, when the engine asks (see ``docs/persistence.md``).
"""

from ..model._persistence import StatePersistence
from ._file import FilePersistence
from ._incarnations import IncarnationFile
from ._own_shard import load_or_fresh, save_or_raise
from ._sqlite import SqlitePersistence

__all__ = [
    "FilePersistence",
    "IncarnationFile",
    "SqlitePersistence",
    "StatePersistence",
    "load_or_fresh",
    "save_or_raise",
]
