//! The OTLP receiver as a user meets it: `examples/otel` (a shop and its payments service, each
//! instrumented with the OpenTelemetry Python SDK from PyPI, the shop exporting over gRPC and
//! payments over HTTP/protobuf, neither told where to) recorded with `[sensors.otlp]` while
//! payments is paused for 8 s. The experiment accepts live and offline; the trace holds spans,
//! metric points and log records with the services resolved from the senders' addresses; the
//! checkout SLO monitor fails during the fault and accepts before and after it.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use integration_tests::{bin, require_docker, workspace_root};
use monitor::{Runner, Selection, SourceFile, Verdict};
use serde_json::Value;
use trace::Event;

use crate::demo_e2e::{judge_example, record_example};

/// Builds chaos-otel-python:latest once per test process (`scripts/build-images.sh --otel`,
/// cached by recipe).
fn ensure_otel_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = workspace_root().join("scripts/build-otel-image.sh");
        let status = Command::new("bash")
            .arg(&script)
            .current_dir(workspace_root())
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "{} failed: {status:?}",
            script.display()
        );
    });
}

fn data(e: &Event) -> Value {
    serde_json::from_str(e.data.as_deref().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The verdict of `monitor` of specs/otel.spec over the events with `from <= ts < to`.
fn judge_between(events: &[Event], monitor: &str, from: i64, to: i64) -> Verdict {
    let path = workspace_root().join("specs/otel.spec");
    let text = std::fs::read_to_string(&path).expect("specs/otel.spec");
    let spec = monitor::compile(&[SourceFile::new(path.to_string_lossy(), text)], &|_, _| {
        None
    })
    .unwrap_or_else(|d| panic!("{}", d.render()));
    let sel = Selection {
        monitors: vec![monitor.to_string()],
        experiments: Vec::new(),
    };
    let mut r = Runner::new(&spec, &sel).expect("monitor selected");
    for e in events.iter().filter(|e| e.ts_ns >= from && e.ts_ns < to) {
        r.observe(&e.as_ref());
    }
    r.finish(to).verdict
}

#[test]
fn otel_example_records_and_judges() {
    require_docker!();
    ensure_otel_image();
    // the scenario's own time limit is 150 s
    let rec = record_example("otel", "PaymentsOutage", Duration::from_secs(220));
    judge_example(&rec.trace, &["specs/otel.spec"], "PaymentsOutage");
    let ev = &rec.events;
    let otel = |kind: &str| -> Vec<&Event> {
        ev.iter()
            .filter(|e| e.source == "otel" && e.kind == kind)
            .collect()
    };

    // the receiver: started on the default bridge, the override written, nothing refused
    let rx: Vec<Value> = otel("receiver").into_iter().map(data).collect();
    assert_eq!(rx.len(), 2, "{rx:#?}");
    assert_eq!(rx[0]["phase"], "started");
    let endpoint = rx[0]["endpoint"].as_str().expect("endpoint");
    assert!(endpoint.starts_with("http://"), "{endpoint}");
    assert_eq!(rx[1]["phase"], "stopped");
    assert_eq!(rx[1]["errors"], 0, "{:#}", rx[1]);
    assert_eq!(rx[1]["dropped_requests"], 0, "{:#}", rx[1]);
    assert!(otel("error").is_empty() && otel("dropped").is_empty());
    let over = std::fs::read_to_string(rec.trace.join("compose.otlp.yml")).expect("override");
    assert!(
        over.contains(&format!("OTEL_EXPORTER_OTLP_ENDPOINT: \"{endpoint}\"")),
        "{over}"
    );

    // services resolved from the senders' addresses: the manifest's container addresses
    let m = trace::Manifest::read(&rec.trace).expect("manifest");
    let addr_of = |svc: &str| -> Vec<String> {
        m.compose.services[svc].containers[0]
            .addresses
            .values()
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
            .collect()
    };
    let spans = otel("span");
    for (svc, protocol) in [("shop", "grpc"), ("payments", "http/protobuf")] {
        let mine: Vec<&&Event> = spans
            .iter()
            .filter(|e| e.service.as_deref() == Some(svc))
            .collect();
        assert!(mine.len() > 50, "{svc}: {} spans", mine.len());
        for e in &mine {
            let d = data(e);
            assert!(
                addr_of(svc).contains(&d["peer"].as_str().unwrap_or("").to_string()),
                "{d}"
            );
            // OTEL_SERVICE_NAME set by the override
            assert_eq!(d["claimed_service"], svc, "{d}");
            assert_eq!(d["protocol"], protocol, "{d}");
            assert_eq!(e.ts_ns, d["end_ns"].as_i64().expect("end_ns"));
            let delay = d["delay_ms"].as_f64().expect("delay_ms");
            assert!((-1000.0..30_000.0).contains(&delay), "{d}");
            assert!(e.container.as_deref().is_some_and(|c| !c.is_empty()));
        }
    }
    // the shop's calls and the payments' server spans share their traces (W3C traceparent)
    let trace_ids = |svc: &str, name: &str| -> std::collections::BTreeSet<String> {
        spans
            .iter()
            .filter(|e| e.service.as_deref() == Some(svc))
            .map(|e| data(e))
            .filter(|d| d["name"] == name)
            .filter_map(|d| d["trace_id"].as_str().map(str::to_string))
            .collect()
    };
    let shop_traces = trace_ids("shop", "GET /checkout");
    let paid = trace_ids("payments", "POST /pay");
    assert!(paid.iter().filter(|t| shop_traces.contains(*t)).count() > 50);

    // metric points and log records of both services
    let metric = |svc: &str, name: &str| -> Vec<Value> {
        otel("metric")
            .into_iter()
            .filter(|e| e.service.as_deref() == Some(svc))
            .map(data)
            .filter(|d| d["name"] == name)
            .collect()
    };
    let counts = metric("shop", "checkout.requests");
    assert!(
        counts.iter().any(|d| d["type"] == "sum"
            && d["monotonic"] == true
            && d["value"].as_i64().unwrap_or(0) > 0),
        "{counts:?}"
    );
    let hist = metric("shop", "checkout.duration");
    assert!(
        hist.iter()
            .any(|d| d["type"] == "histogram" && d["histogram"]["count"].as_u64().unwrap_or(0) > 0),
        "{hist:?}"
    );
    assert!(!metric("payments", "payments.paid").is_empty());
    let logs = otel("log");
    assert!(logs.iter().any(|e| e.service.as_deref() == Some("payments")
        && e.message.as_deref() == Some("payments listening on 8000")));

    // error spans and failure logs only while payments was paused
    let fault = |phase: &str| -> i64 {
        ev.iter()
            .find(|e| e.source == "fault" && e.kind == "pause" && data(e)["phase"] == phase)
            .map(|e| e.ts_ns)
            .unwrap_or_else(|| panic!("no {phase} pause fault"))
    };
    let (paused, resumed) = (fault("applied"), fault("reverted"));
    let errors: Vec<i64> = spans
        .iter()
        .filter(|e| {
            e.service.as_deref() == Some("shop")
                && data(e)["name"] == "GET /checkout"
                && data(e)["error"] == true
        })
        .map(|e| e.ts_ns)
        .collect();
    assert!(errors.len() >= 10, "{} error spans", errors.len());
    // a checkout that started just before the pause times out 0.3 s into it; one waiting at the
    // revert returns within its own timeout
    let second = 1_000_000_000;
    for t in &errors {
        assert!(
            *t > paused && *t < resumed + second,
            "error span at {t}, pause {paused}..{resumed}"
        );
    }
    let failed_logs: Vec<&&Event> = logs
        .iter()
        .filter(|e| {
            e.service.as_deref() == Some("shop")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("payment failed"))
        })
        .collect();
    assert!(!failed_logs.is_empty());
    for e in &failed_logs {
        assert_eq!(data(e)["severity"], "error");
        assert!(e.ts_ns > paused && e.ts_ns < resumed + second);
    }

    // the SLO monitor: fails during the fault (offline, through the analyzer) ...
    let out = Command::new(bin("analyzer"))
        .arg("check")
        .arg(&rec.trace)
        .arg("--spec")
        .arg(workspace_root().join("specs/otel.spec"))
        .args(["--monitor", "checkoutSlo", "--format", "json"])
        .output()
        .expect("run analyzer");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("json report");
    let x = &r["traces"][0]["report"]["monitors"][0]["explanation"];
    let decided = x["deciding_event"]["ts_ns"]
        .as_i64()
        .expect("deciding event");
    assert!(decided > paused && decided < resumed + second, "{x:#}");
    assert!(
        x["reason"].as_str().unwrap_or("").contains("error rate"),
        "{x:#}"
    );
    // ... and accepts outside it: before the pause, and from 1 s after the revert (no error
    // span ends later, above) to the teardown: the last step waits for 60 good checkouts
    let teardown = ev
        .iter()
        .find(|e| e.source == "recorder" && e.kind == "teardown")
        .map(|e| e.ts_ns)
        .expect("teardown event");
    let first = ev.first().map(|e| e.ts_ns).unwrap_or(0);
    assert_eq!(
        judge_between(ev, "checkoutSlo", first, paused),
        Verdict::Accept
    );
    assert!(
        teardown > resumed + 6 * second,
        "the run ended too early to judge after the fault"
    );
    assert_eq!(
        judge_between(ev, "checkoutSlo", resumed + second, teardown),
        Verdict::Accept
    );
    assert_eq!(
        judge_between(ev, "checkoutSlo", first, teardown),
        Verdict::Fail
    );
}
