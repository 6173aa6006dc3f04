"""Abuse of the Docker sandbox through a scenario's own tools: what holds, what breaks.

Each attempt is one episode of ``code/Repair-v1``: the attack goes in through the agent's
``run_python(code)`` tool, then the agent's other tools run (``list_files``, ``read_file``,
``write_file``), then one more ``run_python`` checks the container still answers, and the
episode ends with an answer. An attempt **holds** when the attack's own check passes (no
network, nothing written outside the work dir ...), the tools that follow answer (an error
message at worst), the episode is valid, its reward is a number, and ``Episode.to_json()``
writes it as UTF-8. Anything else (an exception out of ``step``, an invalid episode, a
check that fails) is **broken**.

Run: ``python bench/adversarial_docker.py [--only NAME]`` (needs a Docker engine and the base
image: ``simenv docker build-base``). About two minutes on 2 cores; prints one line per attempt
and the counts, and exits 1 if anything broke.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from _report import machine

import simenv
from simenv.parsing import format_tool_call

Check = Callable[[str], bool]


def _absent(*words: str) -> Check:
    return lambda out: not any(w in out for w in words)


def _present(*words: str) -> Check:
    return lambda out: all(w in out for w in words)


NEXT = "\n#NEXT\n"  # separates the calls of an attempt that takes several
DEEP = "import os\nfor _ in range({}):\n    os.mkdir('d'); os.chdir('d')\n"
PY_NET = "import socket\ns = socket.socket()\ns.settimeout(2)\n"
ATTEMPTS: list[tuple[str, str, Check]] = [
    ("tcp egress", PY_NET + "s.connect(('1.1.1.1', 80)); print('CONNECTED')", _absent("CONNECTED")),
    ("dns", "import socket\nprint('RESOLVED', socket.gethostbyname('example.com'))",
     _absent("RESOLVED")),
    ("udp egress", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
     "s.sendto(b'x', ('8.8.8.8', 53)); print('SENT')", _absent("SENT")),
    ("raw socket", "import socket\nsocket.socket(socket.AF_INET, socket.SOCK_RAW, 1)\n"
     "print('RAW')", _absent("RAW")),
    ("packet socket", "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
     "print('RAW')", _absent("RAW")),
    ("metadata service", PY_NET + "s.connect(('169.254.169.254', 80)); print('CONNECTED')",
     _absent("CONNECTED")),
    ("capabilities", "print(open('/proc/self/status').read())",
     _present("CapEff:\t0000000000000000", "NoNewPrivs:\t1")),
    ("setuid root", "import os\nos.setuid(0); print('ROOT')", _absent("ROOT")),
    ("mount", "import subprocess\nr = subprocess.run(['mount', '-t', 'tmpfs', 'x', '/mnt'])\n"
     "print('MOUNTED' if r.returncode == 0 else 'no')", _absent("MOUNTED")),
    ("write /etc", "open('/etc/x', 'w').write('x'); print('WROTE')", _absent("WROTE")),
    ("write /tmp", "open('/tmp/x', 'w').write('x'); print('WROTE')", _absent("WROTE")),
    ("write /dev/shm", "open('/dev/shm/x', 'w').write('x'); print('WROTE')", _absent("WROTE")),
    ("write /dev/mqueue", "open('/dev/mqueue/x', 'w').write('x'); print('WROTE')",
     _absent("WROTE")),
    ("docker socket", "import os\nprint([p for p in ('/var/run/docker.sock', '/run/docker.sock')"
     " if os.path.exists(p)] or 'none')", _present("none")),
    ("host shadow", "print(open('/etc/shadow').read())", _absent("root:")),
    ("read PID 1's fds", "import os\nprint(os.listdir('/proc/1/fd'))", _absent("[0")),
    ("ptrace PID 1", "import ctypes\nprint('ATTACHED' if ctypes.CDLL(None).ptrace(16, 1, 0, 0)"
     " == 0 else 'no')", _absent("ATTACHED")),
    ("kill PID 1", "import os, signal\nos.kill(1, signal.SIGKILL); print('sent')", lambda _: True),
    ("kill everything", "import os, signal\nos.kill(-1, signal.SIGKILL)", lambda _: True),
    ("fork bomb", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
     "        pass", _present("did not finish")),
    ("memory bomb", "x = bytearray(8 * 1024**3)", _present("MemoryError")),
    ("memory in many processes", "import os\nfor _ in range(8):\n    if os.fork() == 0:\n"
     "        b = bytearray(150 * 1024**2); b[::4096] = b'x' * len(b[::4096])\n"
     "        os._exit(0)\nfor _ in range(8):\n    os.wait()\nprint('done')", lambda _: True),
    ("disk fill", "f = open('big', 'wb')\nfor _ in range(1000):\n    f.write(b'x' * 2**20)\n"
     "    f.flush()", _present("No space left")),
    ("inode fill", "import os\nfor i in range(100000):\n    open(f'f{i}', 'w').close()",
     _present("No space left")),
    ("infinite loop", "while True: pass", _present("did not finish")),
    ("orphan that outlives the call", "import subprocess\nsubprocess.Popen(['sleep', '600'],"
     " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\nprint('started')",
     _present("started")),
    ("orphan gone at the next call", "import subprocess\nsubprocess.Popen(['sleep', '600'],"
     " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)" + NEXT + "import os\n"
     "print('PIDS', [p for p in os.listdir('/proc') if p.isdigit() and p not in ('1',"
     " str(os.getpid()))])",
     _present("PIDS []")),
    ("closed output, still running", "import os, time\nos.close(1); os.close(2); time.sleep(60)",
     _present("did not finish")),
    ("huge output", "import sys\nsys.stdout.write('x' * 50_000_000)", _present("output cut")),
    ("1,200 nested directories", DEEP.format(1200) + "print('ok')", _present("ok")),
    ("4,000 nested directories", DEEP.format(4000) + "open('f', 'w').write('deep'); print('ok')",
     _present("ok")),
    ("non-UTF-8 file name", "open(b'bad\\xffname', 'w').write('x'); print('ok')", _present("ok")),
    ("non-UTF-8 link target", "import os\nos.symlink(b'\\xfe', b'link'); print('ok')",
     _present("ok")),
    ("FIFO in the work dir", "import os\nos.mkfifo('solution.py.fifo'); os.mkfifo('pipe')\n"
     "print('ok')", _present("ok")),
    ("sparse file", "f = open('sparse', 'wb'); f.truncate(8 * 1024**3); print('ok')",
     _present("ok")),
    ("hard links over the size", "import os\nopen('a', 'wb').write(b'x' * 6_000_000)\n"
     "for i in range(10):\n    os.link('a', f'a{i}')\nprint('ok')", _present("ok")),
    ("unreadable file and dir", "import os\nos.chmod('solution.py', 0)\nos.mkdir('shut')\n"
     "os.chmod('shut', 0); print('ok')", _present("ok")),
    ("symlink out of the work dir", "import os\nos.symlink('/etc', 'etc'); print('ok')",
     _present("ok")),
    ("/proc/mounts host paths", "print(open('/proc/mounts').read())", lambda _: True),
]  # fmt: skip
# Not contained, by design (see docs/reliability.md): /proc/mounts shows the overlay root's
# options; the attempt above records what it shows rather than failing.


def _text(observation: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in observation[1:])


def attempt(env: Any, name: str, code: str, check: Check) -> tuple[bool, str]:
    """Play one episode with the attack; (held, why not)."""
    env.reset(seed=0)
    for part in code.split(NEXT):
        observation, *_ = env.step(format_tool_call("run_python", {"code": part}))
    out = _text(observation)
    if not check(out):
        return False, f"the check failed: {out[:300]!r}"
    follow = [
        format_tool_call("list_files", {}),
        format_tool_call("read_file", {"path": "solution.py"}),
        format_tool_call("write_file", {"path": "note.txt", "content": "x"}),
        format_tool_call("run_python", {"code": "print('alive')"}),
    ]
    for action in follow:
        observation, _, terminated, _, info = env.step(action)
        if terminated:
            return False, f"the episode ended early: {info.get('error')!r:.300}"
    if "alive" not in _text(observation):
        return False, f"the container no longer runs code: {_text(observation)[:300]!r}"
    _, reward, terminated, _, info = env.step("Done.")
    episode = env.unwrapped.episode()
    if not (terminated and info["valid"] and episode.valid):
        return False, f"the episode is invalid: {info.get('error')!r:.300}"
    json.loads(episode.to_json().encode("utf-8"))
    return isinstance(reward, float), ""


def main() -> int:
    """Run every attempt (or ``--only`` one) and print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run the attempts whose name contains this")
    args = parser.parse_args()
    env = simenv.make("code/Repair-v1", max_turns=10)
    held = broken = 0
    start = time.monotonic()
    try:
        for name, code, check in ATTEMPTS:
            if args.only and args.only not in name:
                continue
            t0 = time.monotonic()
            try:
                ok, why = attempt(env, name, code, check)
            except Exception as exc:  # step promises never to raise: that is a break too
                ok, why = False, f"{type(exc).__name__} out of step: {exc!s:.300}"
            held, broken = held + ok, broken + (not ok)
            verdict = "held  " if ok else "BROKEN"
            print(f"{verdict} {name:32} {time.monotonic() - t0:5.1f} s  {why}", flush=True)
    finally:
        env.close()
    total = time.monotonic() - start
    print(f"\nDocker sandbox: {held} held, {broken} broken, in {total:.0f} s ({machine()})")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
