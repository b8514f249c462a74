"""The verdict, the statistics and the pveperf layout, from injected timings and documents."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from pvectl.errors import ExitCode, PvectlError
from pvectl.perf import probe
from pvectl.perf.pveperf_format import format_pveperf
from pvectl.perf.report import (
    durable_from_timings,
    make_verdict,
    parse_probe_output,
    verdict_for,
)

MS = 1_000_000
US = 1_000


def _verdict_from_latency(sync_ns: int, pveperf_per_s: float | None, fs: str = "ext4") -> Any:
    """One second of back-to-back syncs of a fixed latency, as the probe would time them."""
    count = max(1, int(1e9 // sync_ns))
    fsync = durable_from_timings("fsync", [sync_ns] * count, 1.0)
    fdatasync = durable_from_timings("fdatasync", [sync_ns] * count, 1.0)
    return (
        verdict_for([], [fsync, fdatasync], fs, "honest")
        if pveperf_per_s is None
        else (
            make_verdict(
                fsync.rate,
                pveperf_per_s,
                fdatasync.latency.p99 / 1000 if fdatasync.latency else None,
                fs,
            )
        )
    )


@pytest.mark.parametrize(
    ("sync_ns", "pveperf", "klass", "pveperf_ok", "etcd_ok"),
    [
        (25 * MS, 40.0, "usb-sd", False, False),  # the seed's USB stick: 30-50/s
        (8 * MS, 120.0, "hdd", False, True),  # 125/s, one rotation per flush
        (300 * US, 3000.0, "ssd", True, True),  # the seed's SSD: 3,000+
        (60 * US, 16000.0, "ssd-plp", True, True),  # this VM: flushes acked from cache
    ],
)
def test_verdict_places_disk_in_the_seed_table(
    sync_ns: int, pveperf: float, klass: str, pveperf_ok: bool, etcd_ok: bool
) -> None:
    verdict = _verdict_from_latency(sync_ns, pveperf)
    assert verdict.disk_class == klass
    assert verdict.pveperf_ok is pveperf_ok
    assert verdict.etcd_ok is etcd_ok
    assert verdict.sentence.count(". ") == 0 and verdict.sentence.endswith(".")
    assert verdict.disk_class_label in verdict.sentence


def test_thresholds_are_strict_at_the_boundary() -> None:
    at_limit = make_verdict(1000.0, 200.0, 10.0, "ext4")
    assert at_limit.pveperf_ok is False  # pveperf: "greater than 200"
    assert at_limit.etcd_ok is False  # etcd: p99 "under 10 ms"
    above = make_verdict(1000.0, 200.01, 9.99, "ext4")
    assert above.pveperf_ok is True and above.etcd_ok is True


def test_etcd_uses_the_tail_not_the_mean() -> None:
    # 98.5 % fast syncs, 1.5 % at 50 ms: the mean rate is fine, the p99 is not.
    seed = random.randrange(1 << 30)
    print("seed", seed)
    rng = random.Random(seed)
    timings = [rng.randrange(50 * US, 150 * US) for _ in range(985)] + [50 * MS] * 15
    rng.shuffle(timings)
    fdatasync = durable_from_timings("fdatasync", timings, 1.0)
    fsync = durable_from_timings("fsync", timings, 1.0)
    verdict = verdict_for([], [fsync, fdatasync], "ext4", "honest")
    assert fdatasync.latency is not None and fdatasync.latency.p50 < 150
    assert verdict.etcd_ok is False
    assert verdict.fdatasync_p99_ms == pytest.approx(50.0)


def test_tmpfs_and_missing_fsync_tests() -> None:
    assert make_verdict(500000.0, 400000.0, 0.001, "tmpfs").disk_class == "memory"
    assert "nothing about a disk" in make_verdict(5e5, None, None, "tmpfs").sentence
    unknown = make_verdict(None, None, None, "ext4")
    assert unknown.disk_class == "unknown" and unknown.pveperf_ok is None


def test_pveperf_figure_stands_in_when_no_durable_section() -> None:
    verdict = make_verdict(None, 45.0, None, "ext4", compat=True)
    assert verdict.disk_class == "usb-sd"
    assert "compat" in verdict.fsync_rate_source
    assert verdict.etcd_ok is None


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 1001))  # 1..1000 ns
    assert probe.percentile(values, 50) == 500
    assert probe.percentile(values, 99) == 990
    assert probe.percentile(values, 99.9) == 999
    assert probe.percentile(values, 100) == 1000
    assert probe.percentile([7], 99.9) == 7
    summary = probe.summarize_latencies([1000 * v for v in reversed(values)])
    assert (summary["p50"], summary["p99"], summary["max"]) == (500.0, 990.0, 1000.0)
    assert sum(n for _, _, n in summary["histogram"]) == 1000
    lows = [lo for lo, _, _ in summary["histogram"]]
    assert lows == sorted(lows)


def _doc(**over: Any) -> dict[str, Any]:
    lat = probe.summarize_latencies([100 * US] * 10)
    doc: dict[str, Any] = {
        "probe": probe.PROBE_NAME,
        "probe_version": probe.PROBE_VERSION,
        "hostname": "pve1",
        "mode": "honest",
        "target": {
            "argument": "/",
            "kind": "directory",
            "directory": "/",
            "device": "/dev/mapper/pve-root",
            "read_device": "/dev/mapper/pve-root",
            "mountpoint": "/",
            "fs_type": "ext4",
            "size_bytes": 100 * 1024**3,
            "available_bytes": 50 * 1024**3,
        },
        "settings": {},
        "figures": [
            probe.figure("cpu_bogomips", "CPU BOGOMIPS", 54323.2, "BogoMIPS", "m"),
            probe.figure("regex_per_second", "REGEX/SECOND", 2345678.9, "matches/s", "m"),
            probe.figure("hd_size", "HD SIZE", 93.93, "GiB", "m", device="/dev/mapper/pve-root"),
            probe.figure("buffered_reads", "BUFFERED READS", 1234.567, "MiB/s", "m"),
            probe.figure("average_seek_time", "AVERAGE SEEK TIME", 0.123, "ms", "m"),
            probe.figure("fsyncs_per_second", "FSYNCS/SECOND", 3210.499, "fsyncs/s", "m"),
            probe.figure("dns_ext", "DNS EXT", 21.456, "ms", "m"),
            probe.figure("dns_int", "DNS INT", 1.5, "ms", "m", domain="lan.example"),
        ],
        "durable": [
            {
                "kind": "fsync",
                "rate": 9000.0,
                "rate_unit": "ops/s",
                "ops": 10,
                "seconds": 1.0,
                "block_size": 4096,
                "pattern": "seq",
                "method": "m",
                "latency": lat,
            }
        ],
        "warnings": [],
        "elapsed_s": 15.0,
    }
    doc.update(over)
    return doc


def test_pveperf_layout_line_by_line() -> None:
    report = parse_probe_output(json.dumps(_doc()))
    assert format_pveperf(report) == (
        "CPU BOGOMIPS:      54323.20\n"
        "REGEX/SECOND:      2345678\n"
        "HD SIZE:           93.93 GB (/dev/mapper/pve-root)\n"
        "BUFFERED READS:    1234.57 MB/sec\n"
        "AVERAGE SEEK TIME: 0.12 ms\n"
        "FSYNCS/SECOND:     3210.50\n"
        "DNS EXT:           21.46 ms\n"
        "DNS INT:           1.50 ms (lan.example)\n"
    )
    for line in format_pveperf(report).splitlines():  # values start in column 20
        assert line[:19].rstrip().endswith(":") and line[19] != " ", line


def test_pveperf_layout_leaves_lines_out_as_pveperf() -> None:
    doc = _doc()
    keep = {"cpu_bogomips", "regex_per_second", "hd_size", "fsyncs_per_second", "dns_ext"}
    doc["figures"] = [f for f in doc["figures"] if f["key"] in keep]  # a ZFS root, no search
    lines = format_pveperf(parse_probe_output(json.dumps(doc))).splitlines()
    assert [re.match(r"^([A-Z /]+):", ln).group(1) for ln in lines] == [  # type: ignore[union-attr]
        "CPU BOGOMIPS",
        "REGEX/SECOND",
        "HD SIZE",
        "FSYNCS/SECOND",
        "DNS EXT",
    ]


def test_probe_error_document_becomes_one_line_error_with_its_code() -> None:
    text = json.dumps(probe.error_document("/nope: no such file or directory", 66))
    with pytest.raises(PvectlError) as err:
        parse_probe_output(text)
    assert err.value.exit_code == ExitCode.NO_INPUT
    assert str(err.value) == "/nope: no such file or directory"
    for garbage in ("", "not json", "[1, 2]", json.dumps({"probe_version": 1})):
        with pytest.raises(PvectlError) as err:
            parse_probe_output(garbage)
        assert err.value.exit_code == ExitCode.DATA


def test_resolv_conf_search_rule_matches_pveperf() -> None:
    servers, domain = probe.parse_resolv_conf(
        "# x\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nsearch lan.example\n"
    )
    assert servers == ["192.0.2.1", "2001:db8::1"] and domain == "lan.example"
    assert probe.parse_resolv_conf("search a.example b.example\n")[1] is None
    assert probe.parse_resolv_conf("domain a.example\n")[1] is None


def test_bogomips_sum_any_case_decimal_only() -> None:
    text = "bogomips\t: 4800.00\nBogoMIPS : 50.00\nbogomips : 100\nprocessor : 1\n"
    assert probe.parse_bogomips(text) == pytest.approx(4850.0)


def test_dns_query_packet_is_rfc1035() -> None:
    packet = probe.dns_query_packet(0xBEEF, "test12.example.com")
    assert packet[:12] == bytes.fromhex("beef01000001000000000000")
    assert packet[12:] == b"\x06test12\x07example\x03com\x00\x00\x01\x00\x01"


def test_mountinfo_longest_prefix_and_escapes() -> None:
    rows = probe.parse_mountinfo(
        "27 1 254:0 / / rw - ext4 /dev/vda rw\n"
        "40 27 0:40 / /mnt/my\\040disk rw - ext4 /dev/sdb1 rw\n"
        "41 27 0:41 / /mnt/my rw - tmpfs tmpfs rw\n"
    )
    assert probe.mount_containing(rows, "/mnt/my disk/x")["source"] == "/dev/sdb1"  # type: ignore[index]
    assert probe.mount_containing(rows, "/mnt/my/x")["fs_type"] == "tmpfs"  # type: ignore[index]
    assert probe.mount_containing(rows, "/mnt/myother")["source"] == "/dev/vda"  # type: ignore[index]


def test_histogram_rows_are_merged_to_fit_and_keep_every_count() -> None:
    from pvectl.cli.perf_text import latency_histogram

    timings = [int(1000 * 1.05**i) for i in range(400)]  # 1 us .. ~300 ms: many buckets
    fsync = durable_from_timings("fsync", timings, 1.0)
    assert fsync.latency is not None and len(fsync.latency.histogram) > 16
    rows = latency_histogram(fsync.latency).splitlines()
    assert len(rows) <= 16
    assert sum(int(r.split()[-2]) for r in rows) == 400


def test_probe_args_round_trip_through_the_probe_parser() -> None:
    from pvectl.perf.run import PerfOptions, probe_args

    opts = PerfOptions(
        target="/var/lib/vz",
        compat=True,
        runtime=7.5,
        block_size="8k",
        file_size="32m",
        pattern="same",
        direct=True,
        skip=("dns", "regex"),
        sync_kinds=("fdatasync",),
        dns_timeout=0.5,
        drop_caches=False,
    )
    parsed = probe.options_from_args(probe_args(opts, fsync_dir="/mnt/x"))
    assert parsed == probe.ProbeOptions(
        target="/var/lib/vz",
        fsync_dir="/mnt/x",
        compat=True,
        runtime=7.5,
        block_size=8192,
        file_size=32 * 1024 * 1024,
        pattern="same",
        direct=True,
        skip=frozenset({"dns", "regex"}),
        sync_kinds=("fdatasync",),
        dns_timeout=0.5,
        drop_caches=False,
    )
    quick = probe.options_from_args(probe_args(PerfOptions(quick=True)))
    assert quick.runtime == probe.QUICK_RUNTIME and quick.target == "/"


def test_side_by_side_table_has_a_column_per_host() -> None:
    from rich.console import Console

    from pvectl.cli.perf_text import render_side_by_side

    fast = parse_probe_output(json.dumps(_doc(hostname="pve1")))
    slow_doc = _doc(hostname="pve2")
    slow_doc["figures"] = slow_doc["figures"][:2]
    slow_doc["durable"][0]["rate"] = 42.0
    slow = parse_probe_output(json.dumps(slow_doc))
    console = Console(width=200, record=True, no_color=True)
    console.print(render_side_by_side([fast, slow]))
    text = console.export_text()
    assert "pve1" in text and "pve2" in text
    fsync_row = next(ln for ln in text.splitlines() if "write + fsync ops/s" in ln)
    assert "9,000" in fsync_row and "42" in fsync_row
    seek_row = next(ln for ln in text.splitlines() if "AVERAGE SEEK TIME" in ln)
    assert seek_row.rstrip(" │").endswith("-")  # pve2 has no such line
