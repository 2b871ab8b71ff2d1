//! The `dns` fault: a DNS responder served inside the target container's network namespace (see
//! [`super::netns`]) that a `nat` `OUTPUT` `REDIRECT` rule sends the container's UDP queries to
//! its resolver (the `nameserver` of its `/etc/resolv.conf`: Docker's embedded 127.0.0.11 on user
//! networks) to. Queries for the fault's names (exact, or `*.suffix`) are answered with a chosen
//! IPv4 address, NXDOMAIN or SERVFAIL, and/or delayed; every other query is forwarded to that
//! resolver from a marked socket the redirect rule skips (so Docker's own `DOCKER_OUTPUT` DNAT
//! still applies) and the answer relayed back. The wire format is hickory-proto's. Every matched
//! query is a `proxy`/`dns` event.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use super::netns::{udp_marked, NetnsRuntime};
use super::FaultError;
use crate::sink::{now_ns, EventSink};

/// What a matching query gets.
#[derive(Debug, Clone, PartialEq)]
pub enum DnsAnswer {
    /// This address for A queries (other types: an empty NOERROR answer).
    Address(Ipv4Addr),
    NxDomain,
    ServFail,
    /// Only the delay, then forwarded.
    Forward,
}

/// A `dns` fault's arguments, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsFault {
    /// Lowercase names without the trailing dot; `*.example.com` matches every name under it.
    pub names: Vec<String>,
    pub answer: DnsAnswer,
    pub delay_ms: f64,
    pub ttl: u32,
}

impl DnsFault {
    /// The parameters recorded in the fault's events.
    pub fn params(&self) -> Value {
        let (action, address) = match &self.answer {
            DnsAnswer::Address(a) => ("address", Some(a.to_string())),
            DnsAnswer::NxDomain => ("nxdomain", None),
            DnsAnswer::ServFail => ("servfail", None),
            DnsAnswer::Forward => ("delay", None),
        };
        json!({
            "names": self.names,
            "action": action,
            "address": address,
            "delay_ms": self.delay_ms,
            "ttl": self.ttl,
        })
    }

    /// True when `name` (any case, with or without the trailing dot) is one of the fault's.
    pub fn matches(&self, name: &str) -> bool {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => n.len() > suffix.len() + 1 && n.ends_with(&format!(".{suffix}")),
            None => *p == n,
        })
    }
}

/// Normalises a name pattern: lowercase, no trailing dot; `*` only as a whole first label.
pub fn normalize_name(p: &str) -> Result<String, super::InvalidFault> {
    let n = p.trim().trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() {
        return Err("argument `name`: empty name".into());
    }
    let rest = n.strip_prefix("*.").unwrap_or(&n);
    if rest.is_empty()
        || rest.contains('*')
        || rest.split('.').any(|l| l.is_empty() || l.len() > 63)
        || !rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(
            format!("argument `name`: `{p}` is not a DNS name or a `*.suffix` wildcard").into(),
        );
    }
    Ok(n)
}

/// The answer to `query` when it matches, else `None` (to be forwarded). `delay` is applied by
/// the caller.
pub fn answer(fault: &DnsFault, query: &Message) -> Option<(Message, String, &'static str)> {
    let q = query.queries().first()?;
    let name = q.name().to_ascii();
    if !fault.matches(&name) {
        return None;
    }
    let mut m = Message::new();
    m.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .add_query(q.clone());
    let action = match &fault.answer {
        DnsAnswer::Address(ip) => {
            if q.query_type() == RecordType::A {
                m.add_answer(Record::from_rdata(
                    q.name().clone(),
                    fault.ttl,
                    RData::A(A(*ip)),
                ));
            }
            m.set_response_code(ResponseCode::NoError);
            "address"
        }
        DnsAnswer::NxDomain => {
            m.set_response_code(ResponseCode::NXDomain);
            "nxdomain"
        }
        DnsAnswer::ServFail => {
            m.set_response_code(ResponseCode::ServFail);
            "servfail"
        }
        DnsAnswer::Forward => return Some((m, name, "delay")),
    };
    Some((m, name, action))
}

/// The first `nameserver` of a resolv.conf text (IPv4).
pub fn resolv_conf_nameserver(text: &str) -> Option<Ipv4Addr> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|r| r.trim().parse::<Ipv4Addr>().ok())
        .next()
}

/// The resolver a container uses: the first IPv4 `nameserver` of its `/etc/resolv.conf`, read
/// through `/proc/PID/root`.
pub fn container_resolver(pid: i64, container: &str) -> Result<Ipv4Addr, FaultError> {
    let path = format!("/proc/{pid}/root/etc/resolv.conf");
    let text = std::fs::read_to_string(&path).map_err(|e| FaultError::Command {
        command: format!("read {path}"),
        message: e.to_string(),
    })?;
    resolv_conf_nameserver(&text).ok_or_else(|| {
        FaultError::Target(format!(
            "{container}: /etc/resolv.conf names no IPv4 nameserver to stand in for"
        ))
    })
}

struct Shared {
    fault_id: String,
    fault: DnsFault,
    resolver: SocketAddr,
    sink: EventSink,
    service: String,
    container: String,
}

/// One running responder (one per target container).
#[derive(Debug)]
pub struct DnsResponder {
    pub container: String,
    pub port: u16,
    pub resolver: Ipv4Addr,
    runtime: NetnsRuntime,
}

impl DnsResponder {
    /// Starts the responder in the namespace of `pid` on an ephemeral UDP port.
    pub async fn start(
        pid: i64,
        service: &str,
        container: &str,
        fault_id: &str,
        fault: &DnsFault,
        sink: EventSink,
    ) -> Result<DnsResponder, FaultError> {
        let resolver = container_resolver(pid, container)?;
        let runtime = NetnsRuntime::start(pid, &format!("dns-{fault_id}"))?;
        let sock = runtime
            .run(|| async { UdpSocket::bind(("0.0.0.0", 0)).await })
            .await?
            .map_err(|e| FaultError::Failed(format!("dns responder in {container}: {e}")))?;
        let port = sock
            .local_addr()
            .map_err(|e| FaultError::Failed(format!("dns responder in {container}: {e}")))?
            .port();
        let shared = Arc::new(Shared {
            fault_id: fault_id.to_string(),
            fault: fault.clone(),
            resolver: SocketAddr::from((resolver, 53)),
            sink,
            service: service.to_string(),
            container: container.to_string(),
        });
        runtime.spawn(serve(Arc::new(sock), shared));
        Ok(DnsResponder {
            container: container.to_string(),
            port,
            resolver,
            runtime,
        })
    }

    /// Stops the responder.
    pub fn stop(&mut self) {
        self.runtime.stop();
    }
}

async fn serve(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let packet = buf[..n].to_vec();
        tokio::spawn(one(sock.clone(), shared.clone(), packet, client));
    }
}

async fn one(sock: Arc<UdpSocket>, shared: Arc<Shared>, packet: Vec<u8>, client: SocketAddr) {
    let ts = now_ns();
    let parsed = Message::from_vec(&packet).ok();
    let matched = parsed.as_ref().and_then(|q| answer(&shared.fault, q));
    if let (Some((reply, name, action)), Some(q)) = (&matched, &parsed) {
        let qtype = q
            .queries()
            .first()
            .map(|x| x.query_type().to_string())
            .unwrap_or_default();
        let data = json!({
            "fault_id": shared.fault_id,
            "name": name.trim_end_matches('.'),
            "type": qtype,
            "action": action,
            "address": match &shared.fault.answer {
                DnsAnswer::Address(a) if qtype == "A" => Some(a.to_string()),
                _ => None,
            },
            "delay_ms": shared.fault.delay_ms,
            "client": client.to_string(),
        });
        shared.sink.emit(
            trace::kinds::proxy::DNS
                .at(ts)
                .service(shared.service.clone())
                .container(shared.container.clone())
                .message(format!(
                    "{} {qtype} {} → {action}",
                    shared.fault_id,
                    name.trim_end_matches('.')
                ))
                .data(&data),
        );
        if shared.fault.delay_ms > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(shared.fault.delay_ms / 1000.0)).await;
        }
        if *action != "delay" {
            if let Ok(bytes) = reply.to_vec() {
                let _ = sock.send_to(&bytes, client).await;
            }
            return;
        }
    }
    // Forward to the real resolver and relay its answer.
    let Ok(up) = udp_marked().await else { return };
    if up.send_to(&packet, shared.resolver).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    if let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_secs(5), up.recv_from(&mut buf)).await
    {
        let _ = sock.send_to(&buf[..n], client).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn query(name: &str, t: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_str(name).unwrap(), t));
        m
    }

    fn fault(names: &[&str], answer: DnsAnswer) -> DnsFault {
        DnsFault {
            names: names.iter().map(|n| normalize_name(n).unwrap()).collect(),
            answer,
            delay_ms: 0.0,
            ttl: 0,
        }
    }

    #[test]
    fn names_match_exactly_or_under_a_wildcard() {
        let f = fault(&["Web.", "*.example.com"], DnsAnswer::NxDomain);
        assert!(f.matches("web"));
        assert!(f.matches("WEB."));
        assert!(f.matches("a.example.com."));
        assert!(f.matches("a.b.example.com"));
        assert!(!f.matches("example.com"));
        assert!(!f.matches("web.local"));
        assert!(!f.matches("xexample.com"));
        assert!(normalize_name("a*b").is_err());
        assert!(normalize_name("").is_err());
        assert!(normalize_name("bad name").is_err());
    }

    #[test]
    fn answers_an_address_nxdomain_or_servfail_with_the_query_id() {
        let ip = Ipv4Addr::new(10, 9, 8, 7);
        let f = fault(&["web"], DnsAnswer::Address(ip));
        let (m, name, action) = answer(&f, &query("web.", RecordType::A)).unwrap();
        assert_eq!(action, "address");
        assert_eq!(name, "web.");
        let bytes = m.to_vec().unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert_eq!(back.id(), 4242);
        assert_eq!(back.message_type(), MessageType::Response);
        assert_eq!(back.answers().len(), 1);
        assert_eq!(back.answers()[0].data(), &RData::A(A(ip)));
        let (m, _, _) = answer(&f, &query("web.", RecordType::AAAA)).unwrap();
        assert!(m.answers().is_empty());
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(answer(&f, &query("db.", RecordType::A)).is_none());
        let f = fault(&["web"], DnsAnswer::NxDomain);
        let (m, _, _) = answer(&f, &query("web.", RecordType::A)).unwrap();
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let f = fault(&["web"], DnsAnswer::ServFail);
        let (m, _, _) = answer(&f, &query("web.", RecordType::A)).unwrap();
        assert_eq!(m.response_code(), ResponseCode::ServFail);
    }

    #[test]
    fn reads_the_first_ipv4_nameserver() {
        let t = "# generated\nsearch x\nnameserver fe80::1\nnameserver 127.0.0.11\nnameserver 1.1.1.1\noptions ndots:0\n";
        assert_eq!(
            resolv_conf_nameserver(t),
            Some(Ipv4Addr::new(127, 0, 0, 11))
        );
        assert_eq!(resolv_conf_nameserver("search x\n"), None);
    }
}
