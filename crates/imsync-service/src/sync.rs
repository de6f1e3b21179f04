//! Cursor sync: one page of the caller's visible events after `since`.

use crate::Service;
use imsync_core::model::{Event, User};
use imsync_core::{Result, Seq};
use imsync_store::repo::events;

#[derive(Debug, Clone)]
pub struct SyncPage {
    pub events: Vec<Event>,
    /// The last returned seq, or `since` when nothing was returned: never below `since`, and
    /// strictly above it whenever `has_more` is true.
    pub cursor: Seq,
    pub has_more: bool,
}

/// A sync page whose payloads are still JSON text, for responses that pass them through.
#[derive(Debug, Clone)]
pub struct RawSyncPage {
    pub events: Vec<events::RawEvent>,
    pub cursor: Seq,
    pub has_more: bool,
}

impl Service {
    /// One sync page with payloads as stored (no parsing): the native `GET /api/im/sync`.
    pub async fn sync_raw(&self, me: &User, since: Seq, limit: usize) -> Result<RawSyncPage> {
        let me = me.id.clone();
        let (events, has_more) = self
            .store
            .read(move |c| events::sync_page_raw(c, &me, since, limit))
            .await?;
        metrics::counter!("imsync_sync_pages_served_total").increment(1);
        let cursor = events.last().map_or(since, |(e, _)| e.seq);
        Ok(RawSyncPage {
            events: events.into_iter().map(|(e, _)| e).collect(),
            cursor,
            has_more,
        })
    }

    pub async fn sync(&self, me: &User, since: Seq, limit: usize) -> Result<SyncPage> {
        let me = me.id.clone();
        let page = self
            .store
            .read(move |c| events::sync_page(c, &me, since, limit))
            .await?;
        metrics::counter!("imsync_sync_pages_served_total").increment(1);
        let (events, has_more) = page;
        let cursor = events.last().map_or(since, |e| e.seq);
        Ok(SyncPage {
            events,
            cursor,
            has_more,
        })
    }
}
