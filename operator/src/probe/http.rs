//! The probe's HTTP layer: one client per probe with its deadlines, size caps, same-origin
//! redirects and trust roots; bodies and SSE streams read under those bounds.

use std::{collections::VecDeque, time::Duration};

use mcp_wire::event_stream::{SseEvent, SseParser};
use reqwest::{
    RequestBuilder, Response, Url,
    header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue},
};
use tokio::time::Instant;

use super::{
    config::{Limits, ProbeConfig},
    error::ProbeError,
};

/// Everything a request of this probe needs.
pub struct HttpContext {
    client: reqwest::Client,
    headers: HeaderMap,
    pub limits: Limits,
    pub url: Url,
    deadline: Instant,
    total_timeout: Duration,
    step_timeout: Duration,
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl HttpContext {
    pub fn new(config: &ProbeConfig, started: Instant) -> Result<Self, ProbeError> {
        let url = Url::parse(&config.url)
            .map_err(|e| ProbeError::Connect(format!("bad URL {}: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ProbeError::Connect(format!("{} is not an http(s) URL", config.url)));
        }
        let max_redirects = config.limits.max_redirects;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            let leaves_origin =
                attempt.previous().first().is_some_and(|first| !same_origin(first, attempt.url()));
            if leaves_origin || attempt.previous().len() > max_redirects {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            // A probe reaches the pod it was pointed at, never a proxy from the environment.
            .no_proxy()
            .redirect(redirects)
            .connect_timeout(config.step_timeout)
            .user_agent(concat!("mcp-rollout-probe/", env!("CARGO_PKG_VERSION")));
        if let (Some(address), Some(host)) = (config.connect_to, url.host_str()) {
            // The URL's host is what the certificate is checked against; the connection goes
            // to the pod itself (reqwest takes the port from the URL).
            builder = builder.resolve(host, address);
        }
        builder = match &config.ca_bundle_pem {
            Some(pem) => {
                let roots = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| ProbeError::Tls(format!("CA bundle is not PEM certificates: {e}")))?;
                if roots.is_empty() {
                    return Err(ProbeError::Tls("CA bundle holds no certificate".into()));
                }
                builder.tls_certs_only(roots)
            }
            // Built once per process (`client_tls`), not for every client.
            None => builder.tls_backend_preconfigured(
                crate::client_tls::for_scheme(url.scheme()).map_err(ProbeError::Tls)?,
            ),
        };
        let client =
            builder.build().map_err(|e| ProbeError::Tls(format!("cannot build the HTTP client: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, text) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ProbeError::Connect(format!("bad header name {name:?}")))?;
            let mut value = HeaderValue::from_str(text.value())
                .map_err(|_| ProbeError::Connect(format!("bad value for header {name}")))?;
            value.set_sensitive(text.is_secret());
            headers.append(name, value);
        }
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.0.trim()))
                .map_err(|_| ProbeError::Connect("the bearer token is not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        Ok(Self {
            client,
            headers,
            limits: config.limits,
            url,
            deadline: started + config.timeout,
            total_timeout: config.timeout,
            step_timeout: config.step_timeout,
        })
    }

    /// When the current step must be done: its own timeout, or the probe's, whichever is first.
    pub fn step_deadline(&self) -> Instant {
        (Instant::now() + self.step_timeout).min(self.deadline)
    }

    fn timeout_error(&self) -> ProbeError {
        if Instant::now() >= self.deadline {
            ProbeError::Timeout(self.total_timeout)
        } else {
            ProbeError::Timeout(self.step_timeout)
        }
    }

    pub fn post(&self, url: &Url) -> RequestBuilder {
        self.client.post(url.clone()).headers(self.headers.clone())
    }

    pub fn get(&self, url: &Url) -> RequestBuilder {
        self.client.get(url.clone()).headers(self.headers.clone())
    }

    pub fn delete(&self, url: &Url) -> RequestBuilder {
        self.client.delete(url.clone()).headers(self.headers.clone())
    }

    /// Sends, failing at the deadline. A redirect that was not followed (it left the origin or
    /// looped) comes back as an HTTP status error.
    pub async fn send(&self, request: RequestBuilder, deadline: Instant) -> Result<Response, ProbeError> {
        let response = tokio::time::timeout_at(deadline, request.send())
            .await
            .map_err(|_| self.timeout_error())?
            .map_err(|e| ProbeError::from_reqwest(&e, self.step_timeout))?;
        if response.status().is_redirection() {
            let location =
                response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
            return Err(ProbeError::Http {
                status: response.status().as_u16(),
                detail: format!("redirect to {location} not followed (off the target, or too many)"),
            });
        }
        Ok(response)
    }

    /// Reads a whole body, refusing more than the cap.
    pub async fn read_body(&self, mut response: Response, deadline: Instant) -> Result<Vec<u8>, ProbeError> {
        let cap = self.limits.max_response_bytes;
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| self.timeout_error())?
                .map_err(|e| ProbeError::from_reqwest(&e, self.step_timeout))?;
            let Some(chunk) = chunk else { return Ok(body) };
            if body.len() + chunk.len() > cap {
                return Err(ProbeError::NotMcp(format!("response body exceeds {cap} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
    }

    pub fn sse(&self, response: Response) -> SseStream {
        SseStream {
            response,
            parser: SseParser::new(self.limits.max_event_bytes),
            read: 0,
            cap: self.limits.max_response_bytes,
            pending: VecDeque::new(),
        }
    }

    /// The deadline error for a stream read, with the right duration.
    pub fn stream_timeout(&self) -> ProbeError {
        self.timeout_error()
    }
}

/// An SSE response being read event by event.
pub struct SseStream {
    response: Response,
    pub parser: SseParser,
    read: usize,
    cap: usize,
    pending: VecDeque<SseEvent>,
}

impl SseStream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(
        &mut self,
        http: &HttpContext,
        deadline: Instant,
    ) -> Result<Option<SseEvent>, ProbeError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .map_err(|_| http.stream_timeout())?
                // A stream cut mid-way is an ended stream: the caller decides whether to resume.
                .unwrap_or(None);
            let Some(chunk) = chunk else { return Ok(None) };
            self.read += chunk.len();
            if self.read > self.cap {
                return Err(ProbeError::NotMcp(format!(
                    "SSE stream exceeds {} bytes without the answer",
                    self.cap
                )));
            }
            let events = self.parser.feed(&chunk).map_err(|e| ProbeError::NotMcp(e.to_string()))?;
            self.pending.extend(events);
        }
    }
}

/// `text/event-stream` or `application/json`, from a response's content type.
pub fn content_type(response: &Response) -> String {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_effective_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(&u("http://a:80/x"), &u("http://a/y")));
        assert!(!same_origin(&u("http://a/x"), &u("https://a/x")));
        assert!(!same_origin(&u("http://a:1/x"), &u("http://a:2/x")));
        assert!(!same_origin(&u("http://a/x"), &u("http://b/x")));
    }
}
