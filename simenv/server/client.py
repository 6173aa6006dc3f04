"""``RemoteEnv``: an environment served by ``simenv serve``, as a local Gymnasium env.

It keeps the local contract exactly: ``reset(*, seed=None, options=None) -> (observation,
info)``, ``step(action) -> (observation, reward, terminated, truncated, info)``, ``close()``,
plus ``episode()`` (the :class:`~simenv.types.Episode` record) and ``oracle()`` (the scenario's
gold turns, computed on the server beside the state, from a server started with ``--oracle``),
so :func:`simenv.rollout` plays it with any policy, the oracle included::

    with RemoteEnv("http://127.0.0.1:8000", "support/Refunds-v1") as env:
        episode = simenv.rollout(env, Oracle(), seed=7)

Every request carries ``Authorization: Bearer TOKEN``: the ``token`` argument, else the
environment variable ``SIMENV_SERVER_TOKEN`` (a server with authentication switched off needs
none). The environment belongs to that token: another token cannot see it.

One HTTP/1.1 connection is kept open for every request of the environment; if the server
closed it while it sat idle, the request is sent once more on a new connection.

=======================  ===========================================================
server answer            raised here
=======================  ===========================================================
409                      :class:`~simenv.errors.ResetNeeded` (step before reset or after the end)
400 ``ScenarioError``    :class:`~simenv.errors.ScenarioError` (a bad seed or task id)
404 ``UnknownScenario``  :class:`~simenv.errors.RegistrationError` (the server lists its ids)
401                      :class:`~simenv.errors.InfraError` saying the token is missing or wrong
anything else            :class:`~simenv.errors.InfraError` (the server is unreachable, out of
                         capacity, lost the environment or failed), with the server's message
=======================  ===========================================================
"""

from __future__ import annotations

import json
from dataclasses import replace
from http.client import HTTPConnection, HTTPException, HTTPSConnection, RemoteDisconnected
from typing import Any
from urllib.parse import urlsplit

import gymnasium as gym

from simenv.errors import InfraError, RegistrationError, ResetNeeded, ScenarioError
from simenv.server.auth import CLIENT_TOKEN_ENV, client_token
from simenv.spaces import AssistantAction, ChatObservation
from simenv.tools.base import json_default
from simenv.types import Action, Episode, Message

__all__ = ["RemoteEnv"]

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=json_default).encode
# For an action holding a lone surrogate: its \udXXX escapes are valid JSON, and the server's
# environment replaces the surrogates as a local one does.
_ENCODE_ASCII = json.JSONEncoder(separators=(",", ":"), default=json_default).encode
_STALE = (RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
"""What a kept-alive connection the server already closed raises on its next request."""


def _encode(payload: Any) -> bytes:
    """A request body as UTF-8 JSON (escaped ASCII where the text is not valid Unicode)."""
    try:
        return _ENCODE(payload).encode()
    except UnicodeEncodeError:
        return _ENCODE_ASCII(payload).encode()


class RemoteEnv(gym.Env[list[Message], Action]):
    """An environment that lives in a simenv rollout server (``simenv serve``).

    Creating it creates the environment on the server (``POST /envs``); :meth:`close` deletes
    it there. Use it as a context manager, or close it: the server holds at most ``max_envs``.

    Attributes:
        base_url: The server, e.g. ``http://127.0.0.1:8000``.
        scenario_id: The scenario the server runs.
        env_id: The server's id of this environment.
        tools: The OpenAI tool schemas of the scenario.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's API

    def __init__(
        self,
        base_url: str,
        scenario_id: str,
        *,
        token: str | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        """Create an environment of ``scenario_id`` on the server at ``base_url``.

        Args:
            base_url: ``http://HOST:PORT`` (a path prefix is kept, for a reverse proxy).
            scenario_id: A scenario the server serves (``GET /scenarios`` lists them).
            token: The bearer token; None reads ``SIMENV_SERVER_TOKEN`` (unset: none is sent).
            timeout_s: Seconds to wait for one answer (a step runs the tools on the server).

        Raises:
            RegistrationError: The server does not serve ``scenario_id``.
            InfraError: The server cannot be reached or refused (e.g. ``max_envs`` reached, or
                the token is missing or wrong).
        """
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must look like http://HOST:PORT, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s
        token = client_token(token)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._connection: HTTPConnection | None = None
        self._reused = False
        self._closed = False
        self.env_id = ""
        try:
            created = self._call("POST", "/envs", {"scenario": scenario_id})
        except BaseException:
            self._disconnect()
            raise
        self.env_id = str(created["env_id"])
        self.scenario_id = str(created["scenario"])
        self.tools: list[dict[str, Any]] = list(created["tools"])
        self.observation_space = ChatObservation()
        self.action_space = AssistantAction([t["function"]["name"] for t in self.tools])

    # ------------------------------------------------------------------ the contract
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Start an episode on the server; the same contract as ``MultiTurnEnv.reset``.

        Returns:
            ``(observation, info)``: the opening messages, and ``info`` with ``scenario_id``,
            ``task_id``, ``seed`` (the one used), ``episode_id``, ``max_turns`` and ``tools``.
        """
        body = {"seed": seed, "options": options}
        answer = self._call("POST", f"/envs/{self.env_id}/reset", body)
        return list(answer["observation"]), dict(answer["info"])

    def step(self, action: Action) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Play one assistant turn on the server; the same contract as ``MultiTurnEnv.step``.

        Args:
            action: The assistant's raw text or an assistant message dict. A malformed tool call
                is answered with a tool error message, as locally.

        Returns:
            ``(observation, reward, terminated, truncated, info)``: only the NEW messages, the
            turn's reward (0 until the end unless the scenario rewards turns; see
            ``MultiTurnEnv.step``), whether the agent ended the episode, whether the turn limit
            cut it, and ``info`` (``turn``; at the end ``termination``, ``valid``, ``evaluation``,
            ``reward_components``).

        Raises:
            ResetNeeded: Called before ``reset`` or after the episode ended.
        """
        answer = self._call("POST", f"/envs/{self.env_id}/step", {"action": action})
        return (
            list(answer["observation"]),
            float(answer["reward"]),
            bool(answer["terminated"]),
            bool(answer["truncated"]),
            dict(answer["info"]),
        )

    def close(self) -> None:
        """Delete the environment on the server (its sandbox is released) and disconnect.

        Safe to call more than once. An environment the server already dropped (reaped when
        idle) or a server that is gone (stopping closed it) counts as closed.

        Raises:
            InfraError: The server failed to close it (HTTP 500).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self.env_id:
                self._call("DELETE", f"/envs/{self.env_id}", accept=(404, 503))
        except InfraError as exc:
            if not isinstance(exc.__cause__, OSError | HTTPException):
                raise  # the server answered with a failure; an unreachable one is gone
        finally:
            self._disconnect()

    # ------------------------------------------------------------------ records
    def alive(self) -> bool:
        """Whether the server still holds this environment (it reaps idle ones)."""
        try:
            return self._call("GET", f"/envs/{self.env_id}/episode", accept=(404,)) is not None
        except ResetNeeded:  # there, but without an episode yet
            return True
        except InfraError:
            return False

    def end(self) -> tuple[float, dict[str, Any]]:
        """End the running episode now, scored as it stands (``termination="time_limit"``).

        What the runner does to an episode that ran past its wall-time limit.

        Returns:
            ``(reward, info)``: the outcome reward (added to the last turn's reward) and the
            end-of-episode info fields.

        Raises:
            ResetNeeded: No episode is running.
        """
        answer = self._call("POST", f"/envs/{self.env_id}/end", {"termination": "time_limit"})
        return float(answer["reward"]), dict(answer["info"])

    def episode(self, policy: dict[str, Any] | None = None) -> Episode:
        """The record of the current (usually finished) episode, as the server keeps it.

        Args:
            policy: Stored in the record's ``policy`` field (the server does not know it).
        """
        record = Episode.from_dict(self._call("GET", f"/envs/{self.env_id}/episode"))
        return record if policy is None else replace(record, policy=dict(policy))

    def oracle(self) -> list[Action]:
        """The gold turns for this episode, computed on the server (started with ``--oracle``)."""
        return list(self._call("GET", f"/envs/{self.env_id}/oracle")["actions"])

    # ------------------------------------------------------------------ HTTP
    def _connect(self) -> HTTPConnection:
        if self._connection is None:
            kind = HTTPSConnection if self._https else HTTPConnection
            self._connection = kind(self._host, self._port, timeout=self.timeout_s)
            self._reused = False
        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _call(
        self, method: str, path: str, payload: Any = None, *, accept: tuple[int, ...] = ()
    ) -> Any:
        """One request; the answer's JSON, or the matching simenv error (not for ``accept``)."""
        body = None if payload is None else _encode(payload)
        headers = dict(self._auth)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for _ in range(2):
            connection, reused = self._connect(), self._reused
            try:
                connection.request(method, self._prefix + path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except _STALE as exc:
                self._disconnect()
                if reused:  # the server closed the idle connection: send it again, once
                    continue
                raise self._unreachable(exc) from exc
            except (OSError, HTTPException) as exc:
                self._disconnect()
                raise self._unreachable(exc) from exc
            self._reused = True
            if response.will_close:
                self._disconnect()
            break
        if response.status in accept:
            return None
        return self._decode(method, path, response.status, data)

    def _unreachable(self, exc: BaseException) -> InfraError:
        return InfraError(
            f"cannot reach the simenv server at {self.base_url}: {type(exc).__name__}: {exc}; "
            "is `simenv serve` running there, and is the address right?"
        )

    def _decode(self, method: str, path: str, status: int, data: bytes) -> Any:
        try:
            answer = json.loads(data) if data else None
        except ValueError:
            answer = None
        if status < 400:
            if answer is None:
                where = f"{method} {self.base_url}{path}"
                raise InfraError(f"{where} answered {data[:200]!r}, not JSON")
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        kind = str(error.get("type", "")) if isinstance(error, dict) else ""
        message = str(error.get("message", "")) if isinstance(error, dict) else ""
        text = f"{message or data[:200]!r} ({method} {self.base_url}{path}: HTTP {status})"
        if status == 401:
            how = f"pass token= or set {CLIENT_TOKEN_ENV}" if not self._auth else "check it"
            raise InfraError(f"the server refused the token: {text}; {how}")
        if status == 409:
            raise ResetNeeded(text)
        if kind == "ScenarioError":
            raise ScenarioError(text)
        if kind == "UnknownScenario":
            raise RegistrationError(text)
        raise InfraError(text)
