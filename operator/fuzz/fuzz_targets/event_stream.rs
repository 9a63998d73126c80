//! The probe's SSE parser: any byte stream, cut anywhere, gives the same events, last event id
//! and retry hint as in one piece, and the same events as the router's reader (both read the
//! WHATWG event-stream format; the router also dispatches data-less events, which carry
//! nothing to read); a small cap ends a stream with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_wire::{event_stream::SseParser, sse::EventReader};

/// Far above libFuzzer's input sizes: no event here reaches either parser's cap.
const LIMIT: usize = 1 << 20;

type Read = (Vec<(String, String)>, Option<String>, Option<u64>);

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = probe(&[stream]);
    let at = usize::from(cut) % (stream.len() + 1);
    let (a, b) = stream.split_at(at);
    assert_eq!(probe(&[a, b]), whole, "chunking changed what the probe read");
    let one_by_one: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(probe(&one_by_one), whole);

    let mut routed = Vec::new();
    EventReader::new(LIMIT).feed(stream, |e| {
        if !e.data.is_empty() {
            routed.push((e.name, e.data));
        }
    });
    assert_eq!(routed, whole.0, "the probe and the router read different events");

    let _ = SseParser::new(usize::from(cut) % 64).feed(stream);
});

fn probe(chunks: &[&[u8]]) -> Read {
    let mut parser = SseParser::new(LIMIT);
    let mut events = Vec::new();
    for chunk in chunks {
        for event in parser.feed(chunk).expect("no event reaches the cap") {
            assert!(!event.data.is_empty(), "an event without data was dispatched");
            events.push((event.event.unwrap_or_else(|| "message".into()), event.data));
        }
    }
    (events, parser.last_event_id, parser.retry_ms)
}
