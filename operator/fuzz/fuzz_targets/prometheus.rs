//! Prometheus answers: any body reads as numbers, a classified error or "unexpected" without
//! panicking, and a number read is always finite (NaN and ±Inf read as no number).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_wire::prometheus::{read_answer, scalar_of, series_of};

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = read_answer(200, data) else { return };
    if let Ok(Some(value)) = scalar_of(answer.data()) {
        assert!(value.is_finite());
    }
    if let Ok(series) = series_of(answer.data()) {
        assert!(series.iter().all(|(_, value)| value.is_finite()));
    }
});
