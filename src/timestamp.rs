//! RFC 3339 timestamps: the one owner of how berth writes and reads them, through the
//! `time` crate. Whole seconds for `startedat`, token `issued_at` and certificate dates;
//! nanoseconds without trailing zeros (Go's `time.RFC3339Nano`) for notification events.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

/// `2023-11-14T22:13:20Z`: `t` in UTC to the whole second, as distribution writes
/// `startedat`. Times before 1970 read as the epoch.
pub fn seconds(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(LAST);
    write(t)
}

/// `2024-05-01T12:34:56.789Z`: `t` in UTC, the fraction without trailing zeros (Go's
/// `time.RFC3339Nano`).
pub(crate) fn nanos(t: OffsetDateTime) -> String {
    write(t.to_offset(UtcOffset::UTC))
}

/// An RFC 3339 timestamp to the whole second: berth writes `2024-01-02T03:04:05Z`,
/// distribution may add a fraction or an offset. `None` when it is not one, or before 1970.
pub(crate) fn parse(s: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The first and last instants RFC 3339's four-digit year can write.
const FIRST: OffsetDateTime = datetime!(0000-01-01 00:00:00 UTC);
const LAST: OffsetDateTime = datetime!(9999-12-31 23:59:59 UTC);

/// `t` (in UTC) as RFC 3339, clamped to the years it can write.
fn write(t: OffsetDateTime) -> String {
    let t = t.clamp(FIRST, LAST);
    // Rfc3339 fails only on a year outside 0..=9999 (clamped above) or an offset with
    // seconds (UTC has none); the fallback is never taken.
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_700_000_000;

    #[test]
    fn seconds_are_whole_and_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(T);
        assert_eq!(seconds(t), "2023-11-14T22:13:20Z");
        assert_eq!(
            seconds(t + Duration::from_millis(999)),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(seconds(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            seconds(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            seconds(UNIX_EPOCH + Duration::from_secs(1 << 40)),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn nanos_drop_trailing_zeros() {
        let at = |n: i128| OffsetDateTime::from_unix_timestamp_nanos(n).expect("time");
        let s = i128::from(T) * 1_000_000_000;
        assert_eq!(nanos(at(s + 120_000_000)), "2023-11-14T22:13:20.12Z");
        assert_eq!(nanos(at(s + 1)), "2023-11-14T22:13:20.000000001Z");
        assert_eq!(nanos(at(s)), "2023-11-14T22:13:20Z");
        assert_eq!(nanos(at(0)), "1970-01-01T00:00:00Z");
        let plus_one = at(s).to_offset(UtcOffset::from_hms(1, 0, 0).expect("offset"));
        assert_eq!(nanos(plus_one), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn parse_reads_what_berth_and_distribution_write() {
        let t = UNIX_EPOCH + Duration::from_secs(T);
        assert_eq!(parse(&seconds(t)), Some(t));
        assert_eq!(parse("2023-11-14T23:13:20+01:00"), Some(t));
        assert_eq!(parse("2023-11-14T21:13:20-01:00"), Some(t));
        assert_eq!(parse("2023-11-14T22:13:20.123456789Z"), Some(t));
        assert_eq!(parse("2023-11-14T22:13:20.5+00:00"), Some(t));
        assert_eq!(parse("2023-11-14t22:13:20z"), Some(t));
        assert_eq!(parse("2023-11-14 22:13:20Z"), Some(t));
        assert_eq!(parse(" 2023-11-14T22:13:20Z\n"), Some(t));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        for bad in [
            "",
            "yesterday",
            "2023-13-14T22:13:20Z",
            "2023-11-31T22:13:20Z",
            "2023-11-14T24:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20+0100",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
