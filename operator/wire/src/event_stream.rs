//! The MCP probe's Server-Sent Events parser (the WHATWG event-stream rules) with a size cap
//! per event, which keeps what resuming a stream needs (`id:` and `retry:`). The router's
//! [`crate::sse::EventReader`] reads the same format as it passes through (it passes over an
//! oversized event where the probe fails); the fuzz target `event_stream` holds the two to the
//! same events.
//!
//! Pure: bytes in, events out. The caller feeds chunks as they arrive, so a server that streams
//! forever without ever ending an event is stopped by the cap, not by memory.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    pub data: String,
}

/// An event or line grew past the cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event exceeds {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

/// Incremental parser state.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next chunk belongs to that line end.
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    /// The last `id:` seen: what `Last-Event-ID` carries when the stream is resumed.
    pub last_event_id: Option<String>,
    /// The last `retry:` seen, in milliseconds: how long to wait before resuming.
    pub retry_ms: Option<u64>,
}

impl SseParser {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
            last_event_id: None,
            retry_ms: None,
        }
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, false);
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.process_line(&line)? {
                        events.push(event);
                    }
                }
                _ => {
                    self.line.push(byte);
                    if self.line.len() + self.data.len() > self.limit {
                        return Err(EventTooLarge { limit: self.limit });
                    }
                }
            }
        }
        Ok(events)
    }

    fn process_line(&mut self, raw: &[u8]) -> Result<Option<SseEvent>, EventTooLarge> {
        if raw.is_empty() {
            return Ok(self.dispatch());
        }
        let line = String::from_utf8_lossy(raw);
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.limit {
                    return Err(EventTooLarge { limit: self.limit });
                }
            }
            // An empty type is the default one, `message` (WHATWG: only a non-empty buffer
            // names the event).
            "event" => self.event = (!value.is_empty()).then(|| value.to_owned()),
            "id" if !value.contains('\0') => self.last_event_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let has_data = std::mem::replace(&mut self.has_data, false);
        let data = std::mem::take(&mut self.data);
        // An event with an empty data buffer is not dispatched (it may still set id/retry: the
        // "priming" events servers send before closing a stream they expect to be resumed).
        (has_data && !data.is_empty()).then_some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Vec<SseEvent> {
        SseParser::new(1024).feed(input.as_bytes()).unwrap()
    }

    #[test]
    fn an_empty_event_type_is_the_default_one() {
        let events = parse("event: x\nevent:\ndata: a\n\nevent:\ndata: b\n\n");
        assert_eq!(
            events,
            vec![SseEvent { event: None, data: "a".into() }, SseEvent { event: None, data: "b".into() }]
        );
    }

    #[test]
    fn events_are_split_named_and_multi_line_data_is_joined() {
        let events = parse("event: endpoint\ndata: /messages?s=1\n\ndata: a\ndata: b\n\n");
        assert_eq!(
            events,
            vec![
                SseEvent { event: Some("endpoint".into()), data: "/messages?s=1".into() },
                SseEvent { event: None, data: "a\nb".into() },
            ]
        );
    }

    #[test]
    fn crlf_cr_and_lf_line_ends_all_work_even_split_across_chunks() {
        let mut parser = SseParser::new(1024);
        let mut events = parser.feed(b"data: one\r").unwrap();
        events.extend(parser.feed(b"\n\r\ndata: two\r\r").unwrap());
        assert_eq!(events.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    }

    #[test]
    fn comments_are_ignored_and_incomplete_events_wait() {
        let mut parser = SseParser::new(1024);
        assert!(parser.feed(b": keepalive\n\ndata: {\"id\":1}").unwrap().is_empty());
        assert_eq!(parser.feed(b"\n\n").unwrap()[0].data, "{\"id\":1}");
    }

    #[test]
    fn priming_events_set_the_resume_point_without_dispatching() {
        let mut parser = SseParser::new(1024);
        assert!(parser.feed(b"id: event-1\nretry: 500\ndata: \n\n").unwrap().is_empty());
        assert_eq!(parser.last_event_id.as_deref(), Some("event-1"));
        assert_eq!(parser.retry_ms, Some(500));
    }

    #[test]
    fn an_event_or_a_line_over_the_cap_is_refused() {
        let mut parser = SseParser::new(16);
        assert_eq!(parser.feed(b"data: 0123456789\ndata: 0123456789\n"), Err(EventTooLarge { limit: 16 }));
        let mut parser = SseParser::new(16);
        assert!(parser.feed(&[b'x'; 17]).is_err());
    }
}
