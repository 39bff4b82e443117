//! Comparing secrets (tokens, passwords, API keys) without leaking them through timing.
//!
//! `==` on strings stops at the first differing byte, so how long a refusal takes tells an
//! attacker how much of a guess was right, and a token can be found a byte at a time.
//! [`secret_eq`] compares SHA-256 digests of both sides with [`subtle`]'s constant-time
//! equality: the time depends on neither the contents nor, beyond hashing, the lengths.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `given` equals `expected`, in time that does not depend on where they differ.
///
/// ```
/// use asena_runtime::secret_eq;
/// assert!(secret_eq("s3cret", "s3cret"));
/// assert!(!secret_eq("s3creT", "s3cret"));
/// assert!(!secret_eq("", "s3cret"));
/// ```
pub fn secret_eq(given: impl AsRef<[u8]>, expected: impl AsRef<[u8]>) -> bool {
    let given = Sha256::digest(given.as_ref());
    let expected = Sha256::digest(expected.as_ref());
    given.as_slice().ct_eq(expected.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_equal() {
        assert!(secret_eq(b"", b""));
        assert!(secret_eq("token", "token"));
        assert!(!secret_eq("token", "tokem"));
        assert!(!secret_eq("token", "token "));
        assert!(!secret_eq("token", "TOKEN"));
    }
}
