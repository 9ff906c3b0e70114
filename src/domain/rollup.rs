//! Latency (and time-to-first-token) histograms kept in the roll-ups, and percentiles
//! read from them.

/// Upper bounds (ms, inclusive) of the latency buckets; a last bucket holds the rest.
/// Changing these requires re-aggregating: they are part of the stored format.
pub const LATENCY_BUCKETS_MS: [i64; 16] = [
    25, 50, 100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 60_000,
];
pub const BUCKET_COUNT: usize = LATENCY_BUCKETS_MS.len() + 1;

pub fn bucket_index(latency_ms: i64) -> usize {
    LATENCY_BUCKETS_MS
        .iter()
        .position(|&bound| latency_ms <= bound)
        .unwrap_or(LATENCY_BUCKETS_MS.len())
}

/// The upper bound of the bucket holding quantile `q` (0 < q ≤ 1), an upper estimate
/// that never understates; `None` without samples. The overflow bucket reports the
/// last bound.
pub fn percentile(buckets: &[i64], q: f64) -> Option<i64> {
    let total: i64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    for (i, count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            return Some(LATENCY_BUCKETS_MS[i.min(LATENCY_BUCKETS_MS.len() - 1)]);
        }
    }
    LATENCY_BUCKETS_MS.last().copied()
}

/// The bucket holding quantile `q` (0 < q ≤ 1) as (lower bound, upper bound): the
/// quantile lies in (lower, upper], or [0, upper] in the first bucket. The upper bound
/// is `None` for the open top bucket. `None` without samples.
pub fn percentile_bucket(buckets: &[i64], q: f64) -> Option<(i64, Option<i64>)> {
    let total: i64 = buckets.iter().sum();
    if total <= 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as i64;
    let mut seen = 0;
    let index = buckets
        .iter()
        .position(|count| {
            seen += count;
            seen >= rank
        })
        .unwrap_or(LATENCY_BUCKETS_MS.len());
    let lower = match index {
        0 => 0,
        i => LATENCY_BUCKETS_MS[(i - 1).min(LATENCY_BUCKETS_MS.len() - 1)],
    };
    Some((lower, LATENCY_BUCKETS_MS.get(index).copied()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(25), 0);
        assert_eq!(bucket_index(26), 1);
        assert_eq!(bucket_index(60_001), 16);
    }

    #[test]
    fn p95_of_a_known_distribution() {
        let mut buckets = vec![0; BUCKET_COUNT];
        for ms in (1..=100).map(|i| i * 10) {
            buckets[bucket_index(ms)] += 1;
        }
        // 95th of 10..=1000 ms is 950 ms, which lies in the (750, 1000] bucket.
        assert_eq!(percentile(&buckets, 0.95), Some(1_000));
        assert_eq!(percentile(&buckets, 0.5), Some(500));
        assert_eq!(percentile(&[0; BUCKET_COUNT], 0.95), None);
        assert_eq!(percentile_bucket(&buckets, 0.95), Some((750, Some(1_000))));
        assert_eq!(percentile_bucket(&buckets, 0.01), Some((0, Some(25))));
        let mut top = vec![0; BUCKET_COUNT];
        top[16] = 1;
        assert_eq!(percentile_bucket(&top, 0.95), Some((60_000, None)));
        assert_eq!(percentile_bucket(&[0; BUCKET_COUNT], 0.95), None);
    }
}
