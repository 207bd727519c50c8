//! A deterministic generator of a shop's event streams — orders, their payments and
//! cancellations, and stock movements — for the e-commerce pipelines, their tests and
//! benchmarks.
//!
//! Why it exists: joining payments and cancellations to orders, and keeping stock levels from
//! restocks and sales, needs streams that refer to each other consistently (a payment or
//! cancellation always belongs to an earlier order, at most one of each per order) while
//! arriving out of order, like the real thing.
//!
//! The files (`DIR/…`):
//! - `orders.csv`: `order_id,ts,customer_id,product,category,quantity,amount`. Products come
//!   from the orders generator's fixed catalogue ([`super`]: 8 categories, 384 products, Zipf
//!   popularity, the same prices); `amount` is quantity × unit price. Customers `1..=50,000`,
//!   low ids ordering far more often. Order ids count up in file order.
//! - `payments.csv`: `payment_id,ts,order_id,amount,method`. 85% of orders get exactly one
//!   payment, 2 s to 15 min (log-uniform) after the order, for the order's amount; `method` is
//!   `card`, `paypal` or `bank_transfer`. Payment ids count up in file order.
//! - `cancellations.csv`: `order_id,ts,reason`. 5% of orders are cancelled, at most once: a
//!   paid order 30 s to 30 min after its payment, an unpaid one 1 to 30 min after the order.
//! - `inventory.csv`: `ts,product,delta,reason`. First one `restock` per product at the start
//!   time, to a target level of about three and a half restock cycles of its expected demand. Then
//!   recurring `restock`s (products drawn by the square root of their demand, so popular
//!   products are restocked more often *and* in bigger lots: up to the target, at least half the
//!   expected sales between two restocks) and `adjustment`s (a quarter of the stock lines: −5 to −1 for damage and
//!   loss, +1 to +3 for found items). Restocks come at random intervals while sales lower the
//!   stock, so popular products sometimes run low or briefly below zero.
//!
//! `--events N`: N data lines in total (give or take 2; the initial restocks count, and are
//! all written even when N is smaller). A step of the clock is a stock line (21%) or an order
//! with its payment and cancellation, so the files get about 46% orders, 39% payments, 2.3%
//! cancellations and 12% stock lines. Traffic is about 30 orders per second with bursts, so
//! 40,000 events span about 10 minutes.
//!
//! Disorder: every line has an event time `ts` and an arrival at most `max_disorder_ms`
//! (default 5 s) later; a quarter of the lines arrive late. Each file is written in arrival
//! order, so a `ts` is never more than `max_disorder_ms` behind the largest `ts` before it in
//! its file. A payment's or cancellation's `ts` is never before its order's.
//!
//! Malformed records: with `malformed_share > 0`, that share of the lines of each file is
//! broken (wrong column count, unparsable integer or timestamp), from a separate random stream,
//! so the other lines are those of the clean file. A payment or cancellation of a broken order
//! line then refers to an order that only the dead letters hold, as with a lost upstream record.
//!
//! Determinism: the output depends only on the [`EcommerceConfig`]: ChaCha8 stream 0 for the
//! shop, stream 1 for the damage, read through `next_u64` with the conversions of [`super`].

use super::{
    below, create_in, draw_lag, log_uniform, pick, unit, BurstyClock, Catalogue, CsvOut, Damage,
    QUANTITY_CDF,
};
use crate::record::{Schema, Type};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::path::Path;

/// Settings of the e-commerce generator (up to 5 s of disorder by default).
pub type EcommerceConfig = super::GenConfig<5_000>;

/// The schema of `orders.csv`, in column order.
pub fn orders_schema() -> Schema {
    Schema::new([
        ("order_id", Type::Int),
        ("ts", Type::Timestamp),
        ("customer_id", Type::Int),
        ("product", Type::String),
        ("category", Type::String),
        ("quantity", Type::Int),
        ("amount", Type::Float),
    ])
}

/// The schema of `payments.csv`, in column order.
pub fn payments_schema() -> Schema {
    Schema::new([
        ("payment_id", Type::Int),
        ("ts", Type::Timestamp),
        ("order_id", Type::Int),
        ("amount", Type::Float),
        ("method", Type::String),
    ])
}

/// The schema of `cancellations.csv`, in column order.
pub fn cancellations_schema() -> Schema {
    Schema::new([
        ("order_id", Type::Int),
        ("ts", Type::Timestamp),
        ("reason", Type::String),
    ])
}

/// The schema of `inventory.csv`, in column order.
pub fn inventory_schema() -> Schema {
    Schema::new([
        ("ts", Type::Timestamp),
        ("product", Type::String),
        ("delta", Type::Int),
        ("reason", Type::String),
    ])
}

/// The header line of `orders.csv` (with its newline).
pub const ORDERS_HEADER: &str = "order_id,ts,customer_id,product,category,quantity,amount\n";
/// The header line of `payments.csv` (with its newline).
pub const PAYMENTS_HEADER: &str = "payment_id,ts,order_id,amount,method\n";
/// The header line of `cancellations.csv` (with its newline).
pub const CANCELLATIONS_HEADER: &str = "order_id,ts,reason\n";
/// The header line of `inventory.csv` (with its newline).
pub const INVENTORY_HEADER: &str = "ts,product,delta,reason\n";

/// Number of customers; ids are `1..=CUSTOMERS`.
const CUSTOMERS: u64 = 50_000;
/// Chance that an order is paid, and when (ms after the order, log-uniform).
const PAID_CHANCE: f64 = 0.85;
const PAY_AFTER_MS: (f64, f64) = (2_000.0, 900_000.0);
/// Chance that an order is cancelled, and when: after the payment if paid, else after the
/// order (ms, log-uniform).
const CANCEL_CHANCE: f64 = 0.05;
const CANCEL_AFTER_PAYMENT_MS: (f64, f64) = (30_000.0, 1_800_000.0);
const CANCEL_UNPAID_AFTER_MS: (f64, f64) = (60_000.0, 1_800_000.0);
/// Share of all lines that are stock lines (initial restocks aside).
const INVENTORY_SHARE: f64 = 0.12;
/// Share of stock lines that are adjustments rather than restocks.
const ADJUSTMENT_SHARE: f64 = 0.25;
/// A product's target stock, in expected restock cycles of its demand, and at least this much.
const TARGET_CYCLES: f64 = 3.5;
const MIN_TARGET: f64 = 10.0;
/// Mean gap between clock steps outside and inside bursts (ms).
const MEAN_GAP_MS: f64 = 40.0;
const BURST_GAP_MS: f64 = 2.0;
/// Chance that a line arrives late.
const DELAY_CHANCE: f64 = 0.25;

const METHODS: [&str; 3] = ["card", "paypal", "bank_transfer"];
const METHOD_CDF: [f64; 3] = [0.62, 0.88, 1.0];
const REASONS: [&str; 5] = [
    "customer_request",
    "out_of_stock",
    "fraud_check",
    "address_issue",
    "payment_failed",
];
/// Cancellation reasons of paid and of unpaid orders (cumulative over [`REASONS`]).
const PAID_REASON_CDF: [f64; 5] = [0.6, 0.8, 0.9, 1.0, 1.0];
const UNPAID_REASON_CDF: [f64; 5] = [0.4, 0.5, 0.5, 0.5, 1.0];

/// A payment or cancellation waiting for its arrival. Ordered by arrival, then order id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FollowUp {
    arrival: i64,
    order_id: u64,
    ts: i64,
    /// The amount of a payment.
    cents: u64,
    /// Index into [`METHODS`] or [`REASONS`].
    what: u8,
}

/// The catalogue's products as one list, with their stock bookkeeping.
struct Stock {
    /// Index of each category's first product in the flat list.
    offsets: Vec<usize>,
    /// The CSV field of each product's name.
    names: Vec<Vec<u8>>,
    /// Cumulative chance of each product to be the next restocked.
    restock_cdf: Vec<f64>,
    target: Vec<i64>,
    /// The smallest restock of each product: half its expected demand between two restocks.
    min_lot: Vec<i64>,
    level: Vec<i64>,
}

impl Stock {
    fn new(catalogue: &Catalogue) -> Stock {
        let mean_quantity: f64 = QUANTITY_CDF
            .iter()
            .enumerate()
            .map(|(i, &c)| (i + 1) as f64 * (c - if i == 0 { 0.0 } else { QUANTITY_CDF[i - 1] }))
            .sum();
        let (mut offsets, mut names, mut demand) = (Vec::new(), Vec::new(), Vec::new());
        let mut previous_category = 0.0;
        for (category, &category_cdf) in catalogue.categories.iter().zip(&catalogue.cdf) {
            offsets.push(names.len());
            let mut previous = 0.0;
            for (product, &cdf) in category.products.iter().zip(&category.cdf) {
                names.push(product.csv_name.clone());
                // Expected units sold per order.
                demand.push((category_cdf - previous_category) * (cdf - previous) * mean_quantity);
                previous = cdf;
            }
            previous_category = category_cdf;
        }
        let weights: Vec<f64> = demand.iter().map(|d| d.sqrt()).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut restock_cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        *restock_cdf.last_mut().expect("a non-empty catalogue") = 1.0;
        // Restocks of a product per order, from the share of steps that are restocks.
        let step = inventory_step_chance();
        let restocks_per_order = step * (1.0 - ADJUSTMENT_SHARE) / (1.0 - step);
        let (target, min_lot): (Vec<i64>, Vec<i64>) = demand
            .iter()
            .zip(&weights)
            .map(|(d, w)| {
                let cycle_demand = d / (restocks_per_order * w / total);
                let target = ((TARGET_CYCLES * cycle_demand).max(MIN_TARGET) / 5.0).ceil() as i64;
                // Below the demand of a cycle, so a well-stocked product drifts back down.
                let min_lot = ((cycle_demand / 2.0) as i64).max(1);
                (target * 5, min_lot)
            })
            .unzip();
        Stock {
            offsets,
            names,
            restock_cdf,
            level: target.clone(),
            target,
            min_lot,
        }
    }
}

/// Chance that a clock step is a stock line, so that stock lines are [`INVENTORY_SHARE`] of
/// all lines when an order step writes 1 + [`PAID_CHANCE`] + [`CANCEL_CHANCE`] lines.
fn inventory_step_chance() -> f64 {
    let per_order = 1.0 + PAID_CHANCE + CANCEL_CHANCE;
    INVENTORY_SHARE * per_order / (1.0 - INVENTORY_SHARE + INVENTORY_SHARE * per_order)
}

/// Writes the e-commerce dataset into `dir` (created if needed): `orders.csv`,
/// `payments.csv`, `cancellations.csv` and `inventory.csv`.
///
/// # Errors
/// Creating the folder or writing the files.
pub fn write_ecommerce(cfg: &EcommerceConfig, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut orders = create_in(dir, "orders.csv")?;
    let mut payments = create_in(dir, "payments.csv")?;
    let mut cancellations = create_in(dir, "cancellations.csv")?;
    let mut inventory = create_in(dir, "inventory.csv")?;
    write_ecommerce_to(
        cfg,
        EcommerceWriters {
            orders: &mut orders,
            payments: &mut payments,
            cancellations: &mut cancellations,
            inventory: &mut inventory,
        },
    )
}

/// Where [`write_ecommerce_to`] writes each file.
pub struct EcommerceWriters<'a> {
    /// `orders.csv`.
    pub orders: &'a mut dyn Write,
    /// `payments.csv`.
    pub payments: &'a mut dyn Write,
    /// `cancellations.csv`.
    pub cancellations: &'a mut dyn Write,
    /// `inventory.csv`.
    pub inventory: &'a mut dyn Write,
}

/// The four output files with the damage stream they share.
struct Outputs<'a> {
    orders: CsvOut<'a>,
    payments: CsvOut<'a>,
    cancellations: CsvOut<'a>,
    inventory: CsvOut<'a>,
    damage_rng: ChaCha8Rng,
    malformed_share: f64,
    payment_id: u64,
}

impl Outputs<'_> {
    fn damage(&mut self) -> Option<Damage> {
        Damage::draw(&mut self.damage_rng, self.malformed_share)
    }

    fn payment(&mut self, p: &FollowUp) -> io::Result<()> {
        let damage = self.damage();
        self.payment_id += 1;
        self.payments
            .int_or_bad(self.payment_id, damage)
            .comma()
            .ts(p.ts, damage)
            .comma()
            .int(p.order_id)
            .comma()
            .cents(p.cents)
            .comma()
            .text(METHODS[p.what as usize].as_bytes());
        self.payments.end_line(damage)
    }

    fn cancellation(&mut self, c: &FollowUp) -> io::Result<()> {
        let damage = self.damage();
        self.cancellations
            .int_or_bad(c.order_id, damage)
            .comma()
            .ts(c.ts, damage)
            .comma()
            .text(REASONS[c.what as usize].as_bytes());
        self.cancellations.end_line(damage)
    }

    fn stock_line(&mut self, ts: i64, product: &[u8], delta: i64, reason: &str) -> io::Result<()> {
        let damage = self.damage();
        self.inventory
            .ts(ts, damage)
            .comma()
            .text(product)
            .comma()
            .int_or_bad(delta, damage)
            .comma()
            .text(reason.as_bytes());
        self.inventory.end_line(damage)
    }
}

/// Payments and cancellations waiting for their arrival.
#[derive(Default)]
struct Pending {
    payments: BinaryHeap<Reverse<FollowUp>>,
    cancellations: BinaryHeap<Reverse<FollowUp>>,
}

impl Pending {
    /// Writes everything that has arrived by `now`, earliest first.
    fn write_until(&mut self, now: i64, out: &mut Outputs) -> io::Result<()> {
        while let Some(&Reverse(p)) = self.payments.peek().filter(|p| p.0.arrival <= now) {
            self.payments.pop();
            out.payment(&p)?;
        }
        while let Some(&Reverse(c)) = self.cancellations.peek().filter(|c| c.0.arrival <= now) {
            self.cancellations.pop();
            out.cancellation(&c)?;
        }
        Ok(())
    }
}

/// Writes the e-commerce dataset's four files to the given writers (headers first). See the
/// module docs for what the data looks like; the same config always gives the same bytes.
///
/// # Errors
/// Whatever the writers return.
pub fn write_ecommerce_to(cfg: &EcommerceConfig, writers: EcommerceWriters) -> io::Result<()> {
    let catalogue = Catalogue::new();
    let mut stock = Stock::new(&catalogue);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut damage_rng = rng.clone();
    damage_rng.set_stream(1);
    let max_disorder = cfg.max_disorder_ms.max(0);
    let mut out = Outputs {
        orders: CsvOut::new(writers.orders, ORDERS_HEADER),
        payments: CsvOut::new(writers.payments, PAYMENTS_HEADER),
        cancellations: CsvOut::new(writers.cancellations, CANCELLATIONS_HEADER),
        inventory: CsvOut::new(writers.inventory, INVENTORY_HEADER),
        damage_rng,
        malformed_share: cfg.malformed_share.clamp(0.0, 1.0),
        payment_id: 0,
    };
    let mut pending = Pending::default();
    let inventory_chance = inventory_step_chance();

    // Every product starts stocked to its target.
    for (name, &target) in stock.names.iter().zip(&stock.target) {
        out.stock_line(cfg.start_ms, name, target, "restock")?;
    }
    // Lines written or already planned (pending payments and cancellations).
    let mut lines = stock.names.len() as u64;
    let mut event_clock = BurstyClock::new(cfg.start_ms, MEAN_GAP_MS, BURST_GAP_MS);
    let mut order_id = 0u64;

    while lines < cfg.events {
        // Draw everything in a fixed order, so the stream does not depend on the output.
        let clock = event_clock.advance(&mut rng);
        let ts = clock - draw_lag(&mut rng, DELAY_CHANCE, max_disorder).min(clock - cfg.start_ms);

        if unit(&mut rng) < inventory_chance {
            if unit(&mut rng) < ADJUSTMENT_SHARE {
                let item = below(&mut rng, stock.names.len() as u64) as usize;
                let delta = if unit(&mut rng) < 0.75 {
                    -1 - below(&mut rng, 5) as i64
                } else {
                    1 + below(&mut rng, 3) as i64
                };
                stock.level[item] += delta;
                out.stock_line(ts, &stock.names[item], delta, "adjustment")?;
            } else {
                let item = pick(&stock.restock_cdf, unit(&mut rng));
                let target = stock.target[item];
                let delta = (target - stock.level[item]).max(stock.min_lot[item]);
                stock.level[item] += delta;
                out.stock_line(ts, &stock.names[item], delta, "restock")?;
            }
            lines += 1;
        } else {
            order_id += 1;
            let customer = {
                let u = unit(&mut rng);
                1 + (u * u * u * CUSTOMERS as f64) as u64
            };
            let c = pick(&catalogue.cdf, unit(&mut rng));
            let category = &catalogue.categories[c];
            let p = pick(&category.cdf, unit(&mut rng));
            let product = &category.products[p];
            let quantity = pick(&QUANTITY_CDF, unit(&mut rng)) as u64 + 1;
            let cents = quantity * product.price_cents;
            stock.level[stock.offsets[c] + p] -= quantity as i64;

            let damage = out.damage();
            out.orders
                .int_or_bad(order_id, damage)
                .comma()
                .ts(ts, damage)
                .comma()
                .int(customer)
                .comma()
                .text(&product.csv_name)
                .comma()
                .text(category.name.as_bytes())
                .comma()
                .int(quantity)
                .comma()
                .cents(cents);
            out.orders.end_line(damage)?;
            lines += 1;

            // A follow-up arrives within the disorder bound of its `ts`, and not before now,
            // so that each file stays in arrival order.
            let arrive = |rng: &mut ChaCha8Rng, ts: i64| {
                (ts + draw_lag(rng, DELAY_CHANCE, max_disorder)).max(clock.min(ts + max_disorder))
            };
            let mut paid_at = None;
            if unit(&mut rng) < PAID_CHANCE {
                let ts = ts + log_uniform(&mut rng, PAY_AFTER_MS) as i64;
                let what = pick(&METHOD_CDF, unit(&mut rng)) as u8;
                let arrival = arrive(&mut rng, ts);
                pending.payments.push(Reverse(FollowUp {
                    arrival,
                    order_id,
                    ts,
                    cents,
                    what,
                }));
                paid_at = Some(ts);
                lines += 1;
            }
            if unit(&mut rng) < CANCEL_CHANCE {
                let (ts, what) = match paid_at {
                    Some(paid) => (
                        paid + log_uniform(&mut rng, CANCEL_AFTER_PAYMENT_MS) as i64,
                        pick(&PAID_REASON_CDF, unit(&mut rng)) as u8,
                    ),
                    None => (
                        ts + log_uniform(&mut rng, CANCEL_UNPAID_AFTER_MS) as i64,
                        pick(&UNPAID_REASON_CDF, unit(&mut rng)) as u8,
                    ),
                };
                let arrival = arrive(&mut rng, ts);
                pending.cancellations.push(Reverse(FollowUp {
                    arrival,
                    order_id,
                    ts,
                    cents: 0,
                    what,
                }));
                lines += 1;
            }
        }
        pending.write_until(clock, &mut out)?;
    }
    pending.write_until(i64::MAX, &mut out)?;
    out.orders.finish()?;
    out.payments.finish()?;
    out.cancellations.finish()?;
    out.inventory.finish()
}

/// The four files of the e-commerce dataset in memory (tests and benchmarks).
pub struct EcommerceFiles {
    /// `orders.csv`.
    pub orders: Vec<u8>,
    /// `payments.csv`.
    pub payments: Vec<u8>,
    /// `cancellations.csv`.
    pub cancellations: Vec<u8>,
    /// `inventory.csv`.
    pub inventory: Vec<u8>,
}

/// The e-commerce dataset for `cfg` in memory.
pub fn ecommerce_bytes(cfg: &EcommerceConfig) -> EcommerceFiles {
    let mut files = EcommerceFiles {
        orders: Vec::new(),
        payments: Vec::new(),
        cancellations: Vec::new(),
        inventory: Vec::new(),
    };
    write_ecommerce_to(
        cfg,
        EcommerceWriters {
            orders: &mut files.orders,
            payments: &mut files.payments,
            cancellations: &mut files.cancellations,
            inventory: &mut files.inventory,
        },
    )
    .expect("writing to a Vec cannot fail");
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::parsed::ParsedBatch;
    use crate::generate::tests::{check_malformed_share, parse_generated};
    use std::collections::{BTreeMap, HashMap, HashSet};

    fn cfg(events: u64, seed: u64) -> EcommerceConfig {
        EcommerceConfig {
            events,
            seed,
            ..EcommerceConfig::default()
        }
    }

    /// The four files parsed, in the order orders, payments, cancellations, inventory.
    fn parse(files: &EcommerceFiles) -> [ParsedBatch; 4] {
        [
            parse_generated(&files.orders, &orders_schema(), 1 << 16),
            parse_generated(&files.payments, &payments_schema(), 1 << 16),
            parse_generated(&files.cancellations, &cancellations_schema(), 1 << 16),
            parse_generated(&files.inventory, &inventory_schema(), 1 << 16),
        ]
    }

    fn all_files(files: &EcommerceFiles) -> [&Vec<u8>; 4] {
        [
            &files.orders,
            &files.payments,
            &files.cancellations,
            &files.inventory,
        ]
    }

    /// The `ts` column of each file.
    const TS: [usize; 4] = [1, 1, 1, 0];

    #[test]
    fn same_seed_same_bytes() {
        let a = ecommerce_bytes(&cfg(5000, 7));
        let b = ecommerce_bytes(&cfg(5000, 7));
        assert_eq!(all_files(&a), all_files(&b));
        let c = ecommerce_bytes(&cfg(5000, 8));
        for (x, y) in all_files(&a).into_iter().zip(all_files(&c)) {
            assert_ne!(x, y);
        }
        assert!(a.orders.starts_with(ORDERS_HEADER.as_bytes()));
        assert!(a.payments.starts_with(PAYMENTS_HEADER.as_bytes()));
        assert!(a.cancellations.starts_with(CANCELLATIONS_HEADER.as_bytes()));
        assert!(a.inventory.starts_with(INVENTORY_HEADER.as_bytes()));
        // Into a folder, the same bytes.
        let dir = tempfile::tempdir().unwrap();
        write_ecommerce(&cfg(5000, 7), dir.path()).unwrap();
        for (name, bytes) in ["orders", "payments", "cancellations", "inventory"]
            .into_iter()
            .zip(all_files(&a))
        {
            let path = dir.path().join(format!("{name}.csv"));
            assert_eq!(&std::fs::read(path).unwrap(), bytes, "{name}");
        }
    }

    #[test]
    fn committed_sample_is_current() {
        // data/ecommerce is `eventflow generate ecommerce --events 40000 --seed 42`; a change
        // here means regenerating it (see data/README.md).
        let files = ecommerce_bytes(&cfg(40_000, 42));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ecommerce");
        for (name, bytes) in ["orders", "payments", "cancellations", "inventory"]
            .into_iter()
            .zip(all_files(&files))
        {
            let committed = std::fs::read(dir.join(format!("{name}.csv"))).unwrap();
            assert!(&committed == bytes, "{name}");
        }
    }

    #[test]
    fn every_row_parses_and_refers_to_an_earlier_order() {
        let events = 60_000;
        let c = cfg(events, 1);
        let files = ecommerce_bytes(&c);
        let [orders, payments, cancellations, inventory] = parse(&files);
        for b in [&orders, &payments, &cancellations, &inventory] {
            assert!(b.dead.is_empty(), "{:?}", &b.dead[..b.dead.len().min(3)]);
        }
        let total = orders.len() + payments.len() + cancellations.len() + inventory.len();
        assert!((events..=events + 2).contains(&(total as u64)), "{total}");
        let share = |n: usize| n as f64 / total as f64;
        eprintln!(
            "orders {:.3} payments {:.3} cancellations {:.3} inventory {:.3}",
            share(orders.len()),
            share(payments.len()),
            share(cancellations.len()),
            share(inventory.len())
        );
        assert!((0.44..0.48).contains(&share(orders.len())));
        assert!((0.11..0.14).contains(&share(inventory.len())));

        // Orders: (ts, amount in cents); amounts are quantity × a fixed unit price.
        let mut order_at: HashMap<i64, (i64, i64)> = HashMap::new();
        let mut prices: HashMap<String, i64> = HashMap::new();
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        for (i, row) in orders.rows().enumerate() {
            let id = row[0].as_i64().unwrap();
            assert_eq!(id, i as i64 + 1);
            let cents = (row[6].as_f64().unwrap() * 100.0).round() as i64;
            let quantity = row[5].as_i64().unwrap();
            assert!((1..=5).contains(&quantity));
            assert_eq!(cents % quantity, 0);
            let product = row[3].as_str().unwrap().to_string();
            assert_eq!(
                *prices.entry(product).or_insert(cents / quantity),
                cents / quantity
            );
            assert!((1..=CUSTOMERS as i64).contains(&row[2].as_i64().unwrap()));
            *categories
                .entry(row[4].as_str().unwrap().into())
                .or_default() += 1;
            order_at.insert(id, (row[1].as_i64().unwrap(), cents));
        }
        assert_eq!(categories.len(), 8);
        assert!(categories["electronics"] > 3 * categories["grocery"]);

        // Payments: one per paid order, not before it, for its amount.
        let mut paid: HashMap<i64, i64> = HashMap::new();
        let mut methods: BTreeMap<String, u64> = BTreeMap::new();
        for (i, row) in payments.rows().enumerate() {
            assert_eq!(row[0].as_i64(), Some(i as i64 + 1));
            let (ts, order) = (row[1].as_i64().unwrap(), row[2].as_i64().unwrap());
            let (order_ts, cents) = order_at[&order];
            assert!(ts > order_ts && ts <= order_ts + 900_000);
            assert_eq!((row[3].as_f64().unwrap() * 100.0).round() as i64, cents);
            assert!(paid.insert(order, ts).is_none(), "order {order} paid twice");
            *methods.entry(row[4].as_str().unwrap().into()).or_default() += 1;
        }
        assert_eq!(methods.len(), 3);
        let paid_share = paid.len() as f64 / orders.len() as f64;
        // Orders near the end whose payment would come too late are still paid.
        assert!((0.83..0.87).contains(&paid_share), "{paid_share}");

        // Cancellations: at most one per order, after the order and after its payment.
        let mut cancelled = HashSet::new();
        let mut paid_cancelled = 0;
        for row in cancellations.rows() {
            let (order, ts) = (row[0].as_i64().unwrap(), row[1].as_i64().unwrap());
            assert!(ts >= order_at[&order].0);
            if let Some(&paid_ts) = paid.get(&order) {
                assert!(ts >= paid_ts);
                paid_cancelled += 1;
            } else {
                assert!(ts > order_at[&order].0 + 59_000);
            }
            assert!(cancelled.insert(order), "order {order} cancelled twice");
            assert!(REASONS.contains(&row[2].as_str().unwrap()));
        }
        let cancelled_share = cancelled.len() as f64 / orders.len() as f64;
        assert!((0.04..0.06).contains(&cancelled_share), "{cancelled_share}");
        assert!(paid_cancelled > 0 && paid_cancelled < cancelled.len());

        // Inventory: every product restocked at the start, then restocks and adjustments.
        let products: HashSet<&str> = inventory
            .rows()
            .take_while(|row| row[0].as_i64() == Some(c.start_ms))
            .map(|row| {
                assert_eq!(row[3].as_str(), Some("restock"));
                row[1].as_str().unwrap()
            })
            .collect();
        assert_eq!(products.len(), 384);
        assert!(prices.keys().all(|p| products.contains(p.as_str())));
        let mut events_by_time: Vec<(i64, String, i64)> = Vec::new();
        let mut restock_sizes: HashMap<String, Vec<i64>> = HashMap::new();
        for row in inventory.rows() {
            let product = row[1].as_str().unwrap().to_string();
            let delta = row[2].as_i64().unwrap();
            match row[3].as_str().unwrap() {
                "restock" => {
                    assert!(delta > 0);
                    restock_sizes
                        .entry(product.clone())
                        .or_default()
                        .push(delta);
                }
                "adjustment" => assert!((-5..=3).contains(&delta) && delta != 0),
                reason => panic!("{reason}"),
            }
            events_by_time.push((row[0].as_i64().unwrap(), product, delta));
        }
        for row in orders.rows() {
            let product = row[3].as_str().unwrap().to_string();
            events_by_time.push((row[1].as_i64().unwrap(), product, -row[5].as_i64().unwrap()));
        }
        events_by_time.sort();
        // Stock is mostly positive, but the bestsellers sometimes run low.
        let mut level: HashMap<&str, i64> = HashMap::new();
        let mut lowest: HashMap<&str, f64> = HashMap::new();
        let (mut sales, mut negative) = (0, 0);
        for (_, product, delta) in &events_by_time {
            let l = level.entry(product).or_default();
            *l += delta;
            if *delta < 0 {
                sales += 1;
                negative += u64::from(*l < 0);
                let initial = restock_sizes[product][0] as f64;
                let low = lowest.entry(product).or_insert(f64::MAX);
                *low = low.min(*l as f64 / initial);
            }
        }
        let negative_share = negative as f64 / sales as f64;
        eprintln!("{negative_share} of sales leave a negative stock");
        assert!(negative_share < 0.05, "{negative_share}");
        let mut by_sales: Vec<(usize, &str)> = restock_sizes
            .iter()
            .map(|(p, s)| (s.len(), p.as_str()))
            .collect();
        by_sales.sort_unstable_by(|a, b| b.cmp(a));
        let low_bestsellers = by_sales[..10]
            .iter()
            .filter(|(_, p)| lowest[p] < 0.2)
            .count();
        eprintln!("{low_bestsellers} of the 10 bestsellers run below 20% of their first stock");
        assert!(low_bestsellers >= 3, "{low_bestsellers}");
        // Popular products get bigger restocks than rare ones.
        let mean = |p: &str| {
            let s = &restock_sizes[p][1..];
            s.iter().sum::<i64>() as f64 / s.len().max(1) as f64
        };
        let rare = by_sales.iter().rev().find(|(n, _)| *n > 2).unwrap().1;
        assert!(
            mean(by_sales[0].1) > 3.0 * mean(rare),
            "{} vs {}",
            mean(by_sales[0].1),
            mean(rare)
        );
    }

    #[test]
    #[ignore = "long run (3M events); run with --ignored"]
    fn stock_stays_bounded_over_a_long_run() {
        let files = ecommerce_bytes(&cfg(3_000_000, 9));
        let [orders, _, _, inventory] = parse(&files);
        let mut level: HashMap<&str, (i64, i64)> = HashMap::new();
        for row in inventory.rows() {
            let entry = level.entry(row[1].as_str().unwrap()).or_insert((0, 0));
            if entry.1 == 0 {
                entry.1 = row[2].as_i64().unwrap();
            }
            entry.0 += row[2].as_i64().unwrap();
        }
        for row in orders.rows() {
            level.get_mut(row[3].as_str().unwrap()).unwrap().0 -= row[5].as_i64().unwrap();
        }
        let worst = level
            .values()
            .map(|&(level, initial)| level as f64 / initial as f64)
            .fold(0.0, f64::max);
        assert!(
            worst < 4.0,
            "a product ends at {worst} times its initial stock"
        );
    }

    #[test]
    fn disorder_is_bounded() {
        for max_disorder_ms in [0, 500, 5_000] {
            let c = EcommerceConfig {
                max_disorder_ms,
                ..cfg(30_000, 3)
            };
            for (b, col) in parse(&ecommerce_bytes(&c)).iter().zip(TS) {
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
                } else if col == 1 && b.len() > 10_000 {
                    // Orders and payments are dense: many lines pass each other.
                    assert!(out_of_order > b.len() / 20, "{out_of_order} of {}", b.len());
                } else {
                    assert!(out_of_order > 0);
                }
            }
        }
    }

    #[test]
    fn malformed_share_gives_dead_records() {
        let events = 100_000;
        let dirty_cfg = EcommerceConfig {
            malformed_share: 0.05,
            ..cfg(events, 5)
        };
        let clean = ecommerce_bytes(&cfg(events, 5));
        let dirty = ecommerce_bytes(&dirty_cfg);
        let again = ecommerce_bytes(&dirty_cfg);
        let schemas = [
            orders_schema(),
            payments_schema(),
            cancellations_schema(),
            inventory_schema(),
        ];
        for (((clean, dirty), again), schema) in all_files(&clean)
            .into_iter()
            .zip(all_files(&dirty))
            .zip(all_files(&again))
            .zip(&schemas)
        {
            let lines = clean.iter().filter(|&&b| b == b'\n').count() as u64 - 1;
            check_malformed_share(clean, dirty, again, lines, schema);
        }
    }
}
