//! The event log and the sync read.
//!
//! Every event belongs to one stream: a conversation's shared stream (`c:<id>`, seen by whoever
//! was a participant at the event's seq) or a user's private stream (`u:<id>`). The log is indexed
//! by `(stream, seq)`.
//!
//! A sync page for user U after `since` holds the events of U's private stream and of the
//! shared streams of the conversations U could see, each bounded by U's membership interval, in
//! seq order. Only conversations whose shared stream moved past `since` take part, found either
//! from the global index of recently changed conversations (when few changed) or from U's own
//! memberships.
//!
//! The page is read in one of two ways, and may switch from the first to the second midway:
//! - while most of the log after `since` is U's (a catch-up over U's own busy conversations, or
//!   an incremental sync near the head), the log itself is read in seq order and U's events kept;
//! - once under a quarter of it is, the page goes on as a k-way merge of U's streams, each read
//!   in chunks that grow while the stream keeps winning.
//!
//! Either way a page costs about `limit` rows (at most four times as many in the first way) plus
//! one indexed probe per changed conversation, whatever the history behind it.

use super::participants::{self, Interval};
use crate::{args, Dialect, Row, SqlConn};
use imsync_core::event::EventData;
use imsync_core::model::{Audience, Event, Payload};
use imsync_core::{Result, Seq};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// From this many globally changed conversations on, the user's intervals come from one read of
/// their memberships rather than one probe per changed conversation.
const FEW_CHANGED: i64 = 16;
const FIRST_CHUNK: i64 = 16;
/// The first read of the log in seq order: enough rows to tell whether most are the user's.
const PROBE_ROWS: i64 = 64;
const MIN_SCAN_ROWS: i64 = 16;
const MAX_SCAN_ROWS: i64 = 4096;

/// Appends an event and answers it with its seq. The caller's transaction makes it durable.
pub fn append(
    c: &mut dyn SqlConn,
    data: &EventData,
    audience: Audience,
    conversation_id: Option<&str>,
    at: i64,
) -> Result<Appended> {
    let conv_stream = match &audience {
        Audience::Conversation(id) => Some(id.clone()),
        Audience::User(_) => None,
    };
    let appended = append_rendered(
        c,
        data.kind(),
        audience,
        conversation_id,
        Payload::from_text(data.to_json()),
        at,
    )?;
    if let Some(id) = conv_stream {
        super::conversations::touch_event(c, &id, appended.seq)?;
    }
    Ok(appended)
}

/// [`append`] with the payload already rendered as JSON text, for the hottest writer (a send),
/// which renders it straight from its struct. Unlike [`append`],
/// it leaves recording the conversation's `last_event_seq` to the caller, which a send does
/// in the same statement as its message slot.
pub fn append_rendered(
    c: &mut dyn SqlConn,
    kind: &str,
    audience: Audience,
    conversation_id: Option<&str>,
    data: Payload,
    at: i64,
) -> Result<Appended> {
    let stream = audience.stream();
    let text: &str = data.text();
    let seq = match c.dialect() {
        // One writer: SQLite hands out the next rowid, and commits are in that order.
        Dialect::Sqlite => {
            c.execute(
                "INSERT INTO events (stream, type, conv_id, data, at) \
                 VALUES ($1, $2, $3, $4, $5)",
                args![&stream, kind, conversation_id, text, at],
            )?;
            c.last_insert_id()
        }
        // Several writers: the counter row's lock, held to commit, orders commits by seq. The
        // writer takes it when its transaction begins and hands the seqs out itself.
        Dialect::Postgres => {
            let seq = match c.next_seq() {
                Some(seq) => Some(seq),
                None => c
                    .query_opt(
                        "UPDATE counters SET value = value + 1 WHERE name = 'event_seq' \
                         RETURNING value",
                        &[],
                    )?
                    .map(|r| r.i64(0)),
            };
            if let Some(seq) = seq {
                c.execute_later(
                    "INSERT INTO events (seq, stream, type, conv_id, data, at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    args![seq, &stream, kind, conversation_id, text, at],
                    None,
                )?;
            }
            seq
        }
    }
    .ok_or_else(|| imsync_core::Error::internal("append returned no seq"))?;
    c.appended(Event {
        seq,
        kind: kind.to_owned(),
        conversation_id: conversation_id.map(str::to_owned),
        audience,
        data,
        at,
    });
    Ok(Appended { seq, at })
}

/// Where an appended event landed: its seq and its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: Seq,
    pub at: i64,
}

/// The seq the next append will take, minus one: the head of the log in this snapshot.
pub fn head(c: &mut dyn SqlConn) -> Result<Seq> {
    Ok(c.query_opt("SELECT max(seq) FROM events", &[])?
        .and_then(|r| r.opt_i64(0))
        .unwrap_or(0))
}

fn from_row(r: &Row) -> Event {
    Event {
        seq: r.i64(0),
        audience: Audience::from_stream(r.str(1)).unwrap_or(Audience::User(String::new())),
        kind: r.string(2),
        conversation_id: r.opt_string(3),
        data: Payload::from_text(r.str(4)),
        at: r.i64(5),
    }
}

/// Every event after `after`, in seq order, at most `limit` (for feeding live fan-out).
pub fn read_after(c: &mut dyn SqlConn, after: Seq, limit: i64) -> Result<Vec<Event>> {
    let rows = c.query(
        "SELECT seq, stream, type, conv_id, data, at FROM events WHERE seq > $1 \
         ORDER BY seq LIMIT $2",
        args![after, limit],
    )?;
    Ok(rows.iter().map(from_row).collect())
}

/// The events of a conversation's shared stream with seq in `(after, upto]` and one of `kinds`,
/// in seq order: what a former member may still learn about the conversation's messages.
pub fn conversation_range(
    c: &mut dyn SqlConn,
    conv_id: &str,
    after: Seq,
    upto: Seq,
    kinds: &[&str],
) -> Result<Vec<Event>> {
    let stream = Audience::Conversation(conv_id.to_owned()).stream();
    let rows = c.query(
        "SELECT seq, stream, type, conv_id, data, at FROM events \
         WHERE stream = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
        args![&stream, after, upto],
    )?;
    Ok(rows
        .iter()
        .map(from_row)
        .filter(|e| kinds.contains(&e.kind.as_str()))
        .collect())
}

/// An event as read for the merge, its payload still JSON text: a sync response can carry it
/// without parsing it, and the merge parses only what it must look into.
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub seq: Seq,
    pub kind: String,
    pub conv_id: Option<String>,
    pub data: String,
    pub at: i64,
}

impl RawEvent {
    pub fn into_event(self, audience: Audience) -> Event {
        Event {
            seq: self.seq,
            kind: self.kind,
            conversation_id: self.conv_id,
            audience,
            data: Payload::from_text(self.data),
            at: self.at,
        }
    }

    /// The seq that created the message this event changes, for edits, deletions, reactions.
    fn changes_message_created_at(&self) -> Option<Seq> {
        use imsync_core::event::kind;
        // Only shared changes to a message are bounded by who saw it; the rest are not parsed.
        if !matches!(
            self.kind.as_str(),
            kind::MESSAGE_EDIT | kind::MESSAGE_DELETE | kind::MESSAGE_REACTION
        ) {
            return None;
        }
        EventData::created_seq_in(&self.kind, &self.data)
    }
}

/// Reads `seq, type, conv_id, data, at` off the front of a row.
fn raw_event(values: &mut impl Iterator<Item = crate::Value>) -> Option<RawEvent> {
    let mut next = || values.next().unwrap_or(crate::Value::Null);
    let seq = match next() {
        crate::Value::Int(v) => v,
        _ => return None,
    };
    let text = |v: crate::Value| match v {
        crate::Value::Text(t) => Some(t),
        _ => None,
    };
    let kind = text(next()).unwrap_or_default();
    let conv_id = text(next());
    let data = text(next()).unwrap_or_default();
    let at = match next() {
        crate::Value::Int(v) => v,
        _ => 0,
    };
    Some(RawEvent {
        seq,
        kind,
        conv_id,
        data,
        at,
    })
}

struct Cursor {
    stream: String,
    audience: Audience,
    after: Seq,
    upto: Option<Seq>,
    chunk: i64,
    buffer: VecDeque<RawEvent>,
    exhausted: bool,
}

impl Cursor {
    fn new(stream: String, after: Seq, upto: Option<Seq>, chunk: i64) -> Self {
        Cursor {
            audience: Audience::from_stream(&stream).unwrap_or(Audience::User(String::new())),
            stream,
            after,
            upto,
            chunk,
            buffer: VecDeque::new(),
            exhausted: false,
        }
    }

    fn refill(&mut self, c: &mut dyn SqlConn) -> Result<()> {
        if !self.buffer.is_empty() || self.exhausted {
            return Ok(());
        }
        let rows = c.query(
            "SELECT seq, type, conv_id, data, at FROM events \
             WHERE stream = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            args![
                &self.stream,
                self.after,
                self.upto.unwrap_or(i64::MAX),
                self.chunk
            ],
        )?;
        self.exhausted = (rows.len() as i64) < self.chunk;
        for r in rows {
            if let Some(e) = raw_event(&mut r.0.into_iter()) {
                self.after = e.seq;
                self.buffer.push_back(e);
            }
        }
        // A stream that keeps winning is read in growing chunks.
        self.chunk = (self.chunk * 2).min(1024);
        Ok(())
    }
}

/// A stream to merge: its key, the seq after which to read, and the last seq to read.
type Stream = (String, Seq, Option<Seq>);

/// The streams (with bounds) that can hold events for `user_id` after `since`.
pub fn visible_streams(c: &mut dyn SqlConn, user_id: &str, since: Seq) -> Result<Vec<Stream>> {
    let changed = super::conversations::changed_since(c, since, FEW_CHANGED)?;
    let intervals: Vec<Interval> = if (changed.len() as i64) < FEW_CHANGED {
        let mut found = Vec::new();
        for conv in &changed {
            found.extend(participants::intervals_in(c, user_id, conv)?);
        }
        found
    } else {
        participants::open_intervals_since(c, user_id, since)?
    };
    let mut streams = vec![(Audience::User(user_id.to_owned()).stream(), since, None)];
    for i in intervals {
        if i.left_seq.is_some_and(|l| l <= since) {
            continue;
        }
        let after = since.max(i.joined_seq - 1);
        streams.push((
            Audience::Conversation(i.conv_id).stream(),
            after,
            i.left_seq,
        ));
    }
    Ok(streams)
}

/// Whether the user may see a change to a message: edits, deletions and reactions are shown only
/// to those who could see the message itself (created while they were a participant). The
/// user's intervals in a conversation are read once per page, and only when such a change
/// comes up.
fn sees_message_change(
    c: &mut dyn SqlConn,
    user_id: &str,
    e: &RawEvent,
    intervals: &mut HashMap<String, Vec<Interval>>,
) -> Result<bool> {
    let Some(created) = e.changes_message_created_at() else {
        return Ok(true);
    };
    let Some(conv) = &e.conv_id else {
        return Ok(true);
    };
    if !intervals.contains_key(conv) {
        intervals.insert(conv.clone(), participants::intervals_in(c, user_id, conv)?);
    }
    Ok(intervals[conv].iter().any(|i| i.contains(created)))
}

/// The streams a page may read, by key: each with its audience and the seq ranges
/// `(after, upto]` the user saw it in.
struct Visible(HashMap<String, (Audience, Vec<Range>)>);

/// Seqs `(after, upto]`; open-ended without `upto`.
type Range = (Seq, Option<Seq>);

impl Visible {
    fn new(streams: &[Stream]) -> Self {
        let mut map: HashMap<String, (Audience, Vec<Range>)> = HashMap::new();
        for (key, after, upto) in streams {
            map.entry(key.clone())
                .or_insert_with(|| {
                    let audience =
                        Audience::from_stream(key).unwrap_or(Audience::User(String::new()));
                    (audience, Vec::new())
                })
                .1
                .push((*after, *upto));
        }
        Visible(map)
    }

    /// The audience of an event of `stream` at `seq`, if the user saw that stream then.
    fn audience(&self, stream: &str, seq: Seq) -> Option<&Audience> {
        let (audience, ranges) = self.0.get(stream)?;
        ranges
            .iter()
            .any(|(after, upto)| seq > *after && upto.is_none_or(|u| seq <= u))
            .then_some(audience)
    }
}

/// How a read of the whole log in seq order ended.
enum Scan {
    /// The page is full, or the log ended: nothing is left to merge.
    Done { has_more: bool },
    /// Too few of the rows were the user's: the rest of the page is merged from the streams,
    /// after this seq.
    Sparse(Seq),
}

/// Reads the log in seq order from `since`, keeping the user's events, while they make up at
/// least a quarter of what is read. When a user sees most of what happens (a catch-up over
/// their own busy conversations) one read of about a page replaces a query per stream.
fn scan_log(
    c: &mut dyn SqlConn,
    user_id: &str,
    visible: &Visible,
    since: Seq,
    limit: usize,
    out: &mut Vec<(RawEvent, Audience)>,
    intervals: &mut HashMap<String, Vec<Interval>>,
) -> Result<Scan> {
    let mut scanned = since;
    let mut ask = (limit as i64 + 1).clamp(MIN_SCAN_ROWS, PROBE_ROWS);
    loop {
        let rows = c.query(
            "SELECT seq, type, conv_id, data, at, stream FROM events WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
            args![scanned, ask],
        )?;
        let read = rows.len() as i64;
        let mut kept = 0i64;
        for r in rows {
            let mut values = r.0.into_iter();
            let Some(e) = raw_event(&mut values) else {
                continue;
            };
            scanned = e.seq;
            let Some(crate::Value::Text(stream)) = values.next() else {
                continue;
            };
            let Some(audience) = visible.audience(&stream, e.seq) else {
                continue;
            };
            kept += 1;
            if sees_message_change(c, user_id, &e, intervals)? {
                out.push((e, audience.clone()));
                if out.len() > limit {
                    return Ok(Scan::Done { has_more: true });
                }
            }
        }
        if read < ask {
            return Ok(Scan::Done { has_more: false });
        }
        if kept * 4 < read {
            return Ok(Scan::Sparse(scanned));
        }
        // Ask for what the page still needs at the density just seen.
        let need = (limit + 1 - out.len()) as i64;
        ask = (need * read / kept + MIN_SCAN_ROWS).min(MAX_SCAN_ROWS);
    }
}

/// One page of the events visible to `user_id` with seq > `since`, ascending, and whether more
/// follow. Must run inside one read snapshot.
///
/// The page starts as a read of the whole log in seq order, which is cheapest while most of
/// the log is the user's, and goes on as a merge of the user's streams once it is not.
pub fn sync_page_raw(
    c: &mut dyn SqlConn,
    user_id: &str,
    since: Seq,
    limit: usize,
) -> Result<(Vec<(RawEvent, Audience)>, bool)> {
    let streams = visible_streams(c, user_id, since)?;
    let mut intervals = HashMap::new();
    let mut out = Vec::with_capacity(limit.min(1024) + 1);
    let visible = Visible::new(&streams);
    let scanned = match scan_log(c, user_id, &visible, since, limit, &mut out, &mut intervals)? {
        Scan::Done { has_more } => {
            out.truncate(limit);
            return Ok((out, has_more));
        }
        Scan::Sparse(scanned) => scanned,
    };
    // Enough from each stream for its share of the page, so the first round of reads is about
    // one page in total however many conversations take part.
    let share = (limit + 1 - out.len()) / streams.len().max(1);
    let first_chunk = (share as i64 + 2).clamp(4, FIRST_CHUNK);
    let mut cursors: Vec<Cursor> = streams
        .into_iter()
        .map(|(stream, after, upto)| Cursor::new(stream, after.max(scanned), upto, first_chunk))
        .collect();
    let mut heads = BinaryHeap::new();
    for (i, cur) in cursors.iter_mut().enumerate() {
        cur.refill(c)?;
        if let Some(e) = cur.buffer.front() {
            heads.push(Reverse((e.seq, i)));
        }
    }
    while out.len() <= limit {
        let Some(Reverse((_, i))) = heads.pop() else {
            break;
        };
        let cur = &mut cursors[i];
        let Some(e) = cur.buffer.pop_front() else {
            continue;
        };
        cur.refill(c)?;
        if let Some(next) = cur.buffer.front() {
            heads.push(Reverse((next.seq, i)));
        }
        if sees_message_change(c, user_id, &e, &mut intervals)? {
            out.push((e, cursors[i].audience.clone()));
        }
    }
    let has_more = out.len() > limit;
    out.truncate(limit);
    Ok((out, has_more))
}

/// [`sync_page_raw`] with every payload parsed.
pub fn sync_page(
    c: &mut dyn SqlConn,
    user_id: &str,
    since: Seq,
    limit: usize,
) -> Result<(Vec<Event>, bool)> {
    let (raw, has_more) = sync_page_raw(c, user_id, since, limit)?;
    Ok((
        raw.into_iter()
            .map(|(e, audience)| e.into_event(audience))
            .collect(),
        has_more,
    ))
}
