"""A private 2-node real-corosync lab for the qdevice interop tests.

Follows shared/reference/corosync-lab (one network namespace per node on a bridge, a
private mount namespace binding the node's own /etc/corosync, /run, /var/lib/corosync
and /var/log/corosync), with names starting ``pvt-qd`` on 10.98.0.0/24. It only ever
deletes the namespaces it created and only kills the processes it started (by pid, or
listed by ``ip netns pids`` of its own namespaces).

Used until ``pvectl lab up N --engine corosync`` (issue: corosync lab) lands on main.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "pvt-qd"
SUBNET = "10.98.0"
QNETD_IP = f"{SUBNET}.100"
CLUSTER = "pvtqd"
REPO = Path(__file__).resolve().parent.parent

_MOUNT_WRAPPER = (
    'd=$1; h=$2; shift 2; hostname "$h"; '
    'mount --bind "$d/etc" /etc/corosync || exit 111; '
    'mount --bind "$d/run" /run || exit 111; '
    'mount --bind "$d/lib" /var/lib/corosync || exit 111; '
    'mount --bind "$d/log" /var/log/corosync || exit 111; '
    'exec "$@"'
)


def available() -> str | None:
    """None when the lab can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("corosync", "corosync-qdevice", "corosync-qnetd", "ip", "nft", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def _run(
    argv: list[str], check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class QuorumView:
    """The figures corosync-quorumtool -s shows, for comparing two runs."""

    quorate: bool
    expected: int
    total: int
    quorum: int
    flags: tuple[str, ...]
    qdevice_flags: dict[int, str]
    qdevice_row: str | None
    raw: str = field(repr=False, default="")

    def figures(self) -> tuple[object, ...]:
        return (
            self.quorate,
            self.expected,
            self.total,
            self.quorum,
            self.flags,
            tuple(sorted(self.qdevice_flags.items())),
            self.qdevice_row,
        )


def parse_quorumtool(text: str) -> QuorumView:
    def field_of(label: str) -> str:
        m = re.search(rf"^{label}:\s*(.*)$", text, re.M)
        return m.group(1).strip() if m else ""

    qd: dict[int, str] = {}
    row = None
    for line in text.splitlines():
        m = re.match(r"^\s+(\d+)\s+(\d+)\s+([A-Z,]+)\s+\S+", line)
        if m and int(m.group(1)) != 0:
            qd[int(m.group(1))] = m.group(3)
        if re.match(r"^\s+0\s+\d+", line):
            row = " ".join(line.split())
    return QuorumView(
        quorate=field_of("Quorate") == "Yes",
        expected=int(field_of("Expected votes") or 0),
        total=int(field_of("Total votes") or 0),
        quorum=int((field_of("Quorum").split() or ["0"])[0]),
        flags=tuple(field_of("Flags").split()),
        qdevice_flags=qd,
        qdevice_row=row,
        raw=text,
    )


class QdLab:
    def __init__(self, nodes: int = 2, tls: bool = True) -> None:
        self.nodes = nodes
        self.tls = tls
        self.state = Path(tempfile.mkdtemp(prefix="pvt-qd-"))
        self.created_ns: list[str] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.qnetd_kind = ""

    # --- names ---
    def ns(self, n: int | str) -> str:
        return f"{PREFIX}-{'qnetd' if n == 'qnetd' else f'n{n}'}"

    def ndir(self, n: int | str) -> Path:
        return self.state / ("qnetd" if n == "qnetd" else f"node{n}")

    def ip(self, n: int) -> str:
        return f"{SUBNET}.{n}"

    # --- setup ---
    def _add_ns(self, name: str) -> None:
        if name in _run(["ip", "netns", "list"]).stdout.split():
            raise RuntimeError(f"namespace {name} already exists (left from another run?)")
        _run(["ip", "netns", "add", name])
        self.created_ns.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def up(self) -> None:
        hub = f"{PREFIX}-hub"
        self._add_ns(hub)
        _run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", hub, "link", "set", "br0", "up"])
        members: list[tuple[int | str, str, str]] = [
            (n, self.ip(n), f"v{n}") for n in range(1, self.nodes + 1)
        ]
        members.append(("qnetd", QNETD_IP, "vq"))
        for who, addr, veth in members:
            name = self.ns(who)
            self._add_ns(name)
            _run(
                [
                    "ip",
                    "-n",
                    name,
                    "link",
                    "add",
                    "eth0",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    veth,
                    "netns",
                    hub,
                ]
            )
            _run(["ip", "-n", hub, "link", "set", veth, "master", "br0", "up"])
            _run(["ip", "-n", name, "addr", "add", f"{addr}/24", "dev", "eth0"])
            _run(["ip", "-n", name, "link", "set", "eth0", "up"])
            for sub in ("etc", "run", "lib", "log"):
                (self.ndir(who) / sub).mkdir(parents=True, exist_ok=True)
        authkey = self.state / "authkey"
        _run(["corosync-keygen", "-k", str(authkey)])
        for n in range(1, self.nodes + 1):
            etc = self.ndir(n) / "etc"
            (etc / "corosync.conf").write_text(self.corosync_conf())
            shutil.copy(authkey, etc / "authkey")
            os.chmod(etc / "authkey", 0o400)
            (self.ndir(n) / "run" / "corosync-qdevice").mkdir(exist_ok=True)
        (self.ndir("qnetd") / "run" / "corosync-qnetd").mkdir(exist_ok=True)
        for n in range(1, self.nodes + 1):
            self.start_corosync(n)
        self.wait_members(1, self.nodes)

    def corosync_conf(self) -> str:
        nodes = "".join(
            f"  node {{\n    name: node{n}\n    nodeid: {n}\n    quorum_votes: 1\n"
            f"    ring0_addr: {self.ip(n)}\n  }}\n"
            for n in range(1, self.nodes + 1)
        )
        return (
            "logging {\n  to_syslog: no\n  to_stderr: no\n  to_logfile: yes\n"
            "  logfile: /var/log/corosync/corosync.log\n  timestamp: hires\n}\n"
            f"nodelist {{\n{nodes}}}\n"
            "quorum {\n  provider: corosync_votequorum\n  device {\n    model: net\n"
            "    votes: 1\n    net {\n      algorithm: ffsplit\n"
            f"      host: {QNETD_IP}\n      tls: {'on' if self.tls else 'off'}\n    }}\n  }}\n}}\n"
            f"totem {{\n  cluster_name: {CLUSTER}\n  config_version: 1\n"
            "  interface {\n    linknumber: 0\n  }\n  ip_version: ipv4-6\n  link_mode: passive\n"
            "  secauth: on\n  keyfile: /etc/corosync/authkey\n  version: 2\n}\n"
        )

    # --- running things "on" a node ---
    def wrap(self, who: int | str, argv: list[str]) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            self.ns(who),
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            _MOUNT_WRAPPER,
            "sh",
            str(self.ndir(who)),
            "qnetd" if who == "qnetd" else f"node{who}",
            *argv,
        ]

    def exec(
        self, who: int | str, argv: list[str], timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return _run(self.wrap(who, argv), check=False, timeout=timeout)

    def start(self, key: str, argv: list[str], log: Path) -> None:
        handle = open(log, "ab")  # noqa: SIM115 - kept open by the child
        self.procs[key] = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO,
        )
        handle.close()

    def stop(self, key: str, sig: int = signal.SIGTERM, wait: float = 10) -> None:
        proc = self.procs.pop(key, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def start_corosync(self, n: int) -> None:
        (self.ndir(n) / "run" / "corosync.pid").unlink(missing_ok=True)
        self.start(
            f"corosync{n}",
            self.wrap(n, ["corosync", "-f"]),
            self.ndir(n) / "log" / "corosync.stderr",
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            rc = _run(
                ["ip", "netns", "exec", self.ns(n), "corosync-quorumtool", "-s"], check=False
            ).returncode
            if rc in (0, 2):
                return
            time.sleep(0.2)
        raise RuntimeError(f"node{n}: corosync did not come up")

    def start_qdevice(self, n: int) -> None:
        self.start(
            f"qdevice{n}",
            self.wrap(n, ["corosync-qdevice", "-f"]),
            self.ndir(n) / "log" / "qdevice.stderr",
        )

    # --- certificates (pvectl's CA into the nodes' NSS databases) ---
    def setup_certs_from_pvectl(self) -> Path:
        certs = self.ndir("qnetd") / "pvectl-certs"
        self.pvectl("qdevice", "certs", "init", str(certs))
        self.nss_exchange(
            certs / "qnetd-cacert.crt",
            lambda crq, out: self.pvectl(
                "qdevice",
                "certs",
                "sign",
                str(crq),
                "--cluster",
                CLUSTER,
                "--cert-dir",
                str(certs),
                "-o",
                str(out),
            ),
        )
        return certs

    def nss_exchange(self, ca_file: Path, sign: object) -> None:
        for n in range(1, self.nodes + 1):
            shutil.copy(ca_file, self.ndir(n) / "etc" / "qnetd-cacert.crt")
            self._ok(
                n, ["corosync-qdevice-net-certutil", "-i", "-c", "/etc/corosync/qnetd-cacert.crt"]
            )
        self._ok(1, ["corosync-qdevice-net-certutil", "-r", "-n", CLUSTER])
        crq = self.ndir(1) / "etc" / "qdevice" / "net" / "nssdb" / "qdevice-net-node.crq"
        crt = self.ndir(1) / "etc" / f"cluster-{CLUSTER}.crt"
        sign(crq, crt)  # type: ignore[operator]
        self._ok(
            1, ["corosync-qdevice-net-certutil", "-M", "-c", f"/etc/corosync/cluster-{CLUSTER}.crt"]
        )
        p12 = self.ndir(1) / "etc" / "qdevice" / "net" / "nssdb" / "qdevice-net-node.p12"
        for n in range(2, self.nodes + 1):
            shutil.copy(p12, self.ndir(n) / "etc" / "qdevice-net-node.p12")
            self._ok(
                n,
                ["corosync-qdevice-net-certutil", "-m", "-c", "/etc/corosync/qdevice-net-node.p12"],
            )

    def _ok(self, who: int | str, argv: list[str]) -> str:
        proc = self.exec(who, argv)
        if proc.returncode != 0:
            raise RuntimeError(f"[{who}] {' '.join(argv)}: {proc.stdout}{proc.stderr}")
        return proc.stdout

    def pvectl(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "pvectl", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pvectl {' '.join(args)}: {proc.stderr}")
        return proc.stdout

    # --- qnetd ---
    def start_pvectl_qnetd(self, certs: Path | None) -> None:
        self.qnetd_kind = "pvectl"
        argv = [
            "ip",
            "netns",
            "exec",
            self.ns("qnetd"),
            sys.executable,
            "-m",
            "pvectl",
            "qdevice",
            "serve",
            "--control-socket",
            str(self.control_socket),
        ]
        argv += ["--cert-dir", str(certs)] if certs else ["--tls", "off"]
        env_argv = ["env", f"PYTHONPATH={REPO}", *argv]
        self.start("qnetd", env_argv, self.ndir("qnetd") / "log" / "qnetd.stderr")
        deadline = time.monotonic() + 15
        while not self.control_socket.exists():
            if time.monotonic() > deadline or self.procs["qnetd"].poll() is not None:
                raise RuntimeError(
                    "pvectl qnetd did not start: "
                    + (self.ndir("qnetd") / "log" / "qnetd.stderr").read_text()
                )
            time.sleep(0.1)

    @property
    def control_socket(self) -> Path:
        return self.state / "qnetd.sock"

    def start_real_qnetd(self) -> None:
        """corosync-qnetd with its own NSS CA (corosync-qnetd-certutil), as in the
        reference lab; nodes get that CA instead of pvectl's."""
        self.qnetd_kind = "corosync-qnetd"
        if self.tls:
            self._ok("qnetd", ["corosync-qnetd-certutil", "-i"])
            nssdb = self.ndir("qnetd") / "etc" / "qnetd" / "nssdb"

            def sign(crq: Path, crt: Path) -> None:
                shutil.copy(crq, self.ndir("qnetd") / "etc" / "qdevice-net-node.crq")
                self._ok(
                    "qnetd",
                    [
                        "corosync-qnetd-certutil",
                        "-s",
                        "-c",
                        "/etc/corosync/qdevice-net-node.crq",
                        "-n",
                        CLUSTER,
                    ],
                )
                shutil.copy(nssdb / f"cluster-{CLUSTER}.crt", crt)

            self.nss_exchange(nssdb / "qnetd-cacert.crt", sign)
        argv = ["corosync-qnetd", "-f"] + ([] if self.tls else ["-s", "off"])
        self.start("qnetd", self.wrap("qnetd", argv), self.ndir("qnetd") / "log" / "qnetd.stderr")
        time.sleep(1)

    def qnetd_listing(self) -> str:
        if self.qnetd_kind == "pvectl":
            return self.pvectl("qdevice", "clients", "--control-socket", str(self.control_socket))
        return self.exec("qnetd", ["corosync-qnetd-tool", "-lv"]).stdout

    # --- observing and breaking ---
    def quorum(self, n: int) -> QuorumView:
        proc = _run(["ip", "netns", "exec", self.ns(n), "corosync-quorumtool", "-s"], check=False)
        return parse_quorumtool(proc.stdout)

    def wait_members(self, n: int, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = _run(
                ["ip", "netns", "exec", self.ns(n), "corosync-quorumtool", "-l"], check=False
            ).stdout
            ids = [int(x) for x in re.findall(r"^\s+(\d+)\s+\d+", out, re.M) if int(x) != 0]
            if len(ids) == count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"node{n} did not see {count} members")

    def wait_for(self, n: int, pred: object, timeout: float = 60) -> QuorumView:
        deadline = time.monotonic() + timeout
        view = self.quorum(n)
        while time.monotonic() < deadline:
            view = self.quorum(n)
            if pred(view):  # type: ignore[operator]
                return view
            time.sleep(0.3)
        raise TimeoutError(f"node{n}: condition not reached; last view:\n{view.raw}")

    def partition(self, a: int, b: int) -> None:
        for me, other in ((a, b), (b, a)):
            rules = (
                "table inet pvtqdpart {\n"
                f" chain in {{ type filter hook input priority 0; policy accept; "
                f"ip saddr {self.ip(other)} drop; }}\n"
                f" chain out {{ type filter hook output priority 0; policy accept; "
                f"ip daddr {self.ip(other)} drop; }}\n}}\n"
            )
            subprocess.run(
                ["ip", "netns", "exec", self.ns(me), "nft", "-f", "-"],
                input=rules,
                text=True,
                check=True,
                capture_output=True,
            )

    def heal(self) -> None:
        for n in range(1, self.nodes + 1):
            _run(
                ["ip", "netns", "exec", self.ns(n), "nft", "delete", "table", "inet", "pvtqdpart"],
                check=False,
            )

    def down(self) -> None:
        for key in list(self.procs):
            self.stop(key, signal.SIGTERM, wait=5)
        for name in self.created_ns:
            pids = _run(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _run(["ip", "netns", "del", name], check=False)
        self.created_ns.clear()
