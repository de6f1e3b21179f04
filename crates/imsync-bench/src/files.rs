//! The file scenarios: `file-io` (one large file up and down the native file API beside `cp` of
//! the same file on the same disk, in one run) and `send-par-files` (send-par with a share of
//! the sends carrying a file uploaded beforehand, beside plain send-par on the same server, and
//! every file message read back and checked).

use crate::client::{http_client, Api};
use crate::cpu::{CpuMeter, CpuUse};
use crate::lean::LeanConn;
use crate::report::{f, ratio, Report};
use crate::scenarios::{
    concurrently, par_setup, run_par_samples, splitmix, Load, ParLayout, SendPar,
};
use crate::stats::Samples;
use crate::transfer::Endpoint;
use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex as AsyncMutex;

const MIB: f64 = 1024.0 * 1024.0;

/// The `--max-file-bytes` a server needs to take a file of `bytes` (the default limit is 50 MiB).
pub fn max_file_bytes_for(bytes: u64) -> u64 {
    bytes.max(50 << 20) + (1 << 20)
}

/// Writes `len` bytes of a seeded pattern to `path` and syncs it: incompressible, and
/// different per seed, so that a file mixed up with another does not compare equal.
pub fn write_pattern(path: &Path, len: u64, seed: u64) -> Result<()> {
    let mut out =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut left, mut x) = (len, splitmix(seed));
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            x = splitmix(x);
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.sync_all()?;
    Ok(())
}

/// Whether two files hold the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a blocking transfer panicked")?
}

/// Announces `bytes` of `file`, uploads them as a presigned form and confirms: the Prismer SDK's
/// `upload()`. Answers the confirmed upload (`uploadId`, `cdnUrl`, `fileName`, `fileSize`,
/// `mimeType`).
pub async fn upload_form(api: &Api, file: &Path, name: &str, bytes: u64) -> Result<Value> {
    let (s, b) = api
        .post_json(
            "/api/im/files/presign",
            &json!({"fileName": name, "fileSize": bytes, "mimeType": "application/octet-stream"}),
        )
        .await?;
    ensure!(s == StatusCode::OK, "presign: {s} {b}");
    let id = b["data"]["uploadId"]
        .as_str()
        .context("presign: no uploadId")?
        .to_owned();
    let url = b["data"]["url"]
        .as_str()
        .context("presign: no url")?
        .to_owned();
    let ep = endpoint(api)?;
    let (file, name2) = (file.to_owned(), name.to_owned());
    let a = blocking(move || ep.post_form(&url, &file, &name2, bytes)).await?;
    let up = a.json(200, "upload")?;
    ensure!(
        up["data"]["fileSize"] == bytes,
        "upload stored {}",
        up["data"]
    );
    confirm(
        api,
        "/api/im/files/confirm",
        &json!({"uploadId": id}),
        bytes,
    )
    .await
}

/// Uploads `bytes` of `file` in the parts `upload/init` hands out, one after the other, and
/// completes: the SDK's path for large files. Answers the confirmed upload.
pub async fn upload_parts(api: &Api, file: &Path, name: &str, bytes: u64) -> Result<Value> {
    let (s, b) = api
        .post_json(
            "/api/im/files/upload/init",
            &json!({"fileName": name, "fileSize": bytes, "mimeType": "application/octet-stream"}),
        )
        .await?;
    ensure!(s == StatusCode::OK, "upload/init: {s} {b}");
    let id = b["data"]["uploadId"]
        .as_str()
        .context("init: no uploadId")?
        .to_owned();
    let part = b["data"]["partSize"]
        .as_u64()
        .context("init: no partSize")?;
    let parts: Vec<(u64, String)> = b["data"]["parts"]
        .as_array()
        .context("init: no parts")?
        .iter()
        .map(|p| Some((p["partNumber"].as_u64()?, p["url"].as_str()?.to_owned())))
        .collect::<Option<_>>()
        .context("init: a part without partNumber or url")?;
    ensure!(
        parts.len() as u64 == bytes.div_ceil(part).max(1),
        "init: {} parts of {part} bytes for {bytes} bytes",
        parts.len()
    );
    let ep = endpoint(api)?;
    let file = file.to_owned();
    let etags = blocking(move || {
        let mut etags = Vec::with_capacity(parts.len());
        for (n, url) in parts {
            let offset = (n - 1) * part;
            let len = part.min(bytes - offset);
            let a = ep.put_range(&url, &file, offset, len)?;
            let v = a.json(200, &format!("part {n}"))?;
            let etag = v["data"]["etag"].as_str().context("a part without etag")?;
            etags.push(json!({"partNumber": n, "etag": etag}));
        }
        Ok(etags)
    })
    .await?;
    confirm(
        api,
        "/api/im/files/upload/complete",
        &json!({"uploadId": id, "parts": etags}),
        bytes,
    )
    .await
}

async fn confirm(api: &Api, path: &str, body: &Value, bytes: u64) -> Result<Value> {
    let (s, b) = api.post_json(path, body).await?;
    ensure!(s == StatusCode::OK, "{path}: {s} {b}");
    ensure!(b["data"]["fileSize"] == bytes, "{path}: {}", b["data"]);
    Ok(b["data"].clone())
}

fn endpoint(api: &Api) -> Result<Endpoint> {
    Endpoint::new(&api.base, api.token.as_deref().context("no token")?)
}

/// Downloads a confirmed upload into `to` as `api`; answers the bytes.
pub async fn download(api: &Api, up: &Value, to: &Path) -> Result<u64> {
    let url = up["cdnUrl"].as_str().context("no cdnUrl")?.to_owned();
    let ep = endpoint(api)?;
    let to = to.to_owned();
    blocking(move || ep.get_to_file(&url, &to)).await
}

async fn delete_file(api: &Api, up: &Value) -> Result<()> {
    let id = up["uploadId"].as_str().context("no uploadId")?;
    let resp = api
        .http
        .delete(format!("{}/api/im/files/{id}", api.base))
        .bearer_auth(api.token.as_deref().unwrap_or_default())
        .send()
        .await?;
    ensure!(resp.status().is_success(), "delete file: {}", resp.status());
    Ok(())
}

/// Sizes of `file-io`.
#[derive(Debug, Clone, Copy)]
pub struct FileIo {
    pub bytes: u64,
    pub rounds: usize,
}

impl FileIo {
    pub fn scaled(scale: f64) -> FileIo {
        FileIo {
            bytes: ((100.0 * MIB * scale).round() as u64).max(64 * 1024),
            rounds: 3,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Cp,
    Form,
    Parts,
    Download,
}

/// The order of the steps in round `r`: each runs early in one round and late in another, and
/// every upload path is followed by a download (which reads back the latest upload) in some
/// round.
fn steps(r: usize) -> [Step; 4] {
    use Step::*;
    match r % 3 {
        0 => [Cp, Form, Download, Parts],
        1 => [Parts, Download, Cp, Form],
        _ => [Form, Cp, Parts, Download],
    }
}

/// MiB/s of each repetition of one measure, and the server's CPU time per MiB in it.
#[derive(Default, Debug, serde::Serialize)]
struct Rates {
    mib_per_sec: Vec<f64>,
    server_cpu_ms_per_mib: Vec<f64>,
}

impl Rates {
    fn push(&mut self, bytes: u64, secs: f64, cpu: Option<&CpuUse>) {
        let mib = bytes as f64 / MIB;
        self.mib_per_sec.push(ratio(mib, secs));
        if let Some(cores) = cpu.and_then(|c| c.server_cores.map(|k| k * c.secs)) {
            self.server_cpu_ms_per_mib.push(ratio(cores * 1000.0, mib));
        }
    }
    fn cpu_median(&self) -> Option<f64> {
        let mut v = self.server_cpu_ms_per_mib.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
    fn median(&self) -> f64 {
        let mut v = self.mib_per_sec.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
    fn range(&self) -> String {
        let lo = self
            .mib_per_sec
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hi = self.mib_per_sec.iter().copied().fold(0.0, f64::max);
        format!("{}–{}", f(lo, 0), f(hi, 0))
    }
}

/// `file-io`: a file of `p.bytes` uploaded (as a presigned form, and in parts), downloaded to a
/// file and copied with `cp`, `p.rounds` times each in rotating order; `work` is a directory on
/// the disk the server keeps its files on. Every download is compared with the source. With the
/// server's pid, its CPU time per MiB moved is reported beside each rate.
pub async fn file_io(
    base: &str,
    p: FileIo,
    work: &Path,
    server_pid: Option<u32>,
) -> Result<Report> {
    ensure!(p.rounds > 0, "file-io needs at least one round");
    let http = http_client();
    let anon = Api::new(&http, base);
    let me = anon
        .register(&format!("fio{}", crate::scenarios::run_tag()))
        .await?;
    let src = work.join("source.bin");
    let (s2, bytes) = (src.clone(), p.bytes);
    blocking(move || write_pattern(&s2, bytes, 0x5eed)).await?;
    let mib = f(p.bytes as f64 / MIB, 1);
    eprintln!("  [file-io] {mib} MiB, {} rounds", p.rounds);
    // Untimed: warms the upload and download paths, and gives the first download its file.
    let mut latest = upload_form(&me, &src, "warm.bin", p.bytes).await?;
    let (mut cp, mut cp_sync, mut form, mut parts, mut down) = Default::default();
    let (mut verified, mut fresh) = (0usize, true);
    let (copy, got) = (work.join("copy.bin"), work.join("download.bin"));
    for r in 0..p.rounds {
        for step in steps(r) {
            let t = Instant::now();
            let meter = CpuMeter::start(server_pid);
            match step {
                Step::Cp => {
                    let (from, to) = (src.clone(), copy.clone());
                    let fsync = blocking(move || {
                        let st = std::process::Command::new("cp")
                            .arg(&from)
                            .arg(&to)
                            .status()
                            .context("running cp")?;
                        ensure!(st.success(), "cp: {st}");
                        let copied = Instant::now();
                        std::fs::File::open(&to)?.sync_all()?;
                        Ok(copied.elapsed())
                    })
                    .await?;
                    let total = t.elapsed().as_secs_f64();
                    Rates::push(&mut cp, p.bytes, total - fsync.as_secs_f64(), None);
                    Rates::push(&mut cp_sync, p.bytes, total, None);
                    std::fs::remove_file(&copy)?;
                }
                Step::Form | Step::Parts => {
                    let name = format!("round{r}.bin");
                    let up = if step == Step::Form {
                        upload_form(&me, &src, &name, p.bytes).await?
                    } else {
                        upload_parts(&me, &src, &name, p.bytes).await?
                    };
                    let secs = t.elapsed().as_secs_f64();
                    let cpu = meter.stop();
                    Rates::push(
                        if step == Step::Form {
                            &mut form
                        } else {
                            &mut parts
                        },
                        p.bytes,
                        secs,
                        Some(&cpu),
                    );
                    delete_file(&me, &latest).await?;
                    (latest, fresh) = (up, true);
                }
                Step::Download => {
                    let n = download(&me, &latest, &got).await?;
                    let secs = t.elapsed().as_secs_f64();
                    Rates::push(&mut down, n, secs, Some(&meter.stop()));
                    let (a, b) = (src.clone(), got.clone());
                    ensure!(
                        blocking(move || same_bytes(&a, &b)).await?,
                        "the download of {} differs from the file uploaded",
                        latest["uploadId"]
                    );
                    verified += usize::from(fresh);
                    fresh = false;
                    std::fs::remove_file(&got)?;
                }
            }
        }
    }
    delete_file(&me, &latest).await?;
    let (cp, cp_sync, form, parts, down): (Rates, Rates, Rates, Rates, Rates) =
        (cp, cp_sync, form, parts, down);
    let mut r = Report::new(
        "file-io",
        &[
            "measure",
            "MiB/s (median)",
            "range",
            "vs cp",
            "vs cp + fsync",
            "server CPU ms/MiB",
        ],
    );
    let (c, cs) = (cp.median(), cp_sync.median());
    let mut row = |name: &str, x: &Rates| {
        r.row(vec![
            name.to_owned(),
            f(x.median(), 0),
            x.range(),
            f(ratio(x.median(), c), 2),
            f(ratio(x.median(), cs), 2),
            x.cpu_median().map_or(String::new(), |v| f(v, 2)),
        ]);
    };
    row("cp (into the page cache)", &cp);
    row("cp, then fsync", &cp_sync);
    row(
        "upload: presign, multipart form POST, confirm (fsynced)",
        &form,
    );
    row(
        "upload in 5 MiB parts: init, PUT each, complete (fsynced)",
        &parts,
    );
    row("download to a file (GET …/content)", &down);
    r.note(format!(
        "{mib} MiB of incompressible bytes, {} rounds, each round the four steps (cp, the two uploads, the download) in a rotating order; \
         the source, the copy, the download and the server's data dir on one file system; \
         the harness moves bytes with sendfile/splice, as cp does with copy_file_range",
        p.rounds
    ));
    r.note(format!(
        "every download compared with the source byte for byte; {verified} of the uploads read back that way"
    ));
    r.figures = json!({
        "bytes": p.bytes, "rounds": p.rounds,
        "mib_per_sec": { "cp": cp.median(), "cp_fsync": cp_sync.median(),
            "upload_form": form.median(), "upload_parts": parts.median(), "download": down.median() },
        "server_cpu_ms_per_mib": { "upload_form": form.cpu_median(),
            "upload_parts": parts.cpu_median(), "download": down.cpu_median() },
        "runs": { "cp": cp, "cp_fsync": cp_sync, "upload_form": form, "upload_parts": parts, "download": down },
        "upload_vs_cp": ratio(form.median(), c),
        "upload_parts_vs_cp": ratio(parts.median(), c),
        "download_vs_cp": ratio(down.median(), c),
        "upload_vs_cp_fsync": ratio(form.median(), cs),
        "uploads_verified": verified,
    });
    Ok(r)
}

/// Sizes of `send-par-files`.
#[derive(Debug, Clone, Copy)]
pub struct ParFiles {
    /// The load; its `duration` is the time of each side (plain, and with files).
    pub par: SendPar,
    /// The share of the sends of the file phases that carry a file (0..=1).
    pub share: f64,
    /// The largest of the files, one per client (from half this size up).
    pub file_bytes: u64,
}

impl ParFiles {
    pub fn scaled(scale: f64, share: f64) -> ParFiles {
        ParFiles {
            par: SendPar::scaled(scale),
            share,
            file_bytes: 64 * 1024,
        }
    }
}

/// One client's sends: its connection, its groups (index and path), and its two bodies.
struct Sender {
    conn: AsyncMutex<LeanConn>,
    groups: Vec<(usize, String)>,
    file_body: Vec<u8>,
}

/// The phases of `send-par-files`, with files or not: plain, files, files, plain, twice, so that
/// a drift of the machine or the growing store weighs on both sides alike.
const PHASES: [bool; 8] = [false, true, true, false, false, true, true, false];

/// `send-par-files`: the send-par load in the [`PHASES`] on one server,
/// where in the file phases a `share` of the sends carry the client's file as the SDK's
/// `send_file` does. Then every group's history is read back: each file message must be there,
/// once per successful send, with the file it was sent with; and every file is downloaded by a
/// member other than its uploader and compared with what was uploaded.
pub async fn send_par_files(base: &str, p: ParFiles, server_pid: Option<u32>) -> Result<Report> {
    ensure!(
        (0.0..=1.0).contains(&p.share),
        "--file-share must be within 0..1"
    );
    let http = http_client();
    let anon = Api::new(&http, base);
    let layout = par_setup(std::slice::from_ref(&anon), &p.par, "pf").await?;
    let index: HashMap<&str, usize> = layout
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    let dir = tempfile::Builder::new()
        .prefix("imsync-bench-files-")
        .tempdir()?;
    let sources: Vec<PathBuf> = (0..layout.clients.len())
        .map(|c| dir.path().join(format!("client{c}.bin")))
        .collect();
    let half = (p.file_bytes / 2).max(1);
    let items: Vec<(usize, Api, PathBuf)> = layout
        .clients
        .iter()
        .enumerate()
        .map(|(c, (api, _))| (c, api.clone(), sources[c].clone()))
        .collect();
    let uploads = concurrently("upload files", items, 8, move |(c, api, path)| async move {
        let size = half + splitmix(c as u64) % half;
        let p2 = path.clone();
        blocking(move || write_pattern(&p2, size, c as u64)).await?;
        upload_form(&api, &path, &format!("file {c}.bin"), size).await
    })
    .await?;
    let mut senders = Vec::with_capacity(layout.clients.len());
    for ((api, mine), up) in layout.clients.iter().zip(&uploads) {
        let body = json!({
            "content": up["fileName"], "type": "file",
            "metadata": { "uploadId": up["uploadId"], "fileUrl": up["cdnUrl"],
                "fileName": up["fileName"], "fileSize": up["fileSize"], "mimeType": up["mimeType"] },
        });
        senders.push(Sender {
            conn: AsyncMutex::new(LeanConn::open(base, api.token.as_deref()).await?),
            groups: mine
                .iter()
                .map(|g| (index[g.as_str()], format!("/api/im/messages/{g}")))
                .collect(),
            file_body: serde_json::to_vec(&body)?,
        });
    }
    let senders = Arc::new(senders);
    let sent: Arc<Vec<AtomicU64>> =
        Arc::new(layout.groups.iter().map(|_| AtomicU64::new(0)).collect());
    // The top 32 bits of the generator pick file or text, the low ones the group.
    let threshold = (p.share * f64::from(u32::MAX)) as u64;
    let phase_time = p.par.duration * 2 / PHASES.len() as u32;
    let (mut plain, mut with_files) = ((Samples::default(), 0.0), (Samples::default(), 0.0));
    let (mut plain_cpu, mut files_cpu) = (0.0, 0.0);
    let mut cpu_seen = false;
    let mut phase_rates = Vec::with_capacity(PHASES.len());
    for (i, files) in PHASES.into_iter().enumerate() {
        let (senders, sent) = (senders.clone(), sent.clone());
        let label = format!(
            "send-par-files phase {}/{} ({})",
            i + 1,
            PHASES.len(),
            if files { "files" } else { "plain" }
        );
        let meter = CpuMeter::start(server_pid);
        let (samples, secs) = run_par_samples(
            &label,
            senders.len(),
            phase_time,
            10_000_000,
            move |c, r| {
                let (senders, sent) = (senders.clone(), sent.clone());
                async move {
                    let s = &senders[c];
                    let (g, path) = &s.groups[(r % s.groups.len() as u64) as usize];
                    let file = files && (r >> 32) < threshold;
                    let text;
                    let body = if file {
                        &s.file_body[..]
                    } else {
                        text = format!(r#"{{"content":"send-par {r:016x}"}}"#);
                        text.as_bytes()
                    };
                    let mut conn = s.conn.lock().await;
                    conn.expect(StatusCode::CREATED, Method::POST, path, Some(body))
                        .await?;
                    if file {
                        sent[*g].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
            },
        )
        .await?;
        let cpu = meter.stop();
        let cpu_secs = cpu.server_cores.map(|c| c * cpu.secs);
        cpu_seen |= cpu_secs.is_some();
        phase_rates.push((files, samples.len() as f64 / secs));
        let side = if files { &mut with_files } else { &mut plain };
        side.0.extend(samples);
        side.1 += secs;
        *(if files {
            &mut files_cpu
        } else {
            &mut plain_cpu
        }) += cpu_secs.unwrap_or(0.0);
    }
    let plain_load = Load::from(&plain.0, plain.1);
    let files_load = Load::from(&with_files.0, with_files.1);
    let sent: Vec<u64> = sent.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    let check = check_file_messages(&p.par, &layout, &uploads, &sent, &sources, dir.path()).await?;
    let us_per = |cpu: f64, n: usize| (cpu_seen && n > 0).then(|| cpu * 1e6 / n as f64);
    let rel = ratio(files_load.per_sec, plain_load.per_sec);
    // How far apart phases of the same load land: a difference between the sides smaller than
    // this is one the run cannot tell from noise.
    let spread = |files: bool| {
        let rates = phase_rates
            .iter()
            .filter(|(f, _)| *f == files)
            .map(|(_, r)| *r);
        let (lo, hi) = rates.fold((f64::MAX, 0.0_f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
        ratio(lo, hi)
    };
    let (plain_spread, files_spread) = (spread(false), spread(true));
    // Each file phase against the plain phase beside it, which ran under nearly the same drift.
    let mut paired: Vec<f64> = (0..phase_rates.len())
        .filter(|&i| phase_rates[i].0)
        .filter_map(|i| {
            let beside = [i.checked_sub(1), Some(i + 1)]
                .into_iter()
                .flatten()
                .find(|&j| phase_rates.get(j).is_some_and(|(f, _)| !f))?;
            Some(ratio(phase_rates[i].1, phase_rates[beside].1))
        })
        .collect();
    paired.sort_by(f64::total_cmp);
    let paired_median = match paired.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => paired[n / 2],
        n => (paired[n / 2 - 1] + paired[n / 2]) / 2.0,
    };
    let mut r = Report::new(
        "send-par-files",
        &["measure", "count", "rate", "p50 ms", "p99 ms", "vs plain"],
    );
    let pct = f(p.share * 100.0, 0);
    let mut plain_row = plain_load.row(
        &format!(
            "POST /api/im/messages, text only ({} clients)",
            p.par.clients
        ),
        "msgs/s",
        None,
    );
    plain_row[5] = "1.00".into();
    r.row(plain_row);
    let mut files_row = files_load.row(
        &format!(
            "POST /api/im/messages, {pct}% carrying a file ({} clients)",
            p.par.clients
        ),
        "msgs/s",
        None,
    );
    files_row[5] = format!("{}×", f(rel, 3));
    r.row(files_row);
    r.row(vec![
        "each file phase vs the plain phase beside it: median (lowest–highest)".into(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!(
            "{}× ({}–{})",
            f(paired_median, 3),
            f(paired.first().copied().unwrap_or(f64::NAN), 3),
            f(paired.last().copied().unwrap_or(f64::NAN), 3)
        ),
    ]);
    r.row(vec![
        "slowest vs fastest phase: plain, with files".into(),
        String::new(),
        format!("{}, {}", f(plain_spread, 3), f(files_spread, 3)),
        String::new(),
        String::new(),
        String::new(),
    ]);
    r.row(vec![
        "file messages read back intact".into(),
        format!("{} of {}", check.intact, check.sent),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    r.row(vec![
        "files downloaded intact by another member".into(),
        format!("{} of {}", check.downloads_intact, check.files_sent),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    ]);
    let (pu, fu) = (
        us_per(plain_cpu, plain_load.count),
        us_per(files_cpu, files_load.count),
    );
    if let (Some(pu), Some(fu)) = (pu, fu) {
        r.note(format!(
            "server CPU per message: text only {pu:.1} µs, with files {fu:.1} µs ({:.2}×)",
            ratio(fu, pu)
        ));
    }
    r.note(format!(
        "{} users, {} groups of {} members; phases plain, files, files, plain, twice, of {:.1} s each; \
         {} files of {}–{} KiB uploaded beforehand, one per client, sent as the SDK's send_file \
         writes a file message; {} file messages sent, {} found in the histories, {} intact \
         ({} history pages read)",
        p.par.users,
        p.par.groups,
        p.par.members,
        phase_time.as_secs_f64(),
        uploads.len(),
        half / 1024,
        (2 * half) / 1024,
        check.sent,
        check.found,
        check.intact,
        check.pages
    ));
    if !check.problems.is_empty() {
        r.note(format!("PROBLEMS: {}", check.problems.join("; ")));
    }
    r.figures = json!({
        "plain": plain_load, "with_files": files_load, "ratio": rel, "file_share": p.share,
        "server_cpu_us_per_msg": { "plain": pu, "with_files": fu },
        "file_messages": { "sent": check.sent, "found": check.found, "intact": check.intact },
        "files": { "count": uploads.len(), "sent": check.files_sent, "downloaded_intact": check.downloads_intact },
        "intact": check.ok(),
        "problems": check.problems,
        "clients": p.par.clients, "groups": p.par.groups, "members": p.par.members,
        "users": p.par.users, "phase_secs": phase_time.as_secs_f64(),
        "phases": phase_rates.iter().map(|(files, rate)| json!({ "files": files, "msgs_per_sec": rate })).collect::<Vec<_>>(),
        "phase_spread": { "plain": plain_spread, "with_files": files_spread },
        "paired_ratios": paired, "paired_median": paired_median,
        "goal": "with files unchanged: the ratio within the spread of the plain phases; every file message intact",
    });
    Ok(r)
}

/// What the read-back of `send-par-files` found.
#[derive(Default)]
struct Check {
    sent: u64,
    found: u64,
    intact: u64,
    /// Files carried by at least one message found.
    files_sent: usize,
    downloads_intact: usize,
    pages: usize,
    problems: Vec<String>,
}

impl Check {
    fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.found == self.sent
            && self.intact == self.sent
            && self.downloads_intact == self.files_sent
    }
}

/// One group's history as read back: file messages found and intact, the clients whose files
/// it carries, pages read, and what was wrong.
#[derive(Default)]
struct GroupRead {
    found: u64,
    intact: u64,
    carried: std::collections::BTreeSet<usize>,
    pages: usize,
    problems: Vec<String>,
}

/// Reads every group's history as its owner and checks each file message against the upload
/// it was sent with; then downloads each file sent as a member (not its uploader) of a group it
/// went to, and compares it with its source.
async fn check_file_messages(
    p: &SendPar,
    layout: &ParLayout,
    uploads: &[Value],
    sent: &[u64],
    sources: &[PathBuf],
    work: &Path,
) -> Result<Check> {
    let by_upload: Arc<HashMap<String, usize>> = Arc::new(
        uploads
            .iter()
            .enumerate()
            .filter_map(|(c, up)| Some((up["uploadId"].as_str()?.to_owned(), c)))
            .collect(),
    );
    let expected: Arc<Vec<(String, Value)>> = Arc::new(
        layout
            .clients
            .iter()
            .zip(uploads)
            .map(|((api, _), up)| (api.user_id.clone(), up.clone()))
            .collect(),
    );
    let items: Vec<(String, Api)> = layout
        .groups
        .iter()
        .enumerate()
        .map(|(g, id)| (id.clone(), layout.users[p.member(g, 0)].clone()))
        .collect();
    let reads = concurrently("read back histories", items, 8, move |(conv, reader)| {
        let (by_upload, expected) = (by_upload.clone(), expected.clone());
        async move { read_group(&reader, &conv, &by_upload, &expected).await }
    })
    .await?;
    let mut check = Check {
        sent: sent.iter().sum(),
        ..Check::default()
    };
    // Each file is fetched through the first group it was found in.
    let mut fetch: HashMap<usize, usize> = HashMap::new();
    for (g, read) in reads.into_iter().enumerate() {
        if read.found != sent[g] {
            check.problems.push(format!(
                "group {g}: {} file messages sent, {} in its history",
                sent[g], read.found
            ));
        }
        check.found += read.found;
        check.intact += read.intact;
        check.pages += read.pages;
        check.problems.extend(read.problems);
        for c in read.carried {
            fetch.entry(c).or_insert(g);
        }
    }
    check.files_sent = fetch.len();
    for (c, g) in fetch {
        let uploader = &layout.clients[c].0.user_id;
        let reader = (1..p.members)
            .map(|i| &layout.users[p.member(g, i)])
            .find(|u| &u.user_id != uploader)
            .context("a group without a member besides the uploader")?;
        let to = work.join(format!("got{c}.bin"));
        download(reader, &uploads[c], &to)
            .await
            .with_context(|| format!("downloading client {c}'s file as a member of group {g}"))?;
        let (a, b) = (sources[c].clone(), to.clone());
        if blocking(move || same_bytes(&a, &b)).await? {
            check.downloads_intact += 1;
        } else {
            check
                .problems
                .push(format!("client {c}'s file differs when downloaded"));
        }
        std::fs::remove_file(&to)?;
    }
    Ok(check)
}

/// Pages through one group's history from the newest message back, checking its file messages.
async fn read_group(
    reader: &Api,
    conv: &str,
    by_upload: &HashMap<String, usize>,
    expected: &[(String, Value)],
) -> Result<GroupRead> {
    const PAGE: usize = 200;
    let mut read = GroupRead::default();
    let mut before: Option<String> = None;
    loop {
        let path = match &before {
            Some(id) => format!("/api/im/messages/{conv}?limit={PAGE}&before={id}"),
            None => format!("/api/im/messages/{conv}?limit={PAGE}"),
        };
        let (s, b) = reader.get_json(&path).await?;
        ensure!(s == StatusCode::OK, "GET {path}: {s} {b}");
        let page = b["data"]
            .as_array()
            .context("a history page without data")?;
        read.pages += 1;
        for m in page {
            let Some(id) = m["metadata"]["uploadId"].as_str() else {
                continue;
            };
            read.found += 1;
            let Some(&c) = by_upload.get(id) else {
                read.problems
                    .push(format!("{}: an unknown upload {id}", m["id"]));
                continue;
            };
            let (sender, up) = &expected[c];
            let md = &m["metadata"];
            let same = m["type"] == "file"
                && m["senderId"] == sender.as_str()
                && m["content"] == up["fileName"]
                && md["fileUrl"] == up["cdnUrl"]
                && ["fileName", "fileSize", "mimeType"]
                    .iter()
                    .all(|k| md[*k] == up[*k]);
            if same {
                read.intact += 1;
                read.carried.insert(c);
            } else {
                read.problems
                    .push(format!("{} is not the file message sent: {m}", m["id"]));
            }
        }
        if page.len() < PAGE {
            return Ok(read);
        }
        before = page[0]["id"].as_str().map(str::to_owned);
        ensure!(before.is_some(), "a history message without id");
    }
}
