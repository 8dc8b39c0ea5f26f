//! Which manifest and which layer of an image hold the wasm to run: pure decisions over the
//! image's JSON documents, without containerd.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::ImageLayerError;

/// Layer media types that hold a wasm binary (module or component), not a filesystem.
pub const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.w3c.wasm.module.v1+wasm",
    "application/vnd.w3c.wasm.component.v1+wasm",
];
/// The config of a CNCF TAG-Runtime wasm OCI artifact.
pub const WASM_ARTIFACT_CONFIG: &str = "application/vnd.wasm.config.v0+json";
const TITLE: &str = "org.opencontainers.image.title";
const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn is_index(&self) -> bool {
        INDEX_TYPES.contains(&self.media_type.as_str())
    }

    pub fn is_manifest(&self) -> bool {
        MANIFEST_TYPES.contains(&self.media_type.as_str())
    }

    fn title(&self) -> Option<&str> {
        self.annotations.get(TITLE).map(String::as_str)
    }

    /// `image layer sha256:… (media type)`, for the log and errors.
    pub fn origin(&self) -> String {
        match self.title() {
            Some(title) => format!("image layer {} ({}, {title})", self.digest, self.media_type),
            None => format!("image layer {} ({})", self.digest, self.media_type),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

#[derive(Debug, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl Manifest {
    pub fn wasm_layers(&self) -> Vec<&Descriptor> {
        self.layers
            .iter()
            .filter(|l| WASM_LAYER_TYPES.contains(&l.media_type.as_str()))
            .collect()
    }

    pub fn is_wasm_artifact(&self) -> bool {
        self.config.media_type == WASM_ARTIFACT_CONFIG
    }
}

pub fn parse<'a, T: Deserialize<'a>>(
    what: &'static str,
    digest: &str,
    bytes: &'a [u8],
) -> Result<T, ImageLayerError> {
    serde_json::from_slice(bytes).map_err(|e| ImageLayerError::BadDocument {
        what,
        digest: digest.to_string(),
        reason: e.to_string(),
    })
}

/// What to do with an image index: follow a wasm-platform manifest, look into nested indexes
/// that carry no platform, or nothing (an ordinary image).
#[derive(Debug, PartialEq, Eq)]
pub enum IndexChoice {
    Manifest(Descriptor),
    Nested(Vec<Descriptor>),
    NotWasm,
}

/// Picks the index entry to run: a manifest whose platform architecture is `wasm`, preferring
/// `wasip2` entries when the engine runs components and the others when it does not.
pub fn choose_in_index(index: &Index, supports_components: bool) -> IndexChoice {
    let wasm: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.is_manifest())
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.architecture == "wasm")
        })
        .collect();
    let is_p2 = |d: &&&Descriptor| d.platform.as_ref().is_some_and(|p| p.os == "wasip2");
    let preferred = wasm
        .iter()
        .find(|d| is_p2(d) == supports_components)
        .or_else(|| wasm.first());
    if let Some(d) = preferred {
        return IndexChoice::Manifest((*d).clone());
    }
    let nested: Vec<Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.is_index() && d.platform.is_none())
        .cloned()
        .collect();
    if nested.is_empty() {
        IndexChoice::NotWasm
    } else {
        IndexChoice::Nested(nested)
    }
}

/// The wasm layer to run: the only one, or the one whose title is args[0]'s file name.
/// `Ok(None)` when the manifest has no wasm layer and is no wasm artifact (its rootfs holds
/// the program, as in wasm images made of tar layers).
pub fn choose_layer<'m>(
    image: &str,
    manifest: &'m Manifest,
    arg0_path: &str,
) -> Result<Option<&'m Descriptor>, ImageLayerError> {
    let layers = manifest.wasm_layers();
    match layers.as_slice() {
        [] if manifest.is_wasm_artifact() => Err(ImageLayerError::NoWasmLayer {
            image: image.to_string(),
            media_types: manifest
                .layers
                .iter()
                .map(|l| l.media_type.clone())
                .collect(),
        }),
        [] => Ok(None),
        [only] => Ok(Some(only)),
        several => {
            let name = arg0_path.rsplit('/').next().unwrap_or(arg0_path);
            let relative = arg0_path.trim_start_matches('/');
            let matching: Vec<&&Descriptor> = several
                .iter()
                .filter(|l| l.title().is_some_and(|t| t == name || t == relative))
                .collect();
            match matching.as_slice() {
                [one] => Ok(Some(**one)),
                _ => Err(ImageLayerError::SeveralModules {
                    image: image.to_string(),
                    arg0: arg0_path.to_string(),
                    titles: several
                        .iter()
                        .map(|l| l.title().unwrap_or("(untitled)").to_string())
                        .collect(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(media_type: &str, digest: &str, title: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size: 8,
            platform: None,
            annotations: title
                .map(|t| BTreeMap::from([(TITLE.to_string(), t.to_string())]))
                .unwrap_or_default(),
        }
    }

    fn entry(media_type: &str, arch: &str, os: &str) -> Descriptor {
        Descriptor {
            platform: Some(Platform {
                architecture: arch.to_string(),
                os: os.to_string(),
            }),
            ..layer(media_type, &format!("sha256:{arch}-{os}"), None)
        }
    }

    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const TGZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

    fn manifest(config: &str, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            config: layer(config, "sha256:c", None),
            layers,
        }
    }

    #[test]
    fn index_picks_the_wasm_entry_for_the_engine() {
        let index = Index {
            manifests: vec![
                entry(MANIFEST, "amd64", "linux"),
                entry(MANIFEST, "wasm", "wasip1"),
                entry(MANIFEST, "wasm", "wasip2"),
            ],
        };
        let chosen = |components| match choose_in_index(&index, components) {
            IndexChoice::Manifest(d) => d.platform.map(|p| p.os),
            other => panic!("{other:?}"),
        };
        assert_eq!(chosen(true).as_deref(), Some("wasip2"));
        assert_eq!(chosen(false).as_deref(), Some("wasip1"));
        let only_p2 = Index {
            manifests: vec![entry(MANIFEST, "wasm", "wasip2")],
        };
        assert!(matches!(
            choose_in_index(&only_p2, false),
            IndexChoice::Manifest(_)
        ));
    }

    #[test]
    fn ordinary_and_nested_indexes() {
        let native = Index {
            manifests: vec![
                entry(MANIFEST, "amd64", "linux"),
                entry(MANIFEST, "arm64", "linux"),
            ],
        };
        assert_eq!(choose_in_index(&native, true), IndexChoice::NotWasm);
        let nested = layer("application/vnd.oci.image.index.v1+json", "sha256:n", None);
        let outer = Index {
            manifests: vec![nested.clone()],
        };
        assert_eq!(
            choose_in_index(&outer, true),
            IndexChoice::Nested(vec![nested])
        );
    }

    #[test]
    fn one_wasm_layer_runs_whatever_args0_says() {
        let m = manifest(
            CONFIG,
            vec![
                layer(TGZ, "sha256:t", None),
                layer("application/wasm", "sha256:w", Some("app.wasm")),
            ],
        );
        let chosen = choose_layer("img", &m, "/anything").ok().flatten();
        assert_eq!(chosen.map(|d| d.digest.as_str()), Some("sha256:w"));
        let origin = chosen.map(Descriptor::origin).unwrap_or_default();
        assert_eq!(origin, "image layer sha256:w (application/wasm, app.wasm)");
    }

    #[test]
    fn several_layers_are_told_apart_by_title() {
        let m = manifest(
            CONFIG,
            vec![
                layer("application/wasm", "sha256:a", Some("a.wasm")),
                layer("application/wasm", "sha256:b", Some("b.wasm")),
            ],
        );
        let pick = |arg0| {
            choose_layer("img", &m, arg0)
                .map(|d| d.map(|d| d.digest.clone()))
                .map_err(|e| e.to_string())
        };
        assert_eq!(pick("/b.wasm"), Ok(Some("sha256:b".to_string())));
        assert_eq!(pick("/opt/a.wasm"), Ok(Some("sha256:a".to_string())));
        let e = pick("/c.wasm").unwrap_err();
        assert!(
            e.contains("2 wasm layers") && e.contains("a.wasm, b.wasm") && e.contains("/c.wasm"),
            "{e}"
        );
    }

    #[test]
    fn no_wasm_layer_is_an_error_only_for_artifacts() {
        let tar_only = manifest(CONFIG, vec![layer(TGZ, "sha256:t", None)]);
        assert!(matches!(choose_layer("img", &tar_only, "/x"), Ok(None)));
        let artifact = manifest(WASM_ARTIFACT_CONFIG, vec![layer(TGZ, "sha256:t", None)]);
        let e = choose_layer("img", &artifact, "/x")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("without a wasm layer") && e.contains(TGZ), "{e}");
    }

    #[test]
    fn documents_parse_leniently_and_fail_clearly() {
        let bytes = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:c","size":2},
            "layers":[{"mediaType":"application/wasm","digest":"sha256:w","size":8,"extra":1}]}"#;
        let m: Manifest = parse("manifest", "sha256:m", bytes).unwrap();
        assert_eq!(m.wasm_layers().len(), 1);
        let e = parse::<Manifest>("manifest", "sha256:m", b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("manifest sha256:m is not valid JSON"), "{e}");
    }
}
