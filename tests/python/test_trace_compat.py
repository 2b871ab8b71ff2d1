"""Trace formats v1 and v2 are readable by the tools people already use: pyarrow and DuckDB.

The trace under test is $TRACE_PATH when set; otherwise one is generated with the analyzer's
hidden `generate` command (the binary is $ANALYZER, else target/debug/analyzer, built with
`cargo build -p analyzer` when missing). Counts are cross-checked against `analyzer events --count`.

Run: python3 -m pytest -q tests/python
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pc = pytest.importorskip("pyarrow.compute")
duckdb = pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parents[2]
START_NS = 1_767_225_600_000_000_000  # the generator's default start, 2026-01-01T00:00:00Z


def analyzer_bin() -> Path:
    if os.environ.get("ANALYZER"):
        return Path(os.environ["ANALYZER"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "debug" / "analyzer"
    if not exe.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "analyzer"], cwd=ROOT, check=True)
    return exe


def analyzer(*args: str) -> str:
    out = subprocess.run([str(analyzer_bin()), *args], capture_output=True, text=True)
    assert out.returncode == 0, f"analyzer {' '.join(args)} failed: {out.stderr}"
    return out.stdout


@pytest.fixture(scope="session")
def trace_dir(tmp_path_factory) -> Path:
    if os.environ.get("TRACE_PATH"):
        return Path(os.environ["TRACE_PATH"])
    d = tmp_path_factory.mktemp("trace") / "t"
    analyzer("generate", str(d), "--events", "60000", "--scenario", "gc-pause", "--packet-rate", "50", "--seed", "3")
    return d


def count(trace_dir: Path, *args: str) -> int:
    return int(analyzer("events", str(trace_dir), "--count", *args).strip())


def test_pyarrow_reads_types_rows_and_order(trace_dir):
    path = trace_dir / "events.parquet"
    f = pq.ParquetFile(path)
    t = f.read()
    assert t.num_rows == count(trace_dir) > 0
    s = t.schema
    assert s.field("ts_ns").type == pa.int64()
    assert s.field("time").type == pa.timestamp("ns")  # no time zone
    assert s.field("seq").type == pa.uint64()
    for c in ("source", "service", "container", "kind"):
        assert pa.types.is_dictionary(s.field(c).type), c
        assert s.field(c).type.value_type == pa.string(), c
    assert s.field("message").type == pa.string()
    assert s.field("data").type == pa.string()
    meta = f.metadata
    manifest = json.loads((trace_dir / "manifest.json").read_text())
    version = str(manifest.get("format_version", 1)).encode()
    assert meta.metadata[b"chaos_trace.format_version"] == version
    rg = meta.row_group(0)
    ts_col = rg.column(0)
    assert ts_col.statistics is not None and ts_col.statistics.has_min_max
    # ZSTD on each column chunk it shrinks, the others stored uncompressed (the text is ZSTD)
    codecs = {}
    for i in range(rg.num_columns):
        c = rg.column(i)
        assert c.compression in ("ZSTD", "UNCOMPRESSED"), (c.path_in_schema, c.compression)
        if c.compression == "UNCOMPRESSED":
            assert c.total_compressed_size == c.total_uncompressed_size, c.path_in_schema
        codecs[c.path_in_schema] = c.compression
    assert codecs["message"] == "ZSTD"
    # Sorted by (ts_ns, seq); time equals ts_ns; seq unique.
    ts = t.column("ts_ns").to_pylist()
    seq = t.column("seq").to_pylist()
    keys = list(zip(ts, seq))
    assert keys == sorted(keys)
    assert len(set(seq)) == len(seq)
    assert t.column("time").cast(pa.int64()).equals(t.column("ts_ns"))
    # JMX data is JSON with Akka's ClusterStatus structure.
    jmx = t.filter(pc.equal(t.column("kind").cast(pa.string()), "akka:type=Cluster"))
    d = json.loads(jmx.column("data")[0].as_py())
    assert set(d["ClusterStatus"]) == {"members", "self-address", "unreachable"}


def test_pyarrow_time_range_filter_matches_analyzer(trace_dir):
    lo, hi = START_NS + 10_000_000_000, START_NS + 25_000_000_000
    t = pq.read_table(
        trace_dir / "events.parquet",
        filters=[("ts_ns", ">=", lo), ("ts_ns", "<", hi)],
        columns=["ts_ns", "source"],
    )
    assert t.num_rows == count(trace_dir, "--since", "+10s", "--until", "+25s") > 0


def test_duckdb_counts_types_and_time_range(trace_dir):
    path = str(trace_dir / "events.parquet")
    con = duckdb.connect()
    (n,) = con.execute("select count(*) from read_parquet(?)", [path]).fetchone()
    assert n == count(trace_dir)
    types = dict(con.execute("select column_name, column_type from (describe select * from read_parquet(?))", [path]).fetchall())
    assert types["ts_ns"] == "BIGINT"
    assert types["seq"] == "UBIGINT"
    assert types["time"].startswith("TIMESTAMP")
    assert types["source"] == "VARCHAR" and types["data"] == "VARCHAR"
    (rng,) = con.execute(
        "select count(*) from read_parquet(?) where time >= TIMESTAMP '2026-01-01 00:00:10' and time < TIMESTAMP '2026-01-01 00:00:25'",
        [path],
    ).fetchone()
    assert rng == count(trace_dir, "--since", "2026-01-01T00:00:10Z", "--until", "2026-01-01T00:00:25Z") > 0
    by_source = dict(con.execute("select source, count(*) from read_parquet(?) group by 1", [path]).fetchall())
    assert by_source.get("fault", 0) == count(trace_dir, "--source", "fault")
    assert by_source["jmx"] == count(trace_dir, "--source", "jmx")
    # JSON inside data is queryable.
    (members,) = con.execute(
        "select max(json_array_length(json_extract(data, '$.ClusterStatus.members'))) from read_parquet(?) where kind = 'akka:type=Cluster'",
        [path],
    ).fetchone()
    assert members == 4


def test_packets_parquet_is_readable(trace_dir):
    path = trace_dir / "packets.parquet"
    if not path.exists():
        pytest.skip("trace has no packets")
    t = pq.read_table(path)
    assert t.num_rows == count(trace_dir, "--source", "packet") > 0
    assert t.schema.field("src_port").type == pa.uint16()
    assert t.schema.field("tcp_flags").type == pa.uint8()
    con = duckdb.connect()
    (n,) = con.execute("select count(*) from read_parquet(?) where protocol = 'tcp'", [str(path)]).fetchone()
    assert n == t.num_rows


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
