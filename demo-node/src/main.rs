//! The demo node: one static binary for the project's own `FROM scratch` images. It picks a mode
//! from its first argument or the MODE variable and reads its settings from `--key value` flags or
//! environment variables (see docs/demo-node.md): `chatter` (numbered lines and peer messages for
//! recorder tests), `cluster` (an Akka-like cluster member with a Jolokia endpoint), `ping`
//! (UDP/TCP pinger and responder), `hog` (memory/CPU hog), `hello` (the seed's HelloWorld lines), `store` (a record store on disk for the disk-full
//! example), `web` and `client` (an HTTP service and a client with retries and a circuit
//! breaker), `resolve` (name resolution check).

mod chatter;
mod cluster;
mod hello;
mod hog;
mod ping;
mod store;
mod util;
mod web;

const USAGE: &str =
    "usage: demo-node <chatter|cluster|ping|hog|hello|store|web|client|resolve|version> [--key value ...]
  (or MODE=<mode>); settings come from flags or environment variables, see docs/demo-node.md";

fn main() {
    util::install_signal_handlers();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = match args.first() {
        Some(a) if !a.starts_with("--") => (a.clone(), args[1..].to_vec()),
        _ => match std::env::var("MODE") {
            Ok(m) if !m.is_empty() => (m, args.clone()),
            _ => {
                util::err(USAGE);
                std::process::exit(64);
            }
        },
    };
    let cfg = match util::Config::from_args(&rest) {
        Ok(c) => c,
        Err(e) => {
            util::err(&format!("demo-node: {e}\n{USAGE}"));
            std::process::exit(64);
        }
    };
    let code = match run(&mode, &cfg) {
        Ok(code) => code,
        Err(e) => {
            util::err(&format!("demo-node {mode}: {e}"));
            64
        }
    };
    std::process::exit(code);
}

fn run(mode: &str, cfg: &util::Config) -> Result<i32, String> {
    match mode {
        "chatter" => Ok(chatter::run(chatter::Chatter::from_config(cfg)?)),
        "cluster" => cluster::run(cfg),
        "ping" => ping::run(cfg),
        "hog" => hog::run(cfg),
        "hello" => hello::run(cfg),
        "store" => store::run(cfg),
        "web" => web::run_web(cfg),
        "client" => web::run_client(cfg),
        "resolve" => {
            let host = cfg.get("HOST").ok_or("resolve needs --host NAME")?;
            match util::resolve_host(&host) {
                Ok(ip) => {
                    util::out(&format!("resolve {host} {ip}"));
                    Ok(0)
                }
                Err(e) => {
                    util::out(&format!("resolve {host} error={e}"));
                    Ok(1)
                }
            }
        }
        "version" | "--version" => {
            util::out(concat!("demo-node ", env!("CARGO_PKG_VERSION")));
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            util::out(USAGE);
            Ok(0)
        }
        other => Err(format!("unknown mode `{other}`\n{USAGE}")),
    }
}
