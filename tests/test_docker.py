"""The Docker pattern: hardened per-episode containers, the warm pool, and attacks on both.

Every test here runs against a real engine (marker ``simenv_docker``): they skip, saying why,
when none can be reached, and fail instead when ``SIMENV_REQUIRE_DOCKER=1`` (as in CI, where any
skip fails the run anyway: tests/ci_skips.py). Each adversarial test checks that the attack is
contained with a clear error AND that the container (or, once it is gone, the pool) still works
afterwards.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import simenv
from simenv import InfraError, Outcome, Scenario, Task, ToolError, tool
from simenv.parsing import format_tool_call
from simenv.tools.docker import BASE_IMAGE, DockerSandbox, reap
from simenv.tools.docker.container import MANAGED_LABEL, docker_client, run_id
from simenv.tools.docker.pool import live_containers

pytestmark = [pytest.mark.simenv_docker, pytest.mark.usefixtures("base_image")]

TASK = Task("t0", "Go.")


class Box(DockerSandbox):
    """A small sandbox: 128 MiB, 32 processes, a seeded file in the work dir."""

    memory_mb = 128
    pids_limit = 32
    work_mb = 8
    exec_timeout_s = 5.0
    pool_size = 1

    def files(self, rng: np.random.Generator, task: Task) -> dict[str, str | bytes]:
        return {"seed.txt": str(int(rng.integers(0, 10**9))), "bin/data": b"\x00\xff"}


@pytest.fixture
def box() -> Iterator[Box]:
    sandbox = Box()
    sandbox.setup(np.random.default_rng(0), TASK)
    yield sandbox
    sandbox.close()


_CLIENTS: list[Any] = []


def _client() -> Any:
    if not _CLIENTS:
        _CLIENTS.append(docker_client())
    return _CLIENTS[0]


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _assert_usable(sandbox: Box) -> None:
    """The container still answers, and no process of the agent is left in it."""
    result = sandbox.exec("echo alive /proc/[0-9]*")  # the shell expands it: no child process
    assert result.ok and result.stdout.split()[:2] == ["alive", "/proc/1"], result
    assert len(result.stdout.split()) == 3, f"processes left behind: {result.stdout}"


def _assert_pool_healthy() -> None:
    """A fresh episode gets a working container."""
    fresh = Box()
    fresh.setup(np.random.default_rng(1), TASK)
    try:
        _assert_usable(fresh)
    finally:
        fresh.close()


# ----------------------------------------------------------------------------- basics
def test_exec_files_and_state(box: Box) -> None:
    result = box.exec("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.render() == "out\nerr\n[exit code 3]"
    assert box.exec(["python3", "-c", "import sys; print(sys.stdin.read()[::-1])"], stdin="abc")
    box.write_files({"pkg/mod.py": "X = 1\n"})
    assert box.read_file("pkg/mod.py") == "X = 1\n"
    assert box.read_bytes("bin/data") == b"\x00\xff"
    assert set(box.list_files()) == {"bin/data", "pkg/mod.py", "seed.txt"}
    state = box.state()["work"]
    assert state["bin/data"] == {"base64": "AP8="} and state["pkg/mod.py"] == "X = 1\n"
    assert box.state_hash() == box.state_hash()


def test_snapshot_restore_and_archives(box: Box) -> None:
    snap, start = box.snapshot(), box.state_hash()
    box.write_file("seed.txt", "changed")
    box.exec("ln -s seed.txt link && mkdir -p d && echo x > d/y")
    assert box.state_hash() != start
    assert any("seed.txt" in line for line in box.diff(snap))
    box.restore(snap)
    assert box.state_hash() == start
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("in/archive.txt")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"hello"))
    box.put_archive(buffer.getvalue())
    assert box.read_file("in/archive.txt") == "hello"
    with tarfile.open(fileobj=io.BytesIO(box.get_archive(["in/archive.txt"]))) as archive:
        assert archive.getnames() == ["in/archive.txt"]


def test_same_seed_same_state_different_seed_different_state() -> None:
    hashes = []
    for seed in (5, 5, 6):
        sandbox = Box()
        sandbox.setup(np.random.default_rng(seed), TASK)
        hashes.append(sandbox.state_hash())
        sandbox.close()
    assert hashes[0] == hashes[1] != hashes[2]


def test_container_is_created_hardened(box: Box) -> None:
    config = _client().api.inspect_container(box.container_id)
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] == 128 * 2**20 and host["MemorySwap"] == 128 * 2**20
    assert host["PidsLimit"] == 32 and host["NanoCpus"] == 10**9 and host["IpcMode"] == "none"
    assert host["LogConfig"]["Type"] == "none"
    assert config["Config"]["User"] == "1000:1000"
    labels = config["Config"]["Labels"]
    assert labels[MANAGED_LABEL] == "1" and labels["simenv.run"] == run_id()
    inside = box.exec("id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status")
    assert inside.stdout.split() == ["1000", "CapEff:", "0000000000000000", "NoNewPrivs:", "1"]


def _exec_events(container_id: str, since: int) -> list[str]:
    """The engine's ``exec_*`` events for the container from ``since`` until now."""
    until = int(time.time()) + 1  # the events call returns once the engine's clock reaches it
    events = _client().api.events(
        since=since, until=until, filters={"container": container_id}, decode=True
    )
    return [e["Action"] for e in events if str(e.get("Action", "")).startswith("exec_")]


def test_a_tool_call_is_a_round_trip_not_an_exec(box: Box) -> None:
    # The mechanism, not a time: the engine records every `docker exec` (exec_create, then
    # exec_start and exec_die). File tools and commands go to the container's PID 1 over its
    # attached streams, so the engine sees no exec at all.
    since = int(time.time()) - 1
    box.read_file("seed.txt")
    box.write_files({"note.txt": "hi"})
    assert box.list_files() and box.exec("echo hi").stdout == "hi\n"
    assert box.run_python("print(1 + 1)").stdout == "2\n"
    assert _exec_events(box.container_id, since) == []
    processes = _client().api.top(box.container_id)["Processes"]
    assert len(processes) == 1, processes  # the runner alone: nothing was left running
    # The control: one real `docker exec` shows in the same query.
    created = _client().api.exec_create(box.container_id, ["true"])
    _client().api.exec_start(created["Id"])
    assert "exec_create" in " ".join(_exec_events(box.container_id, since))


# ----------------------------------------------------------------------------- attacks
def test_network_egress_is_impossible(box: Box) -> None:
    attempt = box.run_python(
        "import socket\n"
        "for target in [('1.1.1.1', 53), ('8.8.8.8', 443), ('172.17.0.1', 2375)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=2)\n"
        "        print('CONNECTED', target)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('deb.debian.org', 80)\n"
        "    print('RESOLVED')\n"
        "except OSError:\n"
        "    print('no dns')\n"
    )
    assert "CONNECTED" not in attempt.stdout and "RESOLVED" not in attempt.stdout
    assert attempt.stdout.count("refused 101") == 3 and "no dns" in attempt.stdout
    assert box.exec("ls /sys/class/net").stdout.split() == ["lo"]
    _assert_usable(box)


def test_fork_bomb_is_stopped(box: Box) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    start = time.monotonic()
    with pytest.raises(ToolError, match="did not finish within 2 s") as caught:
        box.run_python(bomb, timeout_s=2)
    assert "every process it started was killed" in str(caught.value)
    assert time.monotonic() - start < 15
    _assert_usable(box)
    _assert_pool_healthy()


def test_memory_bomb_is_contained(box: Box) -> None:
    one = box.run_python("data = bytearray(2 * 1024**3)")
    assert not one.ok and "MemoryError" in one.stderr
    # Several processes, each under the per-process limit, together over the container's.
    many = box.run_python(
        "import os, time\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        block = bytearray(60 * 1024**2)\n"
        "        block[::4096] = b'x' * len(block[::4096])\n"
        "        time.sleep(5)\n"
        "        os._exit(0)\n"
        "for _ in range(4):\n"
        "    os.wait()\n"
        "block = bytearray(60 * 1024**2)\n"
        "block[::4096] = b'x' * len(block[::4096])\n"
        "print('survived')\n",
        timeout_s=20,
    )
    assert many.oom_killed, many
    _assert_usable(box)
    _assert_pool_healthy()


def test_infinite_loop_is_stopped(box: Box) -> None:
    start = time.monotonic()
    with pytest.raises(ToolError, match="did not finish within 1 s"):
        box.exec(["python3", "-c", "while True: pass"], timeout_s=1)
    assert time.monotonic() - start < 10
    with pytest.raises(ToolError, match="blocking read"):
        box.exec("sleep 100 & wait", timeout_s=1)
    with pytest.raises(ToolError, match="did not finish"):
        box.exec("exec >&- 2>&-; sleep 100", timeout_s=1)  # closes its output, keeps running
    _assert_usable(box)


def test_writing_outside_the_work_dir_fails(box: Box) -> None:
    targets = ["/etc/x", "/x", "/tmp/x", "/var/tmp/x", "/home/x", "/dev/shm/x", "/dev/mqueue/x"]
    result = box.exec(" ; ".join(f"touch {t} 2>/dev/null && echo WROTE {t}" for t in targets))
    assert "WROTE" not in result.stdout
    for path in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ToolError, match="outside the work directory"):
            box.write_file(path, "x")
    box.exec("ln -s /etc escape")
    with pytest.raises(ToolError, match="via a symlink"):
        box.write_file("escape/x", "x")
    # the work dir itself is size-limited
    full = box.exec("head -c 20000000 /dev/zero > big; echo $?")
    assert full.stdout.strip() != "0" and "No space left" in full.stderr
    box.exec("rm big")
    _assert_usable(box)


def test_host_files_cannot_be_read(box: Box, tmp_path: Path) -> None:
    secret = tmp_path / f"secret-{uuid.uuid4().hex}"
    secret.write_text("host secret")
    probe = box.exec(
        f"cat {secret} 2>&1; ls /var/run/docker.sock /run/docker.sock 2>&1; "
        "cat /proc/1/environ 2>&1; ls /proc/1/fd 2>&1; cat /etc/shadow 2>&1"
    )
    assert "host secret" not in probe.stdout
    assert probe.stdout.count("No such file") == 3 and probe.stdout.count("denied") == 3
    with pytest.raises(ToolError, match="outside the work directory"):
        box.read_file("../etc/passwd")
    box.exec("ln -s /etc/passwd pw")
    with pytest.raises(ToolError):
        box.read_file("pw")
    _assert_usable(box)


def test_output_is_capped(box: Box) -> None:
    result = box.exec("yes | head -c 5000000")
    assert result.truncated and len(result.stdout) == Box.output_limit_bytes
    assert result.render(limit_chars=100).count("output cut") == 1
    _assert_usable(box)


def test_a_missing_program_is_the_agents_error(box: Box) -> None:
    with pytest.raises(ToolError, match="could not start 'no-such-program'"):
        box.exec(["no-such-program"])


@pytest.mark.parametrize("timeout_s", [math.nan, math.inf, -1.0, 0, 1e12, "soon", None])
def test_a_time_limit_that_is_not_seconds_is_refused_and_the_channel_lives(
    box: Box, timeout_s: Any
) -> None:
    # Issue 14: a NaN killed the container's channel and 1e12 raised OverflowError.
    if timeout_s is None:
        assert box.exec("true", timeout_s=timeout_s).ok  # None: the class default
        return
    with pytest.raises(ToolError, match="timeout_s must be a number of seconds above 0"):
        box.exec("true", timeout_s=timeout_s)
    _assert_usable(box)


# ------------------------------------------------------------------------- what the agent leaves
def _deep(levels: int) -> str:
    return "/".join(["d"] * levels)


def test_a_deep_tree_is_read_listed_snapshotted_and_restored(box: Box) -> None:
    # Issue 14: 1,200 nested directories made the next file tool raise InfraError (a
    # RecursionError in the container's server), voiding the episode.
    deep = _deep(1_200)
    made = box.exec(f"mkdir -p {deep} && echo bottom > {deep}/f.txt && echo ok", timeout_s=30)
    assert made.stdout == "ok\n", made
    assert box.list_files()[f"{deep}/f.txt"] == 7
    assert box.read_file(f"{deep}/f.txt") == "bottom\n"
    box.write_file(f"{_deep(1_300)}/g.txt", "deeper")
    snap = box.snapshot()
    assert snap["work"][f"{deep}/f.txt"] == "bottom\n"
    box.restore(snap)  # removes the tree and writes it back, without recursion
    assert box.read_file(f"{_deep(1_300)}/g.txt") == "deeper"
    fresh = Box()
    fresh.setup(np.random.default_rng(0), TASK)
    try:
        fresh.restore(snap)
        assert fresh.state() == box.state()
    finally:
        fresh.close()
    _assert_usable(box)


@pytest.mark.parametrize(
    ("command", "refusal"),
    [
        ("mkfifo pipe", None),  # never opened: a FIFO is not part of the state
        ("truncate -s 4G sparse", "more than the work directory holds"),
        ("head -c 3000000 /dev/zero > a && for i in 1 2 3 4; do ln a b$i; done", "hard links"),
        ("echo x > locked && chmod 000 locked && mkdir shut && chmod 000 shut", None),
        ("for i in $(seq 20000); do echo -n > f$i || break; done 2>/dev/null; ls | wc -l", None),
    ],
)
def test_what_the_agent_leaves_is_a_tool_error_at_worst(
    box: Box, command: str, refusal: str | None
) -> None:
    box.exec(command, timeout_s=30)
    for read in (box.list_files, box.state, box.snapshot):
        try:
            read()
        except ToolError as exc:  # the agent's doing: never InfraError
            assert refusal is not None and refusal in str(exc), exc
        else:
            assert refusal is None or read.__name__ == "list_files", f"{read.__name__} read it"
    with pytest.raises(ToolError, match=r"not a regular file|no file"):
        box.read_file("pipe")
    box.exec("chmod -R u+rwx . ; rm -rf ./*")
    _assert_usable(box)


def test_a_file_name_that_is_not_utf8_is_shown_escaped_and_kept_exactly(box: Box) -> None:
    box.exec("printf 'x' > \"$(printf 'bad\\377name')\"; ln -s \"$(printf '\\376')\" link")
    assert box.list_files()["bad\\xffname"] == 1
    work = box.state()["work"]
    assert work["bad\\xffname"] == {"base64": "eA==", "path_base64": "YmFk/25hbWU="}
    assert work["link"] == {"symlink": "\\xfe", "target_base64": "/g=="}
    json.dumps(work).encode()  # writable as UTF-8
    snap, digest = box.snapshot(), box.state_hash()
    box.exec("rm -f ./*")
    box.restore(snap)
    assert box.state_hash() == digest
    names = box.exec("ls | od -An -c").stdout.split()
    assert names[:8] == ["b", "a", "d", "377", "n", "a", "m", "e"], names


def test_proc_mounts_exposes_only_what_cannot_be_hidden_unprivileged(box: Box) -> None:
    # /proc/mounts is a link to /proc/self/mounts, one file per process: no fixed path to mask,
    # and runc refuses mounts over /proc files. What the kernel shows there, read-only: the
    # overlay root's options (the engine's data root, layer ids) and the source of Docker's
    # /etc/hostname bind mount. No other host path is mounted; the cgroup namespace is private
    # and the hostname is not the container id.
    info = box.exec("cat /proc/self/mountinfo").stdout.splitlines()
    pseudo = {"proc", "tmpfs", "devpts", "mqueue", "sysfs", "cgroup", "cgroup2", "shm"}
    from_host = [line.split() for line in info if line.split(" - ")[1].split()[0] not in pseudo]
    assert sorted((fields[4], fields[5].split(",")[0]) for fields in from_host) == [
        ("/", "ro"),
        ("/etc/hostname", "ro"),
    ], from_host
    assert all("/docker/" not in line for line in info if " - cgroup" in line)
    assert box.exec("hostname").stdout == "sandbox\n"


# ----------------------------------------------------------------------------- episodes
class Shell(DockerSandbox):
    memory_mb = 128
    pids_limit = 32
    work_mb = 8
    pool_size = 1


@tool(effect="write", provenance="docker")
def shell(box: Shell, command: str) -> str:
    """Run a shell command in the working directory.

    Args:
        command: The command line, e.g. "ls".
    """
    return box.exec(command, timeout_s=2).render()


def _file_written(o: Outcome) -> float:
    return 1.0 if "done.txt" in o.final.list_files() else 0.0


SHELL = Scenario(
    id="test/Shell-v1",
    system_prompt="Create done.txt.",
    tools=[shell],
    tasks=[TASK],
    sandbox=Shell,
    reward=_file_written,
    evaluate=_file_written,
    oracle=lambda task, state: [format_tool_call("shell", {"command": "touch done.txt"}), "ok"],
)


def _kill(sandbox: Any) -> None:
    _client().api.kill(sandbox.container_id)


def test_an_episode_runs_and_its_container_is_destroyed() -> None:
    env = simenv.make(SHELL)
    episode = simenv.rollout(env, simenv.rollouts.policies.Oracle(), seed=0)
    assert episode.valid and episode.reward == 1.0
    assert episode.steps[0].tool_results[0].provenance == "docker"
    container = env.unwrapped.state.container_id
    assert live_containers() == [container]
    env.close()
    assert live_containers() == []
    Shell.pool().drain()
    assert not _client().api.containers(all=True, filters={"id": container})


def test_a_container_killed_mid_episode_voids_the_episode() -> None:
    env = simenv.make(SHELL)
    env.reset(seed=0)
    _kill(env.unwrapped.state)
    _, reward, terminated, _, info = env.step(format_tool_call("shell", {"command": "ls"}))
    assert terminated and not info["valid"] and reward == 0.0
    assert "stopped answering" in info["error"] and "nothing for the agent" in info["error"]
    assert not env.unwrapped.episode().valid
    # the pool is fine: the next episode gets a working container
    episode = simenv.rollout(env, simenv.rollouts.policies.Oracle(), seed=1)
    assert episode.valid and episode.reward == 1.0
    env.close()


def test_a_container_killed_before_scoring_voids_the_episode() -> None:
    env = simenv.make(SHELL)
    env.reset(seed=0)
    env.step(format_tool_call("shell", {"command": "touch done.txt"}))
    _kill(env.unwrapped.state)
    _, reward, terminated, _, info = env.step("Done.")
    assert terminated and not info["valid"] and reward == 0.0 and info["evaluation"] is None
    env.close()


def test_a_timeout_is_a_tool_error_and_the_episode_goes_on() -> None:
    env = simenv.make(SHELL)
    env.reset(seed=0)
    observation, _, terminated, _, _ = env.step(
        format_tool_call("shell", {"command": "while :; do :; done"})
    )
    assert not terminated and observation[-1]["content"].startswith("Error: the command did not")
    _, reward, *_ = env.step(format_tool_call("shell", {"command": "touch done.txt"}))
    _, reward, terminated, _, info = env.step("Done.")
    assert terminated and info["valid"] and reward == 1.0
    env.close()


def _done_in_state(o: Outcome) -> float:
    return 1.0 if "done.txt" in o.final.state()["work"] else 0.0


STATEFUL = dataclasses.replace(
    SHELL, id="test/ShellState-v1", reward=_done_in_state, evaluate=_done_in_state
)


@pytest.mark.parametrize(
    ("command", "reward", "unscored"),
    [
        (f"mkdir -p {_deep(1_200)} && touch done.txt", 1.0, None),  # issue 14: was invalid
        ("touch done.txt \"$(printf 'bad\\377name')\"", 1.0, None),
        ("touch done.txt && truncate -s 4G sparse", 0.0, "more than the work directory holds"),
    ],
)
def test_what_the_agent_leaves_never_voids_its_episode(
    command: str, reward: float, unscored: str | None
) -> None:
    env = simenv.make(STATEFUL)
    env.reset(seed=0)
    env.step(format_tool_call("shell", {"command": command}))
    env.step(format_tool_call("shell", {"command": "ls"}))
    _, got, terminated, _, info = env.step("Done.")
    assert terminated and info["valid"] and got == reward, info
    episode = env.unwrapped.episode()
    assert episode.valid
    if unscored is None:
        assert "unscored" not in episode.metadata
    else:
        assert unscored in episode.metadata["unscored"]
    line = episode.to_json()
    line.encode()  # writable as UTF-8
    assert simenv.Episode.from_json(line).reward == reward
    env.close()


def test_a_missing_image_is_an_infra_error_that_says_how_to_fix_it() -> None:
    class Missing(DockerSandbox):
        image = "simenv/no-such-image:1"
        start_timeout_s = 30.0

    with pytest.raises(InfraError, match="simenv docker build-base"):
        Missing().setup(np.random.default_rng(0), TASK)


def test_an_unreachable_engine_is_an_infra_error_that_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(InfraError, match=r"Start dockerd .* or point DOCKER_HOST"):
        docker_client()


# ----------------------------------------------------------------------------- cleanup
def _leftover(owner: str) -> str:
    """A running container labelled as simenv's, owned by ``owner`` (host:pid:start)."""
    client = _client()
    created = client.api.create_container(
        BASE_IMAGE,
        command=["sleep", "60"],
        labels={MANAGED_LABEL: "1", "simenv.run": "test-reap", "simenv.owner": owner},
        host_config=client.api.create_host_config(network_mode="none"),
    )
    client.api.start(created["Id"])
    return str(created["Id"])


def test_reap_removes_what_dead_runs_left_and_keeps_live_ones() -> None:
    dead = _leftover(f"{socket.gethostname()}:999999:1")
    other_host = _leftover("some-other-host:1:1")
    client = _client()
    mine = Box()
    mine.setup(np.random.default_rng(0), TASK)
    try:
        removed = reap()
        assert dead in removed and other_host not in removed
        assert mine.container_id not in removed
        _assert_usable(mine)
        assert other_host in reap(run="test-reap")
        assert not client.api.containers(all=True, filters={"label": "simenv.run=test-reap"})
    finally:
        mine.close()
        reap(run="test-reap")


def _simenv(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "simenv.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_simenv_docker_reap_from_the_command_line() -> None:
    dead = _leftover(f"{socket.gethostname()}:999999:1")
    other_host = _leftover("some-other-host:1:1")
    mine = Box()  # owned by this (live) process: a reap from another process keeps it
    mine.setup(np.random.default_rng(0), TASK)
    client = _client()

    def exists(container_id: str) -> bool:
        return bool(client.api.containers(all=True, filters={"id": container_id}))

    try:
        done = _simenv("docker", "reap")
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(r"removed [1-9]\d* containers?\n", done.stdout), done.stdout
        assert not exists(dead) and exists(other_host) and exists(mine.container_id)
        _assert_usable(mine)
        done = _simenv("docker", "reap", "--run", "test-reap")
        assert (done.returncode, done.stdout) == (0, "removed 1 container\n")
        assert not exists(other_host)
    finally:
        mine.close()
        reap(run="test-reap")


def test_nothing_is_left_after_the_pools_shut_down() -> None:
    from simenv.tools.docker import shutdown_pools

    sandbox = Box()
    sandbox.setup(np.random.default_rng(0), TASK)
    sandbox.close()
    shutdown_pools()
    mine = _client().api.containers(all=True, filters={"label": f"simenv.run={run_id()}"})
    assert mine == []


# ----------------------------------------------------------------------------- simenv check
class LeakyShell(Shell):
    """Deliberately broken: close() forgets to give the container back."""

    def close(self) -> None:
        pass


def test_check_resources_passes_when_containers_are_given_back() -> None:
    from simenv.checks import CheckOptions, check_resources

    result = check_resources(SHELL, CheckOptions.for_mode(fast=True))
    assert result.status == "pass", result.message


def test_check_resources_catches_a_leaked_container() -> None:
    from simenv.checks import CheckOptions, check_resources

    leaky = dataclasses.replace(SHELL, id="test/LeakyShell-v1", sandbox=LeakyShell)
    pool = LeakyShell.pool()
    before = set(pool.in_use())
    try:
        result = check_resources(leaky, CheckOptions.for_mode(fast=True))
        assert result.status == "fail"
        assert "resources still held after close()" in result.message
        assert "container:" in result.message and "LeakyShell.close()" in result.message
    finally:  # give back what the broken sandbox kept, so the pool is clean for other tests
        for cid in set(pool.in_use()) - before:
            pool.release(pool._in_use[cid])
