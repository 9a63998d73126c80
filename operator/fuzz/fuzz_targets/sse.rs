//! SSE reading: any byte stream, cut into chunks anywhere, gives the same events as in one
//! piece and never panics; the legacy endpoint rewrite never panics and keeps the bytes after
//! the endpoint event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_wire::sse::{self, EventReader};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let whole = read(&[stream]);
    let at = usize::from(cut) % (stream.len() + 1);
    let (a, b) = stream.split_at(at);
    assert_eq!(read(&[a, b]), whole, "chunking changed the events");
    let one_by_one: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(read(&one_by_one), whole);
    if let sse::Rewrite::Done(out) = sse::rewrite_endpoint(stream, |id| Some(format!("T{}", id.len()))) {
        assert!(!out.is_empty());
    }
});

fn read(chunks: &[&[u8]]) -> (Vec<(String, String)>, bool) {
    let mut reader = EventReader::new(256);
    let mut events = Vec::new();
    for chunk in chunks {
        reader.feed(chunk, |e| events.push((e.name, e.data)));
    }
    (events, reader.at_boundary())
}
