//! A client message of a managed service: the envelope, the key agreement, the channel.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| asena_runtime::__fuzz::managed_envelope(data));
