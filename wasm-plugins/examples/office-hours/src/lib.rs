//! Control only during office hours: viewers always get `view`; `control`
//! (keyboard, pointer, microphone) only within the configured hours. Outside
//! them a viewer whose token grants control is let in with `view`, not
//! refused. The gateway asks again every minute, so an open session loses
//! (or gains) control when the hours end (or begin).
//!
//! Config (`[tenants.<name>.policy.config]`):
//! - `hours`: `"09:00-17:00"` — required; end exclusive, may run past
//!   midnight (`"22:00-06:00"`). Missing or malformed: control is never
//!   granted (fail closed) and a warning is logged.
//! - `utc-offset-minutes`: the zone of `hours`, minutes east of UTC
//!   (`60` for CET, `-300` for EST); default `0`. No daylight saving: change
//!   it when the clocks change. Malformed or beyond ±24 h: fail closed.
//! - `days`: `"mon-fri"`, `"sat,sun"`, ...; default every day. Malformed:
//!   fail closed. A range past midnight counts for the day it starts on.
#![no_std]

use pvgate_policy_sdk::config::{self, Invalid};
use pvgate_policy_sdk::prelude::*;

struct OfficeHours;

/// The configured schedule and zone, or why there is none.
fn office_hours() -> Result<(Schedule, i32), Invalid> {
    let Some(hours) = config::parsed::<TimeRange>("hours")? else {
        return Err(Invalid {
            key: "hours".into(),
            value: String::new(),
            expected: "time range HH:MM-HH:MM (the key is required)",
        });
    };
    let days = config::parsed::<Days>("days")?.unwrap_or(Days::ALL);
    let offset = config::parsed::<i32>("utc-offset-minutes")?.unwrap_or(0);
    if offset.unsigned_abs() > 24 * 60 {
        return Err(Invalid {
            key: "utc-offset-minutes".into(),
            value: offset.to_string(),
            expected: "offset within ±1440 minutes",
        });
    }
    Ok((Schedule { hours, days }, offset))
}

impl Policy for OfficeHours {
    fn admit(_guest: &Guest, viewer: &Viewer, now: Clock) -> Admission {
        if viewer.role == Role::View {
            return Admission::Allow(Role::View);
        }
        let in_hours = match office_hours() {
            Ok((schedule, offset)) => schedule.contains(LocalTime::from_clock(now, offset)),
            Err(e) => {
                warn!("no control outside a valid schedule: {e}");
                false
            }
        };
        Admission::Allow(if in_hours { Role::Control } else { Role::View })
    }
}

pvgate_policy_sdk::export!(OfficeHours);
