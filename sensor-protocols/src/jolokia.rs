//! Jolokia (JMX over HTTP) client: builds read requests, sends one bulk POST per poll, parses the
//! replies (per-request status in bulk replies, whole-request error objects), parses attribute
//! values that are JSON inside a string (Akka's `ClusterStatus`) into structure, and turns each
//! outcome into a `jmx` event (docs/sensors.md, *Events*). Also the `!` escaping of GET URL paths
//! and single GET reads. Checked against replies of the real Jolokia request handler (jolokia-core
//! 1.7.1): recorded fixtures and a live agent in the tests.
//!
//! Transport failures, timeouts and malformed replies never surface as panics or aborted polls:
//! [`JolokiaClient::poll`] always returns one outcome per configured MBean.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trace::Event;

use crate::http::{self, HttpError, Request};

/// One MBean to read, as configured in a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MBeanRead {
    /// Object name, e.g. `akka:type=Cluster` or `java.lang:type=Memory`.
    pub mbean: String,
    /// Attributes to read; empty reads all attributes.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Optional inner path (Jolokia path notation, `/`-separated, `!/` for a literal slash).
    #[serde(default)]
    pub path: Option<String>,
}

impl MBeanRead {
    /// A read of the given attributes.
    pub fn new(mbean: impl Into<String>, attributes: &[&str]) -> MBeanRead {
        MBeanRead {
            mbean: mbean.into(),
            attributes: attributes.iter().map(|s| s.to_string()).collect(),
            path: None,
        }
    }

    /// The JSON read request (POST form). One attribute is sent as a string, several as a list,
    /// none omits the key (read all).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::from("read"));
        m.insert("mbean".into(), Value::from(self.mbean.clone()));
        match self.attributes.len() {
            0 => {}
            1 => {
                m.insert("attribute".into(), Value::from(self.attributes[0].clone()));
            }
            _ => {
                m.insert("attribute".into(), Value::from(self.attributes.clone()));
            }
        }
        if let Some(p) = &self.path {
            m.insert("path".into(), Value::from(p.clone()));
        }
        Value::Object(m)
    }

    /// The GET URL path of this read, relative to the agent's base URL:
    /// `/read/<mbean>/<attr1,attr2>/<path>` with every part `!`-escaped and percent-encoded.
    /// (Several attributes in one GET read are comma-separated, as the protocol allows.)
    pub fn get_path(&self) -> String {
        let mut s = String::from("/read/");
        s.push_str(&escape_get_segment(&self.mbean));
        if !self.attributes.is_empty() || self.path.is_some() {
            s.push('/');
            let attrs: Vec<String> = self
                .attributes
                .iter()
                .map(|a| escape_get_segment(a))
                .collect();
            s.push_str(&attrs.join(","));
        }
        if let Some(p) = &self.path {
            // The inner path is already in Jolokia notation (`!/` escapes kept): only percent-encode.
            s.push('/');
            s.push_str(&percent_encode(p));
        }
        s
    }

    /// True when the object name is a pattern (the reply is then keyed by matching names).
    pub fn is_pattern(&self) -> bool {
        self.mbean
            .split_once(':')
            .is_some_and(|(d, k)| d.contains(['*', '?']) || k.contains(['*', '?']))
            || (self.mbean.contains(['*', '?']) && !self.mbean.contains(':'))
    }
}

/// Escapes one GET path segment the Jolokia way (`!` -> `!!`, `/` -> `!/`, `"` -> `!"`), then
/// percent-encodes characters that are not safe in a URL path.
pub fn escape_get_segment(s: &str) -> String {
    let mut e = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        match c {
            '!' => e.push_str("!!"),
            '/' => e.push_str("!/"),
            '"' => e.push_str("!\""),
            c => e.push(c),
        }
    }
    percent_encode(&e)
}

/// The inverse of [`escape_get_segment`] (percent-decoding, then `!` unescaping), as an agent does.
/// `None` for a malformed escape.
pub fn unescape_get_segment(s: &str) -> Option<String> {
    let decoded = percent_decode(s)?;
    let mut out = String::with_capacity(decoded.len());
    let mut it = decoded.chars();
    while let Some(c) = it.next() {
        if c == '!' {
            out.push(it.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        // Unreserved plus the sub-delims and ':' '@' '!' ',' '=' that are legal in a path segment.
        // '/' stays (segment separators in an inner path, already `!`-escaped where literal).
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The JSON body of a bulk read: an array of read requests.
pub fn bulk_request(reads: &[MBeanRead]) -> Value {
    Value::Array(reads.iter().map(MBeanRead::to_json).collect())
}

/// What one read produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome {
    /// The attribute values (attribute name -> value, JSON-in-string values parsed).
    Values {
        mbean: String,
        attributes: Map<String, Value>,
        agent_timestamp: Option<i64>,
    },
    /// The read failed: per-request error, transport failure or malformed reply.
    Error {
        mbean: String,
        status: Option<i64>,
        error_type: String,
        error: String,
    },
}

impl ReadOutcome {
    fn error(
        mbean: &str,
        status: Option<i64>,
        error_type: &str,
        error: impl Into<String>,
    ) -> ReadOutcome {
        ReadOutcome::Error {
            mbean: mbean.to_string(),
            status,
            error_type: error_type.to_string(),
            error: error.into(),
        }
    }

    /// The event for this outcome: `jmx`/`<mbean>` with the attributes as data, or `jmx`/`error`
    /// with `{"mbean", "error_type", "status", "error"}`.
    pub fn to_event(&self, ts_ns: i64, service: &str, container: Option<&str>) -> Event {
        let mut ev = match self {
            ReadOutcome::Values { mbean, attributes, .. } => {
                Event::new(ts_ns, "jmx", mbean.clone()).service(service).data(&Value::Object(attributes.clone()))
            }
            ReadOutcome::Error { mbean, status, error_type, error } => Event::new(ts_ns, "jmx", "error")
                .service(service)
                .message(format!("jolokia read of {mbean} failed: {error}"))
                .data(&serde_json::json!({"mbean": mbean, "error_type": error_type, "status": status, "error": error})),
        };
        ev.container = container.map(str::to_string);
        ev
    }
}

impl ReadOutcome {
    /// The events of this outcome: for a pattern read (`org.apache.ZooKeeperService:*`), one
    /// `jmx`/`<matching mbean>` event per MBean that matched, with that MBean's attributes (in
    /// the order of the agent's reply); otherwise the one event of [`ReadOutcome::to_event`].
    pub fn to_events(&self, ts_ns: i64, service: &str, container: Option<&str>) -> Vec<Event> {
        if let ReadOutcome::Values {
            mbean, attributes, ..
        } = self
        {
            let pattern = MBeanRead {
                mbean: mbean.clone(),
                attributes: Vec::new(),
                path: None,
            };
            if pattern.is_pattern() {
                return attributes
                    .iter()
                    .map(|(name, attrs)| {
                        let data = match attrs {
                            Value::Object(_) => attrs.clone(),
                            other => serde_json::json!({ "value": other }),
                        };
                        let mut ev = Event::new(ts_ns, "jmx", name.clone())
                            .service(service)
                            .data(&data);
                        ev.container = container.map(str::to_string);
                        ev
                    })
                    .collect();
            }
        }
        vec![self.to_event(ts_ns, service, container)]
    }
}

/// Errors of a whole exchange (before per-MBean outcomes can be told apart).
#[derive(Debug, thiserror::Error)]
pub enum JolokiaError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("malformed jolokia reply: {0}")]
    Malformed(String),
    #[error("jolokia agent answered status {status}: {error_type}: {error}")]
    Agent {
        status: i64,
        error_type: String,
        error: String,
    },
}

impl JolokiaError {
    /// Short name for event data (`connection_refused`, `timeout`, `malformed_reply`, the agent's
    /// Java exception class …).
    pub fn error_type(&self) -> String {
        match self {
            JolokiaError::Http(e) => e.kind().to_string(),
            JolokiaError::Malformed(_) => "malformed_reply".into(),
            JolokiaError::Agent { error_type, .. } => error_type.clone(),
        }
    }
}

/// If `v` is a string holding a JSON object or array, the parsed structure; else `v` unchanged.
pub fn parse_embedded_json(v: Value) -> Value {
    if let Value::String(s) = &v {
        let t = s.trim_start();
        if t.starts_with('{') || t.starts_with('[') {
            if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                return parsed;
            }
        }
    }
    v
}

fn attributes_of(read: &MBeanRead, value: Value) -> Result<Map<String, Value>, String> {
    let fix = |m: Map<String, Value>| {
        m.into_iter()
            .map(|(k, v)| (k, parse_embedded_json(v)))
            .collect::<Map<_, _>>()
    };
    if read.is_pattern() {
        // {mbean name: {attr: value}}: keep the shape, parse embedded JSON one level down.
        let Value::Object(m) = value else {
            return Err("pattern read value is not an object".into());
        };
        return Ok(m
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(inner) => (k, Value::Object(fix(inner))),
                other => (k, other),
            })
            .collect());
    }
    if read.attributes.len() == 1 && read.path.is_none() {
        let mut m = Map::new();
        m.insert(read.attributes[0].clone(), parse_embedded_json(value));
        return Ok(m);
    }
    if read.attributes.len() == 1 {
        // With a path the value is the sub-value; key it by "attribute/path".
        let mut m = Map::new();
        let key = format!(
            "{}/{}",
            read.attributes[0],
            read.path.as_deref().unwrap_or("")
        );
        m.insert(key, parse_embedded_json(value));
        return Ok(m);
    }
    match value {
        Value::Object(m) => Ok(fix(m)),
        other => Err(format!(
            "expected an object of attributes, got {}",
            type_name(&other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn one_response(read: &MBeanRead, resp: &Value) -> ReadOutcome {
    let Value::Object(o) = resp else {
        return ReadOutcome::error(
            &read.mbean,
            None,
            "malformed_reply",
            format!("response is {}", type_name(resp)),
        );
    };
    let Some(status) = o.get("status").and_then(Value::as_i64) else {
        return ReadOutcome::error(
            &read.mbean,
            None,
            "malformed_reply",
            "response has no numeric status",
        );
    };
    if status != 200 {
        let error_type = o
            .get("error_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let error = o.get("error").and_then(Value::as_str).unwrap_or("");
        return ReadOutcome::error(&read.mbean, Some(status), error_type, error);
    }
    let Some(value) = o.get("value") else {
        return ReadOutcome::error(
            &read.mbean,
            Some(status),
            "malformed_reply",
            "status 200 without a value",
        );
    };
    match attributes_of(read, value.clone()) {
        Ok(attributes) => ReadOutcome::Values {
            mbean: read.mbean.clone(),
            attributes,
            agent_timestamp: o.get("timestamp").and_then(Value::as_i64),
        },
        Err(e) => ReadOutcome::error(&read.mbean, Some(status), "malformed_reply", e),
    }
}

/// Parses the reply to [`bulk_request`]`(reads)`: one outcome per read, in order. A reply that is a
/// single error object (the agent rejected the whole request) gives that error for every read;
/// an unparseable body is `Err`.
pub fn parse_bulk_reply(
    reads: &[MBeanRead],
    body: &[u8],
) -> Result<Vec<ReadOutcome>, JolokiaError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        JolokiaError::Malformed(format!("{e} in {:?}", http::truncate(&text, 120)))
    })?;
    match v {
        Value::Array(items) => Ok(reads
            .iter()
            .enumerate()
            .map(|(i, r)| match items.get(i) {
                Some(resp) => one_response(r, resp),
                None => ReadOutcome::error(
                    &r.mbean,
                    None,
                    "malformed_reply",
                    format!(
                        "bulk reply has {} responses for {} requests",
                        items.len(),
                        reads.len()
                    ),
                ),
            })
            .collect()),
        Value::Object(ref o) => {
            let status = o.get("status").and_then(Value::as_i64);
            match status {
                Some(200) if reads.len() == 1 => Ok(vec![one_response(&reads[0], &v)]),
                Some(s) if s != 200 => Err(JolokiaError::Agent {
                    status: s,
                    error_type: o
                        .get("error_type")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_string(),
                    error: o
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                }),
                _ => Err(JolokiaError::Malformed(
                    "expected an array of responses for a bulk request".into(),
                )),
            }
        }
        other => Err(JolokiaError::Malformed(format!(
            "reply is {}",
            type_name(&other)
        ))),
    }
}

/// Parses the reply to one read sent alone (a GET of [`MBeanRead::get_path`] or a POST of
/// [`MBeanRead::to_json`]): a single response object. A non-200 `status` in it is that read's
/// error outcome (as in a bulk reply); only an unparseable body or a non-object is `Err`.
pub fn parse_single_reply(read: &MBeanRead, body: &[u8]) -> Result<ReadOutcome, JolokiaError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(body);
        JolokiaError::Malformed(format!("{e} in {:?}", http::truncate(&text, 120)))
    })?;
    match v {
        Value::Object(_) => Ok(one_response(read, &v)),
        other => Err(JolokiaError::Malformed(format!(
            "reply to a single request is {}",
            type_name(&other)
        ))),
    }
}

/// What a `version` request reports.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentVersion {
    pub agent: String,
    pub protocol: String,
    /// The whole `value` object (config, info, details …).
    pub value: Value,
}

/// Parses the reply to a `{"type":"version"}` request.
pub fn parse_version_reply(body: &[u8]) -> Result<AgentVersion, JolokiaError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| JolokiaError::Malformed(e.to_string()))?;
    let status = v
        .get("status")
        .and_then(Value::as_i64)
        .ok_or_else(|| JolokiaError::Malformed("no status".into()))?;
    if status != 200 {
        return Err(JolokiaError::Agent {
            status,
            error_type: v
                .get("error_type")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
            error: v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    let value = v
        .get("value")
        .cloned()
        .ok_or_else(|| JolokiaError::Malformed("no value".into()))?;
    let field = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(AgentVersion {
        agent: field("agent")
            .ok_or_else(|| JolokiaError::Malformed("version value has no agent".into()))?,
        protocol: field("protocol")
            .ok_or_else(|| JolokiaError::Malformed("version value has no protocol".into()))?,
        value,
    })
}

/// A client for one agent.
#[derive(Debug, Clone)]
pub struct JolokiaClient {
    /// Base URL of the agent, e.g. `http://172.18.0.3:8778/jolokia`.
    pub url: String,
    pub timeout: Duration,
}

impl JolokiaClient {
    /// Client for `http://<host>:<port>/jolokia` (`host` may be an IPv6 literal).
    pub fn for_host(host: &str, port: u16, timeout: Duration) -> JolokiaClient {
        let h = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        JolokiaClient {
            url: format!("http://{h}:{port}/jolokia"),
            timeout,
        }
    }

    async fn post(&self, body: &Value) -> Result<http::Response, JolokiaError> {
        let body = body.to_string();
        let url = if self.url.ends_with('/') {
            self.url.clone()
        } else {
            format!("{}/", self.url)
        };
        let req = Request {
            method: "POST",
            url: &url,
            headers: &[("Content-Type", "application/json")],
            body: Some(body.as_bytes()),
            timeout: self.timeout,
            max_body: 16 << 20,
        };
        Ok(http::send(&req).await?)
    }

    /// One bulk read. Transport errors and unparseable replies are `Err`.
    pub async fn read(&self, reads: &[MBeanRead]) -> Result<Vec<ReadOutcome>, JolokiaError> {
        let resp = self.post(&bulk_request(reads)).await?;
        match parse_bulk_reply(reads, &resp.body) {
            Err(JolokiaError::Malformed(m)) if resp.status != 200 => Err(JolokiaError::Agent {
                status: resp.status as i64,
                error_type: format!("http_{}", resp.status),
                error: m,
            }),
            other => other,
        }
    }

    /// One bulk read that never fails: a failed exchange becomes an error outcome for every read.
    pub async fn poll(&self, reads: &[MBeanRead]) -> Vec<ReadOutcome> {
        match self.read(reads).await {
            Ok(o) => o,
            Err(e) => {
                let status = match &e {
                    JolokiaError::Agent { status, .. } => Some(*status),
                    _ => None,
                };
                reads
                    .iter()
                    .map(|r| ReadOutcome::error(&r.mbean, status, &e.error_type(), e.to_string()))
                    .collect()
            }
        }
    }

    /// One read as a GET of [`MBeanRead::get_path`] under the base URL (the `!`-escaped URL form).
    /// A per-request error (e.g. 404 for an MBean not registered) is an error outcome; transport
    /// errors and unparseable replies are `Err`.
    pub async fn read_get(&self, read: &MBeanRead) -> Result<ReadOutcome, JolokiaError> {
        let url = format!("{}{}", self.url.trim_end_matches('/'), read.get_path());
        let req = Request {
            timeout: self.timeout,
            ..Request::get(&url)
        };
        let resp = http::send(&req).await?;
        match parse_single_reply(read, &resp.body) {
            Err(JolokiaError::Malformed(m)) if resp.status != 200 => Err(JolokiaError::Agent {
                status: resp.status as i64,
                error_type: format!("http_{}", resp.status),
                error: m,
            }),
            other => other,
        }
    }

    /// Sends one request object (POST) and returns its `value`; a non-200 `status` is
    /// [`JolokiaError::Agent`].
    pub async fn request(&self, req: &Value) -> Result<Value, JolokiaError> {
        let resp = self.post(req).await?;
        let v: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            let text = String::from_utf8_lossy(&resp.body);
            JolokiaError::Malformed(format!("{e} in {:?}", http::truncate(&text, 120)))
        })?;
        let status = v.get("status").and_then(Value::as_i64);
        match status {
            Some(200) => v
                .get("value")
                .cloned()
                .ok_or_else(|| JolokiaError::Malformed("status 200 without a value".into())),
            Some(s) => Err(JolokiaError::Agent {
                status: s,
                error_type: v
                    .get("error_type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
                error: v
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            }),
            None if resp.status != 200 => Err(JolokiaError::Agent {
                status: resp.status as i64,
                error_type: format!("http_{}", resp.status),
                error: http::truncate(&String::from_utf8_lossy(&resp.body), 200).to_string(),
            }),
            None => Err(JolokiaError::Malformed(
                "reply has no numeric status".into(),
            )),
        }
    }

    /// The names of the MBeans matching an object-name pattern (`search`), sorted.
    pub async fn search(&self, pattern: &str) -> Result<Vec<String>, JolokiaError> {
        let v = self
            .request(&serde_json::json!({"type": "search", "mbean": pattern}))
            .await?;
        let Value::Array(items) = v else {
            return Err(JolokiaError::Malformed(format!(
                "search value is {}",
                type_name(&v)
            )));
        };
        let mut names: Vec<String> = items
            .into_iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The metadata of one MBean (`list` of `<domain>/<properties>`): its attributes
    /// (`attr`: name -> {type, rw, desc}), operations and description, as the agent gives them.
    pub async fn list_mbean(&self, mbean: &str) -> Result<Value, JolokiaError> {
        let (domain, props) = mbean.split_once(':').ok_or_else(|| {
            JolokiaError::Malformed(format!("{mbean:?} is not an object name (no `:`)"))
        })?;
        let esc = |s: &str| s.replace('!', "!!").replace('/', "!/");
        let path = format!("{}/{}", esc(domain), esc(props));
        self.request(&serde_json::json!({"type": "list", "path": path}))
            .await
    }

    /// The agent's version (`{"type":"version"}` POST).
    pub async fn version(&self) -> Result<AgentVersion, JolokiaError> {
        let resp = self.post(&serde_json::json!({"type": "version"})).await?;
        parse_version_reply(&resp.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes() {
        let r = MBeanRead::new("akka:type=Cluster", &["ClusterStatus"]);
        assert_eq!(
            r.to_json(),
            serde_json::json!({"type":"read","mbean":"akka:type=Cluster","attribute":"ClusterStatus"})
        );
        let r = MBeanRead::new(
            "java.lang:type=Memory",
            &["HeapMemoryUsage", "NonHeapMemoryUsage"],
        );
        assert_eq!(
            r.to_json()["attribute"],
            serde_json::json!(["HeapMemoryUsage", "NonHeapMemoryUsage"])
        );
        let r = MBeanRead::new("java.lang:type=Runtime", &[]);
        assert!(r.to_json().get("attribute").is_none());
    }

    #[test]
    fn get_path_escaping() {
        // From the protocol reference: `/` inside a part is `!/`, `!` is `!!`, `"` is `!"`.
        assert_eq!(escape_get_segment("a/b!c\"d"), "a!/b!!c!%22d");
        let r = MBeanRead {
            mbean: "jboss.jmx:alias=jmx/rmi/RMIAdaptor".into(),
            attributes: vec!["State".into()],
            path: None,
        };
        assert_eq!(
            r.get_path(),
            "/read/jboss.jmx:alias=jmx!/rmi!/RMIAdaptor/State"
        );
        let r = MBeanRead {
            mbean: "java.lang:type=Memory".into(),
            attributes: vec!["HeapMemoryUsage".into()],
            path: Some("used".into()),
        };
        assert_eq!(
            r.get_path(),
            "/read/java.lang:type=Memory/HeapMemoryUsage/used"
        );
        assert_eq!(escape_get_segment("a b"), "a%20b");
        assert_eq!(
            unescape_get_segment("jmx!/rmi!!x!%22").as_deref(),
            Some("jmx/rmi!x\"")
        );
        assert_eq!(unescape_get_segment("dangling!"), None);
    }

    /// A pattern read is one event per matching MBean (kind = that MBean's name); a plain read
    /// stays one event.
    #[test]
    fn pattern_reads_are_one_event_per_mbean() {
        let reads = vec![
            MBeanRead::new("org.apache.ZooKeeperService:name0=*,name1=*,name2=*", &[]),
            MBeanRead::new("java.lang:type=Memory", &["HeapMemoryUsage"]),
        ];
        let body = br#"[{"request":{"mbean":"org.apache.ZooKeeperService:name0=*,name1=*,name2=*","type":"read"},
            "value":{"org.apache.ZooKeeperService:name0=ReplicatedServer_id3,name1=replica.3,name2=Leader":{"Name":"Leader","OutstandingRequests":0},
                     "org.apache.ZooKeeperService:name0=ReplicatedServer_id3,name1=replica.3,name2=InMemoryDataTree":{"NodeCount":5}},"status":200},
            {"request":{"mbean":"java.lang:type=Memory","attribute":"HeapMemoryUsage","type":"read"},"value":{"used":10,"max":20},"status":200}]"#;
        let out = parse_bulk_reply(&reads, body).expect("reply");
        let evs: Vec<Event> = out
            .iter()
            .flat_map(|o| o.to_events(7, "zk1", Some("p-zk1-1")))
            .collect();
        let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "org.apache.ZooKeeperService:name0=ReplicatedServer_id3,name1=replica.3,name2=Leader",
                "org.apache.ZooKeeperService:name0=ReplicatedServer_id3,name1=replica.3,name2=InMemoryDataTree",
                "java.lang:type=Memory",
            ]
        );
        let leader: Value =
            serde_json::from_str(evs[0].data.as_deref().expect("data")).expect("json");
        assert_eq!(
            leader,
            serde_json::json!({"Name": "Leader", "OutstandingRequests": 0})
        );
        assert!(evs
            .iter()
            .all(|e| e.ts_ns == 7 && e.container.as_deref() == Some("p-zk1-1")));
    }

    #[test]
    fn patterns() {
        assert!(MBeanRead::new("java.lang:type=*", &[]).is_pattern());
        assert!(MBeanRead::new("*:type=Cluster", &[]).is_pattern());
        assert!(!MBeanRead::new("akka:type=Cluster", &[]).is_pattern());
    }

    #[test]
    fn embedded_json_only_when_valid() {
        assert_eq!(
            parse_embedded_json(Value::from("{\"a\":[1]}")),
            serde_json::json!({"a":[1]})
        );
        assert_eq!(
            parse_embedded_json(Value::from("{not json")),
            Value::from("{not json")
        );
        assert_eq!(parse_embedded_json(Value::from("42")), Value::from("42"));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let reads = [
            MBeanRead::new("a:b=c", &["X"]),
            MBeanRead::new("a:b=d", &["Y"]),
        ];
        assert!(matches!(
            parse_bulk_reply(&reads, b"<html>oops</html>"),
            Err(JolokiaError::Malformed(_))
        ));
        assert!(matches!(
            parse_bulk_reply(&reads, b"42"),
            Err(JolokiaError::Malformed(_))
        ));
        let out = parse_bulk_reply(&reads, br#"[{"status":200,"value":1}, "junk"]"#).unwrap();
        assert!(matches!(&out[0], ReadOutcome::Values { attributes, .. } if attributes["X"] == 1));
        assert!(
            matches!(&out[1], ReadOutcome::Error { error_type, .. } if error_type == "malformed_reply")
        );
        let out = parse_bulk_reply(&reads, br#"[{"status":200,"value":1}]"#).unwrap();
        assert!(
            matches!(&out[1], ReadOutcome::Error { error_type, .. } if error_type == "malformed_reply")
        );
        let whole =
            br#"{"error_type":"java.lang.IllegalArgumentException","error":"bad","status":400}"#;
        assert!(matches!(
            parse_bulk_reply(&reads, whole),
            Err(JolokiaError::Agent { status: 400, .. })
        ));
    }
}
