//! Network faults through `recorder run` (a timed schedule in the scenario, real containers, the
//! chatter image): a partition stops the peers' traffic and healing restores it, and loss of p
//! drops about p of the messages — all judged from the recorded trace's log events alone.

use integration_tests::{
    ensure_images, project_containers, project_networks, require_docker, unique_project,
    ProjectGuard,
};

use crate::recorder_common::{
    fault_events, peer_compose, peer_messages, read_events, run_recorder, write_scenario,
};

const MS: i64 = 1_000_000;

/// The `(ended_ns of applied, started_ns of reverted)` window of the only fault of `kind`: the
/// time its rules were certainly in place.
fn fault_window(faults: &[(String, serde_json::Value)], kind: &str) -> (i64, i64) {
    let phase = |p: &str| {
        faults
            .iter()
            .find(|(k, d)| k == kind && d["phase"] == p)
            .unwrap_or_else(|| panic!("no {kind} fault with phase {p}: {faults:?}"))
            .1
            .clone()
    };
    let applied = phase("applied");
    let reverted = phase("reverted");
    assert!(
        applied["error"].is_null() && reverted["error"].is_null(),
        "{faults:?}"
    );
    let from = applied["ended_ns"].as_i64().expect("ended_ns");
    let to = reverted["started_ns"].as_i64().expect("started_ns");
    assert!(
        to > from + 1000 * MS,
        "{kind} window too short: {applied} {reverted}"
    );
    (from, to)
}

#[test]
fn partition_and_loss_through_recorder_run_show_in_the_trace() {
    require_docker!();
    ensure_images();
    let project = unique_project("rnet");
    let _guard = ProjectGuard::new(&project);
    // 50 messages/s each way; a partition for 3s, then 50% ingress loss at b for 6s.
    let (dir, scenario) = write_scenario(
        &project,
        &peer_compose(2, 20),
        "time_limit = \"120s\"\nseed = 7\nduration = \"17s\"",
        r#"[sensors]
stats = false

[[schedule]]
at = "3s"
fault = "partition"
target = { between = [["a"], ["b"]] }
duration = "3s"

[[schedule]]
at = "8s"
fault = "loss"
target = "b"
params = { percent = 50, direction = "ingress" }
duration = "6s"
"#,
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let ev = read_events(&dir.path().join("trace"));
    let faults = fault_events(&ev);
    let (p_from, p_to) = fault_window(&faults, "partition");
    let (l_from, l_to) = fault_window(&faults, "loss");

    for (me, peer) in [("a", "b"), ("b", "a")] {
        let sent = peer_messages(&ev, "send", peer, me);
        let recv = peer_messages(&ev, "recv", me, peer);
        let got: std::collections::BTreeSet<u64> = recv.iter().map(|r| r.0).collect();
        let in_window = |ts: i64, a: i64, b: i64| ts > a && ts < b;
        // before the partition: the peers talk
        let before: Vec<_> = recv.iter().filter(|r| r.1 < p_from - 200 * MS).collect();
        assert!(
            before.len() > 20,
            "{me} heard {peer} {} times before the partition",
            before.len()
        );
        // during: nothing sent while the rules were in place arrives (100 ms margin each side)
        let cut: Vec<u64> = sent
            .iter()
            .filter(|s| in_window(s.1, p_from + 100 * MS, p_to - 100 * MS))
            .map(|s| s.0)
            .collect();
        assert!(
            cut.len() > 50,
            "{peer} sent only {} messages during the partition",
            cut.len()
        );
        let leaked: Vec<&u64> = cut.iter().filter(|s| got.contains(s)).collect();
        assert!(
            leaked.is_empty(),
            "{me} received {leaked:?} from {peer} during the partition"
        );
        let heard_during = recv
            .iter()
            .filter(|r| in_window(r.1, p_from + 100 * MS, p_to))
            .count();
        assert_eq!(
            heard_during, 0,
            "{me} logged receptions from {peer} during the partition"
        );
        // after the heal: traffic resumes within 2 s
        let after = recv
            .iter()
            .filter(|r| in_window(r.1, p_to, p_to + 2000 * MS))
            .count();
        assert!(
            after > 20,
            "{me} heard {peer} only {after} times in the 2 s after the heal"
        );
        // outside any fault, nothing is lost
        let clean: Vec<u64> = sent
            .iter()
            .filter(|s| s.1 > p_to + 500 * MS && s.1 < l_from - 200 * MS)
            .map(|s| s.0)
            .collect();
        let clean_got = clean.iter().filter(|s| got.contains(s)).count();
        assert!(
            clean.len() > 50 && clean_got * 100 >= clean.len() * 98,
            "{me} received {clean_got} of {} messages from {peer} with no fault",
            clean.len()
        );
    }

    // loss at b's ingress: of what a sent to b while the rule was in place, about half arrives
    let sent = peer_messages(&ev, "send", "a", "b");
    let got: std::collections::BTreeSet<u64> = peer_messages(&ev, "recv", "b", "a")
        .into_iter()
        .map(|r| r.0)
        .collect();
    let window: Vec<u64> = sent
        .iter()
        .filter(|s| s.1 > l_from + 50 * MS && s.1 < l_to - 50 * MS)
        .map(|s| s.0)
        .collect();
    let n = window.len();
    assert!(n >= 150, "a sent only {n} messages to b under loss");
    let arrived = window.iter().filter(|s| got.contains(s)).count();
    let share = arrived as f64 / n as f64;
    // Binomial(n, 0.5)/n has sd 0.5/sqrt(n) <= 0.041 for n >= 150: +-0.2 is about 5 sd, while a
    // rule that drops nothing or everything gives ~1.0 or ~0.0.
    assert!(
        (0.3..=0.7).contains(&share),
        "b received {arrived} of {n} messages from a under 50% loss ({share:.3})"
    );
    // b's messages to a are not affected by b's ingress loss
    let back: Vec<u64> = peer_messages(&ev, "send", "b", "a")
        .iter()
        .filter(|s| s.1 > l_from + 50 * MS && s.1 < l_to - 50 * MS)
        .map(|s| s.0)
        .collect();
    let a_got: std::collections::BTreeSet<u64> = peer_messages(&ev, "recv", "a", "b")
        .into_iter()
        .map(|r| r.0)
        .collect();
    let back_got = back.iter().filter(|s| a_got.contains(s)).count();
    assert!(
        back.len() >= 150 && back_got * 100 >= back.len() * 98,
        "a received {back_got} of {} messages from b during b's ingress loss",
        back.len()
    );
    assert!(project_containers(&project).is_empty(), "containers left");
    assert!(project_networks(&project).is_empty(), "networks left");
}

/// `a` pings `b` over TCP every 100 ms, both on network `net`.
fn tcp_ping_compose() -> String {
    let image = integration_tests::DEMO_IMAGE;
    format!(
        r#"version: "2.4"
services:
  b:
    image: {image}
    command: ["ping", "--listen-port", "7001"]
    stop_grace_period: 1s
    networks: [net]
  a:
    image: {image}
    command: ["ping", "--target", "b:7001", "--proto", "tcp", "--interval", "100ms", "--timeout", "300ms"]
    stop_grace_period: 1s
    depends_on: [b]
    networks: [net]
networks:
  net: {{}}
"#
    )
}

#[test]
fn packet_monitors_of_network_spec_accept_a_partitioned_trace() {
    require_docker!();
    ensure_images();
    let project = unique_project("rcut");
    let _guard = ProjectGuard::new(&project);
    let (dir, scenario) = write_scenario(
        &project,
        &tcp_ping_compose(),
        "time_limit = \"90s\"\nseed = 3\nduration = \"11s\"",
        r#"[sensors]
stats = false

[sensors.pcap]
networks = ["net"]

[[schedule]]
at = "3s"
fault = "partition"
target = { between = [["a"], ["b"]] }
duration = "4s"
"#,
    );
    let (code, out, err) = run_recorder(&scenario);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let trace = dir.path().join("trace");
    let ev = read_events(&trace);
    let faults = fault_events(&ev);
    let (p_from, p_to) = fault_window(&faults, "partition");

    // TCP between a and b before and after the cut (so the monitors below are not vacuous).
    let analyzer = integration_tests::bin("analyzer");
    let o = integration_tests::run(
        &analyzer,
        &[
            "events",
            &trace.to_string_lossy(),
            "--source",
            "packet",
            "--format",
            "jsonl",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let packets: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let tcp = |src: &str, dst: &str, from: i64, to: i64| {
        packets
            .iter()
            .filter(|p| p["kind"] == "tcp")
            .filter(|p| p["data"]["src_service"] == src && p["data"]["dst_service"] == dst)
            .filter(|p| p["ts_ns"].as_i64().is_some_and(|t| t > from && t < to))
            .count()
    };
    assert!(
        tcp("a", "b", 0, p_from) > 10,
        "no TCP from a to b before the cut"
    );
    assert!(
        tcp("b", "a", 0, p_from) > 10,
        "no TCP from b to a before the cut"
    );
    assert!(
        tcp("a", "b", p_to, i64::MAX) > 5,
        "no TCP from a to b after the cut"
    );
    assert_eq!(tcp("a", "b", p_from + 100 * MS, p_to), 0);
    assert_eq!(tcp("b", "a", p_from + 100 * MS, p_to), 0);

    // specs/network.spec's packet monitor accepts the trace, both directions.
    let spec = dir.path().join("cut.spec");
    let network = integration_tests::workspace_root().join("specs/network.spec");
    std::fs::write(
        &spec,
        format!(
            "import \"{}\"\nmonitor cutAB = noTcpDuringPartition(a, b, 100ms)\nmonitor cutBA = noTcpDuringPartition(b, a, 100ms)\n",
            network.display()
        ),
    )
    .expect("write spec");
    let o = integration_tests::run(
        &analyzer,
        &[
            "check",
            &trace.to_string_lossy(),
            "--spec",
            &spec.to_string_lossy(),
            "--monitor",
            "cutAB",
            "--monitor",
            "cutBA",
        ],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
