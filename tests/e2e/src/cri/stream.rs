//! A client of containerd's streaming server, the URL CRI `Exec` returns, speaking to it as
//! `kubectl exec -it` does through kubelet: a websocket with the `v4.channel.k8s.io` protocol,
//! each binary message starting with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the process's
//! final status (JSON), 4 terminal resizes (JSON `{"Width":W,"Height":H}`).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

const PROTOCOL: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// One exec session on the streaming server.
pub struct ExecStream {
    socket: WebSocket<TcpStream>,
    /// stdout (and stderr) not yet matched by [`ExecStream::expect`].
    output: String,
    /// The error channel: the final status.
    status: String,
    closed: bool,
}

impl ExecStream {
    /// Connects to `url` (`http://host:port/exec/TOKEN`): the process starts now.
    pub fn connect(url: &str) -> Result<Self> {
        let ws_url = url.replacen("http://", "ws://", 1);
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .with_context(|| format!("exec URL {url}"))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
        let authority = request
            .uri()
            .authority()
            .with_context(|| format!("exec URL {url} has no host"))?
            .to_string();
        let stream = TcpStream::connect(&authority)
            .with_context(|| format!("connecting to the streaming server at {authority}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(200)))?;
        let (socket, response) = tungstenite::client(request, stream)
            .map_err(|e| anyhow::anyhow!("websocket handshake with {url}: {e}"))?;
        let protocol = response.headers().get("Sec-WebSocket-Protocol");
        if protocol.and_then(|p| p.to_str().ok()) != Some(PROTOCOL) {
            bail!("the streaming server did not accept {PROTOCOL}: {protocol:?}");
        }
        Ok(Self {
            socket,
            output: String::new(),
            status: String::new(),
            closed: false,
        })
    }

    fn send(&mut self, channel: u8, bytes: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(bytes.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(bytes);
        self.socket
            .send(Message::Binary(frame.into()))
            .context("writing to the exec stream")
    }

    /// Types `text` on the process's stdin.
    pub fn write(&mut self, text: &str) -> Result<()> {
        self.send(STDIN, text.as_bytes())
    }

    /// Resizes the process's terminal.
    pub fn resize(&mut self, width: u16, height: u16) -> Result<()> {
        let json = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.send(RESIZE, json.as_bytes())
    }

    /// Reads one message within the socket's read timeout; false when none came.
    fn read_one(&mut self) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        match self.socket.read() {
            Ok(Message::Binary(data)) => {
                match data.split_first() {
                    Some((&(STDOUT | STDERR), rest)) => {
                        self.output.push_str(&String::from_utf8_lossy(rest))
                    }
                    Some((&ERROR, rest)) => self.status.push_str(&String::from_utf8_lossy(rest)),
                    _ => {}
                }
                Ok(true)
            }
            Ok(Message::Close(_)) => {
                self.closed = true;
                Ok(false)
            }
            Ok(_) => Ok(true),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(e).context("reading the exec stream"),
        }
    }

    /// Reads until `needle` appears in the output (since the last match), up to `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.output.find(needle) {
                self.output.drain(..at + needle.len());
                return Ok(());
            }
            if Instant::now() >= deadline || (self.closed && !self.read_one()?) {
                bail!(
                    "{needle:?} not seen on the exec stream within {timeout:?}; it shows:\n{}",
                    self.output
                );
            }
            self.read_one()?;
        }
    }

    /// Reads until the server closes the stream; returns the final status (JSON, empty for
    /// success on some servers) and the output not matched yet.
    pub fn finish(mut self, timeout: Duration) -> Result<(String, String)> {
        let deadline = Instant::now() + timeout;
        while !self.closed {
            if Instant::now() >= deadline {
                bail!(
                    "the exec stream is still open after {timeout:?}; output:\n{}",
                    self.output
                );
            }
            self.read_one()?;
        }
        Ok((self.status, self.output))
    }
}
