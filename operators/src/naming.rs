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
        // SPEC §3.4, in its order (#29-#31 are about numbering and length: below and in
        // type_infer's tests), then §12 D3/D4 edge cases.
        let cases = [
            (1, "$city", "mp_city"),
            (2, "$insert_id", "mp_insert_id"),
            (3, "$mp_api_timestamp_ms", "mp_mp_api_timestamp_ms"),
            (4, "$mp_api_endpoint", "mp_mp_api_endpoint"),
            (
                5,
                "$distinct_id_before_identity",
                "mp_distinct_id_before_identity",
            ),
            (6, "$user_id", "mp_user_id"),
            (7, "$device_id", "mp_device_id"),
            (8, "$current_url", "mp_current_url"),
            (
                9,
                "$initial_referring_domain",
                "mp_initial_referring_domain",
            ),
            (10, "$browser_version", "mp_browser_version"),
            (11, "$lib_version", "mp_lib_version"),
            (11, "$os", "mp_os"),
            (11, "$region", "mp_region"),
            (12, "$screen_width", "mp_screen_width"),
            (12, "$search_engine", "mp_search_engine"),
            (12, "$duration", "mp_duration"),
            (13, "mp_lib", "mp_lib"),
            (14, "mp_processing_time_ms", "mp_processing_time_ms"),
            (15, "mp_country_code", "mp_country_code"),
            (16, "utm_source", "utm_source"),
            (17, "actorUrn", "actorurn"),
            (18, "entityUrn", "entityurn"),
            (18, "entityType", "entitytype"),
            (19, "timestamp", "res_timestamp"),
            (20, "type", "type"),
            (21, "constraint", "res_constraint"),
            (22, "orgId", "orgid"),
            (23, "cloud.route", "cloud_route"),
            (24, "SearchEvent", "searchevent"),
            (25, "BrowseV2ToggleNodeEvent", "browsev2togglenodeevent"),
            (
                26,
                "SearchAcrossLineageResultsViewEvent",
                "searchacrosslineageresultsviewevent",
            ),
            (27, "Signup", "signup"),
            (28, "purchase_amount", "purchase_amount"),
            (32, "Plan Type", "plan_type"),
            (33, "item-price", "item_price"),
            (34, "Price ($)", "price____"),
            (35, "café", "caf_"),
            (36, "user", "res_user"),
            (36, "order", "res_order"),
            (36, "group", "res_group"),
            (37, "1st_visit", "1st_visit"),
            (38, "$identify", "mp_identify"),
            (39, "$$foo", "mp__foo"),
            (40, "a.b.c", "a_b_c"),
            // §3.4 "also seen": trailing special characters are kept as `_`.
            (0, "$insert_id ", "mp_insert_id_"),
            // §12 D3: empty is `_`; no collapsing; non-ASCII scalar values are one `_` each.
            (0, "", "_"),
            (0, "a  b", "a__b"),
            (0, "東京", "__"),
            (0, "emoji_🎉", "emoji__"),
            // §12 D4: `date` is not a Redshift reserved word; `DATE` lowercases to it.
            (0, "date", "date"),
            (0, "DATE", "date"),
            (0, "Select", "res_select"),
            // Lowercasing first: `$` only at the start is special.
            (0, "a$b", "a_b"),
        ];
        for (n, raw, want) in cases {
            assert_eq!(clean(raw), want, "§3.4 #{n}: clean({raw:?})");
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
