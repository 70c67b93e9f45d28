//! Schema migrations. Every table is versioned the same way: a row is
//! visible from revision `rev_from` until `rev_to` (exclusive; NULL while
//! current), so any read can be answered "as of" a revision.

/// (version, statements). Indexes on `rev_to` are partial: history needs
/// the retired rows, and a full index would tempt SQLite's planner to scan
/// every current row through it.
/// Statements are plain SQL both backends accept.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE revisions (rev BIGINT PRIMARY KEY, at_ms BIGINT NOT NULL, user_name TEXT NOT NULL, \
         message TEXT NOT NULL, manager TEXT NOT NULL)",
            "CREATE TABLE entities (id BIGINT PRIMARY KEY, eid BIGINT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, \
         driver TEXT NOT NULL, rev_from BIGINT NOT NULL, rev_to BIGINT)",
            "CREATE UNIQUE INDEX entities_current_name ON entities (name) WHERE rev_to IS NULL",
            "CREATE INDEX entities_eid ON entities (eid)",
            "CREATE INDEX entities_rev ON entities (rev_from)",
            "CREATE TABLE attrs (id BIGINT PRIMARY KEY, eid BIGINT NOT NULL, key TEXT NOT NULL, subkey TEXT, \
         number BIGINT, vtype TEXT NOT NULL, value TEXT, ref_eid BIGINT, rev_from BIGINT NOT NULL, rev_to BIGINT)",
            "CREATE INDEX attrs_eid ON attrs (eid)",
            "CREATE INDEX attrs_current_kv ON attrs (key, subkey, value) WHERE rev_to IS NULL",
            "CREATE INDEX attrs_rev ON attrs (rev_from)",
            "CREATE INDEX attrs_current_ref ON attrs (ref_eid) WHERE rev_to IS NULL AND ref_eid IS NOT NULL",
            "CREATE TABLE containment (id BIGINT PRIMARY KEY, parent BIGINT NOT NULL, child BIGINT NOT NULL, \
         ru_start BIGINT, ru_end BIGINT, rev_from BIGINT NOT NULL, rev_to BIGINT)",
            "CREATE INDEX containment_parent ON containment (parent)",
            "CREATE INDEX containment_child ON containment (child)",
            "CREATE INDEX containment_rev ON containment (rev_from)",
            "CREATE TABLE links (id BIGINT PRIMARY KEY, a BIGINT NOT NULL, a_port TEXT NOT NULL, b BIGINT NOT NULL, \
         b_port TEXT NOT NULL, rev_from BIGINT NOT NULL, rev_to BIGINT)",
            "CREATE INDEX links_a ON links (a)",
            "CREATE INDEX links_b ON links (b)",
            "CREATE INDEX links_rev ON links (rev_from)",
            "CREATE TABLE addresses (id BIGINT PRIMARY KEY, address TEXT NOT NULL, holder BIGINT NOT NULL, \
         manager BIGINT, os_port TEXT, port TEXT, rev_from BIGINT NOT NULL, rev_to BIGINT)",
            "CREATE UNIQUE INDEX addresses_current ON addresses (address) WHERE rev_to IS NULL",
            "CREATE INDEX addresses_holder ON addresses (holder)",
            "CREATE INDEX addresses_rev ON addresses (rev_from)",
            "CREATE INDEX entities_rev_to ON entities (rev_to) WHERE rev_to IS NOT NULL",
            "CREATE INDEX attrs_rev_to ON attrs (rev_to) WHERE rev_to IS NOT NULL",
            "CREATE INDEX containment_rev_to ON containment (rev_to) WHERE rev_to IS NOT NULL",
            "CREATE INDEX links_rev_to ON links (rev_to) WHERE rev_to IS NOT NULL",
            "CREATE INDEX addresses_rev_to ON addresses (rev_to) WHERE rev_to IS NOT NULL",
        ],
    ),
    // The store's own uid (VM ownership tags) and controller leases.
    (
        2,
        &[
            "CREATE TABLE clusto_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE clusto_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL)",
        ],
    ),
    // Point reads by name, address and reference at any revision (the
    // partial indexes above serve only the live rows), and an IPManager's
    // allocations and the live entities of a kind (drivers, VMs, managers
    // every write scope loads; a listing's pages, in name order) without a scan.
    (
        3,
        &[
            "CREATE INDEX entities_name ON entities (name)",
            "CREATE INDEX addresses_address ON addresses (address)",
            "CREATE INDEX addresses_manager ON addresses (manager)",
            "CREATE INDEX attrs_ref ON attrs (ref_eid) WHERE ref_eid IS NOT NULL",
            "CREATE INDEX entities_current_kind ON entities (kind, name) WHERE rev_to IS NULL",
        ],
    ),
    // The occupied units of a container something enters: without it a
    // pool join read every member of the pool (333,000 at 1,000,000
    // servers) to find the few rows with units.
    (
        4,
        &[
            "CREATE INDEX containment_current_units ON containment (parent) \
           WHERE rev_to IS NULL AND ru_start IS NOT NULL",
        ],
    ),
];
