"""The corosync target: a real corosync 3 answers through its own tools.

``corosync-quorumtool``, ``corosync-cmapctl`` and ``corosync-cfgtool`` run through a
``CommandRunner`` (this machine, a lab node's namespaces, or SSH), and their output goes
through the pure parsers in ``corosync_parse``: the same facts ``pvecm`` shows, as the
shared result dataclasses.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace

from pvectl import corosync_conf
from pvectl.errors import (
    CommandRefused,
    ConfigError,
    ExitCode,
    PermissionNeeded,
    PvectlError,
    TargetUnavailable,
)
from pvectl.quorum.votequorum import check_set_expected
from pvectl.results import ClusterInfo, ExpectedResult, NodeList, QuorumStatus
from pvectl.targets import corosync_parse
from pvectl.targets.runner import CommandResult, CommandRunner, LocalRunner

NOT_RUNNING = (
    "no corosync runs here ({where}): start it (systemctl start corosync), or use "
    "--target lab (a pvectl lab) or --host NODE (a cluster node over SSH)"
)
NOT_INSTALLED = (
    "{tool} not found ({where}): install the Debian package 'corosync' "
    "(apt install corosync), or use --target lab / --host NODE"
)
NEEDS_ROOT = (
    "corosync's tools need root ({where}): corosync admits only root and the groups named in "
    "its uidgid settings to its IPC; run pvectl with sudo"
)
EXPECTED_WARNINGS = (
    "runtime only: corosync.conf is unchanged, and expected votes go back up when the "
    "missing nodes rejoin",
    "do this only when the missing nodes are really down: if they run on in another "
    "partition, both sides can become quorate and write (split brain)",
)
# What corosync-quorumtool prints when the daemon (or its IPC) is not reachable.
_NOT_REACHABLE = (
    "Cannot initialize CMAP service",
    "Cannot initialize QUORUM service",
    "Cannot initialise VOTEQUORUM service",
    "Cannot initialize VOTEQUORUM service",
    "CS_ERR_LIBRARY",
    "Could not initialize corosync configuration API",
)


def _not_reachable(result: CommandResult) -> bool:
    text = result.stderr + result.stdout
    return any(marker in text for marker in _NOT_REACHABLE)


def is_running(runner: CommandRunner | None = None) -> bool:
    """Whether a corosync answers where ``runner`` runs (False if its tools are missing)."""
    runner = runner or LocalRunner()
    local = isinstance(runner, LocalRunner) and not runner.prefix
    if local and shutil.which("corosync-quorumtool") is None:
        return False
    try:
        result = runner.run(["corosync-quorumtool", "-s"], timeout=10)
    except PvectlError:
        return False
    return result.returncode in (0, 2)


class CorosyncTarget:
    """``ClusterTarget`` over corosync's tools; ``runner`` says where they run."""

    name = "corosync"

    def __init__(
        self,
        runner: CommandRunner | None = None,
        config_paths: tuple[str, ...] = corosync_conf.CONFIG_PATHS,
        source: str = "corosync",
        not_running: str | None = None,
    ) -> None:
        """``not_running``: the message when no corosync answers (a lab says which node
        to start); by default the local advice naming the other targets."""
        self.runner: CommandRunner = runner or LocalRunner()
        self.not_running = not_running or NOT_RUNNING.format(where=self.runner.describe)
        self.config_paths = config_paths
        self.source = source
        local = isinstance(self.runner, LocalRunner) and not self.runner.prefix
        if local and shutil.which("corosync-quorumtool") is None:
            raise TargetUnavailable(
                NOT_INSTALLED.format(tool="corosync-quorumtool", where="not on PATH"),
                ExitCode.UNAVAILABLE,
            )

    # ---- running the tools ----------------------------------------------------------

    def _run(self, argv: list[str], ok: tuple[int, ...] = (0,)) -> CommandResult:
        try:
            result = self.runner.run(argv, timeout=30)
        except PvectlError as exc:
            # only a missing tool: an SSH "host unreachable" (also 69) must keep its words
            if exc.exit_code == ExitCode.UNAVAILABLE and "not found" in str(exc):
                raise TargetUnavailable(
                    NOT_INSTALLED.format(tool=argv[0], where=self.runner.describe),
                    ExitCode.UNAVAILABLE,
                ) from exc
            raise
        if result.returncode in ok:
            return result
        if result.returncode == 127 or "command not found" in result.stderr:
            raise TargetUnavailable(
                NOT_INSTALLED.format(tool=argv[0], where=self.runner.describe),
                ExitCode.UNAVAILABLE,
            )
        if _not_reachable(result):
            if not self._is_root():
                raise PermissionNeeded(NEEDS_ROOT.format(where=self.runner.describe))
            raise TargetUnavailable(self.not_running)
        message = (result.stderr or result.stdout).strip().splitlines()
        raise PvectlError(
            f"{' '.join(argv)} failed on {self.runner.describe} (exit {result.returncode}): "
            + (message[-1] if message else "no message")
        )

    def _is_root(self) -> bool:
        try:
            result = self.runner.run(["id", "-u"], timeout=10)
        except PvectlError:
            return True
        return result.stdout.strip() == "0"

    # ---- corosync.conf -------------------------------------------------------------

    def config(self) -> corosync_conf.Section | None:
        """The first corosync.conf found (PVE's copy first), parsed; None if none exists."""
        for path in self.config_paths:
            try:
                text = self.runner.read_file(path)
            except PermissionError as exc:
                raise PermissionNeeded(f"{path}: permission denied: run pvectl with sudo") from exc
            except UnicodeDecodeError as exc:
                raise ConfigError("not a text file", path) from exc
            if text is not None:
                return corosync_conf.parse(text, path)
        return None

    def cluster_info(self) -> ClusterInfo | None:
        conf = self.config()
        return corosync_conf.cluster_info(conf) if conf is not None else None

    # ---- ClusterTarget ---------------------------------------------------------------

    def status(self) -> QuorumStatus:
        cluster = self.cluster_info()  # a broken corosync.conf is reported first
        status_text = self._run(["corosync-quorumtool", "-siH"], ok=(0, 2)).stdout
        names_text = self._run(["corosync-quorumtool", "-l"]).stdout
        cmap_text = self._run(["corosync-cmapctl", "runtime.config.totem."], ok=(0, 1)).stdout
        links_text = self._run(["corosync-cfgtool", "-s"], ok=(0, 1, 2, 3)).stdout
        return corosync_parse.build_status(
            status_text, names_text, cmap_text, links_text, cluster, self.source
        )

    def quorum_text(self) -> tuple[str, int]:
        """``corosync-quorumtool -siH`` verbatim and its exit code (for layout checks)."""
        raw = self._run(["corosync-quorumtool", "-siH"], ok=(0, 2))
        return raw.stdout, raw.returncode

    def nodes(self) -> NodeList:
        raw = self._run(["corosync-quorumtool", "-l"])
        return replace(corosync_parse.parse_node_list(raw.stdout), source=self.source)

    def set_expected(self, expected: int) -> ExpectedResult:
        if expected < 1:
            raise CommandRefused(f"expected votes must be >= 1, got {expected}")
        before = corosync_parse.parse_status(
            self._run(["corosync-quorumtool", "-s"], ok=(0, 2)).stdout
        )
        check_set_expected(expected, before.total_votes, before.quorate)
        result = self._run(["corosync-quorumtool", "-e", str(expected)], ok=(0, 1))
        if result.returncode != 0:
            text = (result.stderr + result.stdout).strip()
            if corosync_parse.error_name(text) == "CS_ERR_INVALID_PARAM":
                raise CommandRefused(
                    f"corosync refused expected votes {expected} (CS_ERR_INVALID_PARAM): it "
                    f"must be at least the {before.total_votes} vote(s) present and must not "
                    "make a quorate partition inquorate"
                )
            lines = text.splitlines()
            raise CommandRefused(
                f"corosync-quorumtool -e {expected} failed: "
                + (lines[-1] if lines else "no message")
            )
        after = self._wait_expected(expected)
        return ExpectedResult(
            requested=expected,
            previous_expected=before.expected_votes,
            total_votes=after.total_votes,
            quorum_before=before.quorum,
            quorum_after=after.quorum,
            quorate_after=after.quorate,
            source=self.source,
            warnings=EXPECTED_WARNINGS,
        )

    def _wait_expected(self, expected: int, timeout: float = 5.0) -> QuorumStatus:
        """The new value travels as a totem message before the local node applies it."""
        deadline = time.monotonic() + timeout
        while True:
            now = corosync_parse.parse_status(
                self._run(["corosync-quorumtool", "-s"], ok=(0, 2)).stdout
            )
            if now.expected_votes == expected or time.monotonic() >= deadline:
                return now
            time.sleep(0.05)
