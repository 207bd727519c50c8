//! A deterministic generator of e-commerce orders, for the sample data (`data/orders.csv`) and
//! for benchmark files of tens of millions of rows.
//!
//! Why it exists: pipelines, tests and benchmarks need data that looks like the real thing —
//! skewed category and product popularity, repeat customers, bursts of traffic, out-of-order
//! arrival within a known bound, and optionally a share of broken lines — and that is the same
//! byte for byte on every machine, so golden outputs and benchmark numbers can be compared.
//!
//! Determinism: the output depends only on the [`OrdersConfig`]. All randomness comes from
//! `rand_chacha::ChaCha8Rng` seeded with `seed`, read through `next_u64` with the conversions
//! written here (not `rand`'s distributions, whose exact values may change between versions).
//! Corruption decisions use a separate ChaCha stream, so the orders behind the corrupted lines
//! are the same as in a clean file with the same seed. The product catalogue is fixed (built
//! from a constant seed), so a product has the same price in every file.
//!
//! Speed: lines are formatted with `itoa` and a cached date prefix into one reused buffer that
//! is written out in 64 KiB pieces; 10M rows take a few seconds.

pub mod clickstream;
pub mod clickstream_dir;
pub mod ecommerce;
pub mod social;

use crate::record::{time, Schema, Type};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Settings of a generator: its output is a pure function of these. `DISORDER_MS` is the
/// dataset's default bound on out-of-order arrival ([`GenConfig::max_disorder_ms`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig<const DISORDER_MS: i64> {
    /// Number of events to write (for several files: in total, see each generator).
    pub events: u64,
    /// Seed of the random streams.
    pub seed: u64,
    /// Share of event lines (0.0 to 1.0) that are corrupted: wrong column count, an unparsable
    /// number or a bad timestamp. Every corrupted line is a dead record for the CSV parser.
    pub malformed_share: f64,
    /// Largest amount (ms) by which a record's timestamp may lag behind the largest timestamp
    /// written before it in its file. 0 writes timestamps in order.
    pub max_disorder_ms: i64,
    /// Event time of the first event, in epoch milliseconds.
    pub start_ms: i64,
}

impl<const DISORDER_MS: i64> Default for GenConfig<DISORDER_MS> {
    /// 10,000 clean events from 2024-01-01T00:00:00Z with up to `DISORDER_MS` of disorder,
    /// seed 42.
    fn default() -> Self {
        GenConfig {
            events: 10_000,
            seed: 42,
            malformed_share: 0.0,
            max_disorder_ms: DISORDER_MS,
            start_ms: 1_704_067_200_000,
        }
    }
}

/// Settings of the orders generator (up to 3 s of disorder by default).
pub type OrdersConfig = GenConfig<3_000>;

/// The schema of the orders files, in column order.
pub fn orders_schema() -> Schema {
    Schema::new([
        ("order_id", Type::Int),
        ("ts", Type::Timestamp),
        ("customer_id", Type::Int),
        ("category", Type::String),
        ("product", Type::String),
        ("quantity", Type::Int),
        ("unit_price", Type::Float),
        ("amount", Type::Float),
        ("status", Type::String),
    ])
}

/// The header line of the orders files (with its newline).
pub const ORDERS_HEADER: &str =
    "order_id,ts,customer_id,category,product,quantity,unit_price,amount,status\n";

/// Number of distinct customers; ids are `1..=CUSTOMERS`, low ids ordering far more often.
const CUSTOMERS: u64 = 50_000;
/// Mean gap between orders outside bursts, in ms.
const MEAN_GAP_MS: f64 = 40.0;
/// Mean gap between orders inside a burst, in ms.
const BURST_GAP_MS: f64 = 2.0;
/// Chance that a record is delayed (its timestamp jittered backwards) at all.
const DELAY_CHANCE: f64 = 0.25;
/// Seed of the product catalogue: fixed, so products keep their prices across files.
const CATALOGUE_SEED: u64 = 0x6f72_6465_7273_0001;
/// Flush the line buffer to the writer when it holds this much.
const FLUSH_BYTES: usize = 64 * 1024;

/// A category: its name, Zipf rank (by position in [`CATEGORIES`]), typical price and the words
/// its product names are made of (noun, price factor).
struct CategoryDef {
    name: &'static str,
    base_cents: f64,
    adjectives: [&'static str; 6],
    nouns: [(&'static str, f64); 8],
}

/// Most popular first; popularity falls off as 1/rank.
const CATEGORIES: [CategoryDef; 8] = [
    CategoryDef {
        name: "electronics",
        base_cents: 8000.0,
        adjectives: ["Wireless", "Smart", "Portable", "Pro", "Compact", "Ultra"],
        nouns: [
            ("Headphones", 1.0),
            ("Speaker", 0.8),
            ("Charger", 0.25),
            ("Keyboard", 0.6),
            ("Mouse", 0.35),
            ("Monitor", 2.5),
            ("Webcam", 0.7),
            ("Tablet", 4.0),
        ],
    },
    CategoryDef {
        name: "clothing",
        base_cents: 4000.0,
        adjectives: ["Classic", "Slim", "Organic", "Vintage", "Sport", "Cozy"],
        nouns: [
            ("T-Shirt", 0.5),
            ("Jeans", 1.2),
            ("Hoodie", 1.0),
            ("Jacket", 2.0),
            ("Socks, 3-pack", 0.25),
            ("Sneakers", 1.6),
            ("Scarf", 0.5),
            ("Cap", 0.4),
        ],
    },
    CategoryDef {
        name: "home",
        base_cents: 3500.0,
        adjectives: ["Ceramic", "Bamboo", "Modern", "Rustic", "Steel", "Linen"],
        nouns: [
            ("Mug", 0.2),
            ("Lamp", 1.0),
            ("Vase", 0.6),
            ("Cutting Board", 0.5),
            ("Towel Set", 0.7),
            ("Pan", 1.1),
            ("Clock", 0.8),
            ("Candle", 0.3),
        ],
    },
    CategoryDef {
        name: "books",
        base_cents: 2000.0,
        adjectives: [
            "Illustrated",
            "Pocket",
            "Collected",
            "Annotated",
            "Hardcover",
            "Kids",
        ],
        nouns: [
            ("Cookbook", 1.0),
            ("Atlas", 1.4),
            ("Novel", 0.7),
            ("Poetry", 0.6),
            ("Biography", 0.9),
            ("Travel Guide", 0.8),
            ("Dictionary", 1.2),
            ("Comics", 0.5),
        ],
    },
    CategoryDef {
        name: "beauty",
        base_cents: 2500.0,
        adjectives: ["Herbal", "Rose", "Vitamin C", "Mineral", "Daily", "Night"],
        nouns: [
            ("Serum", 1.5),
            ("Face Cream", 1.2),
            ("Shampoo", 0.6),
            ("Lip Balm", 0.25),
            ("Sunscreen", 0.7),
            ("Soap", 0.3),
            ("Face Mask", 0.4),
            ("Body Lotion", 0.8),
        ],
    },
    CategoryDef {
        name: "sports",
        base_cents: 3000.0,
        adjectives: ["Pro", "Trail", "Light", "Team", "Indoor", "Outdoor"],
        nouns: [
            ("Yoga Mat", 0.8),
            ("Water Bottle", 0.4),
            ("Running Shoes", 2.5),
            ("Tennis Balls", 0.3),
            ("Dumbbells", 1.5),
            ("Backpack", 1.4),
            ("Helmet", 1.6),
            ("Jump Rope", 0.3),
        ],
    },
    CategoryDef {
        name: "toys",
        base_cents: 2500.0,
        adjectives: ["Wooden", "Magnetic", "Plush", "Mini", "Giant", "Glow"],
        nouns: [
            ("Puzzle", 0.6),
            ("Blocks", 0.9),
            ("Robot", 1.5),
            ("Bear", 0.7),
            ("Race Car", 0.8),
            ("Kite", 0.5),
            ("Board Game", 1.2),
            ("Train Set", 2.0),
        ],
    },
    CategoryDef {
        name: "grocery",
        base_cents: 800.0,
        adjectives: [
            "Organic",
            "Fair-Trade",
            "Roasted",
            "Italian",
            "Spicy",
            "Fresh",
        ],
        nouns: [
            ("Coffee Beans, 1kg", 1.6),
            ("Green Tea", 0.6),
            ("Olive Oil", 1.0),
            ("Pasta", 0.3),
            ("Chocolate", 0.4),
            ("Honey", 0.7),
            ("Granola", 0.5),
            ("Almonds", 0.8),
        ],
    },
];

/// Order quantities 1..=5 and their cumulative probabilities.
pub(crate) const QUANTITY_CDF: [f64; 5] = [0.55, 0.77, 0.89, 0.96, 1.0];

/// One product of the catalogue, with its CSV text prepared.
pub(crate) struct Product {
    /// The name as a CSV field (quoted if it holds a comma).
    pub(crate) csv_name: Vec<u8>,
    pub(crate) price_cents: u64,
}

pub(crate) struct Category {
    pub(crate) name: &'static str,
    pub(crate) products: Vec<Product>,
    /// Cumulative popularity of `products` (Zipf-like), ending at 1.0.
    pub(crate) cdf: Vec<f64>,
}

/// The fixed product catalogue (shared with the e-commerce generator, so a product has the same
/// price in both datasets).
pub(crate) struct Catalogue {
    pub(crate) categories: Vec<Category>,
    /// Cumulative popularity of `categories`.
    pub(crate) cdf: Vec<f64>,
}

impl Catalogue {
    pub(crate) fn new() -> Catalogue {
        let mut rng = ChaCha8Rng::seed_from_u64(CATALOGUE_SEED);
        let categories = CATEGORIES
            .iter()
            .map(|def| {
                let mut products = Vec::with_capacity(48);
                for adjective in def.adjectives {
                    let adjective_factor = 0.8 + 0.8 * unit(&mut rng);
                    for (noun, noun_factor) in def.nouns {
                        let jitter = 0.7 + 0.6 * unit(&mut rng);
                        let cents = def.base_cents * noun_factor * adjective_factor * jitter;
                        let dollars = ((cents / 100.0).round() as u64).max(1);
                        // Shop prices: mostly x.99, some x.49, a few round.
                        let price_cents = match below(&mut rng, 10) {
                            6..=8 if dollars > 1 => dollars * 100 - 51,
                            0..=8 => dollars * 100 - 1,
                            _ => dollars * 100,
                        };
                        let name = format!("{adjective} {noun}");
                        products.push(Product {
                            csv_name: csv_field(&name),
                            price_cents,
                        });
                    }
                }
                // Popularity follows a shuffled Zipf order, so the bestseller is not always the
                // first adjective.
                for i in (1..products.len()).rev() {
                    let j = below(&mut rng, i as u64 + 1) as usize;
                    products.swap(i, j);
                }
                Category {
                    name: def.name,
                    cdf: zipf_cdf(products.len(), 0.9),
                    products,
                }
            })
            .collect();
        Catalogue {
            categories,
            cdf: zipf_cdf(CATEGORIES.len(), 1.0),
        }
    }
}

/// Cumulative probabilities of ranks 1..=n with weight 1/rank^s.
pub(crate) fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect();
    if let Some(last) = cdf.last_mut() {
        *last = 1.0;
    }
    cdf
}

/// The index a uniform draw `u` in [0, 1) falls on in a cumulative table.
pub(crate) fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// A uniform float in [0, 1) from the top 53 bits of one draw.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `0..n` (multiply-shift; the bias is below 2^-32 for our small `n`).
pub(crate) fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// `text` as a CSV field: quoted (with `""` escapes) if it holds a delimiter, quote or newline.
fn csv_field(text: &str) -> Vec<u8> {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\"")).into_bytes()
    } else {
        text.as_bytes().to_vec()
    }
}

/// Writes `events` orders as CSV (header first) to `out`. See the module docs for what the data
/// looks like; the same config always gives the same bytes.
///
/// # Errors
/// Whatever `out` returns.
pub fn write_orders_csv(cfg: &OrdersConfig, out: &mut dyn Write) -> io::Result<()> {
    let catalogue = Catalogue::new();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut corrupt_rng = rng.clone();
    corrupt_rng.set_stream(1);
    let malformed_share = cfg.malformed_share.clamp(0.0, 1.0);
    let max_disorder = cfg.max_disorder_ms.max(0);

    let mut buf: Vec<u8> = Vec::with_capacity(FLUSH_BYTES + 256);
    buf.extend_from_slice(ORDERS_HEADER.as_bytes());
    let mut ints = itoa::Buffer::new();
    let mut dates = DateCache::default();
    let mut clock = BurstyClock::new(cfg.start_ms, MEAN_GAP_MS, BURST_GAP_MS);

    for i in 0..cfg.events {
        // Draw everything first, in a fixed order, so the stream does not depend on the output.
        let now = clock.advance(&mut rng);
        let ts = now - draw_lag(&mut rng, DELAY_CHANCE, max_disorder).min(now - cfg.start_ms);
        let customer = {
            let u = unit(&mut rng);
            1 + (u * u * u * CUSTOMERS as f64) as u64
        };
        let category = &catalogue.categories[pick(&catalogue.cdf, unit(&mut rng))];
        let product = &category.products[pick(&category.cdf, unit(&mut rng))];
        let quantity = pick(&QUANTITY_CDF, unit(&mut rng)) as u64 + 1;
        let status = match unit(&mut rng) {
            u if u < 0.70 => "paid",
            u if u < 0.90 => "placed",
            _ => "cancelled",
        };
        let corruption = if malformed_share > 0.0 && unit(&mut corrupt_rng) < malformed_share {
            Some(Corruption::pick(&mut corrupt_rng))
        } else {
            None
        };

        // order_id
        if corruption == Some(Corruption::OrderId) {
            buf.extend_from_slice(b"ORD-");
        }
        buf.extend_from_slice(ints.format(i + 1).as_bytes());
        buf.push(b',');
        // ts
        match corruption {
            Some(Corruption::Timestamp(text)) => buf.extend_from_slice(text.as_bytes()),
            _ => dates.push_iso8601(&mut buf, ts),
        }
        buf.push(b',');
        buf.extend_from_slice(ints.format(customer).as_bytes());
        buf.push(b',');
        buf.extend_from_slice(category.name.as_bytes());
        buf.push(b',');
        buf.extend_from_slice(&product.csv_name);
        buf.push(b',');
        match corruption {
            Some(Corruption::Quantity) => buf.extend_from_slice(b"two"),
            _ => buf.extend_from_slice(ints.format(quantity).as_bytes()),
        }
        buf.push(b',');
        push_cents(&mut buf, &mut ints, product.price_cents);
        buf.push(b',');
        push_cents(&mut buf, &mut ints, quantity * product.price_cents);
        if corruption == Some(Corruption::Amount) {
            buf.extend_from_slice(b".5");
        }
        if corruption != Some(Corruption::MissingColumn) {
            buf.push(b',');
            buf.extend_from_slice(status.as_bytes());
        }
        if corruption == Some(Corruption::ExtraColumn) {
            buf.extend_from_slice(b",gift-wrap");
        }
        buf.push(b'\n');

        if buf.len() >= FLUSH_BYTES {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()
}

/// The orders CSV for `cfg` in memory (tests and benchmarks).
pub fn orders_csv_bytes(cfg: &OrdersConfig) -> Vec<u8> {
    let mut out = Vec::with_capacity(cfg.events as usize * 80 + 100);
    write_orders_csv(cfg, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// The ways a line is broken when `malformed_share > 0`. Each one makes the line a dead record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Corruption {
    /// The last column is left out.
    MissingColumn,
    /// A tenth column is added.
    ExtraColumn,
    /// `two` instead of a quantity.
    Quantity,
    /// The amount gets a second decimal point.
    Amount,
    /// An impossible or unreadable timestamp.
    Timestamp(&'static str),
    /// A prefixed order id (`ORD-17`).
    OrderId,
}

impl Corruption {
    fn pick(rng: &mut ChaCha8Rng) -> Corruption {
        const BAD_TIMES: [&str; 3] = ["2024-13-01T00:00:00Z", "2024-02-30T12:00:00Z", "yesterday"];
        match below(rng, 6) {
            0 => Corruption::MissingColumn,
            1 => Corruption::ExtraColumn,
            2 => Corruption::Quantity,
            3 => Corruption::Amount,
            4 => Corruption::Timestamp(BAD_TIMES[below(rng, 3) as usize]),
            _ => Corruption::OrderId,
        }
    }
}

/// Appends cents as a decimal with two places (`1299` → `12.99`).
pub(crate) fn push_cents(buf: &mut Vec<u8>, ints: &mut itoa::Buffer, cents: u64) {
    buf.extend_from_slice(ints.format(cents / 100).as_bytes());
    let rest = (cents % 100) as u8;
    buf.extend_from_slice(&[b'.', b'0' + rest / 10, b'0' + rest % 10]);
}

/// A log-uniform float between `lo` and `hi`.
pub(crate) fn log_uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    (lo.ln() + unit(rng) * (hi.ln() - lo.ln())).exp()
}

/// Chance per event, outside a burst, that a burst starts.
const BURST_CHANCE: f64 = 0.002;

/// The event clock every generator shares: exponential gaps between events, and now and then a
/// burst of 50–500 events at a much shorter mean gap.
pub(crate) struct BurstyClock {
    now: i64,
    mean_gap_ms: f64,
    burst_gap_ms: f64,
    burst_left: u32,
}

impl BurstyClock {
    /// A clock at `start_ms` with these mean gaps (ms) outside and inside bursts.
    pub(crate) fn new(start_ms: i64, mean_gap_ms: f64, burst_gap_ms: f64) -> BurstyClock {
        BurstyClock {
            now: start_ms,
            mean_gap_ms,
            burst_gap_ms,
            burst_left: 0,
        }
    }

    /// Advances to the next event and returns its time. Draws, in this order: whether a burst
    /// starts (outside a burst; plus its length when it does), then the gap.
    pub(crate) fn advance(&mut self, rng: &mut ChaCha8Rng) -> i64 {
        let gap_mean = if self.burst_left > 0 {
            self.burst_left -= 1;
            self.burst_gap_ms
        } else {
            if unit(rng) < BURST_CHANCE {
                self.burst_left = 50 + below(rng, 450) as u32;
            }
            self.mean_gap_ms
        };
        self.now = self.now.saturating_add(exponential(rng, gap_mean) as i64);
        self.now
    }
}

/// An exponential draw with the given mean.
pub(crate) fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -(1.0 - unit(rng)).ln() * mean
}

/// How late a record arrives after its event time (ms): 0, or with chance `chance` a uniform
/// lag in `0..=max_disorder`. Always one draw, plus one for a late record.
pub(crate) fn draw_lag(rng: &mut ChaCha8Rng, chance: f64, max_disorder: i64) -> i64 {
    if unit(rng) < chance && max_disorder > 0 {
        below(rng, max_disorder as u64 + 1) as i64
    } else {
        0
    }
}

/// The ways the newer generators (social, e-commerce) break a line when asked for malformed
/// records. Each one makes the line a dead record when every column is parsed: the first two
/// as `malformed`, the last two as `bad_value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The last column is left out.
    MissingColumn,
    /// An extra column is added at the end.
    ExtraColumn,
    /// An integer column gets a letter prefix (`x17`).
    BadInt,
    /// An impossible or unreadable timestamp.
    BadTime(&'static str),
}

impl Damage {
    /// Whether the next line is damaged (chance `share`) and how. Draws nothing when `share` is
    /// 0, so clean files never touch the stream.
    pub(crate) fn draw(rng: &mut ChaCha8Rng, share: f64) -> Option<Damage> {
        const BAD_TIMES: [&str; 3] = ["2024-13-01T00:00:00Z", "2024-02-30T12:00:00Z", "yesterday"];
        if share <= 0.0 || unit(rng) >= share {
            return None;
        }
        Some(match below(rng, 4) {
            0 => Damage::MissingColumn,
            1 => Damage::ExtraColumn,
            2 => Damage::BadInt,
            _ => Damage::BadTime(BAD_TIMES[below(rng, 3) as usize]),
        })
    }
}

/// One CSV output of a generator: lines are formatted into `buf`, which goes to `out` in
/// [`FLUSH_BYTES`] pieces. The small push helpers keep the generators' line code short.
pub(crate) struct CsvOut<'a> {
    pub(crate) buf: Vec<u8>,
    out: &'a mut dyn Write,
    ints: itoa::Buffer,
    dates: DateCache,
    /// Where the current line starts in `buf`.
    line_start: usize,
}

impl<'a> CsvOut<'a> {
    /// An output that starts with `header` (which ends in a newline).
    pub(crate) fn new(out: &'a mut dyn Write, header: &str) -> CsvOut<'a> {
        let mut buf = Vec::with_capacity(FLUSH_BYTES + 512);
        buf.extend_from_slice(header.as_bytes());
        CsvOut {
            line_start: buf.len(),
            buf,
            out,
            ints: itoa::Buffer::new(),
            dates: DateCache::default(),
        }
    }

    pub(crate) fn int(&mut self, v: impl itoa::Integer) -> &mut Self {
        self.buf.extend_from_slice(self.ints.format(v).as_bytes());
        self
    }

    /// An integer, prefixed with `x` when the line's damage is [`Damage::BadInt`].
    pub(crate) fn int_or_bad(
        &mut self,
        v: impl itoa::Integer,
        damage: Option<Damage>,
    ) -> &mut Self {
        if damage == Some(Damage::BadInt) {
            self.buf.push(b'x');
        }
        self.int(v)
    }

    /// An ISO-8601 timestamp, or the bad text of [`Damage::BadTime`].
    pub(crate) fn ts(&mut self, ms: i64, damage: Option<Damage>) -> &mut Self {
        match damage {
            Some(Damage::BadTime(text)) => self.buf.extend_from_slice(text.as_bytes()),
            _ => self.dates.push_iso8601(&mut self.buf, ms),
        }
        self
    }

    pub(crate) fn text(&mut self, s: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(s);
        self
    }

    pub(crate) fn cents(&mut self, cents: u64) -> &mut Self {
        push_cents(&mut self.buf, &mut self.ints, cents);
        self
    }

    pub(crate) fn comma(&mut self) -> &mut Self {
        self.buf.push(b',');
        self
    }

    /// Ends the line, applying a column-count damage, and writes the buffer out when it is
    /// full. Callers never put a quoted field last, so the last comma starts the last column.
    pub(crate) fn end_line(&mut self, damage: Option<Damage>) -> io::Result<()> {
        match damage {
            Some(Damage::MissingColumn) => {
                let line = &self.buf[self.line_start..];
                if let Some(comma) = line.iter().rposition(|&b| b == b',') {
                    self.buf.truncate(self.line_start + comma);
                }
            }
            Some(Damage::ExtraColumn) => self.buf.extend_from_slice(b",extra"),
            _ => {}
        }
        self.buf.push(b'\n');
        if self.buf.len() >= FLUSH_BYTES {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.line_start = self.buf.len();
        Ok(())
    }

    /// Writes what is left and flushes.
    pub(crate) fn finish(self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }
}

/// Creates `dir/name` for writing, through a 1 MiB buffer.
pub(crate) fn create_in(dir: &Path, name: &str) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(dir.join(name))?,
    ))
}

/// Formats `YYYY-MM-DDTHH:MM:SS.mmmZ`, caching the date part (timestamps mostly stay on one
/// day).
#[derive(Default)]
pub(crate) struct DateCache {
    day: Option<i64>,
    /// `YYYY-MM-DDT` of `day`, or empty if the year has no four-digit form.
    prefix: Vec<u8>,
}

impl DateCache {
    pub(crate) fn push_iso8601(&mut self, buf: &mut Vec<u8>, ms: i64) {
        let day = ms.div_euclid(86_400_000);
        if self.day != Some(day) {
            self.day = Some(day);
            self.prefix.clear();
            let (y, m, d) = crate::record::time::civil_from_days(day);
            let (m, d) = (m as u32, d as u32);
            if (0..=9999).contains(&y) {
                let y = y as u32;
                self.prefix.extend_from_slice(&[
                    b'0' + (y / 1000) as u8,
                    b'0' + (y / 100 % 10) as u8,
                    b'0' + (y / 10 % 10) as u8,
                    b'0' + (y % 10) as u8,
                    b'-',
                ]);
                push2(&mut self.prefix, m);
                self.prefix.push(b'-');
                push2(&mut self.prefix, d);
                self.prefix.push(b'T');
            }
        }
        if self.prefix.is_empty() {
            let mut s = String::new();
            time::write_iso8601(ms, &mut s);
            buf.extend_from_slice(s.as_bytes());
            return;
        }
        let in_day = ms.rem_euclid(86_400_000) as u32;
        buf.extend_from_slice(&self.prefix);
        push2(buf, in_day / 3_600_000);
        buf.push(b':');
        push2(buf, in_day / 60_000 % 60);
        buf.push(b':');
        push2(buf, in_day / 1000 % 60);
        let millis = in_day % 1000;
        buf.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    }
}

fn push2(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::connectors::csv_parse::{parse_chunk, CsvLayout};
    use crate::connectors::jsonl_parse::{parse_chunk as json_parse_chunk, JsonLayout};
    use crate::connectors::parsed::ParsedBatch;
    use crate::connectors::split::{line_at, read_header, Splitter};
    use crate::record::Value;
    use std::collections::{BTreeMap, HashSet};

    fn parse_all(file: &[u8], target: usize) -> ParsedBatch {
        parse_generated(file, &orders_schema(), target)
    }

    /// Splits and parses a whole generated CSV file, as a source would (shared by the
    /// generators' tests).
    pub(crate) fn parse_generated(
        file: &[u8],
        schema: &crate::record::Schema,
        target: usize,
    ) -> ParsedBatch {
        let (header, body) = read_header(file);
        let layout = CsvLayout::from_header(header.unwrap(), schema, b',').unwrap();
        let mut out = ParsedBatch::new(schema.len());
        for chunk in Splitter::new(file, body, line_at(file, body), target, true) {
            parse_chunk(chunk.bytes(file), &chunk, &layout, schema, &mut out);
        }
        out
    }

    fn cfg(events: u64, seed: u64) -> OrdersConfig {
        OrdersConfig {
            events,
            seed,
            ..OrdersConfig::default()
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = orders_csv_bytes(&cfg(5000, 7));
        let b = orders_csv_bytes(&cfg(5000, 7));
        assert_eq!(a, b);
        assert_ne!(a, orders_csv_bytes(&cfg(5000, 8)));
        assert!(a.starts_with(ORDERS_HEADER.as_bytes()));
        // A prefix of a longer run is the shorter run.
        let longer = orders_csv_bytes(&cfg(6000, 7));
        assert!(longer.starts_with(&a));
        // Through a writer in small pieces, the same bytes.
        let mut w = std::io::BufWriter::with_capacity(7, Vec::new());
        write_orders_csv(&cfg(5000, 7), &mut w).unwrap();
        assert_eq!(w.into_inner().unwrap(), a);
    }

    #[test]
    fn fixed_sample_bytes() {
        // Pins the output: a change here changes data/orders.csv and every golden built on it.
        // The generator reads ChaCha8 through `next_u64` only, so this holds across `rand`
        // versions.
        let text = String::from_utf8(orders_csv_bytes(&cfg(3, 42))).unwrap();
        assert_eq!(
            text,
            "order_id,ts,customer_id,category,product,quantity,unit_price,amount,status\n\
             1,2024-01-01T00:00:00.120Z,12346,electronics,Portable Tablet,1,339.99,339.99,placed\n\
             2,2024-01-01T00:00:00.130Z,36670,grocery,Italian Honey,2,3.99,7.98,paid\n\
             3,2024-01-01T00:00:00.137Z,23,electronics,Ultra Keyboard,2,58.00,116.00,paid\n"
        );
    }

    #[test]
    fn every_row_parses_and_looks_real() {
        let events = 30_000;
        let file = orders_csv_bytes(&cfg(events, 1));
        let b = parse_all(&file, 4096);
        assert!(b.dead.is_empty(), "{:?}", &b.dead[..b.dead.len().min(3)]);
        assert_eq!(b.len() as u64, events);
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        let mut products = HashSet::new();
        let mut customers = HashSet::new();
        let mut prices: BTreeMap<String, i64> = BTreeMap::new();
        for (i, row) in b.rows().enumerate() {
            assert_eq!(row[0], Value::Int(i as i64 + 1));
            let quantity = row[5].as_i64().unwrap();
            assert!((1..=5).contains(&quantity));
            let price = (row[6].as_f64().unwrap() * 100.0).round() as i64;
            let amount = (row[7].as_f64().unwrap() * 100.0).round() as i64;
            assert_eq!(amount, price * quantity);
            assert!(price > 0);
            let product = row[4].as_str().unwrap().to_string();
            assert_eq!(
                *prices.entry(product.clone()).or_insert(price),
                price,
                "{product}"
            );
            products.insert(product);
            customers.insert(row[2].as_i64().unwrap());
            *categories
                .entry(row[3].as_str().unwrap().into())
                .or_default() += 1;
            *statuses.entry(row[8].as_str().unwrap().into()).or_default() += 1;
        }
        assert_eq!(categories.len(), 8);
        assert!(categories["electronics"] > 3 * categories["grocery"]);
        assert!(products.len() > 200, "{}", products.len());
        assert!(products.contains("Classic Socks, 3-pack"));
        assert!(
            customers.len() > 5_000 && customers.len() < 30_000,
            "{}",
            customers.len()
        );
        let share = |s: &str| statuses[s] as f64 / events as f64;
        assert!((share("paid") - 0.7).abs() < 0.02);
        assert!((share("placed") - 0.2).abs() < 0.02);
        assert!((share("cancelled") - 0.1).abs() < 0.02);
        // Timestamps advance by tens of ms per event on average.
        let first = b.row(0)[1].as_i64().unwrap();
        let last = b.row(b.len() - 1)[1].as_i64().unwrap();
        let mean_gap = (last - first) as f64 / events as f64;
        assert!((10.0..80.0).contains(&mean_gap), "{mean_gap}");
    }

    #[test]
    fn disorder_is_bounded() {
        for max_disorder_ms in [0, 500, 3000] {
            let c = OrdersConfig {
                max_disorder_ms,
                ..cfg(20_000, 3)
            };
            let b = parse_all(&orders_csv_bytes(&c), 1 << 20);
            let mut max_seen = i64::MIN;
            let mut out_of_order = 0;
            for row in b.rows() {
                let ts = row[1].as_i64().unwrap();
                assert!(ts >= c.start_ms);
                if ts < max_seen {
                    out_of_order += 1;
                    assert!(max_seen - ts <= max_disorder_ms, "{} behind", max_seen - ts);
                }
                max_seen = max_seen.max(ts);
            }
            if max_disorder_ms == 0 {
                assert_eq!(out_of_order, 0);
            } else {
                assert!(out_of_order > 1000, "{out_of_order}");
            }
        }
    }

    #[test]
    fn malformed_share_gives_dead_records() {
        let c = OrdersConfig {
            malformed_share: 0.05,
            ..cfg(20_000, 5)
        };
        check_malformed_share(
            &orders_csv_bytes(&cfg(20_000, 5)),
            &orders_csv_bytes(&c),
            &orders_csv_bytes(&c),
            20_000,
            &orders_schema(),
        );
    }

    /// Shared by both generators: about 5% of `events` are dead with two kinds of reason, the
    /// dirty output is deterministic, the clean output has no dead record, and every line that
    /// was not corrupted is the clean file's line in the same place.
    pub(crate) fn check_malformed_share(
        clean: &[u8],
        dirty: &[u8],
        dirty_again: &[u8],
        events: u64,
        schema: &crate::record::Schema,
    ) {
        assert_eq!(dirty, dirty_again);
        let b = parse_generated(dirty, schema, 64 * 1024);
        assert_eq!(b.records() as u64, events);
        let share = b.dead.len() as f64 / events as f64;
        assert!((0.04..0.06).contains(&share), "{share}");
        let reasons: HashSet<_> = b.dead.iter().map(|d| d.reason).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        let clean_lines: Vec<&[u8]> = clean.split(|&x| x == b'\n').collect();
        let dirty_lines: Vec<&[u8]> = dirty.split(|&x| x == b'\n').collect();
        assert_eq!(clean_lines.len(), dirty_lines.len());
        let same = clean_lines
            .iter()
            .zip(&dirty_lines)
            .filter(|(a, b)| a == b)
            .count();
        assert_eq!(same, clean_lines.len() - b.dead.len());
        assert!(parse_generated(clean, schema, 64 * 1024).dead.is_empty());
    }

    #[test]
    fn iso_dates_match_chrono() {
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
            -62_167_219_200_001,
        ] {
            let mut buf = Vec::new();
            cache.push_iso8601(&mut buf, ms);
            assert_eq!(String::from_utf8(buf).unwrap(), time::iso8601(ms), "{ms}");
        }
    }

    #[test]
    #[ignore = "throughput check; run with --ignored --nocapture"]
    fn parse_throughput() {
        let events = 1_000_000;
        let t = std::time::Instant::now();
        let file = orders_csv_bytes(&cfg(events, 9));
        let gen = t.elapsed().as_secs_f64();
        println!(
            "generate: {events} rows, {:.1} MB in {gen:.3}s = {:.2} M rows/s",
            file.len() as f64 / 1e6,
            events as f64 / gen / 1e6
        );
        let schema = orders_schema();
        let (header, body) = read_header(&file);
        let layout = CsvLayout::from_header(header.unwrap(), &schema, b',').unwrap();
        let t = std::time::Instant::now();
        let chunks: Vec<_> = Splitter::new(&file, body, 2, 1 << 20, true).collect();
        let split = t.elapsed().as_secs_f64();
        println!(
            "split: {} chunks in {:.4}s = {:.2} GB/s",
            chunks.len(),
            split,
            file.len() as f64 / split / 1e9
        );
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut out = ParsedBatch::new(schema.len());
            let mut rows = 0;
            let t = std::time::Instant::now();
            for chunk in &chunks {
                out.clear();
                parse_chunk(chunk.bytes(&file), chunk, &layout, &schema, &mut out);
                rows += out.len();
            }
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(rows as u64, events);
            best = best.min(secs);
        }
        println!(
            "parse (1 thread, best of 5): {:.2} M rows/s, {:.0} MB/s ({:.1} bytes/row)",
            events as f64 / best / 1e6,
            file.len() as f64 / best / 1e6,
            file.len() as f64 / events as f64
        );
        // The same rows as JSON Lines.
        let mut jsonl = String::new();
        let mut last = ParsedBatch::new(schema.len());
        for chunk in &chunks {
            parse_chunk(chunk.bytes(&file), chunk, &layout, &schema, &mut last);
        }
        for row in last.rows() {
            jsonl.push('{');
            for (i, (field, value)) in schema.fields.iter().zip(row).enumerate() {
                if i > 0 {
                    jsonl.push(',');
                }
                crate::record::write_json_string(&field.name, &mut jsonl);
                jsonl.push(':');
                value.write_json(&mut jsonl);
            }
            jsonl.push_str("}\n");
        }
        let json_layout = JsonLayout::new(&schema);
        let json_chunks: Vec<_> = Splitter::new(jsonl.as_bytes(), 0, 1, 1 << 20, false).collect();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut out = ParsedBatch::new(schema.len());
            let mut rows = 0;
            let t = std::time::Instant::now();
            for chunk in &json_chunks {
                out.clear();
                json_parse_chunk(
                    chunk.bytes(jsonl.as_bytes()),
                    chunk,
                    &json_layout,
                    &schema,
                    &mut out,
                );
                rows += out.len();
            }
            assert_eq!(rows as u64, events);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "parse JSON Lines (1 thread, best of 3): {:.2} M rows/s, {:.0} MB/s ({:.1} bytes/row)",
            events as f64 / best / 1e6,
            jsonl.len() as f64 / best / 1e6,
            jsonl.len() as f64 / events as f64
        );
        let t = std::time::Instant::now();
        let big = orders_csv_bytes(&cfg(10_000_000, 9));
        println!(
            "generate 10M rows ({:.0} MB): {:.2}s",
            big.len() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
}
