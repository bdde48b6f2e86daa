//! `partition-by-date`: the event's calendar day in the project timezone (`mp_date`, SPEC §7.2).

use std::any::Any;

use chrono::{NaiveDate, TimeZone};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::Deserialize;

use sluice_engine::batch::Batch;
use sluice_engine::component::Operator;
use sluice_engine::registry::{BuildContext, Capability, Component, Issue};
use sluice_engine::{EngineError, Result};

/// Assigns each event its `mp_date`: the calendar day of its `time` in the project timezone.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionByDateConfig {
    /// The project timezone, an IANA name such as `America/Los_Angeles`.
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

impl Component for PartitionByDateConfig {
    fn validate(&self) -> Vec<Issue> {
        match self.timezone.parse::<Tz>() {
            Ok(_) => vec![],
            Err(_) => vec![Issue::at(
                "timezone",
                format!("`{}` is not an IANA timezone", self.timezone),
                "use a name like UTC, America/Los_Angeles or Asia/Kolkata",
            )],
        }
    }
    fn provides(&self) -> &'static [Capability] {
        &[Capability::Dates]
    }
    fn describe(&self) -> String {
        format!("mp_date in {}", self.timezone)
    }
    fn build_operator(&self, _cx: &BuildContext) -> Result<Box<dyn Operator>> {
        let tz: Tz = self.timezone.parse().map_err(|_| {
            EngineError::config(
                format!("bad timezone `{}`", self.timezone),
                "use an IANA name",
            )
        })?;
        Ok(Box::new(PartitionByDate::new(tz)))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Days since 1970-01-01 of a date.
pub fn days_from_epoch(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

/// The date of a number of days since 1970-01-01.
pub fn date_from_days(days: i32) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    epoch + chrono::Duration::days(days as i64)
}

pub struct PartitionByDate {
    tz: Tz,
    /// Recent [start, end) UTC-second ranges with one local date: most events fall in one.
    cache: [(i64, i64, i32); 4],
    next: usize,
}

impl PartitionByDate {
    pub fn new(tz: Tz) -> Self {
        PartitionByDate {
            tz,
            cache: [(0, 0, 0); 4],
            next: 0,
        }
    }

    /// The local date of a UTC epoch second, exactly as the tz database says.
    pub fn date_of(&mut self, secs: i64) -> i32 {
        for &(s, e, d) in &self.cache {
            if secs >= s && secs < e {
                return d;
            }
        }
        let date = self.exact(secs);
        if let Some((s, e)) = self.day_bounds(secs, date) {
            self.cache[self.next] = (s, e, date);
            self.next = (self.next + 1) % self.cache.len();
        }
        date
    }

    fn exact(&self, secs: i64) -> i32 {
        match self.tz.timestamp_opt(secs, 0) {
            chrono::LocalResult::Single(t) => days_from_epoch(t.date_naive()),
            _ => days_from_epoch(
                chrono::DateTime::from_timestamp(secs, 0)
                    .map(|t| t.date_naive())
                    .unwrap_or_default(),
            ),
        }
    }

    /// The UTC range of local day `date` around `secs`, found by bisection on `exact`, so it
    /// holds across DST changes and odd offsets (e.g. Pacific/Chatham, +12:45).
    fn day_bounds(&self, secs: i64, date: i32) -> Option<(i64, i64)> {
        // Offsets are within ±26 hours: search that far.
        let span = 2 * 86_400 + 7_200;
        let (mut lo, mut hi) = (secs - span, secs);
        if self.exact(lo) == date {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.exact(mid) == date {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let start = hi;
        let (mut lo, mut hi) = (secs, secs + span);
        if self.exact(hi) == date {
            return None;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.exact(mid) == date {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some((start, hi))
    }
}

impl Operator for PartitionByDate {
    fn process(&mut self, batch: &mut Batch) -> Result<()> {
        let ev = &mut batch.events;
        let mut dates = std::mem::take(&mut ev.date);
        dates.clear();
        dates.reserve(ev.time_us.len());
        for &us in &ev.time_us {
            dates.push(self.date_of(us.div_euclid(1_000_000)));
        }
        ev.date = dates;
        Ok(())
    }
    fn fork(&self) -> Option<Box<dyn Operator>> {
        Some(Box::new(PartitionByDate::new(self.tz)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(tz: &str, secs: i64) -> String {
        let mut p = PartitionByDate::new(tz.parse().unwrap());
        date_from_days(p.date_of(secs)).to_string()
    }

    #[test]
    fn day_boundaries_in_several_zones() {
        // 2021-02-03T07:59:59Z is 23:59:59 on 02-02 in Los Angeles (UTC-8).
        assert_eq!(date("America/Los_Angeles", 1_612_339_199), "2021-02-02");
        assert_eq!(date("America/Los_Angeles", 1_612_339_200), "2021-02-03");
        // Kolkata is UTC+5:30: 18:30Z is local midnight.
        assert_eq!(date("Asia/Kolkata", 1_612_290_599), "2021-02-02");
        assert_eq!(date("Asia/Kolkata", 1_612_290_600), "2021-02-03");
        // Chatham in February is UTC+13:45: 10:15Z is local midnight.
        assert_eq!(date("Pacific/Chatham", 1_612_260_899), "2021-02-02");
        assert_eq!(date("Pacific/Chatham", 1_612_260_900), "2021-02-03");
        assert_eq!(date("UTC", 1_612_310_400), "2021-02-03");
        assert_eq!(date("UTC", 1_612_310_399), "2021-02-02");
    }

    #[test]
    fn dst_changes_in_los_angeles() {
        // 2021-03-14: clocks jump 02:00 -> 03:00 (PST -> PDT); the day is 23 hours long.
        // Local midnight of 03-14 is 08:00Z; of 03-15, 07:00Z.
        assert_eq!(date("America/Los_Angeles", 1_615_708_799), "2021-03-13");
        assert_eq!(date("America/Los_Angeles", 1_615_708_800), "2021-03-14");
        assert_eq!(date("America/Los_Angeles", 1_615_791_599), "2021-03-14");
        assert_eq!(date("America/Los_Angeles", 1_615_791_600), "2021-03-15");
    }

    #[test]
    fn the_cache_agrees_with_exact_computation() {
        for tz in [
            "America/Los_Angeles",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "UTC",
        ] {
            let mut cached = PartitionByDate::new(tz.parse().unwrap());
            let exact = PartitionByDate::new(tz.parse().unwrap());
            let mut t = 1_615_000_000i64;
            while t < 1_617_000_000 {
                assert_eq!(cached.date_of(t), exact.exact(t), "{tz} at {t}");
                t += 1_799;
            }
        }
    }
}
