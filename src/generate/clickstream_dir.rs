//! The clickstream dataset as a folder: the events of [`super::clickstream`], a table of the
//! users, and the page views later deleted as bot traffic, for pipelines that join events with
//! a dimension table and retract events.
//!
//! The files (`DIR/…`):
//! - `clickstream.csv`: exactly what [`write_clickstream_csv`](super::clickstream::write_clickstream_csv)
//!   writes for the same config (so `--events N` is its number of lines).
//! - `users.csv`: `user_id,country,signup_ts,plan`, one line for each of the
//!   [`USERS`] users in id order, whether or not the events mention them. `country` is one of
//!   15 ISO 3166 codes with Zipf popularity (`US` first), `plan` is `free` (75%), `pro` (20%) or
//!   `team` (5%), `signup_ts` lies in the five years before the start time, recent years more
//!   likely. No disorder: it is a table, not a stream.
//! - `deletions.csv`: `deleted_at`, then the columns of `clickstream.csv`, then `op`, always
//!   `delete`. 2% of the users are bots; a quarter of their page views are found out and
//!   deleted, about 0.5% of all views, 1 minute to 2 hours (log-uniform) after the view. Each
//!   line is `deleted_at,` followed by a verbatim copy of a `view` line of `clickstream.csv`
//!   (never a broken one, never twice) and `,delete`, in `deleted_at` order (ties by
//!   `event_id`).
//!
//! Determinism: the output depends only on the [`ClickstreamConfig`]. The events use ChaCha8
//! streams 0 to 2 of the seed; the users table stream 3 and the bots stream 4, so the users
//! table does not depend on the number of events, and the bots' deletions do not depend on
//! `malformed_share` except that broken lines are never deleted.

use super::clickstream::{
    clickstream_schema, write_clickstream_observed, ClickstreamConfig, CLICKSTREAM_HEADER, USERS,
};
use super::{create_in, log_uniform, pick, unit, zipf_cdf, CsvOut};
use crate::record::{Schema, Type};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::io::{self, Write};
use std::path::Path;

/// The schema of `users.csv`, in column order.
pub fn users_schema() -> Schema {
    Schema::new([
        ("user_id", Type::Int),
        ("country", Type::String),
        ("signup_ts", Type::Timestamp),
        ("plan", Type::String),
    ])
}

/// The schema of `deletions.csv`: `deleted_at`, the clickstream columns, then `op`.
pub fn deletions_schema() -> Schema {
    let mut fields: Vec<(String, Type)> = vec![("deleted_at".into(), Type::Timestamp)];
    fields.extend(
        clickstream_schema()
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.ty)),
    );
    fields.push(("op".into(), Type::String));
    Schema::new(fields)
}

/// The header line of `users.csv` (with its newline).
pub const USERS_HEADER: &str = "user_id,country,signup_ts,plan\n";
/// The header line of `deletions.csv` (with its newline).
pub const DELETIONS_HEADER: &str = "deleted_at,event_id,ts,user_id,page,event_type,referrer,op\n";

/// Countries, most users first (Zipf popularity).
const COUNTRIES: [&str; 15] = [
    "US", "IN", "GB", "DE", "BR", "FR", "CA", "JP", "ES", "IT", "MX", "NL", "AU", "PL", "SE",
];
const PLANS: [&str; 3] = ["free", "pro", "team"];
const PLAN_CDF: [f64; 3] = [0.75, 0.95, 1.0];
/// Users sign up at most this long (ms, about five years) before the start time.
const SIGNUP_SPAN_MS: f64 = 157_788_000_000.0;
/// Share of users that are bots, and share of a bot's page views that are deleted.
const BOT_USER_SHARE: f64 = 0.02;
const BOT_VIEW_SHARE: f64 = 0.25;
/// How long after a bot's view it is found out and deleted, ms (log-uniform).
const DETECTION_DELAY_MS: (f64, f64) = (60_000.0, 7_200_000.0);

/// Writes the clickstream dataset into `dir` (created if needed): `clickstream.csv`,
/// `users.csv` and `deletions.csv`.
///
/// # Errors
/// Creating the folder or writing the files.
pub fn write_clickstream_dir(cfg: &ClickstreamConfig, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut events = create_in(dir, "clickstream.csv")?;
    let mut users = create_in(dir, "users.csv")?;
    let mut deletions = create_in(dir, "deletions.csv")?;
    write_clickstream_files(cfg, &mut events, &mut users, &mut deletions)
}

/// Writes the clickstream dataset's three files to the given writers (headers first). See the
/// module docs; the same config always gives the same bytes.
///
/// # Errors
/// Whatever the writers return.
pub fn write_clickstream_files(
    cfg: &ClickstreamConfig,
    events: &mut dyn Write,
    users: &mut dyn Write,
    deletions: &mut dyn Write,
) -> io::Result<()> {
    write_users(cfg, users)?;

    let mut bot_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    bot_rng.set_stream(4);
    let is_bot: Vec<bool> = (0..USERS)
        .map(|_| unit(&mut bot_rng) < BOT_USER_SHARE)
        .collect();
    // (deleted at, event id, line) of the deleted views.
    let mut deleted: Vec<(i64, u64, Vec<u8>)> = Vec::new();
    write_clickstream_observed(cfg, events, &mut |line| {
        if line.view && is_bot[line.user as usize - 1] && unit(&mut bot_rng) < BOT_VIEW_SHARE {
            // Drawn for broken lines too, so the other deletions do not depend on them.
            let delay = log_uniform(&mut bot_rng, DETECTION_DELAY_MS) as i64;
            if !line.damaged {
                deleted.push((line.ts + delay, line.event_id, line.line.to_vec()));
            }
        }
    })?;

    deleted.sort_unstable();
    let mut out = CsvOut::new(deletions, DELETIONS_HEADER);
    debug_assert!(DELETIONS_HEADER.contains(CLICKSTREAM_HEADER.trim_end()));
    for (at, _, line) in &deleted {
        out.ts(*at, None).comma().text(line).text(b",delete");
        out.end_line(None)?;
    }
    out.finish()
}

/// Writes `users.csv`.
fn write_users(cfg: &ClickstreamConfig, out: &mut dyn Write) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(3);
    let country_cdf = zipf_cdf(COUNTRIES.len(), 1.0);
    let mut out = CsvOut::new(out, USERS_HEADER);
    for user in 1..=USERS {
        let country = COUNTRIES[pick(&country_cdf, unit(&mut rng))];
        // Recent signups are more likely: the age is the square of a uniform draw.
        let u = unit(&mut rng);
        let signup = cfg.start_ms - 1 - (u * u * SIGNUP_SPAN_MS) as i64;
        let plan = PLANS[pick(&PLAN_CDF, unit(&mut rng))];
        out.int(user)
            .comma()
            .text(country.as_bytes())
            .comma()
            .ts(signup, None)
            .comma()
            .text(plan.as_bytes());
        out.end_line(None)?;
    }
    out.finish()
}

/// The three files of the clickstream dataset in memory (tests).
pub struct ClickstreamFiles {
    /// `clickstream.csv`.
    pub clickstream: Vec<u8>,
    /// `users.csv`.
    pub users: Vec<u8>,
    /// `deletions.csv`.
    pub deletions: Vec<u8>,
}

/// The clickstream dataset for `cfg` in memory.
pub fn clickstream_files_bytes(cfg: &ClickstreamConfig) -> ClickstreamFiles {
    let mut files = ClickstreamFiles {
        clickstream: Vec::new(),
        users: Vec::new(),
        deletions: Vec::new(),
    };
    write_clickstream_files(
        cfg,
        &mut files.clickstream,
        &mut files.users,
        &mut files.deletions,
    )
    .expect("writing to a Vec cannot fail");
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::clickstream::clickstream_csv_bytes;
    use crate::generate::tests::parse_generated;
    use std::collections::{BTreeMap, HashSet};

    fn cfg(events: u64, seed: u64) -> ClickstreamConfig {
        ClickstreamConfig {
            events,
            seed,
            ..ClickstreamConfig::default()
        }
    }

    /// The data lines of a file (without header and newlines).
    fn lines(file: &[u8]) -> Vec<&[u8]> {
        let mut lines: Vec<&[u8]> = file.split(|&b| b == b'\n').skip(1).collect();
        assert_eq!(lines.pop(), Some(&b""[..]), "ends in a newline");
        lines
    }

    #[test]
    fn same_seed_same_bytes_and_the_same_events() {
        let a = clickstream_files_bytes(&cfg(20_000, 7));
        let b = clickstream_files_bytes(&cfg(20_000, 7));
        assert_eq!(
            (&a.clickstream, &a.users, &a.deletions),
            (&b.clickstream, &b.users, &b.deletions)
        );
        // The events are those of the single-file form.
        assert_eq!(a.clickstream, clickstream_csv_bytes(&cfg(20_000, 7)));
        let c = clickstream_files_bytes(&cfg(20_000, 8));
        assert_ne!(a.users, c.users);
        assert_ne!(a.deletions, c.deletions);
        // The users table does not depend on the number of events.
        assert_eq!(clickstream_files_bytes(&cfg(100, 7)).users, a.users);
        assert!(a.users.starts_with(USERS_HEADER.as_bytes()));
        assert!(a.deletions.starts_with(DELETIONS_HEADER.as_bytes()));
        // Into a folder, the same bytes.
        let dir = tempfile::tempdir().unwrap();
        write_clickstream_dir(&cfg(20_000, 7), dir.path()).unwrap();
        for (name, bytes) in [
            ("clickstream", &a.clickstream),
            ("users", &a.users),
            ("deletions", &a.deletions),
        ] {
            let path = dir.path().join(format!("{name}.csv"));
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{name}");
        }
    }

    #[test]
    fn committed_samples_are_current() {
        // data/clickstream_users.csv and data/clickstream_deletions.csv come from the folder
        // written with the settings of data/clickstream.csv (see data/README.md).
        let files = clickstream_files_bytes(&cfg(30_000, 42));
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        assert!(std::fs::read(data.join("clickstream.csv")).unwrap() == files.clickstream);
        assert!(std::fs::read(data.join("clickstream_users.csv")).unwrap() == files.users);
        assert!(std::fs::read(data.join("clickstream_deletions.csv")).unwrap() == files.deletions);
    }

    #[test]
    fn users_cover_every_user_and_parse() {
        let c = cfg(1000, 1);
        let files = clickstream_files_bytes(&c);
        let b = parse_generated(&files.users, &users_schema(), 1 << 12);
        assert!(b.dead.is_empty());
        assert_eq!(b.len(), USERS as usize);
        let mut countries: BTreeMap<String, u64> = BTreeMap::new();
        let mut plans: BTreeMap<String, u64> = BTreeMap::new();
        for (i, row) in b.rows().enumerate() {
            assert_eq!(row[0].as_i64(), Some(i as i64 + 1));
            *countries
                .entry(row[1].as_str().unwrap().into())
                .or_default() += 1;
            let signup = row[2].as_i64().unwrap();
            assert!(signup < c.start_ms && signup > c.start_ms - 6 * 366 * 86_400_000);
            *plans.entry(row[3].as_str().unwrap().into()).or_default() += 1;
        }
        assert_eq!(countries.len(), 15);
        assert!(countries["US"] > 3 * countries["IN"] / 2 && countries["IN"] > 4 * countries["SE"]);
        let share = |p: &str| plans[p] as f64 / USERS as f64;
        assert!((share("free") - 0.75).abs() < 0.03, "{plans:?}");
        assert!((share("team") - 0.05).abs() < 0.02, "{plans:?}");
        // Every user id of the events is in the table.
        let events = parse_generated(&files.clickstream, &clickstream_schema(), 1 << 16);
        assert!(events
            .rows()
            .all(|row| (1..=i64::from(USERS)).contains(&row[2].as_i64().unwrap())));
    }

    /// Checks the deletions against their clickstream file; returns (deletions, clean views).
    fn check_deletions(files: &ClickstreamFiles) -> (usize, usize) {
        let events = parse_generated(&files.clickstream, &clickstream_schema(), 1 << 16);
        let dead: HashSet<u64> = events.dead.iter().map(|d| d.position).collect();
        // The clean view lines of the events, by their text.
        let views: HashSet<&[u8]> = lines(&files.clickstream)
            .into_iter()
            .enumerate()
            .filter(|(i, line)| {
                !dead.contains(&(*i as u64)) && line.split(|&b| b == b',').nth(4) == Some(b"view")
            })
            .map(|(_, line)| line)
            .collect();
        let deletions = parse_generated(&files.deletions, &deletions_schema(), 1 << 12);
        assert!(deletions.dead.is_empty());
        let mut seen = HashSet::new();
        let mut last_ts = i64::MIN;
        for (line, row) in lines(&files.deletions).into_iter().zip(deletions.rows()) {
            let copy = line.strip_suffix(b",delete").expect("op is delete");
            let comma = copy.iter().position(|&b| b == b',').unwrap();
            let copy = &copy[comma + 1..];
            assert!(views.contains(copy), "{}", String::from_utf8_lossy(line));
            assert!(seen.insert(copy), "deleted twice");
            let (at, ts) = (row[0].as_i64().unwrap(), row[2].as_i64().unwrap());
            assert!(at >= last_ts, "not in deleted_at order");
            assert!(
                (60_000..=7_200_001).contains(&(at - ts)),
                "deleted {} ms after the view",
                at - ts
            );
            last_ts = at;
            assert_eq!(row[7].as_str(), Some("delete"));
        }
        (deletions.len(), views.len())
    }

    #[test]
    fn deletions_are_copies_of_views() {
        let files = clickstream_files_bytes(&cfg(200_000, 1));
        let (deleted, views) = check_deletions(&files);
        let share = deleted as f64 / views as f64;
        assert!((0.003..0.008).contains(&share), "{share}");
        // Bot traffic: the deletions come from a few users.
        let b = parse_generated(&files.deletions, &deletions_schema(), 1 << 12);
        let users: HashSet<i64> = b.rows().map(|r| r[3].as_i64().unwrap()).collect();
        assert!(users.len() < 200 && users.len() > 20, "{}", users.len());
    }

    #[test]
    fn malformed_lines_stay_in_the_events() {
        let dirty = ClickstreamConfig {
            malformed_share: 0.05,
            ..cfg(100_000, 5)
        };
        let files = clickstream_files_bytes(&dirty);
        let clean = clickstream_files_bytes(&cfg(100_000, 5));
        assert_eq!(files.clickstream, clickstream_csv_bytes(&dirty));
        assert_eq!(files.users, clean.users);
        let events = parse_generated(&files.clickstream, &clickstream_schema(), 1 << 16);
        assert!(events.dead.len() > 4000);
        check_deletions(&files);
        // The same bots: the dirty deletions are the clean ones less the broken lines.
        let clean_deletions: HashSet<&[u8]> = lines(&clean.deletions).into_iter().collect();
        let dirty_deletions = lines(&files.deletions);
        assert!(dirty_deletions.iter().all(|l| clean_deletions.contains(l)));
        assert!(dirty_deletions.len() as f64 > 0.9 * clean_deletions.len() as f64);
    }
}
