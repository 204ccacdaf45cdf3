//! openraft's outbound network (`RaftNetworkFactory`/`RaftNetwork`): sends
//! AppendEntries, Vote and InstallSnapshot to a peer's controller listener
//! through an [`RpcClient`].
//!
//! Timeouts come from openraft (heartbeat interval for AppendEntries, the
//! minimum election timeout for Vote), which keeps failover sub-second.
//! Unreachable peers are reported as such so openraft backs off instead of
//! spinning.
//!
//! Owns: mapping transport failures onto openraft's error kinds. Must not:
//! retry on its own.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, RaftNetwork, RaftNetworkFactory};

use super::frame::FrameError;
use super::message::{Request, Response};
use super::rpc::{RpcClient, RpcError};
use super::types::{NodeId, TypeConfig};

/// Pause before retrying a peer that refused the connection.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Makes one [`PeerClient`] per target; each owns its own connection.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub node: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            node: self.node,
            target,
            client: RpcClient::new(node.addr.clone()),
        }
    }
}

/// The connection from this node to one peer.
#[derive(Debug)]
pub(crate) struct PeerClient {
    node: NodeId,
    target: NodeId,
    client: RpcClient,
}

impl PeerClient {
    /// Sends one request; `entries` is the number of log entries it carries.
    async fn send<E: std::error::Error>(
        &self,
        action: RPCTypes,
        request: Request,
        entries: usize,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, BasicNode, E>> {
        self.client
            .exchange(&request, option.hard_ttl())
            .await
            .map_err(|e| {
                tracing::debug!(node = self.node, target = self.target, %action, error = %e, "raft rpc failed");
                match e {
                    RpcError::Connect { .. } => Unreachable::new(&e).into(),
                    RpcError::Timeout { after, .. } => Timeout {
                        action,
                        id: self.node,
                        target: self.target,
                        timeout: after,
                    }
                    .into(),
                    // Over the frame limit: openraft retries with fewer entries.
                    RpcError::Frame {
                        source: FrameError::TooLarge { .. },
                        ..
                    } if entries > 1 => PayloadTooLarge::new_entries_hint((entries / 2) as u64).into(),
                    _ => NetworkError::new(&e).into(),
                }
            })
    }

    fn mismatch<E: std::error::Error>(&self, response: Response) -> RPCError<NodeId, BasicNode, E> {
        NetworkError::new(&self.client.unexpected(response)).into()
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        match self
            .send(
                RPCTypes::AppendEntries,
                Request::AppendEntries(rpc),
                entries,
                &option,
            )
            .await?
        {
            Response::AppendEntries(r) => r.map_err(|e| RemoteError::new(self.target, e).into()),
            other => Err(self.mismatch(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .send(
                RPCTypes::InstallSnapshot,
                Request::InstallSnapshot(rpc),
                0,
                &option,
            )
            .await?
        {
            Response::InstallSnapshot(r) => r.map_err(|e| RemoteError::new(self.target, e).into()),
            other => Err(self.mismatch(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .send(RPCTypes::Vote, Request::Vote(rpc), 0, &option)
            .await?
        {
            Response::Vote(r) => r.map_err(|e| RemoteError::new(self.target, e).into()),
            other => Err(self.mismatch(other)),
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
