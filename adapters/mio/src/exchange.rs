//! A stream exchange on a non-blocking mio socket: connect, TLS by hand with rustls when
//! asked, write the request, pass on what comes back until the peer closes.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use muster_core::{Exchange, Failure, FailureKind, OwnedAnswer};
use rustls::ClientConnection;

/// What an exchange came to after it was advanced.
pub(crate) enum Step {
    /// Waiting for the socket.
    Pending,
    /// Finished: the last answer to give (`Closed` or `Failed`).
    Done(OwnedAnswer),
}

pub(crate) struct Stream {
    pub(crate) socket: TcpStream,
    tls: Option<(ClientConnection, String)>,
    /// The request; for TLS it is handed to rustls at once, which holds it until the
    /// handshake is done.
    send: bytes::Bytes,
    written: usize,
    connected: bool,
    received: usize,
    max_reply: usize,
    to: String,
}

impl Stream {
    /// Starts connecting to `addr` for `x`.
    pub(crate) fn start(addr: SocketAddr, x: &Exchange) -> Result<Stream, Failure> {
        let to = x.to.to_string();
        let socket = TcpStream::connect(addr).map_err(|e| Failure::io(&to, &e))?;
        let mut send = x.send.clone();
        let tls = match &x.tls {
            None => None,
            Some(tls) => {
                let (config, name) = muster_net::tls::client_config(tls)
                    .map_err(|e| Failure::new(FailureKind::Tls, format!("{to}: {e}")))?;
                let mut conn = ClientConnection::new(config, name).map_err(|e| {
                    let why = format!("{to}: TLS with {:?}: {e}", tls.server_name);
                    Failure::new(FailureKind::Tls, why)
                })?;
                conn.writer()
                    .write_all(&send)
                    .map_err(|e| Failure::io(&to, &e))?;
                send = bytes::Bytes::new();
                Some((conn, tls.server_name.clone()))
            }
        };
        Ok(Stream {
            socket,
            tls,
            send,
            written: 0,
            connected: false,
            received: 0,
            max_reply: x.max_reply,
            to,
        })
    }

    fn fail(&self, kind: FailureKind, e: impl std::fmt::Display) -> Step {
        Step::Done(OwnedAnswer::Failed(Failure::new(
            kind,
            format!("{}: {e}", self.to),
        )))
    }

    fn fail_io(&self, e: &io::Error) -> Step {
        Step::Done(OwnedAnswer::Failed(Failure::io(&self.to, e)))
    }

    /// Does everything the socket allows now; pushes the data that came into `out`.
    pub(crate) fn advance(&mut self, out: &mut Vec<OwnedAnswer>) -> Step {
        if !self.connected {
            match connected(&self.socket) {
                Ok(None) => return Step::Pending,
                Ok(Some(_)) => self.connected = true,
                Err(e) => return self.fail_io(&e),
            }
        }
        if self.tls.is_some() {
            self.advance_tls(out)
        } else {
            self.advance_plain(out)
        }
    }

    fn advance_plain(&mut self, out: &mut Vec<OwnedAnswer>) -> Step {
        while self.written < self.send.len() {
            match self.socket.write(&self.send[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_io(&e),
            }
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.socket.read(&mut buf) {
                Ok(0) => return Step::Done(OwnedAnswer::Closed),
                Ok(n) => {
                    if let Some(step) = self.deliver(&buf[..n], out) {
                        return step;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_io(&e),
            }
        }
    }

    /// Counts and passes on `data`; a step when the reply is too large.
    fn deliver(&mut self, data: &[u8], out: &mut Vec<OwnedAnswer>) -> Option<Step> {
        self.received += data.len();
        if self.received > self.max_reply {
            return Some(self.fail(
                FailureKind::TooLarge,
                format_args!("reply larger than {} bytes", self.max_reply),
            ));
        }
        out.push(OwnedAnswer::Data(data.to_vec()));
        None
    }

    fn advance_tls(&mut self, out: &mut Vec<OwnedAnswer>) -> Step {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let Some((conn, name)) = self.tls.as_mut() else {
                return Step::Pending;
            };
            let mut progress = false;
            while conn.wants_write() {
                match conn.write_tls(&mut self.socket) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.fail_io(&e),
                }
            }
            let mut eof = false;
            if conn.wants_read() {
                match conn.read_tls(&mut self.socket) {
                    Ok(0) => eof = true,
                    Ok(_) => {
                        progress = true;
                        if let Err(e) = conn.process_new_packets() {
                            // Tell the server why, then stop.
                            let _ = conn.write_tls(&mut self.socket);
                            let why = format!("TLS with {name:?}: {e}");
                            return self.fail(FailureKind::Tls, why);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return self.fail_io(&e),
                }
            }
            while let Some((conn, _)) = self.tls.as_mut() {
                match conn.reader().read(&mut buf) {
                    Ok(0) => return Step::Done(OwnedAnswer::Closed),
                    Ok(n) => {
                        progress = true;
                        if let Some(step) = self.deliver(&buf[..n], out) {
                            return step;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A peer that closes without close_notify: the core's framing decides
                    // whether what came is whole.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Step::Done(OwnedAnswer::Closed);
                    }
                    Err(e) => return self.fail_io(&e),
                }
            }
            if eof {
                return Step::Done(OwnedAnswer::Closed);
            }
            if !progress {
                return Step::Pending;
            }
        }
    }
}

/// Whether a non-blocking connect has finished: the peer's address once it has, `None`
/// while it is under way (as mio documents: `take_error`, then `peer_addr`).
pub(crate) fn connected(socket: &TcpStream) -> io::Result<Option<SocketAddr>> {
    if let Some(e) = socket.take_error()? {
        return Err(e);
    }
    match socket.peer_addr() {
        Ok(peer) => {
            let _ = socket.set_nodelay(true);
            Ok(Some(peer))
        }
        Err(e)
            if e.kind() == io::ErrorKind::NotConnected || e.raw_os_error() == Some(EINPROGRESS) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What `peer_addr` may say while a non-blocking connect is under way, besides
/// `NotConnected` (mio's documentation names both; `ErrorKind::InProgress` is not stable).
#[cfg(target_os = "linux")]
const EINPROGRESS: i32 = 115;
#[cfg(not(target_os = "linux"))]
const EINPROGRESS: i32 = 36;
