"""Shared fixtures: running the CLI in-process and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliRun:
    """Run ``python -m pvectl`` as a user would: a real process, real exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "pvectl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> type[CliRun]:
    return CliRun


# Test tiers. Every test module is in exactly one tier (a test may override it with its own
# marker): ``unit`` runs in this process only (no child process, no daemon; seconds in all:
# ``pytest -m unit``), ``sim`` runs the deterministic simulator, ``integration`` starts real
# processes (nodes, corosync, sshd, qnetd, the CLI itself). ``root`` marks tests that need
# root on top of their tier. A unit test that starts a process fails, so the tiers stay true.
TIERS = ("unit", "sim", "integration")
MODULE_TIERS: dict[str, str] = {
    "test_cfs_backing_store": "unit",
    "test_cfs_dfsm": "unit",
    "test_nodecore": "unit",
    "test_cfs_fsview": "unit",
    "test_cfs_lab": "integration",
    "test_cfs_memdb": "unit",
    "test_check_rules": "unit",
    "test_cli_conventions": "integration",
    "test_corosync_conf": "unit",
    "test_corosync_lab": "integration",
    "test_corosync_parse": "unit",
    "test_docs_fresh": "integration",
    "test_fuse_mount": "integration",
    "test_fuzz": "unit",
    "test_hosts_and_views": "unit",
    "test_help_80": "unit",
    "test_startup": "integration",
    "test_cli_coerce": "integration",
    "test_docs_links": "unit",
    "test_input_hardening": "integration",
    "test_layers": "unit",
    "test_json_schemas": "integration",
    "test_lab_compare_engines": "integration",
    "test_lab_embedded": "integration",
    "test_lab_hosts": "integration",
    "test_lab_hosts_pure": "unit",
    "test_lab_from_host": "integration",
    "test_lab_pure": "unit",
    "test_lab_quorum_compare": "integration",
    "test_lab_quorum_embedded": "integration",
    "test_lab_subnet_race": "integration",
    "test_lab_quorum_reach": "unit",
    "test_lab_qdevice": "integration",
    "test_lab_results": "integration",
    "test_lab_scenario": "integration",
    "test_lab_state_private": "integration",
    "test_monitor_corosync": "integration",
    "test_monitor_lab": "integration",
    "test_monitor_units": "unit",
    "test_node_bench": "integration",
    "test_node_io": "integration",
    "test_perf_cli": "integration",
    "test_perf_probe": "integration",
    "test_perf_report": "unit",
    "test_progress": "integration",
    "test_qdevice_algorithms": "unit",
    "test_qdevice_client": "integration",
    "test_qdevice_embedded": "integration",
    "test_qdevice_interop": "integration",
    "test_qdevice_setup_plan": "unit",
    "test_qdevice_setup_ssh": "integration",
    "test_qdevice_status": "unit",
    "test_qnetd_core": "unit",
    "test_qnetd_control_private": "integration",
    "test_qnetd_server": "integration",
    "test_qnetd_wire": "unit",
    "test_sim_qdevice": "sim",
    "test_sim_store": "sim",
    "test_sim_faults": "sim",
    "test_sim_checker": "unit",
    "test_ssh": "integration",
    "test_ssh_cli": "integration",
    "test_ssh_lab": "integration",
    "test_totem_multicasted": "unit",
    "test_totem_packing": "unit",
    "test_totem_sim": "sim",
    "test_totem_srp": "unit",
    "test_totem_srp_fuzz": "unit",
    "test_totem_wire": "unit",
    "test_trace_spans": "unit",
    "test_votequorum": "unit",
    "test_votequorum_table": "unit",
    "test_whatif": "unit",
}
# Tests that start a process inside otherwise in-process modules.
TEST_TIERS: dict[str, str] = {
    "test_cfs_backing_store::test_acknowledged_writes_survive_kill_9": "integration",
    "test_lab_hosts_pure::test_node_zip_runs_on_a_bare_python": "integration",
    "test_lab_hosts_pure::test_ctl_serve_answers_json_lines": "integration",
    "test_qdevice_status::test_no_daemon_is_a_one_line_error": "integration",
    "test_monitor_units::test_exporter_text_passes_promtool_and_dead_node_is_up_zero": (
        "integration"
    ),
    "test_monitor_units::test_example_alert_rules_pass_promtool": "integration",
    "test_corosync_conf::test_comments_at_the_end_of_a_line_are_stripped_as_proxmox_does": (
        "integration"
    ),
    "test_whatif::test_cli_what_if_json": "integration",
    "test_whatif::test_cli_what_if_from_corosync_conf": "integration",
    "test_whatif::test_cli_what_if_bad_input": "integration",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unclassified = set()
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue
        path, _, name = item.nodeid.partition("::")
        module = path.rsplit("/", 1)[-1].removesuffix(".py")
        test = f"{module}::{name.split('[', 1)[0]}"
        tier = TEST_TIERS.get(test) or MODULE_TIERS.get(module)
        if tier is None:
            unclassified.add(module)
            continue
        item.add_marker(getattr(pytest.mark, tier))
    if unclassified:
        raise pytest.UsageError(
            f"test modules without a tier: {sorted(unclassified)}; add them to MODULE_TIERS "
            "in tests/conftest.py"
        )


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the ``unit`` tier honest: a unit test that starts a process fails."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} is in the unit tier but starts a process: mark it integration"
        )

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(os, "fork", refuse)
