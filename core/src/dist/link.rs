//! One Erlang distribution connection as a state machine: the cookie handshake, as initiator
//! or acceptor, then ticks and the control messages a peer expects answered.
//!
//! The adapter owns the TCP stream. It feeds every received byte to
//! [`handle_data`](Link::handle_data), writes whatever [`poll_transmit`](Link::poll_transmit)
//! gives, calls [`handle_timeout`](Link::handle_timeout) at
//! [`poll_timeout`](Link::poll_timeout), and acts on [`poll_event`](Link::poll_event):
//! `Hello` (an acceptor asks who may connect), `Up`, and the final `Down`, after which it
//! closes the stream.

use core::time::Duration;
use std::collections::VecDeque;

use crate::node::NodeName;
use crate::proto::dist::{self, Challenge, flags};
use crate::proto::term::{Pid, Term};
use crate::reason::{Failure, FailureKind};
use crate::rng::Rng;
use crate::time::{Instant, earliest};

/// The largest frame accepted once connected; a peer that sends more is disconnected.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// What every link of a node shares.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LinkConfig {
    /// This node's full name.
    pub name: NodeName,
    /// The cookie both sides must know.
    pub cookie: String,
    /// This node's incarnation (from EPMD's registration, or random).
    pub creation: u32,
    /// Hidden nodes stay out of the peer's `nodes()` and global name registration.
    pub hidden: bool,
    /// Erlang's `net_ticktime`: ticks go out every quarter of it, and a peer silent for
    /// longer than it is down.
    pub tick_time: Duration,
    /// Erlang's `net_setuptime`: the longest a handshake may take.
    pub handshake_timeout: Duration,
}

impl LinkConfig {
    /// A hidden node with Erlang's defaults: 60 s tick time, 7 s setup time.
    pub fn new(name: NodeName, cookie: impl Into<String>, creation: u32) -> Self {
        LinkConfig {
            name,
            cookie: cookie.into(),
            creation,
            hidden: true,
            tick_time: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(7),
        }
    }
}

/// The acceptor's answer to a node that wants to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Continue.
    Ok,
    /// Continue; we drop our own attempt to connect to it.
    OkSimultaneous,
    /// Refuse: our own attempt to connect to it wins.
    Nok,
    /// Refuse.
    NotAllowed,
    /// We have a connection to it already; it may say the old one is gone.
    Alive,
}

impl Admission {
    fn text(self) -> &'static str {
        match self {
            Admission::Ok => "ok",
            Admission::OkSimultaneous => "ok_simultaneous",
            Admission::Nok => "nok",
            Admission::NotAllowed => "not_allowed",
            Admission::Alive => "alive",
        }
    }
}

/// What happened on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkEvent {
    /// (Acceptor) `peer` wants to connect: answer with [`Link::admit`].
    Hello {
        /// The node.
        peer: NodeName,
    },
    /// (Initiator) The peer holds a connection to us it believes alive: answer with
    /// [`Link::answer_alive`] — `true` to replace it (we hold no link to the peer), `false`
    /// to keep it (this link then ends, the peer's stays), as OTP's `dist_util` does.
    Alive {
        /// The node.
        peer: NodeName,
    },
    /// The handshake succeeded.
    Up {
        /// The node at the other end.
        peer: NodeName,
        /// Its capability flags.
        flags: u64,
    },
    /// The link is over; close the stream. Always the last event.
    Down {
        /// Why.
        reason: Failure,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    // Initiator.
    AwaitStatus,
    AwaitAliveDecision,
    AwaitChallenge,
    AwaitAck { ours: u32 },
    // Acceptor.
    AwaitName,
    AwaitAdmission { old: bool },
    AwaitAliveAnswer { old: bool },
    AwaitComplement { ours: u32 },
    AwaitReply { ours: u32 },
    // Both.
    Up,
    Closed,
}

/// One distribution connection; see the module documentation.
#[derive(Debug)]
pub struct Link {
    cfg: LinkConfig,
    phase: Phase,
    /// The peer: known from the start for an initiator, from its name for an acceptor.
    peer: Option<NodeName>,
    peer_flags: u64,
    inbuf: Vec<u8>,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<LinkEvent>,
    deadline: Option<Instant>,
    last_recv: Instant,
    next_tick: Option<Instant>,
    challenge: u32,
    lost_race: bool,
    /// (Acceptor) Told of its connection to us that we believed alive, the peer kept it.
    kept_old: bool,
}

impl Link {
    fn new(
        cfg: LinkConfig,
        now: Instant,
        phase: Phase,
        peer: Option<NodeName>,
        rng: &mut Rng,
    ) -> Link {
        let deadline = Some(now + cfg.handshake_timeout);
        Link {
            cfg,
            phase,
            peer,
            peer_flags: 0,
            inbuf: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            deadline,
            last_recv: now,
            next_tick: None,
            challenge: rng.next_u64() as u32,
            lost_race: false,
            kept_old: false,
        }
    }

    /// A link we open to `peer`: the name message is ready to send.
    pub fn connect(cfg: LinkConfig, peer: NodeName, now: Instant, rng: &mut Rng) -> Link {
        let mut l = Link::new(cfg, now, Phase::AwaitStatus, Some(peer), rng);
        let name = dist::write_name(
            flags::ours(l.cfg.hidden),
            l.cfg.creation,
            l.cfg.name.as_str(),
        );
        l.out.push_back(name);
        l
    }

    /// A link someone opened to us.
    pub fn accept(cfg: LinkConfig, now: Instant, rng: &mut Rng) -> Link {
        Link::new(cfg, now, Phase::AwaitName, None, rng)
    }

    /// The node at the other end, once known.
    pub fn peer(&self) -> Option<&NodeName> {
        self.peer.as_ref()
    }

    /// Whether the handshake is done and the link is up.
    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// (Initiator) Whether the peer refused because its own, simultaneous connection to us
    /// wins: that connection, not this one, will come up.
    pub fn lost_race(&self) -> bool {
        self.lost_race
    }

    /// (Acceptor) Whether the peer, told we hold a connection to it, kept that one: this link
    /// ended as it should, and is no failure.
    pub fn peer_kept_its_link(&self) -> bool {
        self.kept_old
    }

    /// Whether the link is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    fn down(&mut self, reason: Failure) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.deadline = None;
        self.next_tick = None;
        self.events.push_back(LinkEvent::Down { reason });
    }

    /// Ends the link (the application disconnects it, or its stream failed).
    pub fn close(&mut self, reason: impl Into<Failure>) {
        self.down(reason.into());
    }

    /// The peer closed the stream: the reason says what that means at this point of the
    /// handshake (an Erlang acceptor closes without a word on a wrong cookie).
    pub fn peer_closed(&mut self) {
        let peer = self.peer_text();
        let why = match self.phase {
            Phase::AwaitAck { .. } => Failure::new(
                FailureKind::Rejected,
                format!(
                    "{peer} closed the connection after our challenge reply: it has another cookie"
                ),
            ),
            Phase::Up => Failure::new(FailureKind::Closed, format!("{peer} closed the connection")),
            _ => Failure::new(
                FailureKind::Closed,
                format!("{peer} closed the connection during the handshake"),
            ),
        };
        self.down(why);
    }

    fn peer_text(&self) -> String {
        self.peer
            .as_ref()
            .map_or_else(|| "the peer".to_owned(), |p| p.to_string())
    }

    /// (Acceptor) answers a [`LinkEvent::Hello`].
    pub fn admit(&mut self, now: Instant, answer: Admission) {
        let Phase::AwaitAdmission { old } = self.phase else {
            return;
        };
        self.out.push_back(dist::write_status(answer.text()));
        match answer {
            Admission::Ok | Admission::OkSimultaneous => self.send_challenge(old),
            Admission::Alive => self.phase = Phase::AwaitAliveAnswer { old },
            Admission::Nok => self.down(Failure::new(
                FailureKind::Rejected,
                format!(
                    "refused {}: a simultaneous connect of ours wins",
                    self.peer_text()
                ),
            )),
            Admission::NotAllowed => self.down(Failure::new(
                FailureKind::Rejected,
                format!("refused {}: not allowed", self.peer_text()),
            )),
        }
        let _ = now;
    }

    /// (Initiator) Answers a [`LinkEvent::Alive`]: `replace` tells the peer to drop the
    /// connection it holds and take this one; otherwise this link ends and the peer's stays
    /// ([`lost_race`](Link::lost_race) then says so).
    pub fn answer_alive(&mut self, replace: bool) {
        if self.phase != Phase::AwaitAliveDecision {
            return;
        }
        if replace {
            self.out.push_back(dist::write_status("true"));
            self.phase = Phase::AwaitChallenge;
        } else {
            self.out.push_back(dist::write_status("false"));
            self.lost_race = true;
            let why = format!("{} is connected to us already", self.peer_text());
            self.down(Failure::new(FailureKind::Rejected, why));
        }
    }

    fn send_challenge(&mut self, old: bool) {
        let c = Challenge {
            flags: flags::ours(self.cfg.hidden),
            challenge: self.challenge,
            creation: self.cfg.creation,
            name: self.cfg.name.to_string(),
        };
        if old {
            self.out.push_back(dist::write_old_challenge(&c));
            // A node that sent the old name has the new handshake too (it must set
            // HANDSHAKE_23) and sends its complement next.
            self.phase = Phase::AwaitComplement {
                ours: self.challenge,
            };
        } else {
            self.out.push_back(dist::write_challenge(&c));
            self.phase = Phase::AwaitReply {
                ours: self.challenge,
            };
        }
    }

    fn up(&mut self, now: Instant) {
        self.phase = Phase::Up;
        self.deadline = None;
        self.last_recv = now;
        self.next_tick = Some(now + self.cfg.tick_time / 4);
        if let Some(peer) = self.peer.clone() {
            self.events.push_back(LinkEvent::Up {
                peer,
                flags: self.peer_flags,
            });
        }
    }

    /// Feeds bytes received from the stream.
    pub fn handle_data(&mut self, now: Instant, data: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.last_recv = now;
        self.inbuf.extend_from_slice(data);
        loop {
            let prefix = if self.phase == Phase::Up { 4 } else { 2 };
            if self.phase == Phase::Up && self.inbuf.len() >= 4 {
                let len = u32::from_be_bytes([
                    self.inbuf[0],
                    self.inbuf[1],
                    self.inbuf[2],
                    self.inbuf[3],
                ]) as usize;
                if len > MAX_FRAME {
                    return self.down(Failure::new(
                        FailureKind::TooLarge,
                        format!(
                            "{} sent a frame of {len} bytes, more than {MAX_FRAME}",
                            self.peer_text()
                        ),
                    ));
                }
            }
            let Some((frame, used)) = dist::split_frame(&self.inbuf, prefix) else {
                return;
            };
            let frame = frame.to_vec();
            self.inbuf.drain(..used);
            if self.inbuf.is_empty() && self.inbuf.capacity() > 4096 {
                // A large frame passed: give its room back.
                self.inbuf = Vec::new();
            }
            self.handle_frame(now, &frame);
            if self.phase == Phase::Closed {
                self.inbuf.clear();
                return;
            }
        }
    }

    fn bad(&mut self, what: impl core::fmt::Display) {
        let why = format!("handshake with {} failed: {what}", self.peer_text());
        self.down(Failure::new(FailureKind::Protocol, why));
    }

    fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        match self.phase.clone() {
            Phase::AwaitStatus => match dist::read_status(frame) {
                Ok(s) => match s.as_str() {
                    "ok" | "ok_simultaneous" => self.phase = Phase::AwaitChallenge,
                    "alive" => {
                        // Whether what it holds is stale is its owner's to say: only if no
                        // link of ours to it is up.
                        self.phase = Phase::AwaitAliveDecision;
                        if let Some(peer) = self.peer.clone() {
                            self.events.push_back(LinkEvent::Alive { peer });
                        }
                    }
                    "nok" => {
                        self.lost_race = true;
                        let why =
                            format!("{} is connecting to us at the same time", self.peer_text());
                        self.down(Failure::new(FailureKind::Rejected, why));
                    }
                    "not_allowed" => {
                        let why = format!("{} does not allow us to connect", self.peer_text());
                        self.down(Failure::new(FailureKind::Rejected, why))
                    }
                    other => self.bad(format!("status {other:?}")),
                },
                Err(e) => self.bad(e),
            },
            Phase::AwaitChallenge => match dist::read_challenge(frame) {
                Ok(c) => {
                    if self.peer.as_ref().is_some_and(|p| p.as_str() != c.name) {
                        return self.bad(format!("it calls itself {:?}", c.name));
                    }
                    if c.flags & flags::MANDATORY != flags::MANDATORY {
                        return self.bad("it lacks capabilities OTP 25 requires");
                    }
                    self.peer_flags = c.flags;
                    let digest = dist::digest(c.challenge, &self.cfg.cookie);
                    self.out
                        .push_back(dist::write_reply(self.challenge, &digest));
                    self.phase = Phase::AwaitAck {
                        ours: self.challenge,
                    };
                }
                Err(e) => self.bad(e),
            },
            Phase::AwaitAck { ours } => match dist::read_ack(frame) {
                Ok(d) if dist::digest_eq(&d, &dist::digest(ours, &self.cfg.cookie)) => self.up(now),
                Ok(_) => {
                    let why = format!("{} answered with another cookie", self.peer_text());
                    self.down(Failure::new(FailureKind::Rejected, why));
                }
                Err(e) => self.bad(e),
            },
            Phase::AwaitName => match dist::read_name(frame) {
                Ok(n) => {
                    let peer = match NodeName::new(&n.name) {
                        Ok(p) => p,
                        Err(e) => return self.bad(format!("its name {:?}: {e}", n.name)),
                    };
                    if n.flags & flags::HANDSHAKE_23 == 0 {
                        return self
                            .bad("it does not speak distribution version 6 (OTP 23 or later)");
                    }
                    self.peer_flags = n.flags;
                    self.peer = Some(peer.clone());
                    self.phase = Phase::AwaitAdmission { old: n.old };
                    self.events.push_back(LinkEvent::Hello { peer });
                }
                Err(e) => self.bad(e),
            },
            Phase::AwaitAliveAnswer { old } => match dist::read_status(frame) {
                Ok(s) if s == "true" => self.send_challenge(old),
                Ok(_) => {
                    self.kept_old = true;
                    let why = format!("{} kept its old connection", self.peer_text());
                    self.down(Failure::new(FailureKind::Rejected, why))
                }
                Err(e) => self.bad(e),
            },
            Phase::AwaitComplement { ours } => match dist::read_complement(frame) {
                Ok((high, _creation)) => {
                    self.peer_flags |= high;
                    self.phase = Phase::AwaitReply { ours };
                }
                Err(e) => self.bad(e),
            },
            Phase::AwaitReply { ours } => match dist::read_reply(frame) {
                Ok((theirs, digest)) => {
                    if !dist::digest_eq(&digest, &dist::digest(ours, &self.cfg.cookie)) {
                        let why = format!("{} presented another cookie", self.peer_text());
                        return self.down(Failure::new(FailureKind::Rejected, why));
                    }
                    if self.peer_flags & flags::MANDATORY != flags::MANDATORY {
                        return self.bad("it lacks capabilities OTP 25 requires");
                    }
                    self.out
                        .push_back(dist::write_ack(&dist::digest(theirs, &self.cfg.cookie)));
                    self.up(now);
                }
                Err(e) => self.bad(e),
            },
            Phase::AwaitAdmission { .. } | Phase::AwaitAliveDecision => {
                self.bad("it spoke before we answered")
            }
            Phase::Up => self.handle_message(frame),
            Phase::Closed => {}
        }
    }

    fn our_pid(&self) -> Term {
        Term::Pid(Pid {
            node: self.cfg.name.to_string(),
            id: 0,
            serial: 0,
            creation: self.cfg.creation,
        })
    }

    fn send_frame(&mut self, parts: &[&Term]) {
        let mut body = vec![112u8];
        for t in parts {
            body.extend_from_slice(&t.encode());
        }
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.out.push_back(frame);
    }

    /// A message on an up link: a tick, or a pass-through control message. Only what a
    /// hidden node must answer is answered: `net_kernel`'s `is_auth` call (what
    /// `net_adm:ping` sends), so that pinging this node returns `pong`.
    fn handle_message(&mut self, frame: &[u8]) {
        if frame.is_empty() || frame[0] != 112 {
            // A tick, or a format we did not negotiate: ignored either way.
            return;
        }
        let mut r = crate::proto::etf::Reader::new(&frame[1..]);
        let Ok(control) = r.u8().and_then(|_| Term::read(&mut r)) else {
            return;
        };
        let message = r.u8().and_then(|_| Term::read(&mut r)).ok();
        let Some(ctl) = control.as_tuple() else {
            return;
        };
        // REG_SEND: {6, FromPid, Unused, ToName}
        let to_net_kernel = matches!(ctl, [Term::Int(6), _, _, Term::Atom(n)] if n == "net_kernel");
        if !to_net_kernel {
            return;
        }
        let Some(Term::Tuple(call)) = message else {
            return;
        };
        let [
            Term::Atom(gen_call),
            Term::Tuple(from),
            Term::Tuple(request),
        ] = call.as_slice()
        else {
            return;
        };
        if gen_call != "$gen_call" || request.first().and_then(Term::as_atom) != Some("is_auth") {
            return;
        }
        let [from_pid, tag] = from.as_slice() else {
            return;
        };
        let reply = Term::Tuple(vec![tag.clone(), Term::atom("yes")]);
        let me = self.our_pid();
        match tag {
            // OTP 24+: [alias | Ref], answered to the alias.
            Term::List(head, alias) if head.first().and_then(Term::as_atom) == Some("alias") => {
                let ctl = Term::Tuple(vec![Term::Int(33), me, (**alias).clone()]);
                self.send_frame(&[&ctl, &reply]);
            }
            // Older: answered to the calling process.
            _ => {
                let ctl = Term::Tuple(vec![Term::Int(2), Term::atom(""), from_pid.clone()]);
                self.send_frame(&[&ctl, &reply]);
            }
        }
    }

    /// Runs what is due: the handshake deadline, ticks, the silence check.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            let why = format!("handshake with {} timed out", self.peer_text());
            return self.down(Failure::timed_out(why));
        }
        if self.phase != Phase::Up {
            return;
        }
        if now.saturating_duration_since(self.last_recv) > self.cfg.tick_time {
            let why = format!(
                "{} sent nothing for {} s (net_ticktime)",
                self.peer_text(),
                self.cfg.tick_time.as_secs()
            );
            return self.down(Failure::timed_out(why));
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            self.out.push_back(vec![0, 0, 0, 0]);
            self.next_tick = Some(now + self.cfg.tick_time / 4);
        }
    }

    /// The next bytes to write to the stream.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Link::handle_timeout) is next needed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let silence = (self.phase == Phase::Up)
            .then(|| self.last_recv + self.cfg.tick_time + Duration::from_millis(1));
        earliest(earliest(self.deadline, self.next_tick), silence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, cookie: &str) -> LinkConfig {
        LinkConfig::new(name.parse().unwrap(), cookie, 7)
    }

    /// Moves bytes between two links until neither has anything to say.
    fn pump(a: &mut Link, b: &mut Link, now: Instant) {
        loop {
            let mut moved = false;
            while let Some(x) = a.poll_transmit() {
                b.handle_data(now, &x);
                moved = true;
            }
            while let Some(x) = b.poll_transmit() {
                a.handle_data(now, &x);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn events(l: &mut Link) -> Vec<LinkEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    #[test]
    fn two_links_with_one_cookie_come_up_and_tick() {
        let mut rng = Rng::from_seed([1; 32]);
        let t = Instant::ZERO;
        let mut a = Link::connect(cfg("a@h", "c"), "b@h".parse().unwrap(), t, &mut rng);
        let mut b = Link::accept(cfg("b@h", "c"), t, &mut rng);
        pump(&mut a, &mut b, t);
        assert_eq!(
            events(&mut b),
            vec![LinkEvent::Hello {
                peer: "a@h".parse().unwrap()
            }]
        );
        b.admit(t, Admission::Ok);
        pump(&mut a, &mut b, t);
        assert!(a.is_up() && b.is_up());
        assert!(matches!(events(&mut a)[..], [LinkEvent::Up { .. }]));
        // Ticks keep both alive past twice the tick time.
        let mut now = t;
        for _ in 0..40 {
            now += Duration::from_secs(5);
            a.handle_timeout(now);
            b.handle_timeout(now);
            pump(&mut a, &mut b, now);
        }
        assert!(a.is_up() && b.is_up(), "{:?}", events(&mut a));
    }

    #[test]
    fn a_wrong_cookie_is_refused_both_ways() {
        let mut rng = Rng::from_seed([2; 32]);
        let t = Instant::ZERO;
        let mut a = Link::connect(cfg("a@h", "right"), "b@h".parse().unwrap(), t, &mut rng);
        let mut b = Link::accept(cfg("b@h", "wrong"), t, &mut rng);
        pump(&mut a, &mut b, t);
        b.admit(t, Admission::Ok);
        pump(&mut a, &mut b, t);
        assert!(!a.is_up() && !b.is_up());
        let down = events(&mut b);
        assert!(
            matches!(&down[..], [LinkEvent::Hello { .. }, LinkEvent::Down { reason }] if reason.text().contains("a@h presented another cookie")),
            "{down:?}"
        );
        // The initiator hears nothing more: its deadline reports it.
        a.handle_timeout(t + Duration::from_secs(8));
        assert!(
            matches!(&events(&mut a)[..], [LinkEvent::Down { reason }] if reason.text().contains("timed out"))
        );
    }

    #[test]
    fn a_silent_peer_is_down_after_the_tick_time() {
        let mut rng = Rng::from_seed([3; 32]);
        let t = Instant::ZERO;
        let mut a = Link::connect(cfg("a@h", "c"), "b@h".parse().unwrap(), t, &mut rng);
        let mut b = Link::accept(cfg("b@h", "c"), t, &mut rng);
        pump(&mut a, &mut b, t);
        b.admit(t, Admission::Ok);
        pump(&mut a, &mut b, t);
        events(&mut a);
        let at = a.poll_timeout().unwrap();
        let mut now = at;
        while !a.is_closed() {
            a.handle_timeout(now);
            while a.poll_transmit().is_some() {}
            now = a.poll_timeout().unwrap_or(now + Duration::from_secs(1));
        }
        let ev = events(&mut a);
        assert!(
            matches!(&ev[..], [LinkEvent::Down { reason }] if reason.text().contains("net_ticktime")),
            "{ev:?}"
        );
        assert!(now.saturating_duration_since(t) >= Duration::from_secs(60));
    }

    #[test]
    fn garbage_never_panics_and_ends_the_link() {
        let mut rng = Rng::from_seed([4; 32]);
        let mut b = Link::accept(cfg("b@h", "c"), Instant::ZERO, &mut rng);
        b.handle_data(Instant::ZERO, &[0, 3, b'x', 1, 2]);
        assert!(b.is_closed());
        let mut a = Link::connect(
            cfg("a@h", "c"),
            "b@h".parse().unwrap(),
            Instant::ZERO,
            &mut rng,
        );
        a.handle_data(Instant::ZERO, &[0, 3, b's', b'n', b'o']);
        assert!(a.is_closed());
    }
}
