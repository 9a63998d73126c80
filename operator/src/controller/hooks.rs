//! One bounded HTTP POST of JSON to a URL someone else runs: a gate's webhook or a notification
//! receiver. Whatever the other end does — answer slowly, redirect, send a gigabyte, close the
//! connection — the call ends within its timeout, follows nothing, reads at most `MAX_BODY`
//! bytes, and reports what happened in words fit for a status field.

use std::{net::SocketAddr, time::Duration};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};

/// The most of an answer's body that is read (and kept: the start of it).
pub const MAX_BODY: usize = 64 * 1024;

/// The most of an answer shown in a status message or an event.
const SHOWN: usize = 200;

/// A call's target: the URL, where its host was checked to resolve, and a bearer token.
pub struct Target<'a> {
    pub url: &'a str,
    /// The addresses the host must be reached at (the destination check's resolution); empty:
    /// the host is an address.
    pub pinned: &'a [SocketAddr],
    pub token: Option<&'a str>,
    pub timeout: Duration,
}

/// An answer: its status and the start of its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `HTTP 403: <the first 200 characters of the body, printable only>`.
    pub fn describe(&self) -> String {
        let text = shown(&self.body);
        if text.is_empty() {
            format!("HTTP {}", self.status)
        } else {
            format!("HTTP {}: {text}", self.status)
        }
    }
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0} is not a usable URL")]
    BadUrl(String),
    #[error("the token is not a valid header value")]
    BadToken,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
}

/// POSTs `body` (JSON) and reads the answer, all within `target.timeout`.
pub async fn post_json(target: &Target<'_>, body: &serde_json::Value) -> Result<Answer, HookError> {
    let url = reqwest::Url::parse(target.url).map_err(|_| HookError::BadUrl(redacted(target.url)))?;
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let mut builder = reqwest::Client::builder()
        // The URL is the author's: a redirect would send the token somewhere it does not name,
        // a proxy from the environment past the destination check.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(target.timeout);
    if !target.pinned.is_empty() {
        builder = builder.resolve_to_addrs(&host, target.pinned);
    }
    // Built once per process (`client_tls`), not for every call.
    builder = builder
        .tls_backend_preconfigured(crate::client_tls::for_scheme(url.scheme()).map_err(HookError::Request)?);
    let client = builder.build().map_err(|e| HookError::Request(e.to_string()))?;
    let mut request = client.post(url).header(CONTENT_TYPE, "application/json").body(body.to_string());
    if let Some(token) = target.token {
        let mut value =
            HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| HookError::BadToken)?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    let call = async {
        let mut response = request.send().await.map_err(|e| HookError::Request(without_url(e)))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HookError::Request(without_url(e)))? {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break; // the rest is not read: the connection is dropped with the stream
            }
        }
        Ok(Answer { status, body })
    };
    tokio::time::timeout(target.timeout, call).await.map_err(|_| HookError::Timeout(target.timeout))?
}

/// The start of a body as one line of printable text.
pub fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SHOWN * 4)]);
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(SHOWN).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A URL with its query and credentials removed: a Slack or ticketing URL carries its secret
/// in the path or query, so only scheme, host and port are shown.
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default())
                + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
        }
        Err(_) => "<unparsable URL>".into(),
    }
}

fn without_url(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_shown_as_one_printable_line_cut_short() {
        let answer = Answer { status: 403, body: b"{\"reason\":\n\"CAB\x07 meets\ton Tuesday\"}".to_vec() };
        assert_eq!(answer.describe(), "HTTP 403: {\"reason\": \"CAB meets on Tuesday\"}");
        assert_eq!(Answer { status: 500, body: vec![] }.describe(), "HTTP 500");
        assert_eq!(shown(&[b'x'; 10_000]).len(), 200);
        assert_eq!(shown(&[0xff, 0xfe, b'o', b'k']), "\u{fffd}\u{fffd}ok");
    }

    #[test]
    fn secrets_in_urls_are_never_shown() {
        assert_eq!(redacted("https://hooks.slack.com/services/T0/B0/XyZ?token=1"), "https://hooks.slack.com");
        assert_eq!(redacted("http://u:p@10.96.0.7:8080/x"), "http://10.96.0.7:8080");
    }
}
