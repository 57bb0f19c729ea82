//! Which connections the gateway lets in before they have logged in.
//!
//! A connection counts as unauthenticated from `accept` until a key is
//! accepted. Such connections are bounded per source address
//! ([`Limits::per_source`]; IPv6 by /64) and overall ([`Startups`], as
//! OpenSSH's `MaxStartups start:rate:full`), and every one is closed when its
//! login grace time is up.
//!
//! Unlike sshd, the gateway neither refuses good clients on a coin toss nor
//! lets a flood that holds connections open keep them out:
//!
//! - A connection beyond the bounds is not refused but waits for a slot (it
//!   has been accepted, has not been sent the banner, and costs a socket).
//!   Waiting ones take free slots newest first, so that a flood that came
//!   before a client cannot queue ahead of it. The waiting room is bounded
//!   too (`full` overall, `full / 2` per address): when it is full, the
//!   oldest waiting connection of the address at its share, or of the
//!   address with the most waiting, gives way; a connection is refused only
//!   when its address would then hold as many as any other.
//! - A slot holder that has kept the gateway waiting for [`STALLED`] (the
//!   gateway spoke last: a banner and then nothing; [`STALLED_IN_LOGIN`]
//!   once it sent its key exchange) is closed when a waiting
//!   connection needs its slot: one of the same address when that address
//!   is at its share, or, when all `full` slots are taken, one of an address
//!   holding more than the waiting one's (else its own).
//! - Between `start` and `full`, a new connection from an address that
//!   already holds a slot waits with a probability rising linearly from
//!   `rate` % to 100 % (sshd's random early drop, deferring instead of
//!   dropping; once waiting it takes the next free slot). An address with
//!   none gets a free slot at once.
//!
//! Refusals and closings are audited once per source and kind per
//! [`AUDIT_WINDOW`], with a count of the ones not logged, so that a flood
//! cannot flood the journal.

use std::collections::{BTreeMap, HashMap};
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
/// How long a slot holder must have kept the gateway waiting before it may
/// be closed to make room: a client in the middle of its handshake answers
/// within milliseconds.
pub const STALLED: Duration = Duration::from_secs(1);
/// The same for a client that has sent its key exchange ([`KEX_SENT`]
/// bytes): it is logging in, if slowly (a loaded client host, a key to
/// unlock), and costs a flood a key exchange per connection.
pub const STALLED_IN_LOGIN: Duration = Duration::from_secs(10);
/// Received bytes past which a client has sent its key exchange init (an
/// identification line is at most 255 bytes; OpenSSH's KEXINIT is over 1 KiB).
pub const KEX_SENT: u64 = 512;
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

/// What the admission table needs of a connection: whether it is keeping
/// the gateway waiting, and a way to close its socket at once, whatever its
/// task is doing.
pub trait Conn: Send + Sync {
    /// Since when the gateway has been waiting on the client, if it spoke
    /// last (sent something after the client's last byte).
    fn waiting_on_client_since(&self) -> Option<Instant>;
    /// Bytes received from the client so far.
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
    /// Waiting room full.
    Full,
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
                "refused: {} connections are logging in and {} more waiting (the most allowed)",
                limits.startups.full, limits.startups.full
            ),
            Event::ReplacedBySameSource => format!(
                "dropped: stalled before login, and a newer connection from the same address took its place ({} at most per address)",
                limits.per_source
            ),
            Event::ReplacedByOtherSource => format!(
                "dropped: not logged in while all {} places were taken, and this address held more of them than one waiting",
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

/// A connection closed to make room, and why.
type Victim = (Source, Arc<dyn Conn>, Event);

/// The unauthenticated connections: those holding a slot (in the SSH
/// handshake or authenticating) and those waiting for one (accepted, not
/// yet sent the banner). Ids grow with age.
#[derive(Default)]
struct Table {
    next_id: u64,
    slots: HashMap<u64, Entry>,
    per_source: HashMap<Source, usize>,
    waiting: BTreeMap<u64, Entry>,
    waiting_per_source: HashMap<Source, usize>,
}

/// Where a new connection went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Slot,
    Waiting,
}

fn bump(map: &mut HashMap<Source, usize>, source: Source) {
    *map.entry(source).or_insert(0) += 1;
}

fn unbump(map: &mut HashMap<Source, usize>, source: Source) {
    if let Some(n) = map.get_mut(&source) {
        *n -= 1;
        if *n == 0 {
            map.remove(&source);
        }
    }
}

impl Table {
    fn count(&self, source: Source) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// May a connection from `source` (waiting as `waiter`, if it is) take a
    /// slot now? `Some(victim)`: yes, closing `victim` (if any) for it;
    /// `None`: it waits. `coin` is uniform in 0..100.
    fn slot_for(
        &self,
        limits: &Limits,
        source: Source,
        waiter: Option<u64>,
        coin: u8,
        now: Instant,
    ) -> Option<Option<(u64, Event)>> {
        // Newest first: a flood that came before a client cannot queue ahead of it.
        if let Some(me) = waiter
            && self
                .waiting
                .range(me + 1..)
                .any(|(_, e)| e.source == source)
        {
            return None;
        }
        let here = self.count(source);
        let total = self.slots.len();
        let s = limits.startups;
        if here >= limits.per_source.max(1) {
            return self
                .stalled(now, |e| e.source == source)
                .map(|v| Some((v, Event::ReplacedBySameSource)));
        }
        if total >= s.full {
            // Room is made at the expense of an address holding more, else
            // of this address's own stalled connection.
            if let Some(v) = self.stalled(now, |e| self.count(e.source) > here) {
                return Some(Some((v, Event::ReplacedByOtherSource)));
            }
            return self
                .stalled(now, |e| e.source == source)
                .map(|v| Some((v, Event::ReplacedBySameSource)));
        }
        // Early deferral applies once, on arrival: a connection that waited
        // takes the next free slot.
        if waiter.is_none() && here > 0 && total >= s.start {
            let span = (s.full - s.start).max(1);
            let p = usize::from(s.rate) + (100 - usize::from(s.rate)) * (total - s.start) / span;
            if usize::from(coin) < p {
                return None;
            }
        }
        Some(None)
    }

    /// The slot holder matching `pred` that has kept the gateway waiting
    /// long enough ([`STALLED`], or [`STALLED_IN_LOGIN`] once it sent its
    /// key exchange): the least advanced, then the longest waiting.
    fn stalled(&self, now: Instant, pred: impl Fn(&Entry) -> bool) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(_, e)| pred(e))
            .filter_map(|(id, e)| {
                let since = e.conn.waiting_on_client_since()?;
                let in_login = e.conn.received() >= KEX_SENT;
                let limit = if in_login { STALLED_IN_LOGIN } else { STALLED };
                (now.saturating_duration_since(since) >= limit).then_some((in_login, since, *id))
            })
            .min()
            .map(|(_, _, id)| id)
    }

    fn take_slot(&mut self, id: u64, entry: Entry, victim: Option<(u64, Event)>) -> Option<Victim> {
        let victim = victim.and_then(|(vid, event)| {
            let e = self.remove(vid)?;
            Some((e.source, e.conn, event))
        });
        bump(&mut self.per_source, entry.source);
        self.slots.insert(id, entry);
        victim
    }

    /// A new connection: a slot, a place in the waiting room, or refused.
    fn enter(
        &mut self,
        limits: &Limits,
        source: Source,
        coin: u8,
        conn: Arc<dyn Conn>,
        now: Instant,
    ) -> Result<(u64, Place, Option<Victim>), Event> {
        let id = self.next_id;
        let entry = Entry { source, conn };
        if let Some(victim) = self.slot_for(limits, source, None, coin, now) {
            self.next_id += 1;
            let victim = self.take_slot(id, entry, victim);
            return Ok((id, Place::Slot, victim));
        }
        let queued = self.waiting_per_source.get(&source).copied().unwrap_or(0);
        // Room in the waiting room is made by the oldest waiting connection
        // of this address when it is at its share, else (room full) of the
        // address waiting with the most, if that is more than this one.
        let gives_way = if queued >= waiting_per_source(limits) {
            Some((source, Event::ReplacedBySameSource))
        } else if self.waiting.len() >= limits.startups.full {
            let most = self
                .waiting_per_source
                .iter()
                .max_by_key(|&(_, n)| *n)
                .map(|(s, n)| (*s, *n));
            match most {
                Some((other, n)) if n > queued + 1 => Some((other, Event::ReplacedByOtherSource)),
                _ if queued > 0 => Some((source, Event::ReplacedBySameSource)),
                _ => return Err(Event::Full),
            }
        } else {
            None
        };
        let victim = gives_way.and_then(|(from, event)| {
            let oldest = self
                .waiting
                .iter()
                .find(|(_, e)| e.source == from)
                .map(|(id, _)| *id)?;
            let e = self.remove(oldest)?;
            Some((e.source, e.conn, event))
        });
        self.next_id += 1;
        bump(&mut self.waiting_per_source, source);
        self.waiting.insert(id, entry);
        Ok((id, Place::Waiting, victim))
    }

    /// A waiting connection asks again. `Err`: it is no longer waiting (it
    /// was closed to make room); `Ok(None)`: wait on.
    fn retry(
        &mut self,
        limits: &Limits,
        id: u64,
        coin: u8,
        now: Instant,
    ) -> Result<Option<Option<Victim>>, ()> {
        let source = self.waiting.get(&id).ok_or(())?.source;
        let Some(victim) = self.slot_for(limits, source, Some(id), coin, now) else {
            return Ok(None);
        };
        let entry = self.waiting.remove(&id).ok_or(())?;
        unbump(&mut self.waiting_per_source, source);
        Ok(Some(self.take_slot(id, entry, victim)))
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        if let Some(e) = self.slots.remove(&id) {
            unbump(&mut self.per_source, e.source);
            return Some(e);
        }
        let e = self.waiting.remove(&id)?;
        unbump(&mut self.waiting_per_source, e.source);
        Some(e)
    }
}

/// Connections of one address that may wait for a slot.
fn waiting_per_source(limits: &Limits) -> usize {
    (limits.startups.full / 2).max(limits.per_source).max(1)
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
        let key =
            if self.last.len() < AUDIT_SOURCES || self.last.contains_key(&(event, Some(source))) {
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

    /// Take `conn` from `peer` in (holding a slot, or waiting for one; see
    /// [`Ticket::admitted`]); `None`: refused (audited), the caller drops
    /// the socket.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, conn: Arc<dyn Conn>) -> Option<Ticket> {
        let source = Source::of(peer);
        let coin = self.coin();
        let r = lock(&self.table).enter(&self.limits, source, coin, conn, Instant::now());
        match r {
            Ok((id, place, victim)) => {
                self.close(victim);
                Some(Ticket {
                    admission: self.clone(),
                    id,
                    waiting: place == Place::Waiting,
                })
            }
            Err(event) => {
                self.audit(event, source);
                None
            }
        }
    }

    fn close(&self, victim: Option<Victim>) {
        if let Some((source, conn, event)) = victim {
            conn.kill();
            self.audit(event, source);
        }
    }

    /// Number of unauthenticated connections (for tests and diagnostics).
    pub fn unauthenticated(&self) -> usize {
        let t = lock(&self.table);
        t.slots.len() + t.waiting.len()
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

/// How often a waiting connection asks for a slot again.
const RETRY: Duration = Duration::from_millis(100);

/// A connection's place among the unauthenticated ones; given back when
/// dropped (on login, or when the connection ends).
pub struct Ticket {
    admission: Arc<Admission>,
    id: u64,
    waiting: bool,
}

impl Ticket {
    /// Wait until the connection holds a slot (at once if it does);
    /// `false` if it was closed to make room meanwhile.
    pub async fn admitted(&mut self) -> bool {
        while self.waiting {
            let adm = &self.admission;
            let coin = adm.coin();
            let r = lock(&adm.table).retry(&adm.limits, self.id, coin, Instant::now());
            match r {
                Err(()) => return false,
                Ok(Some(victim)) => {
                    adm.close(victim);
                    self.waiting = false;
                }
                Ok(None) => tokio::time::sleep(RETRY).await,
            }
        }
        true
    }
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
        /// The gateway spoke last, at this time.
        waiting_since: Mutex<Option<Instant>>,
        received: AtomicU64,
        killed: AtomicBool,
    }

    impl Conn for Fake {
        fn waiting_on_client_since(&self) -> Option<Instant> {
            *lock(&self.waiting_since)
        }
        fn received(&self) -> u64 {
            self.received.load(Ordering::SeqCst)
        }
        fn kill(&self) {
            self.killed.store(true, Ordering::SeqCst);
        }
    }

    fn fake() -> Arc<Fake> {
        Arc::new(Fake::default())
    }

    fn stall(c: &Fake, since: Instant) {
        *lock(&c.waiting_since) = Some(since);
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
        for bad in [
            "",
            "1:2",
            "a:1:2",
            "10:101:100",
            "20:30:10",
            "0",
            "1:2:3:4",
            "-1",
        ] {
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
    fn beyond_its_share_a_source_waits_and_replaces_a_stalled_connection() {
        let l = limits(3, "100:30:100");
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        let conns: Vec<Arc<Fake>> = (0..3).map(|_| fake()).collect();
        for c in &conns {
            let (_, place, victim) = t.enter(&l, a, 0, c.clone(), now).expect("admit");
            assert_eq!(place, Place::Slot);
            assert!(victim.is_none());
        }
        // Nobody has stalled yet: the fourth waits, nothing is closed.
        conns[1].waiting_since.lock().expect("lock").replace(now);
        let (w, place, victim) = t.enter(&l, a, 0, fake(), now).expect("wait");
        assert_eq!(place, Place::Waiting);
        assert!(victim.is_none());
        assert!(t.retry(&l, w, 0, now).expect("waiting").is_none());
        // Once one has kept the gateway waiting long enough, it makes room.
        let later = now + STALLED;
        stall(&conns[2], now + Duration::from_millis(500));
        let victim = t.retry(&l, w, 0, later).expect("waiting").expect("slot");
        let (vs, vconn, event) = victim.expect("victim");
        assert_eq!((vs, event), (a, Event::ReplacedBySameSource));
        vconn.kill();
        assert!(conns[1].killed.load(Ordering::SeqCst));
        assert!(!conns[0].killed.load(Ordering::SeqCst) && !conns[2].killed.load(Ordering::SeqCst));
        assert_eq!((t.count(a), t.slots.len(), t.waiting.len()), (3, 3, 0));
        // Another source is not affected.
        let b = ip("192.0.2.2");
        let (_, place, _) = t.enter(&l, b, 0, fake(), later).expect("admit");
        assert_eq!(place, Place::Slot);
    }

    #[test]
    fn a_client_past_its_key_exchange_gets_longer_before_it_is_replaced() {
        let l = limits(2, "100:30:100");
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        let (slow, stalled) = (fake(), fake());
        t.enter(&l, a, 0, slow.clone(), now).expect("slot");
        t.enter(&l, a, 0, stalled.clone(), now).expect("slot");
        slow.received.store(1500, Ordering::SeqCst);
        stall(&slow, now);
        stall(&stalled, now + Duration::from_millis(10));
        // The banner-only one goes first, though it stalled later.
        let (w, _, _) = t.enter(&l, a, 0, fake(), now).expect("wait");
        let victim = t
            .retry(&l, w, 0, now + STALLED * 2)
            .expect("waiting")
            .expect("slot");
        victim.expect("victim").1.kill();
        assert!(stalled.killed.load(Ordering::SeqCst));
        // The one logging in only after STALLED_IN_LOGIN.
        let (w, _, _) = t.enter(&l, a, 0, fake(), now).expect("wait");
        assert!(
            t.retry(&l, w, 0, now + STALLED * 5)
                .expect("waiting")
                .is_none()
        );
        assert!(
            t.retry(&l, w, 0, now + STALLED_IN_LOGIN)
                .expect("waiting")
                .is_some()
        );
    }

    #[test]
    fn the_newest_waiting_connection_goes_first() {
        let l = limits(1, "100:30:100");
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        let first = fake();
        t.enter(&l, a, 0, first.clone(), now).expect("admit");
        let (old, _, _) = t.enter(&l, a, 0, fake(), now).expect("wait");
        let (new, _, _) = t.enter(&l, a, 0, fake(), now).expect("wait");
        stall(&first, now);
        let later = now + STALLED;
        assert_eq!(
            t.retry(&l, old, 0, later).expect("waiting").map(|_| ()),
            None
        );
        assert!(t.retry(&l, new, 0, later).expect("waiting").is_some());
    }

    #[test]
    fn the_waiting_room_is_bounded() {
        let l = limits(1, "4:30:4");
        let mut t = Table::default();
        let now = Instant::now();
        let a = ip("192.0.2.1");
        t.enter(&l, a, 0, fake(), now).expect("slot");
        // Per address: full / 2 wait; a newer one pushes the oldest out.
        let waiters: Vec<_> = (0..2)
            .map(|_| t.enter(&l, a, 0, fake(), now).expect("wait").0)
            .collect();
        let (_, place, victim) = t.enter(&l, a, 0, fake(), now).expect("wait");
        assert_eq!(place, Place::Waiting);
        assert_eq!(
            victim.map(|v| (v.0, v.2)),
            Some((a, Event::ReplacedBySameSource))
        );
        assert!(t.retry(&l, waiters[0], 0, now).is_err());
        // Overall: `full` wait; beyond that, refused.
        for i in 2..4 {
            let s = ip(&format!("192.0.2.{i}"));
            t.enter(&l, s, 0, fake(), now).expect("slot");
            t.enter(&l, s, 0, fake(), now).expect("wait");
        }
        assert_eq!(t.slots.len(), 3);
        t.enter(&l, ip("192.0.2.9"), 0, fake(), now)
            .expect("last free slot");
        assert_eq!(t.waiting.len(), 4);
        // a waits with 2: a newcomer from elsewhere takes a's oldest place.
        let (_, place, victim) = t.enter(&l, ip("192.0.2.10"), 0, fake(), now).expect("wait");
        assert_eq!(place, Place::Waiting);
        assert_eq!(
            victim.map(|v| (v.0, v.2)),
            Some((a, Event::ReplacedByOtherSource))
        );
        // Now every address waits with 1: the next is refused.
        assert_eq!(
            t.enter(&l, ip("192.0.2.11"), 0, fake(), now).err(),
            Some(Event::Full)
        );
        assert_eq!(t.waiting.len(), 4);
    }

    #[test]
    fn when_full_a_source_holding_more_makes_room() {
        let l = limits(10, "4:30:4");
        let mut t = Table::default();
        let (a, b, c) = (ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"));
        let now = Instant::now();
        let mut held = Vec::new();
        for s in [a, a, a, b] {
            let conn = fake();
            stall(&conn, now);
            t.enter(&l, s, 99, conn.clone(), now).expect("admit");
            held.push(conn);
        }
        // Full: c gets in at a's expense once a's connections have stalled.
        let later = now + STALLED;
        let (id, place, victim) = t.enter(&l, c, 0, fake(), later).expect("admit");
        assert_eq!(place, Place::Slot, "{id}");
        let (vs, _, event) = victim.expect("victim");
        assert_eq!((vs, event), (a, Event::ReplacedByOtherSource));
        assert_eq!((t.count(a), t.count(b), t.count(c)), (2, 1, 1));
        // a holds 2, more than b's 1: b's next takes a's place.
        let (_, place, victim) = t.enter(&l, b, 99, fake(), later).expect("slot");
        assert_eq!(place, Place::Slot);
        assert_eq!(
            victim.map(|v| (v.0, v.2)),
            Some((a, Event::ReplacedByOtherSource))
        );
        assert_eq!((t.count(a), t.count(b), t.count(c)), (1, 2, 1));
        // Nobody holds more than a's 1 but b's stalled one: a's next waits
        // for it... and takes it, b holding more.
        let (_, place, victim) = t.enter(&l, a, 99, fake(), later).expect("slot");
        assert_eq!(place, Place::Slot);
        assert_eq!(
            victim.map(|v| (v.0, v.2)),
            Some((b, Event::ReplacedByOtherSource))
        );
        // c's next takes a's last stalled one; then none is left stalled,
        // and b's next waits.
        let (_, place, victim) = t.enter(&l, c, 99, fake(), later).expect("slot");
        assert_eq!(place, Place::Slot);
        assert_eq!(
            victim.map(|v| (v.0, v.2)),
            Some((a, Event::ReplacedByOtherSource))
        );
        let (w, place, victim) = t.enter(&l, b, 99, fake(), later).expect("wait");
        assert_eq!(place, Place::Waiting);
        assert!(victim.is_none());
        assert!(t.retry(&l, w, 0, later).expect("waiting").is_none());
    }

    #[test]
    fn when_full_an_address_at_an_equal_share_still_rotates_its_own() {
        // The stalemate a flood from many addresses made: every address
        // holds as many as the waiting client's; its own stalled one goes.
        let l = limits(10, "4:30:4");
        let mut t = Table::default();
        let now = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for s in [a, a, b, b] {
            let conn = fake();
            stall(&conn, now);
            t.enter(&l, s, 99, conn, now).expect("slot");
        }
        let (w, place, _) = t.enter(&l, a, 99, fake(), now).expect("wait");
        assert_eq!(place, Place::Waiting);
        let victim = t
            .retry(&l, w, 99, now + STALLED)
            .expect("waiting")
            .expect("slot");
        assert_eq!(
            victim.map(|v| (v.0, v.2)),
            Some((a, Event::ReplacedBySameSource))
        );
        assert_eq!((t.count(a), t.count(b)), (2, 2));
    }

    #[test]
    fn early_drop_defers_and_spares_a_source_with_none_logging_in() {
        let l = limits(100, "2:50:10");
        let mut t = Table::default();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        t.enter(&l, a, 0, fake(), now).expect("admit");
        t.enter(&l, a, 0, fake(), now).expect("admit");
        // At start: p = 50 %.
        let (w, place, _) = t.enter(&l, a, 49, fake(), now).expect("wait");
        assert_eq!(place, Place::Waiting);
        // Once waiting, it takes the next free slot whatever the coin.
        assert!(t.retry(&l, w, 0, now).expect("waiting").is_some());
        t.enter(&l, a, 50, fake(), now).expect("coin above p");
        // An address with none gets a slot on any coin while there is room.
        let (_, place, _) = t
            .enter(&l, ip("192.0.2.9"), 0, fake(), now)
            .expect("new source");
        assert_eq!(place, Place::Slot);
    }

    #[tokio::test]
    async fn tickets_give_their_place_back() {
        let adm = Admission::new(limits(1, "10:30:100"));
        let peer: IpAddr = "192.0.2.1".parse().expect("ip");
        let first = fake();
        let mut t1 = adm.admit(peer, first.clone()).expect("admit");
        assert!(t1.admitted().await);
        let mut t2 = adm.admit(peer, fake()).expect("admit");
        assert_eq!(adm.unauthenticated(), 2);
        // t2 waits until t1 gives its slot back.
        let waiter = tokio::spawn(async move {
            let ok = t2.admitted().await;
            (ok, t2)
        });
        tokio::time::sleep(RETRY * 3).await;
        assert!(!waiter.is_finished());
        drop(t1);
        let (ok, t2) = waiter.await.expect("join");
        assert!(ok);
        assert_eq!(adm.unauthenticated(), 1);
        drop(t2);
        assert_eq!(adm.unauthenticated(), 0);
        let t = lock(&adm.table);
        assert!(t.per_source.is_empty() && t.waiting_per_source.is_empty());
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
            q.note(Event::Full, s, now);
        }
        assert!(q.last.len() <= AUDIT_SOURCES + 2);
    }
}
