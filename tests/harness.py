#!/usr/bin/env python3
"""Build the workspace's tests once, run every test binary, and list each binary's five slowest tests.

    tests/harness.py [--only TARGET ...] [-- ARGS FOR EACH TEST BINARY]

`./dev test` calls this. The build is `cargo test --workspace --no-run`, the one feature set
every build of `./dev test` and `./dev demo` shares, so re-runs (such as the PostgreSQL pass,
`--only host --only coco_host`) never rebuild. Each binary runs from its package's folder, as
`cargo test` runs it. Stable libtest prints no times, so the binaries (not the compiler) get
RUSTC_BOOTSTRAP=1 to accept `-Z unstable-options --format json --report-time`; the output is
printed back as libtest would, plus one line of timings per binary. Every binary runs even
when one fails; the exit status is 1 if any test failed.
"""

import json
import os
import subprocess
import sys
import time


def test_binaries():
    """(target name, package folder, executable) of each test binary, built by cargo."""
    cmd = ["cargo", "test", "--workspace", "--no-run", "--message-format=json-render-diagnostics"]
    build = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if build.returncode != 0:
        sys.exit(build.returncode)
    found = []
    for line in build.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg["profile"]["test"] and msg.get("executable"):
            found.append((msg["target"]["name"], os.path.dirname(msg["manifest_path"]), msg["executable"]))
    return found


def run(name, folder, exe, args):
    """Run one binary; return (passed, failed, ignored, seconds, failures)."""
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    cmd = [exe, "-Z", "unstable-options", "--format", "json", "--report-time", *args]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
    times, failures, counts, suite_done = [], [], {"ok": 0, "failed": 0, "ignored": 0}, False
    for line in proc.stdout:
        try:
            event = json.loads(line)
        except ValueError:
            sys.stdout.write(line)  # a child process writing to the inherited stdout
            continue
        kind, what = event.get("type"), event.get("event")
        if kind == "suite" and what == "started":
            print(f"\nrunning {event['test_count']} tests of {name} ({os.path.relpath(exe)})", flush=True)
        elif kind == "suite" and what in ("ok", "failed"):
            suite_done = True
        elif kind == "test" and what in counts:
            counts[what] += 1
            secs = event.get("exec_time")
            shown = f" ({secs:.2f} s)" if secs is not None else ""
            print(f"test {event['name']} ... {what}{shown}", flush=True)
            if secs is not None:
                times.append((secs, event["name"]))
            if what == "failed":
                failures.append((event["name"], event.get("stdout", "")))
    code = proc.wait()
    if code != 0 and not failures:
        failures.append((f"{name} (the binary)", f"exited with {code} before its tests finished"))
    elif not suite_done:
        failures.append((f"{name} (the binary)", "ended without its summary"))
    elapsed = time.monotonic() - started
    slowest = sorted(times, reverse=True)[:5]
    print(f"{name}: {counts['ok']} passed, {counts['failed']} failed, {counts['ignored']} ignored "
          f"in {elapsed:.1f} s" + ("; the five slowest:" if slowest else ""), flush=True)
    for secs, test in slowest:
        print(f"  {secs:7.2f} s  {test}", flush=True)
    return counts["ok"], len(failures), counts["ignored"], elapsed, failures


def main(argv):
    only, args = [], []
    if "--" in argv:
        split = argv.index("--")
        argv, args = argv[:split], argv[split + 1:]
    while argv:
        flag = argv.pop(0)
        if flag == "--only" and argv:
            only.append(argv.pop(0))
        else:
            sys.exit(f"usage: tests/harness.py [--only TARGET ...] [-- ARGS]; not {flag!r}")
    binaries = test_binaries()
    unknown = set(only) - {name for name, _, _ in binaries}
    if unknown:
        sys.exit(f"no test binary named {', '.join(sorted(unknown))}")
    total_ok, all_failures, started = 0, [], time.monotonic()
    for name, folder, exe in binaries:
        if only and name not in only:
            continue
        ok, _, _, _, failures = run(name, folder, exe, args)
        total_ok += ok
        all_failures += [(name, test, out) for test, out in failures]
    for name, test, out in all_failures:
        print(f"\n---- {name}: {test} ----\n{out}")
    print(f"\n{total_ok} passed, {len(all_failures)} failed in {time.monotonic() - started:.0f} s")
    for name, test, _ in all_failures:
        print(f"FAILED {name}: {test}")
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
