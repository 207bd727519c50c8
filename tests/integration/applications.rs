//! The three application pipelines (pipelines/social_feed.toml, ecommerce_orders.toml,
//! clickstream_analytics.toml), run unchanged on generated datasets:
//! - every output equals an independent, straightforward computation over the same files
//!   (snapshot files directly, updates files consolidated);
//! - every output file is byte-identical at 1, 2 and 4 workers;
//! - an unfollow, a cancellation and a deleted page view each write the expected -1 rows.

use super::support::{root, run_pipeline};
use eventflow::generate::{clickstream, clickstream_dir, ecommerce, social};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

type Rows = Vec<Vec<String>>;

/// A run folder laid out like the repository: `pipelines/NAME.toml` (copied verbatim) and
/// `data/...`, so the pipeline's relative input paths work unchanged.
fn workspace(pipeline: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let file = dir
        .path()
        .join("pipelines")
        .join(format!("{pipeline}.toml"));
    std::fs::copy(
        root().join("pipelines").join(format!("{pipeline}.toml")),
        &file,
    )
    .unwrap();
    (dir, file)
}

/// Runs at 1, 2 and 4 workers, checks that every output file is byte-identical, and returns
/// the 1-worker output folder.
fn run_everywhere(file: &Path, base: &Path) -> PathBuf {
    let mut first: Option<BTreeMap<String, Vec<u8>>> = None;
    for workers in [1, 2, 4] {
        let out = base.join(format!("out{workers}"));
        let summary = run_pipeline(file, workers, &out);
        assert_eq!(summary.records_dead_lettered, 0, "{summary:#?}");
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&out).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // summary.json has timings; `.eventflow/` is the run's recovery state.
            if name != "summary.json" && path.is_file() {
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
        match &first {
            None => first = Some(files),
            Some(f) => {
                assert_eq!(
                    f.keys().collect::<Vec<_>>(),
                    files.keys().collect::<Vec<_>>()
                );
                for (name, bytes) in f {
                    assert!(bytes == &files[name], "{name} differs at {workers} workers");
                }
            }
        }
    }
    base.join("out1")
}

fn csv_rows(path: &Path) -> (Vec<String>, Rows) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// Rows of a file by column name, as maps.
fn records(path: &Path) -> Vec<HashMap<String, String>> {
    let (header, rows) = csv_rows(path);
    rows.into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

/// Normalizes numbers so that `174.0` and `174.00` compare equal.
fn norm(v: &str) -> String {
    match v.parse::<f64>() {
        Ok(x) if v.contains('.') => format!("{x:.6}"),
        _ => v.to_string(),
    }
}

fn normalized(rows: Rows) -> Rows {
    let mut rows: Rows = rows
        .into_iter()
        .map(|r| r.iter().map(|v| norm(v)).collect())
        .collect();
    rows.sort();
    rows
}

/// An updates file consolidated into the rows it holds at the end.
fn consolidated(path: &Path) -> Rows {
    let (_, rows) = csv_rows(path);
    let mut sums: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for mut row in rows {
        let diff: i64 = row.pop().unwrap().parse().unwrap();
        row.pop();
        *sums.entry(row).or_default() += diff;
    }
    let mut out = Vec::new();
    for (row, n) in sums {
        assert!(n >= 0, "{}: {row:?} ends at {n}", path.display());
        out.extend(std::iter::repeat_n(row, n as usize));
    }
    normalized(out)
}

fn snapshot(path: &Path) -> Rows {
    normalized(csv_rows(path).1)
}

/// The rows of an updates file with diff -1, as (fields without time and diff, time).
fn retractions(path: &Path) -> Vec<(Vec<String>, String)> {
    let (_, rows) = csv_rows(path);
    rows.into_iter()
        .filter(|r| r.last().map(String::as_str) == Some("-1"))
        .map(|mut r| {
            r.pop();
            let time = r.pop().unwrap();
            (r, time)
        })
        .collect()
}

fn ms(iso: &str) -> i64 {
    eventflow::record::time::parse_timestamp(iso).unwrap()
}

fn iso(ms: i64) -> String {
    eventflow::record::time::iso8601(ms)
}

fn trunc(t: i64, unit: i64) -> i64 {
    t - t.rem_euclid(unit)
}

/// The first k rows per group, by count descending then name ascending, with ranks.
fn top(
    groups: BTreeMap<String, BTreeMap<String, i64>>,
    k: usize,
) -> Vec<(String, String, i64, usize)> {
    let mut out = Vec::new();
    for (group, counts) in groups {
        let mut items: Vec<(String, i64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (i, (name, n)) in items.into_iter().take(k).enumerate() {
            out.push((group.clone(), name, n, i + 1));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// social_feed

fn social_expected(data: &Path) -> (Rows, Rows, Rows) {
    let mut edges: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in records(&data.join("follows.csv")) {
        let d = if r["op"] == "follow" { 1 } else { -1 };
        *edges
            .entry((r["follower"].clone(), r["followee"].clone()))
            .or_default() += d;
    }
    let mut followers: HashMap<String, Vec<String>> = HashMap::new();
    for ((f, a), n) in &edges {
        assert!((0..=1).contains(n), "edge {f}->{a} has multiplicity {n}");
        if *n == 1 {
            followers.entry(a.clone()).or_default().push(f.clone());
        }
    }
    let posts = records(&data.join("posts.csv"));
    let mut feed = Vec::new();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut tags: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for p in &posts {
        for f in followers.get(&p["author"]).into_iter().flatten() {
            feed.push(vec![
                f.clone(),
                p["post_id"].clone(),
                p["author"].clone(),
                p["ts"].clone(),
                p["hashtag"].clone(),
            ]);
            *counts.entry(f.clone()).or_default() += 1;
        }
        let window = trunc(ms(&p["ts"]), 300_000);
        *tags
            .entry(iso(window))
            .or_default()
            .entry(p["hashtag"].clone())
            .or_default() += 1;
    }
    let notifications = counts
        .into_iter()
        .map(|(u, n)| vec![u, n.to_string()])
        .collect();
    let trending = top(tags, 10)
        .into_iter()
        .map(|(w, tag, n, rank)| {
            vec![
                w.clone(),
                iso(ms(&w) + 300_000),
                tag,
                n.to_string(),
                rank.to_string(),
            ]
        })
        .collect();
    (
        normalized(feed),
        normalized(notifications),
        normalized(trending),
    )
}

#[test]
fn social_feed_matches_a_straightforward_computation() {
    let (dir, file) = workspace("social_feed");
    let data = dir.path().join("data/social");
    let cfg = social::SocialConfig {
        events: 20_000,
        seed: 7,
        ..Default::default()
    };
    social::write_social(&cfg, &data).unwrap();
    let out = run_everywhere(&file, dir.path());
    let (feed, notifications, trending) = social_expected(&data);
    assert!(feed.len() > 1000, "a non-trivial feed: {}", feed.len());
    assert_eq!(consolidated(&out.join("feed.csv")), feed);
    assert_eq!(snapshot(&out.join("notifications.csv")), notifications);
    assert_eq!(consolidated(&out.join("trending.csv")), trending);
}

// ---------------------------------------------------------------------------------------------
// ecommerce_orders

fn ecommerce_expected(data: &Path) -> (Rows, Rows, Rows, Rows) {
    let paid: BTreeSet<String> = records(&data.join("payments.csv"))
        .into_iter()
        .map(|r| r["order_id"].clone())
        .collect();
    let cancelled: BTreeSet<String> = records(&data.join("cancellations.csv"))
        .into_iter()
        .map(|r| r["order_id"].clone())
        .collect();
    let mut status = Vec::new();
    let mut revenue: BTreeMap<(String, i64), (f64, i64)> = BTreeMap::new();
    let mut stock: BTreeMap<String, i64> = BTreeMap::new();
    for o in records(&data.join("orders.csv")) {
        let id = &o["order_id"];
        let s = if cancelled.contains(id) {
            "cancelled"
        } else if paid.contains(id) {
            "paid"
        } else {
            "placed"
        };
        status.push(vec![
            id.clone(),
            o["customer_id"].clone(),
            o["category"].clone(),
            o["amount"].clone(),
            s.to_string(),
        ]);
        if s != "cancelled" {
            let hour = trunc(ms(&o["ts"]), 3_600_000);
            let e = revenue.entry((o["category"].clone(), hour)).or_default();
            e.0 += o["amount"].parse::<f64>().unwrap();
            e.1 += 1;
            *stock.entry(o["product"].clone()).or_default() -=
                o["quantity"].parse::<i64>().unwrap();
        }
    }
    for m in records(&data.join("inventory.csv")) {
        *stock.entry(m["product"].clone()).or_default() += m["delta"].parse::<i64>().unwrap();
    }
    let revenue = revenue
        .into_iter()
        .map(|((c, h), (sum, n))| vec![c, iso(h), format!("{sum:.2}"), n.to_string()])
        .collect();
    let low = stock
        .iter()
        .filter(|(_, s)| **s < 20)
        .map(|(p, s)| vec![p.clone(), s.to_string()])
        .collect();
    let stock = stock
        .into_iter()
        .map(|(p, s)| vec![p, s.to_string()])
        .collect();
    (
        normalized(status),
        normalized(revenue),
        normalized(stock),
        normalized(low),
    )
}

#[test]
fn ecommerce_orders_matches_a_straightforward_computation() {
    let (dir, file) = workspace("ecommerce_orders");
    let data = dir.path().join("data/ecommerce");
    let cfg = ecommerce::EcommerceConfig {
        events: 20_000,
        seed: 7,
        ..Default::default()
    };
    ecommerce::write_ecommerce(&cfg, &data).unwrap();
    let out = run_everywhere(&file, dir.path());
    let (status, revenue, stock, low) = ecommerce_expected(&data);
    assert_eq!(snapshot(&out.join("order_status.csv")), status);
    assert_eq!(consolidated(&out.join("order_status_changes.csv")), status);
    assert_eq!(consolidated(&out.join("revenue.csv")), revenue);
    assert_eq!(snapshot(&out.join("stock.csv")), stock);
    assert_eq!(consolidated(&out.join("low_stock_alerts.csv")), low);
}

// ---------------------------------------------------------------------------------------------
// clickstream_analytics

fn write_clickstream(dir: &Path, events: u64, seed: u64) {
    let gen = dir.join("gen");
    let cfg = clickstream::ClickstreamConfig {
        events,
        seed,
        ..Default::default()
    };
    clickstream_dir::write_clickstream_dir(&cfg, &gen).unwrap();
    let data = dir.join("data");
    for (from, to) in [
        ("clickstream.csv", "clickstream.csv"),
        ("users.csv", "clickstream_users.csv"),
        ("deletions.csv", "clickstream_deletions.csv"),
    ] {
        std::fs::rename(gen.join(from), data.join(to)).unwrap();
    }
}

fn clickstream_expected(data: &Path) -> (Rows, Rows, Rows, Rows) {
    let fields = [
        "event_id",
        "ts",
        "user_id",
        "page",
        "event_type",
        "referrer",
    ];
    let key = |r: &HashMap<String, String>| fields.map(|f| r[f].clone());
    let deleted: BTreeSet<[String; 6]> = records(&data.join("clickstream_deletions.csv"))
        .iter()
        .map(key)
        .collect();
    let plans: HashMap<String, String> = records(&data.join("clickstream_users.csv"))
        .into_iter()
        .map(|r| (r["user_id"].clone(), r["plan"].clone()))
        .collect();
    let mut views: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut visitors: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut hourly: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    // (day, plan) → users per step
    let mut funnel: BTreeMap<(i64, String), [BTreeSet<String>; 3]> = BTreeMap::new();
    let mut removed = 0;
    for r in records(&data.join("clickstream.csv")) {
        if deleted.contains(&key(&r)) {
            removed += 1;
            continue;
        }
        let t = ms(&r["ts"]);
        let user = r["user_id"].clone();
        if r["event_type"] == "view" {
            *views
                .entry((r["page"].clone(), trunc(t, 60_000)))
                .or_default() += 1;
            visitors
                .entry(trunc(t, 60_000))
                .or_default()
                .insert(user.clone());
            *hourly
                .entry(iso(trunc(t, 3_600_000)))
                .or_default()
                .entry(r["page"].clone())
                .or_default() += 1;
        }
        let plan = plans
            .get(&user)
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        let steps = funnel.entry((trunc(t, 86_400_000), plan)).or_default();
        match r["event_type"].as_str() {
            "view" => steps[0].insert(user),
            "cart" => steps[1].insert(user),
            "purchase" => steps[2].insert(user),
            _ => false,
        };
    }
    assert_eq!(
        removed,
        deleted.len(),
        "every deletion names a view of the file"
    );
    let views = views
        .into_iter()
        .map(|((p, m), n)| vec![p, iso(m), n.to_string()])
        .collect();
    let visitors = visitors
        .into_iter()
        .map(|(m, u)| vec![iso(m), u.len().to_string()])
        .collect();
    let top_pages = top(hourly, 10)
        .into_iter()
        .map(|(h, p, n, rank)| vec![h, p, n.to_string(), rank.to_string()])
        .collect();
    let funnel = funnel
        .into_iter()
        .map(|((day, plan), [v, c, p])| {
            let pct = if v.is_empty() {
                String::new()
            } else {
                let x = 100.0 * p.len() as f64 / v.len() as f64;
                format!("{:.2}", (x * 100.0).round() / 100.0)
            };
            vec![
                iso(day),
                plan,
                v.len().to_string(),
                c.len().to_string(),
                p.len().to_string(),
                pct,
            ]
        })
        .collect();
    (
        normalized(views),
        normalized(visitors),
        normalized(top_pages),
        normalized(funnel),
    )
}

#[test]
fn clickstream_analytics_matches_a_straightforward_computation() {
    let (dir, file) = workspace("clickstream_analytics");
    write_clickstream(dir.path(), 40_000, 7);
    let out = run_everywhere(&file, dir.path());
    let (views, visitors, top_pages, funnel) = clickstream_expected(&dir.path().join("data"));
    assert_eq!(consolidated(&out.join("page_views.csv")), views);
    assert_eq!(consolidated(&out.join("visitors.csv")), visitors);
    assert_eq!(consolidated(&out.join("top_pages.csv")), top_pages);
    assert_eq!(snapshot(&out.join("funnel.csv")), funnel);
}

// ---------------------------------------------------------------------------------------------
// -1 rows from retractions, on small hand-written inputs

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_unfollow_retracts_the_authors_posts_from_the_feed() {
    let (dir, file) = workspace("social_feed");
    let data = dir.path().join("data/social");
    write(
        &data.join("follows.csv"),
        "ts,follower,followee,op\n\
         2024-01-01T00:00:00.000Z,1,7,follow\n\
         2024-01-01T00:00:01.000Z,2,7,follow\n\
         2024-01-01T00:01:00.000Z,1,7,unfollow\n",
    );
    write(
        &data.join("posts.csv"),
        "post_id,ts,author,hashtag,text\n\
         10,2024-01-01T00:00:10.000Z,7,#rust,hello\n\
         11,2024-01-01T00:00:20.000Z,7,#rust,again\n\
         12,2024-01-01T00:02:00.000Z,7,#go,later\n",
    );
    let out = run_everywhere(&file, dir.path());
    let got = retractions(&out.join("feed.csv"));
    let row = |post: &str, ts: &str| {
        let f = [post, "7", ts, "#rust"];
        (
            std::iter::once("1")
                .chain(f)
                .map(String::from)
                .collect::<Vec<_>>(),
            "2024-01-01T00:01:00.000Z".to_string(),
        )
    };
    assert_eq!(
        got,
        vec![
            row("10", "2024-01-01T00:00:10.000Z"),
            row("11", "2024-01-01T00:00:20.000Z")
        ]
    );
    // User 2 still follows 7 and sees all three posts; user 1 sees none.
    let feed = consolidated(&out.join("feed.csv"));
    assert_eq!(feed.len(), 3);
    assert!(feed.iter().all(|r| r[0] == "2"));
}

#[test]
fn a_cancellation_retracts_its_revenue() {
    let (dir, file) = workspace("ecommerce_orders");
    let data = dir.path().join("data/ecommerce");
    write(
        &data.join("orders.csv"),
        "order_id,ts,customer_id,product,category,quantity,amount\n\
         1,2024-01-01T00:00:00.000Z,5,Lamp,home,1,40.00\n\
         2,2024-01-01T00:00:30.000Z,6,Lamp,home,2,80.00\n",
    );
    write(
        &data.join("payments.csv"),
        "payment_id,ts,order_id,amount,method\n1,2024-01-01T00:00:05.000Z,1,40.00,card\n",
    );
    write(
        &data.join("cancellations.csv"),
        "order_id,ts,reason\n2,2024-01-01T00:05:00.000Z,customer_request\n",
    );
    write(
        &data.join("inventory.csv"),
        "ts,product,delta,reason\n2024-01-01T00:00:00.000Z,Lamp,100,restock\n",
    );
    let out = run_everywhere(&file, dir.path());
    let at = "2024-01-01T00:05:00.000Z".to_string();
    let revenue = retractions(&out.join("revenue.csv"));
    let hour = "2024-01-01T00:00:00.000Z";
    assert!(
        revenue.contains(&(
            vec!["home".into(), hour.into(), "120.0".into(), "2".into()],
            at.clone()
        )),
        "{revenue:?}"
    );
    let (_, updates) = csv_rows(&out.join("revenue.csv"));
    assert!(updates.contains(&vec![
        "home".to_string(),
        hour.into(),
        "40.0".into(),
        "1".into(),
        at.clone(),
        "1".into()
    ]));
    // The order's status goes from placed to cancelled; its two lamps return to stock.
    let status = retractions(&out.join("order_status_changes.csv"));
    assert!(status.contains(&(
        vec![
            "2".into(),
            "6".into(),
            "home".into(),
            "80.0".into(),
            "placed".into()
        ],
        at.clone()
    )));
    assert_eq!(
        snapshot(&out.join("stock.csv")),
        vec![vec!["Lamp".to_string(), "99".into()]]
    );
}

#[test]
fn a_deleted_page_view_retracts_its_counts() {
    let (dir, file) = workspace("clickstream_analytics");
    let data = dir.path().join("data");
    write(
        &data.join("clickstream.csv"),
        "event_id,ts,user_id,page,event_type,referrer\n\
         1,2024-01-01T00:00:01.000Z,3,/home,view,\n\
         2,2024-01-01T00:00:02.000Z,4,/home,view,\n\
         3,2024-01-01T00:00:03.000Z,3,/cart,cart,/home\n",
    );
    write(
        &data.join("clickstream_deletions.csv"),
        "deleted_at,event_id,ts,user_id,page,event_type,referrer,op\n\
         2024-01-01T00:10:00.000Z,2,2024-01-01T00:00:02.000Z,4,/home,view,,delete\n",
    );
    write(
        &data.join("clickstream_users.csv"),
        "user_id,country,signup_ts,plan\n3,US,2023-01-01T00:00:00Z,free\n4,DE,2023-01-01T00:00:00Z,pro\n",
    );
    let out = run_everywhere(&file, dir.path());
    let at = "2024-01-01T00:10:00.000Z".to_string();
    let minute = "2024-01-01T00:00:00.000Z".to_string();
    let at_deletion = |file: &str| {
        retractions(&out.join(file))
            .into_iter()
            .filter(|(_, t)| *t == at)
            .map(|(r, _)| r)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        at_deletion("page_views.csv"),
        vec![vec!["/home".to_string(), minute.clone(), "2".into()]]
    );
    assert_eq!(
        at_deletion("visitors.csv"),
        vec![vec![minute.clone(), "2".to_string()]]
    );
    assert_eq!(
        consolidated(&out.join("page_views.csv")),
        vec![vec!["/home".to_string(), minute, "1".into()]]
    );
}
