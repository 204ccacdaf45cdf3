//! Container image name → local binary. There are no images here: a pod's
//! container runs the binary its image maps to, e.g.
//! `SKIFF_IMAGE_MAP=skiff/broker=/work/main/target/debug/skiff-broker`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The environment variable holding the default image map.
pub const IMAGE_MAP_ENV: &str = "SKIFF_IMAGE_MAP";

/// Which binary runs for which image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMap {
    images: BTreeMap<String, PathBuf>,
}

impl ImageMap {
    /// Parses `image=path` pairs separated by commas or whitespace.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut images = BTreeMap::new();
        for pair in text.split([',', ' ', '\n', '\t']).filter(|p| !p.is_empty()) {
            let (image, path) = pair
                .split_once('=')
                .filter(|(i, p)| !i.is_empty() && !p.is_empty())
                .ok_or_else(|| format!("image map entry {pair:?} is not image=path"))?;
            images.insert(image.to_owned(), PathBuf::from(path));
        }
        Ok(Self { images })
    }

    /// The map in `$SKIFF_IMAGE_MAP` (empty if unset).
    pub fn from_env() -> Result<Self, String> {
        Self::parse(&std::env::var(IMAGE_MAP_ENV).unwrap_or_default())
    }

    /// Adds or replaces one entry.
    pub fn insert(&mut self, image: impl Into<String>, binary: impl Into<PathBuf>) {
        self.images.insert(image.into(), binary.into());
    }

    /// The binary for `image`: an exact match first, then the image without
    /// its tag or digest (`skiff/broker:0.1` and `skiff/broker@sha256:…`
    /// both match an entry `skiff/broker`).
    pub fn resolve(&self, image: &str) -> Option<&Path> {
        if let Some(path) = self.images.get(image) {
            return Some(path);
        }
        let without_digest = image.split('@').next().unwrap_or(image);
        // A tag follows the last ':' unless that ':' belongs to a registry
        // port (`localhost:5000/skiff/broker`).
        let repository = match without_digest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => without_digest,
        };
        self.images.get(repository).map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_exact_then_untagged() {
        let map =
            ImageMap::parse("skiff/broker=/bin/broker, localhost:5000/op=/bin/op,pinned:1=/bin/p1")
                .unwrap();
        let cases = [
            ("skiff/broker", Some("/bin/broker")),
            ("skiff/broker:0.1.0", Some("/bin/broker")),
            ("skiff/broker@sha256:abc", Some("/bin/broker")),
            ("localhost:5000/op", Some("/bin/op")),
            ("localhost:5000/op:v2", Some("/bin/op")),
            ("pinned:1", Some("/bin/p1")),
            ("pinned:2", None),
            ("other", None),
        ];
        for (image, expected) in cases {
            assert_eq!(map.resolve(image), expected.map(Path::new), "{image}");
        }
    }

    #[test]
    fn rejects_malformed_entries() {
        assert!(ImageMap::parse("noequals").is_err());
        assert!(ImageMap::parse("=/bin/x").is_err());
        assert_eq!(ImageMap::parse("").unwrap(), ImageMap::default());
    }
}
