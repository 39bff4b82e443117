//! An upgrade request (`METHOD target` then `name: value` lines): handshake checks, Origin allow-list, query, permessage-deflate negotiation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| asena_runtime::__fuzz::upgrade_request(data));
