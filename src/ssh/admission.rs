//! Which connections the gateway lets in before they have logged in.
//!
//! A connection counts as unauthenticated from `accept` until a key is
//! accepted. Such connections are bounded per source address
//! ([`Limits::per_source`]; IPv6 by /64) and overall ([`Startups`], as
//! OpenSSH's `MaxStartups start:rate:full`), and every one is closed when its
//! login grace time is up.
//!
//! Unlike sshd, the gateway does not only refuse new connections when the
//! table is full: it closes stalled ones to make room, so that a flood which
//! holds connections open cannot keep a good client out.
//!
//! - A source at its share: its newest connection replaces the one of its own
//!   that has made the least progress (fewest bytes received, then oldest). A
//!   client that is logging in has sent its key exchange and is past a
//!   banner-and-stall connection, so a flood from an address crowds out only
//!   itself, never the login from that address that is under way.
//! - Overall at `full`: the new connection replaces the least advanced one of
//!   the source holding the most, if that holds more than the newcomer's
//!   source would; otherwise it is refused.
//! - Between `start` and `full`, a source that already has a connection
//!   logging in gets its next one refused with a probability rising linearly
//!   from `rate` % to 100 % (random early drop). A source with none is never
//!   refused on a coin toss while there is room.
//!
//! Refusals and closings are audited once per source and kind per
//! [`AUDIT_WINDOW`], with a count of the ones not logged, so that a flood
//! cannot flood the journal.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Default login grace time.
pub const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// Default unauthenticated connections per source address.
pub const PER_SOURCE: usize = 10;
/// Default overall bound, as OpenSSH's `MaxStartups` default.
pub const STARTUPS: Startups = Startups {
    start: 10,
    rate: 30,
    full: 100,
};
/// At most one audit line per source and kind of refusal in this time.
pub const AUDIT_WINDOW: Duration = Duration::from_secs(60);
/// Sources remembered for audit rate limiting; beyond that they share one line.
const AUDIT_SOURCES: usize = 4096;

/// `start:rate:full`: random early drop of new unauthenticated connections
/// from `start` on, with probability `rate` % rising to 100 % at `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Startups {
    pub start: usize,
    pub rate: u8,
    pub full: usize,
}

impl FromStr for Startups {
    type Err = String;

    /// `START:RATE:FULL`, or `N` for a hard bound of N (as sshd reads it).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected START:RATE:FULL (for example 10:30:100) or N");
        let num = |v: &str| v.parse::<usize>().map_err(|_| bad());
        let parts: Vec<&str> = s.split(':').collect();
        let startups = match parts[..] {
            [n] => {
                let n = num(n)?;
                Startups {
                    start: n,
                    rate: 100,
                    full: n,
                }
            }
            [start, rate, full] => Startups {
                start: num(start)?,
                rate: rate.parse::<u8>().map_err(|_| bad())?,
                full: num(full)?,
            },
            _ => return Err(bad()),
        };
        if startups.full == 0 || startups.start > startups.full || startups.rate > 100 {
            return Err(format!(
                "{s:?}: FULL must be at least 1 and at least START, RATE at most 100"
            ));
        }
        Ok(startups)
    }
}

impl std::fmt::Display for Startups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

/// The gateway's bounds on connections that have not logged in.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub login_grace: Duration,
    pub startups: Startups,
    pub per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            login_grace: LOGIN_GRACE,
            startups: STARTUPS,
            per_source: PER_SOURCE,
        }
    }
}

/// What the admission table needs of a connection: how far it got, and a
/// way to close its socket at once, whatever its task is doing.
pub trait Conn: Send + Sync {
    fn received(&self) -> u64;
    fn kill(&self);
}

/// A client address as the limits count it: IPv4 (or IPv4-mapped) by
/// address, IPv6 by /64, which one host usually has whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => Self(IpAddr::V6(Ipv6Addr::from(u128::from(a) & (!0u128 << 64)))),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Why a connection was refused or closed before it logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// Overall bound reached and no source holds more than this one.
    Full,
    /// Random early drop between `start` and `full`.
    EarlyDrop,
    /// Closed to make room for a newer connection from the same source.
    ReplacedBySameSource,
    /// Closed to make room for a connection from a source holding fewer.
    ReplacedByOtherSource,
    /// Login grace time up before the SSH handshake.
    NoHandshake,
    /// Login grace time up before a key was accepted.
    NotAuthenticated,
}

impl Event {
    fn message(self, limits: &Limits) -> String {
        match self {
            Event::Full => format!(
                "refused: {} connections are logging in already (the most allowed)",
                limits.startups.full
            ),
            Event::EarlyDrop => format!(
                "refused: many connections are logging in (random early drop, max startups {})",
                limits.startups
            ),
            Event::ReplacedBySameSource => format!(
                "dropped: not logged in, and a newer connection from the same address took its place ({} at most per address)",
                limits.per_source
            ),
            Event::ReplacedByOtherSource => format!(
                "dropped: not logged in, and this address held the most of the {} connections logging in; one from another address took its place",
                limits.startups.full
            ),
            Event::NoHandshake => "dropped: no SSH handshake in time".into(),
            Event::NotAuthenticated => "dropped: not authenticated in time".into(),
        }
    }
}

struct Entry {
    source: Source,
    conn: Arc<dyn Conn>,
}

/// The unauthenticated connections, by admission order (ids grow).
#[derive(Default)]
struct Table {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_source: HashMap<Source, usize>,
}

/// Admitted; `victim`, if any, was taken out of the table to make room and
/// must be killed.
struct Admitted {
    id: u64,
    victim: Option<(Source, Arc<dyn Conn>, Event)>,
}

impl Table {
    fn count(&self, source: Source) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// `coin` is uniform in 0..100.
    fn admit(
        &mut self,
        limits: &Limits,
        source: Source,
        coin: u8,
        conn: Arc<dyn Conn>,
    ) -> Result<Admitted, Event> {
        let here = self.count(source);
        let total = self.entries.len();
        let s = limits.startups;
        let victim = if here >= limits.per_source.max(1) {
            self.least_advanced(source)
                .map(|v| (v, Event::ReplacedBySameSource))
        } else if total >= s.full {
            let largest = self
                .per_source
                .iter()
                .max_by_key(|&(_, n)| *n)
                .map(|(src, n)| (*src, *n));
            match largest {
                Some((big, n)) if n > here + 1 => self
                    .least_advanced(big)
                    .map(|v| (v, Event::ReplacedByOtherSource)),
                _ => return Err(Event::Full),
            }
        } else {
            if here > 0 && total >= s.start {
                let span = (s.full - s.start).max(1);
                let p = usize::from(s.rate) + (100 - usize::from(s.rate)) * (total - s.start) / span;
                if usize::from(coin) < p {
                    return Err(Event::EarlyDrop);
                }
            }
            None
        };
        let victim = victim.and_then(|(id, event)| {
            let e = self.remove(id)?;
            Some((e.source, e.conn, event))
        });
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, Entry { source, conn });
        *self.per_source.entry(source).or_insert(0) += 1;
        Ok(Admitted { id, victim })
    }

    /// The connection of `source` that got the fewest bytes in, the oldest
    /// of those.
    fn least_advanced(&self, source: Source) -> Option<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| e.source == source)
            .min_by_key(|&(id, e)| (e.conn.received(), *id))
            .map(|(id, _)| *id)
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        if let Some(n) = self.per_source.get_mut(&e.source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&e.source);
            }
        }
        Some(e)
    }
}

/// One audit line per (event, source) and window; the rest are counted.
#[derive(Default)]
struct Quiet {
    last: HashMap<(Event, Option<Source>), (Instant, u64)>,
}

impl Quiet {
    /// `Some(n)`: log now, `n` like it were not logged since the last line.
    fn note(&mut self, event: Event, source: Source, now: Instant) -> Option<u64> {
        if self.last.len() >= AUDIT_SOURCES {
            self.last
                .retain(|_, (at, _)| now.duration_since(*at) < AUDIT_WINDOW);
        }
        // Too many sources at once: the others share one line.
        let key = if self.last.len() < AUDIT_SOURCES || self.last.contains_key(&(event, Some(source))) {
            (event, Some(source))
        } else {
            (event, None)
        };
        match self.last.get_mut(&key) {
            Some((at, skipped)) if now.duration_since(*at) < AUDIT_WINDOW => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                let n = *skipped;
                *at = now;
                *skipped = 0;
                Some(n)
            }
            None => {
                self.last.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The gateway's admission of connections that have not logged in.
pub struct Admission {
    limits: Limits,
    table: Mutex<Table>,
    quiet: Mutex<Quiet>,
    random: std::collections::hash_map::RandomState,
    draws: AtomicU64,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            table: Mutex::default(),
            quiet: Mutex::default(),
            random: std::collections::hash_map::RandomState::new(),
            draws: AtomicU64::new(0),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Uniform enough in 0..100 for an early drop (SipHash of a counter
    /// under a random key).
    fn coin(&self) -> u8 {
        let mut h = self.random.build_hasher();
        h.write_u64(self.draws.fetch_add(1, Ordering::Relaxed));
        (h.finish() % 100) as u8
    }

    /// Let `conn` from `peer` in, closing another to make room if that is
    /// the policy; `None`: refused (audited), the caller drops the socket.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, conn: Arc<dyn Conn>) -> Option<Ticket> {
        let source = Source::of(peer);
        let coin = self.coin();
        let r = lock(&self.table).admit(&self.limits, source, coin, conn);
        match r {
            Ok(Admitted { id, victim }) => {
                if let Some((vsource, vconn, event)) = victim {
                    vconn.kill();
                    self.audit(event, vsource);
                }
                Some(Ticket {
                    admission: self.clone(),
                    id,
                })
            }
            Err(event) => {
                self.audit(event, source);
                None
            }
        }
    }

    /// Number of unauthenticated connections (for tests and diagnostics).
    pub fn unauthenticated(&self) -> usize {
        lock(&self.table).entries.len()
    }

    /// An audit line for `event` from `peer`, rate limited per source.
    pub fn audit_peer(&self, event: Event, peer: IpAddr) {
        self.audit(event, Source::of(peer));
    }

    fn audit(&self, event: Event, source: Source) {
        let Some(skipped) = lock(&self.quiet).note(event, source, Instant::now()) else {
            return;
        };
        let msg = event.message(&self.limits);
        if skipped == 0 {
            tracing::info!(target: "berth::audit", peer = %source, "{msg}");
        } else {
            tracing::info!(target: "berth::audit", peer = %source,
                "{msg} (and {skipped} more like it in the last {}s)", AUDIT_WINDOW.as_secs());
        }
    }
}

/// A connection's place among the unauthenticated ones; given back when
/// dropped (on login, or when the connection ends).
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.admission.table).remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[derive(Default)]
    struct Fake {
        received: AtomicU64,
        killed: AtomicBool,
    }

    impl Conn for Fake {
        fn received(&self) -> u64 {
            self.received.load(Ordering::SeqCst)
        }
        fn kill(&self) {
            self.killed.store(true, Ordering::SeqCst);
        }
    }

    fn ip(s: &str) -> Source {
        Source::of(s.parse().expect("ip"))
    }

    fn limits(per_source: usize, startups: &str) -> Limits {
        Limits {
            login_grace: LOGIN_GRACE,
            startups: startups.parse().expect("startups"),
            per_source,
        }
    }

    #[test]
    fn startups_parse() {
        assert_eq!("10:30:100".parse::<Startups>(), Ok(STARTUPS));
        assert_eq!(
            "5".parse::<Startups>(),
            Ok(Startups {
                start: 5,
                rate: 100,
                full: 5
            })
        );
        for bad in ["", "1:2", "a:1:2", "10:101:100", "20:30:10", "0", "1:2:3:4", "-1"] {
            assert!(bad.parse::<Startups>().is_err(), "{bad}");
        }
    }

    #[test]
    fn sources_group_ipv6_by_64() {
        assert_eq!(ip("2001:db8::1"), ip("2001:db8::ffff:1"));
        assert_ne!(ip("2001:db8::1"), ip("2001:db8:0:1::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(ip("2001:db8::1").to_string(), "2001:db8::/64");
    }

    #[test]
    fn a_source_at_its_share_replaces_its_least_advanced_connection() {
        let l = limits(3, "100:30:100");
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        let conns: Vec<Arc<Fake>> = (0..3).map(|_| Arc::new(Fake::default())).collect();
        for c in &conns {
            assert!(t.admit(&l, a, 0, c.clone()).expect("admit").victim.is_none());
        }
        // The first one is logging in (key exchange sent); the second is the
        // least advanced of the stalled ones by age.
        conns[0].received.store(1500, Ordering::SeqCst);
        conns[1].received.store(20, Ordering::SeqCst);
        conns[2].received.store(20, Ordering::SeqCst);
        let r = t.admit(&l, a, 0, Arc::new(Fake::default())).expect("admit");
        let (vs, victim, event) = r.victim.expect("victim");
        assert_eq!((vs, event), (a, Event::ReplacedBySameSource));
        victim.kill();
        assert!(conns[1].killed.load(Ordering::SeqCst));
        assert!(!conns[0].killed.load(Ordering::SeqCst));
        assert_eq!((t.count(a), t.entries.len()), (3, 3));
        // Another source is not affected.
        let b = ip("192.0.2.2");
        assert!(t.admit(&l, b, 0, Arc::new(Fake::default())).expect("admit").victim.is_none());
        assert_eq!(t.count(b), 1);
    }

    #[test]
    fn when_full_the_largest_source_makes_room() {
        let l = limits(10, "4:30:4");
        let mut t = Table::default();
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        for _ in 0..3 {
            t.admit(&l, a, 99, Arc::new(Fake::default())).expect("admit");
        }
        t.admit(&l, b, 99, Arc::new(Fake::default())).expect("admit");
        // Full: c gets in at a's expense.
        let r = t.admit(&l, c, 0, Arc::new(Fake::default())).expect("admit");
        let (vs, _, event) = r.victim.expect("victim");
        assert_eq!((vs, event), (a, Event::ReplacedByOtherSource));
        assert_eq!((t.count(a), t.count(b), t.count(c)), (2, 1, 1));
        // a now holds 2; b would hold 2 as well: refused, nothing closed.
        assert_eq!(
            t.admit(&l, b, 99, Arc::new(Fake::default())).err(),
            Some(Event::Full)
        );
        assert_eq!(t.entries.len(), 4);
    }

    #[test]
    fn early_drop_spares_a_source_with_none_logging_in() {
        let l = limits(100, "2:50:10");
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        t.admit(&l, a, 0, Arc::new(Fake::default())).expect("admit");
        t.admit(&l, a, 0, Arc::new(Fake::default())).expect("admit");
        // At start: p = 50 %.
        assert_eq!(
            t.admit(&l, a, 49, Arc::new(Fake::default())).err(),
            Some(Event::EarlyDrop)
        );
        t.admit(&l, a, 50, Arc::new(Fake::default())).expect("coin above p");
        // A new source is never refused on a coin toss while there is room.
        t.admit(&l, ip("192.0.2.9"), 0, Arc::new(Fake::default()))
            .expect("new source");
    }

    #[test]
    fn tickets_give_their_place_back() {
        let adm = Admission::new(limits(2, "10:30:100"));
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let t1 = adm.admit(peer, Arc::new(Fake::default())).expect("admit");
        let t2 = adm.admit(peer, Arc::new(Fake::default())).expect("admit");
        assert_eq!(adm.unauthenticated(), 2);
        // A third replaces the first; the first's ticket then finds nothing.
        let t3 = adm.admit(peer, Arc::new(Fake::default())).expect("admit");
        assert_eq!(adm.unauthenticated(), 2);
        drop(t1);
        assert_eq!(adm.unauthenticated(), 2);
        drop(t2);
        drop(t3);
        assert_eq!(adm.unauthenticated(), 0);
        assert!(lock(&adm.table).per_source.is_empty());
    }

    #[test]
    fn audit_lines_are_rate_limited_per_source() {
        let mut q = Quiet::default();
        let now = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(q.note(Event::Full, a, now), Some(0));
        for _ in 0..1000 {
            assert_eq!(q.note(Event::Full, a, now), None);
        }
        assert_eq!(q.note(Event::Full, b, now), Some(0));
        assert_eq!(q.note(Event::NoHandshake, a, now), Some(0));
        assert_eq!(q.note(Event::Full, a, now + AUDIT_WINDOW), Some(1000));
        // Many sources: bounded memory, the rest share one line.
        for i in 0..(AUDIT_SOURCES as u32 * 2) {
            let s = Source::of(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            q.note(Event::EarlyDrop, s, now);
        }
        assert!(q.last.len() <= AUDIT_SOURCES + 2);
    }
}
