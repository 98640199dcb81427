//! The backend's HTTP publish endpoint.
//!
//! `POST <path>?channel=NAME[&channel=NAME2...]` with the message as the body (text/plain
//! and application/json become text frames, application/octet-stream binary); the same
//! as a JSON envelope (`application/vnd.heartwire+json`: `{"channels": [...], "data": ...}`);
//! or the Tornado-style `GET <path>?msg=M[&channel=NAME]`. No channel means every
//! connection. A channel nobody holds is not an error (`queued: 0`: that user is
//! offline); a name no route could ever give a connection is (404). The answer counts
//! the connections queued for, per channel its subscribers, and for channels with history
//! the message's position (the channel's epoch and the message's offset). An `Idempotency-Key` header makes a retry
//! answer the same without publishing twice (see [`super::idempotency`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::form;
use super::rate_limit::RateLimit;
use crate::channels::check_channel;
use crate::config::PublishConfig;
use crate::fanout::{Broker, BrokerError, Claim, Hub, Receipt, Target, check_key};
use crate::http::{self, Body, Refusal};
use crate::wire::Payload;

/// Every status this endpoint answers with (metrics export each from the start). A test
/// holds it to the statuses this file names.
pub(super) const ANSWERS: [StatusCode; 12] = [
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::UNAUTHORIZED,
    StatusCode::FORBIDDEN,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::CONFLICT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// Most channels one publish may name.
pub(super) const MAX_PUBLISH_CHANNELS: usize = 64;

/// The media type of a publish whose body is an envelope naming channels and data.
const ENVELOPE: &str = "application/vnd.heartwire+json";

/// The header that makes a retried publish safe.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What the endpoint needs besides the request.
pub(super) struct Publisher<'a> {
    pub broker: &'a dyn Broker,
    pub hub: &'a Hub,
    pub config: &'a PublishConfig,
    pub limit: &'a RateLimit,
    pub body_timeout: Duration,
}

/// Handles one publish request.
pub(super) async fn handle(p: Publisher<'_>, req: Request<Incoming>) -> Response<Body> {
    answer(&p, req).await.unwrap_or_else(Refusal::into_response)
}

async fn answer(p: &Publisher<'_>, req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
    authorize(p.config, req.headers())?;
    // After the token check, so strangers cannot spend the publishers' budget.
    throttle(p.config, p.limit)?;
    let key = match req.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(v) => Some(
            check_key(v.as_bytes())
                .map_err(|why| Refusal::new(StatusCode::BAD_REQUEST, why))?
                .to_owned(),
        ),
    };
    let Some(key) = key else {
        let (channels, receipt) = publish(p, req).await?;
        return Ok(ok(reply(channels, receipt)));
    };
    match p.broker.claim(&key).await.map_err(unavailable)? {
        Claim::Answered(body) => {
            p.hub.metrics().idempotent_replay();
            let mut res = ok(body);
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Claim::InFlight => Err(Refusal::new(
            StatusCode::CONFLICT,
            "a publish with this Idempotency-Key is still in flight: wait for its answer, then retry",
        )),
        Claim::Fresh => {
            // Frees the key if this request is dropped half way.
            let mut claim = Claimed {
                broker: p.broker,
                key: &key,
                settled: false,
            };
            let published = publish(p, req).await;
            claim.settled = true;
            match published {
                Ok((channels, receipt)) => {
                    let body = reply(channels, receipt);
                    p.broker.answered(&key, body.clone()).await;
                    Ok(ok(body))
                }
                Err(refusal) => {
                    // Released before the answer: a retry that follows it may publish.
                    p.broker.failed(&key).await;
                    Err(refusal)
                }
            }
        }
    }
}

/// A fresh claim on a key, released if the request ends before it is settled.
struct Claimed<'a> {
    broker: &'a dyn Broker,
    key: &'a str,
    settled: bool,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let release = self.broker.failed(self.key);
            // Outside a runtime (its shutdown) a shared claim lapses on its own.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(release);
            }
        }
    }
}

/// The 200 answer's body: `{"queued": N, "channels": {"news": n}}`, per channel the
/// connections holding it, and for channels with history `"positions": {"news":
/// {"epoch": E, "offset": O}}`, where the message sits (what a client recovers from).
fn reply(channels: Vec<String>, receipt: Receipt) -> Bytes {
    let mut reply = serde_json::json!({ "queued": receipt.queued });
    if !channels.is_empty() {
        let mut per = serde_json::Map::new();
        let mut positions = serde_json::Map::new();
        for (name, d) in channels.into_iter().zip(receipt.per_channel) {
            if let Some((epoch, offset)) = d.at {
                let at = serde_json::json!({ "epoch": epoch.as_ref(), "offset": offset });
                positions.insert(name.clone(), at);
            }
            per.insert(name, d.subscribers.into());
        }
        reply["channels"] = per.into();
        if !positions.is_empty() {
            reply["positions"] = positions.into();
        }
    }
    Bytes::from(reply.to_string() + "\n")
}

fn ok(body: Bytes) -> Response<Body> {
    http::text(StatusCode::OK, body, "application/json")
}

async fn publish(
    p: &Publisher<'_>,
    req: Request<Incoming>,
) -> Result<(Vec<String>, Receipt), Refusal> {
    let config = p.config;
    let mut channels = Vec::new();
    let mut msg = None;
    for (k, v) in form::pairs(req.uri().query().unwrap_or_default().as_bytes()) {
        match &*k {
            b"channel" => channels.push(form::decode(v).map_err(|_| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "`channel` is not valid UTF-8 once percent-decoded: channel names use A-Z a-z 0-9 / _ . : - @",
                )
            })?),
            // The last wins, as with Tornado's get_argument.
            b"msg" => msg = Some(v),
            _ => {}
        }
    }
    let message = match *req.method() {
        Method::GET if config.allow_get => {
            let raw = msg.ok_or_else(|| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "missing `msg` query parameter: GET <path>?msg=TEXT",
                )
            })?;
            let text = form::decode(raw).map_err(|_| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "message (`msg`) is not valid UTF-8 once percent-decoded: percent-encode UTF-8 text, or POST binary data as application/octet-stream",
                )
            })?;
            Payload::Text(text.into())
        }
        Method::GET => {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET publishing is off (publish.allow_get = false): POST the message as the body",
            ));
        }
        Method::POST => match read_message(config, p.body_timeout, req).await? {
            Posted::Message(m) => m,
            Posted::Envelope(envelope) => {
                if !channels.is_empty() {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "name the channels in the envelope or in the query, not both",
                    ));
                }
                channels = envelope.channels;
                envelope.message
            }
        },
        _ => {
            return Err(Refusal::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "publish with POST (or GET ?msg=)",
            )
            .with_header(header::ALLOW, HeaderValue::from_static("GET, POST")));
        }
    };
    let target = target(p.hub, &channels)?;
    let receipt = p
        .broker
        .publish(&target, message)
        .await
        .map_err(unavailable)?;
    Ok((channels, receipt))
}

/// 503 for a broker that cannot take a publish now.
pub(super) fn unavailable(err: BrokerError) -> Refusal {
    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
}

/// Who a publish naming `channels` is for: every connection when none, else those
/// channels, each a valid name some route could give a connection.
fn target(hub: &Hub, channels: &[String]) -> Result<Target, Refusal> {
    if channels.is_empty() {
        return Ok(Target::All);
    }
    if channels.len() > MAX_PUBLISH_CHANNELS {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} channels named; one publish may name at most {MAX_PUBLISH_CHANNELS}: split it",
                channels.len()
            ),
        ));
    }
    for name in channels {
        check_channel(name).map_err(|r| Refusal::new(StatusCode::BAD_REQUEST, r))?;
        if !hub.could_hold(name) {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no route could give a connection channel `{name}`: check the name, or add it to `channel`/`channels` of a [[route]]"
                ),
            ));
        }
    }
    let mut unique = channels.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() != channels.len() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "a channel is named twice: name each once",
        ));
    }
    Ok(Target::Channels(channels.to_vec()))
}

pub(super) fn authorize(config: &PublishConfig, headers: &hyper::HeaderMap) -> Result<(), Refusal> {
    let Some(token) = &config.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send Authorization: Bearer <publish.token>",
        )
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))),
        Some(given) if bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(Refusal::new(StatusCode::FORBIDDEN, "wrong token")),
    }
}

pub(super) fn throttle(config: &PublishConfig, limit: &RateLimit) -> Result<(), Refusal> {
    let Err(wait) = limit.check(config.rate) else {
        return Ok(());
    };
    let rate = config.rate.map_or(0, |r| r.per_second.get());
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Err(Refusal::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "over publish.rate_limit ({rate} requests/s): retry in {} ms, or batch messages",
            wait.as_millis().max(1)
        ),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(secs.max(1))))
}

/// A POST body: the message itself, or an envelope naming channels.
enum Posted {
    Message(Payload),
    Envelope(Envelope),
}

/// `{"channels": ["a", "b"], "data": ...}` (or `"channel": "a"`): a string `data` is sent
/// as that text, anything else as its JSON.
struct Envelope {
    channels: Vec<String>,
    message: Payload,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    data: Option<serde_json::Value>,
}

fn envelope(bytes: &[u8]) -> Result<Envelope, Refusal> {
    let bad = |why: String| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{ENVELOPE} body: {why}; send {{\"channels\": [\"user.42\"], \"data\": ...}}"),
        )
    };
    let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let mut channels = raw.channels;
    channels.extend(raw.channel);
    if channels.is_empty() {
        return Err(bad("no `channels`".into()));
    }
    let message = match raw.data {
        None => return Err(bad("no `data`".into())),
        Some(serde_json::Value::String(text)) => Payload::Text(text.into()),
        Some(other) => Payload::Json(other.to_string().into()),
    };
    Ok(Envelope { channels, message })
}

/// Reads a POST body within the size and time limits and types it by Content-Type.
async fn read_message(
    config: &PublishConfig,
    body_timeout: Duration,
    req: Request<Incoming>,
) -> Result<Posted, Refusal> {
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body larger than {} bytes (publish.max_body_size)",
                config.max_body_size
            ),
        )
    };
    let mime = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "text/plain".into());
    let kind = match mime.as_str() {
        ENVELOPE => Kind::Envelope,
        "application/json" => Kind::Json,
        "application/octet-stream" => Kind::Binary,
        // `curl -d msg=...` and HTML forms: the `msg` field, as Tornado's get_argument reads it.
        "application/x-www-form-urlencoded" => Kind::Form,
        m if m.starts_with("text/") => Kind::Text,
        other => {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Type `{other}` not supported: use text/plain, application/json, application/octet-stream or {ENVELOPE}"
                ),
            ));
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body_size as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), config.max_body_size);
    let bytes: Bytes = match tokio::time::timeout(body_timeout, body.collect()).await {
        Err(_) => {
            return Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "body not received in time",
            ));
        }
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Ok(Err(_)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "could not read the body",
            ));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let not_utf8 = || {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "body is not valid UTF-8: send binary data as application/octet-stream",
        )
    };
    let message = match kind {
        Kind::Envelope => return envelope(&bytes).map(Posted::Envelope),
        Kind::Binary => Ok(Payload::Binary(bytes)),
        Kind::Form => {
            let raw = form::pairs(&bytes)
                .find(|(k, _)| **k == *b"msg")
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "form body has no `msg` field: send msg=TEXT, or the raw message as text/plain",
                    )
                })?;
            form::decode(raw).map(|t| Payload::Text(t.into())).map_err(|_| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "message (form field `msg`) is not valid UTF-8 once percent-decoded: send binary data as application/octet-stream",
                )
            })
        }
        Kind::Text => Utf8Bytes::try_from(bytes)
            .map(Payload::Text)
            .map_err(|_| not_utf8()),
        Kind::Json => {
            if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("body is not valid JSON: {err}"),
                ));
            }
            Utf8Bytes::try_from(bytes)
                .map(Payload::Json)
                .map_err(|_| not_utf8())
        }
    };
    message.map(Posted::Message)
}

enum Kind {
    Envelope,
    Text,
    Form,
    Json,
    Binary,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `ANSWERS` lists exactly the statuses the code above names, so a new refusal cannot
    /// be missing from the metrics until its first request.
    #[test]
    fn answers_are_the_statuses_this_file_names() {
        let source = include_str!("publish.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let marker = concat!("Status", "Code::");
        let named: BTreeSet<&str> = code
            .match_indices(marker)
            .map(|(i, _)| &code[i + marker.len()..])
            .map(|rest| {
                rest.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                    .next()
            })
            .map(Option::unwrap_or_default)
            .collect();
        let listed: BTreeSet<String> = ANSWERS
            .iter()
            .map(|s| {
                let reason = s.canonical_reason().unwrap_or_default();
                reason.to_ascii_uppercase().replace(' ', "_")
            })
            .collect();
        let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        assert_eq!(named, listed);
    }
}
