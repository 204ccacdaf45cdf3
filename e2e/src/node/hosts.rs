//! The hosts-file format of the names a node agent publishes: one marked
//! block per harness instance, keyed by the instance's node root directory,
//! and the edits on a hosts file's text that add, replace and remove such
//! blocks while leaving every other line (the machine's own entries, other
//! instances' blocks) exactly as it was.
//!
//! Pure: text in, text out. Reading, locking and rewriting the file is
//! [`super::dns`]'s job.
//!
//! ```text
//! # BEGIN skiff-e2e /work/main/e2e/.state/node
//! # owner pid=4242 start=98765; written by the skiff-e2e node agent, removed when it stops or by `skiff-e2e down`
//! 127.1.0.1 skiff-broker-0.skiff-broker.skiff.svc.cluster.local skiff-broker.skiff.svc.cluster.local skiff-broker-0
//! # END skiff-e2e /work/main/e2e/.state/node
//! ```

use std::net::Ipv4Addr;

const BEGIN: &str = "# BEGIN skiff-e2e ";
const END: &str = "# END skiff-e2e ";
const OWNER: &str = "# owner pid=";

/// One line of a block: an address and its names, canonical name first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostEntry {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// Names that resolve to it; the first is what a reverse lookup returns.
    pub names: Vec<String>,
}

/// The process that wrote a block, so a later agent can tell a block whose
/// writer died without cleaning up (SIGKILL) from one still in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Its pid.
    pub pid: i32,
    /// Its start time in clock ticks since boot (guards against pid reuse).
    pub start_time: u64,
}

/// A block found in a hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// The instance key.
    pub key: String,
    /// Its writer, if the owner line could be read.
    pub owner: Option<Owner>,
}

/// Keys live on one comment line; a line break in a path must not end it.
fn clean_key(key: &str) -> String {
    key.replace(['\n', '\r'], " ")
}

/// The block for `key` with `entries`, ending in a newline.
pub fn render_block(key: &str, owner: Owner, entries: &[HostEntry]) -> String {
    let key = clean_key(key);
    let mut block = format!(
        "{BEGIN}{key}\n{OWNER}{} start={}; written by the skiff-e2e node agent, removed when it stops or by `skiff-e2e down`\n",
        owner.pid, owner.start_time
    );
    for entry in entries.iter().filter(|e| !e.names.is_empty()) {
        block.push_str(&format!("{}\t{}\n", entry.ip, entry.names.join(" ")));
    }
    block.push_str(&format!("{END}{key}\n"));
    block
}

/// `hosts` with the block of `key` removed, and `block` (from
/// [`render_block`]) appended when given. Everything else is kept byte for
/// byte, so adding a block and removing it again restores a file that ended
/// in a newline exactly. A `BEGIN` line without its `END` (a hand edit) is
/// dropped on its own; the lines after it are kept, as they may be anyone's.
pub fn with_block(hosts: &str, key: &str, block: Option<&str>) -> String {
    let key = clean_key(key);
    let begin = format!("{BEGIN}{key}");
    let end = format!("{END}{key}");
    let lines: Vec<&str> = hosts.split_inclusive('\n').collect();
    let mut out = String::with_capacity(hosts.len() + block.map_or(0, str::len));
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end_matches(['\n', '\r']) == begin {
            match lines[i + 1..]
                .iter()
                .position(|l| l.trim_end_matches(['\n', '\r']) == end)
            {
                Some(offset) => i += offset + 2,
                None => i += 1,
            }
            continue;
        }
        out.push_str(lines[i]);
        i += 1;
    }
    if let Some(block) = block {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(block);
    }
    out
}

/// Every skiff-e2e block in `hosts`, in file order.
pub fn blocks(hosts: &str) -> Vec<BlockInfo> {
    let mut found = Vec::new();
    let mut lines = hosts.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(key) = line.strip_prefix(BEGIN) else {
            continue;
        };
        let owner = lines
            .peek()
            .and_then(|l| l.strip_prefix(OWNER))
            .and_then(parse_owner);
        found.push(BlockInfo {
            key: key.to_owned(),
            owner,
        });
    }
    found
}

/// `4242 start=98765; …` → the owner.
fn parse_owner(rest: &str) -> Option<Owner> {
    let (pid, rest) = rest.split_once(" start=")?;
    let start: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some(Owner {
        pid: pid.parse().ok()?,
        start_time: start.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: &str = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";
    const OWNER_A: Owner = Owner {
        pid: 42,
        start_time: 7,
    };

    fn entry(ip: [u8; 4], names: &[&str]) -> HostEntry {
        HostEntry {
            ip: Ipv4Addr::from(ip),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn block(key: &str, entries: &[HostEntry]) -> String {
        render_block(key, OWNER_A, entries)
    }

    #[test]
    fn block_has_markers_owner_and_one_line_per_address() {
        let text = block(
            "/s/node",
            &[
                entry([127, 0, 1, 1], &["b-0.b.ns.svc.cluster.local", "b-0"]),
                entry([127, 0, 1, 2], &[]),
            ],
        );
        assert_eq!(
            text,
            "# BEGIN skiff-e2e /s/node\n\
             # owner pid=42 start=7; written by the skiff-e2e node agent, removed when it stops or by `skiff-e2e down`\n\
             127.0.1.1\tb-0.b.ns.svc.cluster.local b-0\n\
             # END skiff-e2e /s/node\n"
        );
    }

    #[test]
    fn adding_replacing_and_removing_a_block_keeps_other_lines() {
        let a1 = block("/a", &[entry([127, 0, 1, 1], &["x"])]);
        let a2 = block("/a", &[entry([127, 0, 1, 9], &["y"])]);
        let b = block("/b", &[entry([127, 0, 2, 1], &["z"])]);

        let with_a = with_block(MACHINE, "/a", Some(&a1));
        assert_eq!(with_a, format!("{MACHINE}{a1}"));
        let with_both = with_block(&with_a, "/b", Some(&b));
        assert_eq!(with_both, format!("{MACHINE}{a1}{b}"));
        // Replacing moves the block to the end; the other block is untouched.
        let replaced = with_block(&with_both, "/a", Some(&a2));
        assert_eq!(replaced, format!("{MACHINE}{b}{a2}"));
        assert_eq!(with_block(&replaced, "/a", None), format!("{MACHINE}{b}"));
        assert_eq!(
            with_block(&with_block(&replaced, "/a", None), "/b", None),
            MACHINE,
            "removing every block restores the file byte for byte"
        );
    }

    #[test]
    fn removing_an_absent_block_changes_nothing() {
        let b = block("/b", &[entry([127, 0, 2, 1], &["z"])]);
        let text = format!("{MACHINE}{b}# a comment\n");
        assert_eq!(with_block(&text, "/a", None), text);
        assert_eq!(with_block("", "/a", None), "");
    }

    #[test]
    fn a_key_that_prefixes_another_is_a_different_block() {
        let short = block("/s", &[entry([127, 0, 1, 1], &["x"])]);
        let long = block("/s/node", &[entry([127, 0, 1, 2], &["y"])]);
        let text = format!("{MACHINE}{long}{short}");
        assert_eq!(with_block(&text, "/s", None), format!("{MACHINE}{long}"));
        assert_eq!(
            with_block(&text, "/s/node", None),
            format!("{MACHINE}{short}")
        );
    }

    #[test]
    fn missing_final_newline_and_crlf_are_tolerated() {
        let a = block("/a", &[entry([127, 0, 1, 1], &["x"])]);
        let no_newline = "127.0.0.1 localhost";
        let added = with_block(no_newline, "/a", Some(&a));
        assert_eq!(added, format!("{no_newline}\n{a}"));
        assert_eq!(with_block(&added, "/a", None), format!("{no_newline}\n"));

        let crlf = "127.0.0.1 localhost\r\n".to_owned() + &a.replace('\n', "\r\n") + "::1 x\r\n";
        assert_eq!(
            with_block(&crlf, "/a", None),
            "127.0.0.1 localhost\r\n::1 x\r\n"
        );
    }

    #[test]
    fn begin_without_end_drops_only_the_marker() {
        let text = format!("{MACHINE}# BEGIN skiff-e2e /a\n127.0.9.9 mine\n");
        assert_eq!(
            with_block(&text, "/a", None),
            format!("{MACHINE}127.0.9.9 mine\n")
        );
    }

    #[test]
    fn keys_with_line_breaks_stay_on_their_marker_line() {
        let a = block("/odd\npath", &[entry([127, 0, 1, 1], &["x"])]);
        assert_eq!(a.lines().count(), 4);
        let text = with_block(MACHINE, "/odd\npath", Some(&a));
        assert_eq!(with_block(&text, "/odd\npath", None), MACHINE);
    }

    #[test]
    fn blocks_are_listed_with_their_owners() {
        let a = block("/a", &[]);
        let b = render_block(
            "/b",
            Owner {
                pid: 9,
                start_time: 123_456,
            },
            &[],
        );
        let hand_made = "# BEGIN skiff-e2e /c\n# END skiff-e2e /c\n";
        let text = format!("{MACHINE}{a}{b}{hand_made}");
        assert_eq!(
            blocks(&text),
            [
                BlockInfo {
                    key: "/a".into(),
                    owner: Some(OWNER_A)
                },
                BlockInfo {
                    key: "/b".into(),
                    owner: Some(Owner {
                        pid: 9,
                        start_time: 123_456
                    })
                },
                BlockInfo {
                    key: "/c".into(),
                    owner: None
                },
            ]
        );
        assert_eq!(blocks(MACHINE), []);
    }
}
