//! A deterministic generator of a small social network: who follows whom (`follows.csv`) and
//! what they post (`posts.csv`), for the social-feed pipeline, its tests and benchmarks.
//!
//! Why it exists: a feed is a join of posts with a follow graph that changes over time, so the
//! data needs follows *and retractions of follows* (unfollows) that are always consistent — an
//! unfollow only for an edge that is followed at that point, never a second follow of a
//! followed edge — plus the skew of real networks: a few celebrities followed by many, popular
//! users posting more, hashtags with a long tail and short-lived trends.
//!
//! The model: `users` = `events / 10` (at least 1,000, at most 2,000,000; see
//! [`users`]) users with ids `1..=users`. Low ids are the popular users:
//! followees are drawn with Zipf popularity (user 1 is the biggest celebrity), authors with a
//! milder Zipf skew over a permutation of the ids (posting often is independent of being
//! followed, see `scatter`), followers with a skew towards low ids too (active users follow more).
//! One clock drives both files; each step is one line: a follow op with chance 30% overall
//! (90% during the first 5% of the steps, a burst of follows so feeds fill up early), otherwise
//! a post. 14% of follows are scheduled to be undone 20 s to 20 min later (log-uniform); a
//! follow op whose slot comes after a scheduled unfollow is due writes that unfollow, so about
//! 10–14% of follows are followed by their unfollow in the file (fewer in short files, whose
//! end cuts off some). An unfollowed edge may be followed again later. Hashtags are 200 tags
//! (`#rust`, `#rusttips`, …) with Zipf popularity; now and then a minor tag trends for 1 to 10
//! minutes, taking 15% of the posts. Posts' text is 3 to 8 lowercase words from a fixed
//! list (no commas or quotes). Traffic is about 26 lines per second with bursts (hundreds of
//! lines a few ms apart), so 30,000 events span about 20 minutes.
//!
//! `--events N`: exactly N data lines in total, split by the draw above (about 30% follows,
//! 70% posts).
//!
//! Disorder: lines are written in arrival order; a quarter of them carry an event time `ts` up
//! to `max_disorder_ms` (default 5 s) before their arrival, so in each file a `ts` is never more
//! than `max_disorder_ms` behind the largest `ts` written before it. An unfollow is scheduled
//! more than `max_disorder_ms` after its follow (and a re-follow more than that after the
//! unfollow), so along an edge the ops alternate in `ts` order as well as in file order.
//!
//! Malformed records: with `malformed_share > 0`, that share of lines is broken (wrong column
//! count, unparsable id or timestamp), drawn from a separate stream so the other lines are those
//! of the clean file. Lines that a later line depends on — a follow that is later unfollowed and
//! the unfollow itself — are never broken, so the live records still alternate per edge; the
//! damage drawn for such a line goes to the next follow that is kept, so the share holds.
//!
//! Determinism: the output depends only on the [`SocialConfig`]: ChaCha8 stream 0 for the
//! network, stream 1 for the damage, read through `next_u64` with the conversions of
//! [`super`].

use super::{
    below, create_in, draw_lag, log_uniform, pick, unit, zipf_cdf, BurstyClock, CsvOut, Damage,
};
use crate::record::{Schema, Type};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::path::Path;

/// Settings of the social generator (up to 5 s of disorder by default).
pub type SocialConfig = super::GenConfig<5_000>;

/// Number of users of a social dataset: ids are `1..=users(cfg)`. Grows with `events` so that large files do not
/// run out of new edges to follow.
pub fn users(cfg: &SocialConfig) -> u32 {
    (cfg.events / EVENTS_PER_USER).clamp(MIN_USERS, MAX_USERS) as u32
}

/// The schema of `follows.csv`, in column order.
pub fn follows_schema() -> Schema {
    Schema::new([
        ("ts", Type::Timestamp),
        ("follower", Type::Int),
        ("followee", Type::Int),
        ("op", Type::String),
    ])
}

/// The schema of `posts.csv`, in column order.
pub fn posts_schema() -> Schema {
    Schema::new([
        ("post_id", Type::Int),
        ("ts", Type::Timestamp),
        ("author", Type::Int),
        ("hashtag", Type::String),
        ("text", Type::String),
    ])
}

/// The header line of `follows.csv` (with its newline).
pub const FOLLOWS_HEADER: &str = "ts,follower,followee,op\n";
/// The header line of `posts.csv` (with its newline).
pub const POSTS_HEADER: &str = "post_id,ts,author,hashtag,text\n";

const EVENTS_PER_USER: u64 = 10;
const MIN_USERS: u64 = 1_000;
const MAX_USERS: u64 = 2_000_000;
/// Maps a popularity rank to a user id, a bijection on `0..users` that spreads ranks apart.
///
/// Followee popularity uses ids directly (user 1 is the most followed), authors go through this
/// permutation, so how often someone posts is independent of how many followers they have. If
/// the two were the same ranking, the most followed user would also post the most and the feed
/// would grow with the square of the skew: at 1M events, 150 feed rows per post instead of a few.
fn scatter(rank: u64, users: u64) -> u64 {
    // A stride coprime with `users` makes `rank * stride mod users` a permutation.
    let mut stride = 7_919u64;
    while gcd(stride, users) != 1 {
        stride += 2;
    }
    (rank * stride + users / 3) % users
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zipf exponents of followee, author and hashtag popularity.
const FOLLOWEE_SKEW: f64 = 0.9;
const AUTHOR_SKEW: f64 = 0.7;
const TAG_SKEW: f64 = 1.0;
/// Share of all steps that are follow ops.
const FOLLOW_SHARE: f64 = 0.30;
/// The first steps (this share of them) are mostly follows, so feeds are not empty.
const WARMUP_SHARE: f64 = 0.05;
const WARMUP_FOLLOW_CHANCE: f64 = 0.9;
/// Chance that a follow is undone later, and how much later (ms, log-uniform).
const UNFOLLOW_CHANCE: f64 = 0.14;
const UNFOLLOW_AFTER_MS: (f64, f64) = (20_000.0, 1_200_000.0);
/// Draws of a new edge before a follow slot gives up and becomes a post.
const FOLLOW_TRIES: u32 = 16;
/// Mean gap between lines outside and inside bursts (ms).
const MEAN_GAP_MS: f64 = 60.0;
const BURST_GAP_MS: f64 = 3.0;
/// Chance that a line arrives late (its `ts` before its arrival).
const DELAY_CHANCE: f64 = 0.25;
/// Trending tags: chance per post (outside a trend) that one starts, its length (ms,
/// log-uniform), the share of posts it takes, and the popularity rank it is drawn from and
/// above (a trend is a minor tag's moment).
const TREND_CHANCE: f64 = 1.0 / 1500.0;
const TREND_MS: (f64, f64) = (60_000.0, 600_000.0);
const TREND_SHARE: f64 = 0.15;
const TREND_MIN_RANK: u64 = 10;

/// Hashtag topics; the tags are each topic plain, then with `tips`, `life` and `2024`, in
/// popularity order (all plain tags first).
const TOPICS: [&str; 50] = [
    "rust",
    "music",
    "travel",
    "food",
    "coffee",
    "fitness",
    "art",
    "photography",
    "gaming",
    "football",
    "tennis",
    "books",
    "movies",
    "science",
    "space",
    "climate",
    "design",
    "fashion",
    "startup",
    "crypto",
    "ai",
    "cats",
    "dogs",
    "garden",
    "cooking",
    "baking",
    "running",
    "cycling",
    "hiking",
    "yoga",
    "jazz",
    "anime",
    "history",
    "math",
    "coding",
    "linux",
    "opensource",
    "news",
    "politics",
    "health",
    "nature",
    "beach",
    "winter",
    "summer",
    "weekend",
    "mondays",
    "diy",
    "cars",
    "memes",
    "python",
];
const TAG_FORMS: [&str; 4] = ["", "tips", "life", "2024"];
/// Number of hashtags.
pub const TAGS: usize = TOPICS.len() * TAG_FORMS.len();

/// The first word of a post, and the rest.
const OPENERS: [&str; 12] = [
    "just", "finally", "loving", "today", "new", "honestly", "morning", "quick", "big", "so",
    "another", "weekend",
];
const WORDS: [&str; 48] = [
    "the", "a", "my", "this", "our", "new", "great", "little", "best", "first", "last", "long",
    "day", "week", "project", "release", "trip", "photo", "song", "game", "recipe", "book", "run",
    "idea", "team", "city", "weather", "coffee", "build", "talk", "update", "view", "shipped",
    "tried", "found", "made", "watched", "started", "finished", "learned", "love", "with", "and",
    "for", "at", "on", "again", "today",
];

/// A follow op to write.
enum FollowOp {
    /// A new follow; `kept` if it is never undone (only those lines may be damaged).
    Follow {
        edge: u64,
        kept: bool,
    },
    Unfollow {
        edge: u64,
    },
}

/// The follow graph: which edges are followed, and the unfollows scheduled.
struct Graph {
    users: u32,
    followee_cdf: Vec<f64>,
    /// Per edge (`follower << 32 | followee`): the clock after which it may be followed
    /// (again); `i64::MAX` while it is followed. Edges never followed are absent.
    free_after: hashbrown::HashMap<u64, i64, foldhash::fast::FixedState>,
    /// (clock at which it is due, edge).
    unfollows: BinaryHeap<Reverse<(i64, u64)>>,
    max_disorder: i64,
}

impl Graph {
    /// The op for a follow slot at `clock`: a due unfollow, else a new follow of a free edge,
    /// else nothing (the slot becomes a post).
    fn next_op(&mut self, rng: &mut ChaCha8Rng, clock: i64) -> Option<FollowOp> {
        if let Some(&Reverse((due, edge))) = self.unfollows.peek() {
            if due <= clock {
                self.unfollows.pop();
                // A re-follow must come later than this unfollow in event time too.
                self.free_after.insert(edge, clock + self.max_disorder);
                return Some(FollowOp::Unfollow { edge });
            }
        }
        for _ in 0..FOLLOW_TRIES {
            let u = unit(rng);
            let follower = 1 + ((u * u * self.users as f64) as u32).min(self.users - 1);
            let followee = 1 + pick(&self.followee_cdf, unit(rng)) as u32;
            if follower == followee {
                continue;
            }
            let edge = u64::from(follower) << 32 | u64::from(followee);
            if self.free_after.get(&edge).is_some_and(|&t| clock <= t) {
                continue;
            }
            self.free_after.insert(edge, i64::MAX);
            let kept = unit(rng) >= UNFOLLOW_CHANCE;
            if !kept {
                // Past the disorder bound, so the unfollow's `ts` is after the follow's.
                let after = (log_uniform(rng, UNFOLLOW_AFTER_MS) as i64).max(self.max_disorder + 1);
                self.unfollows.push(Reverse((clock + after, edge)));
            }
            return Some(FollowOp::Follow { edge, kept });
        }
        None
    }
}

/// The 200 hashtags as CSV fields, in popularity order.
fn tag_names() -> Vec<Vec<u8>> {
    TAG_FORMS
        .iter()
        .flat_map(|form| {
            TOPICS
                .iter()
                .map(move |topic| format!("#{topic}{form}").into_bytes())
        })
        .collect()
}

/// Writes the social dataset into `dir` (created if needed): `follows.csv` and `posts.csv`.
///
/// # Errors
/// Creating the folder or writing the files.
pub fn write_social(cfg: &SocialConfig, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut follows = create_in(dir, "follows.csv")?;
    let mut posts = create_in(dir, "posts.csv")?;
    write_social_to(cfg, &mut follows, &mut posts)
}

/// Writes the social dataset's two files to the given writers (headers first). See the module
/// docs for what the data looks like; the same config always gives the same bytes.
///
/// # Errors
/// Whatever the writers return.
pub fn write_social_to(
    cfg: &SocialConfig,
    follows_out: &mut dyn Write,
    posts_out: &mut dyn Write,
) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut damage_rng = rng.clone();
    damage_rng.set_stream(1);
    let malformed_share = cfg.malformed_share.clamp(0.0, 1.0);
    let max_disorder = cfg.max_disorder_ms.max(0);
    let users = users(cfg);
    let mut graph = Graph {
        users,
        followee_cdf: zipf_cdf(users as usize, FOLLOWEE_SKEW),
        free_after: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::default()),
        unfollows: BinaryHeap::new(),
        max_disorder,
    };
    let author_cdf = zipf_cdf(users as usize, AUTHOR_SKEW);
    let tags = tag_names();
    let tag_cdf = zipf_cdf(tags.len(), TAG_SKEW);
    let warmup = (cfg.events as f64 * WARMUP_SHARE) as u64;
    let follow_chance = (FOLLOW_SHARE - WARMUP_SHARE * WARMUP_FOLLOW_CHANCE) / (1.0 - WARMUP_SHARE);

    let mut follows = CsvOut::new(follows_out, FOLLOWS_HEADER);
    let mut posts = CsvOut::new(posts_out, POSTS_HEADER);
    let mut event_clock = BurstyClock::new(cfg.start_ms, MEAN_GAP_MS, BURST_GAP_MS);
    let mut post_id = 0u64;
    // (tag index, clock until which it trends).
    let mut trend: Option<(usize, i64)> = None;
    // Damage drawn for a follow line that must not be broken, waiting for the next that may.
    let mut carried: Option<Damage> = None;

    for step in 0..cfg.events {
        // Draw everything in a fixed order, so the stream does not depend on the output.
        let clock = event_clock.advance(&mut rng);
        let ts = clock - draw_lag(&mut rng, DELAY_CHANCE, max_disorder).min(clock - cfg.start_ms);
        let damage = Damage::draw(&mut damage_rng, malformed_share);
        let chance = if step < warmup {
            WARMUP_FOLLOW_CHANCE
        } else {
            follow_chance
        };
        let op = if unit(&mut rng) < chance {
            graph.next_op(&mut rng, clock)
        } else {
            None
        };
        if let Some(op) = op {
            // Damage meant for a line that must stay whole moves to the next kept follow.
            let (edge, name, damage) = match op {
                FollowOp::Follow { edge, kept: true } => {
                    (edge, "follow", damage.or_else(|| carried.take()))
                }
                FollowOp::Follow { edge, kept: false } => {
                    carried = carried.or(damage);
                    (edge, "follow", None)
                }
                FollowOp::Unfollow { edge } => {
                    carried = carried.or(damage);
                    (edge, "unfollow", None)
                }
            };
            follows
                .ts(ts, damage)
                .comma()
                .int_or_bad(edge >> 32, damage)
                .comma()
                .int(edge & 0xffff_ffff)
                .comma()
                .text(name.as_bytes());
            follows.end_line(damage)?;
            continue;
        }

        let author = 1 + scatter(pick(&author_cdf, unit(&mut rng)) as u64, u64::from(users));
        if trend.is_some_and(|(_, until)| clock > until) {
            trend = None;
        }
        if trend.is_none() && unit(&mut rng) < TREND_CHANCE {
            let tag = TREND_MIN_RANK + below(&mut rng, tags.len() as u64 - TREND_MIN_RANK);
            let until = clock + log_uniform(&mut rng, TREND_MS) as i64;
            trend = Some((tag as usize, until));
        }
        let tag = match trend {
            Some((tag, _)) if unit(&mut rng) < TREND_SHARE => tag,
            _ => pick(&tag_cdf, unit(&mut rng)),
        };
        post_id += 1;
        posts
            .int_or_bad(post_id, damage)
            .comma()
            .ts(ts, damage)
            .comma()
            .int(author)
            .comma()
            .text(&tags[tag])
            .comma()
            .text(OPENERS[below(&mut rng, OPENERS.len() as u64) as usize].as_bytes());
        for _ in 0..2 + below(&mut rng, 6) {
            posts
                .text(b" ")
                .text(WORDS[below(&mut rng, WORDS.len() as u64) as usize].as_bytes());
        }
        posts.end_line(damage)?;
    }
    follows.finish()?;
    posts.finish()
}

/// The two files of the social dataset in memory (tests and benchmarks).
pub struct SocialFiles {
    /// `follows.csv`.
    pub follows: Vec<u8>,
    /// `posts.csv`.
    pub posts: Vec<u8>,
}

/// The social dataset for `cfg` in memory.
pub fn social_bytes(cfg: &SocialConfig) -> SocialFiles {
    let (mut follows, mut posts) = (Vec::new(), Vec::new());
    write_social_to(cfg, &mut follows, &mut posts).expect("writing to a Vec cannot fail");
    SocialFiles { follows, posts }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::parsed::ParsedBatch;
    use crate::generate::tests::{check_malformed_share, parse_generated};
    use std::collections::{BTreeMap, HashMap};

    fn cfg(events: u64, seed: u64) -> SocialConfig {
        SocialConfig {
            events,
            seed,
            ..SocialConfig::default()
        }
    }

    fn parse_follows(file: &[u8]) -> ParsedBatch {
        parse_generated(file, &follows_schema(), 1 << 16)
    }

    fn parse_posts(file: &[u8]) -> ParsedBatch {
        parse_generated(file, &posts_schema(), 1 << 16)
    }

    /// Checks that the ops of every edge alternate follow, unfollow, follow, … in file order
    /// and in `ts` order; returns (follows, unfollows).
    fn check_alternation(follows: &ParsedBatch) -> (u64, u64) {
        // Per edge: (followed now, ts of the last op).
        let mut edges: HashMap<(i64, i64), (bool, i64)> = HashMap::new();
        let (mut n_follow, mut n_unfollow) = (0, 0);
        for row in follows.rows() {
            let ts = row[0].as_i64().unwrap();
            let edge = (row[1].as_i64().unwrap(), row[2].as_i64().unwrap());
            assert_ne!(edge.0, edge.1, "self-follow");
            let (followed, last_ts) = edges.entry(edge).or_insert((false, i64::MIN));
            match row[3].as_str().unwrap() {
                "follow" => {
                    assert!(!*followed, "{edge:?} followed twice");
                    n_follow += 1;
                }
                "unfollow" => {
                    assert!(*followed, "{edge:?} unfollowed while not followed");
                    n_unfollow += 1;
                }
                op => panic!("op {op}"),
            }
            assert!(ts > *last_ts, "{edge:?}: op at {ts} not after {last_ts}");
            *followed = !*followed;
            *last_ts = ts;
        }
        (n_follow, n_unfollow)
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = social_bytes(&cfg(5000, 7));
        let b = social_bytes(&cfg(5000, 7));
        assert_eq!((&a.follows, &a.posts), (&b.follows, &b.posts));
        let c = social_bytes(&cfg(5000, 8));
        assert_ne!(a.follows, c.follows);
        assert_ne!(a.posts, c.posts);
        assert!(a.follows.starts_with(FOLLOWS_HEADER.as_bytes()));
        assert!(a.posts.starts_with(POSTS_HEADER.as_bytes()));
        // Through writers in small pieces, the same bytes.
        let mut f = std::io::BufWriter::with_capacity(7, Vec::new());
        let mut p = std::io::BufWriter::with_capacity(5, Vec::new());
        write_social_to(&cfg(5000, 7), &mut f, &mut p).unwrap();
        assert_eq!(f.into_inner().unwrap(), a.follows);
        assert_eq!(p.into_inner().unwrap(), a.posts);
        // And into a folder.
        let dir = tempfile::tempdir().unwrap();
        write_social(&cfg(5000, 7), &dir.path().join("social")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("social/follows.csv")).unwrap(),
            a.follows
        );
        assert_eq!(
            std::fs::read(dir.path().join("social/posts.csv")).unwrap(),
            a.posts
        );
        // No events: the headers only.
        let empty = social_bytes(&cfg(0, 7));
        assert_eq!(empty.follows, FOLLOWS_HEADER.as_bytes());
        assert_eq!(empty.posts, POSTS_HEADER.as_bytes());
    }

    #[test]
    fn committed_sample_is_current() {
        // data/social is `eventflow generate social --events 30000 --seed 42`; a change here
        // means regenerating it (see data/README.md).
        let files = social_bytes(&cfg(30_000, 42));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/social");
        assert!(std::fs::read(dir.join("follows.csv")).unwrap() == files.follows);
        assert!(std::fs::read(dir.join("posts.csv")).unwrap() == files.posts);
    }

    #[test]
    fn every_row_parses_and_looks_real() {
        let events = 60_000;
        let c = cfg(events, 1);
        let users = i64::from(super::users(&c));
        let files = social_bytes(&c);
        let f = parse_follows(&files.follows);
        let p = parse_posts(&files.posts);
        assert!(f.dead.is_empty() && p.dead.is_empty());
        assert_eq!((f.len() + p.len()) as u64, events);
        let follow_share = f.len() as f64 / events as f64;
        assert!((0.28..0.32).contains(&follow_share), "{follow_share}");

        let (n_follow, n_unfollow) = check_alternation(&f);
        let undone = n_unfollow as f64 / n_follow as f64;
        assert!((0.10..0.15).contains(&undone), "{undone}");
        let mut followers: HashMap<i64, u64> = HashMap::new();
        for row in f.rows() {
            for id in [&row[1], &row[2]] {
                assert!((1..=users).contains(&id.as_i64().unwrap()));
            }
            *followers.entry(row[2].as_i64().unwrap()).or_default() += 1;
        }
        // Celebrities: user 1 gets far more follows than a typical followee.
        let mut counts: Vec<u64> = followers.values().copied().collect();
        counts.sort_unstable();
        let median = counts[counts.len() / 2];
        assert!(
            followers[&1] > 100 * median,
            "{} vs {median}",
            followers[&1]
        );
        // The first lines are mostly follows.
        let mut first: Vec<(i64, bool)> =
            f.rows().map(|r| (r[0].as_i64().unwrap(), true)).collect();
        first.extend(p.rows().map(|r| (r[1].as_i64().unwrap(), false)));
        first.sort_unstable();
        first.truncate((events as f64 * WARMUP_SHARE * 0.8) as usize);
        let early_follows = first.iter().filter(|x| x.1).count();
        assert!(
            early_follows as f64 > 0.8 * first.len() as f64,
            "{early_follows}"
        );

        let mut tags: BTreeMap<String, u64> = BTreeMap::new();
        let mut authors: HashMap<i64, u64> = HashMap::new();
        for (i, row) in p.rows().enumerate() {
            assert_eq!(row[0].as_i64(), Some(i as i64 + 1));
            let author = row[2].as_i64().unwrap();
            assert!((1..=users).contains(&author));
            *authors.entry(author).or_default() += 1;
            let tag = row[3].as_str().unwrap();
            assert!(tag.starts_with('#'));
            *tags.entry(tag.into()).or_default() += 1;
            let text = row[4].as_str().unwrap();
            let words = text.split(' ').count();
            assert!((3..=8).contains(&words), "{text}");
            assert!(
                text.bytes().all(|b| b.is_ascii_lowercase() || b == b' '),
                "{text}"
            );
        }
        assert!(tags.len() > 150, "{}", tags.len());
        assert!(tags["#rust"] > 10 * tags["#rust2024"]);
        // The most prolific author (popularity rank 0) against a middling one.
        let rank = |r: u64| 1 + scatter(r, users as u64) as i64;
        assert!(
            authors[&rank(0)] > 20 * authors.get(&rank(users as u64 / 2)).copied().unwrap_or(1)
        );
        // A trend: some minor tag has a minute with a large share of the posts.
        let mut per_minute: HashMap<(i64, &str), u64> = HashMap::new();
        for row in p.rows() {
            let tag = row[3].as_str().unwrap();
            if !TOPICS
                .iter()
                .take(TREND_MIN_RANK as usize)
                .any(|t| tag == format!("#{t}"))
            {
                *per_minute
                    .entry((row[1].as_i64().unwrap() / 60_000, tag))
                    .or_default() += 1;
            }
        }
        let top = per_minute.values().max().copied().unwrap();
        assert!(top > 60, "{top}");

        // Both files cover the same span: about 26 lines per second.
        let span = |b: &ParsedBatch, col: usize| {
            let ts: Vec<i64> = b.rows().map(|r| r[col].as_i64().unwrap()).collect();
            (*ts.iter().min().unwrap(), *ts.iter().max().unwrap())
        };
        let (f0, f1) = span(&f, 0);
        let (p0, p1) = span(&p, 1);
        assert!(f0 >= c.start_ms && p0 >= c.start_ms);
        assert!((f1 - p1).abs() < 60_000, "{f1} vs {p1}");
        let rate = events as f64 / ((p1 - c.start_ms) as f64 / 1000.0);
        assert!((20.0..35.0).contains(&rate), "{rate}");
    }

    #[test]
    fn disorder_is_bounded() {
        for max_disorder_ms in [0, 500, 5_000] {
            let c = SocialConfig {
                max_disorder_ms,
                ..cfg(20_000, 3)
            };
            let files = social_bytes(&c);
            for (b, col) in [
                (parse_follows(&files.follows), 0),
                (parse_posts(&files.posts), 1),
            ] {
                let mut max_seen = i64::MIN;
                let (mut out_of_order, mut worst) = (0, 0);
                for row in b.rows() {
                    let ts = row[col].as_i64().unwrap();
                    assert!(ts >= c.start_ms);
                    if ts < max_seen {
                        out_of_order += 1;
                        worst = worst.max(max_seen - ts);
                    }
                    max_seen = max_seen.max(ts);
                }
                assert!(worst <= max_disorder_ms, "{worst} ms behind");
                if max_disorder_ms == 0 {
                    assert_eq!(out_of_order, 0);
                } else {
                    assert!(out_of_order > b.len() / 20, "{out_of_order}");
                }
                // Follow ops stay consistent whatever the disorder.
                if col == 0 {
                    check_alternation(&b);
                }
            }
        }
    }

    #[test]
    fn malformed_share_gives_dead_records() {
        let events = 60_000;
        let dirty_cfg = SocialConfig {
            malformed_share: 0.05,
            ..cfg(events, 5)
        };
        let clean = social_bytes(&cfg(events, 5));
        let dirty = social_bytes(&dirty_cfg);
        let again = social_bytes(&dirty_cfg);
        let lines = |file: &[u8]| file.iter().filter(|&&b| b == b'\n').count() as u64 - 1;
        check_malformed_share(
            &clean.follows,
            &dirty.follows,
            &again.follows,
            lines(&clean.follows),
            &follows_schema(),
        );
        check_malformed_share(
            &clean.posts,
            &dirty.posts,
            &again.posts,
            lines(&clean.posts),
            &posts_schema(),
        );
        // The live follow ops still alternate per edge: no unfollow lost its follow.
        let live = parse_follows(&dirty.follows);
        assert!(!live.dead.is_empty());
        check_alternation(&live);
        let clean_unfollows = check_alternation(&parse_follows(&clean.follows)).1;
        assert_eq!(check_alternation(&live).1, clean_unfollows);
    }
}
