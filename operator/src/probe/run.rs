//! One probe, start to end: version negotiation in both eras, transport fallback, the tool
//! list, the optional tool call, and the sweep of every handshake version the server serves.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    config::{ProbeConfig, TransportChoice},
    error::ProbeError,
    expect,
    http::HttpContext,
    legacy::LegacyChannel,
    report::{Failure, ProbeReport, StepRecord, Tool, TransportUsed},
    streamable::{StreamableChannel, client_info},
};
use crate::api::protocol::{Era, era_of};

/// A live conversation with the server, whichever transport and era.
enum Channel<'a> {
    Streamable(StreamableChannel<'a>),
    Legacy(Box<LegacyChannel<'a>>),
}

impl Channel<'_> {
    async fn request(
        &mut self,
        method: &str,
        params: Value,
        name: Option<&str>,
    ) -> Result<Value, ProbeError> {
        match self {
            Self::Streamable(c) => c.request(method, params, name).await,
            Self::Legacy(c) => c.request(method, params).await,
        }
    }

    async fn close(&mut self) {
        if let Self::Streamable(c) = self {
            c.close().await;
        }
    }
}

/// What `initialize` or `server/discover` told about the server.
struct Opened<'a> {
    channel: Channel<'a>,
    version: String,
    transport: TransportUsed,
    server_info: Option<Value>,
    capabilities: Option<Value>,
}

/// The probe in progress: its report and the step being run.
struct Probe<'a> {
    config: &'a ProbeConfig,
    http: &'a HttpContext,
    report: ProbeReport,
    step: String,
    /// The transport the handshake era settled on, reused for the version sweep.
    handshake_transport: Option<TransportUsed>,
}

/// Probes `config.url`. Never panics and never returns an error: every failure is in the report.
pub async fn probe(config: &ProbeConfig) -> ProbeReport {
    let started = Instant::now();
    let mut report = ProbeReport { url: config.url.clone(), ..ProbeReport::default() };
    match HttpContext::new(config, started) {
        Ok(http) => {
            let mut probe =
                Probe { config, http: &http, report, step: "connect".into(), handshake_transport: None };
            let outcome = probe.run().await;
            report = probe.report;
            if let Err(error) = outcome {
                report.failure =
                    Some(Failure { kind: error.kind(), step: probe.step, message: error.to_string() });
            }
        }
        Err(error) => {
            report.failure =
                Some(Failure { kind: error.kind(), step: "configure".into(), message: error.to_string() });
        }
    }
    report.passed = report.failure.is_none();
    report.millis = millis_since(started);
    report
}

fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl<'a> Probe<'a> {
    /// Runs `work` as a named step, recording its time and outcome.
    async fn step<T>(
        &mut self,
        name: &str,
        version: Option<&str>,
        work: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        name.clone_into(&mut self.step);
        let start = Instant::now();
        let outcome = work.await;
        self.report.steps.push(StepRecord {
            step: name.to_owned(),
            protocol_version: version.map(str::to_owned),
            millis: millis_since(start),
            ok: outcome.is_ok(),
        });
        outcome
    }

    async fn run(&mut self) -> Result<(), ProbeError> {
        let stateless = self.config.versions_of(Era::Stateless);
        let handshake = self.config.versions_of(Era::Handshake);
        let mut served = BTreeSet::new();
        let mut refusal = None;

        let mut primary = None;
        if self.config.transport != TransportChoice::Sse && !stateless.is_empty() {
            match self.discover(&stateless).await {
                Ok((opened, supported)) => {
                    served.extend(supported);
                    primary = Some(opened);
                }
                // The server does not speak the stateless era (or not a version we accept):
                // the handshake era decides.
                Err(error) if error.is_refusal() && !handshake.is_empty() => refusal = Some(error),
                Err(error) => return Err(error),
            }
        }
        let mut primary = match primary {
            Some(opened) => opened,
            None => {
                let Some(newest) = handshake.first() else {
                    return Err(
                        refusal.unwrap_or_else(|| ProbeError::VersionRejected("no version to offer".into()))
                    );
                };
                let opened = self.initialize(newest).await?;
                if !handshake.contains(&opened.version) {
                    "initialize".clone_into(&mut self.step);
                    let mut channel = opened.channel;
                    channel.close().await;
                    return Err(ProbeError::VersionRejected(format!(
                        "initialize offered {newest} and the server answered {}, which is not accepted ({})",
                        opened.version,
                        self.config.accepted_versions.join(", ")
                    )));
                }
                opened
            }
        };
        self.report.transport = Some(primary.transport);
        self.report.protocol_version = Some(primary.version.clone());
        self.report.server_info = primary.server_info.take();
        self.report.capabilities = primary.capabilities.take();

        let version = primary.version.clone();
        let outcome = self.list_and_call(&mut primary.channel, &version).await;
        primary.channel.close().await;
        outcome?;

        // A handshake-era primary already offered the newest handshake version: its answer
        // says whether that version is served, so the sweep starts after it.
        let mut to_sweep = handshake.as_slice();
        if era_of(&version) == Era::Handshake {
            if handshake.first() == Some(&version) {
                served.insert(version.clone());
            }
            to_sweep = handshake.get(1..).unwrap_or_default();
        }
        served.extend(self.sweep_handshake_versions(to_sweep).await?);
        self.report.protocol_versions = served.into_iter().collect();
        Ok(())
    }

    /// `server/discover` at the newest accepted stateless version; after a -32022, once more at
    /// the newest version both sides name. Returns the channel and the server's version list.
    async fn discover(&mut self, accepted: &[String]) -> Result<(Opened<'a>, Vec<String>), ProbeError> {
        let mut version = accepted[0].clone();
        for attempt in 0..2 {
            let mut channel = StreamableChannel::new(self.http, Era::Stateless, &version);
            let outcome = self
                .step("server/discover", Some(&version), channel.request("server/discover", json!({}), None))
                .await;
            let result = match outcome {
                Ok(result) => result,
                Err(error) => {
                    let mutual = error.supported_versions().and_then(|s| newest_common(accepted, &s));
                    match mutual {
                        Some(mutual) if attempt == 0 && mutual != version => {
                            version = mutual;
                            continue;
                        }
                        Some(_) | None if error.supported_versions().is_some() => {
                            return Err(ProbeError::VersionRejected(format!(
                                "server/discover at {version}: the server supports {:?}, accepted are {accepted:?}",
                                error.supported_versions().unwrap_or_default()
                            )));
                        }
                        _ => return Err(error),
                    }
                }
            };
            let supported: Vec<String> = result
                .get("supportedVersions")
                .and_then(Value::as_array)
                .ok_or_else(|| ProbeError::NotMcp("server/discover result has no supportedVersions".into()))?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            match newest_common(accepted, &supported) {
                Some(mutual) if mutual == version => {
                    let server_info = result.pointer("/_meta/io.modelcontextprotocol~1serverInfo").cloned();
                    let capabilities = result.get("capabilities").cloned();
                    let opened = Opened {
                        channel: Channel::Streamable(channel),
                        version,
                        transport: TransportUsed::StreamableHttp,
                        server_info,
                        capabilities,
                    };
                    return Ok((opened, supported));
                }
                Some(mutual) if attempt == 0 => version = mutual,
                // Discover answered but lists no stateless version we accept: a handshake-era
                // server that knows the method (the SDKs treat this as a legacy advertisement).
                _ => {
                    return Err(ProbeError::NotMcp(format!(
                        "server/discover lists {supported:?}: no accepted stateless version"
                    )));
                }
            }
        }
        Err(ProbeError::VersionRejected(format!(
            "server/discover never settled on a version from {accepted:?}"
        )))
    }

    /// `initialize` offering `offer`, then `notifications/initialized`, on the transport the
    /// configuration (or an earlier fallback) chose.
    async fn initialize(&mut self, offer: &str) -> Result<Opened<'a>, ProbeError> {
        let transport = match (self.handshake_transport, self.config.transport) {
            (Some(settled), _) => settled,
            (None, TransportChoice::Sse) => TransportUsed::Sse,
            (None, _) => TransportUsed::StreamableHttp,
        };
        let outcome = self.initialize_on(transport, offer).await;
        let outcome = match outcome {
            // The spec's backwards compatibility: a 4xx to the initialize POST means an old
            // server; GET the URL and expect an SSE stream with an endpoint event.
            Err(error @ ProbeError::Http { status: status @ 400..=499, .. })
                if self.handshake_transport.is_none() && self.config.transport == TransportChoice::Auto =>
            {
                self.initialize_on(TransportUsed::Sse, offer).await.map_err(|sse_error| match sse_error {
                    ProbeError::Http { .. } | ProbeError::NotMcp(_) => ProbeError::Http {
                        status,
                        detail: format!("{error}; the legacy SSE fallback failed too: {sse_error}"),
                    },
                    other => other,
                })
            }
            other => other,
        }?;
        self.handshake_transport = Some(outcome.transport);
        Ok(outcome)
    }

    async fn initialize_on(
        &mut self,
        transport: TransportUsed,
        offer: &str,
    ) -> Result<Opened<'a>, ProbeError> {
        let params = json!({"protocolVersion": offer, "capabilities": {}, "clientInfo": client_info()});
        let (mut channel, result) = match transport {
            TransportUsed::StreamableHttp => {
                let mut channel = StreamableChannel::new(self.http, Era::Handshake, offer);
                let result =
                    self.step("initialize", Some(offer), channel.request("initialize", params, None)).await?;
                (Channel::Streamable(channel), result)
            }
            TransportUsed::Sse => {
                let mut channel = self.step("open sse stream", None, LegacyChannel::open(self.http)).await?;
                let result =
                    self.step("initialize", Some(offer), channel.request("initialize", params)).await?;
                (Channel::Legacy(Box::new(channel)), result)
            }
        };
        let Some(version) = result.get("protocolVersion").and_then(Value::as_str).map(str::to_owned) else {
            channel.close().await;
            return Err(ProbeError::NotMcp("initialize result has no protocolVersion".into()));
        };
        let notified = match &mut channel {
            Channel::Streamable(c) => {
                c.initialized(&version);
                self.step("notifications/initialized", Some(&version), c.notify("notifications/initialized"))
                    .await
            }
            Channel::Legacy(c) => {
                self.step("notifications/initialized", Some(&version), c.notify("notifications/initialized"))
                    .await
            }
        };
        if let Err(error) = notified {
            channel.close().await;
            return Err(error);
        }
        Ok(Opened {
            channel,
            version,
            transport,
            server_info: result.get("serverInfo").cloned(),
            capabilities: result.get("capabilities").cloned(),
        })
    }

    async fn list_and_call(&mut self, channel: &mut Channel<'_>, version: &str) -> Result<(), ProbeError> {
        let mut cursor: Option<String> = None;
        let mut seen_cursors = BTreeSet::new();
        for page in 0.. {
            if page >= self.config.limits.max_pages {
                return Err(ProbeError::NotMcp(format!("tools/list has more than {page} pages")));
            }
            let params = cursor.as_ref().map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let result =
                self.step("tools/list", Some(version), channel.request("tools/list", params, None)).await?;
            let tools = result
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| ProbeError::NotMcp("tools/list result has no tools array".into()))?;
            for tool in tools {
                let tool: Tool = serde_json::from_value(tool.clone())
                    .map_err(|e| ProbeError::NotMcp(format!("tools/list lists a malformed tool ({e})")))?;
                if !tool.input_schema.is_object() {
                    return Err(ProbeError::NotMcp(format!("tool {} has no inputSchema object", tool.name)));
                }
                self.report.tools.push(tool);
            }
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            match &cursor {
                None => break,
                Some(c) if !seen_cursors.insert(c.clone()) => {
                    return Err(ProbeError::NotMcp(format!("tools/list pagination loops on cursor {c:?}")));
                }
                Some(_) => {}
            }
        }
        let listed: BTreeSet<&str> = self.report.tools.iter().map(|t| t.name.as_str()).collect();
        let missing: Vec<String> =
            self.config.expected_tools.iter().filter(|t| !listed.contains(t.as_str())).cloned().collect();
        self.step("expected tools", None, async {
            if missing.is_empty() { Ok(()) } else { Err(ProbeError::MissingTools { missing }) }
        })
        .await?;
        if let Some(call) = &self.config.tool_call {
            let params = json!({"name": call.name, "arguments": call.arguments});
            let result = self
                .step("tools/call", Some(version), channel.request("tools/call", params, Some(&call.name)))
                .await?;
            let outcome = expect::outcome_of(&call.name, &result)?;
            self.report.tool_call = Some(outcome.clone());
            self.step("tool result", None, async { expect::check(&outcome, call.expect.as_ref()) }).await?;
        }
        Ok(())
    }

    /// Which handshake versions `initialize` accepts as offered: a version the canary stops
    /// serving strands the agents still on it.
    async fn sweep_handshake_versions(&mut self, versions: &[String]) -> Result<Vec<String>, ProbeError> {
        let mut served = Vec::new();
        for offer in versions {
            match self.initialize(offer).await {
                Ok(mut opened) => {
                    if &opened.version == offer {
                        served.push(offer.clone());
                    }
                    opened.channel.close().await;
                }
                // Refusing a version it does not serve is what a server may do.
                Err(error) if error.is_refusal() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(served)
    }
}

/// The newest of `ours` (newest first) that `theirs` lists.
fn newest_common(ours: &[String], theirs: &[String]) -> Option<String> {
    ours.iter().find(|v| theirs.contains(v)).cloned()
}
