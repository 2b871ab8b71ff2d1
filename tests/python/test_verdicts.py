"""`analyzer check --verdicts FILE.parquet` is readable by pyarrow and DuckDB, one row per
trace x monitor/experiment/step plus one per unreadable trace, with the manifest's facts.

The fleet: the committed split-brain samples (a passing and a failing run) and a generated trace
(which records a scenario hash), plus a directory that is not a trace. Binary as in
test_trace_compat.py ($ANALYZER, else target/debug/analyzer).

Run: python3 -m pytest -q tests/python
"""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from test_trace_compat import ROOT, analyzer, analyzer_bin

pq = pytest.importorskip("pyarrow.parquet")
duckdb = pytest.importorskip("duckdb")

SPECS = ["--spec", str(ROOT / "specs/akka.spec"), "--spec", str(ROOT / "specs/split-brain.spec")]


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fleet")
    runs = d / "runs"
    shutil.copytree(ROOT / "traces/sample-split-brain", runs / "a-pass")
    shutil.copytree(ROOT / "traces/sample-split-brain-fail", runs / "b-fail")
    analyzer("generate", str(runs / "c-gen"), "--scenario", "split-brain", "--auto-down", "10",
             "--duration", "70", "--experiment", "AutoDownSplitBrain")
    (runs / "d-broken").mkdir()
    (runs / "d-broken" / "manifest.json").write_text("{")
    out = d / "verdicts.parquet"
    r = subprocess.run([str(analyzer_bin()), "check", str(runs), *SPECS, "--experiment",
                        "AutoDownSplitBrain", "--verdicts", str(out)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr  # a fail wins over the unreadable trace
    return out


def test_pyarrow_reads_one_row_per_trace_and_step(verdicts):
    t = pq.read_table(verdicts)
    assert str(t.schema.field("recorded_at").type) == "timestamp[ns, tz=UTC]"
    # (nanosecond timestamps do not fit datetime.datetime: compare them as integers)
    t = t.set_column(t.schema.get_field_index("recorded_at"), "recorded_at",
                     t.column("recorded_at").cast("int64"))
    rows = t.to_pylist()
    # 3 readable traces x (1 experiment + 14 steps) + 1 unreadable
    assert len(rows) == 3 * 15 + 1
    broken = [r for r in rows if r["kind"] == "trace"]
    assert len(broken) == 1 and broken[0]["verdict"] == "unreadable"
    assert "invalid manifest" in broken[0]["message"]
    exp = {Path(r["trace"]).name: r for r in rows if r["kind"] == "experiment"}
    assert exp["a-pass"]["verdict"] == "accept"
    assert exp["b-fail"]["verdict"] == "fail"
    step9 = [r for r in rows if r["kind"] == "step" and r["step"] == 9 and r["trace"].endswith("b-fail")][0]
    assert step9["verdict"] == "fail" and "did not accept within 30s" in step9["message"]
    assert step9["time_to_decision_ns"] == 30_000_000_000
    # the fail sample was recorded with scenario and spec hashes; the old sample has none
    fail_scenario = (ROOT / "examples/split-brain/scenario-fail.toml").read_bytes()
    assert exp["b-fail"]["scenario"] == "scenario-fail"
    assert exp["b-fail"]["scenario_sha256"] == hashlib.sha256(fail_scenario).hexdigest()
    spec = (ROOT / "specs/split-brain.spec").read_bytes()
    assert hashlib.sha256(spec).hexdigest() in exp["b-fail"]["spec_sha256"]
    assert exp["a-pass"]["scenario"] is None and exp["a-pass"]["spec_sha256"] == []
    assert exp["c-gen"]["scenario"] == "generated-AutoDownSplitBrain"
    manifest = __import__("json").loads((ROOT / "traces/sample-split-brain/manifest.json").read_text())
    assert exp["a-pass"]["recorded_at"] == manifest["started_ns"]
    assert exp["a-pass"]["checked_spec_sha256"][1] == hashlib.sha256(spec).hexdigest()


def test_duckdb_groups_verdicts(verdicts):
    rows = duckdb.sql(
        f"""SELECT verdict, count(*) AS n FROM '{verdicts}' WHERE kind = 'experiment'
            GROUP BY verdict ORDER BY verdict"""
    ).fetchall()
    assert rows == [("accept", 2), ("fail", 1)]
    [(run_id,)] = duckdb.sql(
        f"SELECT run_id FROM '{verdicts}' WHERE kind = 'step' AND verdict = 'fail'"
    ).fetchall()
    assert run_id == __import__("json").loads(
        (ROOT / "traces/sample-split-brain-fail/manifest.json").read_text())["run_id"]
