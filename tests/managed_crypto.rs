//! Ignis's key exchange (the explicit opt-in `ManagedOptions::ignis_key_exchange`) over real
//! sockets: the key agreement in `authenticate`/`connected`, encrypted events both ways, a room delivery that reaches an
//! encrypted member sealed and a plain member as the shared frame, 4004 when encryption is
//! required and no usable key came, and a tampered message answered with an error.
//!
//! The test client does its half with the same RustCrypto crates, from the documented
//! protocol alone: its own P-256 key pair, ECDH, HKDF-SHA256 (info `asena-managed-v1`),
//! AES-256-GCM.

use std::sync::Mutex;
use std::time::Duration;

use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce};
use aes_gcm::{Aes256Gcm, Key};
use asena_runtime::Raw;
use asena_runtime::managed::{ManagedOptions, ManagedService};
use asena_runtime::prelude::*;
use asena_tests::{Client, TestServer, base64_field, event, isolated, managed_login_closed, start};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use p256::{PublicKey, SecretKey};
use serde_json::{Value, json};
use sha2::Sha256;

/// What the services saw: `user encrypted? event`.
#[service]
#[derive(Debug, Default)]
pub struct Seen {
    pub lines: Mutex<Vec<String>>,
}

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Shared by both services: records the event in `seen`; `say` goes to the lobby (the
/// sender included) as `said`; `fail` fails the handler.
async fn handle<S: ManagedService<Out = Raw>>(
    seen: &Seen,
    ws: &Socket<S>,
    event: Message,
) -> Result<()> {
    let envelope: Value = event.json()?;
    let client = &ws.data().values;
    seen.lines
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!(
            "{} encrypted={} {}",
            client.user_id().unwrap_or_default(),
            client.is_encrypted(),
            envelope["event"].as_str().unwrap_or_default()
        ));
    if envelope["event"] == "say" {
        let managed = ws.managed();
        managed.to_room("lobby", ("said", &envelope["data"]), &[])?;
    }
    if envelope["event"] == "fail" {
        return Err("the handler failed".into());
    }
    Ok(())
}

/// A managed service at `$path` with `$options` that records what it sees in [`Seen`],
/// admits `U-token` as U and handles its events with [`handle`]; `rooms = f` filters the
/// rooms a client may join.
macro_rules! seen_service {
    ($name:ident, $path:literal, $options:expr $(, rooms = $rooms:path)?) => {
        #[websocket(path = $path, managed)]
        #[derive(Debug)]
        pub struct $name {
            #[inject]
            seen: Arc<Seen>,
        }

        asena_tests::impl_token_service!(
            $name,
            $options,
            on_event = |service, ws, event| handle(&service.seen, ws, event)
            $(, rooms = $rooms)?
        );
    };
}

fn lobby_only(rooms: Vec<String>) -> Vec<String> {
    rooms.into_iter().filter(|r| r == "lobby").collect()
}

// Encryption welcome, not required.
seen_service!(
    Open,
    "/open",
    ManagedOptions::default()
        .ignis_key_exchange(true)
        .heartbeat_timeout(Some(Duration::from_secs(30)))
        .default_rooms(["lobby"]),
    rooms = lobby_only
);

// Encryption required.
seen_service!(
    Sealed,
    "/sealed",
    ManagedOptions::default()
        .ignis_key_exchange(true)
        .require_encryption(true)
);

async fn server() -> anyhow::Result<TestServer> {
    start(
        isolated()
            .websocket::<Open>()
            .websocket::<Sealed>()
            .service::<Seen>(),
    )
    .await
}

/// The client's half of the key agreement.
struct ClientKey {
    secret: SecretKey,
}

impl ClientKey {
    fn new() -> Self {
        ClientKey {
            secret: SecretKey::generate(),
        }
    }

    /// `publicKey` for `authenticate`: base64 of the SEC1 uncompressed point.
    fn public_key(&self) -> String {
        let bytes = self.secret.public_key().to_sec1_bytes();
        assert_eq!(bytes.len(), 65);
        STANDARD.encode(bytes)
    }

    /// The session key from `connected`'s `serverPublicKey` and `salt`.
    fn agree(&self, connected: &Value) -> anyhow::Result<Cipher> {
        let server = base64_field(connected, "serverPublicKey")?;
        anyhow::ensure!(server.len() == 65 && server[0] == 0x04, "not uncompressed");
        let server = PublicKey::from_sec1_bytes(&server)?;
        let salt = base64_field(connected, "salt")?;
        anyhow::ensure!(salt.len() == 16, "salt of {} bytes", salt.len());
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), server.as_affine());
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes())
            .expand(b"asena-managed-v1", &mut key)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Cipher(Aes256Gcm::new(&Key::<Aes256Gcm>::from(key))))
    }
}

/// AES-256-GCM with the agreed key, in the `encrypted` envelope.
struct Cipher(Aes256Gcm);

impl Cipher {
    fn seal(&self, plain: &Value) -> anyhow::Result<Value> {
        let nonce = Nonce::<Aes256Gcm>::generate();
        let payload = self
            .0
            .encrypt(&nonce, plain.to_string().as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(event(
            "encrypted",
            json!({"iv": STANDARD.encode(nonce), "payload": STANDARD.encode(payload)}),
        ))
    }

    fn open(&self, sealed: &Value) -> anyhow::Result<Value> {
        anyhow::ensure!(sealed["event"] == "encrypted", "not encrypted: {sealed}");
        let nonce = Nonce::<Aes256Gcm>::try_from(base64_field(sealed, "iv")?.as_slice())?;
        let plain = self
            .0
            .decrypt(&nonce, base64_field(sealed, "payload")?.as_slice())
            .map_err(|e| anyhow::anyhow!("does not decrypt: {e}"))?;
        Ok(serde_json::from_slice(&plain)?)
    }
}

/// An encrypted client: connected, with its session key.
struct Encrypted {
    ws: Client,
    cipher: Cipher,
}

impl Encrypted {
    async fn login(s: &TestServer, path: &str, token: &str) -> anyhow::Result<(Self, Value)> {
        let key = ClientKey::new();
        let (ws, connected) = asena_tests::managed_login(
            s,
            path,
            json!({"type": "token", "token": token, "publicKey": key.public_key()}),
        )
        .await?;
        let cipher = key.agree(&connected)?;
        Ok((Encrypted { ws, cipher }, connected))
    }

    async fn send(&mut self, plain: &Value) -> anyhow::Result<()> {
        let sealed = self.cipher.seal(plain)?;
        self.ws.send_json(&sealed).await
    }

    async fn recv(&mut self) -> anyhow::Result<Value> {
        let sealed = self.ws.recv_json().await?;
        self.cipher.open(&sealed)
    }
}

async fn plain_login(s: &TestServer, path: &str, token: &str) -> anyhow::Result<Client> {
    let (c, connected) = asena_tests::managed_login(s, path, json!({"token": token})).await?;
    anyhow::ensure!(
        connected["data"].get("serverPublicKey").is_none(),
        "{connected}"
    );
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_client_and_a_plain_one_share_a_room() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, connected) = Encrypted::login(&s, "/open", "alice-token").await?;
    assert_eq!(connected["data"]["userId"], "alice");
    let mut bob = plain_login(&s, "/open", "bob-token").await?;

    // An encrypted application event is decrypted and handled; the room delivery it causes
    // reaches alice sealed and bob as the plain frame.
    alice
        .send(&event("say", json!({"text": "secret hello"})))
        .await?;
    let said = event("said", json!({"text": "secret hello"}));
    assert_eq!(alice.recv().await?, said);
    assert_eq!(bob.recv_json().await?, said);
    let seen = s.app.get::<Seen>().expect("registered");
    assert_eq!(seen.lines(), vec!["alice encrypted=true say"]);

    // Plain events from an encrypted client are still accepted; bob's say reaches alice
    // sealed.
    bob.send_json(&event("say", json!({"text": "hi"}))).await?;
    let hi = event("said", json!({"text": "hi"}));
    assert_eq!(bob.recv_json().await?, hi);
    assert_eq!(alice.recv().await?, hi);

    // Protocol answers to an encrypted client are sealed too; an encrypted heartbeat is
    // taken silently (the next answer is the join's).
    alice.send(&json!({"event": "heartbeat"})).await?;
    alice
        .send(&event("join", json!({"rooms": ["lobby", "vip"]})))
        .await?;
    assert_eq!(
        alice.recv().await?,
        event("join", json!({"rooms": ["lobby"], "denied": ["vip"]}))
    );
    alice.send(&event("connected", json!({}))).await?;
    assert_eq!(
        alice.recv().await?,
        event("error", json!({"message": "Reserved event: connected"}))
    );

    let open = s.app.ulak::<Open>().expect("registered");
    let encrypted: Vec<bool> = open
        .sockets()
        .iter()
        .map(|socket| socket.data().values.is_encrypted())
        .collect();
    assert_eq!(encrypted.iter().filter(|e| **e).count(), 1, "{encrypted:?}");
    assert_eq!(encrypted.len(), 2);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_encryption_closes_4004_without_a_usable_key() -> anyhow::Result<()> {
    let s = server().await?;
    let mut off_curve = vec![0x04];
    off_curve.extend([0x01; 64]);
    let garbage = [
        None,
        Some(json!("not a key")),
        Some(json!(STANDARD.encode(off_curve))),
        Some(json!(42)),
    ];
    for public_key in garbage {
        let mut credentials = json!({"token": "alice-token"});
        if let Some(k) = &public_key {
            credentials["publicKey"] = k.clone();
        }
        assert_eq!(
            managed_login_closed(&s, "/sealed", credentials).await?,
            (4004, "Encryption required".into()),
            "{public_key:?}"
        );
    }
    // A malformed key is refused even where encryption is optional.
    let mut c = s.connect("/open").await?;
    c.send_json(&event(
        "authenticate",
        json!({"token": "bob-token", "publicKey": "AAAA"}),
    ))
    .await?;
    assert_eq!(c.recv_close().await?, (4004, "Encryption required".into()));

    // A good key is admitted.
    let (mut carol, _) = Encrypted::login(&s, "/sealed", "carol-token").await?;
    carol.send(&event("ping", json!(1))).await?;
    let seen = s.app.get::<Seen>().expect("registered");
    asena_tests::eventually(|| seen.lines() == vec!["carol encrypted=true ping"]).await?;
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_message_gets_an_error_and_the_socket_stays_open() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, _) = Encrypted::login(&s, "/open", "alice-token").await?;
    let mut sealed = alice.cipher.seal(&event("say", json!({"text": "x"})))?;
    let mut payload = STANDARD.decode(sealed["data"]["payload"].as_str().unwrap_or_default())?;
    payload[0] ^= 0x80;
    sealed["data"]["payload"] = json!(STANDARD.encode(payload));
    alice.ws.send_json(&sealed).await?;
    assert_eq!(
        alice.recv().await?,
        event("error", json!({"message": "Decryption failed"}))
    );
    // Not even the shape: the same answer.
    alice
        .ws
        .send_json(&event("encrypted", json!({"iv": "short"})))
        .await?;
    assert_eq!(
        alice.recv().await?,
        event("error", json!({"message": "Decryption failed"}))
    );
    assert_eq!(
        s.app
            .namespace("/open")
            .map(|n| n.stats().invalid_messages()),
        Some(2)
    );

    // Still open, still encrypted.
    alice.send(&event("say", json!({"text": "ok"}))).await?;
    assert_eq!(alice.recv().await?, event("said", json!({"text": "ok"})));
    s.stop().await
}

#[tokio::test]
async fn a_failing_handler_answers_an_encrypted_client_sealed() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, _) = Encrypted::login(&s, "/sealed", "alice-token").await?;
    alice.send(&json!({"event": "fail"})).await?;
    // `recv` opens the envelope: a plaintext error would not open.
    assert_eq!(
        alice.recv().await?,
        json!({"event": "error", "data": {"message": "Server error occurred"}})
    );
    assert_eq!(alice.ws.recv_close().await?.0, 1011);
    s.stop().await
}
