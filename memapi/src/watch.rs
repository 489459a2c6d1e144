//! Watches: newline-delimited `{"type","object"}` events, resumable from
//! any resourceVersion still in the event history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Event, EventType, Store};

/// How objects are shown to a client: with the requested apiVersion, and
/// only their metadata for `as=PartialObjectMetadata` requests.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub api_version: String,
    pub kind: String,
    pub partial: bool,
}

impl View {
    pub(crate) fn present(&self, obj: &Value) -> Value {
        if self.partial {
            return json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        let mut obj = obj.clone();
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
            map.insert("kind".into(), Value::String(self.kind.clone()));
        }
        obj
    }
}

/// Which events a watch sees.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub group: String,
    pub plural: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub view: View,
}

impl Filter {
    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event line this watch sees for `ev`, if any. An object entering
    /// the selector is ADDED to this watch, one leaving it DELETED.
    fn render(&self, ev: &Event) -> Option<Bytes> {
        if ev.key.group != self.group || ev.key.plural != self.plural {
            return None;
        }
        if self.namespace.as_ref().is_some_and(|ns| *ns != ev.key.namespace) {
            return None;
        }
        let now = self.selects(&ev.object);
        let before = ev.old.as_ref().map(|old| self.selects(old));
        let kind = match (ev.kind, before, now) {
            (EventType::Deleted, _, true) | (EventType::Modified, Some(true), false) => "DELETED",
            (EventType::Added, _, true) | (EventType::Modified, Some(false) | None, true) => "ADDED",
            (EventType::Modified, Some(true), true) => "MODIFIED",
            _ => return None,
        };
        Some(line(kind, self.view.present(&ev.object)))
    }
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn gone_line(requested: u64, oldest: u64) -> Bytes {
    line("ERROR", ApiError::Gone { requested, oldest }.to_status())
}

/// What a watch request asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchParams {
    pub resource_version: String,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
}

/// A watch, subscribed under the store lock so no event is missed between
/// the backlog and the live feed.
pub(crate) struct Watch {
    backlog: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Event>>,
    last_rv: u64,
    ended: bool,
    filter: Filter,
    deadline: Option<Instant>,
}

impl Watch {
    pub(crate) fn start(store: &Store, filter: Filter, params: &WatchParams) -> Result<Watch, ApiError> {
        let rx = store.events.subscribe();
        let mut watch = Watch {
            backlog: VecDeque::new(),
            rx,
            last_rv: store.rv,
            ended: false,
            deadline: params.timeout.map(|t| Instant::now() + t),
            filter,
        };
        let rv = params.resource_version.as_str();
        if rv.is_empty() || rv == "0" || params.send_initial_events {
            // Start now, after synthetic ADDED events for the current state.
            let f = &watch.filter;
            for (_, obj) in store.select(&f.group, &f.plural, f.namespace.as_deref(), &f.labels, &f.fields) {
                watch.backlog.push_back(line("ADDED", f.view.present(obj)));
            }
            if params.send_initial_events && params.bookmarks {
                watch.backlog.push_back(line(
                    "BOOKMARK",
                    json!({
                        "apiVersion": f.view.api_version, "kind": f.view.kind,
                        "metadata": {
                            "resourceVersion": store.rv.to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    }),
                ));
            }
            return Ok(watch);
        }
        let from: u64 =
            rv.parse().map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?} for a watch")))?;
        if from < store.compacted {
            watch.backlog.push_back(gone_line(from, store.compacted + 1));
            watch.ended = true;
            return Ok(watch);
        }
        for ev in store.history.iter().filter(|ev| ev.rv > from) {
            if let Some(line) = watch.filter.render(ev) {
                watch.backlog.push_back(line);
            }
        }
        Ok(watch)
    }

    /// The event lines, ending at the timeout.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Bytes> + Send + 'static {
        futures::stream::unfold(self, |mut w| async move {
            if let Some(line) = w.backlog.pop_front() {
                return Some((line, w));
            }
            if w.ended {
                return None;
            }
            loop {
                let received = match w.deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, w.rx.recv()).await.ok()?,
                    None => w.rx.recv().await,
                };
                match received {
                    Ok(ev) if ev.rv <= w.last_rv => continue,
                    Ok(ev) => {
                        w.last_rv = ev.rv;
                        if let Some(line) = w.filter.render(&ev) {
                            return Some((line, w));
                        }
                    }
                    // Too slow to keep up: like a compacted history, the
                    // client must re-list.
                    Err(RecvError::Lagged(_)) => {
                        w.ended = true;
                        return Some((gone_line(w.last_rv, w.last_rv + 1), w));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }
}
