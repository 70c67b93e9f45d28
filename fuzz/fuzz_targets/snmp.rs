//! SNMP: a datagram through BER, the v1/v2c/v3 message layers and USM
//! (a v3 user configured, so authenticated and encrypted paths run), then
//! the Cisco MAC-notification records a notification carries.
#![no_main]

use std::sync::{Mutex, OnceLock};

use clusto_snmp_wire::cmn;
use clusto_snmp_wire::message::{Received, receive};
use clusto_snmp_wire::usm::{Usm, engine_id_for, parse_users};
use libfuzzer_sys::fuzz_target;

fn usm() -> &'static Mutex<Usm> {
    static USM: OnceLock<Mutex<Usm>> = OnceLock::new();
    USM.get_or_init(|| {
        let users = parse_users("users", "alice SHA-256 alicepass1 AES alicepriv1\n")
            .expect("the fuzzer's user line parses");
        Mutex::new(Usm::new(engine_id_for("fuzz"), users))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut usm = usm().lock().unwrap_or_else(|p| p.into_inner());
    if let Received::Notification(n) = receive(data, &mut usm) {
        let _ = cmn::records(&n);
    }
});
