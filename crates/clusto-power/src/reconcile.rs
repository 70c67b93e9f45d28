//! One device's power, reconciled.

use std::time::Duration;

use clusto_core::EntityId;
use clusto_core::outofband::{PowerState, PowerStatus};
use clusto_core::vm::Condition;
use clusto_oob::power::{self, NoPath, Path, PowerError, Timing};

/// A device that declares its power, as the controller's view has it.
#[derive(Clone, Debug)]
pub struct Object {
    pub id: EntityId,
    pub name: String,
    pub want: PowerState,
    pub path: Result<Path, NoPath>,
}

/// What reconcile needs besides the object.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub timing: Timing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It already was as declared: one read, no write.
    AsDeclared,
    /// It was switched; `from` is what it was (`None`: outlets disagreed).
    Switched { from: Option<PowerState> },
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    NoPath(NoPath),
    #[error(transparent)]
    Power(#[from] PowerError),
}

/// Reads the power and switches what is not as declared.
pub async fn reconcile(obj: &Object, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let path = obj
        .path
        .as_ref()
        .map_err(|e| ReconcileError::NoPath(e.clone()))?;
    let done = power::ensure(path, obj.want == PowerState::On, &ctx.timing).await?;
    Ok(if done.switched {
        Outcome::Switched {
            from: done.before.map(PowerState::from_on),
        }
    } else {
        Outcome::AsDeclared
    })
}

/// When to look at a device again after a failed reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    After(Duration),
    /// Nothing changes until the inventory does (which queues it at once)
    /// or the resync comes.
    AtResync,
}

/// A missing path waits for the inventory; an unreachable or refusing
/// BMC or PDU is retried with backoff: 1 s doubling, at most 5 min.
pub fn error_policy(err: &ReconcileError, failures: u32) -> Requeue {
    match err {
        ReconcileError::NoPath(_) => Requeue::AtResync,
        ReconcileError::Power(_) => {
            let secs = 1u64 << failures.min(9);
            Requeue::After(Duration::from_secs(secs.min(300)))
        }
    }
}

fn condition(kind: &'static str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        kind,
        status,
        reason: reason.into(),
        message,
    }
}

/// The status a reconcile leaves: the power as now known, the way it was
/// reached, `PowerPath` and `Ready` conditions, and the error if any.
pub fn status_for(
    obj: &Object,
    result: &Result<Outcome, ReconcileError>,
    prev: &PowerStatus,
    revision: i64,
) -> PowerStatus {
    let via = obj.path.as_ref().ok().map(Path::via);
    let path = match &obj.path {
        Ok(p) => condition(
            "PowerPath",
            true,
            reason_via(p),
            format!("through {}", describe(p)),
        ),
        Err(e) => condition("PowerPath", false, "MissingPath", e.why.clone()),
    };
    let want = obj.want.as_str();
    let (power_state, ready, last_error) = match result {
        Ok(Outcome::AsDeclared) => (
            Some(obj.want),
            condition("Ready", true, "AsDeclared", format!("power is {want}")),
            None,
        ),
        Ok(Outcome::Switched { from }) => {
            let was = from.map(PowerState::as_str).unwrap_or("mixed");
            (
                Some(obj.want),
                condition(
                    "Ready",
                    true,
                    "Switched",
                    format!("switched {want} (was {was})"),
                ),
                None,
            )
        }
        Err(ReconcileError::NoPath(e)) => (
            None,
            condition(
                "Ready",
                false,
                "MissingPath",
                format!("cannot switch {want}: {}", e.why),
            ),
            Some(e.to_string()),
        ),
        // What the power is now is unknown; the last reading stays.
        Err(ReconcileError::Power(e)) => (
            prev.power_state,
            condition(
                "Ready",
                false,
                "Unreachable",
                format!("cannot switch {want}: {e}"),
            ),
            Some(e.to_string()),
        ),
    };
    PowerStatus {
        power_state,
        via,
        conditions: vec![path, ready],
        last_error,
        observed_revision: Some(revision),
    }
}

/// Where the power is switched, for people: `the BMC at 10.0.0.5:623`,
/// `pdu1 outlet 3, pdu1 outlet 4`.
fn describe(p: &Path) -> String {
    match p {
        Path::Bmc(b) => format!("the BMC at {}", b.addr),
        Path::Pdu(outlets) => outlets
            .iter()
            .map(|o| format!("{} outlet {}", o.strip, o.outlet.num))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn reason_via(p: &Path) -> &'static str {
    match p {
        Path::Bmc(_) => "Bmc",
        Path::Pdu(_) => "Pdu",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clusto_core::outofband::sentry_outlets;
    use clusto_oob::path::Outlet;

    fn obj(path: Result<Path, NoPath>) -> Object {
        Object {
            id: EntityId(7),
            name: "s1".into(),
            want: PowerState::On,
            path,
        }
    }

    fn pdu() -> Path {
        Path::Pdu(vec![Outlet {
            strip: "pdu1".into(),
            outlet: "pwr-nema-5:3".parse().unwrap(),
            server_port: "pwr-nema-5:1".parse().unwrap(),
            agent: "127.0.0.1:161".parse().unwrap(),
            community: "private".into(),
            control: sentry_outlets(),
        }])
    }

    fn no_path() -> NoPath {
        NoPath {
            server: "s1".into(),
            what: "power path",
            why: "BMC: no address on OS port ipmi; PDU: no pwr-* port is cabled to a power strip"
                .into(),
        }
    }

    #[test]
    fn a_switch_is_recorded_with_what_it_was_and_the_path() {
        let o = obj(Ok(pdu()));
        let st = status_for(
            &o,
            &Ok(Outcome::Switched {
                from: Some(PowerState::Off),
            }),
            &PowerStatus::default(),
            9,
        );
        assert_eq!(st.power_state, Some(PowerState::On));
        assert_eq!(st.via, Some(clusto_core::outofband::PowerVia::Pdu));
        let path = st.condition("PowerPath").unwrap();
        assert!(path.status && path.message == "through pdu1 outlet 3");
        let ready = st.condition("Ready").unwrap();
        assert!(
            ready.status && ready.reason == "Switched" && ready.message == "switched On (was Off)"
        );
        assert_eq!((st.last_error, st.observed_revision), (None, Some(9)));
    }

    #[test]
    fn a_missing_path_names_what_is_missing_and_waits_for_the_inventory() {
        let o = obj(Err(no_path()));
        let err = ReconcileError::NoPath(no_path());
        assert_eq!(error_policy(&err, 0), Requeue::AtResync);
        assert_eq!(error_policy(&err, 9), Requeue::AtResync);
        let st = status_for(&o, &Err(err), &PowerStatus::default(), 3);
        let path = st.condition("PowerPath").unwrap();
        assert!(
            !path.status
                && path.reason == "MissingPath"
                && path.message.contains("no pwr-* port is cabled")
        );
        assert!(!st.condition("Ready").unwrap().status);
        assert_eq!(st.power_state, None);
        assert!(st.last_error.unwrap().starts_with("s1 has no power path"));
    }

    #[test]
    fn an_unreachable_device_keeps_its_last_reading_and_backs_off() {
        let o = obj(Ok(pdu()));
        let err = || {
            ReconcileError::Power(PowerError::Credentials {
                from: "environment variable BMC".into(),
                why: "not set".into(),
            })
        };
        let prev = PowerStatus {
            power_state: Some(PowerState::Off),
            ..PowerStatus::default()
        };
        let st = status_for(&o, &Err(err()), &prev, 4);
        assert_eq!(st.power_state, Some(PowerState::Off));
        let ready = st.condition("Ready").unwrap();
        assert!(!ready.status && ready.reason == "Unreachable");
        assert_eq!(
            error_policy(&err(), 0),
            Requeue::After(Duration::from_secs(1))
        );
        assert_eq!(
            error_policy(&err(), 3),
            Requeue::After(Duration::from_secs(8))
        );
        assert_eq!(
            error_policy(&err(), 30),
            Requeue::After(Duration::from_secs(300))
        );
    }

    #[tokio::test]
    async fn reconcile_without_a_path_touches_nothing() {
        let o = obj(Err(no_path()));
        let ctx = Context::default();
        assert!(matches!(
            reconcile(&o, &ctx).await,
            Err(ReconcileError::NoPath(_))
        ));
        assert_eq!(ctx.timing.tally.snapshot(), (0, 0));
    }
}
