//! Name cleaning and collision numbering, exactly as SPEC §3.2 and §12 D3, D4, D7 say.

use std::collections::HashSet;
use std::sync::OnceLock;

/// The longest name Glue and Athena take.
pub const MAX_NAME: usize = 128;

fn reserved() -> &'static HashSet<&'static str> {
    static WORDS: OnceLock<HashSet<&'static str>> = OnceLock::new();
    WORDS.get_or_init(|| {
        include_str!("reserved_words.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(|l| l.split_whitespace())
            .collect()
    })
}

/// Whether `word` (already lowercase) is a reserved word.
pub fn is_reserved(word: &str) -> bool {
    reserved().contains(word)
}

/// Cleans a raw event or property name into a legal lowercase SQL identifier.
///
/// One leading `$` becomes `mp_`; the name is lowercased; every Unicode scalar value outside
/// `[a-z0-9_]` becomes one `_` (no collapsing, no trimming); an empty result is `_`; the result
/// is cut at 128 bytes; a reserved word gets `res_` in front.
pub fn clean(raw: &str) -> String {
    let (prefix, rest) = match raw.strip_prefix('$') {
        Some(r) => ("mp_", r),
        None => ("", raw),
    };
    let mut s = String::with_capacity(prefix.len() + rest.len());
    s.push_str(prefix);
    for c in rest.chars() {
        if c.is_ascii() {
            let l = c.to_ascii_lowercase();
            s.push(
                if l.is_ascii_lowercase() || l.is_ascii_digit() || l == '_' {
                    l
                } else {
                    '_'
                },
            );
        } else {
            // Unicode lowercase may give several scalar values; each is outside [a-z0-9_]
            // unless it is ASCII (e.g. 'K' KELVIN SIGN lowercases to 'k').
            for l in c.to_lowercase() {
                s.push(
                    if l.is_ascii_lowercase() || l.is_ascii_digit() || l == '_' {
                        l
                    } else {
                        '_'
                    },
                );
            }
        }
    }
    if s.is_empty() {
        s.push('_');
    }
    s.truncate(MAX_NAME);
    if is_reserved(&s) {
        s.insert_str(0, "res_");
        s.truncate(MAX_NAME);
    }
    s
}

/// The first free name among `base`, `base_1`, `base_2`, … (§12 D7); `base` is shortened so
/// that `base_n` fits in 128 characters.
pub fn first_free(base: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let base = &base[..base.len().min(MAX_NAME)];
    if !taken(base) {
        return base.to_string();
    }
    let mut n: u64 = 1;
    loop {
        let suffix = format!("_{n}");
        let keep = base.len().min(MAX_NAME - suffix.len());
        let candidate = format!("{}{}", &base[..keep], suffix);
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// The name candidate of a type-conflict column: `<column of the first class>_<class>`.
pub fn conflict_candidate(first_column: &str, class: sluice_engine::TypeClass) -> String {
    let mut s = format!("{first_column}_{}", class.as_str());
    s.truncate(MAX_NAME);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_the_spec_examples() {
        let cases = [
            ("$city", "mp_city"),
            ("$insert_id", "mp_insert_id"),
            ("$mp_api_timestamp_ms", "mp_mp_api_timestamp_ms"),
            ("mp_lib", "mp_lib"),
            ("actorUrn", "actorurn"),
            ("timestamp", "res_timestamp"),
            ("type", "type"),
            ("constraint", "res_constraint"),
            ("cloud.route", "cloud_route"),
            ("Plan Type", "plan_type"),
            ("item-price", "item_price"),
            ("Price ($)", "price____"),
            ("café", "caf_"),
            ("user", "res_user"),
            ("order", "res_order"),
            ("group", "res_group"),
            ("1st_visit", "1st_visit"),
            ("$identify", "mp_identify"),
            ("$$foo", "mp__foo"),
            ("a.b.c", "a_b_c"),
            ("date", "date"),
            ("", "_"),
            ("$insert_id ", "mp_insert_id_"),
        ];
        for (raw, want) in cases {
            assert_eq!(clean(raw), want, "clean({raw:?})");
        }
    }

    #[test]
    fn cuts_long_names_at_128() {
        let long = "x".repeat(150);
        assert_eq!(clean(&long), "x".repeat(128));
    }

    #[test]
    fn numbers_collisions_with_the_first_free_name() {
        let taken: HashSet<&str> = ["xy", "xy_1"].into_iter().collect();
        assert_eq!(first_free("xy", &|n| taken.contains(n)), "xy_2");
        assert_eq!(first_free("ab", &|n| taken.contains(n)), "ab");
        let long = "y".repeat(128);
        let t2: HashSet<String> = [long.clone()].into_iter().collect();
        let got = first_free(&long, &|n| t2.contains(n));
        assert_eq!(got.len(), 128);
        assert!(got.ends_with("_1"));
    }
}
