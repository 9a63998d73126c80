//! The legacy HTTP+SSE transport announces where to POST in its first `endpoint` event
//! (`data: /messages?sessionId=<id>`). The router rewrites that one event so the client posts
//! with a sealed token instead of the backend's id; every later byte passes through untouched
//! and unbuffered.

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
}
