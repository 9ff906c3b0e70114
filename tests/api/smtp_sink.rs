//! A real SMTP server for the tests: speaks EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP
//! and QUIT on a free loopback port, and keeps every message it accepts. It can be
//! stopped (the port then refuses connections, as a crashed mail server does) and
//! started again on the same port, and it can be made slow to accept a message.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
    sync::Notify,
    task::{JoinHandle, JoinSet},
};

/// One message as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedEmail {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The DATA section, dot-unstuffed, lines joined with CRLF.
    pub data: String,
}

#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<ReceivedEmail>>,
    arrived: Notify,
    /// How long to wait before answering the end of DATA.
    accept_delay: Mutex<Duration>,
    /// Mail transactions (MAIL to end of DATA) open now, and the most ever open at once.
    open_sessions: Mutex<(usize, usize)>,
}

pub struct SmtpSink {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    server: Option<JoinHandle<()>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let mut sink = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            inbox: Arc::default(),
            server: None,
        };
        sink.listen().await;
        sink
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, no credentials.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message accepted so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedEmail> {
        self.inbox.messages.lock().unwrap().clone()
    }

    /// The most mail transactions that were ever in progress at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.inbox.open_sessions.lock().unwrap().1
    }

    pub fn set_accept_delay(&self, delay: Duration) {
        *self.inbox.accept_delay.lock().unwrap() = delay;
    }

    /// Waits until at least `count` messages arrived, then returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedEmail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.inbox.arrived.notified();
            let messages = self.received();
            if messages.len() >= count {
                return messages;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected {count} emails within {timeout:?}, got {}",
                    self.received().len()
                );
            }
        }
    }

    /// Closes the port and drops every open connection.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port (kept messages stay).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }

    async fn listen(&mut self) {
        let socket = TcpSocket::new_v4().unwrap();
        // The port was just closed by `stop`; reuse it without waiting for TIME_WAIT.
        socket.set_reuseaddr(true).unwrap();
        socket.bind(self.addr).unwrap();
        let listener = socket.listen(64).unwrap();
        self.addr = listener.local_addr().unwrap();
        let inbox = self.inbox.clone();
        self.server = Some(tokio::spawn(async move {
            // Connections live in the set, so aborting the server aborts them too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            connections.spawn(serve(stream, inbox.clone()));
                        }
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        }));
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

async fn serve(stream: TcpStream, inbox: Arc<Inbox>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut reply = async |text: &str| write.write_all(text.as_bytes()).await.is_ok();
    if !reply("220 sink.test ESMTP ready\r\n").await {
        return;
    }
    let mut mail_from = String::new();
    let mut rcpt_to = Vec::new();
    let mut line = Vec::new();
    let mut session = Session {
        inbox: inbox.clone(),
        open: false,
    };
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_owned();
        let verb = command.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let ok = match verb.as_str() {
            "EHLO" => reply("250-sink.test\r\n250-8BITMIME\r\n250 SIZE 10485760\r\n").await,
            "HELO" => reply("250 sink.test\r\n").await,
            "MAIL" => {
                mail_from = angle_address(&command);
                rcpt_to.clear();
                session.open();
                reply("250 2.1.0 ok\r\n").await
            }
            "RCPT" => {
                rcpt_to.push(angle_address(&command));
                reply("250 2.1.5 ok\r\n").await
            }
            "DATA" => {
                if !reply("354 end with <CRLF>.<CRLF>\r\n").await {
                    return;
                }
                let Some(data) = read_data(&mut lines).await else {
                    return;
                };
                let delay = *inbox.accept_delay.lock().unwrap();
                tokio::time::sleep(delay).await;
                inbox.messages.lock().unwrap().push(ReceivedEmail {
                    mail_from: std::mem::take(&mut mail_from),
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
                session.close();
                inbox.arrived.notify_waiters();
                reply("250 2.0.0 queued\r\n").await
            }
            "RSET" => {
                session.close();
                mail_from.clear();
                rcpt_to.clear();
                reply("250 2.0.0 ok\r\n").await
            }
            "NOOP" => reply("250 2.0.0 ok\r\n").await,
            "QUIT" => {
                reply("221 2.0.0 bye\r\n").await;
                return;
            }
            _ => reply("502 5.5.2 command not implemented\r\n").await,
        };
        if !ok {
            return;
        }
    }
}

/// Counts this connection's mail transaction as open from MAIL to the end of DATA
/// (or RSET, or the connection ending).
struct Session {
    inbox: Arc<Inbox>,
    open: bool,
}

impl Session {
    fn open(&mut self) {
        if !self.open {
            self.open = true;
            let mut counts = self.inbox.open_sessions.lock().unwrap();
            counts.0 += 1;
            counts.1 = counts.1.max(counts.0);
        }
    }

    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.inbox.open_sessions.lock().unwrap().0 -= 1;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

fn angle_address(command: &str) -> String {
    match (command.find('<'), command.find('>')) {
        (Some(start), Some(end)) if start < end => command[start + 1..end].to_owned(),
        _ => String::new(),
    }
}

/// Reads DATA up to the lone dot, undoing dot-stuffing.
async fn read_data(lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Option<String> {
    let mut body = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text == "." {
            return Some(body.join("\r\n"));
        }
        body.push(text.strip_prefix('.').unwrap_or(text).to_owned());
    }
}

// ---- reading what arrived: headers and MIME parts -------------------------------

impl ReceivedEmail {
    /// A header's value, unfolded and with RFC 2047 encoded words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = split_head(&self.data);
        header_in(headers, name).map(|v| decode_words(&v))
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The decoded text/plain part.
    pub fn text_body(&self) -> Option<String> {
        self.part("text/plain")
    }

    /// The decoded text/html part.
    pub fn html_body(&self) -> Option<String> {
        self.part("text/html")
    }

    fn part(&self, mime: &str) -> Option<String> {
        find_part(&self.data, mime)
    }
}

fn split_head(entity: &str) -> (&str, &str) {
    entity.split_once("\r\n\r\n").unwrap_or((entity, ""))
}

fn header_in(headers: &str, name: &str) -> Option<String> {
    let mut unfolded: Vec<String> = Vec::new();
    for line in headers.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = unfolded.last_mut() {
                last.push_str(line);
            }
        } else {
            unfolded.push(line.to_owned());
        }
    }
    unfolded.into_iter().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
    })
}

fn find_part(entity: &str, mime: &str) -> Option<String> {
    let (headers, body) = split_head(entity);
    let content_type = header_in(headers, "Content-Type").unwrap_or_else(|| "text/plain".into());
    let lower = content_type.to_ascii_lowercase();
    if lower.starts_with("multipart/") {
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))?
            .trim_matches('"')
            .to_owned();
        let delimiter = format!("--{boundary}");
        return body
            .split(&delimiter)
            .skip(1)
            .take_while(|part| !part.starts_with("--"))
            .find_map(|part| find_part(part.trim_start_matches("\r\n"), mime));
    }
    if !lower.starts_with(mime) {
        return None;
    }
    let encoding = header_in(headers, "Content-Transfer-Encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let body = body.trim_end_matches("\r\n");
    let bytes = match encoding.as_str() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD.decode(compact).ok()?
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.as_bytes().to_vec(),
    };
    Some(String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1..i + 3) == Some(b"\r\n") => i += 3,
            b'=' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// Decodes `=?utf-8?b?…?=` and `=?utf-8?q?…?=` words; whitespace between two encoded
/// words is dropped, as RFC 2047 says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, after) = rest.split_at(start);
        let decoded = after
            .get(2..)
            .and_then(|s| s.split_once("?="))
            .and_then(|(word, tail)| Some((decode_word(word)?, tail)));
        match decoded {
            Some((text, tail)) => {
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                rest = tail;
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_word(word: &str) -> Option<String> {
    let mut parts = word.splitn(3, '?');
    let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = match encoding {
        "b" | "B" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(text).ok()?
        }
        "q" | "Q" => quoted_printable(&text.replace('_', " ")),
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}
