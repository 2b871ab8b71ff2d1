//! Servers the recorder runs *inside* a container's network namespace (the `http` and `dns`
//! faults): one dedicated OS thread per fault and container joins the namespace with
//! `setns(CLONE_NEWNET)` and drives a single-threaded tokio runtime, so every socket its tasks
//! create (listeners and upstream connections alike) lives in that namespace. Also the socket
//! helpers those servers need: the fwmark that exempts their own upstream traffic from the
//! redirect rules, `SO_ORIGINAL_DST`, and a reset on close (`SO_LINGER` 0). Stopping the runtime
//! closes every socket; a killed recorder takes its servers with it (`recorder cleanup` then
//! removes the redirect rules that would otherwise point at nothing).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use tokio::sync::oneshot;

use super::FaultError;

/// The fwmark on every socket the proxies open towards the real destination; the redirect rules
/// match `! --mark PROXY_MARK`, so the proxies' own traffic is never redirected back to them.
pub const PROXY_MARK: u32 = 0x4354_4b31;

/// A tokio runtime on a thread inside one network namespace. Dropping it (or [`Self::stop`])
/// ends every task and closes every socket it owns.
#[derive(Debug)]
pub struct NetnsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NetnsRuntime {
    /// Starts the thread, joins the network namespace of `pid` and builds the runtime.
    pub fn start(pid: i64, label: &str) -> Result<NetnsRuntime, FaultError> {
        let path = format!("/proc/{pid}/ns/net");
        let ns = std::fs::File::open(&path).map_err(|e| FaultError::Command {
            command: format!("open {path}"),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("process {pid} is gone (the container stopped or restarted)")
            } else {
                e.to_string()
            },
        })?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{label}"))
            .spawn(move || {
                // SAFETY: setns on a descriptor this thread owns; it changes the network
                // namespace of this thread only (the recorder's other threads are unaffected).
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    let _ = ready_tx.send(Err(format!("setns into {path}: {e}")));
                    return;
                }
                drop(ns);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("runtime in the namespace: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                rt.shutdown_background();
            })
            .map_err(|e| FaultError::Failed(format!("starting the namespace thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(handle)) => Ok(NetnsRuntime {
                handle,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(m)) => {
                let _ = thread.join();
                Err(FaultError::Failed(m))
            }
            Err(_) => {
                let _ = thread.join();
                Err(FaultError::Failed(
                    "the namespace thread ended early".into(),
                ))
            }
        }
    }

    /// Runs `f` on the namespace's thread and returns its result (sockets it creates live in the
    /// namespace).
    pub async fn run<F, Fut, T>(&self, f: F) -> Result<T, FaultError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.handle.spawn(async move {
            let _ = tx.send(f().await);
        });
        rx.await
            .map_err(|_| FaultError::Failed("the namespace thread stopped".into()))
    }

    /// Spawns a task on the namespace's thread.
    pub fn spawn<Fut>(&self, fut: Fut)
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    /// Ends every task and closes every socket; waits for the thread.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NetnsRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets the proxies' fwmark on a socket (needs CAP_NET_ADMIN).
pub fn set_mark(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    let mark: libc::c_int = PROXY_MARK as libc::c_int;
    // SAFETY: setsockopt with a valid pointer to an int of the size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_MARK,
            &mark as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the next close of the socket send a reset instead of a FIN (`SO_LINGER` 0).
pub fn set_reset_on_close(fd: std::os::fd::RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid pointer to a linger struct of the size given.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// The destination a redirected TCP connection was addressed to before the `REDIRECT` rule
/// (`SO_ORIGINAL_DST`, IPv4).
pub fn original_dst(fd: std::os::fd::RawFd) -> std::io::Result<SocketAddr> {
    // SAFETY: getsockopt writes at most `len` bytes into a zeroed sockaddr_in.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    const SO_ORIGINAL_DST: libc::c_int = 80;
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            &mut addr as *mut libc::sockaddr_in as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ip = Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Ok(SocketAddr::V4(SocketAddrV4::new(
        ip,
        u16::from_be(addr.sin_port),
    )))
}

/// Connects a marked TCP socket to `addr` (the proxies' upstream connections).
pub async fn connect_marked(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    set_mark(s.as_raw_fd())?;
    s.connect(addr).await
}

/// A marked UDP socket bound to an ephemeral port (the DNS responder's forwarding socket).
pub async fn udp_marked() -> std::io::Result<tokio::net::UdpSocket> {
    let std_sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    std_sock.set_nonblocking(true)?;
    set_mark(std_sock.as_raw_fd())?;
    tokio::net::UdpSocket::from_std(std_sock)
}
