//! The cluster-wide dynamic broker settings: what `Cluster.spec` asks for
//! against what the brokers report (DescribeConfigs on the BROKER resource
//! ""), and the one IncrementalAlterConfigs that makes them agree.
//!
//! The operator owns the cluster-wide defaults: a key set there by hand and
//! not in the spec is removed, as any other drift from the spec is undone.
//! Pure: both maps are inputs.

use std::collections::BTreeMap;

use super::Planned;

/// Keys to set and keys to remove.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigChange {
    /// Key → value to set.
    pub set: BTreeMap<String, String>,
    /// Keys to remove (back to each broker's start-up value).
    pub delete: Vec<String>,
}

/// A value as the broker stores it: trimmed, integers without leading zeros
/// or `+`, booleans in lower case. Comparing normalised values keeps a spec
/// value the broker rewrites (`"TRUE"`, `"010"`) from being set on every pass.
fn normalise(value: &str) -> String {
    let value = value.trim();
    if let Ok(n) = value.parse::<i64>() {
        return n.to_string();
    }
    if value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false") {
        return value.to_ascii_lowercase();
    }
    value.to_owned()
}

/// The change that turns `current` into `desired`; `None` when they agree.
pub fn plan(
    desired: &BTreeMap<String, String>,
    current: &BTreeMap<String, String>,
) -> Option<Planned<ConfigChange>> {
    let set: BTreeMap<String, String> = desired
        .iter()
        .filter(|(k, v)| current.get(*k).map(|c| normalise(c)) != Some(normalise(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = current
        .keys()
        .filter(|k| !desired.contains_key(*k))
        .cloned()
        .collect();
    if set.is_empty() && delete.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if !set.is_empty() {
        let pairs: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("setting {}", pairs.join(", ")));
    }
    if !delete.is_empty() {
        parts.push(format!("removing {}", delete.join(", ")));
    }
    let reason = format!(
        "cluster-wide dynamic broker settings follow the spec without a restart: {}",
        parts.join("; ")
    );
    Some(Planned::new(ConfigChange { set, delete }, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_change_sets_what_differs_and_removes_what_the_spec_dropped() {
        // (desired, current, set, delete)
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
        );
        let cases: &[Case<'_>] = &[
            (&[], &[], &[], &[]),
            (&[("a", "1")], &[("a", "1")], &[], &[]),
            (&[("a", "1")], &[], &[("a", "1")], &[]),
            (&[("a", "2")], &[("a", "1")], &[("a", "2")], &[]),
            (&[], &[("a", "1")], &[], &["a"]),
            (
                &[("a", "1"), ("b", "2")],
                &[("b", "3"), ("c", "4")],
                &[("a", "1"), ("b", "2")],
                &["c"],
            ),
            // Values the broker normalises are the same value.
            (&[("a", " 010 ")], &[("a", "10")], &[], &[]),
            (&[("a", "TRUE")], &[("a", "true")], &[], &[]),
            (&[("a", "True")], &[("a", "false")], &[("a", "True")], &[]),
        ];
        for (i, (desired, current, set, delete)) in cases.iter().enumerate() {
            let got = plan(&map(desired), &map(current)).map(|p| p.action);
            let want = (!set.is_empty() || !delete.is_empty()).then(|| ConfigChange {
                set: map(set),
                delete: delete.iter().map(|k| (*k).to_owned()).collect(),
            });
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn the_reason_names_every_key() {
        let planned = plan(
            &map(&[("follower.replication.throttled.rate", "1000")]),
            &map(&[("log.retention.ms", "5")]),
        )
        .expect("a change");
        assert_eq!(
            planned.reason,
            "cluster-wide dynamic broker settings follow the spec without a restart: \
             setting follower.replication.throttled.rate=1000; removing log.retention.ms"
        );
    }

    #[test]
    fn applying_the_change_converges() {
        let desired = map(&[("a", "1"), ("b", "2")]);
        let mut current = map(&[("b", "3"), ("c", "4")]);
        let change = plan(&desired, &current).expect("a change").action;
        current.extend(change.set);
        for k in &change.delete {
            current.remove(k);
        }
        assert_eq!(plan(&desired, &current), None);
    }
}
