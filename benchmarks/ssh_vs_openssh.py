#!/usr/bin/env python3
"""pvectl's SSH transport (paramiko) beside OpenSSH's client, against one real sshd on
127.0.0.1 with ed25519 keys (needs root and openssh-server, as the tests).

Printed side by side, medians over the rounds, with ratios pvectl / ssh:
- cold: connect, authenticate, run `true`, disconnect;
- warm: N commands on one host (pvectl reuses its connection; ssh once per command, and
  ssh with a ControlMaster socket, OpenSSH's own reuse);
- fan-out: `true` on H hosts at once (pvectl's threads vs H parallel ssh processes).
Targets: cold within 2x of ssh; warm per command faster than ssh without ControlMaster.

    python3 benchmarks/ssh_vs_openssh.py [--rounds 5] [--commands 20] [--hosts 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pvectl.targets.hosts import parse_host
from pvectl.targets.remote import across_hosts
from pvectl.targets.ssh import SshSession, SshSettings
from tests.helpers.sshd_harness import SshClientHome, Sshd, sshd_skip_reason


def timed(action: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=4)
    opts = parser.parse_args()
    reason = sshd_skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="pvectl-bench-ssh-"))
    servers = [Sshd(root / f"sshd{i}") for i in range(opts.hosts)]
    home = SshClientHome(root / "home")
    for index, server in enumerate(servers):
        server.authorize(home.pubkey)
        server.start()
        home.add_alias(f"node{index}", server)
        home.trust(server)
    os.environ["HOME"] = str(home.home)
    os.environ.pop("SSH_AUTH_SOCK", None)
    # OpenSSH takes its home from the password database, not $HOME: name every file
    known = f"UserKnownHostsFile={home.known_hosts}"
    ssh_base = ["ssh", "-F", str(home.config), "-i", str(home.key), "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", known]  # fmt: skip
    control = ["-o", "ControlMaster=auto", "-o", f"ControlPath={root}/cm-%C", "-o",
               "ControlPersist=60"]  # fmt: skip
    settings = SshSettings()

    def pvectl_cold() -> None:
        with SshSession(settings) as ssh:
            ssh.runner(parse_host("node0")).run(["true"])

    def ssh_cold() -> None:
        subprocess.run([*ssh_base, "node0", "true"], check=True)

    def pvectl_warm() -> None:
        with SshSession(settings) as ssh:
            runner = ssh.runner(parse_host("node0"))
            for _ in range(opts.commands):
                runner.run(["true"])

    def ssh_warm() -> None:
        for _ in range(opts.commands):
            subprocess.run([*ssh_base, "node0", "true"], check=True)

    def ssh_warm_control() -> None:
        for _ in range(opts.commands):
            subprocess.run([*ssh_base, *control, "node0", "true"], check=True)
        subprocess.run([*ssh_base, *control, "-O", "exit", "node0"], capture_output=True)

    hosts = [parse_host(f"node{i}") for i in range(opts.hosts)]

    def pvectl_fanout() -> None:
        with SshSession(settings) as ssh:
            outcomes = across_hosts(ssh, hosts, lambda runner: runner.run(["true"]))
            assert all(o.error is None for o in outcomes)

    def ssh_fanout() -> None:
        procs = [subprocess.Popen([*ssh_base, f"node{i}", "true"]) for i in range(opts.hosts)]
        assert all(p.wait() == 0 for p in procs)

    try:
        rows = [
            ("cold: connect + `true`", timed(pvectl_cold, opts.rounds),
             timed(ssh_cold, opts.rounds), "ssh"),
            (f"warm: {opts.commands} x `true`, one host", timed(pvectl_warm, opts.rounds),
             timed(ssh_warm, opts.rounds), "ssh per command"),
            (f"warm: {opts.commands} x `true`, one host", timed(pvectl_warm, opts.rounds),
             timed(ssh_warm_control, opts.rounds), "ssh ControlMaster"),
            (f"fan-out: `true` on {opts.hosts} hosts", timed(pvectl_fanout, opts.rounds),
             timed(ssh_fanout, opts.rounds), f"{opts.hosts} ssh processes"),
        ]  # fmt: skip
    finally:
        for server in servers:
            server.stop()
    print(f"{'case':<34} {'pvectl (ms)':>12} {'peer (ms)':>10} {'ratio':>6}  peer")
    for case, ours, theirs, peer in rows:
        print(
            f"{case:<34} {ours * 1000:>12.1f} {theirs * 1000:>10.1f} {ours / theirs:>6.2f}  {peer}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
