//! `sluice gen`: realistic Mixpanel events, deterministic for a seed.
//!
//! Default properties as the SDKs send them, custom properties with awkward names, nested
//! objects and arrays, type conflicts, unicode, times in seconds and milliseconds, late events,
//! and an adjustable share of malformed lines. The same arguments always give the same bytes:
//! the generator uses its own SplitMix64 rather than a library RNG whose stream may change
//! between versions.

use std::io::Write;

/// Generator settings.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub events: u64,
    pub seed: u64,
    /// Share of malformed lines (not JSON, no name, no usable time, ...).
    pub bad_fraction: f64,
    /// Share of events arriving hours or days late.
    pub late_fraction: f64,
    /// Share of events whose time is in milliseconds.
    pub ms_fraction: f64,
    /// First event time, epoch seconds.
    pub start: i64,
    /// Days the events span.
    pub days: f64,
    pub users: u64,
    /// No awkward names and no type conflicts (for peers that reject them).
    pub clean: bool,
    /// When not 0: three more properties per event, drawn from this many names.
    pub distinct_props: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            events: 1000,
            seed: 7,
            bad_fraction: 0.0,
            late_fraction: 0.01,
            ms_fraction: 0.02,
            start: 1_700_000_000,
            days: 2.0,
            users: 50_000,
            clean: false,
            distinct_props: 0,
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        const H: &[u8] = b"0123456789abcdef";
        (0..n).map(|_| H[self.below(16) as usize] as char).collect()
    }
}

/// Event names, most frequent first: event `i` is drawn with weight `1 / (i + 1)^0.9`, a heavy
/// head as in real product analytics.
const EVENTS: &[&str] = &[
    "Page View",
    "$mp_web_page_view",
    "$identify",
    "$create_alias",
    "Sign Up",
    "Signed In",
    "Log Out",
    "Add To Cart",
    "Remove From Cart",
    "Checkout Started",
    "Purchase",
    "Purchase Completed",
    "Refund",
    "Search",
    "Search Results Viewed",
    "Video Play",
    "Video Paused",
    "Video Completed",
    "Button Clicked",
    "App Open",
    "App Backgrounded",
    "$ae_session",
    "$ae_first_open",
    "Error",
    "API Error (5xx)",
    "Subscription Renewed",
    "Plan Upgraded",
    "Plan Downgraded",
    "Invite Sent",
    "Invite Accepted",
    "Notification Opened",
    "Push Received",
    "Share",
    "Like",
    "Comment Posted",
    "File Uploaded",
    "Export CSV",
    "Settings Changed",
    "Onboarding Step 1",
    "Onboarding Step 2",
    "Onboarding-Complete",
    "cloud.route",
    "SearchEvent",
    "BrowseV2ToggleNodeEvent",
    "clickProduct",
    "Café Visited",
    "ÜberEvent",
    "1st Launch",
    "order",
    "select",
    "Trial Started",
    "Trial Ended",
    "Feature Flag Evaluated",
    "Experiment Exposure",
    "Cart Viewed",
    "Wishlist Added",
    "Coupon Applied",
    "Payment Failed",
    "Support Ticket Opened",
];
/// `None`: a city the SDK could not tell (`null`).
const CITIES: &[Option<&str>] = &[
    Some("San Francisco"),
    Some("New York"),
    Some("London"),
    Some("Paris"),
    Some("Berlin"),
    Some("São Paulo"),
    Some("Tokyo"),
    Some("東京"),
    Some("Mumbai"),
    Some("Zürich"),
    Some("Kraków"),
    Some("Reykjavík"),
    Some("Lagos"),
    Some("Sydney"),
    Some("Toronto"),
    Some("Москва"),
    None,
];
const COUNTRIES: &[&str] = &[
    "US", "US", "US", "GB", "FR", "DE", "BR", "JP", "IN", "CH", "PL", "IS", "NG", "AU", "CA", "RU",
];
const REGIONS: &[Option<&str>] = &[
    Some("California"),
    Some("Île-de-France"),
    Some("Bavaria"),
    Some("Ontario"),
    None,
];
const BROWSERS: &[&str] = &[
    "Chrome",
    "Safari",
    "Firefox",
    "Edge",
    "Mobile Safari",
    "Samsung Internet",
    "Opera",
];
const OSES: &[&str] = &[
    "Windows",
    "Mac OS X",
    "iOS",
    "Android",
    "Linux",
    "Chrome OS",
];
const LIBS: &[&str] = &[
    "web", "iphone", "android", "python", "node", "ruby", "java", "go",
];
const PLANS: &[&str] = &["free", "pro", "team", "enterprise", "trial"];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY", "BRL"];
const REFERRERS: &[&str] = &[
    "$direct",
    "https://www.google.com/",
    "https://t.co/",
    "https://news.ycombinator.com/",
    "https://www.bing.com/search?q=analytics",
    "https://duckduckgo.com/",
];
const WORDS: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "theta",
    "lambda",
    "sigma",
    "omega",
    "naïve",
    "façade",
    "emoji 🎉",
    "quote \"x\"",
    "back\\slash",
    "tab\there",
    "line\nbreak",
    "中文",
];
/// Property names that exercise the cleaning rules (one of them 150 characters long).
const ODD_NAMES: &[&str] = &[
    "Plan Type",
    "item-price",
    "Price ($)",
    "café",
    "1st_visit",
    "timestamp",
    "order",
    "user",
    "XY",
    "Xy",
    "a.b.c",
    "$$weird",
    "UPPER CASE",
    "  padded  ",
    "emoji_🎉",
    "Ünïcödé key",
    "constraint",
    "type",
    "index",
    "select",
    "from",
    "with/slash",
    "semi;colon",
    "tab\tname",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "dup name",
    "Dup Name",
    "DUP-NAME",
    "Time",
];
const BAD_LINES: &[&str] = &[
    "{not json",
    r#"{"event": "No Properties"}"#,
    r#"{"properties": {"time": 1700000000, "distinct_id": "u"}}"#,
    r#"{"event": "Bad Time", "properties": {"time": "yesterday", "distinct_id": "u"}}"#,
    r#"{"event": 42, "properties": {"time": 1700000000}}"#,
    r#"["an", "array"]"#,
    r#"{"event": "No Time", "properties": {"distinct_id": "u"}}"#,
    "",
    r#""just a string""#,
    r#"{"event": "Truncated", "properties": {"time": 17000"#,
];

fn s(v: &str) -> serde_json::Value {
    serde_json::Value::String(v.to_string())
}

fn opt(v: Option<&str>) -> serde_json::Value {
    v.map(s).unwrap_or(serde_json::Value::Null)
}

impl Rng {
    /// An index drawn with weight `1 / (i + 1)^0.9`.
    fn heavy_head(&mut self, n: usize) -> usize {
        let w = |i: usize| 1.0 / ((i + 1) as f64).powf(0.9);
        let total: f64 = (0..n).map(w).sum();
        let mut x = self.f() * total;
        for i in 0..n {
            x -= w(i);
            if x < 0.0 {
                return i;
            }
        }
        n - 1
    }
    /// `k` distinct elements of `xs`, in the order drawn.
    fn sample<'a>(&mut self, xs: &[&'a str], k: usize) -> Vec<&'a str> {
        let mut pool = xs.to_vec();
        let mut out = Vec::with_capacity(k);
        for _ in 0..k.min(pool.len()) {
            let i = self.below(pool.len() as u64) as usize;
            out.push(pool.swap_remove(i));
        }
        out
    }
    /// Uniform in [lo, hi), rounded to `digits` decimals.
    fn uniform(&mut self, lo: f64, hi: f64, digits: i32) -> f64 {
        let p = 10f64.powi(digits);
        ((lo + self.f() * (hi - lo)) * p).round() / p
    }
}

/// The custom properties of an event, by kind (its name's place in [`EVENTS`], modulo 6).
fn custom(r: &mut Rng, kind: usize, p: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::{json, Value};
    match kind {
        0 => {
            p.insert("plan".into(), s(r.pick(PLANS)));
            p.insert("Plan Type".into(), s(r.pick(&["monthly", "annual"])));
            p.insert("seats".into(), json!(r.range(1, 500)));
        }
        1 => {
            let n = r.range(0, 4);
            let mut total = 0.0;
            let items: Vec<Value> = (0..n)
                .map(|_| {
                    let qty = r.range(1, 5);
                    let price = r.uniform(1.0, 300.0, 2);
                    total += price * qty as f64;
                    json!({"sku": format!("SKU-{}", r.hex(6)), "qty": qty, "price": price,
                           "tags": r.sample(WORDS, 2)})
                })
                .collect();
            p.insert("items".into(), Value::Array(items));
            let coupon = if r.f() < 0.7 {
                Value::Null
            } else {
                s("SAVE10")
            };
            p.insert(
                "cart".into(),
                json!({"total": (total * 100.0).round() / 100.0, "currency": r.pick(CURRENCIES),
                       "coupon": coupon}),
            );
            p.insert("item-price".into(), json!(r.uniform(1.0, 300.0, 2)));
            p.insert("Price ($)".into(), json!(r.range(1, 999)));
        }
        2 => {
            let k = r.range(1, 3) as usize;
            p.insert("query".into(), s(&r.sample(WORDS, k).join(" ")));
            p.insert("results".into(), json!(r.range(0, 1000)));
            let category = [Some("shoes"), Some("books"), None][r.below(3) as usize];
            p.insert(
                "filters".into(),
                json!({"category": opt(category), "sort": r.pick(&["price", "rank"]),
                       "facets": {"color": r.sample(&["red", "blue", "green"], 2)}}),
            );
        }
        3 => {
            p.insert("duration_ms".into(), json!(r.range(10, 3_600_000)));
            p.insert("autoplay".into(), json!(r.f() < 0.5));
            p.insert(
                "quality".into(),
                s(r.pick(&["240p", "720p", "1080p", "4k"])),
            );
        }
        4 => {
            p.insert(
                "error_code".into(),
                json!(r.pick(&[400, 401, 403, 404, 500, 502, 503])),
            );
            p.insert("message".into(), s(&format!("{} failed", r.pick(WORDS))));
            p.insert("retryable".into(), json!(r.f() < 0.3));
        }
        _ => {
            let k = r.range(0, 4) as usize;
            p.insert("tags".into(), json!(r.sample(WORDS, k)));
            p.insert("score".into(), json!(r.f() * 100.0));
        }
    }
}

/// One event as a JSON object (property order is insertion order): the shape of
/// `../shared/tools/gen_events.py` (about 740 bytes and 24 properties), with its own random
/// stream.
fn event(r: &mut Rng, o: &GenOptions, seq: u64) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let kind = r.heavy_head(EVENTS.len());
    let name = EVENTS[kind];
    let span = (o.days * 86_400.0) as i64;
    let mut t =
        o.start + (span as f64 * seq as f64 / o.events.max(1) as f64) as i64 + r.range(-30, 30);
    if r.f() < o.late_fraction {
        t -= r.pick(&[3600, 7200, 6 * 3600, 86_400, 3 * 86_400]);
    }
    let user = r.range(1, o.users as i64);
    let city = r.below(CITIES.len() as u64) as usize;
    let mut p = Map::new();
    p.insert(
        "time".into(),
        if !o.clean && r.f() < o.ms_fraction {
            json!(t * 1000 + r.range(0, 999))
        } else {
            json!(t)
        },
    );
    p.insert(
        "distinct_id".into(),
        if r.f() < 0.9 {
            s(&format!("user-{user}"))
        } else {
            json!(user)
        },
    );
    p.insert("$insert_id".into(), s(&r.hex(20)));
    p.insert("$device_id".into(), s(&r.hex(12)));
    p.insert(
        "mp_processing_time_ms".into(),
        json!(t * 1000 + r.range(50, 5000)),
    );
    p.insert("mp_lib".into(), s(r.pick(LIBS)));
    p.insert(
        "$lib_version".into(),
        s(&format!(
            "{}.{}.{}",
            r.range(1, 3),
            r.range(0, 50),
            r.range(0, 9)
        )),
    );
    p.insert("$city".into(), opt(CITIES[city]));
    p.insert(
        "mp_country_code".into(),
        s(COUNTRIES[city % COUNTRIES.len()]),
    );
    p.insert("$region".into(), opt(r.pick(REGIONS)));
    p.insert("$browser".into(), s(r.pick(BROWSERS)));
    let version = match r.below(5) {
        0 => json!(120),
        1 => json!(121),
        2 => json!(122),
        3 => json!(17.4),
        _ => json!(123.0),
    };
    p.insert("$browser_version".into(), version);
    p.insert("$os".into(), s(r.pick(OSES)));
    p.insert(
        "$screen_width".into(),
        json!(r.pick(&[1920, 1440, 390, 414, 1280])),
    );
    p.insert(
        "$screen_height".into(),
        json!(r.pick(&[1080, 900, 844, 896, 800])),
    );
    p.insert(
        "$current_url".into(),
        s(&format!(
            "https://example.com/{}?ref={}",
            r.pick(&["", "pricing", "docs/start", "blog/2024/launch"]),
            r.hex(4)
        )),
    );
    p.insert("$initial_referrer".into(), s(r.pick(REFERRERS)));
    p.insert(
        "$initial_referring_domain".into(),
        s(r.pick(&["$direct", "www.google.com", "t.co"])),
    );
    p.insert("$mp_api_endpoint".into(), s("api.mixpanel.com"));
    p.insert(
        "$mp_api_timestamp_ms".into(),
        json!(t * 1000 + r.range(0, 2000)),
    );
    if r.f() < 0.3 {
        p.insert("$user_id".into(), s(&format!("user-{user}")));
        p.insert(
            "utm_source".into(),
            s(r.pick(&["google", "newsletter", "twitter"])),
        );
        p.insert(
            "utm_campaign".into(),
            s(r.pick(&["spring_sale", "launch-2024", "Black Friday"])),
        );
    }
    custom(r, kind % 6, &mut p);
    if !o.clean {
        // Type conflicts: one name, several JSON types across events.
        let x = r.f();
        if x < 0.05 {
            p.insert("zip".into(), json!(r.range(10000, 99999)));
        } else if x < 0.08 {
            p.insert(
                "zip".into(),
                s(&format!("{:05}-{:04}", r.range(0, 99999), r.range(0, 9999))),
            );
        }
        if r.f() < 0.04 {
            let v = match r.below(7) {
                0 => json!(true),
                1 => json!(false),
                2 => s("yes"),
                3 => json!(1),
                4 => Value::Null,
                5 => json!([1, 2]),
                _ => json!({"on": true}),
            };
            p.insert("flag".into(), v);
        }
        // Awkward names, rarely.
        if r.f() < 0.15 {
            let k = r.range(1, 3) as usize;
            for name in r.sample(ODD_NAMES, k) {
                let v = match r.below(4) {
                    0 => json!(r.range(0, 1_000_000)),
                    1 => s(r.pick(WORDS)),
                    2 => json!(r.f() < 0.5),
                    _ => json!(r.uniform(-1e3, 1e3, 3)),
                };
                p.insert(name.to_string(), v);
            }
        }
    }
    // Drawn last, and only when asked for: the default stream stays as it was.
    if o.distinct_props > 0 {
        for _ in 0..3 {
            let k = format!("custom_{}", r.below(o.distinct_props));
            let v = if r.f() < 0.5 {
                json!(r.range(0, 1_000_000))
            } else {
                s(r.pick(WORDS))
            };
            p.insert(k, v);
        }
    }
    json!({"event": name, "properties": Value::Object(p)})
}

/// Writes `o.events` lines to `out`; returns (valid events, malformed lines).
pub fn generate(o: &GenOptions, out: &mut dyn Write) -> std::io::Result<(u64, u64)> {
    let mut r = Rng(o.seed);
    let (mut good, mut bad) = (0, 0);
    for seq in 0..o.events {
        if r.f() < o.bad_fraction {
            writeln!(out, "{}", r.pick(BAD_LINES))?;
            bad += 1;
        } else {
            let e = event(&mut r, o, seq);
            writeln!(out, "{e}")?;
            good += 1;
        }
    }
    Ok((good, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_bad_share() {
        let o = GenOptions {
            events: 2000,
            bad_fraction: 0.05,
            ..Default::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (good, bad) = generate(&o, &mut a).unwrap();
        generate(&o, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(good + bad, 2000);
        assert!((60..=140).contains(&bad), "{bad} malformed of 2000");
        let other = GenOptions { seed: 8, ..o };
        let mut c = Vec::new();
        generate(&other, &mut c).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn distinct_props_draws_from_that_many_names() {
        let o = GenOptions {
            events: 2000,
            distinct_props: 50,
            ..Default::default()
        };
        let mut out = Vec::new();
        generate(&o, &mut out).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let e: serde_json::Value = serde_json::from_slice(line).unwrap();
            let props = e["properties"].as_object().unwrap();
            let custom: Vec<&String> = props.keys().filter(|k| k.starts_with("custom_")).collect();
            // Three draws; the same name twice counts once.
            assert!((1..=3).contains(&custom.len()), "{custom:?}");
            names.extend(custom.into_iter().cloned());
        }
        assert_eq!(names.len(), 50, "{names:?}");
    }
}
