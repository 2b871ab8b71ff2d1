//! The servers of `http` and `dns` faults: one proxy or DNS responder per target container,
//! running in its network namespace, and the `nat` redirect rules that send the matched traffic
//! to it; installed together and removed together (rules first).

use super::*;

/// A server of an `http` or `dns` fault in one container's namespace.
#[derive(Debug)]
pub(super) enum ProxyServer {
    Http(http::HttpProxy),
    Dns(dns::DnsResponder),
}

impl ProxyServer {
    fn stop(&mut self) {
        match self {
            ProxyServer::Http(p) => p.stop(),
            ProxyServer::Dns(d) => d.stop(),
        }
    }
}

/// One container's part of an `http`/`dns` fault: the server and the redirect rules to it.
#[derive(Debug, Clone)]
pub(super) struct ProxyInstall {
    pub(super) fault_id: String,
    pub(super) container: String,
    pub(super) pid: i64,
    pub(super) redirects: Vec<rules::Redirect>,
    pub(super) server: std::sync::Arc<std::sync::Mutex<ProxyServer>>,
}

impl FaultInjector {
    /// Starts an `http`/`dns` fault's server in each target container's namespace and adds the
    /// redirect rules to it; on failure everything started or added is undone. Records the
    /// proxies' ports and the rules in `params`.
    pub(super) async fn install_proxies(
        &self,
        id: FaultId,
        action: &Action,
        view: &ProjectView,
        resolved: &Resolved,
        params: &mut Value,
    ) -> Result<Vec<ProxyInstall>, FaultError> {
        let fid = id.to_string();
        let mut installs: Vec<ProxyInstall> = Vec::new();
        let mut ports = serde_json::Map::new();
        let mut listed = Vec::new();
        for (i, c) in resolved.a.iter().enumerate() {
            let r = self
                .install_proxy(id, i, action, view, c, &mut installs)
                .await;
            if let Err(e) = r {
                self.remove_proxies(&installs).await;
                return Err(e);
            }
            if let Some(last) = installs.last() {
                let port = match &*last
                    .server
                    .lock()
                    .map_err(|_| FaultError::Failed("proxy state poisoned".into()))?
                {
                    ProxyServer::Http(p) => p.port,
                    ProxyServer::Dns(d) => {
                        params["resolver"] = json!(d.resolver.to_string());
                        d.port
                    }
                };
                ports.insert(c.name.clone(), json!(port));
                for r in &last.redirects {
                    listed.push(json!({
                        "container": c.name,
                        "rule": r.add_args(&self.tags, &fid)[3..].join(" "),
                    }));
                }
            }
        }
        params["proxy_ports"] = Value::Object(ports);
        params["rules"] = json!(listed);
        if let Action::Http(_) = action {
            params["seed"] = json!(self.seed);
        }
        Ok(installs)
    }

    pub(super) async fn install_proxy(
        &self,
        id: FaultId,
        index: usize,
        action: &Action,
        view: &ProjectView,
        c: &ContainerInfo,
        installs: &mut Vec<ProxyInstall>,
    ) -> Result<(), FaultError> {
        let fid = id.to_string();
        let Some(pid) = c.live_pid() else {
            return Err(FaultError::Target(format!(
                "{} is not running (no network namespace to serve in)",
                c.name
            )));
        };
        let (server, redirects) = match action {
            Action::Http(f) => {
                let seed = self
                    .seed
                    .wrapping_add(id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                    .wrapping_add(index as u64);
                let redirect_to: Vec<Option<String>> = match &f.to {
                    None => vec![None],
                    Some(peer) => {
                        let addrs: Vec<String> = view
                            .of_service(peer)
                            .iter()
                            .flat_map(|p| shared_addresses(c, p))
                            .collect();
                        if addrs.is_empty() {
                            return Err(FaultError::Target(format!(
                                "{} shares no network with a running container of `{peer}`",
                                c.name
                            )));
                        }
                        addrs.into_iter().map(Some).collect()
                    }
                };
                let p = http::HttpProxy::start(
                    pid,
                    &c.service,
                    &c.name,
                    &fid,
                    f,
                    seed,
                    self.sink.clone(),
                )
                .await?;
                let chain = if f.to.is_some() {
                    "OUTPUT"
                } else {
                    "PREROUTING"
                };
                let redirects = redirect_to
                    .into_iter()
                    .map(|dst| rules::Redirect {
                        chain,
                        proto: "tcp",
                        dst,
                        dport: f.port,
                        to_port: p.port,
                    })
                    .collect::<Vec<_>>();
                (ProxyServer::Http(p), redirects)
            }
            Action::Dns(f) => {
                let d =
                    dns::DnsResponder::start(pid, &c.service, &c.name, &fid, f, self.sink.clone())
                        .await?;
                let r = rules::Redirect {
                    chain: "OUTPUT",
                    proto: "udp",
                    dst: Some(d.resolver.to_string()),
                    dport: 53,
                    to_port: d.port,
                };
                (ProxyServer::Dns(d), vec![r])
            }
            _ => return Ok(()),
        };
        let mut install = ProxyInstall {
            fault_id: fid.clone(),
            container: c.name.clone(),
            pid,
            redirects: Vec::new(),
            server: std::sync::Arc::new(std::sync::Mutex::new(server)),
        };
        for r in redirects {
            if let Err(e) = host::iptables(pid, &r.add_args(&self.tags, &fid)).await {
                installs.push(install);
                return Err(e);
            }
            install.redirects.push(r);
        }
        installs.push(install);
        Ok(())
    }

    /// Deletes the redirect rules first (new connections and queries go straight to their
    /// destination again), then stops the servers. Returns the errors.
    pub(super) async fn remove_proxies(&self, installs: &[ProxyInstall]) -> Vec<String> {
        let mut errors = Vec::new();
        for i in installs {
            for r in &i.redirects {
                if let Err(e) = host::iptables(i.pid, &r.del_args(&self.tags, &i.fault_id)).await {
                    // a namespace that is gone took its rules with it
                    if std::path::Path::new(&format!("/proc/{}/ns/net", i.pid)).exists() {
                        errors.push(format!("{}: {e}", i.container));
                    }
                }
            }
        }
        let servers: Vec<_> = installs.iter().map(|i| i.server.clone()).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for s in servers {
                if let Ok(mut s) = s.lock() {
                    s.stop();
                }
            }
        })
        .await;
        errors
    }
}
