//! When a schedule ticks: a fixed period counted from the Unix epoch, or a cron expression read on
//! a time zone's wall clock. Every answer is a function of the expression alone (never of where a
//! search started), so that any number of schedulers, started at any time, agree on every tick.

use std::{collections::VecDeque, fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use croner::{
    parser::{CronParser, Seconds},
    Cron, Weekday,
};

use crate::error::{Error, Result};

/// Longest cron expression accepted, in bytes.
const MAX_EXPRESSION_LEN: usize = 1024;

/// How far back a scheduler looks for the ticks its missed-tick policy runs: ticks older than
/// this are never submitted late.
pub(super) const MAX_LOOKBACK: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// A schedule's ticks.
#[derive(Clone)]
pub(super) enum Cadence {
    /// Every `ms` milliseconds, at whole multiples of it since the Unix epoch.
    Every { ms: i64 },
    /// A cron expression on the wall clock of `tz`.
    Cron {
        cron: Box<Cron>,
        expression: String,
        tz: Tz,
    },
}

impl Cadence {
    pub(super) fn every(period: Duration) -> Result<Self> {
        let ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
        if period < Duration::from_secs(1) {
            return Err(Error::InvalidInput(format!(
                "a schedule's period must be at least 1 s (got {period:?})"
            )));
        }
        if Duration::from_millis(ms.unsigned_abs()) != period {
            return Err(Error::InvalidInput(format!(
                "a schedule's period must be a whole number of milliseconds (got {period:?})"
            )));
        }
        if period > MAX_LOOKBACK {
            return Err(Error::InvalidInput(format!(
                "a schedule's period must be at most 10 years (got {period:?})"
            )));
        }
        Ok(Self::Every { ms })
    }

    pub(super) fn cron(expression: &str) -> Result<Self> {
        if expression.len() > MAX_EXPRESSION_LEN {
            return Err(Error::InvalidInput(format!(
                "the cron expression is {} bytes long; at most {MAX_EXPRESSION_LEN} are allowed",
                expression.len()
            )));
        }
        let shown = || shorten(expression);
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "`{}` is not a cron expression ({}); expected `minute hour day-of-month month \
                     day-of-week`, optionally with seconds first, such as `0 3 * * *`",
                    shown(),
                    shorten(&e.to_string()),
                ))
            })?;
        // A pattern such as `0 0 31 2 *` parses but never matches.
        if !ever_matches(&cron) {
            return Err(Error::InvalidInput(format!(
                "the cron expression `{}` never matches a real date",
                shown()
            )));
        }
        Ok(Self::Cron {
            cron: Box::new(cron),
            expression: expression.to_owned(),
            tz: Tz::UTC,
        })
    }

    pub(super) fn set_tz(&mut self, zone: Tz) {
        if let Self::Cron { tz, .. } = self {
            *tz = zone;
        }
    }

    /// The first tick strictly after `t`, if the schedule has one.
    pub(super) fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every { ms } => {
                let k = t.timestamp_millis().div_euclid(*ms).checked_add(1)?;
                DateTime::from_timestamp_millis(k.checked_mul(*ms)?)
            }
            Self::Cron { cron, tz, .. } => cron
                .iter_after(t.with_timezone(tz))
                .map(|at| at.with_timezone(&Utc))
                .find(|at| *at > t),
        }
    }

    /// The ticks in `(after, until]`, ascending, keeping only the last `keep`.
    fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        keep: usize,
    ) -> VecDeque<DateTime<Utc>> {
        let mut ticks = VecDeque::with_capacity(keep.min(1024));
        if keep == 0 || after >= until {
            return ticks;
        }
        match self {
            Self::Every { ms } => {
                let last = until.timestamp_millis().div_euclid(*ms);
                let first = after.timestamp_millis().div_euclid(*ms) + 1;
                let keep = i64::try_from(keep).unwrap_or(i64::MAX);
                let from = first.max(last.saturating_sub(keep - 1));
                for k in from..=last {
                    if let Some(t) = DateTime::from_timestamp_millis(k * ms) {
                        ticks.push_back(t);
                    }
                }
            }
            Self::Cron { cron, tz, .. } => {
                for at in cron.iter_after(after.with_timezone(tz)) {
                    let at = at.with_timezone(&Utc);
                    if at > until {
                        break;
                    }
                    if at <= after {
                        continue;
                    }
                    if ticks.len() == keep {
                        ticks.pop_front();
                    }
                    ticks.push_back(at);
                }
            }
        }
        ticks
    }

    /// The last `n` ticks at or before `now`, ascending: fewer when the schedule has fewer in
    /// [`MAX_LOOKBACK`].
    pub(super) fn last(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        if n == 0 {
            return Vec::new();
        }
        let lookback = chrono::Duration::from_std(MAX_LOOKBACK).unwrap_or(chrono::Duration::MAX);
        let horizon = now
            .checked_sub_signed(lookback)
            .unwrap_or(DateTime::UNIX_EPOCH)
            .max(DateTime::UNIX_EPOCH);
        let mut window = chrono::Duration::minutes(1);
        loop {
            let start = (now - window).max(horizon);
            let ticks = self.between(start, now, n);
            if ticks.len() >= n || start <= horizon {
                return ticks.into();
            }
            window = window * 4;
        }
    }

    /// The `n` ticks after `t`, ascending: fewer when the schedule ends.
    pub(super) fn following(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::with_capacity(n.min(1024));
        let mut at = t;
        while ticks.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    ticks.push(next);
                    at = next;
                }
                None => break,
            }
        }
        ticks
    }
}

impl fmt::Display for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Every { ms } => {
                write!(f, "every {:?}", Duration::from_millis(ms.unsigned_abs()))
            }
            Self::Cron { expression, tz, .. } => write!(f, "cron `{expression}` in {tz}"),
        }
    }
}

impl fmt::Debug for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Whether `cron` matches some time from 1970 on: its second, minute and hour fields each allow a
/// value (`,` parses as none), and some day matches. Cheap even when nothing
/// matches (where croner's own search walks to the year 5000): without a year field a pattern
/// repeats every 400 years (a Gregorian cycle is a whole number of weeks), and years a year field
/// leaves out are skipped whole.
fn ever_matches(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    let times = [&pattern.seconds, &pattern.minutes, &pattern.hours];
    if times.iter().any(|field| field.values().is_empty()) {
        return false;
    }
    let matches =
        |result: std::result::Result<bool, croner::errors::CronError>| result.unwrap_or(false);
    let mut every_year = true;
    for year in 1970..croner::YEAR_UPPER_LIMIT {
        if year >= 1970 + 400 && every_year {
            return false;
        }
        if !matches(pattern.year_match(year)) {
            every_year = false;
            continue;
        }
        for month in 1..=12 {
            if !matches(pattern.month_match(month)) {
                continue;
            }
            let Some(mut date) = NaiveDate::from_ymd_opt(year, month, 1) else {
                continue;
            };
            while date.month() == month {
                let weekday = Weekday::from_days_from_sunday(date.weekday().num_days_from_sunday());
                if matches(pattern.day_match(year, month, date.day(), weekday)) {
                    return true;
                }
                let Some(next) = date.succ_opt() else { break };
                date = next;
            }
        }
    }
    false
}

/// `text` for an error message: control characters escaped, cut after 80 characters.
fn shorten(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if text.chars().nth(80).is_some() {
        shown.push('…');
    }
    shown
}

/// Parses an IANA time zone name (`Europe/Berlin`), with a message that says what to do.
pub(super) fn parse_tz(name: &str) -> Result<Tz> {
    Tz::from_str(name).map_err(|_| {
        Error::InvalidInput(format!(
            "`{}` is not an IANA time zone name (such as `Europe/Berlin` or `UTC`)",
            shorten(name)
        ))
    })
}
