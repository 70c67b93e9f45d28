//! The AWS EC2 VMManager backend. Instances carry the tags `clusto:uid`
//! (the object's uid), `clusto:store` and `Name`; RunInstances gets the uid
//! as its ClientToken, so a retried create returns the same instance, and
//! an instance found by its uid tag is adopted instead of created again.
//! Credentials come from the environment, a shared-credentials file the
//! manager names, or the instance role; never from the inventory.
//!
//! The EC2 Query API is called directly ([`api`]: SigV4-signed form posts,
//! XML answers): the handful of actions below did not justify the AWS SDK,
//! which was most of a cold build.

pub mod api;
pub mod credentials;
mod imds;
pub mod sigv4;
pub mod xml;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clusto_core::vm::{Desired, Ec2Config, Observed, ObservedState};
use clusto_vm::{Backend, BackendError, BoxFut, CreateRequest, Scope};
use tokio::sync::OnceCell;

use api::{Api, ApiError};
use xml::Node;

pub const UID_TAG: &str = "clusto:uid";
pub const STORE_TAG: &str = "clusto:store";
/// What a manager without `instanceType` (and no `aws.instance-type`) gets.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";

pub struct Ec2 {
    cfg: Ec2Config,
    api: OnceCell<Result<Api, String>>,
    /// EC2 API requests sent.
    calls: AtomicU64,
}

fn err(e: ApiError) -> BackendError {
    match e {
        ApiError::Aws { code, message } => {
            let msg = format!("{code}: {message}");
            if code.ends_with(".NotFound") {
                BackendError::NotFound(msg)
            } else if code.starts_with("Invalid")
                || code.starts_with("Unsupported")
                || code == "UnauthorizedOperation"
                || code == "AuthFailure"
            {
                BackendError::Refused(msg)
            } else {
                BackendError::Transient(msg)
            }
        }
        ApiError::Credentials(m) => BackendError::Refused(format!("AWS credentials: {m}")),
        e => BackendError::Transient(e.to_string()),
    }
}

fn state(name: Option<&str>) -> ObservedState {
    match name {
        Some("running") => ObservedState::Running,
        Some("stopped") => ObservedState::Stopped,
        Some("terminated") => ObservedState::Terminated,
        Some(s) => ObservedState::Transitional(s.to_string()),
        None => ObservedState::Transitional("unknown".into()),
    }
}

/// An `instancesSet` item as the controller sees it.
pub fn observe(i: &Node, region: &str) -> Option<Observed> {
    let id = i.text_at(&["instanceId"])?.to_string();
    let tag = |k: &str| {
        i.items(&["tagSet"])
            .find(|t| t.text_at(&["key"]) == Some(k))
            .map(|t| t.text_at(&["value"]).unwrap_or_default().to_string())
    };
    let addresses = [i.text_at(&["privateIpAddress"]), i.text_at(&["ipAddress"])]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    Some(Observed {
        name: tag("Name").unwrap_or_else(|| id.clone()),
        uid: tag(UID_TAG),
        backend_id: id,
        state: state(i.text_at(&["instanceState", "name"])),
        cpus: None,
        memory_mib: None,
        instance_type: i.text_at(&["instanceType"]).map(str::to_string),
        host: Some(region.to_string()),
        addresses,
    })
}

/// The state a Start/StopInstances answer reports for the instance.
fn with_state(o: &Observed, answer: &Node) -> Observed {
    let mut o = o.clone();
    if let Some(s) = answer
        .items(&["instancesSet"])
        .next()
        .and_then(|i| i.text_at(&["currentState", "name"]))
    {
        o.state = state(Some(s));
    }
    o
}

/// The instances of a DescribeInstances answer.
pub fn instances(answer: &Node) -> impl Iterator<Item = &Node> {
    answer
        .items(&["reservationSet"])
        .flat_map(|r| r.items(&["instancesSet"]))
}

fn p(k: impl Into<String>, v: impl Into<String>) -> (String, String) {
    (k.into(), v.into())
}

impl Ec2 {
    pub fn new(cfg: Ec2Config) -> Ec2 {
        Ec2 {
            cfg,
            api: OnceCell::new(),
            calls: AtomicU64::new(0),
        }
    }

    async fn call(&self, action: &str, params: &[(String, String)]) -> Result<Node, BackendError> {
        let api = self
            .api
            .get_or_init(|| async {
                Api::new(
                    &self.cfg.region,
                    self.cfg.endpoint.as_deref(),
                    self.cfg.credentials_file.as_deref(),
                    self.cfg.profile.as_deref(),
                )
                .map_err(|e| e.to_string())
            })
            .await
            .as_ref()
            .map_err(|e| BackendError::Refused(e.clone()))?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        api.call(action, params).await.map_err(err)
    }

    /// Any Query API action, for tools and tests acting out of band.
    pub async fn query(&self, action: &str, params: &[(&str, &str)]) -> Result<Node, BackendError> {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| p(*k, *v)).collect();
        self.call(action, &params).await
    }

    /// Every instance of this store (terminated ones included: they stay
    /// visible for a while, as on AWS).
    pub async fn list_all(&self, store_uid: &str) -> Result<Vec<Observed>, BackendError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut params = vec![
                p("Filter.1.Name", format!("tag:{STORE_TAG}")),
                p("Filter.1.Value.1", store_uid),
                p("MaxResults", "1000"),
            ];
            if let Some(t) = token.take() {
                params.push(p("NextToken", t));
            }
            let r = self.call("DescribeInstances", &params).await?;
            out.extend(instances(&r).filter_map(|i| observe(i, &self.cfg.region)));
            match r.text_at(&["nextToken"]) {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    async fn run(
        &self,
        vm: &Desired,
        uid: &str,
        store_uid: &str,
    ) -> Result<Observed, BackendError> {
        let image = vm
            .image
            .clone()
            .or_else(|| vm.attrs.get("aws.ami").cloned())
            .ok_or_else(|| {
                BackendError::Refused("no image: set spec.image or the aws.ami attribute".into())
            })?;
        let itype = vm
            .instance_type
            .clone()
            .or_else(|| vm.attrs.get("aws.instance-type").cloned())
            .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.into());
        let mut params = vec![
            p("ImageId", image),
            p("InstanceType", itype),
            p("MinCount", "1"),
            p("MaxCount", "1"),
            // ClientToken: at most 64 ASCII characters; the uid is 36.
            p("ClientToken", uid),
            p("TagSpecification.1.ResourceType", "instance"),
        ];
        for (n, (k, v)) in [
            ("Name", vm.name.as_str()),
            (UID_TAG, uid),
            (STORE_TAG, store_uid),
        ]
        .into_iter()
        .enumerate()
        {
            params.push(p(format!("TagSpecification.1.Tag.{}.Key", n + 1), k));
            params.push(p(format!("TagSpecification.1.Tag.{}.Value", n + 1), v));
        }
        if let Some(s) = vm.attrs.get("aws.subnet") {
            params.push(p("SubnetId", s));
        }
        if let Some(k) = vm.attrs.get("aws.key-name") {
            params.push(p("KeyName", k));
        }
        if let Some(g) = vm.attrs.get("aws.security-group") {
            params.push(p("SecurityGroupId.1", g));
        }
        let r = self.call("RunInstances", &params).await?;
        r.items(&["instancesSet"])
            .next()
            .and_then(|i| observe(i, &self.cfg.region))
            .ok_or_else(|| BackendError::Transient("RunInstances returned no instance".into()))
    }
}

impl Backend for Ec2 {
    fn list<'a>(
        &'a self,
        _scope: &'a Scope,
        store_uid: &'a str,
        _want: &'a [String],
    ) -> BoxFut<'a, Vec<Observed>> {
        Box::pin(self.list_all(store_uid))
    }

    fn requests(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn create<'a>(&'a self, _scope: &'a Scope, req: CreateRequest<'a>) -> BoxFut<'a, Observed> {
        Box::pin(async move {
            // RunInstances always starts the instance; a VM asked to be
            // Stopped is stopped by the next reconcile.
            self.run(req.vm, req.uid, req.store_uid).await
        })
    }

    fn start<'a>(&'a self, _scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed> {
        Box::pin(async move {
            let r = self
                .call("StartInstances", &[p("InstanceId.1", &vm.backend_id)])
                .await?;
            Ok(with_state(vm, &r))
        })
    }

    fn stop<'a>(&'a self, _scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed> {
        Box::pin(async move {
            let r = self
                .call("StopInstances", &[p("InstanceId.1", &vm.backend_id)])
                .await?;
            Ok(with_state(vm, &r))
        })
    }

    fn resize<'a>(
        &'a self,
        _scope: &'a Scope,
        want: &'a Desired,
        vm: &'a Observed,
    ) -> BoxFut<'a, Observed> {
        Box::pin(async move {
            let Some(t) = want.instance_type.clone() else {
                return Ok(vm.clone());
            };
            if vm.state != ObservedState::Stopped {
                return Err(BackendError::Refused(format!(
                    "instanceType {t} needs {} stopped first (powerState: Stopped, then Running)",
                    vm.backend_id
                )));
            }
            self.call(
                "ModifyInstanceAttribute",
                &[p("InstanceId", &vm.backend_id), p("InstanceType.Value", &t)],
            )
            .await?;
            let mut o = vm.clone();
            o.instance_type = Some(t);
            Ok(o)
        })
    }

    fn destroy<'a>(&'a self, _scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, ()> {
        Box::pin(async move {
            match self
                .call("TerminateInstances", &[p("InstanceId.1", &vm.backend_id)])
                .await
            {
                Ok(_) | Err(BackendError::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn console(&self, scope: &Scope, name: &str, backend_id: Option<&str>) -> String {
        match backend_id {
            Some(id) => format!(
                "aws ec2 get-console-output --region {} --instance-id {id} --output text",
                scope.uri
            ),
            None => format!("# {name} has no instance yet"),
        }
    }
}

pub fn shared(cfg: Ec2Config) -> Arc<Ec2> {
    Arc::new(Ec2::new(cfg))
}
