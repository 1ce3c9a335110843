//! Objects, arrivals and leases in Redis (feature `redis`).
//!
//! Keys: objects at `wk:o:<job>/<name>`, the arrivals of a child task in the
//! set `wk:a:<job>:<child>` and its completing edge at `wk:c:<job>:<child>`, leases in the hash `wk:l:<job>` (name → holder)
//! and the sorted set `wk:e:<job>` (name → expiry in Redis server time, ms),
//! claims in the hash `wk:h:<job>` (name → holder).
//! Messages between drivers and workers (process and Lambda modes) are lists
//! `wk:q:<queue>`, counters `wk:n:<name>`, presence sets `wk:z:<set>`,
//! mailboxes `wk:mb:<name>` (open while `wk:mo:<name>` exists).
//! Arrivals, claims and every lease operation are one Lua script each: atomic and one
//! round trip (a batch of arrivals with their claims too). Lease clocks are the Redis server's, so clients need no clock sync.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ErrorKind, RedisError, Script};

use crate::broker::check_name;
use crate::object::check_joins;
use crate::{
    Arrival, Broker, Coordinator, Edge, Hold, JobId, Join, Joined, Lease, Listener, ObjectKey,
    ObjectStore, PutMode, StorageError, Woken,
};

/// Joins (see [`Coordinator::join_all`]) for the holder ARGV[1] in the claims
/// hash KEYS[1]: per join two KEYS (edge set, completing edge) and four ARGV
/// (edge, in-degree, claim mode 0 never / 1 first / 2 on completion, claim
/// name). Answers per join the edges missing (0 completed, -1 duplicate, -2
/// not arrived: the claim is someone else's) and the claim's holder ('' if none).
const JOIN: &str = r"
local answers = {}
local k = 2
for i = 2, #ARGV, 4 do
  local edge, mode, name = ARGV[i], ARGV[i + 2], ARGV[i + 3]
  local holder = ''
  local missing = -2
  if mode == '1' then
    redis.call('HSETNX', KEYS[1], name, ARGV[1])
    holder = redis.call('HGET', KEYS[1], name)
  end
  if mode ~= '1' or holder == ARGV[1] then
    if redis.call('SADD', KEYS[k], edge) == 0 then
      if redis.call('GET', KEYS[k + 1]) == edge then missing = 0 else missing = -1 end
    else
      missing = tonumber(ARGV[i + 1]) - redis.call('SCARD', KEYS[k])
      if missing == 0 then redis.call('SET', KEYS[k + 1], edge) end
    end
    if mode == '2' and missing == 0 then
      redis.call('HSETNX', KEYS[1], name, ARGV[1])
      holder = redis.call('HGET', KEYS[1], name)
    end
  end
  answers[#answers + 1] = missing
  answers[#answers + 1] = holder
  k = k + 2
end
return answers
";

const CLAIM: &str = r"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
";

const NOW: &str = "local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

const ACQUIRE: &str = r"
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > now and holder ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
";

const RENEW: &str = r"
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not expiry or tonumber(expiry) <= now or redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
";

const RELEASE: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
";

const EXPIRED: &str = r"
local names = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local out = {}
for _, name in ipairs(names) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('HGET', KEYS[1], name) or ''
end
return out
";

/// How long connecting may take before the store reports the server unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis-backed [`ObjectStore`] and [`Coordinator`] over one multiplexed,
/// automatically reconnecting connection. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    client: redis::Client,
    endpoint: String,
    join: Script,
    acquire: Script,
    renew: Script,
    release: Script,
    expired: Script,
    claim: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// `redis://user:secret@host:6379/0` → `redis://host:6379/0`: endpoints appear
/// in errors and logs, passwords never do.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://…` for TLS) and checks the connection with a `PING`. An
    /// unreachable server is reported within a few seconds, a wrong password as
    /// [`StorageError::Unauthorized`].
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let endpoint = redact(url);
        let client = redis::Client::open(url).map_err(|e| StorageError::InvalidConfig {
            what: "Redis URL",
            detail: format!("{endpoint}: {e}"),
        })?;
        Self::open(client, endpoint).await
    }

    /// Connects to a `rediss://` URL whose server certificate is signed by the
    /// PEM-encoded `root_certificate` (a private CA) instead of a CA of the
    /// system or webpki trust store. A certificate that does not verify is an
    /// [`StorageError::Unavailable`] naming the TLS failure.
    pub async fn connect_with_root_certificate(
        url: &str,
        root_certificate: &[u8],
    ) -> Result<Self, StorageError> {
        let endpoint = redact(url);
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_certificate.to_vec()),
        };
        let client = redis::Client::build_with_tls(url, certificates).map_err(|e| {
            StorageError::InvalidConfig {
                what: "Redis TLS settings",
                detail: format!("{endpoint}: {e}"),
            }
        })?;
        Self::open(client, endpoint).await
    }

    async fn open(client: redis::Client, endpoint: String) -> Result<Self, StorageError> {
        let client_copy = client.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(Duration::from_secs(30)))
            .set_number_of_retries(2);
        let connect = ConnectionManager::new_with_config(client, config);
        let mut connection = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(redis_error(&endpoint, error)),
            Err(_) => {
                return Err(StorageError::Unavailable {
                    backend: "redis",
                    endpoint,
                    detail: format!("no connection within {:?}", CONNECT_TIMEOUT * 2),
                });
            }
        };
        let pong: String = redis::cmd("PING")
            .query_async(&mut connection)
            .await
            .map_err(|e| redis_error(&endpoint, e))?;
        if pong != "PONG" {
            return Err(StorageError::Unavailable {
                backend: "redis",
                endpoint,
                detail: format!("PING answered {pong:?}"),
            });
        }
        Ok(Self {
            connection,
            client: client_copy,
            endpoint,
            join: Script::new(JOIN),
            acquire: Script::new(&format!("{NOW}{ACQUIRE}")),
            renew: Script::new(&format!("{NOW}{RENEW}")),
            release: Script::new(RELEASE),
            expired: Script::new(&format!("{NOW}{EXPIRED}")),
            claim: Script::new(CLAIM),
        })
    }

    /// The server, without credentials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, error: RedisError) -> StorageError {
        redis_error(&self.endpoint, error)
    }

    /// A script answered fewer items than it was asked for.
    fn short_answer(&self, what: &str) -> StorageError {
        StorageError::Backend {
            backend: "redis",
            endpoint: self.endpoint.clone(),
            detail: format!("the {what} script answered fewer items than it was given"),
        }
    }

    /// Every key matching a glob `pattern`, by SCAN (which may repeat keys).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, StorageError> {
        let mut connection = self.connection.clone();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.error(e))?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Runs the acquire or renew script, which answer 1 when the lease is held.
    async fn lease_script(
        &self,
        script: &Script,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        let held: i64 = script
            .key(&lease_keys(job)[..])
            .arg(name)
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok(held == 1)
    }
}

impl RedisStore {
    async fn enqueue(&self, queue: &str, message: &[u8], push: &str) -> Result<(), StorageError> {
        check_name(queue)?;
        let _: i64 = redis::cmd(push)
            .arg(format!("wk:q:{queue}"))
            .arg(message)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// Queues are Redis lists, counters integers, presence sets sorted sets
/// scored by the server's clock, mailboxes a list with an open flag and a
/// bell list of at most one entry.
#[async_trait]
impl Broker for RedisStore {
    async fn push_message(&self, queue: &str, message: &[u8]) -> Result<(), StorageError> {
        self.enqueue(queue, message, "RPUSH").await
    }

    async fn return_message(&self, queue: &str, message: &[u8]) -> Result<(), StorageError> {
        self.enqueue(queue, message, "LPUSH").await
    }

    async fn queued_messages(&self, queue: &str) -> Result<u64, StorageError> {
        check_name(queue)?;
        self.connection
            .clone()
            .llen(format!("wk:q:{queue}"))
            .await
            .map_err(|e| self.error(e))
    }

    async fn add_to_counter(&self, name: &str, delta: i64) -> Result<i64, StorageError> {
        check_name(name)?;
        self.connection
            .clone()
            .incr(format!("wk:n:{name}"), delta)
            .await
            .map_err(|e| self.error(e))
    }

    async fn mark_present(
        &self,
        set: &str,
        member: &str,
        present: bool,
    ) -> Result<(), StorageError> {
        check_name(set)?;
        let key = format!("wk:z:{set}");
        let mut connection = self.connection.clone();
        let result: Result<i64, RedisError> = if present {
            Script::new(&format!(
                "{NOW}return redis.call('ZADD', KEYS[1], now, ARGV[1])"
            ))
            .key(key)
            .arg(member)
            .invoke_async(&mut connection)
            .await
        } else {
            connection.zrem(key, member).await
        };
        result.map(|_| ()).map_err(|e| self.error(e))
    }

    async fn present_beyond_queued(
        &self,
        set: &str,
        within: Duration,
        queue: &str,
    ) -> Result<u64, StorageError> {
        check_name(set)?;
        check_name(queue)?;
        Script::new(&format!(
            "{NOW}redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))\nlocal spare = redis.call('ZCARD', KEYS[1]) - redis.call('LLEN', KEYS[2])\nif spare < 0 then return 0 end\nreturn spare"
        ))
        .key(format!("wk:z:{set}"))
        .key(format!("wk:q:{queue}"))
        .arg(within.as_millis() as u64)
        .invoke_async(&mut self.connection.clone())
        .await
        .map_err(|e| self.error(e))
    }

    async fn open_mailbox(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        let _: () = self
            .connection
            .clone()
            .set(format!("wk:mo:{name}"), 1)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn deliver(&self, name: &str, message: &[u8]) -> Result<bool, StorageError> {
        check_name(name)?;
        let delivered: i64 = Script::new(
            "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\nredis.call('RPUSH', KEYS[2], ARGV[1])\nif redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], 1) end\nreturn 1",
        )
        .key(format!("wk:mo:{name}"))
        .key(format!("wk:mb:{name}"))
        .key(bell(name))
        .arg(message)
        .invoke_async(&mut self.connection.clone())
        .await
        .map_err(|e| self.error(e))?;
        Ok(delivered == 1)
    }

    async fn read_mailboxes(
        &self,
        mailboxes: &[(&str, usize)],
        close: bool,
    ) -> Result<Vec<Vec<Vec<u8>>>, StorageError> {
        if mailboxes.is_empty() {
            return Ok(Vec::new());
        }
        let script = Script::new(
            "local read = {}\nfor i = 1, #ARGV - 1 do\n  if ARGV[#ARGV] == '1' then redis.call('DEL', KEYS[2 * i - 1]) end\n  read[i] = redis.call('LRANGE', KEYS[2 * i], tonumber(ARGV[i]), -1)\nend\nreturn read",
        );
        let mut invocation = script.prepare_invoke();
        for &(name, from) in mailboxes {
            check_name(name)?;
            invocation
                .key(format!("wk:mo:{name}"))
                .key(format!("wk:mb:{name}"))
                .arg(from);
        }
        invocation.arg(if close { "1" } else { "0" });
        let read: Vec<Vec<Vec<u8>>> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        if read.len() != mailboxes.len() {
            return Err(self.short_answer("mailbox"));
        }
        Ok(read)
    }

    async fn delete_mailboxes(&self, prefix: &str) -> Result<(), StorageError> {
        check_name(prefix)?;
        let escaped = glob_escape(prefix);
        let mut doomed = self.scan(&format!("wk:mo:{escaped}*")).await?;
        doomed.extend(self.scan(&format!("wk:mb:{escaped}*")).await?);
        doomed.sort();
        doomed.dedup();
        for chunk in doomed.chunks(500) {
            let _: i64 = self
                .connection
                .clone()
                .del(chunk)
                .await
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    async fn delete_queues(&self, queues: &[&str], counters: &[&str]) -> Result<(), StorageError> {
        let mut keys = Vec::new();
        for queue in queues {
            check_name(queue)?;
            keys.push(format!("wk:q:{queue}"));
        }
        for counter in counters {
            check_name(counter)?;
            keys.push(format!("wk:n:{counter}"));
        }
        if keys.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .connection
            .clone()
            .del(keys)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn listener(&self) -> Result<Box<dyn Listener>, StorageError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Box::new(QueueListener {
            connection,
            endpoint: self.endpoint.clone(),
        }))
    }
}

/// Waits for messages on queues of a [`RedisStore`], on a connection of its own.
struct QueueListener {
    connection: redis::aio::MultiplexedConnection,
    endpoint: String,
}

impl std::fmt::Debug for QueueListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueListener")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

#[async_trait]
impl Listener for QueueListener {
    async fn wait(
        &mut self,
        queue: &str,
        mailboxes: &[String],
        timeout: Duration,
    ) -> Result<Woken, StorageError> {
        check_name(queue)?;
        let mut keys = vec![format!("wk:q:{queue}")];
        for mailbox in mailboxes {
            check_name(mailbox)?;
            keys.push(bell(mailbox));
        }
        let seconds = timeout.as_secs_f64().max(0.001);
        let popped: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
            .arg(&keys)
            .arg(seconds)
            .query_async(&mut self.connection)
            .await
            .map_err(|e| redis_error(&self.endpoint, e))?;
        Ok(match popped {
            None => Woken::Timeout,
            Some((key, message)) if key == keys[0] => Woken::Message(message),
            Some(_) => Woken::Mail,
        })
    }

    async fn pop(
        &mut self,
        queues: &[&str],
        timeout: Duration,
    ) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        let mut keys = Vec::with_capacity(queues.len());
        for queue in queues {
            check_name(queue)?;
            keys.push(format!("wk:q:{queue}"));
        }
        let seconds = timeout.as_secs_f64().max(0.001);
        let popped: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
            .arg(keys)
            .arg(seconds)
            .query_async(&mut self.connection)
            .await
            .map_err(|e| redis_error(&self.endpoint, e))?;
        Ok(popped.map(|(key, message)| {
            (
                key.strip_prefix("wk:q:").unwrap_or(&key).to_owned(),
                message,
            )
        }))
    }
}

/// The list a delivery to mailbox `name` pushes to (at most one entry), so
/// that its reader can block on it.
fn bell(name: &str) -> String {
    format!("wk:mb:{name}:bell")
}

fn redis_error(endpoint: &str, error: RedisError) -> StorageError {
    let endpoint = endpoint.to_owned();
    let detail = error.to_string();
    if error.kind() == ErrorKind::AuthenticationFailed
        || detail.contains("WRONGPASS")
        || detail.contains("NOAUTH")
    {
        StorageError::Unauthorized {
            backend: "redis",
            endpoint,
            detail,
        }
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
    {
        StorageError::Unavailable {
            backend: "redis",
            endpoint,
            detail,
        }
    } else {
        StorageError::Backend {
            backend: "redis",
            endpoint,
            detail,
        }
    }
}

fn object_path(key: &ObjectKey) -> String {
    format!("wk:o:{}", key.path())
}

/// Escapes Redis glob characters so that a prefix matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn lease_keys(job: &JobId) -> [String; 2] {
    [format!("wk:l:{job}"), format!("wk:e:{job}")]
}

#[async_trait]
impl ObjectStore for RedisStore {
    async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        let value: Option<Vec<u8>> = self
            .connection
            .clone()
            .get(object_path(key))
            .await
            .map_err(|e| self.error(e))?;
        value
            .map(Bytes::from)
            .ok_or_else(|| StorageError::KeyNotFound { key: key.clone() })
    }

    async fn put(&self, key: &ObjectKey, value: Bytes, mode: PutMode) -> Result<(), StorageError> {
        let mut command = redis::cmd("SET");
        command.arg(object_path(key)).arg(value.as_ref());
        if mode == PutMode::Create {
            command.arg("NX");
        }
        let reply: Option<String> = command
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        match reply {
            Some(_) => Ok(()),
            None => Err(StorageError::KeyExists { key: key.clone() }),
        }
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let _: i64 = self
            .connection
            .clone()
            .del(object_path(key))
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        self.connection
            .clone()
            .exists(object_path(key))
            .await
            .map_err(|e| self.error(e))
    }

    async fn list(&self, job: &JobId, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        let root = format!("wk:o:{job}/");
        let pattern = format!("{}{}*", glob_escape(&root), glob_escape(prefix));
        let mut keys = Vec::new();
        for path in self.scan(&pattern).await? {
            if let Some(name) = path.strip_prefix(&root) {
                keys.push(job.key(name)?);
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

#[async_trait]
impl Coordinator for RedisStore {
    async fn arrive(
        &self,
        job: &JobId,
        child: u64,
        edge: u32,
        in_degree: u32,
    ) -> Result<Arrival, StorageError> {
        let join = Join {
            edge: Edge {
                child,
                edge,
                in_degree,
            },
            hold: Hold::Never,
        };
        let joined = self.join_all(job, "", &[join]).await?;
        joined
            .into_iter()
            .next()
            .and_then(|j| j.arrival)
            .ok_or_else(|| self.short_answer("join"))
    }

    async fn join_all(
        &self,
        job: &JobId,
        holder: &str,
        joins: &[Join],
    ) -> Result<Vec<Joined>, StorageError> {
        check_joins(joins)?;
        if joins.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.join.prepare_invoke();
        invocation.key(format!("wk:h:{job}")).arg(holder);
        for Join { edge, hold } in joins {
            let (mode, name) = match hold {
                Hold::Never => (0, ""),
                Hold::First(name) => (1, name.as_str()),
                Hold::OnCompletion(name) => (2, name.as_str()),
            };
            invocation
                .key(format!("wk:a:{job}:{}", edge.child))
                .key(format!("wk:c:{job}:{}", edge.child))
                .arg(edge.edge)
                .arg(edge.in_degree)
                .arg(mode)
                .arg(name);
        }
        let answers: Vec<(i64, String)> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        if answers.len() != joins.len() {
            return Err(self.short_answer("join"));
        }
        Ok(answers
            .into_iter()
            .map(|(missing, holder)| Joined {
                arrival: match missing {
                    -2 => None,
                    -1 => Some(Arrival::Duplicate),
                    0 => Some(Arrival::Completed),
                    missing => Some(Arrival::Waiting {
                        missing: u32::try_from(missing).unwrap_or(u32::MAX),
                    }),
                },
                holder: (!holder.is_empty()).then_some(holder),
            })
            .collect())
    }

    async fn acquire(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.lease_script(&self.acquire, job, name, holder, ttl)
            .await
    }

    async fn renew(
        &self,
        job: &JobId,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StorageError> {
        self.lease_script(&self.renew, job, name, holder, ttl).await
    }

    async fn release(&self, job: &JobId, name: &str, holder: &str) -> Result<(), StorageError> {
        let _: i64 = self
            .release
            .key(&lease_keys(job)[..])
            .arg(name)
            .arg(holder)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn claim(&self, job: &JobId, name: &str, holder: &str) -> Result<String, StorageError> {
        self.claim
            .key(format!("wk:h:{job}"))
            .arg(name)
            .arg(holder)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))
    }

    async fn expired(&self, job: &JobId) -> Result<Vec<Lease>, StorageError> {
        let flat: Vec<String> = self
            .expired
            .key(&lease_keys(job)[..])
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| self.error(e))?;
        let mut leases: Vec<Lease> = flat
            .chunks_exact(2)
            .map(|pair| Lease {
                name: pair[0].clone(),
                holder: pair[1].clone(),
            })
            .collect();
        leases.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(leases)
    }

    async fn clear_job(&self, job: &JobId) -> Result<(), StorageError> {
        let mut doomed: Vec<String> = lease_keys(job).to_vec();
        doomed.push(format!("wk:h:{job}"));
        for pattern in [format!("wk:a:{job}:*"), format!("wk:c:{job}:*")] {
            doomed.extend(self.scan(&pattern).await?);
        }
        let mut connection = self.connection.clone();
        for chunk in doomed.chunks(500) {
            let _: i64 = connection.del(chunk).await.map_err(|e| self.error(e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_endpoint() {
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact("rediss://user:p@ss@host:1"), "rediss://host:1");
        assert_eq!(redact("redis://127.0.0.1:1"), "redis://127.0.0.1:1");
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
