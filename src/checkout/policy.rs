//! The partner's limits on what a checkout may ask for (`[checkout]`), checked once at start-up.

use std::fmt;

use super::amount::Amount;
use crate::browser::origin::normalise_origin;

/// Longest accepted `network` or `currency` name: real identifiers are far
/// shorter, and a bound keeps the values cheap to log and forward.
pub(super) const MAX_NAME_LEN: usize = 32;

/// Whether the user wants to buy or sell crypto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckoutType {
    Buy,
    Sell,
}

impl CheckoutType {
    /// Parses the wire form. Case-sensitive, like the upstream API, so that
    /// what is validated here is exactly what is forwarded.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "buy" => Some(Self::Buy),
            "sell" => Some(Self::Sell),
            _ => None,
        }
    }

    /// The wire form, as sent to the upstream.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
}

impl fmt::Display for CheckoutType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Network and currency names: short identifiers of letters, digits, `-` and
/// `_`, which is all the upstream uses and safe to log and forward.
pub(super) fn is_valid_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Configured limits from the `[checkout]` settings, validated once at
/// start-up so that a bad setting stops the service instead of refusing (or
/// allowing) requests later.
///
/// Build it with [`CheckoutPolicy::from_config`]: the fields are public for
/// reading, and `redirect_url_origins` must hold normalised ASCII origins for
/// matching to work.
#[derive(Debug, Clone)]
pub struct CheckoutPolicy {
    /// Allowed networks; empty means any well-formed name.
    pub networks: Vec<String>,
    /// Allowed currencies; empty means any well-formed name.
    pub currencies: Vec<String>,
    /// Allowed checkout types; never empty.
    pub types: Vec<CheckoutType>,
    /// Allowed redirect origins, as `url::Origin::ascii_serialization`
    /// (e.g. `https://app.example.com`); empty means no `redirect_url` is
    /// accepted at all.
    pub redirect_url_origins: Vec<String>,
    /// Largest accepted amount, compared by value.
    pub max_amount: Option<Amount>,
}

impl CheckoutPolicy {
    /// Builds from raw config values. The error names the setting, e.g.
    /// `checkout.types: "rent" is not one of buy, sell`. Configured values
    /// may be repeated in errors: they come from the operator, not the user.
    ///
    /// Origins are normalised (lower-cased host, default port dropped, IDNA
    /// applied) so that they compare equal to the origin of a parsed
    /// `redirect_url`. Repeated entries are dropped.
    pub fn from_config(
        networks: &[String],
        currencies: &[String],
        types: &[String],
        redirect_url_origins: &[String],
        max_amount: &str,
    ) -> Result<Self, String> {
        let networks = config_names("checkout.networks", "network", networks)?;
        let currencies = config_names("checkout.currencies", "currency", currencies)?;

        if types.is_empty() {
            return Err("checkout.types: must list at least one of buy, sell".to_owned());
        }
        let mut parsed_types = Vec::with_capacity(types.len());
        for t in types {
            let ty = CheckoutType::parse(t)
                .ok_or_else(|| format!("checkout.types: {t:?} is not one of buy, sell"))?;
            if !parsed_types.contains(&ty) {
                parsed_types.push(ty);
            }
        }

        let mut origins: Vec<String> = Vec::with_capacity(redirect_url_origins.len());
        for raw in redirect_url_origins {
            let origin = config_origin(raw)?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }

        let max_amount = if max_amount.is_empty() {
            None
        } else {
            Some(
                Amount::parse(max_amount)
                    .map_err(|msg| format!("checkout.max_amount: {max_amount:?} {msg}"))?,
            )
        };

        Ok(Self {
            networks,
            currencies,
            types: parsed_types,
            redirect_url_origins: origins,
            max_amount,
        })
    }
}

fn config_names(key: &str, what: &str, values: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if !is_valid_name(v) {
            return Err(format!("{key}: {v:?} is not a valid {what} name"));
        }
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(out)
}

fn config_origin(raw: &str) -> Result<String, String> {
    normalise_origin(raw).map_err(|problem| format!("checkout.redirect_url_origins: {problem}"))
}
