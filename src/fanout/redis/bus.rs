//! The command side of the Redis broker: publish (one script per channel with history,
//! numbering, storing and publishing in one atomic step), read a channel's history, send
//! a probe. Every call is bounded by `broker.timeout`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::try_join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, Value};

use super::codec::{self, Keys, Scripts};
use crate::config::{HistoryPolicy, RedisConfig};
use crate::fanout::history::new_epoch;
use crate::fanout::{BrokerError, BusSlice, Claim, Delivered, Hub, Kick, Receipt, Target};
use crate::metrics::BrokerCounters;
use crate::wire::Payload;

/// Most entries one read of a channel's history returns (a channel keeps at most
/// `MAX_HISTORY_SIZE`).
const MAX_READ: usize = crate::config::MAX_HISTORY_SIZE;

/// How many broker timeouts a publish key stays claimed while its publish is in flight.
const IN_FLIGHT: u32 = 10;

/// Channels read from Redis in one round trip.
const SYNC_BATCH: usize = 256;

/// The command connection and what calls on it need.
pub(super) struct Bus {
    client: Client,
    conn: ConnectionManager,
    scripts: Scripts,
    pub keys: Keys,
    pub timeout: Duration,
    pub probe_interval: Duration,
    position_ttl: Duration,
    pub counters: BrokerCounters,
}

impl Bus {
    /// A bus for `config` (connecting lazily: Redis may come up after heartwire).
    pub fn new(
        config: &RedisConfig,
        node: &str,
        position_ttl: Duration,
        counters: BrokerCounters,
    ) -> Result<Self, String> {
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("broker.url `{}`: {e}", config.url))?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca {
            None => Client::open(info),
            Some(pem) => Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .map_err(|e| format!("broker.url: {e}"))?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| format!("broker: {e}"))?;
        Ok(Self {
            client,
            conn,
            scripts: Scripts::new(),
            keys: Keys::new(&config.prefix, node),
            timeout: config.timeout,
            probe_interval: config.probe_interval,
            position_ttl,
            counters,
        })
    }

    /// The client pub/sub connections are made from.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs `call` within `broker.timeout`.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!(
                "{what}: Redis did not answer within {:?} (broker.timeout)",
                self.timeout
            )),
        }
    }

    /// Publishes `payload` to `target` through Redis; resolves once Redis took it on
    /// every channel (numbered and stored first on channels with history). The receipt
    /// counts nodes, not connections: Redis knows which nodes hold a channel.
    pub async fn publish(
        &self,
        hub: &Hub,
        target: &Target,
        payload: &Payload,
    ) -> Result<Receipt, BrokerError> {
        let started = Instant::now();
        let now_ms = now_ms();
        let result = match target {
            Target::Channels(names) => {
                let calls = names
                    .iter()
                    .map(|name| self.publish_one(hub, name, payload, now_ms));
                self.bounded("publish", try_join_all(calls))
                    .await
                    .and_then(|per| per.into_iter().collect::<Result<Vec<_>, _>>())
                    .map(|per_channel| Receipt {
                        queued: per_channel.iter().map(|d| d.subscribers).max().unwrap_or(0),
                        per_channel,
                    })
            }
            Target::All | Target::Route(_) => {
                let route = match target {
                    Target::Route(path) => Some(path.as_str()),
                    _ => None,
                };
                let message = codec::broadcast(route, payload, now_ms);
                let mut conn = self.conn.clone();
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&self.keys.all).arg(message);
                let call = cmd.query_async::<u64>(&mut conn);
                self.bounded("publish", call).await.map(|nodes| Receipt {
                    queued: usize::try_from(nodes).unwrap_or(usize::MAX),
                    per_channel: Vec::new(),
                })
            }
        };
        match result {
            Ok(receipt) => {
                let took = started.elapsed().as_secs_f64();
                self.counters.publish_seconds.observe(took);
                Ok(receipt)
            }
            Err(why) => {
                self.counters.publish_errors.inc();
                Err(BrokerError::Unavailable(why))
            }
        }
    }

    /// One channel of a publish: the script on a channel with history, else PUBLISH.
    /// The outer error is Redis's; the inner one an answer heartwire cannot read.
    async fn publish_one(
        &self,
        hub: &Hub,
        name: &str,
        payload: &Payload,
        now_ms: u64,
    ) -> redis::RedisResult<Result<Delivered, String>> {
        let mut conn = self.conn.clone();
        let Some(policy) = hub.history_of(name) else {
            let nodes: u64 = redis::cmd("PUBLISH")
                .arg(self.keys.channel(name))
                .arg(codec::channel_message(payload, now_ms))
                .query_async(&mut conn)
                .await?;
            return Ok(Ok(Delivered {
                subscribers: usize::try_from(nodes).unwrap_or(usize::MAX),
                at: None,
            }));
        };
        let answer: Value = self
            .scripts
            .publish
            .key(self.keys.meta(name))
            .key(self.keys.stream(name))
            .arg(&*new_epoch())
            .arg(policy.size)
            .arg(millis(policy.ttl))
            .arg(millis(self.position_ttl))
            .arg(codec::payload_bytes(payload))
            .arg(self.keys.channel(name))
            .arg(now_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(match codec::published(&answer) {
            Some((epoch, offset, nodes)) => Ok(Delivered {
                subscribers: usize::try_from(nodes).unwrap_or(usize::MAX),
                at: Some((Arc::from(epoch), offset)),
            }),
            None => Err(format!("publish: unexpected answer from Redis: {answer:?}")),
        })
    }

    /// Where each channel stands in Redis and its messages after the offset asked
    /// (`u64::MAX`: only where it stands). A channel Redis has no epoch for gets one.
    async fn fetch(
        &self,
        wants: &[(Arc<str>, HistoryPolicy, u64)],
    ) -> Result<Vec<(Arc<str>, BusSlice)>, String> {
        let calls = wants.iter().map(|(name, policy, from)| {
            let mut conn = self.conn.clone();
            async move {
                let answer: Value = self
                    .scripts
                    .sync
                    .key(self.keys.meta(name))
                    .key(self.keys.stream(name))
                    .arg(&*new_epoch())
                    .arg(*from)
                    .arg(policy.size.min(MAX_READ))
                    .arg(millis(self.position_ttl))
                    .invoke_async(&mut conn)
                    .await?;
                Ok::<_, redis::RedisError>((name.clone(), *from, answer))
            }
        });
        let answers = self.bounded("read history", try_join_all(calls)).await?;
        answers
            .into_iter()
            .map(|(name, from, answer)| {
                let (epoch, last, entries) = codec::synced(&answer).ok_or_else(|| {
                    format!("read history: unexpected answer from Redis: {answer:?}")
                })?;
                let slice = BusSlice {
                    epoch,
                    last,
                    from,
                    entries,
                };
                Ok((name, slice))
            })
            .collect()
    }

    /// Reads each channel with history after its offset (`u64::MAX`: only where it
    /// stands) from Redis, in batches, and brings this node's copy of it (and its
    /// subscribers) up to date.
    pub async fn sync(&self, hub: &Hub, wants: &[(Arc<str>, u64)]) -> Result<(), String> {
        let kept: Vec<_> = wants
            .iter()
            .filter_map(|(c, from)| Some((c.clone(), hub.history_of(c)?, *from)))
            .collect();
        for batch in kept.chunks(SYNC_BATCH) {
            for (name, slice) in self.fetch(batch).await? {
                if hub.sync(&name, &slice) > 0 {
                    let fetched = slice.entries.len() as u64;
                    self.counters.catchup_messages.inc_by(fetched);
                }
            }
        }
        Ok(())
    }

    /// Sends `kick` to every node; resolves with how many nodes took it.
    pub async fn kick(&self, kick: &Kick, reason: &str) -> Result<usize, BrokerError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.keys.kick).arg(codec::kick(kick, reason));
        let call = cmd.query_async::<u64>(&mut conn);
        match self.bounded("kick", call).await {
            Ok(nodes) => Ok(usize::try_from(nodes).unwrap_or(usize::MAX)),
            Err(why) => {
                self.counters.publish_errors.inc();
                Err(BrokerError::Unavailable(why))
            }
        }
    }

    /// Claims publish key `key` for [`IN_FLIGHT`] broker timeouts (a node that dies half
    /// way holds it no longer): one `SET NX GET`, so two nodes never both get it fresh.
    pub async fn claim(&self, key: &str) -> Result<Claim, BrokerError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.idempotency(key))
            .arg("")
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(millis(self.timeout * IN_FLIGHT));
        let call = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        match self.bounded("idempotency claim", call).await {
            Ok(None) => Ok(Claim::Fresh),
            Ok(Some(held)) if held.is_empty() => Ok(Claim::InFlight),
            Ok(Some(answer)) => Ok(Claim::Answered(answer.into())),
            Err(why) => {
                self.counters.publish_errors.inc();
                Err(BrokerError::Unavailable(why))
            }
        }
    }

    /// Keeps `body` as the answer to publish key `key` for the idempotency window.
    pub async fn answered(&self, key: &str, body: &[u8]) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.idempotency(key))
            .arg(body)
            .arg("PX")
            .arg(millis(crate::fanout::idempotency::WINDOW));
        self.bounded("idempotency answer", cmd.query_async::<()>(&mut conn))
            .await
    }

    /// Gives up the claim on publish key `key` (its publish failed): a retry may publish.
    pub async fn forget(&self, key: &str) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.keys.idempotency(key));
        self.bounded("idempotency release", cmd.query_async::<()>(&mut conn))
            .await
    }

    /// Publishes probe `seq` to this node's own probe channel.
    pub async fn probe(&self, seq: u64) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.keys.probe).arg(seq);
        let call = cmd.query_async::<u64>(&mut conn);
        self.bounded("probe", call).await.map(drop)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}
