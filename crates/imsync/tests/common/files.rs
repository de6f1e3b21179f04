//! The native file API as a client drives it: upload (presign, form POST, confirm), send in a
//! message as the Prismer SDK's `send_file` does, download.

use super::Api;
use reqwest::{multipart, StatusCode};
use serde_json::{json, Value};

/// Presigns, uploads and confirms `bytes`; answers the confirmed upload.
pub async fn upload(api: &Api, name: &str, mime: &str, bytes: Vec<u8>) -> Value {
    let (s, b) = api
        .post(
            "/api/im/files/presign",
            json!({"fileName": name, "fileSize": bytes.len(), "mimeType": mime}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (id, url) = (
        b["data"]["uploadId"].as_str().unwrap().to_owned(),
        b["data"]["url"].as_str().unwrap().to_owned(),
    );
    assert!(url.starts_with('/'), "a relative upload URL: {url}");
    let (s, b) = post_form(api, &url, name, mime, bytes).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = api
        .post("/api/im/files/confirm", json!({"uploadId": id}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["uploadId"], id);
    b["data"].clone()
}

pub async fn post_form(
    api: &Api,
    url: &str,
    name: &str,
    mime: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let part = multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap();
    let resp = api
        .http
        .post(format!("{}{url}", api.base))
        .bearer_auth(api.token.as_deref().unwrap())
        .multipart(multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

/// Sends a confirmed upload as a Prismer SDK `send_file` does.
pub async fn send_file(api: &Api, conv: &str, up: &Value) -> (StatusCode, Value) {
    api.post(
        &format!("/api/im/messages/{conv}"),
        json!({
            "content": up["fileName"],
            "type": "file",
            "metadata": {
                "uploadId": up["uploadId"],
                "fileUrl": up["cdnUrl"],
                "fileName": up["fileName"],
                "fileSize": up["fileSize"],
                "mimeType": up["mimeType"],
            },
        }),
    )
    .await
}

pub async fn download(api: &Api, url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = api
        .http
        .get(format!("{}{url}", api.base))
        .bearer_auth(api.token.as_deref().unwrap());
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}
