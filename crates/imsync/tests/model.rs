mod common;
mod support;

// A randomized model test: users perform random operations through the HTTP API; a reference
// model predicts every outcome (including refusals), labels every event with the membership
// intervals it falls in, and checks each user's sync stream, replayed, against the REST reads.
//
// Rerun a failure with `IMSYNC_SEED=<seed>`; `IMSYNC_OPS` changes the number of operations.

use common::{Api, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use support::{conv_of, drain, error_code, history_all, kind, seq};

const USERS: usize = 7;
const DEFAULT_OPS: usize = 2500;
const CHECK_EVERY: usize = 700;
const EMOJIS: [&str; 3] = ["👍", "🎉", "❤"];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

struct Conv {
    id: String,
    /// The pair of a direct conversation.
    direct: Option<(usize, usize)>,
    /// Present members: role and the seq they (last) joined at.
    members: BTreeMap<usize, (Role, i64)>,
    /// Every membership interval `[joined, left]` of every user, by seq.
    intervals: HashMap<usize, Vec<(i64, Option<i64>)>>,
    /// The members who filed it away (archive is each member's own).
    archived: BTreeSet<usize>,
    msgs: Vec<usize>,
}

impl Conv {
    fn present(&self, u: usize) -> bool {
        self.members.contains_key(&u)
    }
    fn saw(&self, u: usize, s: i64) -> bool {
        self.intervals
            .get(&u)
            .is_some_and(|iv| iv.iter().any(|(j, l)| s >= *j && l.is_none_or(|l| s <= l)))
    }
    fn role(&self, u: usize) -> Option<Role> {
        self.members.get(&u).map(|(r, _)| *r)
    }
}

struct Msg {
    id: String,
    sender: usize,
    content: String,
    deleted: bool,
    created: i64,
    /// Seqs of its edit, delete and reaction events.
    changes: Vec<i64>,
    /// Present reactions in the order they were (last) made.
    reactions: Vec<(usize, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Aud {
    Shared,
    Private(usize),
}

#[derive(Clone, Debug)]
struct Pred {
    kind: &'static str,
    aud: Aud,
}

fn shared(kind: &'static str) -> Pred {
    Pred {
        kind,
        aud: Aud::Shared,
    }
}

/// An expected refusal, or success.
enum Outcome {
    Ok(StatusCode, Vec<Pred>),
    Refused(StatusCode, Option<&'static str>),
}

struct World {
    users: Vec<Api>,
    convs: Vec<Conv>,
    conv_index: HashMap<String, usize>,
    msgs: Vec<Msg>,
    direct: HashMap<(usize, usize), usize>,
    /// Every shared event: seq -> (conversation, type, seq that created the message it changes).
    shared: BTreeMap<i64, (usize, String, Option<i64>)>,
    /// The private events each user must receive, in order: (type, conversation).
    private: Vec<Vec<(String, usize)>>,
    cursors: Vec<i64>,
    streams: Vec<Vec<Value>>,
    head: i64,
    rng: StdRng,
    refused: usize,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl World {
    fn uid(&self, u: usize) -> &str {
        &self.users[u].user_id
    }

    fn reactions_json(&self, m: usize) -> Value {
        let mut map = Map::new();
        for (u, emoji) in &self.msgs[m].reactions {
            map.entry(emoji.clone())
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .unwrap()
                .push(json!(self.uid(*u)));
        }
        Value::Object(map)
    }

    /// Syncs the actor forward and labels the events the operation just appended.
    async fn absorb(&mut self, actor: usize, conv: Option<usize>, preds: &[Pred]) -> Vec<i64> {
        let limits: Vec<usize> = (0..3).map(|_| self.rng.random_range(1..=7)).collect();
        let (events, cursor) = drain(&self.users[actor], self.cursors[actor], &limits).await;
        self.cursors[actor] = cursor;
        self.streams[actor].extend(events.iter().cloned());
        let new: Vec<&Value> = events.iter().filter(|e| seq(e) > self.head).collect();
        let visible: Vec<&Pred> = preds
            .iter()
            .filter(|p| p.aud == Aud::Shared || p.aud == Aud::Private(actor))
            .collect();
        let got: Vec<&str> = new.iter().map(|e| kind(e)).collect();
        let want: Vec<&str> = visible.iter().map(|p| p.kind).collect();
        assert_eq!(
            got, want,
            "user {actor} saw new events {new:?}, the model expected {preds:?}"
        );
        let mut seqs = Vec::new();
        for (e, p) in new.iter().zip(&visible) {
            let c = conv.expect("an event without a conversation");
            assert_eq!(
                conv_of(e),
                Some(self.convs[c].id.as_str()),
                "event in the wrong conversation: {e}"
            );
            if p.aud == Aud::Shared {
                let created = e["data"]["createdSeq"].as_i64();
                self.shared.insert(seq(e), (c, p.kind.to_owned(), created));
            }
            seqs.push(seq(e));
        }
        for p in preds {
            if let Aud::Private(u) = p.aud {
                self.private[u].push((p.kind.to_owned(), conv.unwrap()));
            }
        }
        if let Some(last) = new.last() {
            self.head = seq(last);
        }
        seqs
    }

    /// Performs one request and checks its status against the model's prediction.
    async fn call(
        &mut self,
        actor: usize,
        method: Method,
        path: &str,
        body: Option<Value>,
        outcome: &Outcome,
    ) -> Value {
        let (s, b) = self.users[actor]
            .request(method.clone(), path, body, &[])
            .await;
        match outcome {
            Outcome::Ok(want, _) => {
                assert_eq!(s, *want, "{method} {path} by user {actor}: {b}");
            }
            Outcome::Refused(want, code) => {
                assert_eq!(s, *want, "{method} {path} by user {actor}: {b}");
                assert_eq!(b["ok"], json!(false), "{b}");
                if let Some(code) = code {
                    assert_eq!(error_code(&b), *code, "{method} {path}: {b}");
                }
                self.refused += 1;
            }
        }
        b
    }

    fn join(&mut self, c: usize, u: usize, role: Role, at: i64) {
        let conv = &mut self.convs[c];
        conv.members.insert(u, (role, at));
        conv.intervals.entry(u).or_default().push((at, None));
        // Joining again starts with the conversation in the list, not filed away.
        conv.archived.remove(&u);
    }

    fn leave(&mut self, c: usize, u: usize, at: i64) {
        let (role, _) = self.convs[c].members.remove(&u).expect("leaving member");
        let last = self.convs[c]
            .intervals
            .get_mut(&u)
            .and_then(|iv| iv.last_mut())
            .expect("an open interval");
        assert!(last.1.is_none());
        last.1 = Some(at);
        if role == Role::Owner
            && !self.convs[c]
                .members
                .values()
                .any(|(r, _)| *r == Role::Owner)
        {
            // The longest-standing admin, else member, becomes the owner.
            let order = |w: &World, x: &usize| (w.convs[c].members[x].1, w.uid(*x).to_owned());
            let mut rest: Vec<usize> = self.convs[c].members.keys().copied().collect();
            rest.sort_by_key(|x| order(self, x));
            let heir = rest
                .iter()
                .find(|x| self.convs[c].members[x].0 == Role::Admin)
                .or(rest.first())
                .copied();
            if let Some(h) = heir {
                self.convs[c].members.get_mut(&h).unwrap().0 = Role::Owner;
            }
        }
    }

    fn pick_conv(&mut self, actor: usize) -> Option<usize> {
        if self.convs.is_empty() {
            return None;
        }
        let mine: Vec<usize> = (0..self.convs.len())
            .filter(|c| self.convs[*c].present(actor))
            .collect();
        if !mine.is_empty() && self.rng.random_bool(0.9) {
            Some(mine[self.rng.random_range(0..mine.len())])
        } else {
            Some(self.rng.random_range(0..self.convs.len()))
        }
    }

    fn pick_msg(&mut self, actor: usize, c: usize, own_live: bool) -> Option<usize> {
        let msgs = &self.convs[c].msgs;
        if msgs.is_empty() {
            return None;
        }
        let own: Vec<usize> = msgs
            .iter()
            .copied()
            .filter(|m| self.msgs[*m].sender == actor && !self.msgs[*m].deleted)
            .collect();
        if own_live && !own.is_empty() && self.rng.random_bool(0.85) {
            return Some(own[self.rng.random_range(0..own.len())]);
        }
        // Prefer recent messages, which the actor is likelier to see.
        let from = msgs.len().saturating_sub(12);
        Some(msgs[self.rng.random_range(from..msgs.len())])
    }

    async fn step(&mut self, op: usize) {
        let actor = self.rng.random_range(0..USERS);
        let r = self.rng.random_range(0..100);
        let conv = self.pick_conv(actor);
        match (r, conv) {
            (0..=2, _) | (_, None) => self.create_group(actor).await,
            (3..=32, Some(c)) => self.send(actor, c, op).await,
            (33..=40, _) => self.send_direct(actor, op).await,
            (41..=51, Some(c)) => self.edit(actor, c, op).await,
            (52..=58, Some(c)) => self.delete(actor, c, op).await,
            (59..=70, Some(c)) => self.react(actor, c, op).await,
            (71..=79, Some(c)) => self.add(actor, c).await,
            (80..=85, Some(c)) => self.remove(actor, c).await,
            (86..=90, Some(c)) => self.leave_op(actor, c).await,
            (91..=95, Some(c)) => self.archive(actor, c).await,
            (_, Some(c)) => self.send(actor, c, op).await,
        }
    }

    async fn create_group(&mut self, actor: usize) {
        let mut others: Vec<usize> = (0..USERS)
            .filter(|u| *u != actor && self.rng.random_bool(0.5))
            .collect();
        others.sort();
        let refs: Vec<String> = others
            .iter()
            .map(|u| {
                // Members by id or by username.
                if *u % 2 == 0 {
                    self.uid(*u).to_owned()
                } else {
                    self.users[*u].username.clone()
                }
            })
            .collect();
        let title = format!("g{}", self.convs.len());
        let outcome = Outcome::Ok(StatusCode::CREATED, vec![shared("conversation.create")]);
        let b = self
            .call(
                actor,
                Method::POST,
                "/api/im/groups",
                Some(json!({"title": title, "members": refs})),
                &outcome,
            )
            .await;
        let id = b["data"]["groupId"].as_str().unwrap().to_owned();
        let c = self.new_conv(id, None);
        let Outcome::Ok(_, preds) = outcome else {
            unreachable!()
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        self.join(c, actor, Role::Owner, seqs[0]);
        for u in others {
            self.join(c, u, Role::Member, seqs[0]);
        }
    }

    fn new_conv(&mut self, id: String, direct: Option<(usize, usize)>) -> usize {
        let c = self.convs.len();
        self.conv_index.insert(id.clone(), c);
        self.convs.push(Conv {
            id,
            direct,
            members: BTreeMap::new(),
            intervals: HashMap::new(),
            archived: BTreeSet::new(),
            msgs: Vec::new(),
        });
        if let Some(p) = direct {
            self.direct.insert(p, c);
        }
        c
    }

    fn peer(&self, c: usize, actor: usize) -> Option<usize> {
        self.convs[c]
            .direct
            .map(|(a, b)| if a == actor { b } else { a })
    }

    async fn send(&mut self, actor: usize, c: usize, op: usize) {
        let cv = &self.convs[c];
        let mut readd = None;
        let outcome = if !cv.present(actor) {
            Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_PARTICIPANT"))
        } else {
            let mut preds = Vec::new();
            if cv.archived.contains(&actor) {
                // A send brings the sender's archived copy back.
                preds.push(Pred {
                    kind: "conversation.unarchive",
                    aud: Aud::Private(actor),
                });
            }
            if let Some(peer) = self.peer(c, actor).filter(|p| !cv.present(*p)) {
                readd = Some(peer);
                preds.push(Pred {
                    kind: "conversation.create",
                    aud: Aud::Private(peer),
                });
                preds.push(shared("participant.add"));
            }
            preds.push(shared("message.new"));
            Outcome::Ok(StatusCode::CREATED, preds)
        };
        let content = format!("m{op}");
        let path = format!("/api/im/messages/{}", self.convs[c].id);
        let b = self
            .call(
                actor,
                Method::POST,
                &path,
                Some(json!({ "content": content })),
                &outcome,
            )
            .await;
        self.after_send(actor, c, outcome, b, content, readd.into_iter().collect())
            .await;
    }

    async fn after_send(
        &mut self,
        actor: usize,
        c: usize,
        outcome: Outcome,
        b: Value,
        content: String,
        readded: Vec<usize>,
    ) {
        let preds = match outcome {
            Outcome::Ok(_, p) => p,
            Outcome::Refused(..) => {
                self.absorb(actor, Some(c), &[]).await;
                return;
            }
        };
        self.convs[c].archived.remove(&actor);
        let msg = &b["data"]["message"];
        assert_eq!(msg["content"], json!(content), "{b}");
        assert_eq!(msg["senderId"], json!(self.uid(actor)), "{b}");
        let seqs = self.absorb(actor, Some(c), &preds).await;
        // The visible seqs: [participant.add, (own snapshot?)...] then message.new last.
        let mut adds = Vec::new();
        for (p, s) in preds
            .iter()
            .filter(|p| p.aud == Aud::Shared || p.aud == Aud::Private(actor))
            .zip(&seqs)
        {
            if p.kind == "participant.add" {
                adds.push(*s);
            }
        }
        for (u, s) in readded.into_iter().zip(adds) {
            self.join(c, u, Role::Member, s);
        }
        let created = *seqs.last().unwrap();
        let id = msg["id"].as_str().unwrap().to_owned();
        let m = self.msgs.len();
        self.msgs.push(Msg {
            id,
            sender: actor,
            content,
            deleted: false,
            created,
            changes: Vec::new(),
            reactions: Vec::new(),
        });
        self.convs[c].msgs.push(m);
    }

    async fn send_direct(&mut self, actor: usize, op: usize) {
        let other = (actor + self.rng.random_range(1..USERS)) % USERS;
        let content = format!("m{op}");
        let existing = self.direct.get(&pair(actor, other)).copied();
        let mut readded = Vec::new();
        let outcome = match existing {
            None => Outcome::Ok(
                StatusCode::CREATED,
                vec![shared("conversation.create"), shared("message.new")],
            ),
            Some(c) => {
                let mut preds = Vec::new();
                for u in [actor, other] {
                    if !self.convs[c].present(u) {
                        readded.push(u);
                        preds.push(Pred {
                            kind: "conversation.create",
                            aud: Aud::Private(u),
                        });
                        preds.push(shared("participant.add"));
                    }
                }
                if self.convs[c].present(actor) && self.convs[c].archived.contains(&actor) {
                    preds.push(Pred {
                        kind: "conversation.unarchive",
                        aud: Aud::Private(actor),
                    });
                }
                preds.push(shared("message.new"));
                Outcome::Ok(StatusCode::CREATED, preds)
            }
        };
        let path = format!("/api/im/direct/{}/messages", self.uid(other));
        let b = self
            .call(
                actor,
                Method::POST,
                &path,
                Some(json!({ "content": content })),
                &outcome,
            )
            .await;
        let c = match existing {
            Some(c) => c,
            None => {
                let id = b["data"]["conversationId"].as_str().unwrap().to_owned();
                self.new_conv(id, Some(pair(actor, other)))
            }
        };
        if existing.is_none() {
            // Both join at the shared conversation.create, which the actor sees first.
            let Outcome::Ok(_, preds) = &outcome else {
                unreachable!()
            };
            let seqs = self.absorb(actor, Some(c), preds).await;
            self.join(c, actor, Role::Member, seqs[0]);
            self.join(c, other, Role::Member, seqs[0]);
            let msg = &b["data"]["message"];
            assert_eq!(msg["content"], json!(content), "{b}");
            let m = self.msgs.len();
            self.msgs.push(Msg {
                id: msg["id"].as_str().unwrap().to_owned(),
                sender: actor,
                content,
                deleted: false,
                created: seqs[1],
                changes: Vec::new(),
                reactions: Vec::new(),
            });
            self.convs[c].msgs.push(m);
            return;
        }
        if matches!(outcome, Outcome::Ok(..)) {
            assert_eq!(b["data"]["conversationId"], json!(self.convs[c].id), "{b}");
        }
        self.after_send(actor, c, outcome, b, content, readded)
            .await;
    }

    /// The common checks of edit, delete and react, in the server's order.
    fn message_checks(&self, actor: usize, c: usize, m: usize) -> Option<Outcome> {
        let cv = &self.convs[c];
        let msg = &self.msgs[m];
        if !cv.present(actor) {
            return Some(Outcome::Refused(
                StatusCode::FORBIDDEN,
                Some("NOT_PARTICIPANT"),
            ));
        }
        if !cv.saw(actor, msg.created) || msg.deleted {
            return Some(Outcome::Refused(StatusCode::NOT_FOUND, Some("NOT_FOUND")));
        }
        None
    }

    async fn edit(&mut self, actor: usize, c: usize, op: usize) {
        let Some(m) = self.pick_msg(actor, c, true) else {
            return self.send(actor, c, op).await;
        };
        let outcome = self.message_checks(actor, c, m).unwrap_or_else(|| {
            if self.msgs[m].sender != actor {
                Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_SENDER"))
            } else {
                Outcome::Ok(StatusCode::OK, vec![shared("message.edit")])
            }
        });
        let content = format!("e{op}");
        let path = format!("/api/im/messages/{}/{}", self.convs[c].id, self.msgs[m].id);
        let b = self
            .call(
                actor,
                Method::PATCH,
                &path,
                Some(json!({ "content": content })),
                &outcome,
            )
            .await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        if let Some(s) = seqs.first() {
            assert_eq!(b["data"]["message"]["content"], json!(content), "{b}");
            self.msgs[m].content = content;
            self.msgs[m].changes.push(*s);
        }
    }

    async fn delete(&mut self, actor: usize, c: usize, op: usize) {
        let Some(m) = self.pick_msg(actor, c, true) else {
            return self.send(actor, c, op).await;
        };
        let outcome = self.message_checks(actor, c, m).unwrap_or_else(|| {
            if self.msgs[m].sender != actor {
                Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_SENDER"))
            } else {
                Outcome::Ok(StatusCode::OK, vec![shared("message.delete")])
            }
        });
        let path = format!("/api/im/messages/{}/{}", self.convs[c].id, self.msgs[m].id);
        self.call(actor, Method::DELETE, &path, None, &outcome)
            .await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        if let Some(s) = seqs.first() {
            self.msgs[m].deleted = true;
            self.msgs[m].changes.push(*s);
        }
    }

    async fn react(&mut self, actor: usize, c: usize, op: usize) {
        let Some(m) = self.pick_msg(actor, c, false) else {
            return self.send(actor, c, op).await;
        };
        let emoji = EMOJIS[self.rng.random_range(0..EMOJIS.len())].to_owned();
        let has = self.msgs[m]
            .reactions
            .iter()
            .any(|(u, e)| *u == actor && *e == emoji);
        // Mostly toggle; sometimes repeat the current state, which changes nothing.
        let add = if self.rng.random_bool(0.85) {
            !has
        } else {
            has
        };
        let outcome = self.message_checks(actor, c, m).unwrap_or_else(|| {
            if add != has {
                Outcome::Ok(StatusCode::OK, vec![shared("message.reaction")])
            } else {
                Outcome::Ok(StatusCode::OK, Vec::new())
            }
        });
        let path = format!(
            "/api/im/messages/{}/{}/reactions",
            self.convs[c].id, self.msgs[m].id
        );
        let b = self
            .call(
                actor,
                Method::POST,
                &path,
                Some(json!({"emoji": emoji, "remove": !add})),
                &outcome,
            )
            .await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        if let Some(s) = seqs.first() {
            let msg = &mut self.msgs[m];
            msg.reactions.retain(|(u, e)| !(*u == actor && *e == emoji));
            if add {
                msg.reactions.push((actor, emoji));
            }
            msg.changes.push(*s);
        }
        if matches!(outcome, Outcome::Ok(..)) {
            assert_eq!(
                b["data"]["reactions"],
                self.reactions_json(m),
                "reactions answered by the server"
            );
        }
    }

    async fn add(&mut self, actor: usize, c: usize) {
        let target = self.rng.random_range(0..USERS);
        let role = if self.rng.random_bool(0.25) {
            Role::Admin
        } else {
            Role::Member
        };
        let cv = &self.convs[c];
        let outcome = if !cv.present(actor) {
            Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_PARTICIPANT"))
        } else if cv.direct.is_some() {
            Outcome::Refused(StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
        } else if cv.role(actor) < Some(Role::Admin) {
            Outcome::Refused(StatusCode::FORBIDDEN, Some("FORBIDDEN"))
        } else if cv.present(target) {
            Outcome::Refused(StatusCode::CONFLICT, Some("CONFLICT"))
        } else {
            Outcome::Ok(
                StatusCode::CREATED,
                vec![
                    Pred {
                        kind: "conversation.create",
                        aud: Aud::Private(target),
                    },
                    shared("participant.add"),
                ],
            )
        };
        let path = format!("/api/im/conversations/{}/participants", self.convs[c].id);
        let b = self
            .call(
                actor,
                Method::POST,
                &path,
                Some(json!({"userId": self.uid(target), "role": role.as_str()})),
                &outcome,
            )
            .await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        if let Some(s) = seqs.last() {
            self.join(c, target, role, *s);
            let got: BTreeSet<String> = b["data"]["participants"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["userId"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(got, self.member_ids(c), "participants after add");
        }
    }

    fn member_ids(&self, c: usize) -> BTreeSet<String> {
        self.convs[c]
            .members
            .keys()
            .map(|u| self.uid(*u).to_owned())
            .collect()
    }

    async fn remove(&mut self, actor: usize, c: usize) {
        // Mostly present members, sometimes anyone.
        let present: Vec<usize> = self.convs[c].members.keys().copied().collect();
        let target = if !present.is_empty() && self.rng.random_bool(0.85) {
            present[self.rng.random_range(0..present.len())]
        } else {
            self.rng.random_range(0..USERS)
        };
        let cv = &self.convs[c];
        let outcome = if !cv.present(actor) {
            Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_PARTICIPANT"))
        } else if !cv.present(target) {
            Outcome::Refused(StatusCode::NOT_FOUND, Some("NOT_FOUND"))
        } else if target != actor
            && (cv.direct.is_some()
                || cv.role(actor) < Some(Role::Admin)
                || (cv.role(target) == Some(Role::Owner) && cv.role(actor) != Some(Role::Owner)))
        {
            // Nobody is removed from a direct conversation; only managers remove others, and
            // only an owner removes an owner.
            Outcome::Refused(StatusCode::FORBIDDEN, Some("FORBIDDEN"))
        } else {
            Outcome::Ok(StatusCode::OK, self.removal_events(c, target))
        };
        let path = format!(
            "/api/im/conversations/{}/participants/{}",
            self.convs[c].id,
            self.uid(target)
        );
        self.call(actor, Method::DELETE, &path, None, &outcome)
            .await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        if let Some(s) = seqs.last() {
            self.leave(c, target, *s);
        }
    }

    /// What removing `u` appends: when the group's only owner goes and others stay, first a
    /// `conversation.update` naming the new owner, then the `participant.remove`.
    fn removal_events(&self, c: usize, u: usize) -> Vec<Pred> {
        let cv = &self.convs[c];
        let handover = cv.role(u) == Some(Role::Owner)
            && cv.members.len() > 1
            && !cv
                .members
                .iter()
                .any(|(m, (r, _))| *m != u && *r == Role::Owner);
        let mut events = Vec::new();
        if handover {
            events.push(shared("conversation.update"));
        }
        events.push(shared("participant.remove"));
        events
    }

    async fn leave_op(&mut self, actor: usize, c: usize) {
        let outcome = if !self.convs[c].present(actor) {
            Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_PARTICIPANT"))
        } else {
            Outcome::Ok(StatusCode::OK, self.removal_events(c, actor))
        };
        let path = format!("/api/im/conversations/{}", self.convs[c].id);
        self.call(actor, Method::DELETE, &path, None, &outcome)
            .await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        let seqs = self.absorb(actor, Some(c), &preds).await;
        if let Some(s) = seqs.last() {
            self.leave(c, actor, *s);
        }
    }

    async fn archive(&mut self, actor: usize, c: usize) {
        let cv = &self.convs[c];
        let was = cv.archived.contains(&actor);
        let archive = if was {
            self.rng.random_bool(0.1)
        } else {
            self.rng.random_bool(0.7)
        };
        let outcome = if !cv.present(actor) {
            Outcome::Refused(StatusCode::FORBIDDEN, Some("NOT_PARTICIPANT"))
        } else if was == archive {
            Outcome::Ok(StatusCode::OK, Vec::new())
        } else {
            let kind = if archive {
                "conversation.archive"
            } else {
                "conversation.unarchive"
            };
            Outcome::Ok(
                StatusCode::OK,
                vec![Pred {
                    kind,
                    aud: Aud::Private(actor),
                }],
            )
        };
        let path = format!(
            "/api/im/conversations/{}/{}",
            self.convs[c].id,
            if archive { "archive" } else { "unarchive" }
        );
        let b = self.call(actor, Method::POST, &path, None, &outcome).await;
        let preds = match &outcome {
            Outcome::Ok(_, p) => p.clone(),
            Outcome::Refused(..) => Vec::new(),
        };
        self.absorb(actor, Some(c), &preds).await;
        if let Outcome::Ok(..) = outcome {
            if archive {
                self.convs[c].archived.insert(actor);
            } else {
                self.convs[c].archived.remove(&actor);
            }
            assert_eq!(b["data"]["archived"], json!(archive), "{b}");
        }
    }

    /// Compares every user's replayed sync stream with the reference model and the REST reads.
    async fn check(&mut self, last: bool) {
        for u in 0..USERS {
            let limits: Vec<usize> = (0..4).map(|_| self.rng.random_range(1..=7)).collect();
            let (events, cursor) = drain(&self.users[u], self.cursors[u], &limits).await;
            self.cursors[u] = cursor;
            assert!(
                events.iter().all(|e| seq(e) <= self.head),
                "user {u} received an event nobody made: {events:?}"
            );
            self.streams[u].extend(events);
            if last {
                // A fresh sync from 0, mixing tiny and larger pages.
                let mut limits: Vec<usize> = (0..3).map(|_| self.rng.random_range(1..=7)).collect();
                limits.push(self.rng.random_range(20..=60));
                let (full, _) = drain(&self.users[u], 0, &limits).await;
                assert_eq!(
                    full, self.streams[u],
                    "user {u}: a fresh sync differs from the incremental one"
                );
            }
            self.check_stream(u);
            self.check_rest(u).await;
        }
    }

    /// Visibility and completeness of one user's stream against the reference intervals.
    fn check_stream(&self, u: usize) {
        let stream = &self.streams[u];
        let mut private = Vec::new();
        let mut prev = 0;
        for e in stream {
            let s = seq(e);
            assert!(s > prev, "user {u}: seq {s} after {prev}");
            prev = s;
            match self.shared.get(&s) {
                Some((c, k, _)) => {
                    assert_eq!(kind(e), k, "user {u}: event {e}");
                    assert_eq!(conv_of(e), Some(self.convs[*c].id.as_str()));
                    assert!(
                        self.convs[*c].saw(u, s),
                        "user {u} received {e} of a conversation they were not in at seq {s}"
                    );
                }
                None => {
                    let c = self.conv_index[conv_of(e).expect("private event conversation")];
                    private.push((kind(e).to_owned(), c));
                }
            }
        }
        assert_eq!(private, self.private[u], "user {u}: private events");
        let got: BTreeSet<i64> = stream.iter().map(seq).collect();
        for (s, (c, k, created)) in &self.shared {
            // A change to a message reaches only those who could see the message itself.
            let saw_message = created.is_none_or(|m| self.convs[*c].saw(u, m));
            if self.convs[*c].saw(u, *s) && saw_message {
                assert!(
                    got.contains(s),
                    "user {u} missed {k} at seq {s} of conversation {c}"
                );
            }
        }
    }

    async fn check_rest(&self, u: usize) {
        let api = &self.users[u];
        let me = self.uid(u).to_owned();
        let replayed = replay(&self.streams[u]);

        // The conversation list: REST = replay = model.
        let (s, b) = api.get("/api/im/conversations").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let listed: BTreeMap<String, Value> = b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
            .collect();
        let model: BTreeSet<String> = self
            .convs
            .iter()
            .filter(|c| c.present(u))
            .map(|c| c.id.clone())
            .collect();
        let from_sync: BTreeSet<String> = replayed
            .iter()
            .filter(|(_, c)| c.members.contains(&me))
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(
            listed.keys().cloned().collect::<BTreeSet<_>>(),
            model,
            "user {u}: conversations listed vs model"
        );
        assert_eq!(
            from_sync, model,
            "user {u}: conversations from sync vs model"
        );

        for (ci, cv) in self.convs.iter().enumerate() {
            if !cv.intervals.contains_key(&u) {
                assert!(!replayed.contains_key(&cv.id), "user {u} knows {ci}");
                continue;
            }
            let rc = &replayed[&cv.id];
            if cv.present(u) {
                let row = &listed[&cv.id];
                let archived = cv.archived.contains(&u);
                assert_eq!(row["archived"], json!(archived), "user {u} conv {ci}");
                assert_eq!(rc.archived, archived, "user {u} conv {ci}: archived");
                assert_eq!(row["memberCount"], json!(cv.members.len()));
                let ids = self.member_ids(ci);
                assert_eq!(rc.members, ids, "user {u} conv {ci}: members from sync");
                let (s, b) = api.get(&format!("/api/im/conversations/{}", cv.id)).await;
                assert_eq!(s, StatusCode::OK, "{b}");
                let parts: BTreeMap<String, String> = b["data"]["participants"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["userId"].as_str().unwrap().to_owned(),
                            p["role"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                let want: BTreeMap<String, String> = cv
                    .members
                    .iter()
                    .map(|(m, (r, _))| (self.uid(*m).to_owned(), r.as_str().to_owned()))
                    .collect();
                assert_eq!(parts, want, "user {u} conv {ci}: participants and roles");

                // History = the live messages made while the user was in.
                let hist = history_all(api, &cv.id).await;
                let got: Vec<(String, String)> = hist
                    .iter()
                    .map(|m| {
                        (
                            m["id"].as_str().unwrap().to_owned(),
                            m["content"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                let want: Vec<(String, String)> = cv
                    .msgs
                    .iter()
                    .map(|m| &self.msgs[*m])
                    .filter(|m| !m.deleted && cv.saw(u, m.created))
                    .map(|m| (m.id.clone(), m.content.clone()))
                    .collect();
                assert_eq!(got, want, "user {u} conv {ci}: history");
            } else {
                let (s, b) = api.get(&format!("/api/im/messages/{}", cv.id)).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "user {u} conv {ci}: {b}");
            }

            // Sync replay = model for every message whose every change the user saw.
            for &mi in &cv.msgs {
                let m = &self.msgs[mi];
                if !cv.saw(u, m.created) {
                    assert!(!rc.msgs.contains_key(&m.id), "user {u} has {}", m.id);
                    continue;
                }
                let r = rc
                    .msgs
                    .get(&m.id)
                    .unwrap_or_else(|| panic!("user {u} never got message {}", m.id));
                if m.changes.iter().all(|s| cv.saw(u, *s)) {
                    assert_eq!(r.content, m.content, "user {u}: content of {}", m.id);
                    assert_eq!(r.deleted, m.deleted, "user {u}: deletion of {}", m.id);
                    assert_eq!(
                        r.reactions,
                        self.reactions_json(mi),
                        "user {u}: reactions of {}",
                        m.id
                    );
                }
            }
        }
    }
}

#[derive(Default, Debug)]
struct RConv {
    members: BTreeSet<String>,
    archived: bool,
    msgs: HashMap<String, RMsg>,
}

#[derive(Debug)]
struct RMsg {
    content: String,
    deleted: bool,
    reactions: Value,
}

/// A client's view built from its sync stream alone.
fn replay(events: &[Value]) -> HashMap<String, RConv> {
    let mut convs: HashMap<String, RConv> = HashMap::new();
    for e in events {
        let d = &e["data"];
        let cid = conv_of(e).expect("conversationId").to_owned();
        let c = convs.entry(cid).or_default();
        let str_of = |v: &Value| v.as_str().unwrap().to_owned();
        match kind(e) {
            "conversation.create" => {
                c.members = d["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(|m| str_of(&m["userId"]))
                    .collect();
                c.archived = d["archived"].as_bool().unwrap_or(false);
            }
            "participant.add" => {
                c.members.insert(str_of(&d["userId"]));
            }
            // A snapshot of the members (sent when ownership passes on).
            "conversation.update" => {
                c.members = d["members"]
                    .as_array()
                    .expect("members")
                    .iter()
                    .map(|m| str_of(&m["userId"]))
                    .collect();
            }
            "participant.remove" => {
                c.members.remove(&str_of(&d["userId"]));
            }
            "conversation.archive" => c.archived = true,
            "conversation.unarchive" => c.archived = false,
            "message.new" => {
                c.msgs.insert(
                    str_of(&d["id"]),
                    RMsg {
                        content: str_of(&d["content"]),
                        deleted: false,
                        reactions: json!({}),
                    },
                );
            }
            "message.edit" => {
                if let Some(m) = c.msgs.get_mut(d["id"].as_str().unwrap()) {
                    m.content = str_of(&d["content"]);
                }
            }
            "message.delete" => {
                if let Some(m) = c.msgs.get_mut(d["id"].as_str().unwrap()) {
                    m.deleted = true;
                }
            }
            "message.reaction" => {
                if let Some(m) = c.msgs.get_mut(d["messageId"].as_str().unwrap()) {
                    m.reactions = d["reactions"].clone();
                }
            }
            other => panic!("unexpected event type {other}: {e}"),
        }
    }
    convs
}

async fn run(seed: u64, ops: usize) {
    let srv = TestServer::start().await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(srv.user(&format!("user{i}")).await);
    }
    let mut w = World {
        users,
        convs: Vec::new(),
        conv_index: HashMap::new(),
        msgs: Vec::new(),
        direct: HashMap::new(),
        shared: BTreeMap::new(),
        private: vec![Vec::new(); USERS],
        cursors: vec![0; USERS],
        streams: vec![Vec::new(); USERS],
        head: 0,
        rng: StdRng::seed_from_u64(seed),
        refused: 0,
    };
    let (mut t_ops, mut t_checks) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for op in 0..ops {
        let t = std::time::Instant::now();
        w.step(op).await;
        t_ops += t.elapsed();
        if op % CHECK_EVERY == CHECK_EVERY - 1 {
            let t = std::time::Instant::now();
            w.check(false).await;
            t_checks += t.elapsed();
        }
    }
    let t = std::time::Instant::now();
    w.check(true).await;
    t_checks += t.elapsed();
    eprintln!("TIMING ops {t_ops:?} checks {t_checks:?}");
    assert!(w.refused > 0, "no refusal was exercised");
    eprintln!(
        "model: {ops} operations, {} conversations, {} messages, {} refusals, {} events",
        w.convs.len(),
        w.msgs.len(),
        w.refused,
        w.head
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_match_the_model() {
    let seed: u64 = std::env::var("IMSYNC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let ops: usize = std::env::var("IMSYNC_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_OPS);
    eprintln!("IMSYNC_SEED={seed}");
    if let Err(e) = tokio::spawn(run(seed, ops)).await {
        let why = if e.is_panic() {
            let p = e.into_panic();
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        } else {
            e.to_string()
        };
        panic!("model test failed with IMSYNC_SEED={seed}: {why}");
    }
}
