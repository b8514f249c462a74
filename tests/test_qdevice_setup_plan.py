"""The pure decisions of ``pvectl qdevice setup/remove``: algorithm, device section,
config_version bump, and the cluster guards (no SSH needed)."""

from __future__ import annotations

import pytest

from pvectl import corosync_conf
from pvectl.errors import ExitCode, PvectlError
from pvectl.targets.qdevice.plan import (
    PVE_CONF,
    NodeView,
    QdeviceSetupError,
    check_cluster,
    choose_algorithm,
    with_device,
    without_device,
)
from pvectl.targets.qdevice.setup import COROSYNC_CONF

CONF = """totem {
  cluster_name: {name}
  config_version: 7
  version: 2
}

nodelist {
  node {
    name: n1
    nodeid: 1
    quorum_votes: 1
    ring0_addr: 10.0.0.1
  }
  node {
    name: n2
    nodeid: 2
    quorum_votes: 1
    ring0_addr: 10.0.0.2
  }
}

quorum {
  provider: corosync_votequorum
}
"""


def _conf(name: str = "home", version: int = 7) -> str:
    return CONF.replace("{name}", name).replace("config_version: 7", f"config_version: {version}")


def _view(host: str, node_id: int, text: str, membership: tuple[int, ...] = (1, 2)) -> NodeView:
    return NodeView(host, node_id, COROSYNC_CONF, text, membership, False, False)


def test_algorithm_follows_pvecm() -> None:
    assert choose_algorithm(2, False, None) == "ffsplit"
    assert choose_algorithm(4, True, None) == "ffsplit"
    assert choose_algorithm(3, True, None) == "lms"
    assert choose_algorithm(2, False, "lms") == "lms"
    with pytest.raises(QdeviceSetupError, match="odd node count") as refused:
        choose_algorithm(3, False, None)
    assert refused.value.exit_code == ExitCode.CONFIG
    with pytest.raises(QdeviceSetupError):
        choose_algorithm(5, False, "ffsplit")


def test_device_section_as_pvecm_writes_it() -> None:
    root = corosync_conf.parse(_conf())
    added = corosync_conf.dump(
        with_device(root, corosync_conf.qdevice_section("192.0.2.9", "ffsplit", "on"))
    )
    assert "config_version: 8" in added
    assert (
        "quorum {\n  device {\n    model: net\n    net {\n      algorithm: ffsplit\n"
        "      host: 192.0.2.9\n      tls: on\n    }\n    votes: 1\n  }\n"
        "  provider: corosync_votequorum\n}\n"
    ) in added
    lms = corosync_conf.dump(
        with_device(root, corosync_conf.qdevice_section("192.0.2.9", "lms", "on"))
    )
    assert "algorithm: lms" in lms and "votes" not in lms.split("quorum {")[1]
    # the original is untouched; remove restores its meaning with one more version
    assert "device" not in corosync_conf.dump(root)
    back = without_device(corosync_conf.parse(added))
    assert corosync_conf.dump(back) == corosync_conf.dump(root).replace(
        "config_version: 7", "config_version: 9"
    )


def test_missing_config_version_is_refused() -> None:
    root = corosync_conf.parse(_conf().replace("  config_version: 7\n", ""))
    with pytest.raises(QdeviceSetupError, match="unable to read config version"):
        with_device(root, corosync_conf.qdevice_section("192.0.2.9", "ffsplit", "on"))


def test_cluster_guards() -> None:
    found = check_cluster([_view("b", 2, _conf()), _view("a", 1, _conf())])
    assert [n.host for n in found.nodes] == ["a", "b"]  # nodelist order
    assert found.cluster_name == "home" and not found.pve

    with pytest.raises(QdeviceSetupError, match="cluster name mismatch: a is in 'home', b is"):
        check_cluster([_view("a", 1, _conf()), _view("b", 2, _conf("work"))])
    with pytest.raises(QdeviceSetupError, match="config_version: a has 7, b has 8"):
        check_cluster([_view("a", 1, _conf()), _view("b", 2, _conf(version=8))])
    with pytest.raises(PvectlError, match="Node n2 \\(id 2\\) is offline") as offline:
        check_cluster([_view("a", 1, _conf(), membership=(1,))])
    assert offline.value.exit_code == ExitCode.UNAVAILABLE
    with pytest.raises(PvectlError, match="no --host reaches node\\(s\\) n2 \\(id 2\\)") as gap:
        check_cluster([_view("a", 1, _conf())])
    assert gap.value.exit_code == ExitCode.USAGE


def test_pve_config_is_the_source_when_present() -> None:
    view = NodeView("a", 1, PVE_CONF, _conf(), (1, 2), True, False)
    found = check_cluster([view, _view("b", 2, _conf())])
    assert found.pve


def test_a_qnetd_taking_plaintext_clients_is_pointed_out() -> None:
    from pvectl.quorum.qdevice import wire as w
    from pvectl.quorum.qdevice.server import QnetdCore, render_qnetd_tool
    from pvectl.targets.qdevice.plan import qnetd_tls_note

    optional = render_qnetd_tool(QnetdCore(w.TlsSupported.SUPPORTED).status(), verbose=False)
    note = qnetd_tls_note(optional, "root@192.0.2.9")
    assert note is not None and "root@192.0.2.9 has TLS Supported" in note
    assert '"-s req"' in note and "\n" not in note
    required = render_qnetd_tool(QnetdCore(w.TlsSupported.REQUIRED).status(), verbose=False)
    assert qnetd_tls_note(required, "q") is None
    off = render_qnetd_tool(QnetdCore(w.TlsSupported.UNSUPPORTED).status(), verbose=False)
    with pytest.raises(QdeviceSetupError, match="runs without TLS") as refused:
        qnetd_tls_note(off, "q", "required")  # the nodes would never connect
    assert refused.value.exit_code == ExitCode.CONFIG
    assert "has TLS Unsupported" in (qnetd_tls_note(off, "q", "on") or "")
    assert qnetd_tls_note("", "q") is None  # no answer: nothing to say
