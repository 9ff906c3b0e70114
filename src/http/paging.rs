//! Keyset pagination shared by the newest-first lists (spend logs, decisions): page
//! size, time range and the opaque cursor, a (time, id) pair.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{AppError, AppResult, ErrorCode};

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 500;

fn invalid(detail: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidQueryParameter, detail)
}

/// `limit`, 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_size(limit: Option<i64>) -> AppResult<i64> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid(format!("limit must be between 1 and {MAX_PAGE}")))
    }
}

/// Inclusive `from`/`to` bounds must not be reversed.
pub fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> AppResult<()> {
    match (from, to) {
        (Some(from), Some(to)) if to < from => Err(invalid("to must not be before from")),
        _ => Ok(()),
    }
}

pub fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{:x}-{}", at.timestamp_micros(), id.simple())
}

/// The `cursor` parameter: absent or empty (`?cursor=`) means the first page.
pub fn cursor(raw: Option<&str>) -> AppResult<Option<(DateTime<Utc>, Uuid)>> {
    raw.filter(|c| !c.is_empty()).map(decode_cursor).transpose()
}

/// A `cursor` that is the last id of the previous page: absent or empty means the
/// first page.
pub fn id_cursor(raw: Option<&str>) -> AppResult<Option<Uuid>> {
    raw.filter(|c| !c.is_empty())
        .map(|c| c.parse().map_err(|_| invalid("cursor is not one this API issued")))
        .transpose()
}

pub fn decode_cursor(raw: &str) -> AppResult<(DateTime<Utc>, Uuid)> {
    let bad = || invalid("cursor is not one this API issued");
    let (micros, id) = raw.split_once('-').ok_or_else(bad)?;
    let micros = i64::from_str_radix(micros, 16).map_err(|_| bad())?;
    Ok((
        DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        id.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(at, id)).ok(), Some((at, id)));
        for bad in ["", "abc", "zz-00", "10-not-a-uuid"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_and_ranges_are_checked() {
        assert_eq!(page_size(None).ok(), Some(DEFAULT_PAGE));
        assert_eq!(page_size(Some(MAX_PAGE)).ok(), Some(MAX_PAGE));
        assert!(page_size(Some(0)).is_err() && page_size(Some(MAX_PAGE + 1)).is_err());
        let now = Utc::now();
        assert!(check_range(Some(now), Some(now)).is_ok());
        assert!(check_range(Some(now), Some(now - chrono::Duration::seconds(1))).is_err());
    }
}
