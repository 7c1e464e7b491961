//! Fuzzes what intake does with untrusted bytes before anything else runs: the signature
//! check over the raw body, then parsing under every event name the App knows.
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run webhook_intake -s none -- -max_total_time=300
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    // First byte picks the event, the next 71 are a header value, the rest is the body.
    let events = ["workflow_run", "workflow_job", "ping", "issues"];
    let Some((&pick, rest)) = data.split_first() else { return };
    let (header, body) = rest.split_at(rest.len().min(71));
    let secrets = [SecretString::from("fuzz".to_string())];
    let header = String::from_utf8_lossy(header);
    let _ = autorevert::intake::signature::verify_signature(&secrets, Some(&header), body);
    // A correctly signed body must verify.
    let signed = autorevert::intake::signature::sign("fuzz", body);
    assert!(autorevert::intake::signature::verify_signature(&secrets, Some(&signed), body));
    let _ = autorevert::intake::events::parse(events[pick as usize % events.len()], body);
});
