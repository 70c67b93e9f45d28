//! Watch: one poller follows the store's change stream (rows added and
//! retired after the last revision it saw) and turns each new revision into
//! ADDED / MODIFIED / DELETED events, encoded once and shared by every
//! watcher. A watcher from an older revision first replays that span from
//! the same change stream, then joins the live feed.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use clusto_core::{EntityId, Fact, Kind};
use clusto_store::{Changes, Scope, Snapshot, Store, StoreError};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::API_VERSION;
use crate::read::Collection;
use crate::status::ApiError;

/// Entities read per step while turning changes into events.
const CHUNK: usize = 500;

/// One event, its line already encoded.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: Kind,
    pub line: Arc<str>,
}

/// The events of revisions after `from` up to `rev`.
#[derive(Debug)]
pub struct Batch {
    pub rev: i64,
    /// Encoded only while a watch is open; a watcher given none reads them
    /// itself (the object cache needs only `touched`).
    pub events: Option<Vec<Event>>,
    /// Every entity a changed row is about (the object cache drops what
    /// they shape).
    pub touched: Vec<EntityId>,
}

/// How watches behave.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// How often the poller looks for new revisions.
    pub poll: Duration,
    /// How often an idle watch gets a BOOKMARK.
    pub bookmark: Duration,
    /// How far back a watch may start (in revisions); older → 410 Gone.
    pub window: i64,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            poll: Duration::from_millis(20),
            bookmark: Duration::from_secs(10),
            window: 10_000,
        }
    }
}

/// The live feed.
pub struct Hub {
    tx: broadcast::Sender<Arc<Batch>>,
    /// The revision every sent batch reaches; set before each send.
    published: AtomicI64,
    opts: WatchOptions,
    /// Watches open now.
    watchers: clusto_http::prometheus_client::metrics::gauge::Gauge,
}

impl Hub {
    /// Starts the poller from the head now.
    pub async fn start(
        store: Store,
        opts: WatchOptions,
        watchers: clusto_http::prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Arc<Hub>, StoreError> {
        let head = store.head().await?;
        let (tx, _) = broadcast::channel(1024);
        let hub = Arc::new(Hub {
            tx,
            published: AtomicI64::new(head),
            opts,
            watchers,
        });
        let h = hub.clone();
        tokio::spawn(async move { h.poll(store, head).await });
        Ok(hub)
    }

    async fn poll(&self, store: Store, mut seen: i64) {
        loop {
            tokio::time::sleep(self.opts.poll).await;
            let head = match store.head().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "watch: store unreachable; retrying");
                    continue;
                }
            };
            if head <= seen {
                continue;
            }
            match self.batch(&store, seen, head).await {
                Ok(batch) => {
                    self.published.store(head, Ordering::SeqCst);
                    let _ = self.tx.send(Arc::new(batch));
                    seen = head;
                }
                Err(e) => tracing::warn!(error = %e, "watch: reading changes failed; retrying"),
            }
        }
    }

    /// What revisions `from+1 ..= to` changed, with their events when a
    /// watch is open to read them.
    async fn batch(&self, store: &Store, from: i64, to: i64) -> Result<Batch, StoreError> {
        let (mut after, ch) = changed(store, from, to).await?;
        let events = match self.watchers.get() {
            0 => None,
            _ => Some(events_of(store, &mut after, &ch, from, to).await?),
        };
        Ok(Batch {
            rev: to,
            events,
            touched: ch.entities().into_iter().collect(),
        })
    }

    /// The live feed, for followers other than watches.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.tx.subscribe()
    }

    /// The revision the feed has reached.
    pub fn published(&self) -> i64 {
        self.published.load(Ordering::SeqCst)
    }

    /// A watch of a collection from revision `from` (None = from now), as
    /// a newline-delimited JSON stream.
    pub async fn watch(
        self: &Arc<Hub>,
        store: Store,
        coll: Collection,
        from: Option<i64>,
        timeout: Option<Duration>,
    ) -> Result<Response, ApiError> {
        // Subscribe first, then read how far the feed is: a batch sent in
        // between is both received and covered by the replay (and skipped).
        let mut rx = self.tx.subscribe();
        let published = self.published.load(Ordering::SeqCst);
        let head = store.head().await?;
        let from = from.unwrap_or(published);
        if from > head {
            return Err(StoreError::NoSuchRevision(from, head).into());
        }
        let oldest = (head - self.opts.window).max(0);
        if from < oldest {
            return Err(ApiError::Gone {
                asked: from,
                oldest,
            });
        }
        let (tx, out) = mpsc::channel::<Bytes>(64);
        let bookmark = self.opts.bookmark;
        let watching = crate::metrics::Watching::new(&self.watchers);
        tokio::spawn(async move {
            let _watching = watching;
            let send = |line: &str| tx.send(Bytes::from(line.to_string()));
            let mut at = from;
            if from < published {
                match events_between(&store, from, published).await {
                    Ok(events) => {
                        for e in events.iter().filter(|e| coll.holds(e.kind)) {
                            if send(&e.line).await.is_err() {
                                return;
                            }
                        }
                        at = published;
                    }
                    Err(e) => {
                        let _ = send(&error_line(&e.into())).await;
                        return;
                    }
                }
            }
            let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
            loop {
                let tick = tokio::time::sleep(bookmark);
                let done = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    b = rx.recv() => match b {
                        Ok(batch) if batch.rev <= at => {}
                        Ok(batch) => {
                            let read;
                            let events = match &batch.events {
                                Some(ev) => ev,
                                None => match events_between(&store, at, batch.rev).await {
                                    Ok(ev) => {
                                        read = ev;
                                        &read
                                    }
                                    Err(e) => {
                                        let _ = send(&error_line(&e.into())).await;
                                        return;
                                    }
                                },
                            };
                            for e in events.iter().filter(|e| coll.holds(e.kind)) {
                                if send(&e.line).await.is_err() {
                                    return;
                                }
                            }
                            at = batch.rev;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Too slow to follow: say so, as the apiserver does, and end.
                            let gone = ApiError::Gone { asked: at, oldest: at + 1 };
                            let _ = send(&error_line(&gone)).await;
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick => {
                        if send(&bookmark_line(coll, at)).await.is_err() {
                            return;
                        }
                    }
                    _ = done => return,
                }
            }
        });
        let body = Body::from_stream(futures::stream::unfold(out, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        }));
        Ok((
            [(axum::http::header::CONTENT_TYPE, STREAM_CONTENT_TYPE)],
            body,
        )
            .into_response())
    }
}

/// What a watch answers with: one JSON event per line, as Kubernetes
/// names the media type of its watch streams.
pub const STREAM_CONTENT_TYPE: &str = "application/json;stream=watch";

fn bookmark_line(coll: Collection, rev: i64) -> String {
    let o = json!({"type": "BOOKMARK", "object": {"apiVersion": API_VERSION, "kind": coll.item_kind(), "metadata": {"resourceVersion": rev.to_string()}}});
    format!("{o}\n")
}

fn error_line(e: &ApiError) -> String {
    format!("{}\n", json!({"type": "ERROR", "object": e.status()}))
}

/// The events revisions `from+1 ..= to` make: each entity a changed row is
/// about, as it is at `to` (ADDED when it did not exist at `from`,
/// MODIFIED when it did) or as it was at `from` when it is gone (DELETED).
pub async fn events_between(store: &Store, from: i64, to: i64) -> Result<Vec<Event>, StoreError> {
    let (mut after, ch) = changed(store, from, to).await?;
    events_of(store, &mut after, &ch, from, to).await
}

/// The rows revisions `from+1 ..= to` changed, and a snapshot at `to`.
async fn changed(store: &Store, from: i64, to: i64) -> Result<(Snapshot, Changes), StoreError> {
    let mut after = store.snapshot(Some(to)).await?;
    let ch = after.changes_since(from).await?;
    Ok((after, ch))
}

/// The events of changes `ch` (read at `after`, revision `to`).
async fn events_of(
    store: &Store,
    after: &mut Snapshot,
    ch: &Changes,
    from: i64,
    to: i64,
) -> Result<Vec<Event>, StoreError> {
    let touched: Vec<EntityId> = ch
        .added
        .iter()
        .chain(&ch.retired)
        .flat_map(|(_, f)| match f {
            // Whose object the row shows in: a rack's contents are not part
            // of the rack's object (the thing's `rack`/`ru`/pools are); a
            // reference is part of its owner only; a cable shows at both ends.
            Fact::Entity(e) => vec![e.id],
            Fact::Attr(e, _) => vec![*e],
            Fact::Contains(c) => vec![c.child],
            Fact::Link(l) => vec![l.a, l.b],
            Fact::Address(a) => vec![a.holder],
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut before = store.snapshot(Some(from)).await?;
    let mut out = Vec::new();
    for chunk in touched.chunks(CHUNK) {
        let scope = Scope::read(Vec::<String>::new()).with_ids(chunk.iter().copied());
        let now = after.load(&scope).await?;
        let was = before.load(&scope).await?;
        for id in chunk {
            let (ty, inv) = match (was.entity(*id).is_some(), now.entity(*id).is_some()) {
                (false, true) => ("ADDED", &now),
                (true, true) => ("MODIFIED", &now),
                (true, false) => ("DELETED", &was),
                (false, false) => continue,
            };
            let Some(kind) = inv.kind_of(*id) else {
                continue;
            };
            let mut object = inv.resource(*id, false);
            object["metadata"]["resourceVersion"] = json!(to.to_string());
            let line = format!("{}\n", json!({"type": ty, "object": object}));
            out.push(Event {
                kind,
                line: line.into(),
            });
        }
    }
    Ok(out)
}
