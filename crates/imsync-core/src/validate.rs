//! Input rules shared by every face.

use crate::{Error, Result};

pub const MESSAGE_TYPES: &[&str] = &[
    "text",
    "markdown",
    "code",
    "image",
    "file",
    "voice",
    "location",
    "artifact",
    "tool_call",
    "tool_result",
    "system_event",
    "system",
    "thinking",
];

pub const MAX_CONTENT_LEN: usize = 64 * 1024;
pub const MAX_TITLE_LEN: usize = 200;
pub const MAX_DESCRIPTION_LEN: usize = 4000;
pub const MAX_DISPLAY_NAME_LEN: usize = 100;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
pub const MAX_EMOJI_LEN: usize = 64;
pub const MIN_PASSWORD_LEN: usize = 8;

/// `^[a-zA-Z0-9_-]{3,32}$`
pub fn username(name: &str) -> Result<()> {
    let ok = (3..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("username must match ^[a-zA-Z0-9_-]{3,32}$"))
    }
}

pub fn message_type(kind: &str) -> Result<()> {
    if MESSAGE_TYPES.contains(&kind) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "type must be one of {}",
            MESSAGE_TYPES.join(", ")
        )))
    }
}

pub fn max_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.chars().count() > max {
        Err(Error::invalid(format!(
            "{field} is longer than {max} characters"
        )))
    } else {
        Ok(())
    }
}

pub fn non_blank(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        Err(Error::invalid(format!("{field} must not be empty")))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(username("al").is_err());
        assert!(username("alice_B-9").is_ok());
        assert!(username("bad name").is_err());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("ünï").is_err());
    }

    #[test]
    fn types_and_lengths() {
        assert!(message_type("text").is_ok());
        assert!(message_type("video").is_err());
        assert!(max_len("t", "abc", 3).is_ok());
        assert!(max_len("t", "abcd", 3).is_err());
        assert!(non_blank("t", "  ").is_err());
    }
}
