//! Encryption that holds, over real sockets: a managed client agrees keys first (`encrypt`
//! / `encrypted`), sends its credentials inside the channel, and gets everything sealed
//! whatever path sent it (its socket, a room, a broadcast, `Ulak`, the managed sender, the
//! error reply of a failing handler); a socket that never authenticated gets nothing but
//! the protocol's own answers; a replayed, reordered, reflected, truncated, tampered or
//! plain message from an encrypting client closes it with 4005; under `require_encryption`
//! anything but `encrypt` first closes with 4004.
//!
//! The test client does its half from the documented protocol alone, with RustCrypto: a
//! P-256 key pair, ECDH, HKDF-SHA256 (info `asena-managed-v2 client-to-server` and
//! `... server-to-client`), AES-256-GCM with the nonce `direction tag || counter` as
//! associated data.

use std::time::Duration;

use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce, Payload};
use aes_gcm::{Aes256Gcm, Key};
use anyhow::Context as _;
use asena_runtime::managed::ManagedOptions;
use asena_runtime::prelude::*;
use asena_tests::broker::REDIS;
use asena_tests::managed::connected_id;
use asena_tests::{
    Client, TestServer, base64_field, event, isolated, start, start_service_with, stop_all,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use p256::{PublicKey, SecretKey};
use serde_json::{Value, json};
use sha2::Sha256;

/// `echo` answers through `Socket::send`, `fail` fails the handler, anything else goes to
/// the lobby.
async fn on_event(ws: &SocketRef, event: Message) -> Result<()> {
    let envelope: Value = event.json()?;
    match envelope["event"].as_str() {
        Some("echo") => ws.send(Json(&json!({"event": "echoed", "data": envelope["data"]})))?,
        Some("fail") => return Err("the handler failed".into()),
        _ => {
            ws.namespace().to(
                "lobby",
                Json(&json!({"event": "said", "data": envelope["data"]})),
            )?;
        }
    }
    Ok(())
}

/// A managed service at `$path` with `$options` that admits `U-token` as U and handles its
/// events with [`on_event`].
macro_rules! sealed_service {
    ($name:ident, $path:literal, $options:expr) => {
        #[websocket(path = $path, managed)]
        #[derive(Debug)]
        pub struct $name;

        asena_tests::impl_token_service!(
            $name,
            $options,
            on_event = |_service, ws, event| on_event(ws, event)
        );
    };
}

// Encryption welcome, not required.
sealed_service!(
    Chan,
    "/chan",
    ManagedOptions::default()
        .heartbeat_timeout(Some(Duration::from_secs(30)))
        .default_rooms(["lobby"])
);

// Encryption required.
sealed_service!(
    Strict,
    "/strict",
    ManagedOptions::default()
        .require_encryption(true)
        .default_rooms(["lobby"])
);

async fn server() -> anyhow::Result<TestServer> {
    start(isolated().websocket::<Chan>().websocket::<Strict>()).await
}

/// One direction of the client's channel.
struct Direction {
    cipher: Aes256Gcm,
    tag: [u8; 4],
    next: u64,
}

impl Direction {
    fn nonce(&self) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.tag);
        nonce[4..].copy_from_slice(&self.next.to_be_bytes());
        nonce
    }

    /// `aead` (sealing or opening) on this direction's next message, with its nonce as the
    /// associated data; the counter moves on when it succeeds.
    fn step(&mut self, msg: &[u8], aead: AeadOp) -> anyhow::Result<Vec<u8>> {
        let nonce = self.nonce();
        let payload = Payload { msg, aad: &nonce };
        let out = aead(&self.cipher, &Nonce::<Aes256Gcm>::from(nonce), payload)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.next += 1;
        Ok(out)
    }
}

/// [`Aead::encrypt`] or [`Aead::decrypt`] of AES-256-GCM.
type AeadOp = fn(&Aes256Gcm, &Nonce<Aes256Gcm>, Payload<'_, '_>) -> aes_gcm::aead::Result<Vec<u8>>;

/// A client that agreed keys with `encrypt`.
struct Sealed {
    ws: Client,
    up: Direction,
    down: Direction,
    /// Every sealed message received, as it came (for replays and reflections).
    received: Vec<Value>,
}

impl Sealed {
    /// Connects and agrees keys (`encrypt` as the first message).
    async fn connect(s: &TestServer, path: &str) -> anyhow::Result<Sealed> {
        let mut ws = s.connect(path).await?;
        let secret = SecretKey::generate();
        let public = STANDARD.encode(secret.public_key().to_sec1_bytes());
        ws.send_json(&event("encrypt", json!({"publicKey": public})))
            .await?;
        let answer = ws.recv_json().await?;
        anyhow::ensure!(answer["event"] == "encrypted", "{answer}");
        let server = PublicKey::from_sec1_bytes(&base64_field(&answer, "serverPublicKey")?)?;
        let salt = base64_field(&answer, "salt")?;
        anyhow::ensure!(salt.len() == 16, "salt of {} bytes", salt.len());
        let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), server.as_affine());
        let hkdf = Hkdf::<Sha256>::new(Some(&salt), shared.raw_secret_bytes());
        let key = |info: &[u8]| -> anyhow::Result<Aes256Gcm> {
            let mut key = [0u8; 32];
            hkdf.expand(info, &mut key)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(key)))
        };
        Ok(Sealed {
            ws,
            up: Direction {
                cipher: key(b"asena-managed-v2 client-to-server")?,
                tag: [0, 0, 0, 1],
                next: 0,
            },
            down: Direction {
                cipher: key(b"asena-managed-v2 server-to-client")?,
                tag: [0, 0, 0, 2],
                next: 0,
            },
            received: Vec::new(),
        })
    }

    /// Connects, agrees keys, authenticates inside the channel; returns `connected`'s data.
    async fn login(s: &TestServer, path: &str, token: &str) -> anyhow::Result<(Sealed, Value)> {
        let mut c = Sealed::connect(s, path).await?;
        c.send(&event("authenticate", json!({"token": token})))
            .await?;
        let connected = c.recv().await?;
        anyhow::ensure!(connected["event"] == "connected", "{connected}");
        Ok((c, connected["data"].clone()))
    }

    /// The next client-to-server message, sealed (and counted).
    fn seal(&mut self, plain: &[u8]) -> anyhow::Result<Value> {
        let nonce = self.up.nonce();
        let payload = self.up.step(plain, |key, n, p| key.encrypt(n, p))?;
        Ok(event(
            "encrypted",
            json!({"iv": STANDARD.encode(nonce), "payload": STANDARD.encode(payload)}),
        ))
    }

    async fn send(&mut self, plain: &Value) -> anyhow::Result<()> {
        let sealed = self.seal(plain.to_string().as_bytes())?;
        self.ws.send_json(&sealed).await
    }

    /// The next message's plaintext; fails on anything not sealed with the next counter.
    async fn recv_bytes(&mut self) -> anyhow::Result<Vec<u8>> {
        let sealed = self.ws.recv_json().await?;
        anyhow::ensure!(sealed["event"] == "encrypted", "not sealed: {sealed}");
        let nonce = self.down.nonce();
        anyhow::ensure!(
            base64_field(&sealed, "iv")? == nonce,
            "not the next counter: {sealed}"
        );
        let payload = base64_field(&sealed, "payload")?;
        let plain = (self.down)
            .step(&payload, |key, n, p| key.decrypt(n, p))
            .context("does not decrypt")?;
        self.received.push(sealed);
        Ok(plain)
    }

    async fn recv(&mut self) -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&self.recv_bytes().await?)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_path_reaches_an_encrypted_client_sealed() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, connected) = Sealed::login(&s, "/chan", "alice-token").await?;
    assert_eq!(connected["userId"], "alice");
    let id = connected["id"].as_str().expect("an id").to_owned();
    let ns = s.app.namespace("/chan").expect("registered");
    let managed = s.app.ulak::<Chan>().expect("registered").managed();
    let ulak = s.app.ulak::<Chan>().expect("registered");

    // Socket::send from a handler.
    alice.send(&event("echo", json!(1))).await?;
    assert_eq!(alice.recv().await?, event("echoed", json!(1)));
    // A room send from a handler (Namespace::to).
    alice.send(&event("say", json!(2))).await?;
    assert_eq!(alice.recv().await?, event("said", json!(2)));
    // Namespace sends from outside: to a socket, a room, several rooms, everyone.
    ns.to_socket(&id, Json(&json!({"n": 3})))?;
    assert_eq!(alice.recv().await?, json!({"n": 3}));
    ns.to("lobby", Json(&json!({"n": 4})))?;
    assert_eq!(alice.recv().await?, json!({"n": 4}));
    ns.to_many(["lobby", id.as_str()], Json(&json!({"n": 5})))?;
    assert_eq!(alice.recv().await?, json!({"n": 5}));
    assert_eq!(alice.recv().await?, json!({"n": 5}));
    ns.broadcast("plain text")?;
    assert_eq!(alice.recv_bytes().await?, b"plain text");
    // Ulak, and the managed sender.
    ulak.to("lobby", Json(&json!({"n": 6})))?;
    assert_eq!(alice.recv().await?, json!({"n": 6}));
    managed.broadcast(("news", 7), &[])?;
    assert_eq!(alice.recv().await?, event("news", json!(7)));
    managed.to_user("alice", ("mail", 8))?;
    assert_eq!(alice.recv().await?, event("mail", json!(8)));
    // Protocol answers.
    alice
        .send(&event("join", json!({"rooms": ["vip"]})))
        .await?;
    assert_eq!(
        alice.recv().await?,
        event("join", json!({"rooms": [], "denied": ["vip"]}))
    );
    // The error reply of a failing handler, then its close.
    alice.send(&event("fail", Value::Null)).await?;
    // The managed `error` event, sealed like the rest.
    assert_eq!(
        alice.recv().await?,
        event("error", json!({"message": "Server error occurred"}))
    );
    assert_eq!(alice.ws.recv_close().await?.0, 1011);
    s.stop().await
}

/// Connects a socket to `path` that does not authenticate; returns it and its id, once the
/// namespace has it besides the socket `known`.
async fn stranger(s: &TestServer, path: &str, known: &str) -> anyhow::Result<(Client, String)> {
    let client = s.connect(path).await?;
    let ns = s.app.namespace(path).context("registered")?;
    asena_tests::eventually(|| ns.socket_count() == 2).await?;
    let id = ns
        .sockets()
        .iter()
        .map(|socket| socket.id().to_owned())
        .find(|id| id != known)
        .context("the stranger")?;
    Ok((client, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_authenticated_receives_no_traffic() -> anyhow::Result<()> {
    let s = server().await?;
    let (mut alice, connected) =
        asena_tests::managed_login(&s, "/chan", json!({"token": "alice-token"})).await?;
    let (mut stranger, stranger_id) = stranger(&s, "/chan", &connected_id(&connected)?).await?;
    let ns = s.app.namespace("/chan").expect("registered");

    // Every path a server can address a socket by, including the stranger's own id.
    ns.broadcast("to everyone")?;
    ns.to("lobby", "to the lobby")?;
    assert!(ns.to_socket(&stranger_id, "to the stranger").is_err());
    ns.to(&stranger_id, "to the stranger's room")?;
    s.app
        .ulak::<Chan>()
        .expect("registered")
        .broadcast("through Ulak")?;
    let managed = s.app.ulak::<Chan>().expect("registered").managed();
    managed.broadcast(("news", 1), &[])?;
    managed.to_client(&stranger_id, ("direct", 2))?;
    managed.to_room(&stranger_id, ("room", 3), &[])?;

    // The stranger's next message is the protocol's answer to its own event: nothing of the
    // above was queued before it.
    stranger.send_json(&event("say", json!("hi"))).await?;
    assert_eq!(
        stranger.recv_json().await?,
        event("error", json!({"message": "Not authenticated"}))
    );
    // Alice, authenticated, got them all.
    assert_eq!(alice.recv_text().await?, "to everyone");
    assert_eq!(alice.recv_text().await?, "to the lobby");
    assert_eq!(alice.recv_text().await?, "through Ulak");
    assert_eq!(alice.recv_json().await?, event("news", json!(1)));
    s.stop().await
}

/// What an attacker sends to an encrypting client's server.
#[derive(Debug, Clone, Copy)]
enum Attack {
    Replay,
    Reorder,
    Reflect,
    Truncate,
    Tamper,
    Plain,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_the_next_sealed_one_closes_4005() -> anyhow::Result<()> {
    let s = server().await?;
    for attack in [
        Attack::Replay,
        Attack::Reorder,
        Attack::Reflect,
        Attack::Truncate,
        Attack::Tamper,
        Attack::Plain,
    ] {
        let (mut c, _) = Sealed::login(&s, "/chan", "mallory-token").await?;
        let first = c.seal(event("echo", json!(1)).to_string().as_bytes())?;
        c.ws.send_json(&first).await?;
        assert_eq!(c.recv().await?, event("echoed", json!(1)), "{attack:?}");
        let forged = match attack {
            Attack::Replay => first.clone(),
            Attack::Reorder => {
                let _skipped = c.seal(event("echo", json!(2)).to_string().as_bytes())?;
                c.seal(event("echo", json!(3)).to_string().as_bytes())?
            }
            // The server's own last message (`echoed`), sent back as the client's.
            Attack::Reflect => c.received.last().expect("received").clone(),
            Attack::Truncate | Attack::Tamper => {
                let mut sealed = c.seal(event("echo", json!(4)).to_string().as_bytes())?;
                let mut payload =
                    STANDARD.decode(sealed["data"]["payload"].as_str().expect("payload"))?;
                if matches!(attack, Attack::Truncate) {
                    payload.truncate(payload.len() - 1);
                } else {
                    payload[0] ^= 1;
                }
                sealed["data"]["payload"] = json!(STANDARD.encode(payload));
                sealed
            }
            Attack::Plain => event("echo", json!(5)),
        };
        c.ws.send_json(&forged).await?;
        assert_eq!(
            c.ws.recv_close().await?,
            (4005, "Decryption failed".to_owned()),
            "{attack:?}"
        );
    }
    let ns = s.app.namespace("/chan").expect("registered");
    assert_eq!(ns.stats().invalid_messages(), 6);
    s.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_encryption_closes_4004_unless_encrypt_comes_first() -> anyhow::Result<()> {
    let s = server().await?;
    let firsts = [
        event("authenticate", json!({"token": "alice-token"})),
        event("heartbeat", Value::Null),
        event("say", json!("hi")),
        event("encrypt", json!({"publicKey": "AAAA"})),
        event("encrypt", json!({})),
    ];
    for first in firsts {
        let mut c = s.connect("/strict").await?;
        c.send_json(&first).await?;
        assert_eq!(
            c.recv_close().await?,
            (4004, "Encryption required".to_owned()),
            "{first}"
        );
    }
    // Credentials in plain text after the key agreement are refused too.
    let mut c = Sealed::connect(&s, "/strict").await?;
    c.ws.send_json(&event("authenticate", json!({"token": "alice-token"})))
        .await?;
    assert_eq!(c.ws.recv_close().await?.0, 4005);

    // The channel's way in.
    let (mut alice, connected) = Sealed::login(&s, "/strict", "alice-token").await?;
    assert_eq!(connected["userId"], "alice");
    alice.send(&event("echo", json!("ok"))).await?;
    assert_eq!(alice.recv().await?, event("echoed", json!("ok")));
    s.stop().await
}

// On the fleet bus (Redis, Ignis's layout).
sealed_service!(FleetChan, "/crypto-fleet", ManagedOptions::default());

async fn fleet_instance() -> anyhow::Result<TestServer> {
    start_service_with::<FleetChan>(asena_runtime::transport::RedisTransport::new(REDIS)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_from_other_instances_and_emitters_are_sealed_and_gated() -> anyhow::Result<()> {
    let a = fleet_instance().await?;
    let b = fleet_instance().await?;
    // Ignis's layout has no namespace: a user name no other test uses.
    let user = format!("crypto{}", std::process::id());
    let (mut alice, connected) =
        Sealed::login(&a, "/crypto-fleet", &format!("{user}-token")).await?;
    let alice_id = connected["id"].as_str().expect("an id");
    let (mut stranger, stranger_id) = stranger(&a, "/crypto-fleet", alice_id).await?;

    // From the other instance, and from a process without a server.
    let managed_b = b
        .app
        .ulak::<FleetChan>()
        .map(|u| u.managed())
        .expect("managed");
    managed_b.to_user(&user, ("from-b", 1))?;
    managed_b.to_client(&stranger_id, ("from-b", 2))?;
    assert_eq!(alice.recv().await?, event("from-b", json!(1)));
    let emitter = asena_runtime::transport::Emitter::connect(REDIS).await?;
    let managed = emitter.managed("ws");
    managed
        .to_client(&stranger_id, ("emitted", json!(3)))
        .await?;
    managed.to_user(&user, ("emitted", json!(4))).await?;
    assert_eq!(alice.recv().await?, event("emitted", json!(4)));
    emitter.close().await;

    // Both deliveries for the stranger were handled before alice's second one (one bus
    // subscription, in order); the stranger's next message is the answer to its own event.
    stranger.send_json(&event("say", json!("hi"))).await?;
    assert_eq!(
        stranger.recv_json().await?,
        event("error", json!({"message": "Not authenticated"}))
    );
    stop_all([b, a]).await
}
