"""Drive load with wrk (a separate process) and read its results as JSON.

Each workload is a Lua script: the requests are formatted once in `init` (cycling through a
file of paths for getSession over many ids), `response` counts statuses per thread, and
`done` prints one JSON line with throughput, latency percentiles and the status counts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = r"""
local paths_file = %(paths_file)s
local headers = %(headers)s
local expect = %(expect)d
local reqs = {}
local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  good, bad, codes = 0, 0, {}
  for line in io.lines(paths_file) do
    if #line > 0 then reqs[#reqs + 1] = wrk.format("GET", line, headers) end
  end
  -- each thread starts at another place in the list
  idx = ((id or 1) * 7919) %% #reqs
end

function request()
  idx = idx %% #reqs + 1
  return reqs[idx]
end

function response(status, hdrs, body)
  if status == expect then good = good + 1 else bad = bad + 1 end
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local good_total, bad_total, statuses = 0, 0, {}
  for _, t in ipairs(threads) do
    good_total = good_total + t:get("good")
    bad_total = bad_total + t:get("bad")
    local c = t:get("codes")
    for k, v in pairs(c) do statuses[#statuses + 1] = string.format('"%%d":%%d', k, v) end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"expected":%%d,"unexpected":%%d,' ..
    '"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,"timeouts":%%d,' ..
    '"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"p999_us":%%d,"max_us":%%d,"mean_us":%%.1f,"statuses":[{%%s}]}\n',
    summary.requests, summary.duration, summary.bytes, good_total, bad_total,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, table.concat(statuses, "},{")))
end
"""


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "bench: wrk is not installed. It is Debian's package: as root run\n"
            "  apt-get update && apt-get install -y wrk\n"
            "(or pass --install-wrk to let the benchmark do it when running as root)."
        )
    return found


def install_wrk() -> None:
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    paths: list[str]  # request targets, cycled through
    headers: dict[str, str]
    expect: int = 200


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for these inputs


def _lua_headers(headers: dict[str, str]) -> str:
    return "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()) + "}"


def write_script(workload: Workload, work_dir: Path) -> Path:
    paths_file = work_dir / f"{workload.name}.paths"
    paths_file.write_text("\n".join(workload.paths) + "\n")
    script = work_dir / f"{workload.name}.lua"
    script.write_text(
        _SCRIPT
        % {
            "paths_file": _lua_string(str(paths_file)),
            "headers": _lua_headers(workload.headers),
            "expect": workload.expect,
        }
    )
    return script


def run_wrk(base_url: str, script: Path, *, seconds: float, connections: int, threads: int = 1) -> dict:
    """One bounded wrk run; returns the parsed result (latencies in µs)."""
    command = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base_url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            result = json.loads(line[len("BENCHJSON ") :])
            statuses = {}
            for entry in result.pop("statuses"):
                for code, count in entry.items():
                    statuses[code] = statuses.get(code, 0) + count
            result["statuses"] = statuses
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = (
                result["unexpected"]
                + result["connect_errors"]
                + result["read_errors"]
                + result["write_errors"]
                + result["timeouts"]
            )
            return result
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
