//! Request parsing as Rocket.Chat does it: query strings the way `qs` reads them (`a[]=x` is an
//! array), a small ajv-like validator (strict property whitelists, `coerceTypes`, ajv's first
//! error message), JSON bodies whose failures are Rocket.Chat errors, and JavaScript's
//! `Date.parse` for the ISO forms clients send.

use super::error::RcError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

/// The query string as an object of strings and string arrays.
pub fn query_object(query: Option<&str>) -> Result<Map<String, Value>, RcError> {
    let pairs: Vec<(String, String)> = match query {
        None | Some("") => Vec::new(),
        Some(q) => {
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
                &format!("/?{q}").parse().map_err(|_| bad_query())?,
            )
            .map_err(|_| bad_query())?
            .0
        }
    };
    let mut out = Map::new();
    for (k, v) in pairs {
        let (key, is_array) = match k.strip_suffix("[]") {
            Some(base) => (base.to_owned(), true),
            None => (k, false),
        };
        match out.get_mut(&key) {
            Some(Value::Array(items)) => items.push(Value::String(v)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(v)]);
            }
            None if is_array => {
                out.insert(key, Value::Array(vec![Value::String(v)]));
            }
            None => {
                out.insert(key, Value::String(v));
            }
        }
    }
    Ok(out)
}

fn bad_query() -> RcError {
    RcError::invalid_params("must be object")
}

/// The JSON type a property must have.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    /// A string of at least one character.
    NonEmptyStr,
    Num,
    Bool,
    Obj,
    Arr,
    /// A string or an array of strings.
    StrOrStrs,
    Enum(&'static [&'static str]),
    /// ajv-formats' `iso-date-time`.
    IsoDateTime,
}

#[derive(Debug, Clone, Copy)]
pub struct Prop {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub nullable: bool,
}

pub const fn req(name: &'static str, ty: Ty) -> Prop {
    Prop {
        name,
        ty,
        required: true,
        nullable: false,
    }
}
pub const fn opt(name: &'static str, ty: Ty) -> Prop {
    Prop {
        name,
        ty,
        required: false,
        nullable: false,
    }
}
pub const fn nullable(name: &'static str, ty: Ty) -> Prop {
    Prop {
        name,
        ty,
        required: false,
        nullable: true,
    }
}

/// Validates an object the way ajv does with `additionalProperties:false` and (for query
/// strings) `coerceTypes:true`: required properties first, then unknown ones, then each
/// property's type in schema order. Answers the coerced object or ajv's first message.
pub fn check(
    obj: &Map<String, Value>,
    props: &[Prop],
    coerce: bool,
) -> Result<Map<String, Value>, String> {
    for p in props.iter().filter(|p| p.required) {
        if !obj.contains_key(p.name) {
            return Err(format!("must have required property '{}'", p.name));
        }
    }
    if obj.keys().any(|k| !props.iter().any(|p| p.name == k)) {
        return Err("must NOT have additional properties".to_owned());
    }
    let mut out = Map::new();
    for p in props {
        let Some(v) = obj.get(p.name) else { continue };
        out.insert(p.name.to_owned(), check_value(v, p, coerce)?);
    }
    Ok(out)
}

fn check_value(v: &Value, p: &Prop, coerce: bool) -> Result<Value, String> {
    if v.is_null() && p.nullable {
        return Ok(Value::Null);
    }
    // ajv coerces "" to null for nullable properties.
    if coerce && p.nullable && v.as_str() == Some("") {
        return Ok(Value::Null);
    }
    match p.ty {
        Ty::Str => v
            .as_str()
            .map(|_| v.clone())
            .ok_or_else(|| "must be string".to_owned()),
        Ty::NonEmptyStr => match v.as_str() {
            Some("") => Err("must NOT have fewer than 1 characters".to_owned()),
            Some(_) => Ok(v.clone()),
            None => Err("must be string".to_owned()),
        },
        Ty::Num => match v {
            Value::Number(_) => Ok(v.clone()),
            Value::String(s) if coerce => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && !s.trim().is_empty())
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| "must be number".to_owned()),
            _ => Err("must be number".to_owned()),
        },
        Ty::Bool => match v {
            Value::Bool(_) => Ok(v.clone()),
            Value::String(s) if coerce && (s == "true" || s == "false") => {
                Ok(Value::Bool(s == "true"))
            }
            _ => Err("must be boolean".to_owned()),
        },
        Ty::Obj => v
            .is_object()
            .then(|| v.clone())
            .ok_or_else(|| "must be object".to_owned()),
        Ty::Arr => v
            .is_array()
            .then(|| v.clone())
            .ok_or_else(|| "must be array".to_owned()),
        Ty::StrOrStrs => match v {
            Value::String(_) => Ok(v.clone()),
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(v.clone()),
            _ => Err("must be string".to_owned()),
        },
        Ty::Enum(allowed) => match v.as_str() {
            Some(s) if allowed.contains(&s) => Ok(v.clone()),
            _ => Err("must be equal to one of the allowed values".to_owned()),
        },
        Ty::IsoDateTime => match v.as_str() {
            Some(s) if is_iso_date_time(s) => Ok(v.clone()),
            Some(_) => Err("must match format \"iso-date-time\"".to_owned()),
            None => Err("must be string".to_owned()),
        },
    }
}

/// A property of a checked object as a non-empty string.
pub fn str_of<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    obj.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A JSON body. An empty body reads as `{}`; anything but a JSON object is a typed-route error.
pub struct RcBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for RcBody {
    type Rejection = RcError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RcError::Status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body is too large".into(),
                )
            } else {
                RcError::typed_body("Could not read the request body")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(RcBody(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(RcBody(m)),
            Ok(_) => Err(RcError::typed_body("must be object")),
            Err(e) => Err(RcError::typed_body(format!("Invalid JSON body: {e}"))),
        }
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Parsed {
    ms: i64,
    has_seconds: bool,
    has_time: bool,
}

fn digits(s: &[u8], n: usize) -> Option<i64> {
    if s.len() < n || !s[..n].iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s[..n]
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

/// `YYYY[-MM[-DD]][(T| )HH:MM[:SS[.f+]][Z|±HH[:]MM|±HH]]`, read as UTC when no zone is given
/// (the server's zone is UTC).
fn parse_iso(s: &str) -> Option<Parsed> {
    let b = s.trim().as_bytes();
    let year = digits(b, 4)?;
    let mut i = 4;
    let (mut month, mut day) = (1, 1);
    if b.get(i) == Some(&b'-') {
        month = digits(&b[i + 1..], 2)?;
        i += 3;
        if b.get(i) == Some(&b'-') {
            day = digits(&b[i + 1..], 2)?;
            i += 3;
        }
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (mut h, mut mi, mut sec, mut frac_ms) = (0, 0, 0, 0);
    let (mut has_time, mut has_seconds) = (false, false);
    let mut offset_min = 0;
    if matches!(b.get(i), Some(b'T' | b't' | b' ')) {
        has_time = true;
        h = digits(&b[i + 1..], 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        mi = digits(&b[i + 4..], 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            sec = digits(&b[i + 1..], 2)?;
            has_seconds = true;
            i += 3;
            if b.get(i) == Some(&b'.') {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j == start {
                    return None;
                }
                let f = &b[start..j.min(start + 3)];
                let mut v = digits(f, f.len())?;
                for _ in f.len()..3 {
                    v *= 10;
                }
                frac_ms = v;
                i = j;
            }
        }
        if h > 24 || mi > 59 || sec > 59 || (h == 24 && (mi, sec, frac_ms) != (0, 0, 0)) {
            return None;
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') => i += 1,
            Some(sign @ (b'+' | b'-')) => {
                let oh = digits(&b[i + 1..], 2)?;
                i += 3;
                let mut om = 0;
                if b.get(i) == Some(&b':') {
                    om = digits(&b[i + 1..], 2)?;
                    i += 3;
                } else if let Some(v) = digits(&b[i..], 2) {
                    om = v;
                    i += 2;
                }
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_min = (oh * 60 + om) * if *sign == b'-' { -1 } else { 1 };
            }
            Some(_) => return None,
        }
    }
    if i != b.len() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let ms = ((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec * 1000 + frac_ms;
    Some(Parsed {
        ms,
        has_seconds,
        has_time,
    })
}

/// JavaScript's `Date.parse` for the ISO forms: epoch ms, or `None` where it gives `NaN`.
pub fn js_date_parse(s: &str) -> Option<i64> {
    parse_iso(s).map(|p| p.ms)
}

/// ajv-formats' `iso-date-time`: a full date and a time with seconds, zone optional.
pub fn is_iso_date_time(s: &str) -> bool {
    s.trim() == s && parse_iso(s).is_some_and(|p| p.has_time && p.has_seconds)
}

/// JavaScript's `parseInt(s, 10)`: leading blanks, a sign, then digits up to the first other
/// character. `None` where it gives `NaN`, or where `new Date(n)` would be an invalid date.
pub fn js_parse_int_ms(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = rest
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    if end == 0 {
        return None;
    }
    let v: i64 = rest[..end].parse().ok()?;
    let v = if neg { -v } else { v };
    (v.abs() <= 8_640_000_000_000_000).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_parse_like_javascript() {
        assert_eq!(
            js_date_parse("2024-05-01T10:00:00.123Z"),
            Some(1_714_557_600_123)
        );
        assert_eq!(
            js_date_parse("2024-05-01T12:00:00.123+02:00"),
            Some(1_714_557_600_123)
        );
        assert_eq!(js_date_parse("2024-05-01"), Some(1_714_521_600_000));
        assert_eq!(
            js_date_parse("2000-01-01T00:00:00.000Z"),
            Some(946_684_800_000)
        );
        assert_eq!(js_date_parse("invalid-date"), None);
        assert_eq!(js_date_parse("2024-02-30"), None);
        assert!(is_iso_date_time("2019-04-01T00:00:00.000Z"));
        assert!(is_iso_date_time("2019-04-01T00:00:00"));
        assert!(!is_iso_date_time("2019-04-01T00:00"));
        assert!(!is_iso_date_time("2019-04-01"));
        assert!(!is_iso_date_time("invalid-date"));
    }

    #[test]
    fn parse_int_is_javascripts() {
        assert_eq!(js_parse_int_ms("1714557600123"), Some(1_714_557_600_123));
        assert_eq!(js_parse_int_ms("2024-05-01T10:00:00Z"), Some(2024));
        assert_eq!(js_parse_int_ms(" 12abc"), Some(12));
        assert_eq!(js_parse_int_ms("abc"), None);
        assert_eq!(js_parse_int_ms(""), None);
        assert_eq!(js_parse_int_ms("99999999999999999"), None);
    }

    #[test]
    fn validator_reports_ajvs_first_error() {
        let props = [
            req("roomId", Ty::Str),
            nullable("count", Ty::Num),
            nullable("type", Ty::Enum(&["UPDATED", "DELETED"])),
        ];
        let o = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            check(&o(json!({"x": "1"})), &props, true).unwrap_err(),
            "must have required property 'roomId'"
        );
        assert_eq!(
            check(&o(json!({"roomId": "r", "x": "1"})), &props, true).unwrap_err(),
            "must NOT have additional properties"
        );
        assert_eq!(
            check(&o(json!({"roomId": "r", "type": "X"})), &props, true).unwrap_err(),
            "must be equal to one of the allowed values"
        );
        let ok = check(&o(json!({"roomId": "r", "count": "2"})), &props, true).unwrap();
        assert_eq!(ok["count"], json!(2.0));
        assert_eq!(
            query_object(Some("a[]=1&a[]=2&b=x")).unwrap(),
            o(json!({"a": ["1", "2"], "b": "x"}))
        );
    }
}
