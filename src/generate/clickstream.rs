//! A deterministic generator of website clickstream events, for the sample data
//! (`data/clickstream.csv`), the window tests and benchmarks.
//!
//! Why it exists: event-time windows need data with the shape of real traffic. Tumbling and
//! hopping windows want a steady stream with skewed page popularity; session windows want users
//! whose activity comes in *visits* — bursts of events a few seconds apart — separated by breaks
//! of minutes to hours, so that a 30-minute session gap splits a user's day into a handful of
//! sessions. And like the orders generator ([`super`]), the file must be the same byte for byte
//! on every machine, so golden outputs and benchmark numbers can be compared.
//!
//! The model: [`USERS`] users, each alternating between a visit and a break. A visit is 1 to
//! [`MAX_VISIT_EVENTS`] events (about 10 on average), 1 to 120 s apart (about 10 s on average);
//! a break lasts 2 to 25 minutes (a short break, two out of three) or 31 minutes to 4 hours,
//! scaled by a per-user activity factor between 0.5 and 2. The first event of a visit is a page
//! view with an external referrer (`google.com`, `direct`, …); the next ones have the previous
//! page as referrer. Event types: about 90% `view`, 7% `cart` (on the product page last viewed
//! in the visit) and 3% `purchase` (on `/checkout`). Pages are 200 paths (`/home`, `/search`,
//! `/cart`, `/checkout`, `/category/<name>`, `/product/<id>`, …) with Zipf popularity. Overall
//! this gives about 23 events per second of event time and about 4,000 users per hour.
//!
//! Disorder: each event has its true time `ts`. One in five events is *delayed*: it is written
//! to the file up to `max_disorder_ms` after its time, i.e. after later events. The file is
//! ordered by arrival (`ts` plus delay, ties by `event_id`), so an event's `ts` is never more
//! than `max_disorder_ms` behind the largest `ts` written before it. The delays come from their
//! own random stream: the events themselves (every column) do not depend on `max_disorder_ms`,
//! only their order in the file does. `event_id` numbers the events in true time order.
//!
//! Determinism: the output depends only on the [`ClickstreamConfig`]. All randomness comes from
//! `rand_chacha::ChaCha8Rng` seeded with `seed`, read through `next_u64` with the conversions
//! written here (not `rand`'s distributions, whose exact values may change between versions):
//! stream 0 for the events, stream 1 for corruption and stream 2 for delays. The page catalogue
//! is fixed (built from a constant seed), so `/product/123` is the same page in every file.
//!
//! Speed: lines are formatted with `itoa` and a cached date prefix into one reused buffer that
//! is written out in 64 KiB pieces; users wait in a binary heap ordered by their next event.

use super::{below, exponential, log_uniform, pick, unit, zipf_cdf, DateCache};
use crate::record::{Schema, Type};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};

/// Settings of the clickstream generator (up to 10 s of disorder by default).
pub type ClickstreamConfig = super::GenConfig<10_000>;

/// The schema of the clickstream files, in column order.
pub fn clickstream_schema() -> Schema {
    Schema::new([
        ("event_id", Type::Int),
        ("ts", Type::Timestamp),
        ("user_id", Type::Int),
        ("page", Type::String),
        ("event_type", Type::String),
        ("referrer", Type::String),
    ])
}

/// The header line of the clickstream files (with its newline).
pub const CLICKSTREAM_HEADER: &str = "event_id,ts,user_id,page,event_type,referrer\n";

/// Number of users; ids are `1..=USERS`.
pub const USERS: u32 = 6000;
/// The most events of one visit.
pub const MAX_VISIT_EVENTS: u32 = 60;
/// Mean number of events of a visit after its first (an exponential draw, rounded down).
const MEAN_EXTRA_EVENTS: f64 = 9.0;
/// Gap between the events of a visit: at least this, plus an exponential part (ms).
const MIN_CLICK_GAP_MS: f64 = 1_000.0;
/// Mean of the exponential part of the gap between the events of a visit (ms).
const MEAN_CLICK_GAP_MS: f64 = 9_000.0;
/// The longest gap between two events of one visit (ms).
const MAX_CLICK_GAP_MS: i64 = 120_000;
/// Share of breaks between visits that are short.
const SHORT_BREAK_SHARE: f64 = 0.65;
/// Short breaks: log-uniform between these (ms): 2 to 25 minutes.
const SHORT_BREAK_MS: (f64, f64) = (120_000.0, 1_500_000.0);
/// Long breaks: log-uniform between these (ms): 31 minutes to 4 hours.
const LONG_BREAK_MS: (f64, f64) = (1_860_000.0, 14_400_000.0);
/// Per-user factor on break lengths: log-uniform between these.
const ACTIVITY_FACTOR: (f64, f64) = (0.5, 2.0);
/// Chance that an event is written late (delayed by up to `max_disorder_ms`).
const DELAY_CHANCE: f64 = 0.2;
/// Event types after the first event of a visit (which is always a view): cumulative
/// probabilities of view and cart; the rest is purchase. Overall about 90 / 7 / 3 %.
const VIEW_CART_CDF: (f64, f64) = (0.881, 0.967);
/// Seed of the page catalogue: fixed, so pages are the same in every file.
const CATALOGUE_SEED: u64 = 0x636c_6963_6b73_0001;
/// Number of `/product/<id>` pages.
const PRODUCT_PAGES: usize = 178;
/// Flush the line buffer to the writer when it holds this much.
const FLUSH_BYTES: usize = 64 * 1024;

/// The most popular pages, in popularity order; the other pages follow in a fixed shuffled
/// order.
const TOP_PAGES: [&str; 8] = [
    "/home",
    "/search",
    "/category/electronics",
    "/cart",
    "/deals",
    "/category/clothing",
    "/account",
    "/checkout",
];
/// Other site pages, ranked among the products.
const OTHER_PAGES: [&str; 4] = ["/orders", "/help", "/about", "/new"];
/// Categories other than those in [`TOP_PAGES`].
const CATEGORIES: [&str; 10] = [
    "home", "books", "beauty", "sports", "toys", "grocery", "garden", "pets", "music", "office",
];
/// External referrers of a visit's first event and their cumulative probabilities.
const REFERRERS: [(&str, f64); 7] = [
    ("direct", 0.35),
    ("google.com", 0.70),
    ("bing.com", 0.75),
    ("facebook.com", 0.83),
    ("instagram.com", 0.88),
    ("newsletter", 0.95),
    ("t.co", 1.0),
];

/// Index of `/checkout` in the ranked page list (position in [`TOP_PAGES`]; `/cart` is 3 and
/// `/account` 6).
const CHECKOUT: u16 = 7;

/// The fixed set of pages.
struct Pages {
    /// Paths in popularity order.
    paths: Vec<String>,
    /// Cumulative Zipf popularity of `paths`.
    cdf: Vec<f64>,
    /// Whether a page is a product page.
    is_product: Vec<bool>,
    /// The product pages (indexes into `paths`), in popularity order.
    products: Vec<u16>,
    /// Cumulative Zipf popularity of `products`.
    product_cdf: Vec<f64>,
}

impl Pages {
    /// The page a visit starts on: a page drawn by popularity, except that visits do not start
    /// on the cart, the checkout or the account pages (those land on `/home`).
    fn landing(&self, u: f64) -> u16 {
        match pick(&self.cdf, u) as u16 {
            page @ (3 | 6 | CHECKOUT) => {
                debug_assert!(["/cart", "/account", "/checkout"]
                    .contains(&self.paths[page as usize].as_str()));
                0
            }
            page => page,
        }
    }

    fn new() -> Pages {
        let mut rng = ChaCha8Rng::seed_from_u64(CATALOGUE_SEED);
        // Distinct product ids from 100..=999: a partial Fisher-Yates shuffle.
        let mut ids: Vec<u32> = (100..=999).collect();
        for i in 0..PRODUCT_PAGES {
            let j = i + below(&mut rng, (ids.len() - i) as u64) as usize;
            ids.swap(i, j);
        }
        let mut rest: Vec<String> = CATEGORIES
            .iter()
            .map(|c| format!("/category/{c}"))
            .chain(OTHER_PAGES.iter().map(|p| p.to_string()))
            .chain(
                ids[..PRODUCT_PAGES]
                    .iter()
                    .map(|id| format!("/product/{id}")),
            )
            .collect();
        for i in (1..rest.len()).rev() {
            let j = below(&mut rng, i as u64 + 1) as usize;
            rest.swap(i, j);
        }
        let paths: Vec<String> = TOP_PAGES
            .iter()
            .map(|p| p.to_string())
            .chain(rest)
            .collect();
        debug_assert_eq!(paths[CHECKOUT as usize], "/checkout");
        let is_product: Vec<bool> = paths.iter().map(|p| p.starts_with("/product/")).collect();
        let products: Vec<u16> = (0..paths.len() as u16)
            .filter(|&i| is_product[i as usize])
            .collect();
        Pages {
            cdf: zipf_cdf(paths.len(), 1.0),
            product_cdf: zipf_cdf(products.len(), 1.0),
            paths,
            is_product,
            products,
        }
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    View,
    Cart,
    Purchase,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Cart => "cart",
            Kind::Purchase => "purchase",
        }
    }
}

/// Where the user came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Referrer {
    /// An index into [`REFERRERS`].
    External(u8),
    /// The previous page of the visit.
    Page(u16),
}

/// The ways a line is broken when `malformed_share > 0`. Each one makes the line a dead record
/// when every column is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Corruption {
    /// The referrer column is left out.
    MissingColumn,
    /// A seventh column is added.
    ExtraColumn,
    /// A prefixed event id (`ev-17`).
    EventId,
    /// A prefixed user id (`u-42`).
    UserId,
    /// An impossible or unreadable timestamp.
    Timestamp(&'static str),
}

impl Corruption {
    fn pick(rng: &mut ChaCha8Rng) -> Corruption {
        const BAD_TIMES: [&str; 3] = ["2024-13-01T00:00:00Z", "2024-02-30T12:00:00Z", "yesterday"];
        match below(rng, 5) {
            0 => Corruption::MissingColumn,
            1 => Corruption::ExtraColumn,
            2 => Corruption::EventId,
            3 => Corruption::UserId,
            _ => Corruption::Timestamp(BAD_TIMES[below(rng, 3) as usize]),
        }
    }
}

/// One generated event, waiting to be written. Ordered by arrival in the file, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    arrival: i64,
    id: u64,
    ts: i64,
    user: u32,
    page: u16,
    kind: Kind,
    referrer: Referrer,
    corruption: Option<Corruption>,
}

/// A user between events.
#[derive(Clone, Copy, Debug)]
struct User {
    /// Events left in the current visit; 0 means the next event starts a new visit.
    left: u32,
    /// The page of the previous event of the visit.
    last_page: u16,
    /// The product page last viewed in the visit, if any.
    last_product: Option<u16>,
    /// Factor on this user's break lengths.
    activity: f64,
}

/// Length of a break between two visits of a user (ms).
fn break_ms(rng: &mut ChaCha8Rng, activity: f64) -> i64 {
    let range = if unit(rng) < SHORT_BREAK_SHARE {
        SHORT_BREAK_MS
    } else {
        LONG_BREAK_MS
    };
    (log_uniform(rng, range) * activity) as i64
}

/// The length of the break a user is in at a random moment (ms): a break drawn with
/// probability proportional to its length. For a log-uniform range that is a uniform draw over
/// the range, and the short and long ranges weigh by share times mean length.
fn length_biased_break_ms(rng: &mut ChaCha8Rng, activity: f64) -> f64 {
    let mean = |(lo, hi): (f64, f64)| (hi - lo) / (hi / lo).ln();
    let short = SHORT_BREAK_SHARE * mean(SHORT_BREAK_MS);
    let long = (1.0 - SHORT_BREAK_SHARE) * mean(LONG_BREAK_MS);
    let (lo, hi) = if unit(rng) * (short + long) < short {
        SHORT_BREAK_MS
    } else {
        LONG_BREAK_MS
    };
    (lo + unit(rng) * (hi - lo)) * activity
}

/// The event generator: users waiting in a heap by the time of their next event.
struct Simulation {
    rng: ChaCha8Rng,
    pages: Pages,
    users: Vec<User>,
    /// (time of the user's next event, user index).
    next: BinaryHeap<Reverse<(i64, u32)>>,
}

impl Simulation {
    fn new(seed: u64, start_ms: i64) -> Simulation {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut users = Vec::with_capacity(USERS as usize);
        let mut next = BinaryHeap::with_capacity(USERS as usize);
        for user in 0..USERS {
            let activity = log_uniform(&mut rng, ACTIVITY_FACTOR);
            // Start at a random point of a break, so the traffic is steady from the first
            // minute: the break a random moment falls in is drawn length-biased.
            let first = (unit(&mut rng) * length_biased_break_ms(&mut rng, activity)) as i64;
            users.push(User {
                left: 0,
                last_page: 0,
                last_product: None,
                activity,
            });
            next.push(Reverse((start_ms.saturating_add(first), user)));
        }
        Simulation {
            rng,
            pages: Pages::new(),
            users,
            next,
        }
    }

    /// The next event in time order (without id, arrival and corruption).
    fn step(&mut self) -> Event {
        let Reverse((ts, index)) = self.next.pop().expect("users never leave");
        let rng = &mut self.rng;
        let pages = &self.pages;
        let user = &mut self.users[index as usize];
        let (kind, page, referrer);
        if user.left == 0 {
            // A new visit: a page view from outside the site.
            user.left = 1 + (exponential(rng, MEAN_EXTRA_EVENTS) as u32).min(MAX_VISIT_EVENTS - 1);
            user.last_product = None;
            kind = Kind::View;
            page = pages.landing(unit(rng));
            referrer = Referrer::External(pick(&REFERRER_CDF, unit(rng)) as u8);
        } else {
            let u = unit(rng);
            referrer = Referrer::Page(user.last_page);
            if u < VIEW_CART_CDF.0 {
                kind = Kind::View;
                page = pick(&pages.cdf, unit(rng)) as u16;
            } else if u < VIEW_CART_CDF.1 {
                // Add to cart the product last viewed; without one, view a product first.
                let product = pages.products[pick(&pages.product_cdf, unit(rng))];
                (kind, page) = match user.last_product {
                    Some(last) => (Kind::Cart, last),
                    None => (Kind::View, product),
                };
            } else {
                kind = Kind::Purchase;
                page = CHECKOUT;
            }
        }
        if pages.is_product[page as usize] {
            user.last_product = Some(page);
        }
        user.last_page = page;
        user.left -= 1;
        let wait = if user.left > 0 {
            ((MIN_CLICK_GAP_MS + exponential(rng, MEAN_CLICK_GAP_MS)) as i64).min(MAX_CLICK_GAP_MS)
        } else {
            break_ms(rng, user.activity)
        };
        self.next.push(Reverse((ts.saturating_add(wait), index)));
        Event {
            arrival: ts,
            id: 0,
            ts,
            user: index + 1,
            page,
            kind,
            referrer,
            corruption: None,
        }
    }
}

/// Cumulative probabilities of [`REFERRERS`].
const REFERRER_CDF: [f64; 7] = [
    REFERRERS[0].1,
    REFERRERS[1].1,
    REFERRERS[2].1,
    REFERRERS[3].1,
    REFERRERS[4].1,
    REFERRERS[5].1,
    REFERRERS[6].1,
];

/// Formats events into CSV lines.
struct LineWriter {
    buf: Vec<u8>,
    ints: itoa::Buffer,
    dates: DateCache,
}

impl LineWriter {
    /// [`LineWriter::push`], then shows the line to `observe`.
    fn push_observed(&mut self, e: &Event, pages: &Pages, observe: &mut dyn FnMut(&Written)) {
        let start = self.buf.len();
        self.push(e, pages);
        observe(&Written {
            ts: e.ts,
            event_id: e.id,
            user: e.user,
            view: e.kind == Kind::View,
            damaged: e.corruption.is_some(),
            line: &self.buf[start..self.buf.len() - 1],
        });
    }

    fn push(&mut self, e: &Event, pages: &Pages) {
        let buf = &mut self.buf;
        if e.corruption == Some(Corruption::EventId) {
            buf.extend_from_slice(b"ev-");
        }
        buf.extend_from_slice(self.ints.format(e.id).as_bytes());
        buf.push(b',');
        match e.corruption {
            Some(Corruption::Timestamp(text)) => buf.extend_from_slice(text.as_bytes()),
            _ => self.dates.push_iso8601(buf, e.ts),
        }
        buf.push(b',');
        if e.corruption == Some(Corruption::UserId) {
            buf.extend_from_slice(b"u-");
        }
        buf.extend_from_slice(self.ints.format(e.user).as_bytes());
        buf.push(b',');
        buf.extend_from_slice(pages.paths[e.page as usize].as_bytes());
        buf.push(b',');
        buf.extend_from_slice(e.kind.as_str().as_bytes());
        if e.corruption != Some(Corruption::MissingColumn) {
            buf.push(b',');
            match e.referrer {
                Referrer::External(i) => buf.extend_from_slice(REFERRERS[i as usize].0.as_bytes()),
                Referrer::Page(p) => buf.extend_from_slice(pages.paths[p as usize].as_bytes()),
            }
        }
        if e.corruption == Some(Corruption::ExtraColumn) {
            buf.extend_from_slice(b",mobile");
        }
        buf.push(b'\n');
    }
}

/// Writes `events` clickstream events as CSV (header first) to `out`. See the module docs for
/// what the data looks like; the same config always gives the same bytes.
///
/// # Errors
/// Whatever `out` returns.
pub fn write_clickstream_csv(cfg: &ClickstreamConfig, out: &mut dyn Write) -> io::Result<()> {
    write_clickstream_observed(cfg, out, &mut |_| {})
}

/// A clickstream line as it is written, shown to the observer of
/// [`write_clickstream_observed`].
pub(crate) struct Written<'a> {
    /// Event time (epoch ms).
    pub(crate) ts: i64,
    pub(crate) event_id: u64,
    pub(crate) user: u32,
    /// Whether the event is a page view.
    pub(crate) view: bool,
    /// Whether the line was broken on purpose (`malformed_share`).
    pub(crate) damaged: bool,
    /// The line, without its newline.
    pub(crate) line: &'a [u8],
}

/// [`write_clickstream_csv`], calling `observe` with every data line in file order. The bytes
/// written do not depend on the observer.
pub(crate) fn write_clickstream_observed(
    cfg: &ClickstreamConfig,
    out: &mut dyn Write,
    observe: &mut dyn FnMut(&Written),
) -> io::Result<()> {
    let mut sim = Simulation::new(cfg.seed, cfg.start_ms);
    let mut corrupt_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    corrupt_rng.set_stream(1);
    let mut delay_rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    delay_rng.set_stream(2);
    let malformed_share = cfg.malformed_share.clamp(0.0, 1.0);
    let max_disorder = cfg.max_disorder_ms.max(0);

    let mut w = LineWriter {
        buf: Vec::with_capacity(FLUSH_BYTES + 256),
        ints: itoa::Buffer::new(),
        dates: DateCache::default(),
    };
    w.buf.extend_from_slice(CLICKSTREAM_HEADER.as_bytes());
    // Events waiting for their arrival, earliest first.
    let mut pending: BinaryHeap<Reverse<Event>> = BinaryHeap::new();

    for id in 1..=cfg.events {
        let mut event = sim.step();
        event.id = id;
        if max_disorder > 0 && unit(&mut delay_rng) < DELAY_CHANCE {
            let delay = below(&mut delay_rng, max_disorder as u64 + 1) as i64;
            event.arrival = event.ts.saturating_add(delay);
        }
        if malformed_share > 0.0 && unit(&mut corrupt_rng) < malformed_share {
            event.corruption = Some(Corruption::pick(&mut corrupt_rng));
        }
        let now = event.ts;
        pending.push(Reverse(event));
        // Every later event has `ts >= now`, so arrives at `now` or later with a larger id:
        // everything that arrived by `now` can be written.
        while let Some(Reverse(first)) = pending.peek() {
            if first.arrival > now {
                break;
            }
            w.push_observed(first, &sim.pages, observe);
            pending.pop();
        }
        if w.buf.len() >= FLUSH_BYTES {
            out.write_all(&w.buf)?;
            w.buf.clear();
        }
    }
    while let Some(Reverse(event)) = pending.pop() {
        w.push_observed(&event, &sim.pages, observe);
    }
    out.write_all(&w.buf)?;
    out.flush()
}

/// The clickstream CSV for `cfg` in memory (tests and benchmarks).
pub fn clickstream_csv_bytes(cfg: &ClickstreamConfig) -> Vec<u8> {
    let mut out = Vec::with_capacity(cfg.events as usize * 64 + 64);
    write_clickstream_csv(cfg, &mut out).expect("writing to a Vec cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::parsed::ParsedBatch;
    use crate::record::Value;
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn parse_all(file: &[u8], target: usize) -> ParsedBatch {
        crate::generate::tests::parse_generated(file, &clickstream_schema(), target)
    }

    fn cfg(events: u64, seed: u64) -> ClickstreamConfig {
        ClickstreamConfig {
            events,
            seed,
            ..ClickstreamConfig::default()
        }
    }

    /// The rows as text lines without the header, sorted.
    fn sorted_lines(file: &[u8]) -> Vec<&[u8]> {
        let mut lines: Vec<&[u8]> = file.split(|&b| b == b'\n').skip(1).collect();
        lines.retain(|l| !l.is_empty());
        lines.sort_unstable();
        lines
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = clickstream_csv_bytes(&cfg(5000, 7));
        let b = clickstream_csv_bytes(&cfg(5000, 7));
        assert_eq!(a, b);
        assert_ne!(a, clickstream_csv_bytes(&cfg(5000, 8)));
        assert!(a.starts_with(CLICKSTREAM_HEADER.as_bytes()));
        // Through a writer in small pieces, the same bytes.
        let mut w = std::io::BufWriter::with_capacity(7, Vec::new());
        write_clickstream_csv(&cfg(5000, 7), &mut w).unwrap();
        assert_eq!(w.into_inner().unwrap(), a);
        // No events: the header only.
        assert_eq!(
            clickstream_csv_bytes(&cfg(0, 7)),
            CLICKSTREAM_HEADER.as_bytes()
        );
    }

    #[test]
    fn fixed_sample_bytes() {
        // Pins the output: a change here changes data/clickstream.csv. The generator reads
        // ChaCha8 through `next_u64` only, so this holds across `rand` versions.
        let text = String::from_utf8(clickstream_csv_bytes(&cfg(3, 42))).unwrap();
        assert_eq!(
            text,
            "event_id,ts,user_id,page,event_type,referrer\n\
             2,2024-01-01T00:00:01.447Z,1128,/home,view,facebook.com\n\
             1,2024-01-01T00:00:01.017Z,2532,/product/466,view,direct\n\
             3,2024-01-01T00:00:01.736Z,5692,/deals,view,direct\n"
        );
    }

    #[test]
    fn every_row_parses_and_looks_real() {
        // About 2 hours and 20 minutes of traffic.
        let events = 200_000;
        let c = cfg(events, 1);
        let file = clickstream_csv_bytes(&c);
        let b = parse_all(&file, 4096);
        assert!(b.dead.is_empty(), "{:?}", &b.dead[..b.dead.len().min(3)]);
        assert_eq!(b.len() as u64, events);
        let mut ids = HashSet::new();
        let mut types: BTreeMap<String, u64> = BTreeMap::new();
        let mut pages: HashMap<String, u64> = HashMap::new();
        let mut user_times: HashMap<i64, Vec<i64>> = HashMap::new();
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        for row in b.rows() {
            assert!(ids.insert(row[0].as_i64().unwrap()));
            let ts = row[1].as_i64().unwrap();
            assert!(ts >= c.start_ms);
            first = first.min(ts);
            last = last.max(ts);
            let user = row[2].as_i64().unwrap();
            assert!((1..=i64::from(USERS)).contains(&user));
            user_times.entry(user).or_default().push(ts);
            let page = row[3].as_str().unwrap();
            assert!(page.starts_with('/'), "{page}");
            let kind = row[4].as_str().unwrap();
            match kind {
                "cart" => assert!(page.starts_with("/product/"), "{page}"),
                "purchase" => assert_eq!(page, "/checkout"),
                _ => assert_eq!(kind, "view"),
            }
            let referrer = row[5].as_str().unwrap();
            assert!(
                referrer.starts_with('/') || REFERRERS.iter().any(|r| r.0 == referrer),
                "{referrer}"
            );
            *types.entry(kind.into()).or_default() += 1;
            *pages.entry(page.into()).or_default() += 1;
        }
        // Ids are 1..=events.
        assert_eq!(ids.len() as u64, events);
        assert_eq!(ids.iter().max().copied(), Some(events as i64));
        // Event types.
        let share = |s: &str| types[s] as f64 / events as f64;
        assert!((share("view") - 0.90).abs() < 0.01, "{types:?}");
        assert!((share("cart") - 0.07).abs() < 0.01, "{types:?}");
        assert!((share("purchase") - 0.03).abs() < 0.01, "{types:?}");
        // About 200 pages, skewed: /home is the most viewed, the top 10 get about half.
        assert!((150..=200).contains(&pages.len()), "{}", pages.len());
        let mut counts: Vec<(u64, &String)> = pages.iter().map(|(p, n)| (*n, p)).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(counts[0].1, "/home");
        let top10: u64 = counts[..10].iter().map(|c| c.0).sum();
        assert!(
            (0.4..0.7).contains(&(top10 as f64 / events as f64)),
            "{top10}"
        );
        // 20 to 50 events per second of event time.
        let rate = events as f64 / ((last - first) as f64 / 1000.0);
        assert!((20.0..50.0).contains(&rate), "{rate} events/s");
        // A few thousand users; their events come in visits: most gaps between a user's events
        // are seconds, but a good share of users have breaks over 30 minutes, so 30-minute
        // sessions split their activity.
        assert!(
            (2000..=6000).contains(&user_times.len()),
            "{}",
            user_times.len()
        );
        let (mut gaps, mut short_gaps, mut split_users) = (0u64, 0u64, 0u64);
        for times in user_times.values_mut() {
            times.sort_unstable();
            let mut split = false;
            for w in times.windows(2) {
                let gap = w[1] - w[0];
                gaps += 1;
                if gap <= MAX_CLICK_GAP_MS {
                    short_gaps += 1;
                }
                split |= gap >= 1_800_000;
            }
            split_users += u64::from(split);
        }
        eprintln!(
            "{rate:.1} events/s, {} users, {split_users} with a break of 30 minutes or more, \
             {short_gaps}/{gaps} gaps within a visit",
            user_times.len()
        );
        assert!(short_gaps as f64 > 0.8 * gaps as f64, "{short_gaps}/{gaps}");
        assert!(split_users > 2000, "{split_users}");
    }

    #[test]
    fn disorder_is_bounded_and_only_reorders() {
        let sorted = sorted_lines_owned(&cfg(20_000, 3));
        for max_disorder_ms in [0, 500, 10_000, 15_000] {
            let c = ClickstreamConfig {
                max_disorder_ms,
                ..cfg(20_000, 3)
            };
            let file = clickstream_csv_bytes(&c);
            // The same events, whatever the disorder.
            assert_eq!(sorted_lines(&file), sorted, "{max_disorder_ms}");
            let b = parse_all(&file, 1 << 20);
            let mut max_seen = i64::MIN;
            let mut out_of_order = 0;
            let mut worst = 0;
            for row in b.rows() {
                let ts = row[1].as_i64().unwrap();
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
                assert!(out_of_order > 500, "{out_of_order}");
            }
            if max_disorder_ms >= 10_000 {
                assert!(worst > max_disorder_ms * 9 / 10, "{worst}");
            }
        }
    }

    fn sorted_lines_owned(c: &ClickstreamConfig) -> Vec<Vec<u8>> {
        let file = clickstream_csv_bytes(c);
        sorted_lines(&file)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn malformed_share_gives_dead_records() {
        let c = ClickstreamConfig {
            malformed_share: 0.05,
            ..cfg(20_000, 5)
        };
        crate::generate::tests::check_malformed_share(
            &clickstream_csv_bytes(&cfg(20_000, 5)),
            &clickstream_csv_bytes(&c),
            &clickstream_csv_bytes(&c),
            20_000,
            &clickstream_schema(),
        );
    }

    #[test]
    fn iso_dates_match_the_record_module() {
        let mut cache = DateCache::default();
        for ms in [
            0i64,
            1_704_067_200_000,
            1_709_251_199_999,
            951_782_400_000,
            -1,
            -86_400_001,
            253_402_300_799_999,
            253_402_300_800_000,
        ] {
            let mut buf = Vec::new();
            cache.push_iso8601(&mut buf, ms);
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                crate::record::time::iso8601(ms),
                "{ms}"
            );
        }
    }

    #[test]
    fn rows_are_valid_values() {
        // The `Value`s the parser makes: ints, a timestamp and strings.
        let file = clickstream_csv_bytes(&cfg(100, 11));
        let b = parse_all(&file, 1 << 20);
        for row in b.rows() {
            assert!(matches!(row[0], Value::Int(_)));
            assert!(matches!(row[1], Value::Time(_)));
            assert!(matches!(row[2], Value::Int(_)));
            assert!(row[3].as_str().is_some() && row[4].as_str().is_some());
        }
    }
}
