//! A Jolokia-compatible HTTP endpoint (protocol 7.2 shapes) serving the `akka:type=Cluster`
//! MBean of Akka's ClusterMBean: ClusterStatus (a JSON *string*), Members, Unreachable, Leader,
//! MemberStatus, Available. POST bulk and single read requests, GET `/jolokia/read/...` with `!`
//! escaping, GET `/jolokia/version`; per-request errors as Jolokia reports them (404
//! InstanceNotFoundException / AttributeNotFoundException, 400 for bad requests). The request
//! handling is pure (`handle`); `serve` is the small blocking HTTP/1.1 server around it.

use super::membership::View;
use crate::util;
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const CLUSTER_MBEAN: &str = "akka:type=Cluster";
pub const ATTRIBUTES: [&str; 6] = [
    "ClusterStatus",
    "Members",
    "Unreachable",
    "Leader",
    "MemberStatus",
    "Available",
];

/// Akka's ClusterStatus JSON text (pretty-printed, as Akka's JMX bean renders it).
pub fn cluster_status_json(v: &View) -> String {
    let members: Vec<Value> = v
        .members
        .iter()
        .map(|m| {
            json!({
                "address": m.node.address.to_string(),
                "roles": m.roles,
                "status": m.status.to_string(),
            })
        })
        .collect();
    let unreachable: Vec<Value> = v
        .unreachable
        .iter()
        .map(|(n, obs)| {
            json!({
                "node": n.to_string(),
                "observed-by": obs.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({
        "members": members,
        "self-address": v.self_address.to_string(),
        "unreachable": unreachable,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

fn attribute(v: &View, name: &str) -> Option<Value> {
    Some(match name {
        "ClusterStatus" => Value::String(cluster_status_json(v)),
        "Members" => Value::String(
            v.members
                .iter()
                .map(|m| m.node.address.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        "Unreachable" => Value::String(
            v.unreachable
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        "Leader" => Value::String(v.leader.as_ref().map(|l| l.to_string()).unwrap_or_default()),
        "MemberStatus" => Value::String(v.self_status.to_string()),
        "Available" => Value::Bool(v.self_status == super::membership::MemberStatus::Up),
        _ => return None,
    })
}

fn error(request: Value, status: u16, error_type: &str, message: &str) -> Value {
    json!({
        "request": request,
        "stacktrace": format!("{error_type}: {message}\n"),
        "error_type": error_type,
        "error": format!("{error_type} : {message}"),
        "status": status,
    })
}

/// Executes one Jolokia request object against the current view.
pub fn execute(req: &Value, view: Option<&View>, now_secs: u64) -> Value {
    let Some(obj) = req.as_object() else {
        return error(
            req.clone(),
            400,
            "java.lang.IllegalArgumentException",
            "request must be a JSON object",
        );
    };
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    match ty.as_str() {
        "version" => json!({
            "request": {"type": "version"},
            "value": {
                "agent": "1.7.2",
                "protocol": "7.2",
                "config": {"agentType": "demo-node", "includeStackTrace": "true"},
                "info": {"product": "demo-node", "vendor": "chaos-trace", "version": env!("CARGO_PKG_VERSION")},
            },
            "timestamp": now_secs,
            "status": 200,
        }),
        "read" => read(obj, view, now_secs),
        "" => error(
            req.clone(),
            400,
            "java.lang.IllegalArgumentException",
            "No type given",
        ),
        other => error(
            req.clone(),
            400,
            "java.lang.UnsupportedOperationException",
            &format!("Request type {other} is not supported by this agent"),
        ),
    }
}

fn read(obj: &Map<String, Value>, view: Option<&View>, now_secs: u64) -> Value {
    // The echoed request: mbean, attribute (as given), path, type — in Jolokia's order.
    let mut echo = Map::new();
    if let Some(m) = obj.get("mbean") {
        echo.insert("mbean".into(), m.clone());
    }
    if let Some(a) = obj.get("attribute") {
        echo.insert("attribute".into(), a.clone());
    }
    if let Some(p) = obj.get("path") {
        echo.insert("path".into(), p.clone());
    }
    echo.insert("type".into(), json!("read"));
    let echo = Value::Object(echo);
    let Some(mbean) = obj.get("mbean").and_then(Value::as_str) else {
        return error(
            echo,
            400,
            "java.lang.IllegalArgumentException",
            "No MBean name given",
        );
    };
    let view = match view {
        Some(v) if canonical(mbean) == CLUSTER_MBEAN => v,
        _ => {
            return error(
                echo,
                404,
                "javax.management.InstanceNotFoundException",
                mbean,
            )
        }
    };
    let names: Option<Vec<String>> = match obj.get("attribute") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        ),
        Some(_) => {
            return error(
                echo,
                400,
                "java.lang.IllegalArgumentException",
                "attribute must be a string or a list",
            )
        }
    };
    let single = matches!(obj.get("attribute"), Some(Value::String(_)));
    let value = match names {
        None => {
            let mut m = Map::new();
            for a in ATTRIBUTES {
                if let Some(v) = attribute(view, a) {
                    m.insert(a.into(), v);
                }
            }
            Value::Object(m)
        }
        Some(names) => {
            let mut m = Map::new();
            for n in &names {
                match attribute(view, n) {
                    Some(v) => {
                        m.insert(n.clone(), v);
                    }
                    None => {
                        return error(
                            echo,
                            404,
                            "javax.management.AttributeNotFoundException",
                            &format!("No such attribute: {n}"),
                        )
                    }
                }
            }
            if single {
                m.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null)
            } else {
                Value::Object(m)
            }
        }
    };
    json!({"request": echo, "value": value, "timestamp": now_secs, "status": 200})
}

/// `akka:type=Cluster` and `akka:type=Cluster,` with keys in any order compare equal.
fn canonical(mbean: &str) -> String {
    let Some((domain, props)) = mbean.split_once(':') else {
        return mbean.to_string();
    };
    let mut keys: Vec<&str> = props
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    keys.sort();
    format!("{domain}:{}", keys.join(","))
}

/// Splits a GET path on `/`, honouring Jolokia's escapes (`!/` is `/`, `!!` is `!`).
fn split_escaped(path: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '!' => match chars.next() {
                Some(n) => parts.last_mut().map(|p| p.push(n)).unwrap_or(()),
                None => parts.last_mut().map(|p| p.push('!')).unwrap_or(()),
            },
            '/' => parts.push(String::new()),
            _ => parts.last_mut().map(|p| p.push(c)).unwrap_or(()),
        }
    }
    parts
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Handles one HTTP request; returns (HTTP status, JSON body). Jolokia answers protocol errors
/// with HTTP 200 and the error inside the JSON.
pub fn handle(
    method: &str,
    target: &str,
    body: &[u8],
    view: Option<&View>,
    now_secs: u64,
) -> (u16, String) {
    let path = target.split('?').next().unwrap_or("");
    let Some(rest) = path.strip_prefix("/jolokia") else {
        return (
            404,
            json!({"error": format!("no such path: {path}"), "status": 404}).to_string(),
        );
    };
    let rest = percent_decode(rest.trim_start_matches('/'));
    let reply = match method {
        "POST" => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(reqs)) => {
                Value::Array(reqs.iter().map(|r| execute(r, view, now_secs)).collect())
            }
            Ok(req) => execute(&req, view, now_secs),
            Err(e) => error(
                Value::Null,
                400,
                "java.lang.IllegalArgumentException",
                &format!("Invalid JSON request: {e}"),
            ),
        },
        "GET" => {
            let parts = split_escaped(&rest);
            let op = parts.first().map(String::as_str).unwrap_or("");
            match op {
                "" | "version" => execute(&json!({"type": "version"}), view, now_secs),
                "read" => {
                    let mut req = Map::new();
                    req.insert("type".into(), json!("read"));
                    if let Some(m) = parts.get(1).filter(|s| !s.is_empty()) {
                        req.insert("mbean".into(), json!(m));
                    }
                    if let Some(a) = parts.get(2).filter(|s| !s.is_empty()) {
                        if a.contains(',') {
                            req.insert("attribute".into(), json!(a.split(',').collect::<Vec<_>>()));
                        } else {
                            req.insert("attribute".into(), json!(a));
                        }
                    }
                    if parts.len() > 3 {
                        req.insert("path".into(), json!(parts[3..].join("/")));
                    }
                    execute(&Value::Object(req), view, now_secs)
                }
                other => execute(&json!({"type": other}), view, now_secs),
            }
        }
        _ => {
            return (
                405,
                json!({"error": "method not allowed", "status": 405}).to_string(),
            )
        }
    };
    (200, reply.to_string())
}

/// Serves HTTP on `listener` until `stop` is set; `view` is called per request.
pub fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    view: Arc<dyn Fn() -> Option<View> + Send + Sync>,
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let view = view.clone();
                std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = serve_conn(s, &*view);
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn serve_conn(
    s: TcpStream,
    view: &(dyn Fn() -> Option<View> + Send + Sync),
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    // Keep-alive: serve requests until the peer closes or asks to close (bounded count).
    for _ in 0..1000 {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut it = line.split_whitespace();
        let (method, target) = (
            it.next().unwrap_or("").to_string(),
            it.next().unwrap_or("").to_string(),
        );
        let http10 = it.next() == Some("HTTP/1.0");
        let mut len = 0usize;
        let mut close = http10;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim();
                if k == "content-length" {
                    len = v.parse().unwrap_or(0).min(1 << 20);
                } else if k == "connection" {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        let v = view();
        let (status, text) = handle(&method, &target, &body, v.as_ref(), util::epoch_secs());
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Error",
        };
        write!(
            w,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain;charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-cache\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        w.flush()?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::membership::{Address, Member, MemberStatus, UniqueAddress};
    use super::*;

    fn a(h: &str) -> Address {
        Address {
            host: h.into(),
            port: 2552,
            system: "TestCluster".into(),
        }
    }

    fn view() -> View {
        let m = |h: &str, s| Member {
            node: UniqueAddress {
                address: a(h),
                uid: 1,
            },
            status: s,
            roles: vec!["dc-default".into()],
        };
        View {
            self_address: a("left-a"),
            self_status: MemberStatus::Up,
            members: vec![
                m("left-a", MemberStatus::Up),
                m("right-a", MemberStatus::Up),
            ],
            unreachable: vec![(a("right-a"), vec![a("left-a")])],
            leader: Some(a("left-a")),
        }
    }

    #[test]
    fn bulk_post_reads_attributes_with_cluster_status_as_a_json_string() {
        let body = br#"[{"type":"read","mbean":"akka:type=Cluster","attribute":["ClusterStatus","Leader","Available"]},
                        {"type":"read","mbean":"akka:type=Nope","attribute":"Leader"}]"#;
        let (st, text) = handle("POST", "/jolokia/", body, Some(&view()), 42);
        assert_eq!(st, 200);
        let v: Value = serde_json::from_str(&text).unwrap();
        let r0 = &v[0];
        assert_eq!(r0["status"], 200);
        assert_eq!(r0["timestamp"], 42);
        assert_eq!(r0["request"]["mbean"], "akka:type=Cluster");
        assert_eq!(r0["request"]["type"], "read");
        assert_eq!(r0["value"]["Leader"], "akka.tcp://TestCluster@left-a:2552");
        assert_eq!(r0["value"]["Available"], true);
        let cs: Value =
            serde_json::from_str(r0["value"]["ClusterStatus"].as_str().unwrap()).unwrap();
        assert_eq!(cs["self-address"], "akka.tcp://TestCluster@left-a:2552");
        assert_eq!(
            cs["members"][1]["address"],
            "akka.tcp://TestCluster@right-a:2552"
        );
        assert_eq!(cs["members"][1]["status"], "Up");
        assert_eq!(cs["members"][1]["roles"][0], "dc-default");
        assert_eq!(
            cs["unreachable"][0]["node"],
            "akka.tcp://TestCluster@right-a:2552"
        );
        assert_eq!(
            cs["unreachable"][0]["observed-by"][0],
            "akka.tcp://TestCluster@left-a:2552"
        );
        let r1 = &v[1];
        assert_eq!(r1["status"], 404);
        assert_eq!(
            r1["error_type"],
            "javax.management.InstanceNotFoundException"
        );
        assert_eq!(
            r1["error"],
            "javax.management.InstanceNotFoundException : akka:type=Nope"
        );
        assert_eq!(r1["request"]["attribute"], "Leader");
        assert!(r1.get("value").is_none());
    }

    #[test]
    fn single_reads_members_unreachable_and_unknown_attribute() {
        let body = br#"{"type":"read","mbean":"akka:type=Cluster","attribute":"Members"}"#;
        let (_, text) = handle("POST", "/jolokia", body, Some(&view()), 1);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["value"],
            "akka.tcp://TestCluster@left-a:2552,akka.tcp://TestCluster@right-a:2552"
        );
        let body = br#"{"type":"read","mbean":"akka:type=Cluster","attribute":"Bogus"}"#;
        let v: Value =
            serde_json::from_str(&handle("POST", "/jolokia", body, Some(&view()), 1).1).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(
            v["error_type"],
            "javax.management.AttributeNotFoundException"
        );
        let body = br#"{"type":"read","mbean":"akka:type=Cluster"}"#;
        let v: Value =
            serde_json::from_str(&handle("POST", "/jolokia", body, Some(&view()), 1).1).unwrap();
        assert_eq!(
            v["value"]["Unreachable"],
            "akka.tcp://TestCluster@right-a:2552"
        );
        assert_eq!(v["value"]["MemberStatus"], "Up");
        let v: Value =
            serde_json::from_str(&handle("POST", "/jolokia", b"{not json", Some(&view()), 1).1)
                .unwrap();
        assert_eq!(v["status"], 400);
    }

    #[test]
    fn get_paths_with_escapes_and_unregistered_mbean_after_shutdown() {
        let (_, text) = handle(
            "GET",
            "/jolokia/read/akka:type=Cluster/Leader",
            b"",
            Some(&view()),
            1,
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["value"], "akka.tcp://TestCluster@left-a:2552");
        assert_eq!(v["request"]["attribute"], "Leader");
        let (_, text) = handle(
            "GET",
            "/jolokia/read/akka:type=Cluster/MemberStatus,Available",
            b"",
            Some(&view()),
            1,
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["value"]["Available"], true);
        assert_eq!(split_escaped("read/a!/b/c!!d"), vec!["read", "a/b", "c!d"]);
        assert_eq!(percent_decode("akka%3Atype%3DCluster"), "akka:type=Cluster");
        let (_, text) = handle(
            "GET",
            "/jolokia/read/akka%3Atype%3DCluster/Leader",
            b"",
            None,
            1,
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(
            v["error_type"],
            "javax.management.InstanceNotFoundException"
        );
        let (_, text) = handle("GET", "/jolokia/version", b"", None, 1);
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["value"]["protocol"], "7.2");
        assert_eq!(handle("GET", "/other", b"", None, 1).0, 404);
    }

    #[test]
    fn http_server_answers_a_real_request() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let t = std::thread::spawn(move || serve(l, s2, Arc::new(|| Some(view()))));
        let mut c = TcpStream::connect(addr).unwrap();
        let body = r#"[{"type":"read","mbean":"akka:type=Cluster","attribute":["Leader"]}]"#;
        write!(c, "POST /jolokia HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        let json_part = resp.split("\r\n\r\n").nth(1).unwrap();
        let v: Value = serde_json::from_str(json_part).unwrap();
        assert_eq!(
            v[0]["value"]["Leader"],
            "akka.tcp://TestCluster@left-a:2552"
        );
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }
}
