//! The IPMI client against OpenIPMI's `ipmi_sim` on loopback: both
//! session kinds, power on/off/status, wrong credentials, a BMC that is
//! not there and one that never answers.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use clusto_oob::ipmi::{Bmc, Chassis, IpmiError, Prefer, Protocol};

#[path = "../../../tests/sims.rs"]
mod sims;

use sims::Sim;

fn start() -> Sim {
    sims::bmc([127, 0, 0, 1].into())
}

fn bmc(sim: &Sim, user: &str, password: &str, prefer: Prefer) -> Bmc {
    Bmc {
        addr: sim.addr,
        user: user.into(),
        password: password.into(),
        timeout: Duration::from_millis(500),
        prefer,
    }
}

fn chassis_file(sim: &Sim) -> String {
    std::fs::read_to_string(sim.dir.join("power"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn power_on_status_off_over_rmcpp_and_ipmi_1_5() {
    let sim = start();
    for (prefer, protocol) in [
        (Prefer::Auto, Protocol::Rmcpp(3)),
        (Prefer::Lanplus, Protocol::Rmcpp(3)),
        (Prefer::Lan, Protocol::V15Md5),
    ] {
        let mut s = bmc(&sim, "oper", "operpw", prefer).session().await.unwrap();
        assert_eq!(s.protocol(), protocol, "ipmi_sim offers suites 0-3, not 17");
        s.chassis(Chassis::On).await.unwrap();
        assert_eq!(chassis_file(&sim), "1");
        assert!(s.power_is_on().await.unwrap());
        s.chassis(Chassis::Off).await.unwrap();
        assert_eq!(chassis_file(&sim), "0");
        assert!(!s.power_is_on().await.unwrap());
        s.close().await;
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_refused_by_name() {
    let sim = start();
    for prefer in [Prefer::Auto, Prefer::Lan] {
        let err = bmc(&sim, "oper", "nope", prefer)
            .session()
            .await
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            matches!(err, IpmiError::Authentication { .. }),
            "{prefer:?}: {text}"
        );
        assert!(
            text.contains("\"oper\"") && text.contains("wrong password"),
            "{text}"
        );
        let err = bmc(&sim, "ghost", "x", prefer)
            .session()
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, IpmiError::Authentication { .. }),
            "{prefer:?}: {err}"
        );
        assert!(err.to_string().contains("no such user"), "{err}");
    }
    assert_eq!(chassis_file(&sim), "0", "nothing switched");
}

#[tokio::test]
async fn a_bmc_that_is_not_there_fails_fast_and_a_silent_one_in_bounded_time() {
    // Nothing bound: the kernel's port-unreachable ends the wait at once.
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut b = Bmc {
        addr: free,
        user: "oper".into(),
        password: "operpw".into(),
        timeout: Duration::from_millis(300),
        prefer: Prefer::Auto,
    };
    let t = Instant::now();
    let err = b.session().await.err().unwrap();
    assert!(matches!(err, IpmiError::Io { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(1));
    // Bound but silent: three attempts of the timeout, then a clear error.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    b.addr = silent.local_addr().unwrap();
    let t = Instant::now();
    let err = b.session().await.err().unwrap();
    assert!(matches!(err, IpmiError::Timeout { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("Get Channel Authentication Capabilities"),
        "{err}"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
