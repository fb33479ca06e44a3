//! The run report (aggregate/report.html) in headless Chromium: every view loads with no script
//! error, every link and video resolves to a file, sorting and filtering change the rows, the
//! comparison lists its metrics and shows both runs' videos, and a screenshot of each view (at
//! 1280 px and at a phone's 390 px) is not blank. Load time on a 100K-rollout run is a `make
//! bench` figure (benches/report.rs), not a timed test.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

const SCENES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scenes");

fn simulate(out: &Path, driver: &str) {
    let o = Command::new(util::exe("simulate"))
        .args(["run", "--scenes", SCENES, "--out"])
        .arg(out)
        .args([
            "--rollouts",
            "2",
            "--driver",
            driver,
            "--traffic",
            "idm",
            "--video",
            "all",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

const FLAGS: [&str; 5] = [
    "--headless",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--hide-scrollbars",
];

/// The DOM of `page#hash` after its scripts ran.
fn dom(browser: &str, page: &Path, hash: &str) -> String {
    let o = Command::new(browser)
        .args(FLAGS)
        .args(["--virtual-time-budget=10000", "--dump-dom"])
        .arg(format!("file://{}#{hash}", page.display()))
        .output()
        .unwrap();
    let d = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        d.contains("data-ready=\"1\""),
        "#{hash}: the page did not finish: {d}"
    );
    assert!(
        d.contains("data-errors=\"0\""),
        "#{hash}: a script error: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    d
}

/// A screenshot of `page#hash` at `width` px is not blank: many colours, much non-white.
fn screenshot(browser: &str, page: &Path, hash: &str, width: u32, out: &Path) {
    let shot = out.join(format!(
        "{}-{width}.png",
        hash.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let s = Command::new(browser)
        .args(FLAGS)
        .args(["--virtual-time-budget=10000"])
        .arg(format!("--window-size={width},1400"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}#{hash}", page.display()))
        .output()
        .unwrap();
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut ink = 0usize;
    let n = (info.width * info.height) as usize;
    for p in buf[..n * px].chunks(px) {
        colours.insert((p[0], p[1], p[2]));
        ink += usize::from(p[0] < 200 || p[1] < 200 || p[2] < 200);
    }
    assert!(
        colours.len() > 30 && ink * 200 > n,
        "{}: looks blank ({} colours, {ink} of {n} pixels inked)",
        shot.display(),
        colours.len()
    );
}

/// Every `href`/`src` of the DOM that names a file, resolved against aggregate/.
fn links(dom: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for part in dom.split(attr).skip(1) {
            let v = part.split('"').next().unwrap_or("");
            if v.starts_with('#') || v.is_empty() || v.starts_with("data:") {
                continue;
            }
            out.push(v.replace("&amp;", "&"));
        }
    }
    out
}

fn assert_links_resolve(dom: &str, agg: &Path, what: &str) -> usize {
    let l = links(dom);
    for v in &l {
        assert!(!v.contains("://"), "{what}: an external link {v}");
        let p = agg.join(v.trim_end_matches('/'));
        assert!(p.exists(), "{what}: {v} does not resolve ({})", p.display());
    }
    l.len()
}

/// The first cell of each row of table `id`.
fn first_column(dom: &str, id: &str) -> Vec<String> {
    let Some(t) = dom.split(&format!("id=\"{id}\"")).nth(1) else {
        return Vec::new();
    };
    let body = t.split("<tbody>").nth(1).unwrap_or("");
    let body = body.split("</tbody>").next().unwrap_or("");
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            let cell = row.split("</td>").next().unwrap_or("");
            // Strip tags.
            let mut text = String::new();
            let mut in_tag = false;
            for c in cell.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            text
        })
        .collect()
}

#[test]
fn the_run_report_loads_sorts_filters_and_compares_in_headless_chromium() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let base = d.path().join("base");
    simulate(&run, "constant-velocity");
    simulate(&base, "idm");
    for r in [&base, &run] {
        let o = Command::new(util::exe("aggregate"))
            .arg(r)
            .arg("-q")
            .output()
            .unwrap();
        assert!(o.status.code().is_some_and(|c| c <= 1));
    }
    let agg = run.join("aggregate");
    let page = agg.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "nothing loaded from the network"
    );
    assert!(agg.join("report/rollouts-0.js").exists());
    // `report` rebuilds the page with the comparison.
    let o = Command::new(env!("CARGO_BIN_EXE_report"))
        .arg(&run)
        .arg("--compare")
        .arg(&base)
        .arg("-q")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let Some(browser) = util::chromium("report: the run report in headless Chromium") else {
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // Overview: rates with intervals, continuous metrics, files.
    let ov = dom(browser, &page, "view=overview");
    assert!(ov.contains("any incident") && ov.contains("95 % interval"));
    let mut n_links = assert_links_resolve(&ov, &agg, "overview");

    // Scenes: sorting by id both ways reverses the rows; a filter keeps only matches.
    let asc = first_column(
        &dom(browser, &page, "view=scenes&sort=id&dir=asc"),
        "scenes-table",
    );
    let desc = first_column(
        &dom(browser, &page, "view=scenes&sort=id&dir=desc"),
        "scenes-table",
    );
    assert_eq!(asc.len(), 6, "{asc:?}");
    let mut rev = desc.clone();
    rev.reverse();
    assert_eq!(asc, rev);
    let mut sorted = asc.clone();
    sorted.sort();
    assert_eq!(asc, sorted);
    let filtered = dom(browser, &page, "view=scenes&q=USA");
    let rows = first_column(&filtered, "scenes-table");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.contains("USA")));
    assert!(filtered.contains("id=\"heat\""), "the heat map");
    n_links += assert_links_resolve(&filtered, &agg, "scenes");

    // Rollouts: every rollout listed, loaded from report/; a filter narrows them.
    let ro = dom(browser, &page, "view=rollouts");
    assert!(ro.contains("data-loaded=\"1\""));
    assert_eq!(first_column(&ro, "rollouts-table").len(), 12);
    let ro_f = dom(browser, &page, "view=rollouts&q=DEU");
    assert_eq!(first_column(&ro_f, "rollouts-table").len(), 2);
    n_links += assert_links_resolve(&ro, &agg, "rollouts");

    // One rollout: its series plotted, its video and files resolve.
    let one = dom(browser, &page, "view=rollout&i=0");
    assert!(one.contains("data-loaded=\"1\"") && one.contains("class=\"series\""));
    assert!(one.contains("<video"), "the rollout's video");
    n_links += assert_links_resolve(&one, &agg, "rollout");

    // Comparison: a row per shared metric, and the same scene's videos side by side.
    let cmp = dom(browser, &page, "view=compare");
    assert!(first_column(&cmp, "compare-table").len() > 10);
    assert!(
        cmp.contains("class=\"pair\"") && cmp.matches("<video").count() >= 2,
        "a scene that got worse, in both runs' videos"
    );
    n_links += assert_links_resolve(&cmp, &agg, "comparison");
    eprintln!("{n_links} links and videos resolved");

    for hash in [
        "view=overview",
        "view=scenes",
        "view=rollouts",
        "view=rollout&i=0",
        "view=compare",
    ] {
        screenshot(browser, &page, hash, 1280, &shots);
    }
    screenshot(browser, &page, "view=overview", 390, &shots);
    screenshot(browser, &page, "view=scenes", 390, &shots);
    eprintln!("screenshots in {}", shots.display());
}
