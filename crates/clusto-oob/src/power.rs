//! Reading and switching a server's power through the path [`crate::path`]
//! found: its BMC, or every PDU outlet it is cabled to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clusto_snmp_wire::client::{Agent, ClientError};
use clusto_snmp_wire::message::Value as SnmpValue;

use crate::ipmi::{Bmc, Chassis, IpmiError};
use crate::path::{BmcPath, Credentials, Missing, Outlet, PowerPaths};

/// Which way to reach the power (`--via`).
pub use clusto_core::outofband::PowerVia as Via;

/// The way chosen for one server.
#[derive(Clone, Debug)]
pub enum Path {
    Bmc(BmcPath),
    Pdu(Vec<Outlet>),
}

impl Path {
    pub fn via(&self) -> Via {
        match self {
            Path::Bmc(_) => Via::Bmc,
            Path::Pdu(_) => Via::Pdu,
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{server} has no {what}: {why}")]
pub struct NoPath {
    pub server: String,
    pub what: &'static str,
    pub why: String,
}

/// The BMC when the server has one, else its outlets; or the one asked for.
pub fn choose(server: &str, paths: PowerPaths, via: Option<Via>) -> Result<Path, NoPath> {
    let no = |what, why: String| NoPath {
        server: server.to_string(),
        what,
        why,
    };
    match (via, paths.bmc, paths.pdu) {
        (Some(Via::Bmc), bmc, _) => bmc
            .map(Path::Bmc)
            .map_err(|m| no("BMC path", m.to_string())),
        (Some(Via::Pdu), _, pdu) => pdu
            .map(Path::Pdu)
            .map_err(|m| no("PDU path", m.to_string())),
        (None, Ok(b), _) => Ok(Path::Bmc(b)),
        (None, Err(_), Ok(p)) => Ok(Path::Pdu(p)),
        (None, Err(b), Err(p)) => Err(no("power path", format!("BMC: {b}; PDU: {p}"))),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Ipmi(#[from] IpmiError),
    #[error("{strip} outlet {outlet}: {source}")]
    Snmp {
        strip: String,
        outlet: u32,
        #[source]
        source: ClientError,
    },
    #[error(
        "{strip} outlet {outlet} reports status {value:?}, which its driver's statusOn/statusOff do not name"
    )]
    UnknownStatus {
        strip: String,
        outlet: u32,
        value: String,
    },
    #[error("{strip} outlet {outlet}: the driver's OID template does not make an OID")]
    BadOid { strip: String, outlet: u32 },
    #[error("BMC credentials from {from}: {why}")]
    Credentials { from: String, why: String },
    #[error(transparent)]
    NoPath(#[from] NoPath),
    #[error(transparent)]
    Missing(#[from] Missing),
}

/// What the power is: per outlet for a PDU path, one reading for a BMC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    /// `None` when outlets disagree.
    pub on: Option<bool>,
    /// (strip, outlet, on) for each outlet read.
    pub outlets: Vec<(String, u32, bool)>,
}

/// How long to wait for each answer, and where reads and writes are
/// counted.
#[derive(Clone, Debug)]
pub struct Timing {
    pub timeout: Duration,
    pub tally: Arc<Tally>,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            timeout: Duration::from_secs(1),
            tally: Arc::default(),
        }
    }
}

/// Power operations made: status reads and switches (per outlet, or per
/// BMC command), whatever their outcome.
#[derive(Debug, Default)]
pub struct Tally {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl Tally {
    /// (reads, writes) so far.
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// `USER:PASSWORD` from where `ipmi.credentials` says.
pub fn read_credentials(c: &Credentials) -> Result<(String, String), PowerError> {
    let (from, text) = match c {
        Credentials::File(p) => (
            format!("file {}", p.display()),
            std::fs::read_to_string(p).map_err(|e| e.to_string()),
        ),
        Credentials::Env(n) => (
            format!("environment variable {n}"),
            std::env::var(n).map_err(|_| "not set".to_string()),
        ),
    };
    let bad = |why: String| PowerError::Credentials {
        from: from.clone(),
        why,
    };
    let text = text.map_err(bad)?;
    let line = text.lines().next().unwrap_or_default();
    match line.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err(bad("the first line must be USER:PASSWORD".into())),
    }
}

fn bmc(path: &BmcPath, t: &Timing) -> Result<Bmc, PowerError> {
    let (user, password) = read_credentials(&path.credentials)?;
    Ok(Bmc {
        addr: path.addr,
        user,
        password,
        timeout: t.timeout,
        prefer: path.prefer,
    })
}

fn agent(o: &Outlet, t: &Timing) -> Agent {
    Agent {
        addr: o.agent,
        community: o.community.clone(),
        timeout: t.timeout,
        retries: 2,
    }
}

pub async fn status(path: &Path, t: &Timing) -> Result<Reading, PowerError> {
    match path {
        Path::Bmc(b) => {
            let mut s = bmc(b, t)?.session().await?;
            t.tally.read();
            let on = s.power_is_on().await;
            s.close().await;
            Ok(Reading {
                on: Some(on?),
                outlets: Vec::new(),
            })
        }
        Path::Pdu(outlets) => {
            let mut read = Vec::new();
            for o in outlets {
                read.push((o.strip.clone(), o.outlet.num, outlet_is_on(o, t).await?));
            }
            let first = read.first().map(|r| r.2);
            let agree = read.iter().all(|r| Some(r.2) == first);
            Ok(Reading {
                on: if agree { first } else { None },
                outlets: read,
            })
        }
    }
}

async fn outlet_is_on(o: &Outlet, t: &Timing) -> Result<bool, PowerError> {
    let n = o.outlet.num;
    let snmp = |source| PowerError::Snmp {
        strip: o.strip.clone(),
        outlet: n,
        source,
    };
    let oid = o.control.status_oid(n).ok_or_else(|| PowerError::BadOid {
        strip: o.strip.clone(),
        outlet: n,
    })?;
    t.tally.read();
    let value = agent(o, t).get(&oid).await.map_err(snmp)?;
    let reading = match value {
        SnmpValue::Integer(v) => o.control.reading(v),
        _ => None,
    };
    reading.ok_or_else(|| PowerError::UnknownStatus {
        strip: o.strip.clone(),
        outlet: n,
        value: format!("{value:?}"),
    })
}

/// Switches the power on or off (a no-op where it already is).
pub async fn switch(path: &Path, on: bool, t: &Timing) -> Result<(), PowerError> {
    match path {
        Path::Bmc(b) => {
            let mut s = bmc(b, t)?.session().await?;
            t.tally.wrote();
            let done = s.chassis(if on { Chassis::On } else { Chassis::Off }).await;
            s.close().await;
            Ok(done?)
        }
        Path::Pdu(outlets) => {
            for o in outlets {
                set_outlet(o, on, t).await?;
            }
            Ok(())
        }
    }
}

async fn set_outlet(o: &Outlet, on: bool, t: &Timing) -> Result<(), PowerError> {
    let n = o.outlet.num;
    let oid = o.control.control_oid(n).ok_or_else(|| PowerError::BadOid {
        strip: o.strip.clone(),
        outlet: n,
    })?;
    let value = if on { o.control.on } else { o.control.off };
    t.tally.wrote();
    agent(o, t)
        .set_int(&oid, value)
        .await
        .map(drop)
        .map_err(|source| PowerError::Snmp {
            strip: o.strip.clone(),
            outlet: n,
            source,
        })
}

/// Off, `wait`, on: every outlet is off at once before any comes back, so
/// a server with two supplies really loses power.
pub async fn cycle(path: &Path, wait: Duration, t: &Timing) -> Result<(), PowerError> {
    switch(path, false, t).await?;
    tokio::time::sleep(wait).await;
    switch(path, true, t).await
}

/// What [`ensure`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ensured {
    /// The power before: `None` when outlets disagreed.
    pub before: Option<bool>,
    /// Whether anything was switched.
    pub switched: bool,
}

/// Reads the power and switches only what is not `on` already: one read
/// and at most one write per outlet, or one BMC session with one of each.
/// What a controller's reconcile costs.
pub async fn ensure(path: &Path, on: bool, t: &Timing) -> Result<Ensured, PowerError> {
    match path {
        Path::Bmc(b) => {
            let mut s = bmc(b, t)?.session().await?;
            let done = ensure_chassis(&mut s, on, t).await;
            s.close().await;
            done
        }
        Path::Pdu(outlets) => {
            let mut states = Vec::with_capacity(outlets.len());
            for o in outlets {
                states.push(outlet_is_on(o, t).await?);
            }
            let mut switched = false;
            for (o, is_on) in outlets.iter().zip(&states) {
                if *is_on != on {
                    set_outlet(o, on, t).await?;
                    switched = true;
                }
            }
            let first = states.first().copied();
            let agree = states.iter().all(|s| Some(*s) == first);
            Ok(Ensured {
                before: if agree { first } else { None },
                switched,
            })
        }
    }
}

async fn ensure_chassis(
    s: &mut crate::ipmi::Session,
    on: bool,
    t: &Timing,
) -> Result<Ensured, PowerError> {
    t.tally.read();
    let before = s.power_is_on().await?;
    if before != on {
        t.tally.wrote();
        s.chassis(if on { Chassis::On } else { Chassis::Off })
            .await?;
    }
    Ok(Ensured {
        before: Some(before),
        switched: before != on,
    })
}
