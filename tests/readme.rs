//! The README's two commands stay literally right: `cargo run` must know which of the crate's
//! binaries is the node (a second binary made it refuse to guess), and `scripts/test` exists.

#[test]
fn the_readme_run_command_picks_the_node_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("\ncargo run --release -- --network regtest\n"),
        "run command"
    );
    assert!(readme.contains("\nscripts/test\n"), "test command");
    assert!(root.join("scripts/test").is_file());
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let bins = manifest["bin"].as_array().map_or(0, Vec::len);
    if bins > 1 {
        assert_eq!(
            manifest["package"]
                .get("default-run")
                .and_then(|v| v.as_str()),
            Some("bllvm-node"),
            "with {bins} binaries `cargo run` needs default-run"
        );
    }
}
