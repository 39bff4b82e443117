//! The data of an encrypted managed message: opened by the channel, and a sealed input opened once.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| asena_runtime::__fuzz::encrypted_frame(data));
