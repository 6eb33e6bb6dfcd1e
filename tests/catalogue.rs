//! The catalogues that live in docs/ rather than in the README, held to what is really
//! there: `docs/TESTS.md` names every test file, and names none that is gone. (The
//! settings page is held to `config::Settings` by a unit test beside it.)

use std::path::Path;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_tests_page_names_every_test_file_and_no_other() {
    let page = std::fs::read_to_string(Path::new(REPO).join("docs/TESTS.md")).unwrap();
    let mut files: Vec<String> = std::fs::read_dir(Path::new(REPO).join("tests"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".rs"))
        .collect();
    files.sort();
    assert!(files.len() > 20, "{files:?}");
    for file in &files {
        assert!(
            page.contains(&format!("`tests/{file}`")),
            "docs/TESTS.md does not say what tests/{file} holds"
        );
    }
    for named in page.split("`tests/").skip(1) {
        let Some(name) = named.split('`').next().filter(|n| n.ends_with(".rs")) else {
            continue;
        };
        if name.contains('/') {
            continue; // a file of a folder (tests/clients/...), checked where it is used
        }
        assert!(
            files.iter().any(|file| file == name),
            "docs/TESTS.md names tests/{name}, which is gone"
        );
    }
}
