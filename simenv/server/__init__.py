"""The HTTP rollout server and its client: agents that run elsewhere plug in over HTTP.

``simenv serve`` (or :func:`serve`) puts registered scenarios behind a small JSON API;
:class:`RemoteEnv` is the adapter that turns one served environment back into a Gymnasium env,
so :func:`simenv.rollout` and every policy work on it as on a local one; :class:`RemotePool` is
the runner's pool of such environments (``simenv run --server``, the trainer's ``env_server``).
Standard library only.

=======  ========================  =====================================================
method   path                      what it does
=======  ========================  =====================================================
GET      /health                   ``{"ok": true, "simenv": VERSION, "max_envs", "live"}``
GET      /scenarios                the served scenarios: tools, max_turns, split sizes
GET      /openapi.json             the OpenAPI 3 document of all of this
GET      /envs                     this token's environments
POST     /envs                     create an environment of a served scenario
POST     /envs/ENV_ID/reset        ``reset(seed=..., options=...)``
POST     /envs/ENV_ID/step         ``step(action)``
POST     /envs/ENV_ID/end          end the episode now, scored as it stands (a time limit)
GET      /envs/ENV_ID/episode      the episode record (the JSON of a JSONL line)
GET      /envs/ENV_ID/oracle       the gold turns (only on a server started with ``--oracle``)
DELETE   /envs/ENV_ID              close it (its sandbox, database or container)
=======  ========================  =====================================================

Every request carries ``Authorization: Bearer TOKEN`` and each environment belongs to the
token that created it (:mod:`simenv.server.auth`, shared with the agent gateway).
:mod:`simenv.server.app` holds the routes and the server, :mod:`simenv.server.transport` the
HTTP (an asyncio front, a bounded worker pool, limits and timeouts), :mod:`simenv.server.openapi`
the published document, :mod:`simenv.server.envs` the table of environments and
:mod:`simenv.server.client` the client; docs/server.md has examples and the security notes.
"""

from simenv.server.app import RolloutServer, make_server, serve
from simenv.server.client import RemoteEnv
from simenv.server.pool import RemotePool

__all__ = ["RemoteEnv", "RemotePool", "RolloutServer", "make_server", "serve"]
