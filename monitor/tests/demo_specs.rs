//! The seed specs that judge demo-node's own output and packet captures, against event lists
//! shaped like the real recordings: `helloWorld` over demo-node's `hello` mode lines
//! (demo-node/src/hello.rs), `pingLoss` over its `ping` mode lines (demo-node/src/ping.rs), and
//! the packet monitors of specs/network.spec over packet events built by
//! `PacketRecord::to_event` (what the reader merges in from packets.parquet). Each case asserts
//! the verdict and the seq of the deciding event.

mod common;
use common::*;
use monitor::Verdict::{self, *};
use serde_json::json;
use trace::Event;

/// demo-node's `hello` lines, as `demo-node/src/hello.rs` prints them.
const HELLO: [&str; 6] = [
    "Hello from Docker!",
    "This message shows that your installation appears to be working correctly.",
    "1. The Docker client contacted the Docker daemon.",
    "2. The Docker daemon created the container from the project's own FROM scratch image (nothing was pulled).",
    "3. The Docker daemon created a new container from that image which runs the executable that produces the output you are currently reading.",
    "4. The Docker daemon streamed that output to the Docker client, which sent it to your terminal.",
];

struct Case {
    name: &'static str,
    monitor: &'static str,
    events: Vec<Event>,
    end: Option<f64>,
    verdict: Verdict,
    seq: Option<u64>,
}

fn judge(src: &str, c: &Case) -> Result<(), String> {
    let spec = with_seed_imports(src);
    let r = run(
        &spec,
        monitors(&[c.monitor]),
        &c.events,
        c.end.map(|e| T0 + (e * S as f64) as i64),
    );
    let m = &r.monitors[0];
    let e = m.primary_explanation();
    let seq = e.and_then(|e| e.deciding_event.as_ref()).map(|d| d.seq);
    if m.verdict != c.verdict || seq != c.seq {
        return Err(format!(
            "{}: expected {:?} at seq {:?}, got {:?} at seq {:?}: {:?}",
            c.name,
            c.verdict,
            c.seq,
            m.verdict,
            seq,
            e.map(|e| (&e.reason, &e.pending))
        ));
    }
    Ok(())
}

fn judge_all(src: &str, cases: Vec<Case>) {
    let failures: Vec<String> = cases.iter().filter_map(|c| judge(src, c).err()).collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The hello lines of `service` from seq `first`, one every `gap` seconds from `t`.
fn hello(first: u64, t: f64, gap: f64, service: &str, lines: &[&str]) -> Vec<Event> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| log(first + i as u64, t + gap * i as f64, service, l))
        .collect()
}

#[test]
fn hello_world_sequence() {
    let src = "import \"hello-world.spec\"\nmonitor h = helloWorld at hello\nmonitor quick = helloWorld(1s) at hello\n";
    let mut noisy = vec![
        log(1, 0.0, "hello", "starting"),
        log(2, 0.1, "other", "Hello from Docker!"),
    ];
    noisy.extend(hello(3, 0.2, 0.5, "hello", &HELLO));
    let mut interleaved = Vec::new();
    for (i, l) in HELLO.iter().enumerate() {
        interleaved.push(log(2 * i as u64 + 1, i as f64, "hello", l));
        interleaved.push(log(
            2 * i as u64 + 2,
            i as f64 + 0.5,
            "other",
            "1. unrelated",
        ));
    }
    let skipped = {
        let mut l = HELLO.to_vec();
        l.remove(3); // "2. ..."
        l
    };
    let swapped = {
        let mut l = HELLO.to_vec();
        l.swap(0, 1);
        l
    };
    judge_all(
        src,
        vec![
            Case {
                name: "all six lines in order accept at the last",
                monitor: "h",
                events: hello(1, 0.0, 0.0, "hello", &HELLO),
                end: None,
                verdict: Accept,
                seq: Some(6),
            },
            Case {
                name: "unrelated lines and other services are ignored",
                monitor: "h",
                events: noisy,
                end: None,
                verdict: Accept,
                seq: Some(8),
            },
            Case {
                name: "other services' numbered lines are not ours",
                monitor: "h",
                events: interleaved,
                end: None,
                verdict: Accept,
                seq: Some(11),
            },
            Case {
                name: "a skipped line fails at the line after the gap",
                monitor: "h",
                events: hello(1, 0.0, 0.1, "hello", &skipped),
                end: None,
                verdict: Fail,
                seq: Some(4),
            },
            Case {
                name: "a repeated line fails at the repeat",
                monitor: "h",
                events: hello(
                    1,
                    0.0,
                    0.1,
                    "hello",
                    &[HELLO[0], HELLO[1], HELLO[2], HELLO[2]],
                ),
                end: None,
                verdict: Fail,
                seq: Some(4),
            },
            Case {
                name: "the second line before the greeting: fails at the next line",
                monitor: "h",
                events: hello(1, 0.0, 0.1, "hello", &swapped),
                end: None,
                verdict: Fail,
                seq: Some(3),
            },
            Case {
                name: "output stops halfway: the gap timeout fails",
                monitor: "h",
                events: hello(1, 0.0, 0.1, "hello", &HELLO[..3]),
                end: Some(30.0),
                verdict: Fail,
                seq: None,
            },
            Case {
                name: "stopped halfway at the trace end: inconclusive",
                monitor: "h",
                events: hello(1, 0.0, 0.1, "hello", &HELLO[..3]),
                end: Some(5.0),
                verdict: Inconclusive,
                seq: None,
            },
            Case {
                name: "slower than the gap parameter fails",
                monitor: "quick",
                events: hello(1, 0.0, 2.0, "hello", &HELLO),
                end: None,
                verdict: Fail,
                seq: None,
            },
            Case {
                name: "within the gap parameter accepts",
                monitor: "quick",
                events: hello(1, 0.0, 0.9, "hello", &HELLO),
                end: None,
                verdict: Accept,
                seq: Some(6),
            },
            Case {
                name: "no hello output at all",
                monitor: "h",
                events: vec![log(1, 0.0, "hello", "x")],
                end: None,
                verdict: Inconclusive,
                seq: None,
            },
        ],
    );
}

#[test]
fn hello_world_timeout_explains_the_missing_line() {
    let spec =
        with_seed_imports("import \"hello-world.spec\"\nmonitor h = helloWorld(2s) at hello\n");
    let r = run(
        &spec,
        monitors(&["h"]),
        &hello(1, 0.0, 0.5, "hello", &HELLO[..4]),
        Some(T0 + 10 * S),
    );
    let e = r.monitors[0].explanation.as_ref().expect("explanation");
    assert_eq!(r.monitors[0].verdict, Fail);
    assert!(e.reason.contains("`3. `"), "{}", e.reason);
    let t = e.timeout.as_ref().expect("timeout");
    // armed by the 4th line ("2. ...", seq 4 at 1.5s), due 2s later
    assert_eq!(
        (t.armed_by_seq, t.deadline_ns),
        (Some(4), T0 + 3_500_000_000)
    );
    // every transition carries the line that caused it
    let lines: Vec<_> = e
        .path
        .iter()
        .map(|t| t.event.as_ref().map(|x| x.excerpt.as_str()))
        .collect();
    assert_eq!(lines.first().copied().flatten(), Some(HELLO[0]));
    assert_eq!(lines.last().copied().flatten(), Some(HELLO[3]));
}

/// demo-node's pinger lines for one service: `outcomes[i]` is 'r' (rtt), 't' (timeout) or 'e'
/// (error) for probe seq i+1, one per second from `t`; seqs of the events start at `first`.
fn pings(first: u64, t: f64, service: &str, outcomes: &str) -> Vec<Event> {
    outcomes
        .chars()
        .enumerate()
        .map(|(i, o)| {
            let n = i + 1;
            let line = match o {
                'r' => format!("ping seq={n} rtt={}.{:03}ms", n % 3, (n * 37) % 1000),
                't' => format!("ping seq={n} timeout"),
                _ => format!("ping seq={n} error=send: Network is unreachable (os error 101)"),
            };
            log(first + i as u64, t + i as f64, service, &line)
        })
        .collect()
}

#[test]
fn ping_loss_windows() {
    let src = "import \"network.spec\"\nmonitor lossy = lossyNetwork\nmonitor clean = cleanNetwork\nmonitor mid = pingLoss(0.2, 0.4)\nmonitor capped = pingLoss(0.0, 0.6)\n";
    // 30% loss spread evenly: every window of 20 has 6 lost
    let thirty = "rrtrrtrrrt".repeat(4);
    // clean, then a burst of 13 timeouts from probe 21 on
    let burst = format!("{}{}{}", "r".repeat(20), "t".repeat(13), "r".repeat(7));
    let mut two = pings(1, 0.0, "pinger-a", &"r".repeat(25));
    two.extend(pings(101, 0.5, "pinger-b", &thirty));
    two.sort_by_key(|e| (e.ts_ns, e.seq));
    let mut with_summary = pings(1, 0.0, "pinger", &"r".repeat(20));
    with_summary.push(log(
        21,
        20.0,
        "pinger",
        "ping summary sent=20 received=20 loss=0.0%",
    ));
    with_summary.push(log(
        22,
        20.0,
        "pinger",
        "ping-start pinger listen=7001 proto=udp target=peer",
    ));
    judge_all(
        src,
        vec![
            Case {
                name: "clean pings accept the clean check",
                monitor: "clean",
                events: pings(1, 0.0, "pinger", &"r".repeat(30)),
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "summary and start lines are not probes",
                monitor: "clean",
                events: with_summary,
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "one timeout fails the clean check once 20 probes are in",
                monitor: "clean",
                events: pings(1, 0.0, "pinger", &format!("rrt{}", "r".repeat(27))),
                end: None,
                verdict: Fail,
                seq: Some(20),
            },
            Case {
                name: "a late timeout fails the clean check at that probe",
                monitor: "clean",
                events: pings(1, 0.0, "pinger", &format!("{}e", "r".repeat(24))),
                end: None,
                verdict: Fail,
                seq: Some(25),
            },
            Case {
                name: "30% loss is lossy",
                monitor: "lossy",
                events: pings(1, 0.0, "pinger", &thirty),
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "30% loss is within [0.2, 0.4]",
                monitor: "mid",
                events: pings(1, 0.0, "pinger", &thirty),
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "no loss is not lossy: fails at the 20th probe",
                monitor: "lossy",
                events: pings(1, 0.0, "pinger", &"r".repeat(30)),
                end: None,
                verdict: Fail,
                seq: Some(20),
            },
            // window over probes 14..33 holds 13 timeouts (65% > 60%): fails at probe 33
            Case {
                name: "a loss burst fails when the window exceeds 60%",
                monitor: "capped",
                events: pings(1, 0.0, "pinger", &burst),
                end: None,
                verdict: Fail,
                seq: Some(33),
            },
            Case {
                name: "fewer than 20 probes: inconclusive",
                monitor: "lossy",
                events: pings(1, 0.0, "pinger", "rrtrrt"),
                end: None,
                verdict: Inconclusive,
                seq: None,
            },
            Case {
                name: "windows are per service",
                monitor: "clean",
                events: two,
                end: None,
                verdict: Fail,
                seq: Some(120),
            },
        ],
    );
}

fn fault_ev(seq: u64, secs: f64, action: &str, phase: &str, ended: Option<f64>) -> Event {
    ev(seq, secs, "fault", action)
        .message(format!("{action} network middle"))
        .data(&json!({
            "fault_id": "f1", "phase": phase, "experiment": null, "step": null,
            "target": {"services": [], "containers": [], "networks": ["middle"]},
            "params": {}, "intended_ns": 0, "started_ns": T0 + (secs * S as f64) as i64,
            "ended_ns": ended.map(|e| T0 + (e * S as f64) as i64), "error": null
        }))
}

#[test]
fn no_tcp_during_partition() {
    let src = "import \"network.spec\"\nmonitor cut = noTcpDuringPartition(left-a, right-a)\nmonitor graceful = noTcpDuringPartition(left-a, right-a, 500ms)\n";
    let before = || {
        vec![
            packet(1, 0.0, "left-a", 40000, "right-a", 2552, "S"),
            packet(2, 0.1, "right-a", 2552, "left-a", 40000, "S."),
            packet(3, 0.2, "left-a", 40000, "right-a", 2552, "P."),
        ]
    };
    let mut leak = before();
    leak.extend([
        fault_ev(4, 1.0, "partition", "applied", Some(1.2)),
        packet(5, 1.1, "left-a", 40000, "right-a", 2552, "P."), // before the cut was in place
        packet(6, 2.0, "left-b", 40001, "left-a", 2552, "P."),  // inside the left side
        packet(7, 2.5, "right-a", 2552, "left-a", 40000, "P."), // the other direction
        packet(8, 3.0, "left-a", 40000, "right-a", 2552, "P."), // leaks through
    ]);
    let mut healed = before();
    healed.extend([
        fault_ev(4, 1.0, "partition", "applied", Some(1.2)),
        packet(5, 2.0, "left-b", 40001, "left-a", 2552, "P."),
        fault_ev(6, 5.0, "heal", "applied", Some(5.1)),
        packet(7, 6.0, "left-a", 40000, "right-a", 2552, "P."),
    ]);
    let mut reverted = before();
    reverted.extend([
        fault_ev(4, 1.0, "partition", "applied", Some(1.2)),
        fault_ev(5, 5.0, "partition", "reverted", Some(5.1)),
        packet(6, 6.0, "left-a", 40000, "right-a", 2552, "S"),
    ]);
    let mut in_grace = before();
    in_grace.extend([
        fault_ev(4, 1.0, "partition", "applied", Some(1.2)),
        packet(5, 1.5, "left-a", 40000, "right-a", 2552, "P."),
        packet(6, 1.6, "left-a", 40000, "right-a", 2552, "R"),
    ]);
    let mut failed_fault = before();
    failed_fault.extend([
        fault_ev(4, 1.0, "partition", "failed", None),
        packet(5, 2.0, "left-a", 40000, "right-a", 2552, "P."),
    ]);
    judge_all(
        src,
        vec![
            Case {
                name: "traffic without a partition is fine",
                monitor: "cut",
                events: before(),
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "a segment while the partition holds fails at it",
                monitor: "cut",
                events: leak,
                end: None,
                verdict: Fail,
                seq: Some(8),
            },
            Case {
                name: "traffic after the heal is fine",
                monitor: "cut",
                events: healed,
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "traffic after the partition was reverted is fine",
                monitor: "cut",
                events: reverted,
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "segments within the grace period are tolerated",
                monitor: "graceful",
                events: in_grace.clone(),
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "without grace the first segment after the cut fails",
                monitor: "cut",
                events: in_grace,
                end: None,
                verdict: Fail,
                seq: Some(5),
            },
            Case {
                name: "a failed partition never held",
                monitor: "cut",
                events: failed_fault,
                end: None,
                verdict: Accept,
                seq: None,
            },
        ],
    );
}

#[test]
fn syn_answered_within_a_second() {
    let src = "import \"network.spec\"\nmonitor syn = synAnswered(client)\nmonitor slow = synAnswered(client, 3s)\n";
    let ok = vec![
        packet(1, 0.0, "client", 40000, "server", 80, "S"),
        packet(2, 0.2, "client", 40001, "server", 80, "S"),
        packet(3, 0.3, "server", 80, "client", 40001, "S."),
        packet(4, 0.4, "server", 80, "client", 40000, "S."),
        packet(5, 0.5, "client", 40000, "server", 80, "."),
        log(6, 0.6, "client", "connected"),
    ];
    let mut unanswered = ok.clone();
    unanswered.extend([
        packet(7, 2.0, "client", 40002, "server", 80, "S"),
        packet(8, 2.5, "server", 80, "client", 40002, "R."), // refused: no SYN-ACK
        packet(9, 5.0, "client", 40003, "server", 80, "S"),
        packet(10, 5.1, "server", 80, "client", 40003, "S."),
    ]);
    let mut retransmit = vec![
        packet(1, 0.0, "client", 40000, "server", 80, "S"),
        packet(2, 0.9, "client", 40000, "server", 80, "S"), // a retransmission does not restart the clock
        packet(3, 1.5, "server", 80, "client", 40000, "S."),
    ];
    retransmit.push(packet(4, 1.6, "other", 1, "client", 40000, "S."));
    let late = vec![
        packet(1, 0.0, "client", 40000, "server", 80, "S"),
        packet(2, 2.0, "server", 80, "client", 40000, "S."),
    ];
    judge_all(
        src,
        vec![
            Case {
                name: "every SYN answered in time",
                monitor: "syn",
                events: ok,
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "a refused connection fails when its limit passes",
                monitor: "syn",
                events: unanswered,
                end: None,
                verdict: Fail,
                seq: None,
            },
            Case {
                name: "the clock runs from the first SYN",
                monitor: "syn",
                events: retransmit,
                end: None,
                verdict: Fail,
                seq: None,
            },
            Case {
                name: "a late SYN-ACK fails at 1s",
                monitor: "syn",
                events: late.clone(),
                end: None,
                verdict: Fail,
                seq: None,
            },
            Case {
                name: "the same SYN-ACK is within a 3s limit",
                monitor: "slow",
                events: late,
                end: None,
                verdict: Accept,
                seq: None,
            },
            Case {
                name: "a SYN still unanswered at the trace end is inconclusive",
                monitor: "syn",
                events: vec![packet(1, 0.0, "client", 40000, "server", 80, "S")],
                end: Some(0.5),
                verdict: Inconclusive,
                seq: None,
            },
        ],
    );
}

#[test]
fn syn_timeout_names_the_connection_and_the_syn() {
    let spec = with_seed_imports("import \"network.spec\"\nmonitor syn = synAnswered(client)\n");
    let evs = vec![
        packet(1, 0.0, "client", 40000, "server", 80, "S"),
        packet(2, 0.1, "server", 80, "client", 40000, "S."),
        packet(3, 2.0, "client", 40002, "server", 80, "S"),
        packet(4, 9.0, "client", 40009, "server", 80, "."),
    ];
    let r = run(&spec, monitors(&["syn"]), &evs, None);
    let e = r.monitors[0].explanation.as_ref().expect("explanation");
    assert_eq!(r.monitors[0].verdict, Fail);
    assert_eq!(e.key.as_deref(), Some("40002"));
    assert_eq!(e.decided_ns, Some(T0 + 3 * S));
    assert_eq!(e.timeout.as_ref().and_then(|t| t.armed_by_seq), Some(3));
    let syn = e
        .path
        .last()
        .and_then(|t| t.event.as_ref())
        .expect("the SYN");
    assert_eq!(
        (syn.seq, syn.source.as_str(), syn.kind.as_str()),
        (3, "packet", "tcp")
    );
    assert!(
        syn.excerpt.contains("\"src_port\":40002"),
        "{}",
        syn.excerpt
    );
}
