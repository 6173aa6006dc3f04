"""Tools: typed Python functions the agent calls, and the patterns that answer their calls.

- ``base``: the ``@tool`` decorator, :class:`~simenv.tools.base.Tool` and the one plug-in point
  for backends, :class:`~simenv.tools.base.ToolBackend` (a tool call in, a result out);
- ``sandbox``: the seeded stateful sandbox (per-episode state, snapshot, state hash, diff);
- ``replay/``: recorded replay (cassettes for function calls, vcrpy for HTTP, a stand-in
  service to record from);
- ``sqlite/``: verifiable execution in a private SQLite database per episode;
- ``docker/``: verifiable execution in a hardened container per episode.

The pattern packages never import each other (an import-linter contract); each builds on
``base`` and ``sandbox`` only.
"""
