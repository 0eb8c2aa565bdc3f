"""``ServerLimits``: the retrieval server's request limits, now the ``serve`` section of the config
tree (:mod:`r1searcher.settings.serve`); named here too for the server modules that import it."""

from r1searcher.settings.serve import ServerLimits

__all__ = ["ServerLimits"]
