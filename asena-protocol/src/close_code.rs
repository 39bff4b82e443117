//! Close codes: the RFC 6455 ones Asena sends (§7.4.1) and the managed protocol's own
//! (4001–4005, in the application range).

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The server is going away (shutdown, idle timeout).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL: u16 = 1002;
/// No status code was present in the peer's close frame.
pub const NO_STATUS: u16 = 1005;
/// The connection dropped without a close frame.
pub const ABNORMAL: u16 = 1006;
/// A text message was not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy: slow consumer, connection limit, rate limit.
pub const POLICY: u16 = 1008;
/// A message exceeded the size limit.
pub const TOO_BIG: u16 = 1009;
/// A handler failed.
pub const INTERNAL: u16 = 1011;

/// Managed protocol: no `authenticate` in time, or the authenticator did not finish in
/// three times that.
pub const AUTH_TIMEOUT: u16 = 4001;
/// Managed protocol: no message within the heartbeat timeout.
pub const HEARTBEAT_TIMEOUT: u16 = 4002;
/// Managed protocol: the authenticator refused the credentials or failed.
pub const AUTH_FAILED: u16 = 4003;
/// Managed protocol: encryption was required and the client's first message was not
/// `encrypt` (or its `publicKey` was malformed).
pub const ENCRYPTION_REQUIRED: u16 = 4004;
/// Managed protocol: a message from an encrypting client was not the next sealed one of its
/// channel: plain, replayed, reordered, reflected, truncated or tampered.
pub const DECRYPTION_FAILED: u16 = 4005;

/// Whether `code` may be sent in a close frame: 1000–1003, 1007–1014 and the
/// application range 3000–4999. Reserved codes such as 1005 (no status) and 1006
/// (abnormal closure) only describe a close locally and never go on the wire.
pub fn is_sendable(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_code_but_the_local_ones_is_sendable() {
        for code in [
            NORMAL,
            GOING_AWAY,
            PROTOCOL,
            INVALID_PAYLOAD,
            POLICY,
            TOO_BIG,
            INTERNAL,
            AUTH_TIMEOUT,
            HEARTBEAT_TIMEOUT,
            AUTH_FAILED,
            ENCRYPTION_REQUIRED,
            DECRYPTION_FAILED,
        ] {
            assert!(is_sendable(code), "{code}");
        }
        assert!(!is_sendable(NO_STATUS));
        assert!(!is_sendable(ABNORMAL));
        assert!(!is_sendable(5000));
    }
}
