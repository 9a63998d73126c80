//! The legacy HTTP+SSE transport announces where to POST in its first `endpoint` event
//! (`data: /messages?sessionId=<id>`). The router rewrites that one event so the client posts
//! with a sealed token instead of the backend's id; every later byte passes through untouched
//! and unbuffered. [`EventReader`] reads events as they pass (responses in a stream, and where
//! a stream can be ended between two events).

/// Longest prefix of a stream searched for the `endpoint` event; a backend that sends more
/// before it is not a legacy MCP server, and its stream is ended.
pub const MAX_PREAMBLE: usize = 16 * 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Not yet a whole event: read more.
    NeedMore,
    /// The bytes to send in place of the buffered ones (the endpoint event rewritten); the rest
    /// of the stream passes through.
    Done(Vec<u8>),
    /// No endpoint event where one must be.
    Invalid,
}

/// The backend session id in an endpoint URL (`...?sessionId=<id>` or `session_id=`).
pub fn session_of(url: &str) -> Option<(&str, &str)> {
    session_in_query(url.split_once('?')?.1)
}

/// The session parameter of a query string (without its `?`).
pub fn session_in_query(query: &str) -> Option<(&str, &str)> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "sessionId" || k == "session_id").then_some((k, v))
    })
}

/// Replaces the value of the session parameter in a URL's query.
pub fn with_session(url: &str, value: &str) -> String {
    let Some((path, query)) = url.split_once('?') else { return url.to_owned() };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == "sessionId" || k == "session_id" => format!("{k}={value}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Looks for the first complete event in `buffer`; when it is the endpoint event, its URL's
/// session id goes through `seal` (which returns the token to put there).
pub fn rewrite_endpoint(buffer: &[u8], seal: impl FnOnce(&str) -> Option<String>) -> Rewrite {
    let text = match std::str::from_utf8(buffer) {
        Ok(t) => t,
        // A multi-byte character cut at the end: wait for the rest (bounded by the caller).
        Err(e) if e.error_len().is_none() => return more(buffer),
        Err(_) => return Rewrite::Invalid,
    };
    let normalized = text.replace("\r\n", "\n");
    let mut offset = 0;
    // Comments and retry hints may come first; the first real event must be the endpoint.
    loop {
        let Some(len) = normalized[offset..].find("\n\n") else { return more(buffer) };
        let event = &normalized[offset..offset + len];
        let mut name = "message";
        let mut data = Vec::new();
        let mut only_comments = true;
        for line in event.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim();
                only_comments = false;
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v));
                only_comments = false;
            } else if !(line.starts_with(':') || line.starts_with("retry:") || line.is_empty()) {
                only_comments = false;
            }
        }
        if only_comments {
            offset += len + 2;
            continue;
        }
        if name != "endpoint" {
            return Rewrite::Invalid;
        }
        let url = data.join("\n");
        let Some((_, session)) = session_of(&url) else { return Rewrite::Invalid };
        let Some(token) = seal(session) else { return Rewrite::Invalid };
        let mut out = normalized.as_bytes()[..offset].to_vec();
        out.extend_from_slice(format!("event: endpoint\ndata: {}", with_session(&url, &token)).as_bytes());
        out.extend_from_slice(&normalized.as_bytes()[offset + len..]);
        return Rewrite::Done(out);
    }
}

fn more(buffer: &[u8]) -> Rewrite {
    if buffer.len() > MAX_PREAMBLE { Rewrite::Invalid } else { Rewrite::NeedMore }
}

/// Longest event whose data is read (a JSON-RPC response in an SSE stream); a longer one is
/// passed over (forwarded, never read).
pub const MAX_EVENT: usize = 1024 * 1024;

/// One complete event: its name (`message` by default) and its data lines joined.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Reads an SSE stream as its bytes pass, event by event (line ends LF, CRLF or CR, as the
/// SSE format allows), holding at most one event of at most `max` bytes (a longer one is
/// passed over to its end, unread); knows whether the bytes so far end between two events —
/// where a stream can be ended without cutting one.
#[derive(Debug)]
pub struct EventReader {
    /// The current line's bytes (not kept while skipping).
    line: Vec<u8>,
    /// The current line's length, kept or not.
    line_len: usize,
    name: Option<String>,
    data: Vec<String>,
    /// Some byte of the current event was seen.
    begun: bool,
    /// Bytes of the current event so far.
    size: usize,
    skipping: bool,
    after_cr: bool,
    max: usize,
}

impl Default for EventReader {
    fn default() -> Self {
        Self::new(MAX_EVENT)
    }
}

impl EventReader {
    pub fn new(max: usize) -> Self {
        Self {
            line: Vec::new(),
            line_len: 0,
            name: None,
            data: Vec::new(),
            begun: false,
            size: 0,
            skipping: false,
            after_cr: false,
            max,
        }
    }

    /// Whether everything fed so far ends on an event boundary (nothing of a next event yet).
    pub fn at_boundary(&self) -> bool {
        !self.begun && self.line_len == 0
    }

    /// Feeds bytes; calls `on_event` for each event they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(Event)) {
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue; // the LF of a CRLF
            }
            if b == b'\n' || b == b'\r' {
                self.after_cr = b == b'\r';
                self.end_line(&mut on_event);
                continue;
            }
            self.begun = true;
            self.line_len += 1;
            self.size += 1;
            if self.size > self.max && !self.skipping {
                self.skipping = true;
                self.line = Vec::new();
                self.data = Vec::new();
            }
            if !self.skipping {
                self.line.push(b);
            }
        }
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(Event)) {
        if self.line_len == 0 {
            // A blank line ends the event (an event of comments only dispatches nothing).
            if self.begun && !self.skipping && (!self.data.is_empty() || self.name.is_some()) {
                let event = Event {
                    name: self.name.take().unwrap_or_else(|| "message".into()),
                    data: std::mem::take(&mut self.data).join("\n"),
                };
                on_event(event);
            }
            self.name = None;
            self.data.clear();
            self.begun = false;
            self.size = 0;
            self.skipping = false;
            return;
        }
        self.line_len = 0;
        if self.skipping {
            return;
        }
        let line = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            // An empty type is the default one, `message` (WHATWG).
            "event" => self.name = (!value.is_empty()).then(|| value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            _ => {} // comments (empty field), id, retry
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_event_gets_the_token_and_the_rest_is_kept() {
        let stream =
            b"event: endpoint\ndata: /messages?sessionId=abc123\n\nevent: message\ndata: {\"x\":1}\n\n";
        let out = rewrite_endpoint(stream, |id| Some(format!("TOKEN-{id}")));
        let Rewrite::Done(out) = out else { panic!("{out:?}") };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: endpoint\ndata: /messages?sessionId=TOKEN-abc123\n\nevent: message\ndata: {\"x\":1}\n\n"
        );
        let crlf =
            rewrite_endpoint(b"event: endpoint\r\ndata: /m?a=1&session_id=z\r\n\r\n", |_| Some("T".into()));
        assert_eq!(crlf, Rewrite::Done(b"event: endpoint\ndata: /m?a=1&session_id=T\n\n".to_vec()));
    }

    #[test]
    fn partial_events_wait_and_anything_else_is_refused() {
        assert_eq!(rewrite_endpoint(b"event: endpoint\ndata: /messages?sess", |_| None), Rewrite::NeedMore);
        assert_eq!(rewrite_endpoint(b": keep-alive\n\n", |_| None), Rewrite::NeedMore);
        let after_comment =
            rewrite_endpoint(b": hi\n\nevent: endpoint\ndata: /m?sessionId=1\n\n", |_| Some("T".into()));
        assert_eq!(
            after_comment,
            Rewrite::Done(b": hi\n\nevent: endpoint\ndata: /m?sessionId=T\n\n".to_vec())
        );
        assert_eq!(rewrite_endpoint(b"event: message\ndata: {}\n\n", |_| Some("T".into())), Rewrite::Invalid);
        assert_eq!(
            rewrite_endpoint(b"event: endpoint\ndata: /messages\n\n", |_| Some("T".into())),
            Rewrite::Invalid
        );
        assert_eq!(rewrite_endpoint(&vec![b'a'; MAX_PREAMBLE + 1], |_| None), Rewrite::Invalid);
        assert_eq!(rewrite_endpoint(b"\xff\xff\n\n", |_| None), Rewrite::Invalid);
    }

    fn events(chunks: &[&[u8]], max: usize) -> (Vec<Event>, bool) {
        let mut reader = EventReader::new(max);
        let mut out = Vec::new();
        for c in chunks {
            reader.feed(c, |e| out.push(e));
        }
        (out, reader.at_boundary())
    }

    #[test]
    fn events_are_read_across_chunks_and_line_endings() {
        let (out, boundary) = events(&[b"event: mess", b"age\ndata: {\"a\"", b":1}\n", b"\n"], MAX_EVENT);
        assert_eq!(out, vec![Event { name: "message".into(), data: "{\"a\":1}".into() }]);
        assert!(boundary);
        let (out, boundary) = events(&[b"data: a\r\ndata: b\r\n\r\n: ping\r\rdata: c\r"], MAX_EVENT);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].data, "a\nb");
        assert!(!boundary, "data: c is an event begun, not ended");
        let (out, boundary) = events(&[b": keep-alive\n\n", b"id: 7\nretry: 10\n\n"], MAX_EVENT);
        assert!(out.is_empty() && boundary, "comments and ids alone dispatch nothing");
    }

    #[test]
    fn an_empty_event_type_is_the_default_one() {
        let (out, _) = events(&[b"event: x\nevent:\ndata: a\n\n"], MAX_EVENT);
        assert_eq!(out, vec![Event { name: "message".into(), data: "a".into() }]);
    }

    #[test]
    fn an_oversized_event_is_passed_over_and_the_next_is_read() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let (out, boundary) = events(&[big.as_bytes(), b"data: small\n\n"], 50);
        assert_eq!(out, vec![Event { name: "message".into(), data: "small".into() }]);
        assert!(boundary);
        let (_, boundary) = events(&[b"data: partial"], 50);
        assert!(!boundary);
    }
}
