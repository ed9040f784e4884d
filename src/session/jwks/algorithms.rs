//! `session.jwks.algorithms`: the signature algorithms a token may use, each with its validation
//! rules built once.

use jsonwebtoken::{Algorithm, Validation};

use crate::session::claims::ClaimRules;

/// The names `session.jwks.algorithms` takes, in the order the error message lists them.
const NAMES: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

/// One of the asymmetric algorithms above. HMAC is refused by name: an identity provider's key
/// set is public, so a token "signed" with HS256 under one of its keys could be made by anyone
/// (the classic algorithm-confusion attack).
pub(super) fn parse(name: &str) -> Result<Algorithm, String> {
    if let Some((_, algorithm)) = NAMES.iter().find(|(known, _)| *known == name) {
        return Ok(*algorithm);
    }
    Err(match name {
        "HS256" | "HS384" | "HS512" => format!(
            "{name:?} is symmetric: an identity provider's key set is public, so it cannot vouch for HMAC tokens"
        ),
        _ if name.eq_ignore_ascii_case("none") => {
            "\"none\" (unsigned tokens) is never accepted".to_owned()
        }
        _ => format!(
            "{name:?} is not one of {}",
            NAMES.map(|(known, _)| known).join(", ")
        ),
    })
}

/// The allow-list, with jsonwebtoken's checks for each algorithm in it.
#[derive(Debug)]
pub(super) struct AllowedAlgorithms {
    entries: Vec<(Algorithm, Validation)>,
}

impl AllowedAlgorithms {
    /// At least one name, each valid; repeats are harmless.
    pub(super) fn parse(names: &[String], rules: &ClaimRules) -> Result<Self, String> {
        if names.is_empty() {
            return Err("must list at least one algorithm, e.g. [\"RS256\"]".into());
        }
        let mut entries: Vec<(Algorithm, Validation)> = Vec::new();
        for name in names {
            let algorithm = parse(name.trim())?;
            if !entries.iter().any(|(known, _)| *known == algorithm) {
                entries.push((algorithm, rules.validation(algorithm)));
            }
        }
        Ok(Self { entries })
    }

    /// The checks for a token signed with `algorithm`, or `None` when it is not allowed.
    pub(super) fn validation(&self, algorithm: Algorithm) -> Option<&Validation> {
        self.entries
            .iter()
            .find(|(known, _)| *known == algorithm)
            .map(|(_, validation)| validation)
    }

    pub(super) fn list(&self) -> Vec<Algorithm> {
        self.entries
            .iter()
            .map(|(algorithm, _)| *algorithm)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ClaimRules {
        ClaimRules::new(
            Some("https://idp.example".into()),
            None,
            "sub".into(),
            "email".into(),
            30,
        )
        .unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn every_asymmetric_algorithm_is_accepted_by_name() {
        let all = names(&[
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        ]);
        let allowed = AllowedAlgorithms::parse(&all, &rules()).unwrap();
        assert_eq!(allowed.list().len(), 9);
        let validation = allowed.validation(Algorithm::EdDSA).unwrap();
        assert_eq!(validation.algorithms, vec![Algorithm::EdDSA]);
        assert!(allowed.validation(Algorithm::HS256).is_none());
    }

    #[test]
    fn repeats_collapse_and_only_listed_algorithms_are_allowed() {
        let allowed = AllowedAlgorithms::parse(&names(&["RS256", "RS256"]), &rules()).unwrap();
        assert_eq!(allowed.list(), vec![Algorithm::RS256]);
        assert!(allowed.validation(Algorithm::RS384).is_none());
        assert!(allowed.validation(Algorithm::ES256).is_none());
    }

    #[test]
    fn symmetric_unsigned_unknown_and_empty_lists_are_refused() {
        for (list, needle) in [
            (names(&[]), "at least one"),
            (names(&["RS256", "HS256"]), "symmetric"),
            (names(&["HS512"]), "symmetric"),
            (names(&["none"]), "never accepted"),
            (names(&["NONE"]), "never accepted"),
            (names(&["ES512"]), "is not one of RS256"),
            (names(&["rs256"]), "is not one of"),
            (names(&[""]), "is not one of"),
        ] {
            let problem = AllowedAlgorithms::parse(&list, &rules()).unwrap_err();
            assert!(problem.contains(needle), "{list:?}: {problem}");
        }
    }
}
