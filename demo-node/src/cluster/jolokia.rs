//! A Jolokia-compatible HTTP endpoint (agent 1.7.1, protocol 7.2 shapes, checked against the
//! replies recorded from real Jolokia in `sensor-protocols/tests/fixtures/jolokia/recorded/`) serving the
//! `akka:type=Cluster` MBean of Akka's ClusterMBean: ClusterStatus (a JSON *string*), Members,
//! Unreachable, Leader, MemberStatus, Available. POST bulk and single read requests, GET
//! `/jolokia/read/...` with `!` escaping, GET `/jolokia/version`; pattern reads (`akka:type=*`,
//! `*:type=Cluster`) keyed by matching object name; per-request errors as Jolokia reports them
//! (404 InstanceNotFoundException / AttributeNotFoundException) and whole-request rejection (one
//! 400 error object, no `request` echo) when a request cannot be created (invalid object name,
//! unknown type). The request handling is pure (`handle`); `serve` is the small blocking
//! HTTP/1.1 server around it.

use super::membership::View;
use super::objectname::ObjectName;
use crate::util;
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The Jolokia agent version reported by `version` (the recorded real agent's).
pub const AGENT_VERSION: &str = "1.7.1";
/// The Jolokia protocol version.
pub const PROTOCOL_VERSION: &str = "7.2";
pub const CLUSTER_MBEAN: &str = "akka:type=Cluster";
pub const ATTRIBUTES: [&str; 6] = [
    "ClusterStatus",
    "Members",
    "Unreachable",
    "Leader",
    "MemberStatus",
    "Available",
];

/// Akka's ClusterStatus JSON text (pretty-printed with a final newline, as Akka's JMX bean
/// renders it).
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
    // Akka's ClusterJmx text ends with a newline.
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
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

/// Jolokia's error object (`getErrorJSON`): with the `request` echo for a per-request error,
/// without it when the whole HTTP request is rejected. The stack trace is included, as Jolokia
/// does by default (`includeStackTrace=true`).
fn error_json(request: Option<Value>, e: &Failure) -> Value {
    let mut m = Map::new();
    if let Some(r) = request {
        m.insert("request".into(), r);
    }
    let mut trace = format!(
        "{}: {}\n\tat demo_node.cluster.jolokia(jolokia.rs)\n",
        e.error_type, e.message
    );
    if let Some((ty, msg)) = &e.cause {
        trace.push_str(&format!(
            "Caused by: {ty}: {msg}\n\tat demo_node.cluster.objectname(objectname.rs)\n"
        ));
    }
    m.insert("stacktrace".into(), json!(trace));
    m.insert("error_type".into(), json!(e.error_type));
    m.insert(
        "error".into(),
        json!(format!("{} : {}", e.error_type, e.message)),
    );
    m.insert("status".into(), json!(e.status));
    Value::Object(m)
}

/// A Java exception as Jolokia reports it: HTTP-like status, class name, message, optional cause.
#[derive(Debug, Clone)]
struct Failure {
    status: u16,
    error_type: &'static str,
    message: String,
    cause: Option<(&'static str, String)>,
}

const ILLEGAL_ARGUMENT: &str = "java.lang.IllegalArgumentException";
const INSTANCE_NOT_FOUND: &str = "javax.management.InstanceNotFoundException";
const ATTRIBUTE_NOT_FOUND: &str = "javax.management.AttributeNotFoundException";

impl Failure {
    fn new(status: u16, error_type: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            error_type,
            message: message.into(),
            cause: None,
        }
    }
    fn bad(message: impl Into<String>) -> Failure {
        Failure::new(400, ILLEGAL_ARGUMENT, message)
    }
}

/// Which attributes a read asks for (Jolokia's `JmxReadRequest.initAttribute`).
#[derive(Debug, Clone)]
enum Attrs {
    /// No attribute (or an empty list): all attributes, value keyed by attribute.
    All,
    /// One attribute given as a string: the bare value.
    One(String),
    /// A list, or a comma-separated string: value keyed by attribute.
    Many(Vec<String>),
}

/// A request that passed creation (Jolokia's `JmxRequestFactory`); failures from here on are
/// per-request errors.
#[derive(Debug, Clone)]
enum Request {
    Version,
    Read {
        given: String,
        name: ObjectName,
        attrs: Attrs,
        path: Option<String>,
    },
    /// A type Jolokia knows (list, write, exec, search, notification) that demo-node does not serve.
    Unsupported(String),
}

/// Splits a string attribute on unescaped commas (`\,` is a comma, `\\` a backslash), as
/// Jolokia's `EscapeUtil.split(attr, "\\", ",")`.
fn split_csv(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => out.last_mut().map(|p| p.push(n)).unwrap_or(()),
                None => out.last_mut().map(|p| p.push('\\')).unwrap_or(()),
            },
            ',' => out.push(String::new()),
            _ => out.last_mut().map(|p| p.push(c)).unwrap_or(()),
        }
    }
    out
}

fn java_class_of(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "class java.lang.Boolean",
        Value::Number(n) if n.is_f64() => "class java.lang.Double",
        Value::Number(_) => "class java.lang.Long",
        Value::Object(_) => "class org.json.simple.JSONObject",
        _ => "class java.lang.Object",
    }
}

/// Creates one request from its JSON form; an error here rejects the whole HTTP request.
fn create(obj: &Map<String, Value>) -> Result<Request, Failure> {
    let ty = match obj.get("type") {
        None | Some(Value::Null) => return Err(Failure::bad("No type given")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(Failure::bad(format!("No type with name '{other}' exists"))),
    };
    match ty.to_ascii_lowercase().as_str() {
        "version" => Ok(Request::Version),
        "read" => {
            let given = match obj.get("mbean") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(Failure::new(
                        500,
                        "java.lang.NullPointerException",
                        "'name' parameter can't be null",
                    ))
                }
            };
            let name = ObjectName::parse(&given).map_err(|m| Failure {
                cause: Some(("javax.management.MalformedObjectNameException", m.clone())),
                ..Failure::bad(format!("Invalid object name. {m}"))
            })?;
            let attrs = match obj.get("attribute") {
                None | Some(Value::Null) => Attrs::All,
                Some(Value::String(s)) => {
                    let mut parts = split_csv(s);
                    if parts.len() > 1 {
                        Attrs::Many(parts)
                    } else {
                        Attrs::One(parts.pop().unwrap_or_default())
                    }
                }
                Some(Value::Array(a)) if a.len() == 1 && a[0].is_null() => Attrs::All,
                Some(Value::Array(a)) if a.is_empty() => Attrs::All,
                Some(Value::Array(a)) => Attrs::Many(
                    a.iter()
                        .map(|x| match x {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect(),
                ),
                Some(other) => {
                    return Err(Failure::bad(format!(
                        "Attribute names must be either a String, Collection or null (and not {})",
                        java_class_of(other)
                    )))
                }
            };
            let path = match obj.get("path") {
                Some(Value::String(p)) if !p.is_empty() => Some(p.clone()),
                _ => None,
            };
            Ok(Request::Read {
                given,
                name,
                attrs,
                path,
            })
        }
        "list" | "write" | "exec" | "search" | "notification" => Ok(Request::Unsupported(ty)),
        _ => Err(Failure::bad(format!("No type with name '{ty}' exists"))),
    }
}

/// The `request` echo, as Jolokia's `toJSON` writes it: `path`, the canonical `mbean`,
/// `attribute` (a string for one name, a list for several, absent for all), `type`.
fn echo(req: &Request) -> Value {
    match req {
        Request::Version => json!({"type": "version"}),
        Request::Unsupported(ty) => json!({ "type": ty.to_ascii_lowercase() }),
        Request::Read {
            name, attrs, path, ..
        } => {
            let mut m = Map::new();
            if let Some(p) = path {
                m.insert("path".into(), json!(p));
            }
            m.insert("mbean".into(), json!(name.canonical()));
            match attrs {
                Attrs::All => {}
                Attrs::One(a) => {
                    m.insert("attribute".into(), json!(a));
                }
                Attrs::Many(list) if list.len() == 1 => {
                    m.insert("attribute".into(), json!(list[0]));
                }
                Attrs::Many(list) => {
                    m.insert("attribute".into(), json!(list));
                }
            }
            m.insert("type".into(), json!("read"));
            Value::Object(m)
        }
    }
}

fn version_value() -> Value {
    // Jolokia 1.7.1's version reply: agent and protocol versions, the agent configuration as
    // string values (the keys a default Jolokia agent reports), and `info` (empty when no
    // server detector matched, as here).
    json!({
        "agent": AGENT_VERSION,
        "protocol": PROTOCOL_VERSION,
        "config": {
            "listenForHttpService": "true",
            "authIgnoreCerts": "false",
            "agentId": format!("demo-node-{}", env!("CARGO_PKG_VERSION")),
            "debug": "false",
            "policyLocation": "classpath:/jolokia-access.xml",
            "agentContext": "/jolokia",
            "serializeException": "false",
            "mimeType": "text/plain",
            "multicastGroup": "239.192.48.84",
            "authMode": "basic",
            "authMatch": "any",
            "discoveryEnabled": "false",
            "streaming": "true",
            "canonicalNaming": "true",
            "historyMaxEntries": "10",
            "allowErrorDetails": "true",
            "allowDnsReverseLookup": "true",
            "realm": "jolokia",
            "includeStackTrace": "true",
            "multicastPort": "24884",
            "useRestrictorService": "false",
            "debugMaxEntries": "100",
            "agentDescription": format!("demo-node {} (Akka-like cluster member)", env!("CARGO_PKG_VERSION")),
        },
        "info": {},
    })
}

/// The MBeans registered now: `akka:type=Cluster` while the node is running.
fn registered(view: Option<&View>) -> Vec<(ObjectName, &View)> {
    view.and_then(|v| ObjectName::parse(CLUSTER_MBEAN).ok().map(|n| (n, v)))
        .into_iter()
        .collect()
}

fn all_attributes(v: &View) -> Map<String, Value> {
    let mut m = Map::new();
    for a in ATTRIBUTES {
        if let Some(x) = attribute(v, a) {
            m.insert(a.into(), x);
        }
    }
    m
}

/// Reads the attributes of one named MBean (Jolokia's `fetchAttributes`: an unknown attribute
/// fails the request).
fn fetch(v: &View, names: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut m = Map::new();
    for n in names {
        match attribute(v, n) {
            Some(x) => {
                m.insert(n.clone(), x);
            }
            None => {
                return Err(Failure::new(
                    404,
                    ATTRIBUTE_NOT_FOUND,
                    format!("No such attribute: {n}"),
                ))
            }
        }
    }
    Ok(m)
}

fn read_value(
    given: &str,
    name: &ObjectName,
    attrs: &Attrs,
    view: Option<&View>,
) -> Result<Value, Failure> {
    let beans = registered(view);
    if name.is_pattern() {
        // Jolokia's fetchAttributesForMBeanPattern: value keyed by matching (canonical) names,
        // each an object of those requested attributes the MBean has.
        let matched: Vec<&(ObjectName, &View)> =
            beans.iter().filter(|(n, _)| name.matches(n)).collect();
        if matched.is_empty() {
            return Err(Failure::new(
                404,
                INSTANCE_NOT_FOUND,
                format!("No MBean with pattern {given} found for reading attributes"),
            ));
        }
        let mut out = Map::new();
        for (n, v) in &matched {
            let values = match attrs {
                Attrs::All => all_attributes(v),
                Attrs::One(a) => fetch(v, std::slice::from_ref(a)).unwrap_or_default(),
                Attrs::Many(list) => {
                    let known: Vec<String> = list
                        .iter()
                        .filter(|a| attribute(v, a).is_some())
                        .cloned()
                        .collect();
                    fetch(v, &known)?
                }
            };
            if !values.is_empty() {
                out.insert(n.canonical(), Value::Object(values));
            }
        }
        if out.is_empty() {
            let requested = match attrs {
                Attrs::All => "null".to_string(),
                Attrs::One(a) => format!("[{a}]"),
                Attrs::Many(l) => format!("[{}]", l.join(", ")),
            };
            let names: Vec<String> = matched.iter().map(|(n, _)| n.canonical()).collect();
            return Err(Failure::bad(format!(
                "No matching attributes {requested} found on MBeans [{}]",
                names.join(", ")
            )));
        }
        return Ok(Value::Object(out));
    }
    let Some((_, v)) = beans.iter().find(|(n, _)| name.matches(n)) else {
        let message = match attrs {
            Attrs::One(_) => given.to_string(),
            Attrs::Many(_) => {
                format!("No MBean with ObjectName {given} found at any known MBeanServer")
            }
            Attrs::All => format!("No MBean with ObjectName {given} found in any MBeanServer"),
        };
        return Err(Failure::new(404, INSTANCE_NOT_FOUND, message));
    };
    match attrs {
        Attrs::All => Ok(Value::Object(all_attributes(v))),
        Attrs::One(a) => fetch(v, std::slice::from_ref(a))
            .map(|mut m| m.remove(a.as_str()).unwrap_or(Value::Null)),
        Attrs::Many(list) => fetch(v, list).map(Value::Object),
    }
}

/// Executes one created request against the current view: a reply or a per-request error.
fn execute(req: &Request, view: Option<&View>, now_secs: u64) -> Value {
    let result = match req {
        Request::Version => Ok(version_value()),
        Request::Read {
            given, name, attrs, ..
        } => read_value(given, name, attrs, view),
        Request::Unsupported(ty) => Err(Failure::new(
            500,
            "java.lang.UnsupportedOperationException",
            format!("request type {ty} is not served by demo-node"),
        )),
    };
    match result {
        Ok(value) => json!({
            "request": echo(req),
            "value": value,
            "timestamp": now_secs,
            "status": 200,
        }),
        Err(e) => error_json(Some(echo(req)), &e),
    }
}

/// Handles one POST body: a request object or a bulk array. As Jolokia's
/// `handlePostRequest`, every request is created first, so one malformed request (invalid
/// object name, unknown type, not an object) rejects the whole body with a single error object.
fn handle_post(body: &[u8], view: Option<&View>, now_secs: u64) -> Value {
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(e) => return error_json(None, &Failure::bad(format!("Invalid JSON request: {e}"))),
    };
    match &parsed {
        Value::Array(items) => {
            let mut reqs = Vec::with_capacity(items.len());
            for item in items {
                let Some(obj) = item.as_object() else {
                    return error_json(
                        None,
                        &Failure::bad(format!(
                            "Not a request within the list of requests {parsed}. Expected map, but found: {item}"
                        )),
                    );
                };
                match create(obj) {
                    Ok(r) => reqs.push(r),
                    Err(e) => return error_json(None, &e),
                }
            }
            Value::Array(reqs.iter().map(|r| execute(r, view, now_secs)).collect())
        }
        Value::Object(obj) => match create(obj) {
            Ok(r) => execute(&r, view, now_secs),
            Err(e) => error_json(None, &e),
        },
        other => error_json(None, &Failure::bad(format!("Invalid JSON Request {other}"))),
    }
}

/// Jolokia's GET path escaping of a path part (`!` → `!!`, `/` → `!/`).
fn escape_path_part(p: &str) -> String {
    p.replace('!', "!!").replace('/', "!/")
}

/// Handles one GET path (after `/jolokia/`, percent-decoded).
fn handle_get(rest: &str, view: Option<&View>, now_secs: u64) -> Value {
    let parts = split_escaped(rest);
    let op = parts.first().map(String::as_str).unwrap_or("");
    let mut req = Map::new();
    match op.to_ascii_lowercase().as_str() {
        "" | "version" => {
            req.insert("type".into(), json!("version"));
        }
        "read" => {
            let Some(m) = parts.get(1) else {
                return error_json(
                    None,
                    &Failure::bad(format!(
                        "Invalid arguments in pathinfo {rest} for command read"
                    )),
                );
            };
            req.insert("type".into(), json!("read"));
            req.insert("mbean".into(), json!(m));
            if let Some(a) = parts.get(2).filter(|s| !s.is_empty()) {
                req.insert("attribute".into(), json!(a));
            }
            if parts.len() > 3 {
                let path: Vec<String> = parts[3..].iter().map(|p| escape_path_part(p)).collect();
                req.insert("path".into(), json!(path.join("/")));
            }
        }
        _ => {
            req.insert("type".into(), json!(op));
        }
    }
    match create(&req) {
        Ok(r) => execute(&r, view, now_secs),
        Err(e) => error_json(None, &e),
    }
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
        "POST" => handle_post(body, view, now_secs),
        "GET" => handle_get(&rest, view, now_secs),
        _ => {
            return (
                405,
                json!({"error": "method not allowed", "status": 405}).to_string(),
            )
        }
    };
    // json-simple (Jolokia's serialiser) writes `/` as `\/`; `/` only occurs inside strings.
    (200, reply.to_string().replace('/', "\\/"))
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

/// demo-node's replies against the replies recorded from real Jolokia 1.7.1
/// (`sensor-protocols/tests/fixtures/jolokia/recorded/`, the requests of its `record.sh`): same keys in
/// the same order, same JSON types, same statuses and error types; timestamps, stack trace
/// lines, heap figures and the agent id are not compared. The view mirrors the recorded cluster
/// (four members `Up`, right-a unreachable as seen by left-a and left-b), so the
/// `akka:type=Cluster` values must be equal too.
#[cfg(test)]
mod conformance {
    use super::super::membership::{Address, Member, MemberStatus, UniqueAddress};
    use super::*;

    macro_rules! recorded {
        ($file:literal) => {
            serde_json::from_str::<Value>(include_str!(concat!(
                "../../../sensor-protocols/tests/fixtures/jolokia/recorded/",
                $file
            )))
            .expect(concat!("recorded fixture ", $file))
        };
    }

    fn a(h: &str) -> Address {
        Address {
            host: h.into(),
            port: 2552,
            system: "Sys".into(),
        }
    }

    fn recorded_view() -> View {
        let m = |h: &str| Member {
            node: UniqueAddress {
                address: a(h),
                uid: 7,
            },
            status: MemberStatus::Up,
            roles: vec!["dc-default".into()],
        };
        View {
            self_address: a("left-a"),
            self_status: MemberStatus::Up,
            members: vec![m("left-a"), m("left-b"), m("right-a"), m("right-b")],
            unreachable: vec![(a("right-a"), vec![a("left-a"), a("left-b")])],
            leader: Some(a("left-a")),
        }
    }

    fn post(body: &str) -> Value {
        let (st, text) = handle(
            "POST",
            "/jolokia/",
            body.as_bytes(),
            Some(&recorded_view()),
            1_795_614_245,
        );
        assert_eq!(
            st, 200,
            "Jolokia answers HTTP 200 whatever the status: {text}"
        );
        assert!(
            !text.contains("//"),
            "`/` is written `\\/` as json-simple does: {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    fn get(target: &str) -> Value {
        let (st, text) = handle("GET", target, b"", Some(&recorded_view()), 1);
        assert_eq!(st, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Same JSON types all the way down; objects with the same key set (in the same order when
    /// `ordered`, which is how Jolokia wrote the top level and the request echo).
    fn assert_same_shape(rec: &Value, ours: &Value, at: &str) {
        assert_eq!(kind(rec), kind(ours), "type at {at}: {rec} vs {ours}");
        match (rec, ours) {
            (Value::Object(r), Value::Object(o)) => {
                let mut rk: Vec<&String> = r.keys().collect();
                let mut ok: Vec<&String> = o.keys().collect();
                rk.sort();
                ok.sort();
                assert_eq!(rk, ok, "keys at {at}");
                for (k, rv) in r {
                    assert_same_shape(rv, &o[k], &format!("{at}.{k}"));
                }
            }
            (Value::Array(r), Value::Array(o)) => {
                assert_eq!(r.len(), o.len(), "length at {at}");
                for (i, (rv, ov)) in r.iter().zip(o).enumerate() {
                    assert_same_shape(rv, ov, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }

    /// A success reply: key order, shape, status, echo, and value (everything but timestamp).
    fn assert_same_success(rec: &Value, ours: &Value) {
        assert_eq!(keys(rec), ["request", "value", "timestamp", "status"]);
        assert_eq!(keys(ours), keys(rec), "{ours}");
        assert_eq!(keys(&ours["request"]), keys(&rec["request"]));
        assert_same_shape(rec, ours, "reply");
        assert_eq!(ours["request"], rec["request"]);
        assert_eq!(ours["status"], rec["status"]);
        assert_eq!(ours["value"], rec["value"]);
    }

    /// A per-request error (`request` echo present) or a whole-request error (absent): key
    /// order, status, error_type, error text, and the stack trace's first line.
    fn assert_same_error(rec: &Value, ours: &Value) {
        assert_eq!(keys(ours), keys(rec), "{ours}");
        assert_same_shape(rec, ours, "error");
        for k in ["status", "error_type", "error"] {
            assert_eq!(ours[k], rec[k], "{k}");
        }
        if rec.get("request").is_some() {
            assert_eq!(keys(&ours["request"]), keys(&rec["request"]));
            assert_eq!(ours["request"], rec["request"]);
        }
        let first = |v: &Value| {
            v["stacktrace"]
                .as_str()
                .and_then(|s| s.lines().next())
                .map(str::to_string)
        };
        assert!(first(rec).is_some());
        assert_eq!(first(ours), first(rec));
    }

    #[test]
    fn single_and_cluster_status_reads_equal_the_recordings() {
        let ours = post(r#"{"type":"read","mbean":"akka:type=Cluster","attribute":"Leader"}"#);
        assert_same_success(&recorded!("read_single.json"), &ours);
        // Byte for byte (the recorded timestamp given as "now").
        let (_, text) = handle(
            "POST",
            "/jolokia",
            br#"{"type":"read","mbean":"akka:type=Cluster","attribute":"Leader"}"#,
            Some(&recorded_view()),
            1_795_614_245,
        );
        assert_eq!(
            text,
            include_str!(
                "../../../sensor-protocols/tests/fixtures/jolokia/recorded/read_single.json"
            )
        );
        let ours =
            post(r#"{"type":"read","mbean":"akka:type=Cluster","attribute":"ClusterStatus"}"#);
        assert_same_success(&recorded!("read_cluster_status.json"), &ours);
        assert!(ours["timestamp"].is_u64());
    }

    #[test]
    fn bulk_read_has_per_request_statuses_like_the_recording() {
        let rec = recorded!("bulk_read.json");
        let ours = post(
            r#"[{"type":"read","mbean":"akka:type=Cluster","attribute":["ClusterStatus","Leader","Members","Unreachable","MemberStatus","Available"]},{"type":"read","mbean":"java.lang:type=Memory","attribute":"HeapMemoryUsage"},{"type":"read","mbean":"com.example:type=NotYetRegistered","attribute":"State"},{"type":"read","mbean":"akka:type=Cluster","attribute":"NoSuchAttribute"}]"#,
        );
        assert_eq!(ours.as_array().map(Vec::len), Some(4));
        assert_same_success(&rec[0], &ours[0]);
        // demo-node has no JVM MBeans: java.lang:type=Memory is an unknown-but-valid name, a
        // per-request 404 shaped like the recorded one for com.example:type=NotYetRegistered.
        assert_eq!(ours[1]["request"], rec[1]["request"]);
        assert_eq!(ours[1]["status"], 404);
        assert_eq!(ours[1]["error_type"], rec[2]["error_type"]);
        assert_eq!(keys(&ours[1]), keys(&rec[2]));
        assert_same_error(&rec[2], &ours[2]);
        assert_same_error(&rec[3], &ours[3]);
    }

    #[test]
    fn pattern_reads_are_keyed_by_object_name_like_the_recording() {
        let rec = recorded!("read_pattern.json");
        let ours = post(r#"{"type":"read","mbean":"akka:type=*","attribute":"Leader"}"#);
        assert_same_success(&rec, &ours);
        let ours = post(r#"{"type":"read","mbean":"*:type=Cluster","attribute":"Leader"}"#);
        assert_eq!(ours["request"]["mbean"], "*:type=Cluster");
        assert_eq!(ours["value"], rec["value"]);
        // Several attributes and all attributes: still keyed by name, then by attribute.
        let ours = post(
            r#"{"type":"read","mbean":"*:type=Cluster","attribute":["Leader","Available","Nope"]}"#,
        );
        assert_eq!(ours["status"], 200, "{ours}");
        assert_eq!(
            keys(&ours["value"]["akka:type=Cluster"]),
            ["Leader", "Available"]
        );
        let ours = get("/jolokia/read/akka:*");
        assert_eq!(
            keys(&ours["value"]["akka:type=Cluster"]).len(),
            ATTRIBUTES.len()
        );
        // No match: 404 as Jolokia's searchMBeans; no matching attribute: 400.
        let none = post(r#"{"type":"read","mbean":"java.lang:type=*","attribute":"Leader"}"#);
        assert_eq!(none["status"], 404);
        assert_eq!(none["error_type"], INSTANCE_NOT_FOUND);
        assert_eq!(
            keys(&none),
            ["request", "stacktrace", "error_type", "error", "status"]
        );
        let bad = post(r#"{"type":"read","mbean":"akka:type=*","attribute":"Nope"}"#);
        assert_eq!(bad["status"], 400);
        assert_eq!(bad["error_type"], ILLEGAL_ARGUMENT);
    }

    #[test]
    fn an_invalid_object_name_rejects_the_whole_bulk_request_like_the_recording() {
        let rec = recorded!("whole_request_error.json");
        let ours = post(
            r#"[{"type":"read","mbean":"akka:type=Cluster","attribute":"Leader"},{"type":"read","mbean":"not an object name"}]"#,
        );
        assert!(ours.is_object(), "one error object, not an array: {ours}");
        assert_eq!(keys(&rec), ["stacktrace", "error_type", "error", "status"]);
        assert_same_error(&rec, &ours);
        let cause = "Caused by: javax.management.MalformedObjectNameException: Key properties cannot be empty";
        assert!(rec["stacktrace"].as_str().unwrap().contains(cause));
        assert!(ours["stacktrace"].as_str().unwrap().contains(cause));
        // Unknown types and non-object entries are creation errors too.
        for body in [
            r#"[{"type":"read","mbean":"akka:type=Cluster"},{"type":"bogus"}]"#,
            r#"[{"type":"read","mbean":"akka:type=Cluster"},{"mbean":"akka:type=Cluster"}]"#,
            r#"[{"type":"read","mbean":"akka:type=Cluster"},42]"#,
            r#"[{"type":"read","mbean":"akka:type=Cluster","attribute":7}]"#,
        ] {
            let v = post(body);
            assert_eq!(keys(&v), keys(&rec), "{body}: {v}");
            assert_eq!(v["status"], 400, "{body}");
        }
        // GET with an invalid name: the same single error object.
        let v = get("/jolokia/read/not%20an%20object%20name/Leader");
        assert_same_error(&rec, &v);
    }

    #[test]
    fn version_reply_has_the_recorded_shape_and_agent_version() {
        let rec = recorded!("version.json");
        let ours = post(r#"{"type":"version"}"#);
        assert_eq!(keys(&ours), keys(&rec));
        assert_eq!(ours["request"], rec["request"]);
        assert_eq!(keys(&ours["value"]), keys(&rec["value"]));
        assert_eq!(ours["value"]["agent"], rec["value"]["agent"]);
        assert_eq!(ours["value"]["protocol"], rec["value"]["protocol"]);
        let (rc, oc) = (&rec["value"]["config"], &ours["value"]["config"]);
        for k in keys(rc) {
            assert!(oc[k].is_string(), "config {k}: {oc}");
        }
        assert!(keys(oc).iter().all(|k| oc[k].is_string()));
        assert!(ours["value"]["info"].is_object());
        assert_eq!(get("/jolokia/version")["value"], ours["value"]);
    }

    #[test]
    fn get_requests_echo_canonical_names_and_escaped_paths_like_the_recordings() {
        // demo-node has no demo:type=Escaping MBean (a 404), but parses and echoes the request
        // exactly as Jolokia did.
        for (file, rec, target) in [
            (
                "get_read_escaped.json",
                recorded!("get_read_escaped.json"),
                "/jolokia/read/demo:type=Escaping,name=jmx!/rmi!!x%20y/Labels/a!/b",
            ),
            (
                "get_read_escaped_multi.json",
                recorded!("get_read_escaped_multi.json"),
                "/jolokia/read/demo:type=Escaping,name=jmx!/rmi!!x%20y/Labels,Url",
            ),
        ] {
            let ours = get(target);
            assert_eq!(ours["request"], rec["request"], "{file}");
            assert_eq!(keys(&ours["request"]), keys(&rec["request"]), "{file}");
            assert_eq!(ours["status"], 404, "{file}");
            assert_eq!(ours["error_type"], INSTANCE_NOT_FOUND);
        }
        // The same GET forms against akka:type=Cluster succeed with the recorded value shapes.
        let ours = get("/jolokia/read/akka:type=Cluster/Leader,Members");
        assert_eq!(ours["request"]["attribute"], json!(["Leader", "Members"]));
        assert_eq!(
            ours["value"]["Leader"],
            recorded!("read_single.json")["value"]
        );
    }
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
