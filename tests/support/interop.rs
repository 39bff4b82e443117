//! The real systems of the interop tests, run by the Bun that `scripts/interop.sh` installs
//! into `scripts/interop/node_modules`: [`Ignis`], the app `scripts/interop/ignis-server.ts`
//! on the real Ignis 0.0.7 WebSocket component. Each is a child process killed by its PID
//! when its guard drops; every wait on it is bounded.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::Client;
use crate::broker::free_port;
use crate::managed::next_event;

/// How long a real server may take to print its ready line (Bun loads Ignis's whole module
/// graph first).
pub const STARTUP: Duration = Duration::from_secs(30);

/// `scripts/interop` in this repository.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop")
}

/// The Bun binary `scripts/interop.sh` installed; an error (never a skip) without it.
pub fn bun() -> anyhow::Result<PathBuf> {
    let bun = interop_dir().join("node_modules/bun/bin/bun.exe");
    ensure!(
        bun.is_file(),
        "no Bun at {}: run scripts/interop.sh first (it installs Bun and the real Ignis)",
        bun.display()
    );
    Ok(bun)
}

/// A child process started by Bun, killed by its PID when dropped.
#[derive(Debug)]
pub struct BunProcess {
    child: Child,
    /// Its output until the ready line; then a task reads the rest.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    name: &'static str,
}

impl BunProcess {
    /// Runs `script` (in `scripts/interop`) with `env`, and waits (at most [`STARTUP`]) for
    /// its line `ready <json>`; returns the process and that JSON.
    pub async fn start(
        name: &'static str,
        script: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<(BunProcess, Value)> {
        // Ignis's logger writes its files and their audit records in the log folder and the
        // working directory: both are a temporary directory.
        let logs = std::env::temp_dir().join("asena-interop-logs");
        std::fs::create_dir_all(&logs)?;
        let mut cmd = Command::new(bun()?);
        cmd.arg("run")
            .arg(interop_dir().join(script))
            .current_dir(&logs)
            .env("APP_ENV_LOGGER_FOLDER_PATH", &logs)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let stdout = child.stdout.take().context("the child's stdout")?;
        let mut process = BunProcess {
            child,
            stdout: Some(BufReader::new(stdout).lines()),
            name,
        };
        let ready = tokio::time::timeout(STARTUP, process.ready())
            .await
            .with_context(|| format!("{name} printed no ready line within {STARTUP:?}"))??;
        // The rest of its output (Ignis logs every connection) is read and dropped, so that a
        // full pipe never blocks it.
        if let Some(mut rest) = process.stdout.take() {
            tokio::spawn(async move { while let Ok(Some(_)) = rest.next_line().await {} });
        }
        Ok((process, ready))
    }

    async fn ready(&mut self) -> anyhow::Result<Value> {
        let lines = self.stdout.as_mut().context("output already read")?;
        while let Some(line) = lines.next_line().await? {
            if let Some(json) = line.strip_prefix("ready ") {
                return Ok(serde_json::from_str(json)?);
            }
        }
        let status = self.child.wait().await?;
        bail!("{} exited before it was ready: {status}", self.name)
    }
}

impl Drop for BunProcess {
    fn drop(&mut self) {
        // SIGKILL by PID; `kill_on_drop` reaps it.
        let _ = self.child.start_kill();
    }
}

/// The Ignis 0.0.7 app `scripts/interop/ignis-server.ts`: its WebSocket component at `/ws`
/// on a free loopback port, on the shared Redis, under the channel prefix it was started
/// with; clients log in with `{"token": "U-token"}` as user U.
#[derive(Debug)]
pub struct Ignis {
    pub port: u16,
    _process: BunProcess,
}

impl Ignis {
    /// Starts the app with its Redis channels under `prefix` (`prefix:room:R`, ...).
    pub async fn start(prefix: &str) -> anyhow::Result<Ignis> {
        // Ignis 0.0.7 takes port 0 for "unset" and listens on 3000 instead.
        let port = free_port()?;
        let (process, ready) = BunProcess::start(
            "the Ignis server",
            "ignis-server.ts",
            &[
                ("PORT", port.to_string()),
                ("REDIS_HOST", "127.0.0.1".into()),
                ("REDIS_PORT", "6379".into()),
                ("CHANNEL_PREFIX", prefix.into()),
            ],
        )
        .await?;
        ensure!(ready["port"] == port, "Ignis listens elsewhere: {ready}");
        Ok(Ignis {
            port,
            _process: process,
        })
    }

    /// Sends `command` to the app's `POST /control` and returns its JSON answer.
    pub async fn control(&self, command: Value) -> anyhow::Result<Value> {
        let req = hyper::Request::post(format!("http://127.0.0.1:{}/control", self.port))
            .header("content-type", "application/json")
            .body(command.to_string().into())?;
        let response = crate::http_request(req).await?;
        ensure!(response.status == 200, "{response}");
        response.json()
    }

    /// A client of the component that logged in as `user` (token `user-token`); returns it
    /// and the client id of Ignis's `connected` event.
    pub async fn login(&self, user: &str) -> anyhow::Result<(Client, String)> {
        let mut client = Client::connect(&format!("ws://127.0.0.1:{}/ws", self.port)).await?;
        client
            .send_json(&crate::event(
                "authenticate",
                json!({"type": "token", "token": format!("{user}-token")}),
            ))
            .await?;
        let connected = next_event(&mut client, "connected").await?;
        Ok((client, crate::managed::connected_id(&connected)?))
    }

    /// Has `client` (its id `id`) join `room` and waits until Ignis has it there: Ignis 0.0.7
    /// does not answer `join`, so its membership is read through the control endpoint.
    pub async fn join(&self, client: &mut Client, id: &str, room: &str) -> anyhow::Result<()> {
        client
            .send_json(&crate::event("join", json!({"rooms": [room]})))
            .await?;
        crate::within(crate::WAIT, "the Ignis client is in its room", async || {
            self.control(json!({"op": "client", "id": id}))
                .await
                .is_ok_and(|c| {
                    c["rooms"]
                        .as_array()
                        .is_some_and(|r| r.contains(&json!(room)))
                })
        })
        .await
    }
}
