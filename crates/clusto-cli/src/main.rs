//! `clusto`: the command line for the inventory.

mod commands;
mod declarative;
mod import;
mod oob;
mod output;
mod remote;
mod views;
mod vm;

use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use output::Format;

const AFTER_HELP: &str = "\
Examples:
  clusto create datacenter dc1
  clusto create rack r1 --in dc1
  clusto create server s1 --in r1 --ru 10
  clusto create ipmanager net1 --set cidr=10.0.0.0/24 --set gateway=10.0.0.1
  clusto ip allocate net1 s1 --osport eth0 --port nic-eth:1
  clusto attr set s1 system.memory 4096          (KEY.SUBKEY, or --subkey)
  clusto query 'kind:server and in:dc1 and not attr:system.disk=0'
  clusto get servers -o json

The store is SQLite by default; point --store (or CLUSTO_STORE) at
sqlite://PATH or postgres://USER@HOST/DB. Without database credentials,
reads, plan and apply also work through `clusto serve`:
  CLUSTO_TOKEN=… clusto --server https://clusto.example:8443 get servers";

#[derive(Parser, Debug)]
#[command(name = "clusto", version, about = "Cluster inventory: datacenters, racks, servers, pools, addresses", after_help = AFTER_HELP)]
pub struct Cli {
    /// Inventory store: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "CLUSTO_STORE")]
    store: Option<String>,
    /// Use a `clusto serve` instead of the database (reads, plan and apply):
    /// http://HOST:PORT or https://HOST:PORT (other roots than the system's:
    /// SSL_CERT_FILE).
    #[arg(
        long,
        global = true,
        env = "CLUSTO_SERVER",
        value_name = "URL",
        conflicts_with = "store"
    )]
    server: Option<String>,
    /// Bearer token for --server (prefer CLUSTO_TOKEN: a flag shows in `ps`).
    #[arg(
        long,
        global = true,
        env = "CLUSTO_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    token: Option<String>,
    /// Output format for reads.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Message recorded with the revision a write makes.
    #[arg(short = 'm', long = "message", global = true)]
    message: Option<String>,
    /// Who the revision a write makes is recorded as [default: $CLUSTO_USER, $USER, else the
    /// OS account].
    #[arg(long, global = true, value_name = "NAME")]
    user: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct At {
    /// Read the inventory as it was at this revision.
    #[arg(long)]
    at: Option<i64>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an entity: clusto create KIND NAME [--driver D] [--in CONTAINER [--ru N[-M]]] [--set FIELD=VALUE]…
    #[command(
        after_help = "Settings by kind: IPManager cidr, gateway, reserved (a,b-c); NameManager basename, digits, next;\nRack minU, maxU; Pool type (plain|exclusive|unique), group; Driver base, rackUnits, ports (nic-eth=2,pwr-nema-5=1)."
    )]
    Create {
        /// Kind, case-insensitive, singular or plural (server, rack, ipmanager, …).
        kind: String,
        name: String,
        /// Driver (a built-in like basicserver, or a user-defined Driver) [default: the kind's basic driver].
        #[arg(long)]
        driver: Option<String>,
        /// Container to insert the new entity into.
        #[arg(long = "in")]
        container: Option<String>,
        /// Rack unit(s) when the container is a rack: 12 or 12-13.
        #[arg(long)]
        ru: Option<String>,
        /// Kind-specific setting, FIELD=VALUE; repeatable.
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        set: Vec<String>,
    },
    /// List entities of a kind (or all), or show one.
    Get {
        /// Kind (server, racks, …) or `all`.
        kind: String,
        name: Option<String>,
        #[command(flatten)]
        at: At,
        /// Include hidden (`_`) attributes.
        #[arg(long)]
        show_hidden: bool,
    },
    /// Everything about one entity: placement, pools, ports, addresses, attributes.
    Describe {
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// Delete entities (their cables, addresses and memberships go with them).
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Rename an entity; references to it follow.
    Rename { old: String, new: String },
    /// Attributes: add, set, get, del.
    Attr {
        #[command(subcommand)]
        op: AttrOp,
    },
    /// Put NAME into CONTAINER (a rack needs --ru).
    Insert {
        container: String,
        name: String,
        /// Rack unit(s) when the container is a rack: 12 or 12-13.
        #[arg(long)]
        ru: Option<String>,
    },
    /// Take NAME out of CONTAINER.
    Remove { container: String, name: String },
    /// Cable two ports: clusto connect s1:nic-eth:1 sw1:nic-eth:10
    Connect { a: String, b: String },
    /// Remove the cable on a port, from either end.
    Disconnect { port: String },
    /// Ports of a device and port attributes.
    Port {
        #[command(subcommand)]
        op: PortOp,
    },
    /// Where a thing is: rack units, switch ports, containers.
    Locate {
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// IP addresses from IPManagers.
    Ip {
        #[command(subcommand)]
        op: IpOp,
    },
    /// Names from NameManagers.
    Name {
        #[command(subcommand)]
        op: NameOp,
    },
    /// Pool membership queries.
    Pool {
        #[command(subcommand)]
        op: PoolOp,
    },
    /// What a container holds (direct, or --recursive).
    Contents {
        name: String,
        /// All descendants, not just what it holds directly.
        #[arg(long, short)]
        recursive: bool,
        #[command(flatten)]
        at: At,
    },
    /// What holds a thing (direct, or --recursive for all ancestors).
    Parents {
        name: String,
        /// All ancestors up to the top, nearest first.
        #[arg(long, short)]
        recursive: bool,
        #[command(flatten)]
        at: At,
    },
    /// Run a query: name:GLOB driver:D kind:K attr:K[.S][=V] in:NAME connected-to:NAME, not/and/or, ( ).
    Query {
        expr: String,
        #[command(flatten)]
        at: At,
        /// Print the SQL instead of running it.
        #[arg(long)]
        explain: bool,
    },
    /// Revisions, newest first, with what changed; with NAME only those touching it.
    /// Printed as read, a page at a time.
    History {
        name: Option<String>,
        /// Show at most this many revisions; 0 shows all.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only revisions after this one (e.g. the last one a script saw).
        #[arg(long, value_name = "REV")]
        since: Option<i64>,
    },
    /// Show what applying manifests would change (Terraform-style): + create, ~ update, - delete.
    #[command(
        visible_alias = "diff",
        after_help = "Exit status with --detailed-exitcode: 0 no changes, 1 error, 2 changes.\n\nCI example:\n  clusto plan -f manifests/ --detailed-exitcode; test $? -ne 1"
    )]
    Plan {
        #[command(flatten)]
        manifests: declarative::ManifestArgs,
        /// Exit 2 when there are changes (0 none, 1 error).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan; `clusto apply FILE` applies exactly it.
        #[arg(long)]
        out: Option<String>,
    },
    /// Apply manifests (or a saved plan) in one transaction: one revision, or none when nothing changes.
    Apply {
        /// A plan file written by `clusto plan --out`.
        plan: Option<String>,
        #[command(flatten)]
        manifests: Option<declarative::ManifestArgs>,
        /// Only show the plan.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every invariant over the whole store (or as of --at REV): unique
    /// live names, one holder per address and each inside its network, rack
    /// units, pool rules, containment cycles, dangling rows, one cable per
    /// port, contiguous revisions. Prints each violation with the objects
    /// involved; exit status 1 if there is any. Run it after an incident.
    Fsck {
        #[command(flatten)]
        at: At,
    },
    /// Write manifests for the inventory (or the part a query selects) to stdout.
    Export {
        query: Option<String>,
        #[command(flatten)]
        at: At,
        /// `manifest` (for `clusto apply`), or `crd`: custom resources for
        /// `kubectl apply` / GitOps, each with `metadata.namespace`; the
        /// controller (`clusto controller --kube`) then syncs them as apply
        /// set `k8s:<namespace>`.
        #[arg(long, value_enum, default_value_t = ExportFormat::Manifest)]
        format: ExportFormat,
        /// The namespace of the custom resources (with `--format crd`).
        #[arg(long, value_name = "NS", default_value = "default")]
        namespace: String,
    },
    /// Write the JSON Schemas of every manifest kind (to --out DIR, or stdout).
    Schema {
        /// Write one JSON Schema file per kind (and `clusto.json` for any
        /// kind) into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        out: Option<String>,
        /// Also write the CustomResourceDefinitions (one YAML file per kind)
        /// into this directory, e.g. `charts/clusto/crds`.
        #[arg(long, value_name = "DIR")]
        crds: Option<String>,
    },
    /// Out-of-band power of physical servers: through the BMC (IPMI over LAN) or the PDU outlets
    /// their power ports are cabled to (SNMP).
    #[command(after_help = POWER_HELP)]
    Power {
        #[command(subcommand)]
        op: PowerOp,
    },
    /// Open a server's serial console through the console server its console-serial port is cabled
    /// to, with the command that server's driver declares (login name: --user, else $USER); with
    /// no console cable, serial over LAN through its BMC (ipmitool sol activate).
    #[command(
        after_help = "Built-in: opengearcm4148 runs `ssh -p {3000+port} -l {user} {address}`.\nDeclare others as a Driver of base ConsoleServer with spec.console.command.\n\nExamples:\n  clusto console s1\n  clusto console s1 --print --user admin"
    )]
    Console {
        name: String,
        /// Print the command instead of running it (always, when stdout is not a terminal).
        #[arg(long)]
        print: bool,
    },
    /// Virtual machines.
    Vm {
        #[command(subcommand)]
        op: VmOp,
    },
    /// Racks built from layouts.
    Rack {
        #[command(subcommand)]
        op: RackOp,
    },
    /// Serve the inventory over HTTP: a Kubernetes-shaped API with watch,
    /// bearer tokens, plan and apply, plus /healthz, /readyz and /metrics.
    #[command(
        after_help = "Paths (all under /apis/clusto.dev/v1alpha1):\n  GET  /{plural}                 list (?query=EXPR, ?limit=N&continue=TOKEN, ?resourceVersion=REV)\n  GET  /{plural}?watch=true      ADDED/MODIFIED/DELETED/BOOKMARK events from ?resourceVersion=REV on\n  GET  /{plural}/NAME            one object, as `clusto get KIND NAME -o json` prints it\n  GET  /{plural}/NAME/attributes ?merged=true adds the containers' attributes, each with its source\n  GET  /{plural}/NAME/history    revisions that touched it (?limit=N, ?since=REV)\n  GET  /revisions                the revision log (?limit=N)\n  POST /plan, /apply             manifests in the body (?applySet=, ?prune=true, ?dryRun=All)\nPlurals are lower-case: servers, racks, pools, ipmanagers, virtualmachines, ...\n\nTokens: --token-file lines `token,user,role`. viewer reads and plans; editor also applies;\nadmin also prunes and forces conflicts. Send `Authorization: Bearer TOKEN`.\n\nExample:\n  clusto serve --listen 127.0.0.1:8080 --token-file /etc/clusto/tokens --anonymous-read\n  clusto serve --listen 0.0.0.0:8443 --token-file /etc/clusto/tokens --tls-cert tls.crt --tls-key tls.key\n  curl -H 'Authorization: Bearer $T' http://127.0.0.1:8080/apis/clusto.dev/v1alpha1/servers?limit=10"
    )]
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Bearer tokens: lines `token,user,role` (role viewer, editor or admin; tokens of 16+ characters).
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Allow reads (GET, plan, dry runs) without a token.
        #[arg(long)]
        anonymous_read: bool,
        /// Seconds between BOOKMARK events on an idle watch.
        #[arg(long, default_value_t = 10)]
        bookmark_seconds: u64,
        /// How many revisions back a watch may start; older answers 410 Gone (list again).
        #[arg(long, default_value_t = 10_000)]
        watch_window: i64,
        /// Serve HTTPS with this certificate (PEM: the server's first, then intermediates).
        /// Read once at start; restart to pick up a renewed one.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
    },
    /// SNMP trap receiver: switches' MAC notifications become servers placed by their rack's layout.
    #[command(
        after_help = "A trap is acted on when its source (a v1 trap's agent-addr) is an address a device holds,
that device's merged snmp.discovery is true, and, for v1/v2c, its merged snmp.community (when
set) matches. Each learnt MAC on switch port N (nic-eth:N): a device cabled there gets its NIC
mac and bootstrap.mac if missing (a different MAC is kept and noted as discovery.observed-mac);
an empty port with a layout slot gets a new server named by the layout's nameManager (default
servernames), placed, cabled, with the slot's addresses. One revision per trap, none when
nothing changes. CISCO-MAC-NOTIFICATION-MIB; v1, v2c traps and INFORMs, v3 (--v3-users)."
    )]
    Snmptrapd {
        /// UDP address to receive traps on.
        #[arg(long, default_value = "0.0.0.0:162")]
        listen: std::net::SocketAddr,
        /// Serve HTTP here, e.g. 127.0.0.1:9469: Prometheus/OpenMetrics at
        /// /metrics, liveness at /healthz, readiness at /readyz.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// SNMPv3 users, one per line: `NAME SHA|SHA-256 AUTHPASS [AES PRIVPASS]` (net-snmp's
        /// createUser words). Kept out of the inventory; without it v3 traps are dropped.
        #[arg(long)]
        v3_users: Option<std::path::PathBuf>,
        /// This receiver's SNMPv3 engine ID in hex (senders of v3 INFORMs discover it)
        /// [default: derived from the host name].
        #[arg(long)]
        engine_id: Option<String>,
        /// Drop root to this account (NAME, UID or UID:GID) once port 162 is bound. A SQLite
        /// store's directory must be writable by it.
        #[arg(long, value_name = "ACCOUNT")]
        user: Option<String>,
    },
    /// DHCPv4 responder: answers only hosts whose NIC MAC the inventory binds to an address.
    #[command(
        after_help = "DHCP is enabled per host, rack, pool or datacenter with the attribute dhcp.enabled;\noptions come from merged dhcp.* attributes: lease-time, domain-name, dns-servers, ntp-servers,\ntftp_server, tftp_filename, pxelinux-configfile|pathprefix|reboottime, option-N (text, IPs or hex:…)."
    )]
    Dhcpd {
        /// UDP address to answer on (binding port 67 needs root or CAP_NET_BIND_SERVICE).
        #[arg(long, default_value = "0.0.0.0:67")]
        listen: std::net::SocketAddr,
        /// Answer only on this interface.
        #[arg(long)]
        interface: Option<String>,
        /// This server's address (option 54); defaults to the --listen address when specific.
        #[arg(long)]
        server_id: Option<std::net::Ipv4Addr>,
        /// Serve HTTP here, e.g. 127.0.0.1:9467: Prometheus/OpenMetrics at
        /// /metrics, liveness at /healthz, readiness at /readyz.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// How often to look for new revisions, in milliseconds.
        #[arg(long, default_value_t = 250)]
        refresh_ms: u64,
        /// Learn MACs: a DISCOVER from a device's bootstrap.mac records ipmi-mac on NIC 1 when
        /// its vendor class names a BMC (ipmi, bmc, idrac, ilo), else mac on NIC 1.
        #[arg(long)]
        learn_ipmi: bool,
        /// Drop root to this account (NAME, UID or UID:GID) once port 67 is bound. A SQLite
        /// store's directory must be writable by it.
        #[arg(long, value_name = "ACCOUNT")]
        user: Option<String>,
    },
    /// Reconcile VirtualMachine objects with their VMManager's backend (libvirt, EC2).
    #[command(
        after_help = "Level-triggered: every store revision, every due retry and every resync (default 5 min)\nreconciles each VM to its spec, and status (phase, host, backendId, powerState, conditions,\nobservedRevision, lastError) is written back. Only the holder of the store's lease acts;\nstart several for failover. Stops cleanly on SIGINT/SIGTERM."
    )]
    Controller {
        /// Serve HTTP here, e.g. 127.0.0.1:9468: Prometheus/OpenMetrics at
        /// /metrics, liveness at /healthz, readiness at /readyz.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
        /// Seconds between full resyncs (drift detection).
        #[arg(long, default_value_t = 300)]
        resync: u64,
        /// Reconciles per second across all VMs.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Backend requests in flight at once.
        #[arg(long, default_value_t = 16)]
        workers: usize,
        /// How often to look for new revisions, in milliseconds.
        #[arg(long, default_value_t = 250)]
        poll_ms: u64,
        /// Lease time-to-live in seconds (SQLite takeover delay; PostgreSQL frees it at once).
        #[arg(long, default_value_t = 15)]
        lease_ttl: u64,
        /// Exit once every VM is reconciled and nothing is due (for scripts and CI).
        #[arg(long, conflicts_with = "kube")]
        once: bool,
        #[command(flatten)]
        kube: KubeArgs,
    },
    /// Write manifests for a synthetic datacenter (for benchmarks and demos) to stdout.
    Generate {
        /// Racks in the datacenter, each with a top-of-rack switch.
        #[arg(long, default_value_t = 10)]
        racks: usize,
        /// Servers in each rack, cabled to the rack's switch and addressed from its network.
        #[arg(long, default_value_t = 40)]
        servers_per_rack: usize,
    },
    /// Print shell completions: clusto completions bash > /etc/bash_completion.d/clusto
    Completions { shell: clap_complete::Shell },
    /// Bring an inventory over from another tool, in one revision.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImportFrom {
    /// An original (Digg) clusto database: entities, attributes with their types, racks and
    /// units, datacenters, the three pool kinds, IPManagers and the addresses they handed out,
    /// NameManagers and their counters, ports and cables. Read only; deleted rows are skipped.
    #[command(
        after_help = "Drivers map to kinds (basicserver → Server, exclusive_pool → Pool type exclusive,\nunique_pool → Pool type unique in group unique_pool, ipmanager → IPManager,\nsimpleentitynamemanager → NameManager); other drivers become user-defined Drivers on the base\ntheir type names. What has no equivalent is listed (entity, attribute, why) and left out;\neverything else lands in one revision, or nothing does.\n\nExamples:\n  clusto import clusto sqlite:///var/lib/clusto/clusto.db\n  clusto import clusto mysql://clusto@db/clusto --out manifests/imported/"
    )]
    Clusto {
        /// The original's database: sqlite://PATH, mysql://USER@HOST/DB or postgres://USER@HOST/DB.
        url: String,
        /// Write the manifests here instead (one file per top-level location, other.yaml
        /// for the rest) to review and `clusto apply -f DIR` later.
        #[arg(long, value_name = "DIR")]
        out: Option<String>,
        /// The apply set that owns the imported objects (a later import prunes what the
        /// original no longer has).
        #[arg(long, default_value = "import")]
        apply_set: String,
        /// Replay the original's versions as revisions, each with its user, time and
        /// description, before recording the current state.
        #[arg(long, conflicts_with = "out")]
        with_history: bool,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Manifest,
    Crd,
}

/// `clusto controller --kube`: clusto custom resources synced into the store.
#[derive(clap::Args, Debug, Clone)]
pub struct KubeArgs {
    /// Also sync clusto custom resources (Server, Rack, Pool, … in group
    /// clusto.dev) into the store: each is applied like a manifest of apply
    /// set `k8s:<namespace>`, holds a finalizer until its object is removed,
    /// and gets Synced/Ready conditions and the object's status back. Uses
    /// the in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long)]
    pub kube: bool,
    /// Kubeconfig file to use instead.
    #[arg(long, requires = "kube", value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, requires = "kube", value_name = "NS")]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease `clusto-controller`: of
    /// several replicas only its holder syncs.
    #[arg(
        long,
        requires = "kube",
        env = "POD_NAMESPACE",
        default_value = "default"
    )]
    pub lease_namespace: String,
    /// Seconds the leader holds the Lease without renewing it (a standby
    /// takes over this long after the leader dies).
    #[arg(long, requires = "kube", default_value_t = 15)]
    pub lease_seconds: u64,
}

const POWER_HELP: &str = "\
Paths (from the inventory; `--via` picks one, else the BMC when the server has one):
  bmc  the address the server holds on OS port ipmi; UDP port merged ipmi.port (623); merged
       ipmi.credentials names where USER:PASSWORD is kept (file:PATH or env:NAME); merged
       ipmi.interface auto|lan|lanplus (RMCP+ suites 17 then 3, or IPMI 1.5 MD5/straight)
  pdu  every pwr-* port cabled to a power strip whose driver declares spec.power (built-in
       powertowerxm); SNMP v2c to the strip's first address, community merged snmp.community,
       UDP port merged snmp.port (161)

Examples:
  clusto ip allocate mgmt s1 --osport ipmi && clusto attr set s1 ipmi.credentials file:/etc/clusto/bmc
  clusto power status s1 s2 -o json
  clusto power cycle s1 --via pdu --wait 10";

#[derive(Subcommand, Debug)]
pub enum PowerOp {
    /// Read the power: on, off, or mixed when outlets disagree.
    Status {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        how: PowerHow,
    },
    /// Switch on (every outlet, or the chassis).
    On {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        how: PowerHow,
    },
    /// Switch off (every outlet, or a hard chassis power-down).
    Off {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        how: PowerHow,
    },
    /// Off, wait, on: every outlet goes off before any comes back.
    Cycle {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        how: PowerHow,
        /// Seconds between off and on.
        #[arg(long, default_value_t = 5.0)]
        wait: f64,
    },
}

#[derive(Args, Debug, Clone)]
pub struct PowerHow {
    /// Which path [default: the BMC when the server has one, else its PDU outlets].
    #[arg(long, value_enum)]
    via: Option<ViaArg>,
    /// Seconds to wait for each answer (each request is tried three times).
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ViaArg {
    Bmc,
    Pdu,
}

#[derive(Subcommand, Debug)]
pub enum VmOp {
    /// Where a VM goes (or is pinned) and why: needs versus each host's free capacity.
    Explain {
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// Record a new VM (named by the manager's NameManager unless --name) and place it.
    /// The controller creates it in the backend; this prints the name.
    Create {
        /// The VMManager (libvirt or EC2) that runs it; its NameManager names the VM unless --name.
        #[arg(long)]
        manager: String,
        /// The VM's name instead of the next from the manager's NameManager.
        #[arg(long)]
        name: Option<String>,
        /// MiB of memory.
        #[arg(long, default_value_t = 1024)]
        memory: u64,
        /// GiB of disk.
        #[arg(long, default_value_t = 10)]
        disk: u64,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        cpus: u32,
        /// libvirt volume to clone, or EC2 AMI.
        #[arg(long)]
        image: Option<String>,
        /// EC2 instance type.
        #[arg(long)]
        instance_type: Option<String>,
        /// Pin to this hypervisor.
        #[arg(long)]
        host: Option<String>,
        /// Place on the pinned host even if it does not fit.
        #[arg(long, requires = "host")]
        force: bool,
        /// Record it Stopped (created, not started).
        #[arg(long)]
        stopped: bool,
    },
    /// Ask for the VM to run (the controller starts it).
    Start { name: String },
    /// Ask for the VM to be powered off (the controller stops it).
    Stop { name: String },
    /// Delete a VM: the controller removes its domain or instance, then the object.
    #[command(
        after_help = "A VM the controller never acted on goes at once. Otherwise it shows phase Terminating\nuntil the backend resources are gone. EC2 instances are terminated only when the VM has\nallowTermination: true (in its manifest, or: clusto vm set NAME allowTermination true)."
    )]
    Delete {
        name: String,
        /// Wait until the controller has removed it.
        #[arg(long)]
        wait: bool,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Change one VM setting (cpus, memoryMiB, diskGiB, image, instanceType, allowTermination, host).
    Set {
        name: String,
        field: String,
        value: String,
    },
    /// Open the VM's console (on a terminal), or print the command that does.
    Console { name: String },
    /// VMs with manager, host, phase, power state, backend id and readiness.
    List {
        /// Only this manager's VMs.
        #[arg(long)]
        manager: Option<String>,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Subcommand, Debug)]
pub enum RackOp {
    /// Draw the rack's elevation: units numbered top to bottom, each device
    /// across its units, empty units visible, then what sits at no unit.
    #[command(
        after_help = "A device is mounted on the front unless its attribute rack.face is `rear`,\nand fills the rack's depth unless rack.depth is `half` (so its back shows,\nin [brackets], from the other side):\n  clusto attr set pdu-a rack.face rear\n  clusto attr set patch-1 rack.depth half"
    )]
    Show {
        rack: String,
        /// Draw the rear: devices mounted there, and the backs of full-depth front ones.
        #[arg(long)]
        rear: bool,
        #[command(flatten)]
        at: At,
    },
    /// Place a server as the rack's layout maps SWITCH-PORT: units, NIC 1, power, console.
    AddServer {
        /// The rack; its `layout` setting names the RackLayout that maps ports to slots.
        rack: String,
        /// The switch port the server's NIC 1 is cabled to; picks the layout's slot.
        #[arg(long)]
        switch_port: u32,
        /// The switch, when the layout has more than one.
        #[arg(long)]
        switch: Option<String>,
        /// The server's name: a new server, or one that exists in no rack yet (of the slot's driver).
        /// Without it, the next name from the NameManager (see --name-manager).
        #[arg(long, conflicts_with = "name_manager")]
        name: Option<String>,
        /// Name the new server from this NameManager [default: the layout's
        /// nameManager, else servernames].
        #[arg(long)]
        name_manager: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AttrOp {
    /// Append a row (many rows may share a key).
    Add(AttrWrite),
    /// Replace the one row with exactly this key/subkey/number.
    Set(AttrWrite),
    /// Show attributes (optionally merged from containers).
    Get {
        name: String,
        key: Option<String>,
        /// Only rows with this subkey.
        #[arg(long)]
        subkey: Option<String>,
        /// Only rows with this number.
        #[arg(long)]
        number: Option<i64>,
        /// Include values inherited from racks, pools, datacenters (nearest first).
        #[arg(long)]
        merged: bool,
        /// Include hidden (`_`) attributes.
        #[arg(long)]
        show_hidden: bool,
        #[command(flatten)]
        at: At,
    },
    /// Delete matching rows.
    Del {
        name: String,
        key: String,
        /// Only rows with this value.
        value: Option<String>,
        /// Only rows with this subkey.
        #[arg(long)]
        subkey: Option<String>,
        /// Only rows with this number.
        #[arg(long)]
        number: Option<i64>,
        /// Only rows of this type (string, int, bool, float, ip, datetime, json, ref).
        #[arg(long = "type")]
        value_type: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct AttrWrite {
    pub name: String,
    pub key: String,
    pub value: String,
    /// Subkey of the row (also written KEY.SUBKEY).
    #[arg(long)]
    pub subkey: Option<String>,
    /// A number, or `auto` for the next unused one.
    #[arg(long)]
    pub number: Option<String>,
    /// string, int, bool, float, ip, datetime, json or ref. Without it,
    /// plain integers, decimals and true/false are typed, the rest are strings.
    #[arg(long = "type")]
    pub value_type: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum PortOp {
    /// List a device's ports.
    List {
        name: String,
        /// Only ports with no cable.
        #[arg(long, conflicts_with = "connected")]
        free: bool,
        /// Only cabled ports.
        #[arg(long)]
        connected: bool,
        #[command(flatten)]
        at: At,
    },
    /// Set a port attribute: clusto port set s1 nic-eth:1 mac 00:11:22:33:44:55
    Set {
        name: String,
        port: String,
        key: String,
        value: String,
    },
    /// Remove a port attribute.
    Unset {
        name: String,
        port: String,
        key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum IpOp {
    /// Give NAME an address from MANAGER (the next free one, or --address).
    Allocate {
        manager: String,
        name: String,
        /// This address instead of the next free one after the manager's cursor.
        #[arg(long)]
        address: Option<String>,
        /// OS interface the address is configured on (eth0).
        #[arg(long)]
        osport: Option<String>,
        /// NIC port the address is bound to (nic-eth:1).
        #[arg(long)]
        port: Option<String>,
    },
    /// Release one address of NAME, or all of them.
    Release {
        name: String,
        address: Option<String>,
    },
    /// Addresses handed out by MANAGER.
    List {
        manager: String,
        #[command(flatten)]
        at: At,
    },
}

#[derive(Subcommand, Debug)]
pub enum NameOp {
    /// Create a new entity named by MANAGER; prints the name.
    Allocate {
        manager: String,
        /// Kind of the new entity (server, rack, vm, …).
        #[arg(long)]
        kind: String,
        /// Driver of the new entity [default: the kind's basic driver].
        #[arg(long)]
        driver: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PoolOp {
    /// Things in every listed pool (recursively).
    Members {
        #[arg(required = true)]
        pools: Vec<String>,
        #[command(flatten)]
        at: At,
    },
}

/// A command whose reader went away (`clusto get server -o name | head -3`)
/// ends quietly, as `ls` and `grep` do, instead of panicking inside
/// `println!`: Rust ignores SIGPIPE by default, so restore the default
/// action. Daemons keep ignoring it: a scraper hanging up must not kill them.
fn die_quietly_on_closed_pipe(cli: &Cli) {
    if matches!(
        cli.command,
        Command::Dhcpd { .. }
            | Command::Snmptrapd { .. }
            | Command::Controller { .. }
            | Command::Serve { .. }
    ) {
        return;
    }
    // SAFETY: called once at start, before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Commands (and `group op` pairs) that only read: `-m` and `--user` name
/// a revision, so they mean nothing here.
const READS: &[&str] = &[
    "get",
    "describe",
    "locate",
    "contents",
    "parents",
    "query",
    "history",
    "plan",
    "fsck",
    "pool",
    "attr get",
    "port list",
    "ip list",
    "rack show",
    "rack empty",
    "vm explain",
    "vm list",
    "vm console",
    "power",
];
/// Commands that write nothing but act as someone (`--user`).
const ACTS_AS_USER: &[&str] = &["console"];
/// Commands that print nothing `-o` could shape.
const NO_OUTPUT: &[&str] = &[
    "create",
    "delete",
    "rename",
    "insert",
    "remove",
    "connect",
    "disconnect",
    "export",
];
/// Commands that need no store at all.
const NO_STORE: &[&str] = &["schema", "generate", "completions"];
/// Daemons record their own revisions and print logs, not tables.
const DAEMONS: &[&str] = &["serve", "snmptrapd", "dhcpd", "controller", "vm controller"];

/// The global flags that mean nothing on a command, hidden from its help.
/// They are still accepted there, so scripts that pass `--store` to every
/// command keep working.
fn meaningless(path: &str) -> Vec<&'static str> {
    let is = |set: &[&str]| {
        set.iter()
            .any(|c| path == *c || path.starts_with(&format!("{c} ")))
    };
    let mut hide = Vec::new();
    if !is(remote::COMMANDS) {
        hide.extend(["server", "token"]);
    }
    if is(NO_STORE) {
        hide.extend(["store", "output", "message", "user"]);
    } else if is(DAEMONS) {
        hide.extend(["output", "message", "user"]);
    } else if is(READS) {
        hide.extend(["message", "user"]);
    } else if is(ACTS_AS_USER) {
        hide.push("message");
    } else if is(NO_OUTPUT) {
        hide.push("output");
    }
    hide
}

/// The command line, with each command's help showing only the global
/// flags that mean something there.
fn command() -> clap::Command {
    // A subcommand that defines an argument with a global's id does not
    // receive the global, so a hidden copy replaces it there.
    fn hide_in(cmd: clap::Command, path: &str, globals: &[clap::Arg]) -> clap::Command {
        let mut cmd = cmd;
        if !path.is_empty() {
            for flag in meaningless(path) {
                // A command that gives a global's name its own meaning keeps it.
                if cmd.get_arguments().any(|a| a.get_id() == flag) {
                    continue;
                }
                if let Some(a) = globals.iter().find(|a| a.get_id() == flag) {
                    cmd = cmd.arg(a.clone().hide(true));
                }
            }
        }
        let subs: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for sub in subs {
            let sub_path = if path.is_empty() {
                sub.clone()
            } else {
                format!("{path} {sub}")
            };
            cmd = cmd.mut_subcommand(&sub, |s| hide_in(s, &sub_path, globals));
        }
        cmd
    }
    let cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    hide_in(cmd, "", &globals)
}

fn parse() -> Result<Cli, clap::Error> {
    let matches = command().try_get_matches()?;
    <Cli as clap::FromArgMatches>::from_arg_matches(&matches)
}

fn main() -> ExitCode {
    // Usage errors exit 1 like every other error; --help and --version exit 0.
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    die_quietly_on_closed_pipe(&cli);
    if let Some(user) = &cli.user {
        clusto_store::RevisionMeta::set_process_user(user.clone());
    }
    if let Command::Completions { shell } = &cli.command {
        clap_complete::generate(*shell, &mut command(), "clusto", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Generate {
        racks,
        servers_per_rack,
    } = &cli.command
    {
        print!(
            "{}",
            clusto_manifest::generate::datacenter(*racks, *servers_per_rack)
        );
        return ExitCode::SUCCESS;
    }
    if let Command::Schema { out, crds } = &cli.command {
        return match declarative::schema_cmd(out.as_deref(), crds.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLUSTO_LOG").unwrap_or_else(|_| {
                // A daemon says what it does; a command only what went wrong.
                if matches!(
                    cli.command,
                    Command::Controller { .. } | Command::Serve { .. }
                ) {
                    "info,sqlx=warn".into()
                } else {
                    // A streamed read (history, a list) is one long statement
                    // by design: sqlx's slow-statement warning would only alarm.
                    "warn,sqlx::query=error".into()
                }
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("error: {}", msg.lines().next().unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(cmd: &clap::Command, path: String, out: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let is_flag = a.get_long().is_some() || a.get_short().is_some();
            if is_flag && a.get_help().is_none() && a.get_id() != "help" && a.get_id() != "version"
            {
                out.push(format!("{path} --{}", a.get_id()));
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, format!("{path} {}", s.get_name()), out);
        }
    }

    #[test]
    fn every_flag_has_help() {
        let mut cmd = command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "clusto".into(), &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    fn visible(path: &[&str]) -> Vec<String> {
        let mut cmd = command();
        cmd.build();
        let mut c = &cmd;
        for p in path {
            c = c.find_subcommand(p).unwrap();
        }
        c.get_arguments()
            .filter(|a| !a.is_hide_set())
            .map(|a| a.get_id().to_string())
            .collect()
    }

    #[test]
    fn global_flags_show_only_where_they_mean_something() {
        let gen_ = visible(&["generate"]);
        for f in ["store", "output", "message", "user"] {
            assert!(!gen_.contains(&f.to_string()), "generate shows --{f}");
        }
        let get = visible(&["get"]);
        assert!(get.contains(&"store".into()) && get.contains(&"output".into()));
        assert!(!get.contains(&"message".into()) && !get.contains(&"user".into()));
        let set = visible(&["attr", "set"]);
        assert!(set.contains(&"message".into()) && set.contains(&"user".into()));
        let create = visible(&["create"]);
        assert!(!create.contains(&"output".into()) && create.contains(&"message".into()));
        let dhcpd = visible(&["dhcpd"]);
        assert!(dhcpd.contains(&"store".into()) && !dhcpd.contains(&"message".into()));
    }

    #[test]
    fn hidden_global_flags_are_still_accepted() {
        let m = command()
            .try_get_matches_from([
                "clusto",
                "generate",
                "--store",
                "sqlite:///x.db",
                "--racks",
                "2",
            ])
            .unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(cli.store.as_deref(), Some("sqlite:///x.db"));
        let m = command()
            .try_get_matches_from(["clusto", "get", "servers", "-o", "json", "--user", "x"])
            .unwrap();
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.user.as_deref(), Some("x"));
    }
}
