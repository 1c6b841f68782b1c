//! Wall-clock rules for plugins, which have no clock of their own: the
//! gateway passes `now` ([`Clock`]) to `admit`, and these turn it into a local
//! weekday and time of day and match it against configured hours and days.
//!
//! Config syntax (via [`FromConfig`]):
//! - [`TimeRange`]: `"09:00-17:00"`; the end is exclusive, `24:00` is allowed
//!   as an end, and a range whose end is before its start runs past midnight
//!   (`"22:00-06:00"`). Equal ends make an empty range.
//! - [`Days`]: comma-separated days or day ranges, `"mon-fri"`, `"sat,sun"`,
//!   `"mon-wed,fri"`, `"fri-mon"` (wraps); three-letter or full English
//!   names, any case.

use core::fmt;

use crate::config::FromConfig;
use crate::types::Clock;

const MINUTES_PER_DAY: u16 = 24 * 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    const NAMES: [&'static str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];

    /// 0 for Monday .. 6 for Sunday.
    pub const fn index(self) -> u8 {
        self as u8
    }

    fn from_index(i: i64) -> Weekday {
        Weekday::ALL[i.rem_euclid(7) as usize]
    }

    /// The weekday of day `days` since 1970-01-01 (a Thursday).
    pub fn from_days_since_epoch(days: i64) -> Weekday {
        Weekday::from_index(days + 3)
    }

    pub fn previous(self) -> Weekday {
        Weekday::from_index(self.index() as i64 - 1)
    }

    pub fn next(self) -> Weekday {
        Weekday::from_index(self.index() as i64 + 1)
    }

    /// `"mon"`, `"Monday"`, ...: a three-letter abbreviation or the full name.
    pub fn parse(name: &str) -> Option<Weekday> {
        let name = name.trim();
        Weekday::NAMES
            .iter()
            .position(|full| {
                name.len() >= 3
                    && full.len() >= name.len()
                    && (name.len() == 3 || name.len() == full.len())
                    && full[..name.len()].eq_ignore_ascii_case(name)
            })
            .map(|i| Weekday::ALL[i])
    }
}

/// A time of day in minutes after midnight, `0..=1440` (1440 is `24:00`,
/// only meaningful as the end of a range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub const MIDNIGHT: TimeOfDay = TimeOfDay(0);

    /// `None` unless `hour:minute` is within 00:00..=24:00.
    pub const fn new(hour: u16, minute: u16) -> Option<TimeOfDay> {
        if minute < 60 && (hour < 24 || (hour == 24 && minute == 0)) {
            Some(TimeOfDay(hour * 60 + minute))
        } else {
            None
        }
    }

    pub const fn minutes(self) -> u16 {
        self.0
    }

    /// `"9:00"`, `"09:00"`, `"24:00"`.
    pub fn parse(s: &str) -> Option<TimeOfDay> {
        let (h, m) = s.trim().split_once(':')?;
        let digits = |s: &str, max_len| {
            (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u16>().ok())
                .flatten()
        };
        if m.len() != 2 {
            return None;
        }
        TimeOfDay::new(digits(h, 2)?, digits(m, 2)?)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Hours of the day, `start` inclusive, `end` exclusive; past midnight when
/// `end < start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeRange {
    pub start: TimeOfDay,
    pub end: TimeOfDay,
}

impl TimeRange {
    /// Whether the range runs past midnight (`22:00-06:00`).
    pub fn wraps(self) -> bool {
        self.end < self.start
    }

    pub fn contains(self, t: TimeOfDay) -> bool {
        if self.wraps() {
            t >= self.start || t < self.end
        } else {
            t >= self.start && t < self.end
        }
    }
}

impl FromConfig for TimeRange {
    const EXPECTED: &'static str = "time range HH:MM-HH:MM";
    fn from_config(value: &str) -> Option<TimeRange> {
        let (a, b) = value.trim().split_once('-')?;
        let start = TimeOfDay::parse(a)?;
        // 24:00 ends a day; it does not start one.
        if start.minutes() == MINUTES_PER_DAY {
            return None;
        }
        Some(TimeRange {
            start,
            end: TimeOfDay::parse(b)?,
        })
    }
}

/// A set of weekdays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Days(u8);

impl Days {
    pub const ALL: Days = Days(0x7f);
    pub const NONE: Days = Days(0);

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day.index()) != 0
    }

    pub fn with(self, day: Weekday) -> Days {
        Days(self.0 | (1 << day.index()))
    }
}

impl FromConfig for Days {
    const EXPECTED: &'static str = "days like mon-fri or sat,sun";
    fn from_config(value: &str) -> Option<Days> {
        let mut days = Days::NONE;
        for item in value.split(',') {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (Weekday::parse(a)?, Weekday::parse(b)?),
                None => {
                    let d = Weekday::parse(item)?;
                    (d, d)
                }
            };
            let mut d = first;
            days = days.with(d);
            while d != last {
                d = d.next();
                days = days.with(d);
            }
        }
        Some(days)
    }
}

/// A local weekday and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub weekday: Weekday,
    pub time: TimeOfDay,
}

impl LocalTime {
    /// `now` in the zone `utc_offset_minutes` east of UTC (no daylight
    /// saving: configure the offset that applies).
    pub fn from_clock(now: Clock, utc_offset_minutes: i32) -> LocalTime {
        let secs = i64::try_from(now.unix_seconds)
            .unwrap_or(i64::MAX)
            .saturating_add(i64::from(utc_offset_minutes) * 60);
        let days = secs.div_euclid(86_400);
        let minute = secs.rem_euclid(86_400) / 60;
        LocalTime {
            weekday: Weekday::from_days_since_epoch(days),
            time: TimeOfDay(minute as u16),
        }
    }
}

/// Hours on some days, e.g. 09:00-17:00 on mon-fri. A range past midnight
/// belongs to the day it starts on: 22:00-06:00 on fri includes Saturday
/// 05:00 but not Friday 05:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub hours: TimeRange,
    pub days: Days,
}

impl Schedule {
    pub fn contains(self, t: LocalTime) -> bool {
        if !self.hours.contains(t.time) {
            return false;
        }
        let shift_day = if self.hours.wraps() && t.time < self.hours.end {
            t.weekday.previous()
        } else {
            t.weekday
        };
        self.days.contains(shift_day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> TimeRange {
        TimeRange::from_config(s).unwrap()
    }

    fn at(h: u16, m: u16) -> TimeOfDay {
        TimeOfDay::new(h, m).unwrap()
    }

    #[test]
    fn times_of_day() {
        assert_eq!(TimeOfDay::parse("09:05"), Some(at(9, 5)));
        assert_eq!(TimeOfDay::parse("9:05"), Some(at(9, 5)));
        assert_eq!(
            TimeOfDay::parse("24:00").map(TimeOfDay::minutes),
            Some(1440)
        );
        for bad in [
            "24:01", "12:60", "12:5", "123:00", "", ":", "ab:cd", "+1:00", "12",
        ] {
            assert_eq!(TimeOfDay::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges_exclude_their_end_and_may_wrap() {
        let day = range("09:00-17:00");
        assert!(day.contains(at(9, 0)));
        assert!(day.contains(at(16, 59)));
        assert!(!day.contains(at(17, 0)));
        assert!(!day.contains(at(8, 59)));

        let night = range("22:00-06:00");
        assert!(night.wraps());
        assert!(night.contains(at(23, 0)));
        assert!(night.contains(at(0, 0)));
        assert!(!night.contains(at(6, 0)));
        assert!(!night.contains(at(12, 0)));

        assert!(range("00:00-24:00").contains(at(23, 59)));
        assert!(!range("10:00-10:00").contains(at(10, 0)));
        assert_eq!(TimeRange::from_config("24:00-01:00"), None);
        assert_eq!(TimeRange::from_config("09:00"), None);
    }

    #[test]
    fn days_lists_and_ranges() {
        let weekdays = Days::from_config("mon-fri").unwrap();
        assert!(weekdays.contains(Weekday::Mon) && weekdays.contains(Weekday::Fri));
        assert!(!weekdays.contains(Weekday::Sat) && !weekdays.contains(Weekday::Sun));

        let wrapped = Days::from_config("Fri-Mon").unwrap();
        assert_eq!(
            wrapped,
            Days::from_config("sat, sunday,mon,friday").unwrap()
        );
        assert!(!wrapped.contains(Weekday::Tue));

        assert_eq!(Days::from_config("mon-sun"), Some(Days::ALL));
        for bad in ["", "mo", "funday", "mon-", "monday-fri-sat", "mond"] {
            assert_eq!(Days::from_config(bad), None, "{bad}");
        }
    }

    #[test]
    fn local_time_from_clock() {
        // 2026-11-20T16:30:00Z was a Friday.
        let now = Clock {
            unix_seconds: 1_795_192_200,
        };
        assert_eq!(
            LocalTime::from_clock(now, 0),
            LocalTime {
                weekday: Weekday::Fri,
                time: at(16, 30)
            }
        );
        // UTC+9: already Saturday 01:30.
        assert_eq!(
            LocalTime::from_clock(now, 9 * 60),
            LocalTime {
                weekday: Weekday::Sat,
                time: at(1, 30)
            }
        );
        // UTC-17:00 (out of real-world range, still arithmetic): Thursday 23:30.
        assert_eq!(
            LocalTime::from_clock(now, -17 * 60),
            LocalTime {
                weekday: Weekday::Thu,
                time: at(23, 30)
            }
        );
        assert_eq!(
            LocalTime::from_clock(Clock { unix_seconds: 0 }, 0).weekday,
            Weekday::Thu
        );
    }

    #[test]
    fn overnight_shift_belongs_to_its_first_day() {
        let s = Schedule {
            hours: range("22:00-06:00"),
            days: Days::from_config("fri").unwrap(),
        };
        let t = |weekday, h, m| LocalTime {
            weekday,
            time: at(h, m),
        };
        assert!(s.contains(t(Weekday::Fri, 23, 0)));
        assert!(s.contains(t(Weekday::Sat, 5, 0)));
        assert!(!s.contains(t(Weekday::Fri, 5, 0)));
        assert!(!s.contains(t(Weekday::Sat, 23, 0)));
    }
}
