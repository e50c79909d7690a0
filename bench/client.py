"""Client cost benchmark: agentsonar_telemetry against a bare interpreter and its peers.

    python3 bench/client.py [--runs 21] [--json]        (tox -e bench installs the peers)

Every figure is measured in this run, beside a baseline measured in the same run: import cost
as paired, alternating whole-process runs against a bare interpreter plus `-X importtime`
(beside the floor of any import: an empty module of the same name);
start_session() timed on the host thread; process exit delay as paired, alternating runs of
the same script with telemetry on and off by environment. Figures are medians with min and
max. Peers (a bare eager stdlib sender, posthog, huggingface_hub's send_telemetry) are
measured the same way where they are installed. Servers are on 127.0.0.1 and stop at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

try:
    import agentsonar_telemetry as at
except ImportError:  # run from a clone: measure the file beside bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import agentsonar_telemetry as at

MODULE_DIR = str(Path(at.__file__).resolve().parent)
PATHS = [MODULE_DIR, sysconfig.get_paths()["purelib"]]
# No site (so no .pth file imports anything first), but os, as every interpreter with site has it.
BARE = [sys.executable, "-I", "-S"]
PRELUDE = f"import sys, os; sys.path[:0] = {PATHS!r}\n"

GOALS = {
    "import_ms": 1.0,
    "first_session_ms": 10.0,
    "first_session_bare_ms": 10.0,
    "later_session_ms": 0.3,
    "opted_out_session_ms": 0.02,
    "exit_healthy_s": 0.1,
    "exit_refused_s": 0.1,
    "exit_never_answers_s": 0.55,
    "exit_backoff_s": 0.02,
    "exit_10000_pending_s": 0.55,
    "delivered_of_10": 10,
}


# -- local collectors ---------------------------------------------------------


class Collector:
    """A healthy collector: answers 202 at once, records session ids."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[str]
        requests = self.requests = []  # type: list[str]

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                requests.append(self.path)
                with contextlib.suppress(ValueError):
                    received.append(str(json.loads(body).get("session_id", "")))
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "11")
                self.end_headers()
                self.wfile.write(b'{"ok":true}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A collector that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/events"

    def close(self) -> None:
        self.sock.close()


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1/events"


# -- measuring ------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run_process(code: str, env: dict[str, str], timeout: float = 30) -> tuple[float, str]:
    began = time.perf_counter()
    result = subprocess.run([*BARE, "-c", PRELUDE + code], env=env, capture_output=True, text=True, timeout=timeout,
                            check=False)  # fmt: skip
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"benchmark process failed: {result.stderr}")
    return elapsed, result.stdout


def paired(runs: int, a: Callable[[], float], b: Callable[[], float]) -> list[float]:
    """b - a over alternating pairs, so drift of the machine cancels."""
    diffs = []
    for i in range(runs):
        if i % 2:
            tb, ta = b(), a()
        else:
            ta, tb = a(), b()
        diffs.append(tb - ta)
    return diffs


def base_env(state_dir: str, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTSONAR_", "DO_NOT_TRACK"))}
    env.update(AGENTSONAR_STATE_DIR=state_dir, AGENTSONAR_TELEMETRY_URL=url, **extra)
    return env


def fresh_state(state_dir: str, **extra: object) -> None:
    """A machine that has run before: id assigned, disclosure shown, no backoff."""
    state = {"schema_version": 1, "install_id": "8a4f3b29-1c2d-4e5f-9a6b-7c8d9e0f1a2b", "disclosure_shown": True,
             "telemetry_disabled": False, **extra}  # fmt: skip
    at._write_state(os.path.join(state_dir, "state.json"), state)


def import_cost(runs: int) -> dict[str, object]:
    env = base_env(tempfile.mkdtemp(), refused_url())
    diffs = paired(
        runs, lambda: run_process("pass", env)[0], lambda: run_process("import agentsonar_telemetry", env)[0]
    )
    # The floor of any import, in the same runs: a module of that name that only imports os and sys.
    floor_dir = tempfile.mkdtemp()
    Path(floor_dir, "agentsonar_telemetry.py").write_text("import os\nimport sys\n")
    floor_prelude = f"import sys, os; sys.path[:0] = {[floor_dir]!r}\n"

    def importtime(prelude: str) -> float:
        result = subprocess.run([*BARE, "-X", "importtime", "-c", prelude + "import agentsonar_telemetry"], env=env,
                                capture_output=True, text=True, check=True)  # fmt: skip
        line = [ln for ln in result.stderr.splitlines() if ln.rstrip().endswith("| agentsonar_telemetry")][-1]
        return int(line.split("|")[1]) / 1000

    importtime(floor_prelude)  # writes its bytecode: both imports below are from cached bytecode
    cumulative, floor = [], []
    for _ in range(runs):
        cumulative.append(importtime(PRELUDE))
        floor.append(importtime(floor_prelude))
    return {"paired_ms": summary([d * 1000 for d in diffs]), "importtime_ms": summary(cumulative),
            "floor_ms": summary(floor)}  # fmt: skip


SESSION_TIMING = textwrap.dedent(
    """
    import time, json, sys
    import agentsonar_telemetry as at
    t = time.perf_counter(); s = at.start_session("0.4.0"); first = time.perf_counter() - t
    s.wait(5)
    later = []
    for _ in range(N):
        t = time.perf_counter(); s = at.start_session("0.4.0"); later.append(time.perf_counter() - t)
        s.wait(5)
    print(json.dumps({"first": first, "later": later, "rule": s.rule}))
    """
)

OPTED_OUT_TIMING = textwrap.dedent(
    """
    import time, json
    import agentsonar_telemetry as at
    times = []
    for _ in range(2000):
        t = time.perf_counter(); at.start_session("0.4.0"); times.append(time.perf_counter() - t)
    print(json.dumps(times))
    """
)


# The first session as a script's first line would start it: a bare interpreter (-I -S), no state
# file yet (so the install id, the file and the disclosure), nothing imported before but the module.
FIRST_BARE_TIMING = textwrap.dedent(
    """
    import time
    import agentsonar_telemetry as at
    t = time.perf_counter(); s = at.start_session("0.4.0"); first = time.perf_counter() - t
    s.wait(5)
    print(first, s.rule)
    """
)

# 10,000 sessions pending against a collector that never answers: the exit wait and the settling
# of all of them, measured inside the process from the end of the script to the last atexit handler.
PENDING_EXIT = textwrap.dedent(
    """
    import atexit, sys, time
    marks = {}
    atexit.register(lambda: sys.stdout.write(f"{time.monotonic() - marks['end']}\\n"))  # runs last
    import agentsonar_telemetry as at
    for _ in range(10000):
        at.start_session("0.4.0")
    marks["end"] = time.monotonic()
    """
)


def first_session_bare(runs: int, collector: Collector) -> dict[str, object]:
    times = []
    for _ in range(runs):
        state_dir = tempfile.mkdtemp()  # no state: the first session of a machine
        result = subprocess.run([*BARE, "-c", PRELUDE + FIRST_BARE_TIMING], env=base_env(state_dir, collector.url),
                                capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        seconds, rule = result.stdout.split()
        assert rule == "send", result.stdout
        times.append(float(seconds) * 1000)
    return {"first_session_bare_ms": summary(times)}


def pending_exit(runs: int) -> dict[str, object]:
    silent = Silent()
    try:
        times = []
        for _ in range(max(3, runs // 3)):
            state_dir = tempfile.mkdtemp()
            fresh_state(state_dir)
            result = subprocess.run([sys.executable, "-c", PRELUDE + PENDING_EXIT], env=base_env(state_dir, silent.url),
                                    capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
            times.append(float(result.stdout.strip()))
    finally:
        silent.close()
    return {"exit_10000_pending_s": summary(times)}


def session_costs(runs: int, collector: Collector) -> dict[str, object]:
    state_dir = tempfile.mkdtemp()
    env = base_env(state_dir, collector.url)
    firsts, laters = [], []
    for _ in range(runs):
        fresh_state(state_dir)
        data = json.loads(run_process(SESSION_TIMING.replace("N", "50"), env)[1])
        assert data["rule"] == "send", data
        firsts.append(data["first"] * 1000)
        laters.append(statistics.median(data["later"]) * 1000)
    off = json.loads(run_process(OPTED_OUT_TIMING, base_env(state_dir, collector.url, AGENTSONAR_TELEMETRY="off"))[1])
    return {
        "first_session_ms": summary(firsts),
        "later_session_ms": summary(laters),
        "opted_out_session_ms": summary([statistics.median(off[i:i + 200]) * 1000 for i in range(0, 2000, 200)]),
    }  # fmt: skip


EXIT_AT_ONCE = 'import agentsonar_telemetry as at\nat.start_session("0.4.0")\n'


def exit_delays(runs: int, collector: Collector) -> dict[str, object]:
    silent = Silent()
    state_dir = tempfile.mkdtemp()
    results: dict[str, object] = {}
    try:
        for name, url, backoff in [
            ("exit_healthy_s", collector.url, False),
            ("exit_refused_s", refused_url(), False),
            ("exit_never_answers_s", silent.url, False),
            ("exit_backoff_s", collector.url, True),
        ]:
            on, off = base_env(state_dir, url), base_env(state_dir, url, AGENTSONAR_TELEMETRY="off")

            def timed(env: dict[str, str], url: str = url, backoff: bool = backoff) -> float:
                fresh_state(
                    state_dir, **({"backoff_until": time.time() + 3600, "backoff_seconds": 3600} if backoff else {})
                )
                return run_process(EXIT_AT_ONCE, env)[0]

            results[name] = summary(paired(runs, lambda off=off: timed(off), lambda on=on: timed(on)))
        before = len(collector.received)
        for _ in range(10):
            fresh_state(state_dir)
            run_process(EXIT_AT_ONCE, base_env(state_dir, collector.url))
        time.sleep(0.5)
        results["delivered_of_10"] = len(collector.received) - before
    finally:
        silent.close()
    return results


# -- peers ------------------------------------------------------------------------

PEERS = {
    "eager stdlib sender": {
        "import": "import urllib.request, json, uuid, platform, threading",
        "send": textwrap.dedent(
            """
            import urllib.request, json, uuid, platform, threading, os
            body = json.dumps({"session_id": str(uuid.uuid4()), "os": platform.system()}).encode()
            def send():
                headers = {"Content-Type": "application/json"}
                req = urllib.request.Request(os.environ["PEER_URL"], data=body, headers=headers)
                urllib.request.urlopen(req, timeout=2).read()
            threading.Thread(target=send, daemon=True).start()
            """
        ),
    },
    "posthog": {
        "import": "import posthog",
        "send": textwrap.dedent(
            """
            import os, uuid, posthog
            posthog.project_api_key = "phc_bench"
            posthog.host = os.environ["PEER_URL"].rsplit("/v1/events", 1)[0]
            properties = {"session_id": str(uuid.uuid4())}
            posthog.capture(distinct_id=str(uuid.uuid4()), event="session_start", properties=properties)
            """
        ),
    },
    "huggingface_hub": {
        "import": "from huggingface_hub.utils import send_telemetry",
        "send": textwrap.dedent(
            """
            from huggingface_hub.utils import send_telemetry
            send_telemetry(topic="agentsonar/bench", library_name="bench", library_version="0.0.1")
            """
        ),
    },
}


def peer_available(name: str) -> bool:
    code = PEERS[name]["import"]
    return subprocess.run([*BARE, "-c", PRELUDE + code], capture_output=True, check=False).returncode == 0


def peer_costs(runs: int, collector: Collector) -> dict[str, object]:
    results: dict[str, object] = {}
    silent = Silent()
    try:
        for name, peer in PEERS.items():
            if not peer_available(name):
                results[name] = "not installed (tox -e bench installs it)"
                continue
            base = base_env(tempfile.mkdtemp(), collector.url)
            endpoint = collector.url.rsplit("/v1/events", 1)[0]
            env = dict(base, PEER_URL=collector.url, HF_ENDPOINT=endpoint, HF_HUB_OFFLINE="0",
                       HF_HUB_DISABLE_TELEMETRY="0", HF_HOME=tempfile.mkdtemp())  # fmt: skip
            imp = paired(max(5, runs // 2), lambda b=base: run_process("pass", b)[0],
                         lambda b=base, c=peer["import"]: run_process(c, b)[0])  # fmt: skip
            entry: dict[str, object] = {"import_ms": summary([d * 1000 for d in imp])}
            for label, url in (("exit_healthy_s", collector.url), ("exit_never_answers_s", silent.url)):
                e = dict(env, PEER_URL=url, HF_ENDPOINT=url.rsplit("/v1/events", 1)[0])
                delays = paired(max(5, runs // 2), lambda e=e, c=peer["import"]: run_process(c, e)[0],
                                lambda e=e, c=peer["send"]: run_process(c, e, timeout=60)[0])  # fmt: skip
                entry[label] = summary(delays)
            requests_before = len(collector.requests)
            for _ in range(10):
                run_process(peer["send"], env, timeout=60)
            time.sleep(0.5)
            entry["delivered_of_10"] = len(collector.requests) - requests_before
            results[name] = entry
    finally:
        silent.close()
    return results


# -- report ---------------------------------------------------------------------------


def fmt(value: object) -> str:
    if isinstance(value, dict) and "median" in value:
        return f"{value['median']:.3f} ({value['min']:.3f} to {value['max']:.3f})"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="paired runs per figure (default 21)")
    parser.add_argument("--no-peers", action="store_true", help="skip the peers")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    collector = Collector()
    try:
        report: dict[str, object] = {
            "date": time.strftime("%Y-%m-%d"),
            "python": sys.version.split()[0],
            "module": at.__file__,
        }
        print("measuring import cost ...", file=sys.stderr)
        report["import"] = import_cost(args.runs)
        print("measuring start_session() ...", file=sys.stderr)
        report.update(session_costs(args.runs, collector))
        report.update(first_session_bare(args.runs, collector))
        print("measuring exit delays ...", file=sys.stderr)
        report.update(exit_delays(args.runs, collector))
        print("measuring the exit with 10,000 sessions pending ...", file=sys.stderr)
        report.update(pending_exit(args.runs))
        if not args.no_peers:
            print("measuring peers ...", file=sys.stderr)
            report["peers"] = peer_costs(args.runs, collector)
    finally:
        collector.close()

    figures = {
        "import_ms": report["import"]["importtime_ms"],  # type: ignore[index]
        "first_session_ms": report["first_session_ms"],
        "first_session_bare_ms": report["first_session_bare_ms"],
        "later_session_ms": report["later_session_ms"],
        "opted_out_session_ms": report["opted_out_session_ms"],
        "exit_healthy_s": report["exit_healthy_s"],
        "exit_refused_s": report["exit_refused_s"],
        "exit_never_answers_s": report["exit_never_answers_s"],
        "exit_backoff_s": report["exit_backoff_s"],
        "exit_10000_pending_s": report["exit_10000_pending_s"],
        "delivered_of_10": report["delivered_of_10"],
    }
    met = {}
    for key, goal in GOALS.items():
        value = figures[key]
        met[key] = value >= goal if key == "delivered_of_10" else value["median"] <= goal  # type: ignore[index,operator]
    report["goals"] = GOALS
    report["met"] = met
    report["all_met"] = all(met.values())

    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["all_met"] else 1

    peers = report.get("peers", {})
    print(f"\nagentsonar_telemetry {at.__version__}, Python {report['python']}, {report['date']}; "
          f"median (min-max) of {args.runs} runs")  # fmt: skip
    print(f"{'figure':<38} {'ours':>26} {'goal':>8}  met")
    labels = {
        "import_ms": "import, -X importtime (ms)",
        "first_session_ms": "first start_session() (ms)",
        "first_session_bare_ms": "first, bare interpreter, no state (ms)",
        "later_session_ms": "later start_session() (ms)",
        "opted_out_session_ms": "opted out by env (ms)",
        "exit_healthy_s": "exit delay, healthy collector (s)",
        "exit_refused_s": "exit delay, refused port (s)",
        "exit_never_answers_s": "exit delay, never answers (s)",
        "exit_backoff_s": "exit delay, in backoff (s)",
        "exit_10000_pending_s": "exit, 10,000 pending, silent (s)",
        "delivered_of_10": "delivered, 10 exiting processes",
    }
    for key, label in labels.items():
        print(f"{label:<38} {fmt(figures[key]):>26} {GOALS[key]:>8}  {'yes' if met[key] else 'NO'}")
    paired_import = report["import"]["paired_ms"]  # type: ignore[index]
    print(f"{'import, paired process runs (ms)':<38} {fmt(paired_import):>26}")
    floor = report["import"]["floor_ms"]  # type: ignore[index]
    print(f"{'import floor, an empty module (ms)':<38} {fmt(floor):>26}")
    if isinstance(peers, dict) and peers:
        print("\npeers, same machine, same run:")
        print(f"{'peer':<22} {'import ms':>22} {'exit healthy s':>22} {'exit never-answers s':>22} {'delivered':>9}")
        for name, entry in peers.items():
            if not isinstance(entry, dict):
                print(f"{name:<22} {entry}")
                continue
            print(f"{name:<22} {fmt(entry['import_ms']):>22} {fmt(entry['exit_healthy_s']):>22} "
                  f"{fmt(entry['exit_never_answers_s']):>22} {entry['delivered_of_10']:>6}/10")  # fmt: skip
    print(f"\nall goals met: {report['all_met']}")
    return 0 if report["all_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
