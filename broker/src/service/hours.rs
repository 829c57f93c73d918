//! Business hours of a skill group: open or closed at an instant, and when that
//! changes next. Pure functions of the time given; the router schedules the changes.

use switchboard_raft_store::BusinessHours;

const MINUTE_MS: i64 = 60_000;
const DAY_MIN: i64 = 24 * 60;
const WEEK_MIN: i64 = 7 * DAY_MIN;

/// Minute of the week (0 = Monday 00:00) at `now_ms` in the hours' UTC offset.
fn minute_of_week(hours: &BusinessHours, now_ms: u64) -> i64 {
    let local_min = now_ms as i64 / MINUTE_MS + hours.utc_offset_minutes as i64;
    // 1970-01-01 was a Thursday: day 3 of a Monday-based week.
    (local_min + 3 * DAY_MIN).rem_euclid(WEEK_MIN)
}

fn open_at_minute(hours: &BusinessHours, m: i64) -> bool {
    let (day, minute) = (m / DAY_MIN, m % DAY_MIN);
    hours.days.iter().any(|d| d.weekday as i64 == day && (d.open_minute as i64) <= minute && minute < d.close_minute as i64)
}

/// Whether the group is open at `now_ms`.
pub fn is_open(hours: &BusinessHours, now_ms: u64) -> bool {
    open_at_minute(hours, minute_of_week(hours, now_ms))
}

/// When the group next opens or closes after `now_ms` (within a week), in ms since
/// the epoch; `None` if it never changes (always open or always closed).
pub fn next_change_ms(hours: &BusinessHours, now_ms: u64) -> Option<u64> {
    let start = minute_of_week(hours, now_ms);
    let now_open = open_at_minute(hours, start);
    let minute_start_ms = now_ms - now_ms % MINUTE_MS as u64;
    (1..=WEEK_MIN)
        .find(|i| open_at_minute(hours, (start + i) % WEEK_MIN) != now_open)
        .map(|i| minute_start_ms + (i * MINUTE_MS) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_raft_store::DayHours;

    /// 2026-11-23 was a Monday; 00:00 UTC.
    const MONDAY_UTC: u64 = 1_795_392_000_000;
    const H: u64 = 3_600_000;

    fn weekdays_9_to_18(offset: i32) -> BusinessHours {
        BusinessHours {
            utc_offset_minutes: offset,
            days: (0..5).map(|d| DayHours { weekday: d, open_minute: 9 * 60, close_minute: 18 * 60 }).collect(),
        }
    }

    #[test]
    fn open_on_weekdays_in_the_local_time_zone() {
        let utc = weekdays_9_to_18(0);
        assert!(!is_open(&utc, MONDAY_UTC + 8 * H));
        assert!(is_open(&utc, MONDAY_UTC + 9 * H));
        assert!(is_open(&utc, MONDAY_UTC + 17 * H + 59 * 60_000));
        assert!(!is_open(&utc, MONDAY_UTC + 18 * H));
        assert!(!is_open(&utc, MONDAY_UTC + 5 * 24 * H + 10 * H), "saturday");
        // Beijing (UTC+8): 09:00 local is 01:00 UTC.
        let beijing = weekdays_9_to_18(8 * 60);
        assert!(is_open(&beijing, MONDAY_UTC + H));
        assert!(!is_open(&beijing, MONDAY_UTC + 10 * H), "18:00 local");
    }

    #[test]
    fn the_next_change_is_the_next_opening_or_closing() {
        let utc = weekdays_9_to_18(0);
        assert_eq!(next_change_ms(&utc, MONDAY_UTC + 8 * H + 30 * 60_000), Some(MONDAY_UTC + 9 * H));
        assert_eq!(next_change_ms(&utc, MONDAY_UTC + 12 * H), Some(MONDAY_UTC + 18 * H));
        // friday evening -> monday morning
        assert_eq!(next_change_ms(&utc, MONDAY_UTC + 4 * 24 * H + 19 * H), Some(MONDAY_UTC + 7 * 24 * H + 9 * H));
        let always = BusinessHours { utc_offset_minutes: 0, days: (0..7).map(|d| DayHours { weekday: d, open_minute: 0, close_minute: 24 * 60 }).collect() };
        assert!(is_open(&always, MONDAY_UTC) && next_change_ms(&always, MONDAY_UTC).is_none());
    }
}
