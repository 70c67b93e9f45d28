//! The AWS EC2 VMManager backend. Instances carry the tags `clusto:uid`
//! (the object's uid), `clusto:store` and `Name`; RunInstances gets the uid
//! as its ClientToken, so a retried create returns the same instance, and
//! an instance found by its uid tag is adopted instead of created again.
//! Credentials come from the environment (the SDK's usual chain) or from a
//! shared-credentials file the manager names; never from the inventory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeValue, Filter, Instance, InstanceStateName, InstanceType, ResourceType, Tag,
    TagSpecification,
};
use clusto_core::vm::{Desired, Ec2Config, Observed, ObservedState};
use clusto_vm::{Backend, BackendError, BoxFut, CreateRequest, Scope};
use tokio::sync::OnceCell;

pub const UID_TAG: &str = "clusto:uid";
pub const STORE_TAG: &str = "clusto:store";
/// What a manager without `instanceType` (and no `aws.instance-type`) gets.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.micro";

pub struct Ec2 {
    cfg: Ec2Config,
    client: OnceCell<Client>,
    /// EC2 API requests sent.
    calls: AtomicU64,
}

fn err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
) -> BackendError {
    let code = e.code().unwrap_or_default().to_string();
    let msg = match e.message() {
        Some(m) => format!("{code}: {m}"),
        None => DisplayErrorContext(&e).to_string(),
    };
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

fn observe(i: &Instance, region: &str) -> Option<Observed> {
    let id = i.instance_id()?.to_string();
    let tag = |k: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let state = match i.state().and_then(|s| s.name()) {
        Some(InstanceStateName::Running) => ObservedState::Running,
        Some(InstanceStateName::Stopped) => ObservedState::Stopped,
        Some(InstanceStateName::Terminated) => ObservedState::Terminated,
        Some(s) => ObservedState::Transitional(s.as_str().to_string()),
        None => ObservedState::Transitional("unknown".into()),
    };
    let addresses = [i.private_ip_address(), i.public_ip_address()]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    Some(Observed {
        name: tag("Name").unwrap_or_else(|| id.clone()),
        uid: tag(UID_TAG),
        backend_id: id,
        state,
        cpus: None,
        memory_mib: None,
        instance_type: i.instance_type().map(|t| t.as_str().to_string()),
        host: Some(region.to_string()),
        addresses,
    })
}

fn with_state(o: &Observed, s: Option<&InstanceStateName>) -> Observed {
    let mut o = o.clone();
    o.state = match s {
        Some(InstanceStateName::Running) => ObservedState::Running,
        Some(InstanceStateName::Stopped) => ObservedState::Stopped,
        Some(InstanceStateName::Terminated) => ObservedState::Terminated,
        Some(s) => ObservedState::Transitional(s.as_str().to_string()),
        None => o.state,
    };
    o
}

impl Ec2 {
    pub fn new(cfg: Ec2Config) -> Ec2 {
        Ec2 {
            cfg,
            client: OnceCell::new(),
            calls: AtomicU64::new(0),
        }
    }

    pub async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.cfg.region.clone()))
                    .http_client(http);
                if let Some(e) = &self.cfg.endpoint {
                    loader = loader.endpoint_url(e);
                }
                if let Some(f) = &self.cfg.credentials_file {
                    let files = aws_runtime::env_config::file::EnvConfigFiles::builder()
                        .with_file(
                            aws_runtime::env_config::file::EnvConfigFileKind::Credentials,
                            f,
                        )
                        .build();
                    loader = loader.profile_files(files);
                }
                if let Some(p) = &self.cfg.profile {
                    loader = loader.profile_name(p);
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Every instance of this store (terminated ones included: they stay
    /// visible for a while, as on AWS).
    pub async fn list_all(&self, store_uid: &str) -> Result<Vec<Observed>, BackendError> {
        let c = self.client().await;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.count();
            let r = c
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(format!("tag:{STORE_TAG}"))
                        .values(store_uid)
                        .build(),
                )
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(err)?;
            for res in r.reservations() {
                out.extend(
                    res.instances()
                        .iter()
                        .filter_map(|i| observe(i, &self.cfg.region)),
                );
            }
            match r.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
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
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let mut req = self
            .client()
            .await
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(itype.as_str()))
            .min_count(1)
            .max_count(1)
            // ClientToken: at most 64 ASCII characters; the uid is 36.
            .client_token(uid)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(tag("Name", &vm.name))
                    .tags(tag(UID_TAG, uid))
                    .tags(tag(STORE_TAG, store_uid))
                    .build(),
            );
        if let Some(s) = vm.attrs.get("aws.subnet") {
            req = req.subnet_id(s);
        }
        if let Some(k) = vm.attrs.get("aws.key-name") {
            req = req.key_name(k);
        }
        if let Some(g) = vm.attrs.get("aws.security-group") {
            req = req.security_group_ids(g);
        }
        self.count();
        let r = req.send().await.map_err(err)?;
        r.instances()
            .first()
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
            self.count();
            let r = self
                .client()
                .await
                .start_instances()
                .instance_ids(&vm.backend_id)
                .send()
                .await
                .map_err(err)?;
            let s = r
                .starting_instances()
                .first()
                .and_then(|c| c.current_state())
                .and_then(|s| s.name());
            Ok(with_state(vm, s))
        })
    }

    fn stop<'a>(&'a self, _scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, Observed> {
        Box::pin(async move {
            self.count();
            let r = self
                .client()
                .await
                .stop_instances()
                .instance_ids(&vm.backend_id)
                .send()
                .await
                .map_err(err)?;
            let s = r
                .stopping_instances()
                .first()
                .and_then(|c| c.current_state())
                .and_then(|s| s.name());
            Ok(with_state(vm, s))
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
            self.count();
            self.client()
                .await
                .modify_instance_attribute()
                .instance_id(&vm.backend_id)
                .instance_type(AttributeValue::builder().value(&t).build())
                .send()
                .await
                .map_err(err)?;
            let mut o = vm.clone();
            o.instance_type = Some(t);
            Ok(o)
        })
    }

    fn destroy<'a>(&'a self, _scope: &'a Scope, vm: &'a Observed) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.count();
            match self
                .client()
                .await
                .terminate_instances()
                .instance_ids(&vm.backend_id)
                .send()
                .await
                .map_err(err)
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
