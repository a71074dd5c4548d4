//! Entra ID token replies as an authority host might send them: any bytes are read without
//! panicking, and a lifetime is only ever positive.
#![no_main]

use auditstream_azure_auth::entra::TokenReply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reply = TokenReply::parse(data);
    if let Some(seconds) = reply.lifetime() {
        assert!(seconds > 0);
    }
});
