//! openraft's storage conformance suite against the RocksDB log store and both state
//! machines, each group sharing the database with another group's data.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;
use switchboard_raft_store::raft::{
    shard_group, ControlConfig, ControlLogic, LogStore, RaftDb, ShardConfig, ShardLogic, StateMachine, CONTROL_GROUP,
};
use tempfile::TempDir;

/// Keeps the temp dir alive for one test of the suite.
struct Guard {
    _dir: TempDir,
    _db: Arc<RaftDb>,
}

struct ControlBuilder;

impl StoreBuilder<ControlConfig, LogStore<ControlConfig>, StateMachine<ControlConfig, ControlLogic>, Guard> for ControlBuilder {
    async fn build(&self) -> Result<(Guard, LogStore<ControlConfig>, StateMachine<ControlConfig, ControlLogic>), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = RaftDb::open(dir.path()).expect("open raft db");
        let log = db.log_store::<ControlConfig>(CONTROL_GROUP);
        let sm = db.state_machine(CONTROL_GROUP, ControlLogic::default()).expect("open state machine");
        Ok((Guard { _dir: dir, _db: db }, log, sm))
    }
}

struct ShardBuilder;

impl StoreBuilder<ShardConfig, LogStore<ShardConfig>, StateMachine<ShardConfig, ShardLogic>, Guard> for ShardBuilder {
    async fn build(&self) -> Result<(Guard, LogStore<ShardConfig>, StateMachine<ShardConfig, ShardLogic>), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = RaftDb::open(dir.path()).expect("open raft db");
        // Neighbouring groups share the database: their keys must not leak into this one.
        let neighbour = db.log_store::<ShardConfig>(shard_group(4));
        drop(neighbour);
        let log = db.log_store::<ShardConfig>(shard_group(3));
        let sm = db.state_machine(shard_group(3), ShardLogic::new(3)).expect("open state machine");
        Ok((Guard { _dir: dir, _db: db }, log, sm))
    }
}

#[test]
fn control_plane_storage_passes_the_openraft_suite() {
    Suite::test_all(ControlBuilder).expect("control plane storage");
}

#[test]
fn shard_storage_passes_the_openraft_suite() {
    Suite::test_all(ShardBuilder).expect("shard storage");
}
