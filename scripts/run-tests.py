#!/usr/bin/env python3
"""Runs already-built Rust test binaries concurrently, each in its own network namespace.

`cargo test` runs one test binary after the other; most of waddle's acceptance binaries
spend their time waiting on emulated hosts and real CLI processes, so CI ran far longer
than its CPU use. This runner takes the executables `cargo test --no-run
--message-format=json` reported and runs several at once.

Isolation: emulated hosts listen on fixed loopback addresses and ports (Talos's apid on
127.20.x.y:50000, say). Two binaries, or one binary under two CLIs, must not meet there, so
each binary runs in a new network namespace with only its own loopback interface (`unshare`
of the network namespace, `lo` brought up). Where namespaces cannot be made (no
privilege), every binary runs one after the other, as `cargo test` would.

Output: each binary's output is printed whole when it ends, under cargo's own
`Running <source> (<executable>)` header, so libtest's `test result:` lines read as before,
and written to the log file of its suite. Failed binaries are listed at the end in cargo's
`error: N targets failed:` form. Exit status 1 when any binary failed or timed out.

Usage:
  run-tests.py --bin-of NAME FILE      (prints the executable of binary target NAME)
  run-tests.py --artifacts FILE --suite LOG[,only=PREFIX][,env=K=V]... [--jobs N] [-- ARGS]

A suite is a log file, optionally restricted to binaries whose test target name starts
with PREFIX and run with extra environment variables; every suite runs every binary it
selects. ARGS go to every test binary (libtest arguments such as `--test-threads=1`).
"""

import argparse
import ctypes
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

CLONE_NEWNET = 0x40000000
SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40


def isolate_network():
    """Moves this process into a new network namespace and brings its loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "unshare(CLONE_NEWNET): " + os.strerror(err))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14s", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING, b"")
        fcntl.ioctl(s, SIOCSIFFLAGS, ifreq)


def isolated_exec(argv):
    """`--isolated-exec -- PROGRAM ARGS`: isolate, then become PROGRAM."""
    isolate_network()
    os.execv(argv[0], argv)


def namespaces_work():
    probe = subprocess.run(
        [sys.executable, __file__, "--isolated-exec", "--", "/bin/true"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return probe.returncode == 0, probe.stderr.strip()


class Binary:
    def __init__(self, msg):
        target = msg["target"]
        self.exe = msg["executable"]
        self.name = target["name"]
        self.kind = target["kind"][0]
        self.package_dir = os.path.dirname(msg["manifest_path"])
        self.package = msg["package_id"]
        src = os.path.relpath(target["src_path"], self.package_dir)
        self.header = ("unittests " if self.kind != "test" else "") + src
        # cargo's way to name a target in "targets failed"
        pkg = package_name(msg["package_id"])
        if self.kind == "test":
            self.selector = f"-p {pkg} --test {self.name}"
        elif self.kind == "bin":
            self.selector = f"-p {pkg} --bin {self.name}"
        elif self.kind == "example":
            self.selector = f"-p {pkg} --example {self.name}"
        else:
            self.selector = f"-p {pkg} --lib"


def package_name(package_id):
    # "path+file:///x/provider/talos#waddle-talos@0.1.0" or "waddle-talos 0.1.0 (path+...)"
    if "#" in package_id:
        tail = package_id.rsplit("#", 1)[1]
        return tail.split("@", 1)[0] if "@" in tail else os.path.basename(package_id.split("#")[0])
    return package_id.split(" ", 1)[0]


def read_artifacts(path):
    bins, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            if msg.get("reason") != "compiler-artifact":
                continue
            if not msg.get("profile", {}).get("test") or not msg.get("executable"):
                continue
            if msg["executable"] in seen:
                continue
            seen.add(msg["executable"])
            bins.append(Binary(msg))
    return bins


def bin_of(name, artifacts):
    """The executable of binary target `name` (not a test build) in cargo's messages."""
    with open(artifacts, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            target = msg.get("target", {})
            if (
                msg.get("reason") == "compiler-artifact"
                and target.get("name") == name
                and "bin" in target.get("kind", [])
                and not msg.get("profile", {}).get("test")
                and msg.get("executable")
            ):
                return msg["executable"]
    return None


class Suite:
    def __init__(self, spec):
        parts = spec.split(",")
        self.log = parts[0]
        self.only = None
        self.env = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            if key == "only":
                self.only = value
            elif key == "env":
                k, _, v = value.partition("=")
                self.env[k] = v
            else:
                raise SystemExit(f"run-tests: unknown suite option {p!r}")

    def selects(self, b):
        return self.only is None or b.name.startswith(self.only)


class Job:
    def __init__(self, suite, binary, index):
        self.suite = suite
        self.binary = binary
        self.key = f"{suite.log}::{binary.name}::{binary.kind}"
        self.index = index
        self.proc = None
        self.out = None
        self.started = 0.0


def load_durations(path):
    try:
        with open(path, encoding="utf-8") as f:
            return {k: float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def guess(job):
    # No history yet: acceptance binaries (real CLI, emulated hosts) are the long ones.
    name = job.binary.name
    if name.startswith("cli_") or name.startswith("fault_"):
        return 40.0
    if job.binary.kind == "test" and "acceptance" in job.binary.package_dir:
        return 15.0
    return 5.0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--bin-of":
        exe = bin_of(sys.argv[2], sys.argv[3])
        if exe:
            print(exe)
        return 0 if exe else 1
    if len(sys.argv) > 1 and sys.argv[1] == "--isolated-exec":
        isolated_exec(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
        return 127

    argv = sys.argv[1:]
    test_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, test_args = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description="run built test binaries concurrently")
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--suite", action="append", required=True)
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("WADDLE_TEST_JOBS", "0")))
    ap.add_argument("--durations", help="JSON file of earlier run times, read and updated")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per binary")
    args = ap.parse_args(argv)

    binaries = read_artifacts(args.artifacts)
    suites = [Suite(s) for s in args.suite]
    jobs = []
    for s in suites:
        with open(s.log, "a", encoding="utf-8"):
            pass
        for b in binaries:
            if s.selects(b):
                jobs.append(Job(s, b, len(jobs)))
    if not jobs:
        print("run-tests: no test binaries selected", file=sys.stderr)
        return 1

    ok, why = namespaces_work()
    jobs_n = args.jobs if args.jobs > 0 else min(6, 2 * (os.cpu_count() or 1))
    if not ok:
        print(f"run-tests: no network namespace ({why}); running one binary at a time")
        jobs_n = 1
    else:
        print(f"run-tests: {len(jobs)} test binaries, {jobs_n} at a time, each in its own network namespace")
    sys.stdout.flush()

    durations = load_durations(args.durations) if args.durations else {}
    pending = sorted(jobs, key=lambda j: (-durations.get(j.key, guess(j)), j.index))
    running, failed, timings = [], [], {}
    t0 = time.monotonic()
    while pending or running:
        while pending and len(running) < jobs_n:
            job = pending.pop(0)
            env = dict(os.environ)
            env.update(job.suite.env)
            job.out = tempfile.TemporaryFile(mode="w+b")
            cmd = [job.binary.exe, *test_args]
            if ok:
                cmd = [sys.executable, os.path.abspath(__file__), "--isolated-exec", "--", *cmd]
            job.started = time.monotonic()
            job.proc = subprocess.Popen(
                cmd,
                cwd=job.binary.package_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=job.out,
                stderr=subprocess.STDOUT,
            )
            running.append(job)
        time.sleep(0.2)
        for job in list(running):
            rc = job.proc.poll()
            elapsed = time.monotonic() - job.started
            timed_out = False
            if rc is None:
                if elapsed <= args.timeout:
                    continue
                job.proc.kill()
                rc = job.proc.wait()
                timed_out = True
            running.remove(job)
            timings[job.key] = round(elapsed, 1)
            job.out.seek(0)
            text = job.out.read().decode("utf-8", "replace")
            job.out.close()
            block = f"     Running {job.binary.header} ({job.binary.exe})\n{text}"
            if timed_out:
                block += f"\nrun-tests: {job.binary.name} killed after {args.timeout} s\n"
            if rc != 0:
                failed.append(job)
                block += f"run-tests: {job.binary.name} exited with {rc} after {elapsed:.1f} s\n"
            with open(job.suite.log, "a", encoding="utf-8") as log:
                log.write(block)
            sys.stdout.write(block)
            sys.stdout.flush()

    print(f"run-tests: {len(jobs)} binaries in {time.monotonic() - t0:.0f} s")
    if args.durations:
        durations.update(timings)
        try:
            with open(args.durations, "w", encoding="utf-8") as f:
                json.dump(durations, f, indent=0, sort_keys=True)
        except OSError as e:
            print(f"run-tests: could not record durations: {e}", file=sys.stderr)
    slowest = sorted(timings.items(), key=lambda kv: -kv[1])[:5]
    print("run-tests: slowest: " + ", ".join(f"{k.split('::')[1]} {v:.0f} s" for k, v in slowest))
    for s in suites:
        mine = [j for j in failed if j.suite is s]
        if mine:
            lines = "".join(f"    `{j.binary.selector}`\n" for j in mine)
            block = f"error: {len(mine)} target{'s' if len(mine) != 1 else ''} failed:\n{lines}"
            with open(s.log, "a", encoding="utf-8") as log:
                log.write(block)
            sys.stdout.write(block)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
