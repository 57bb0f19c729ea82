//! `auto_update`'s schedule: when scheduled updates run.
//!
//! One small syntax that systemd (`OnCalendar=`, so that `Persistent=true`
//! catches up on a run missed while the host was off) and `berth up`'s own
//! supervisor honour exactly: `hourly`, `daily`, `weekly` (Monday), or
//! `every N` with N in seconds dividing a minute (`every 10s`), minutes
//! dividing an hour (`every 15m`) or hours dividing a day (`every 6h`).
//! Every schedule is in UTC and aligned to the start of its minute, hour,
//! day or week, so both compute the same fire times.

use std::fmt;

use serde::{Deserialize, Serialize};

/// When scheduled updates fire. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    Hourly,
    #[default]
    Daily,
    Weekly,
    /// Every this many seconds, aligned to the epoch (a divisor of 60 s,
    /// of 3600 s in whole minutes, or of 86400 s in whole hours).
    Every(u64),
}

/// The help line of every schedule error.
pub const SCHEDULE_HELP: &str = "write \"hourly\", \"daily\", \"weekly\", or \"every N\" with seconds dividing a minute (\"every 10s\"), minutes dividing an hour (\"every 15m\") or hours dividing a day (\"every 6h\")";

const MINUTE: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86400;
const WEEK: u64 = 7 * DAY;
/// 1970-01-05 00:00 UTC, the first Monday after the epoch (a Thursday).
const FIRST_MONDAY: u64 = 4 * DAY;

impl Schedule {
    /// Parse the file's text (see the module documentation); the error
    /// is the message, [`SCHEDULE_HELP`] the help.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        match t {
            "hourly" => return Ok(Schedule::Hourly),
            "daily" => return Ok(Schedule::Daily),
            "weekly" => return Ok(Schedule::Weekly),
            _ => {}
        }
        let Some(rest) = t.strip_prefix("every") else {
            return Err(format!("schedule `{text}` is not one berth knows"));
        };
        let rest = rest.trim();
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (num, unit) = rest.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("schedule `{text}`: `{rest}` is not a number with a unit"))?;
        let (unit_secs, whole, name) = match unit.trim() {
            "s" | "sec" | "second" | "seconds" => (1, MINUTE, "a minute"),
            "m" | "min" | "minute" | "minutes" => (MINUTE, HOUR, "an hour"),
            "h" | "hour" | "hours" => (HOUR, DAY, "a day"),
            u => {
                return Err(format!("schedule `{text}`: unknown unit `{u}` (s, m or h)"));
            }
        };
        let secs = n.saturating_mul(unit_secs);
        if n == 0 || secs > whole || whole % secs != 0 {
            return Err(format!(
                "schedule `{text}`: {n}{} does not divide {name}, so the runs would not stay aligned",
                unit.trim()
            ));
        }
        Ok(Schedule::Every(secs))
    }

    /// The period in seconds.
    pub fn period_secs(self) -> u64 {
        match self {
            Schedule::Hourly => HOUR,
            Schedule::Daily => DAY,
            Schedule::Weekly => WEEK,
            Schedule::Every(s) => s,
        }
    }

    /// systemd's `OnCalendar=` expression for it, in UTC.
    pub fn on_calendar(self) -> String {
        match self {
            Schedule::Hourly => "*-*-* *:00:00 UTC".into(),
            Schedule::Daily => "*-*-* 00:00:00 UTC".into(),
            Schedule::Weekly => "Mon *-*-* 00:00:00 UTC".into(),
            Schedule::Every(s) if s < MINUTE => format!("*-*-* *:*:00/{s} UTC"),
            Schedule::Every(MINUTE) => "*-*-* *:*:00 UTC".into(),
            Schedule::Every(s) if s < HOUR => format!("*-*-* *:00/{}:00 UTC", s / MINUTE),
            Schedule::Every(HOUR) => "*-*-* *:00:00 UTC".into(),
            Schedule::Every(s) if s < DAY => format!("*-*-* 00/{}:00:00 UTC", s / HOUR),
            Schedule::Every(_) => "*-*-* 00:00:00 UTC".into(),
        }
    }

    /// The first fire time strictly after `now` (seconds since the epoch, UTC).
    pub fn next_after(self, now: u64) -> u64 {
        let (origin, period) = match self {
            Schedule::Weekly => (FIRST_MONDAY, WEEK),
            s => (0, s.period_secs()),
        };
        if now < origin {
            return origin;
        }
        origin + ((now - origin) / period + 1) * period
    }
}

impl fmt::Display for Schedule {
    /// The file's spelling (what [`Schedule::parse`] reads back).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Schedule::Hourly => f.write_str("hourly"),
            Schedule::Daily => f.write_str("daily"),
            Schedule::Weekly => f.write_str("weekly"),
            Schedule::Every(s) if s % HOUR == 0 => write!(f, "every {}h", s / HOUR),
            Schedule::Every(s) if s % MINUTE == 0 => write!(f, "every {}m", s / MINUTE),
            Schedule::Every(s) => write!(f, "every {s}s"),
        }
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_interval_schedules_parse_and_print_back() {
        for (text, want) in [
            ("hourly", Schedule::Hourly),
            ("daily", Schedule::Daily),
            (" weekly ", Schedule::Weekly),
            ("every 10s", Schedule::Every(10)),
            ("every 15m", Schedule::Every(900)),
            ("every 6h", Schedule::Every(6 * 3600)),
            ("every 1m", Schedule::Every(60)),
            ("every 60m", Schedule::Every(3600)),
            ("every 24h", Schedule::Every(86400)),
            ("every5 minutes", Schedule::Every(300)),
        ] {
            let s = Schedule::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(s, want, "{text}");
            assert_eq!(Schedule::parse(&s.to_string()), Ok(s), "{s}");
        }
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        for (text, says) in [
            ("monthly", "not one berth knows"),
            ("every", "not a number"),
            ("every m", "not a number"),
            ("every 0m", "does not divide"),
            ("every 7m", "does not divide an hour"),
            ("every 5h", "does not divide a day"),
            ("every 7s", "does not divide a minute"),
            ("every 90s", "does not divide a minute"),
            ("every 2d", "unknown unit"),
            ("every 99999999999999999999h", "not a number"),
            ("", "not one berth knows"),
        ] {
            let e = Schedule::parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"));
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn on_calendar_text() {
        for (s, want) in [
            (Schedule::Hourly, "*-*-* *:00:00 UTC"),
            (Schedule::Daily, "*-*-* 00:00:00 UTC"),
            (Schedule::Weekly, "Mon *-*-* 00:00:00 UTC"),
            (Schedule::Every(10), "*-*-* *:*:00/10 UTC"),
            (Schedule::Every(60), "*-*-* *:*:00 UTC"),
            (Schedule::Every(900), "*-*-* *:00/15:00 UTC"),
            (Schedule::Every(3600), "*-*-* *:00:00 UTC"),
            (Schedule::Every(6 * 3600), "*-*-* 00/6:00:00 UTC"),
            (Schedule::Every(86400), "*-*-* 00:00:00 UTC"),
        ] {
            assert_eq!(s.on_calendar(), want, "{s}");
        }
    }

    #[test]
    fn next_fire_time_is_the_next_aligned_instant() {
        // 2026-12-02T16:17:55Z, a Wednesday.
        let now = 1_796_228_275;
        assert_eq!(Schedule::Every(10).next_after(now), 1_796_228_280);
        assert_eq!(Schedule::Every(900).next_after(now), 1_796_228_100 + 900);
        assert_eq!(Schedule::Hourly.next_after(now), 1_796_227_200 + 3600);
        assert_eq!(
            Schedule::Every(6 * 3600).next_after(now),
            1_796_169_600 + 21_600 * 3
        );
        // Midnight of 2026-12-03.
        assert_eq!(Schedule::Daily.next_after(now), 1_796_256_000);
        // Monday 2026-12-07.
        assert_eq!(Schedule::Weekly.next_after(now), 1_796_256_000 + 4 * 86400);
        // Exactly on a fire time: the next one.
        assert_eq!(
            Schedule::Daily.next_after(1_796_256_000),
            1_796_256_000 + 86400
        );
        assert_eq!(Schedule::Weekly.next_after(0), 4 * 86400);
    }
}
