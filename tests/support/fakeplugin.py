"""A fake CNI plugin for tests: records what it got and behaves as the test tells it.

Installed by ``tests/support/plugins.py`` as ``<bin_dir>/<name>`` with a shebang pointing at the
test interpreter. It reads ``<bin_dir>/../fakes/<name>.behaviour.json``: a map from CNI command
(or ``"<command>:<container ID>"`` for one container only) to what to do, and appends one JSON
line per run to ``<bin_dir>/../fakes/<name>.log`` (outside the bin dir, so a watcher of the bin
dir does not see them). Standard library only.
"""

import json
import os
import signal
import sys
import time

me = os.path.realpath(sys.argv[0])
state = os.path.join(os.path.dirname(os.path.dirname(me)), "fakes", os.path.basename(me))
command = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.buffer.read()
try:
    conf = json.loads(raw) if raw else {}
except ValueError:
    conf = {}
record = {
    "command": command,
    "env": dict(os.environ.items()),
    "stdin": raw.decode("utf-8", "replace"),
    "pid": os.getpid(),
    "time": time.time(),
}
with open(state + ".log", "a") as log:
    log.write(json.dumps(record) + "\n")

try:
    with open(state + ".behaviour.json") as f:
        behaviours = json.load(f)
except FileNotFoundError:
    behaviours = {}
# "<command>:<container ID>" applies to one container only, before "<command>" and "*".
b = behaviours.get(
    f"{command}:{os.environ.get('CNI_CONTAINERID', '')}",
    behaviours.get(command, behaviours.get("*", {})),
)

# "times": N applies the behaviour to the first N runs of this command only (this one counted);
# later runs behave as if nothing were set.
if b.get("times") is not None:
    with open(state + ".log") as log:
        runs = sum(json.loads(line)["command"] == command for line in log)
    if runs > int(b["times"]):
        b = {}

if b.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
# A child that keeps stdout/stderr open long after we exit.
if b.get("grandchild") and os.fork() == 0:
    time.sleep(float(b["grandchild"]))
    os._exit(0)
# A child that leaves the plugin's process group and keeps stdout open (a daemon it started);
# its PID goes to "escapee_pidfile" (the test ends it).
if b.get("escapee") and os.fork() == 0:
    os.setsid()
    with open(b["escapee_pidfile"], "w") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(float(b["escapee"]))
    os._exit(0)
if b.get("pidfile"):
    with open(b["pidfile"], "a") as f:
        f.write(f"{os.getpid()}\n")
if b.get("sleep"):
    time.sleep(float(b["sleep"]))
if b.get("flood"):
    chunk = b"x" * 65536
    for _ in range(int(b["flood"]) // 65536 + 1):
        sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
if "stderr" in b:
    sys.stderr.write(b["stderr"])
    sys.stderr.flush()
if "signal" in b:
    os.kill(os.getpid(), int(b["signal"]))

# Output written piece by piece, "pause" seconds apart, each piece flushed (after stdout's).
for piece in b.get("pieces", []):
    time.sleep(float(b.get("pause", 0.05)))
    sys.stdout.write(piece)
    sys.stdout.flush()
if "stdout" in b:
    out = b["stdout"]
    sys.stdout.write(out if isinstance(out, str) else json.dumps(out))
elif command == "VERSION":
    sys.stdout.write(
        json.dumps(
            {
                "cniVersion": conf.get("cniVersion", "1.1.0"),
                "supportedVersions": b.get(
                    "versions", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
                ),
            }
        )
    )
elif command == "ADD":
    version = conf.get("cniVersion", "")
    if "prevResult" in conf:
        result = dict(conf["prevResult"])
        result["cniVersion"] = version
    elif version in ("", "0.1.0", "0.2.0"):
        result = {"cniVersion": version or "0.1.0", "ip4": {"ip": b.get("ip", "10.99.0.2/24")}}
    else:
        ip = {"address": b.get("ip", "10.99.0.2/24"), "interface": 0}
        if version.startswith("0."):
            ip["version"] = "4"
        result = {
            "cniVersion": version,
            "interfaces": [
                {
                    "name": os.environ.get("CNI_IFNAME", ""),
                    "sandbox": os.environ.get("CNI_NETNS", ""),
                }
            ],
            "ips": [ip],
        }
    sys.stdout.write(json.dumps(result))
sys.stdout.flush()
sys.exit(int(b.get("exit", 0)))
