//! Leader election over a `coordination.k8s.io/v1` Lease, so two operator
//! replicas never reconcile at once: the holder renews the Lease every
//! [`RENEW_EVERY`]; another replica takes it over once it has not been
//! renewed for [`LEASE_DURATION`]. A leader that cannot renew in time exits,
//! so it never acts on a Lease it may have lost.
//!
//! A leader that stops (SIGTERM) releases the Lease so the standby takes over
//! without waiting for it to expire.
//!
//! [`decide`] is the pure rule; [`acquire`], [`keep`] and [`release`] do the
//! API calls.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// How long a Lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the leader renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Name of the Lease.
pub const LEASE_NAME: &str = "skiff-operator-leader";

/// The Lease as far as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// Holder identity.
    pub holder: Option<String>,
    /// Last renewal.
    pub renewed: Option<Timestamp>,
    /// Validity in seconds.
    pub duration_seconds: i64,
}

/// What to do with the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Its holder stopped renewing (or nobody holds it): take it over.
    TakeOver,
    /// Someone else holds it and renews it: wait.
    Follow(String),
}

/// The rule: who may lead, given the Lease, our identity and the time.
pub fn decide(lease: Option<&LeaseView>, me: &str, now: Timestamp) -> LeaseDecision {
    let Some(lease) = lease else {
        return LeaseDecision::Create;
    };
    match (&lease.holder, lease.renewed) {
        (Some(holder), _) if holder == me => LeaseDecision::Renew,
        (Some(holder), Some(renewed))
            if now < renewed + SignedDuration::from_secs(lease.duration_seconds) =>
        {
            LeaseDecision::Follow(holder.clone())
        }
        _ => LeaseDecision::TakeOver,
    }
}

fn view(lease: &Lease) -> LeaseView {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseView {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        renewed: spec.renew_time.map(|t| t.0),
        duration_seconds: i64::from(spec.lease_duration_seconds.unwrap_or(0)),
    }
}

fn held(me: &str, previous: Option<&Lease>, now: Timestamp, transition: bool) -> Lease {
    let spec = previous.and_then(|l| l.spec.clone()).unwrap_or_default();
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(transition);
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.to_owned()),
            resource_version: previous.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(me.to_owned()),
            lease_duration_seconds: Some(i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(15)),
            acquire_time: if transition || previous.is_none() {
                Some(MicroTime(now))
            } else {
                spec.acquire_time
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// `lease` given up by its holder: no holder, so the next candidate takes it
/// over at once instead of waiting out [`LEASE_DURATION`]; the
/// resourceVersion is kept, so a Lease someone else took meanwhile is left
/// alone.
fn released(lease: &Lease) -> Lease {
    let mut lease = lease.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    lease
}

/// Gives the Lease up if this replica holds it (on shutdown), so the standby
/// leads within its next attempt. Errors are logged: the Lease then expires.
pub async fn release(api: &Api<Lease>, me: &str) {
    let result = match api.get_opt(LEASE_NAME).await {
        Ok(Some(lease)) if view(&lease).holder.as_deref() == Some(me) => api
            .replace(LEASE_NAME, &PostParams::default(), &released(&lease))
            .await
            .map(|_| true),
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    match result {
        Ok(true) => tracing::info!(
            identity = me,
            lease = LEASE_NAME,
            "released the leader Lease"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot release the leader Lease; it expires instead"),
    }
}

/// One attempt: `Ok(true)` when we hold the Lease afterwards. Writes carry
/// the observed resourceVersion, so two candidates never both win.
pub async fn try_hold(api: &Api<Lease>, me: &str) -> Result<bool, kube::Error> {
    let current = api.get_opt(LEASE_NAME).await?;
    let now = Timestamp::now();
    let decision = decide(current.as_ref().map(view).as_ref(), me, now);
    let result = match decision {
        LeaseDecision::Follow(_) => return Ok(false),
        LeaseDecision::Create => {
            api.create(&PostParams::default(), &held(me, None, now, false))
                .await
        }
        LeaseDecision::Renew => {
            api.replace(
                LEASE_NAME,
                &PostParams::default(),
                &held(me, current.as_ref(), now, false),
            )
            .await
        }
        LeaseDecision::TakeOver => {
            api.replace(
                LEASE_NAME,
                &PostParams::default(),
                &held(me, current.as_ref(), now, true),
            )
            .await
        }
    };
    match result {
        Ok(_) => Ok(true),
        // Someone else wrote first.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(api: &Api<Lease>, me: &str) {
    loop {
        match try_hold(api, me).await {
            Ok(true) => {
                tracing::info!(identity = me, lease = LEASE_NAME, "became leader");
                return;
            }
            Ok(false) => tracing::debug!(identity = me, "another replica leads"),
            Err(e) => tracing::warn!(error = %e, "cannot read or write the leader Lease"),
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
}

/// Renews the Lease forever; returns when leadership is lost or cannot be
/// confirmed within [`LEASE_DURATION`] (the caller then exits).
pub async fn keep(api: &Api<Lease>, me: &str) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        match try_hold(api, me).await {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::error!(identity = me, "leadership lost");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
        }
        if last_renewal.elapsed() >= LEASE_DURATION {
            tracing::error!(identity = me, "leader Lease not renewed in time");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> LeaseView {
        LeaseView {
            holder: holder.map(str::to_owned),
            renewed: renewed.map(at),
            duration_seconds: 15,
        }
    }

    #[test]
    fn table_of_lease_decisions() {
        let cases = [
            ("no lease", None, 0, LeaseDecision::Create),
            (
                "ours",
                Some(lease(Some("me"), Some(0))),
                100,
                LeaseDecision::Renew,
            ),
            (
                "theirs, fresh",
                Some(lease(Some("b"), Some(0))),
                14,
                LeaseDecision::Follow("b".into()),
            ),
            (
                "theirs, expired",
                Some(lease(Some("b"), Some(0))),
                15,
                LeaseDecision::TakeOver,
            ),
            (
                "theirs, never renewed",
                Some(lease(Some("b"), None)),
                0,
                LeaseDecision::TakeOver,
            ),
            (
                "released",
                Some(lease(None, Some(0))),
                1,
                LeaseDecision::TakeOver,
            ),
        ];
        for (name, l, now, expected) in cases {
            assert_eq!(decide(l.as_ref(), "me", at(now)), expected, "{name}");
        }
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once_and_keeps_its_version() {
        let now = at(1_000);
        let mut lease = held("a", None, now, false);
        lease.metadata.resource_version = Some("7".into());
        assert_eq!(
            decide(Some(&view(&lease)), "b", now),
            LeaseDecision::Follow("a".into())
        );
        let given_up = released(&lease);
        assert_eq!(given_up.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            decide(Some(&view(&given_up)), "b", now),
            LeaseDecision::TakeOver
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_keeps_the_resource_version() {
        let mut previous = held("b", None, at(0), false);
        previous.metadata.resource_version = Some("7".into());
        let mine = held("me", Some(&previous), at(20), true);
        let spec = mine.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(mine.metadata.resource_version.as_deref(), Some("7"));
    }
}
