//! Change-freeze windows: whether one holds at an instant, in the spec's time zone (daylight
//! saving time followed). Pure: the instant comes from the engine's `now`.

use jiff::{
    Timestamp,
    civil::{Date, DateTime, Time as CivilTime},
    tz::TimeZone,
};

use crate::api::{FreezeSpec, FreezeWindow, Weekday};

/// A window in force: when it ends, as an instant and as local time for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frozen {
    pub until: i64,
    pub until_local: String,
}

/// The freeze window holding at `now` (the one ending last when several overlap), or `None`.
/// Errors name what in the spec cannot be read (an unknown time zone, a malformed time).
pub fn in_force(spec: &FreezeSpec, now: i64) -> Result<Option<Frozen>, String> {
    let tz = TimeZone::get(&spec.time_zone).map_err(|_| format!("unknown time zone `{}`", spec.time_zone))?;
    let now = Timestamp::from_second(now).map_err(|e| e.to_string())?;
    let mut frozen: Option<i64> = None;
    for window in &spec.windows {
        for (start, end) in spans(window, &tz, now)? {
            if start <= now && now < end {
                frozen = Some(frozen.map_or(end.as_second(), |f| f.max(end.as_second())));
            }
        }
    }
    Ok(frozen.map(|until| {
        let local = Timestamp::from_second(until)
            .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string());
        Frozen { until, until_local: local.unwrap_or_default() }
    }))
}

/// The instants a window covers near `now`: a one-off window's one span, or a weekly window's
/// spans beginning yesterday and today (one that began yesterday may run past midnight).
fn spans(
    window: &FreezeWindow,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<Vec<(Timestamp, Timestamp)>, String> {
    let instant = |dt: DateTime| {
        tz.to_ambiguous_zoned(dt).compatible().map(|z| z.timestamp()).map_err(|e| e.to_string())
    };
    if let (Some(start), Some(end)) = (&window.start, &window.end) {
        return Ok(vec![(instant(local_datetime(start)?)?, instant(local_datetime(end)?)?)]);
    }
    let (Some(from), Some(to)) = (&window.from, &window.to) else {
        return Err("a freeze window needs start and end, or from and to".into());
    };
    let from = clock(from)?;
    let to_midnight = to == "24:00";
    let to = if to_midnight { CivilTime::midnight() } else { clock(to)? };
    let today = now.to_zoned(tz.clone()).date();
    let mut out = Vec::new();
    for day in [today.yesterday().map_err(|e| e.to_string())?, today] {
        if !window.days.is_empty() && !window.days.contains(&weekday(day)) {
            continue;
        }
        let start = day.to_datetime(from);
        let end_day =
            if to_midnight || to <= from { day.tomorrow().map_err(|e| e.to_string())? } else { day };
        out.push((instant(start)?, instant(end_day.to_datetime(to))?));
    }
    Ok(out)
}

fn local_datetime(s: &str) -> Result<DateTime, String> {
    s.parse::<DateTime>().map_err(|e| format!("`{s}` is not a local date-time: {e}"))
}

fn clock(s: &str) -> Result<CivilTime, String> {
    s.parse::<CivilTime>().map_err(|e| format!("`{s}` is not HH:MM: {e}"))
}

fn weekday(date: Date) -> Weekday {
    match date.weekday() {
        jiff::civil::Weekday::Monday => Weekday::Mon,
        jiff::civil::Weekday::Tuesday => Weekday::Tue,
        jiff::civil::Weekday::Wednesday => Weekday::Wed,
        jiff::civil::Weekday::Thursday => Weekday::Thu,
        jiff::civil::Weekday::Friday => Weekday::Fri,
        jiff::civil::Weekday::Saturday => Weekday::Sat,
        jiff::civil::Weekday::Sunday => Weekday::Sun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn weekly(days: Vec<Weekday>, from: &str, to: &str) -> FreezeWindow {
        FreezeWindow { days, from: Some(from.into()), to: Some(to.into()), start: None, end: None }
    }

    fn spec(tz: &str, windows: Vec<FreezeWindow>) -> FreezeSpec {
        FreezeSpec { time_zone: tz.into(), windows }
    }

    #[test]
    fn a_weekly_window_holds_in_its_time_zone_and_says_when_it_ends() {
        // Fridays from 16:00 to midnight, Berlin time (CET, UTC+1, in December).
        let s = spec("Europe/Berlin", vec![weekly(vec![Weekday::Fri], "16:00", "24:00")]);
        // 2026-12-04 is a Friday. 14:59 UTC is 15:59 in Berlin: open.
        assert_eq!(in_force(&s, at("2026-12-04T14:59:00Z")).unwrap(), None);
        let frozen = in_force(&s, at("2026-12-04T15:00:00Z")).unwrap().unwrap();
        assert_eq!(frozen.until, at("2026-12-04T23:00:00Z"));
        assert_eq!(frozen.until_local, "2026-12-05 00:00 CET");
        assert_eq!(in_force(&s, at("2026-12-04T23:00:00Z")).unwrap(), None);
        // Thursday at the same hour: open.
        assert_eq!(in_force(&s, at("2026-12-03T16:00:00Z")).unwrap(), None);
    }

    #[test]
    fn a_window_past_midnight_holds_on_the_next_day_too() {
        let s = spec("UTC", vec![weekly(vec![Weekday::Sat], "22:00", "06:00")]);
        // Saturday 2026-12-05 23:00 and Sunday 05:59 are inside; Sunday 06:00 and Sunday 23:00 not.
        assert!(in_force(&s, at("2026-12-05T23:00:00Z")).unwrap().is_some());
        assert_eq!(
            in_force(&s, at("2026-12-06T05:59:00Z")).unwrap().unwrap().until,
            at("2026-12-06T06:00:00Z")
        );
        assert_eq!(in_force(&s, at("2026-12-06T06:00:00Z")).unwrap(), None);
        assert_eq!(in_force(&s, at("2026-12-06T23:00:00Z")).unwrap(), None);
    }

    #[test]
    fn daylight_saving_time_moves_the_window_with_the_clock() {
        // Every day 09:00-10:00 New York: 14:00 UTC in winter (EST), 13:00 UTC in summer (EDT).
        let s = spec("America/New_York", vec![weekly(vec![], "09:00", "10:00")]);
        assert!(in_force(&s, at("2026-12-04T14:30:00Z")).unwrap().is_some());
        assert!(in_force(&s, at("2026-12-04T13:30:00Z")).unwrap().is_none());
        assert!(in_force(&s, at("2026-07-01T13:30:00Z")).unwrap().is_some());
        assert!(in_force(&s, at("2026-07-01T14:30:00Z")).unwrap().is_none());
    }

    #[test]
    fn a_one_off_window_and_overlaps_take_the_latest_end() {
        let holidays = FreezeWindow {
            days: vec![],
            from: None,
            to: None,
            start: Some("2026-12-20T00:00".into()),
            end: Some("2027-01-04T08:00".into()),
        };
        let s = spec("Europe/Paris", vec![holidays, weekly(vec![], "00:00", "24:00")]);
        let frozen = in_force(&s, at("2026-12-24T12:00:00Z")).unwrap().unwrap();
        assert_eq!(frozen.until, at("2027-01-04T07:00:00Z"));
        let only_holidays = spec("Europe/Paris", vec![s.windows[0].clone()]);
        assert!(in_force(&only_holidays, at("2026-12-19T22:59:00Z")).unwrap().is_none());
        assert!(in_force(&only_holidays, at("2026-12-19T23:00:00Z")).unwrap().is_some());
    }

    #[test]
    fn an_unknown_time_zone_or_a_malformed_time_is_an_error_not_a_guess() {
        let s = spec("Mars/Olympus", vec![weekly(vec![], "09:00", "10:00")]);
        assert!(in_force(&s, 0).unwrap_err().contains("Mars/Olympus"));
        let s = spec("UTC", vec![weekly(vec![], "9h", "10:00")]);
        assert!(in_force(&s, 0).is_err());
    }
}
