//! DDP frames as the server writes them, and EJSON dates.

use crate::rocketchat::params::js_date_parse;
use serde_json::{json, Map, Value};

/// The DDP versions this server speaks, in order of preference.
pub const VERSIONS: &[&str] = &["1", "pre2", "pre1"];

pub fn connected(session: &str) -> String {
    json!({ "msg": "connected", "session": session }).to_string()
}

/// The answer to a `connect` with a version this server does not speak.
pub fn failed() -> String {
    json!({ "msg": "failed", "version": VERSIONS[0] }).to_string()
}

pub fn ping() -> String {
    r#"{"msg":"ping"}"#.to_owned()
}

/// `pong`, echoing the ping's id if it had one.
pub fn pong(id: Option<&Value>) -> String {
    match id {
        Some(id) => json!({ "msg": "pong", "id": id }).to_string(),
        None => r#"{"msg":"pong"}"#.to_owned(),
    }
}

/// A protocol-level error: a frame the server could not take.
pub fn error(reason: &str, offending: Option<&Value>) -> String {
    let mut f = json!({ "msg": "error", "reason": reason });
    if let Some(o) = offending {
        f["offendingMessage"] = o.clone();
    }
    f.to_string()
}

/// A method's or subscription's error, in Meteor's shape: `error` is a string code or a number.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodError {
    pub error: Value,
    pub reason: String,
    pub details: Option<Value>,
}

impl MethodError {
    pub fn new(error: impl Into<Value>, reason: impl Into<String>) -> Self {
        MethodError {
            error: error.into(),
            reason: reason.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn to_value(&self) -> Value {
        let code = match &self.error {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut v = json!({
            "isClientSafe": true,
            "error": self.error,
            "reason": self.reason,
            "message": format!("{} [{}]", self.reason, code),
            "errorType": "Meteor.Error",
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

pub fn result(id: &Value, outcome: Result<Value, MethodError>) -> String {
    match outcome {
        // Meteor leaves `result` out when a method returns undefined.
        Ok(Value::Null) => json!({ "msg": "result", "id": id }).to_string(),
        Ok(r) => json!({ "msg": "result", "id": id, "result": r }).to_string(),
        Err(e) => json!({ "msg": "result", "id": id, "error": e.to_value() }).to_string(),
    }
}

pub fn updated(id: &Value) -> String {
    json!({ "msg": "updated", "methods": [id] }).to_string()
}

pub fn ready(id: &str) -> String {
    json!({ "msg": "ready", "subs": [id] }).to_string()
}

pub fn nosub(id: &str, error: Option<&MethodError>) -> String {
    match error {
        Some(e) => json!({ "msg": "nosub", "id": id, "error": e.to_value() }).to_string(),
        None => json!({ "msg": "nosub", "id": id }).to_string(),
    }
}

/// The `added` a stream's document gets once, before its first `changed`.
pub fn stream_added(collection: &str, event_name: &str) -> String {
    json!({
        "msg": "added",
        "collection": collection,
        "id": "id",
        "fields": { "eventName": event_name },
    })
    .to_string()
}

/// One stream event.
pub fn stream_changed(collection: &str, event_name: &str, args: Vec<Value>) -> String {
    json!({
        "msg": "changed",
        "collection": collection,
        "id": "id",
        "fields": { "eventName": event_name, "args": args },
    })
    .to_string()
}

pub fn date(ms: i64) -> Value {
    json!({ "$date": ms })
}

/// Milliseconds from an EJSON date `{"$date": ms}`.
pub fn parse_date(v: &Value) -> Option<i64> {
    let d = v.as_object()?.get("$date")?;
    d.as_i64().or_else(|| d.as_f64().map(|f| f as i64))
}

/// The fields of the REST face's documents that hold dates.
const DATE_FIELDS: &[&str] = &[
    "ts",
    "_updatedAt",
    "editedAt",
    "tlm",
    "lm",
    "_deletedAt",
    "createdAt",
    "jitsiTimeout",
];

/// A REST document with its ISO date strings turned into EJSON dates, nested documents
/// (`lastMessage`, a room's) included.
pub fn ejson(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        ejson_object(o);
    }
    v
}

fn ejson_object(o: &mut Map<String, Value>) {
    for k in DATE_FIELDS {
        if let Some(slot) = o.get_mut(*k) {
            if let Some(ms) = slot.as_str().and_then(js_date_parse) {
                *slot = date(ms);
            }
        }
    }
    if let Some(Value::Object(inner)) = o.get_mut("lastMessage") {
        ejson_object(inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_error_has_meteor_shape() {
        let e = MethodError::new(404, "Method 'nope' not found");
        let v: Value = serde_json::from_str(&result(&json!("7"), Err(e))).unwrap();
        assert_eq!(
            v,
            json!({"msg":"result","id":"7","error":{
                "isClientSafe":true,"error":404,"reason":"Method 'nope' not found",
                "message":"Method 'nope' not found [404]","errorType":"Meteor.Error"}})
        );
        let e = MethodError::new("error-invalid-user", "Invalid user");
        assert_eq!(e.to_value()["message"], "Invalid user [error-invalid-user]");
    }

    #[test]
    fn dates_become_ejson() {
        let v = ejson(json!({
            "ts": "2024-05-01T10:00:00.123Z",
            "msg": "2024-05-01T10:00:00.123Z",
            "lastMessage": { "_updatedAt": "2024-05-01T10:00:00.000Z" },
        }));
        assert_eq!(v["ts"], json!({"$date": 1_714_557_600_123i64}));
        assert_eq!(v["msg"], "2024-05-01T10:00:00.123Z");
        assert_eq!(
            v["lastMessage"]["_updatedAt"],
            json!({"$date": 1_714_557_600_000i64})
        );
        assert_eq!(parse_date(&json!({"$date": 5})), Some(5));
        assert_eq!(parse_date(&json!(5)), None);
    }

    #[test]
    fn result_without_value_leaves_result_out() {
        assert_eq!(
            result(&json!("1"), Ok(Value::Null)),
            r#"{"id":"1","msg":"result"}"#
        );
    }
}
