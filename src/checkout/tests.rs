use super::amount::{AMOUNT_DIGITS, AMOUNT_FORMAT, AMOUNT_ZERO};
use super::policy::is_valid_name;
use super::*;
use crate::admission::ValidationError;
use crate::proof::WidgetSessionRequest;
use proptest::prelude::*;
use serde_json::json;
use url::Url;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Any network and currency, both types, one redirect origin, no max.
fn open_policy() -> CheckoutPolicy {
    CheckoutPolicy::from_config(
        &[],
        &[],
        &strings(&["buy", "sell"]),
        &strings(&["https://app.example.com"]),
        "",
    )
    .unwrap()
}

fn strict_policy() -> CheckoutPolicy {
    CheckoutPolicy::from_config(
        &strings(&["ethereum", "polygon"]),
        &strings(&["usdc", "ETH"]),
        &strings(&["buy"]),
        &strings(&["https://app.example.com", "http://localhost:3000"]),
        "100",
    )
    .unwrap()
}

fn parse_value(
    v: serde_json::Value,
    policy: &CheckoutPolicy,
) -> Result<CheckoutRequest, ValidationError> {
    parse_checkout_request(v.to_string().as_bytes(), policy)
}

/// A valid body with `field` set to `value` (or removed when `None`).
fn body_with(field: &str, value: Option<serde_json::Value>) -> serde_json::Value {
    let mut body = json!({"network": "ethereum", "currency": "usdc", "amount": "10"});
    let obj = body.as_object_mut().unwrap();
    match value {
        Some(v) => {
            obj.insert(field.to_owned(), v);
        }
        None => {
            obj.remove(field);
        }
    }
    body
}

fn err_field(r: Result<CheckoutRequest, ValidationError>) -> String {
    let e = r.expect_err("expected a refusal");
    assert!(
        e.message.contains(&e.field),
        "message {:?} should name field {:?}",
        e.message,
        e.field
    );
    e.field
}

// ---------- CheckoutType ----------

#[test]
fn checkout_type_parse_and_as_str() {
    assert_eq!(CheckoutType::parse("buy"), Some(CheckoutType::Buy));
    assert_eq!(CheckoutType::parse("sell"), Some(CheckoutType::Sell));
    for bad in ["Buy", "SELL", "", " buy", "rent"] {
        assert_eq!(CheckoutType::parse(bad), None, "{bad:?}");
    }
    for t in [CheckoutType::Buy, CheckoutType::Sell] {
        assert_eq!(CheckoutType::parse(t.as_str()), Some(t));
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            format!("\"{}\"", t.as_str())
        );
        assert_eq!(
            serde_json::from_str::<CheckoutType>(&format!("\"{}\"", t.as_str())).unwrap(),
            t
        );
    }
}

// ---------- network / currency ----------

#[test]
fn names_accepted() {
    let p = open_policy();
    let n32 = "a".repeat(32);
    for ok in [
        "ethereum",
        "a",
        "A-b_9",
        "USDC",
        "0",
        "-",
        "_",
        n32.as_str(),
    ] {
        for field in ["network", "currency"] {
            let r = parse_value(body_with(field, Some(json!(ok))), &p).unwrap();
            let got = if field == "network" {
                r.network
            } else {
                r.currency
            };
            assert_eq!(got, ok);
        }
    }
}

#[test]
fn names_refused() {
    let p = open_policy();
    let n33 = "a".repeat(33);
    for bad in [
        "",
        " ",
        "a b",
        "eth.",
        "eth/1",
        "é",
        "١٢",
        "eth\n",
        "a\u{0}",
        n33.as_str(),
    ] {
        for field in ["network", "currency"] {
            let e = parse_value(body_with(field, Some(json!(bad))), &p).unwrap_err();
            assert_eq!(e.field, field, "{bad:?}");
            assert!(e.message.starts_with(field), "{e:?}");
        }
    }
}

#[test]
fn names_allow_list_exact_and_case_sensitive() {
    let p = strict_policy();
    assert!(parse_value(body_with("network", Some(json!("polygon"))), &p).is_ok());
    assert!(parse_value(body_with("currency", Some(json!("ETH"))), &p).is_ok());
    for (field, bad) in [
        ("network", "Ethereum"),
        ("network", "solana"),
        ("network", "ethereu"),
        ("currency", "eth"),
        ("currency", "USDC"),
    ] {
        let e = parse_value(body_with(field, Some(json!(bad))), &p).unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.message.contains("must be one of:"), "{e:?}");
    }
}

// ---------- amount ----------

#[test]
fn amounts_accepted() {
    let d18 = "9".repeat(18);
    let i18f18 = format!("{d18}.{d18}");
    let tiny = format!("0.{}1", "0".repeat(17));
    for ok in [
        "1",
        "100",
        "99.50",
        "0.1",
        "00.10",
        "007",
        "1.0",
        "0.000001",
        d18.as_str(),
        i18f18.as_str(),
        tiny.as_str(),
    ] {
        let a = Amount::parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        assert_eq!(a.as_str(), ok);
        let r = parse_value(body_with("amount", Some(json!(ok))), &open_policy()).unwrap();
        assert_eq!(r.amount.as_str(), ok, "forwarded verbatim");
    }
}

#[test]
fn amounts_refused() {
    let d19 = "1".repeat(19);
    let f19 = format!("1.{}", "1".repeat(19));
    let zeros19 = format!("{}1", "0".repeat(18));
    let cases: &[(&str, &str)] = &[
        ("0", AMOUNT_ZERO),
        ("0.0", AMOUNT_ZERO),
        ("0.00", AMOUNT_ZERO),
        ("000", AMOUNT_ZERO),
        ("1e5", AMOUNT_FORMAT),
        ("1E5", AMOUNT_FORMAT),
        ("-1", AMOUNT_FORMAT),
        ("+1", AMOUNT_FORMAT),
        (" 1", AMOUNT_FORMAT),
        ("1 ", AMOUNT_FORMAT),
        ("1.", AMOUNT_FORMAT),
        (".1", AMOUNT_FORMAT),
        (".", AMOUNT_FORMAT),
        ("1..2", AMOUNT_FORMAT),
        ("1.2.3", AMOUNT_FORMAT),
        ("١٢", AMOUNT_FORMAT),
        ("１", AMOUNT_FORMAT),
        ("", AMOUNT_FORMAT),
        ("1,5", AMOUNT_FORMAT),
        ("0x10", AMOUNT_FORMAT),
        ("NaN", AMOUNT_FORMAT),
        ("Infinity", AMOUNT_FORMAT),
        (d19.as_str(), AMOUNT_DIGITS),
        (f19.as_str(), AMOUNT_DIGITS),
        (zeros19.as_str(), AMOUNT_DIGITS),
    ];
    for (bad, msg) in cases {
        assert_eq!(Amount::parse(bad).unwrap_err(), *msg, "{bad:?}");
        let e = parse_value(body_with("amount", Some(json!(bad))), &open_policy()).unwrap_err();
        assert_eq!(e.field, "amount");
        assert_eq!(e.message, format!("amount {msg}"));
    }
    assert_eq!(
        Amount::parse("abc").unwrap_err(),
        r#"must be a positive decimal string like "100" or "99.50""#
    );
}

#[test]
fn amount_max_exact_comparisons() {
    let max = Amount::parse("100").unwrap();
    for ok in [
        "100",
        "100.000",
        "0100",
        "99.99",
        "1",
        "000100.0",
        "99.999999999999999999",
    ] {
        assert!(!Amount::parse(ok).unwrap().exceeds(&max), "{ok}");
    }
    for over in [
        "101",
        "100.0000001",
        "100.000000000000000001",
        "1000",
        "0101",
    ] {
        assert!(Amount::parse(over).unwrap().exceeds(&max), "{over}");
    }
    let half = Amount::parse("0.5").unwrap();
    assert!(Amount::parse("0.50000001").unwrap().exceeds(&half));
    assert!(!Amount::parse("0.49999999").unwrap().exceeds(&half));
    assert!(!Amount::parse("0.500").unwrap().exceeds(&half));
    assert!(Amount::parse("0.51").unwrap().exceeds(&half));

    let p = strict_policy();
    for ok in ["100.000", "0100", "99.99"] {
        assert!(
            parse_value(body_with("amount", Some(json!(ok))), &p).is_ok(),
            "{ok}"
        );
    }
    for over in ["101", "100.0000001"] {
        let e = parse_value(body_with("amount", Some(json!(over))), &p).unwrap_err();
        assert_eq!(e.field, "amount");
        assert_eq!(e.message, "amount must be at most 100");
    }
}

// ---------- type ----------

#[test]
fn type_field() {
    let p = open_policy();
    assert_eq!(
        parse_value(body_with("type", None), &p)
            .unwrap()
            .checkout_type,
        None
    );
    assert_eq!(
        parse_value(body_with("type", Some(json!("buy"))), &p)
            .unwrap()
            .checkout_type,
        Some(CheckoutType::Buy)
    );
    assert_eq!(
        parse_value(body_with("type", Some(json!("sell"))), &p)
            .unwrap()
            .checkout_type,
        Some(CheckoutType::Sell)
    );
    for bad in ["Buy", "rent", "", " buy"] {
        let e = parse_value(body_with("type", Some(json!(bad))), &p).unwrap_err();
        assert_eq!(e.field, "type");
        assert_eq!(e.message, "type must be one of: buy, sell");
    }
    // "sell" is a real type but not configured.
    let e = parse_value(body_with("type", Some(json!("sell"))), &strict_policy()).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("type", "type must be one of: buy")
    );
}

// ---------- redirect_url ----------

#[test]
fn redirect_url_accepted_and_normalised() {
    let p = strict_policy();
    for (raw, forwarded) in [
        ("https://app.example.com", "https://app.example.com/"),
        (
            "https://app.example.com/done?x=1#y",
            "https://app.example.com/done?x=1#y",
        ),
        ("https://app.example.com:443/x", "https://app.example.com/x"),
        ("https://APP.Example.COM/x", "https://app.example.com/x"),
        ("HTTPS://app.example.com/x", "https://app.example.com/x"),
        ("http://localhost:3000/cb", "http://localhost:3000/cb"),
        (
            "https://app.example.com/a/../b",
            "https://app.example.com/b",
        ),
    ] {
        let r = parse_value(body_with("redirect_url", Some(json!(raw))), &p)
            .unwrap_or_else(|e| panic!("{raw}: {e:?}"));
        assert_eq!(r.redirect_url.as_deref(), Some(forwarded));
    }
    assert_eq!(
        parse_value(body_with("redirect_url", None), &p)
            .unwrap()
            .redirect_url,
        None
    );
}

#[test]
fn redirect_url_refused() {
    let p = strict_policy();
    let long = format!("https://app.example.com/{}", "a".repeat(2048));
    for bad in [
        "https://app.example.com:8443/x",
        "http://app.example.com/x",
        "https://evil.example.com/x",
        "https://app.example.com.evil.example/x",
        "https://localhost:3000/cb",
        "http://localhost:3001/cb",
        "https://user@app.example.com/x",
        "https://user:pw@app.example.com/x",
        "https://@app.example.com/x",
        "https://:@app.example.com/x",
        "https://evil.example@app.example.com/x",
        "/relative/path",
        "//app.example.com/x",
        "app.example.com/x",
        "javascript:alert(1)",
        "JavaScript://app.example.com/%0aalert(1)",
        "data:text/html,hi",
        "ftp://app.example.com/x",
        "https:\\\\app.example.com\\x",
        "https://app.example.com\\@evil.example/",
        " https://app.example.com/x",
        "https://app.example.com/x ",
        "https://app.example.com/\tx",
        "https://app.example.com/\nx",
        "https://app.example.com/é",
        "",
        long.as_str(),
    ] {
        let e = parse_value(body_with("redirect_url", Some(json!(bad))), &p).expect_err(bad);
        assert_eq!(e.field, "redirect_url", "{bad}");
        assert!(e.message.starts_with("redirect_url "), "{e:?}");
    }
}

#[test]
fn redirect_url_length_boundary() {
    let p = strict_policy();
    let prefix = "https://app.example.com/";
    let at_limit = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    assert_eq!(at_limit.len(), 2048);
    assert!(parse_value(body_with("redirect_url", Some(json!(at_limit))), &p).is_ok());
    let over = format!("{at_limit}a");
    let e = parse_value(body_with("redirect_url", Some(json!(over))), &p).unwrap_err();
    assert_eq!(e.message, "redirect_url must be at most 2048 characters");
}

#[test]
fn redirect_url_refused_when_no_origins_configured() {
    let p = CheckoutPolicy::from_config(&[], &[], &strings(&["buy"]), &[], "").unwrap();
    let e = parse_value(
        body_with("redirect_url", Some(json!("https://app.example.com/x"))),
        &p,
    )
    .unwrap_err();
    assert_eq!(e.field, "redirect_url");
    assert!(parse_value(body_with("redirect_url", None), &p).is_ok());
}

// ---------- unknown, duplicate, wrong-typed and null fields ----------

#[test]
fn server_side_fields_refused() {
    for name in ["partner_user_id", "user_email", "client_ip", "address"] {
        let e = parse_value(body_with(name, Some(json!("x"))), &open_policy()).unwrap_err();
        assert_eq!(e.field, name);
        assert_eq!(
            e.message,
            format!(
                "unknown field \"{name}\": identity, client_ip and address are set by the server"
            )
        );
        // Also refused when not a string.
        let e = parse_value(body_with(name, Some(json!({"a": [1]}))), &open_policy()).unwrap_err();
        assert_eq!(e.field, name);
    }
}

#[test]
fn other_unknown_fields_refused_and_sanitised() {
    let e = parse_value(body_with("Amount", Some(json!("1"))), &open_policy()).unwrap_err();
    assert_eq!(e.field, "Amount");
    assert!(
        e.message
            .starts_with("unknown field \"Amount\": the accepted fields are")
    );

    let long = format!("x\u{7}\n\u{202E}{}", "y".repeat(100));
    let e = parse_value(body_with(&long, Some(json!(1))), &open_policy()).unwrap_err();
    assert_eq!(e.field, format!("x{}", "y".repeat(63)));
    assert!(!e.message.chars().any(|c| c.is_control() || c == '\u{202E}'));
    assert!(!e.message.contains(&"y".repeat(64)));

    let e = parse_checkout_request(br#"{"":1}"#, &open_policy()).unwrap_err();
    assert_eq!(e.field, "");
}

#[test]
fn duplicate_keys_refused() {
    for body in [
        r#"{"network":"ethereum","currency":"usdc","amount":"10","amount":"20"}"#,
        r#"{"network":"ethereum","network":"ethereum","currency":"usdc","amount":"10"}"#,
        r#"{"network":"ethereum","currency":"usdc","amount":"10","type":"buy","type":"buy"}"#,
        r#"{"network":"ethereum","currency":"usdc","amount":"10","amount":5}"#,
        r#"{"network":"ethereum","currency":"usdc","amount":"10","\u0061mount":"1"}"#,
    ] {
        let e = parse_checkout_request(body.as_bytes(), &open_policy()).unwrap_err();
        assert!(e.message.starts_with("duplicate field"), "{body}: {e:?}");
        assert!(["amount", "network", "type"].contains(&e.field.as_str()));
    }
}

#[test]
fn wrong_types_and_null_refused() {
    for field in ["network", "currency", "amount", "type", "redirect_url"] {
        for v in [
            json!(null),
            json!(1),
            json!(1.5),
            json!(true),
            json!([]),
            json!(["x"]),
            json!({"x": "y"}),
        ] {
            let e = parse_value(body_with(field, Some(v.clone())), &open_policy()).unwrap_err();
            assert_eq!(e.field, field, "{v}");
            assert!(
                e.message.starts_with(&format!("{field} must be a string")),
                "{e:?}"
            );
        }
    }
}

#[test]
fn missing_fields_refused() {
    for field in ["network", "currency", "amount"] {
        let e = parse_value(body_with(field, None), &open_policy()).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message),
            (field, format!("{field} is required"))
        );
    }
    let e = parse_checkout_request(b"{}", &open_policy()).unwrap_err();
    assert_eq!(e.field, "network");
}

#[test]
fn structural_errors_reported_before_values() {
    // An invalid amount comes before the unknown field in the document,
    // but the unknown field is reported.
    let body = br#"{"network":"ethereum","currency":"usdc","amount":"-1","client_ip":"1.2.3.4"}"#;
    assert_eq!(
        err_field(parse_checkout_request(body, &open_policy())),
        "client_ip"
    );
    // First structural problem in document order wins.
    let body = br#"{"address":"a","network":1,"currency":"usdc","amount":"1"}"#;
    assert_eq!(
        err_field(parse_checkout_request(body, &open_policy())),
        "address"
    );
}

// ---------- the body as a whole ----------

#[test]
fn bad_bodies_refused_as_body() {
    for body in [
        "",
        " ",
        "\n\t",
        "null",
        "[]",
        r#"["network"]"#,
        r#""str""#,
        "1",
        "true",
        "abc",
        "{",
        r#"{"network":"ethereum""#,
        r#"{"network":}"#,
        "{,}",
        r#"{"a" "b"}"#,
        "{'network':'x'}",
        r#"{"network":"ethereum","currency":"usdc","amount":"10"} x"#,
        r#"{"network":"ethereum","currency":"usdc","amount":"10"}{}"#,
        r#"{"network":"ethereum","currency":"usdc","amount":"10"},"#,
        r#"{"network":"ethereum","currency":"usdc","amount":"10",}"#,
        "\u{feff}{}",
        r#"{"network":"\ud800","currency":"usdc","amount":"10"}"#,
        // Trailing garbage wins over a refused field.
        r#"{"client_ip":"1.2.3.4"} x"#,
    ] {
        let e = parse_checkout_request(body.as_bytes(), &open_policy()).unwrap_err();
        assert_eq!(e.field, "body", "{body:?}: {e:?}");
        assert!(e.message.starts_with("body "), "{e:?}");
    }
    let e = parse_checkout_request(b"\xff\xfe", &open_policy()).unwrap_err();
    assert_eq!(e.field, "body");
    let e = parse_checkout_request(br#"{"network":"a\xffb"}"#, &open_policy()).unwrap_err();
    assert_eq!(e.field, "body");
}

#[test]
fn deep_nesting_does_not_overflow() {
    // Skipped values are walked without recursion, so depth costs no stack.
    let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let e = parse_checkout_request(deep.as_bytes(), &open_policy()).unwrap_err();
    assert_eq!(e.field, "x");
    let deep = format!(
        r#"{{"network":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let e = parse_checkout_request(deep.as_bytes(), &open_policy()).unwrap_err();
    assert_eq!(e.field, "network");
    // Unbalanced nesting is still a body error.
    let deep = format!(r#"{{"network":{}}}"#, "[".repeat(100_000));
    let e = parse_checkout_request(deep.as_bytes(), &open_policy()).unwrap_err();
    assert_eq!(e.field, "body");
}

#[test]
fn whitespace_around_object_and_escapes_accepted() {
    let body =
        b" \n{ \"network\" : \"eth\\u0065reum\", \"currency\":\"usdc\",\"amount\":\"1.5\" }\r\n";
    let r = parse_checkout_request(body, &strict_policy()).unwrap();
    assert_eq!(
        r,
        CheckoutRequest {
            network: "ethereum".into(),
            currency: "usdc".into(),
            amount: Amount::parse("1.5").unwrap(),
            checkout_type: None,
            redirect_url: None,
        }
    );
}

#[test]
fn full_request_accepted() {
    let body = json!({
        "redirect_url": "https://app.example.com/done",
        "type": "buy",
        "amount": "99.50",
        "currency": "usdc",
        "network": "polygon",
    });
    let r = parse_value(body, &strict_policy()).unwrap();
    assert_eq!(r.network, "polygon");
    assert_eq!(r.currency, "usdc");
    assert_eq!(r.amount.as_str(), "99.50");
    assert_eq!(r.checkout_type, Some(CheckoutType::Buy));
    assert_eq!(
        r.redirect_url.as_deref(),
        Some("https://app.example.com/done")
    );
}

#[test]
fn messages_never_echo_values() {
    let secret = "SECRET<script>";
    let p = strict_policy();
    for field in ["network", "currency", "amount", "type", "redirect_url"] {
        let e = parse_value(body_with(field, Some(json!(secret))), &p).unwrap_err();
        assert_eq!(e.field, field);
        assert!(!e.message.contains("SECRET"), "{e:?}");
    }
    let body = format!(r#"{{"network":"{secret}"}} {secret}"#);
    let e = parse_checkout_request(body.as_bytes(), &p).unwrap_err();
    assert!(!e.message.contains("SECRET"), "{e:?}");
    let e = parse_checkout_request(format!("\"{secret}\"").as_bytes(), &p).unwrap_err();
    assert!(!e.message.contains("SECRET"), "{e:?}");
    let e = parse_checkout_request(b"123456789", &p).unwrap_err();
    assert!(!e.message.contains("123456789"), "{e:?}");
}

#[test]
fn validation_error_displays_message() {
    let e = parse_value(body_with("amount", Some(json!("x"))), &open_policy()).unwrap_err();
    assert_eq!(e.to_string(), e.message);
}

// ---------- policy ----------

#[test]
fn policy_from_config_normalises() {
    let p = CheckoutPolicy::from_config(
        &strings(&["ethereum", "ethereum"]),
        &[],
        &strings(&["sell", "buy", "sell"]),
        &strings(&[
            "https://APP.example.com:443",
            "https://app.example.com/",
            "http://localhost:8080",
            "http://example.org:80",
        ]),
        "1000.50",
    )
    .unwrap();
    assert_eq!(p.networks, strings(&["ethereum"]));
    assert!(p.currencies.is_empty());
    assert_eq!(p.types, vec![CheckoutType::Sell, CheckoutType::Buy]);
    assert_eq!(
        p.redirect_url_origins,
        strings(&[
            "https://app.example.com",
            "http://localhost:8080",
            "http://example.org"
        ])
    );
    assert_eq!(p.max_amount, Some(Amount::parse("1000.50").unwrap()));
}

#[test]
fn policy_config_errors() {
    let buy = strings(&["buy"]);
    let none: Vec<String> = vec![];
    let cases: Vec<(Result<CheckoutPolicy, String>, &str)> = vec![
        (
            CheckoutPolicy::from_config(&strings(&["a b"]), &none, &buy, &none, ""),
            r#"checkout.networks: "a b" is not a valid network name"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &strings(&[""]), &buy, &none, ""),
            r#"checkout.currencies: "" is not a valid currency name"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &strings(&["rent"]), &none, ""),
            r#"checkout.types: "rent" is not one of buy, sell"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &strings(&["Buy"]), &none, ""),
            r#"checkout.types: "Buy" is not one of buy, sell"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &none, &none, ""),
            "checkout.types: must list at least one of buy, sell",
        ),
        (
            CheckoutPolicy::from_config(
                &none,
                &none,
                &buy,
                &strings(&["https://a.example/path"]),
                "",
            ),
            r#"checkout.redirect_url_origins: "https://a.example/path" must be an origin (scheme://host[:port]) without a path"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &strings(&["https://a.example?q"]), ""),
            r#"checkout.redirect_url_origins: "https://a.example?q" must be an origin (scheme://host[:port]) without a path"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &strings(&["a.example"]), ""),
            r#"checkout.redirect_url_origins: "a.example" is not an absolute http or https origin"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &strings(&["ftp://a.example"]), ""),
            r#"checkout.redirect_url_origins: "ftp://a.example" must use http or https"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &strings(&["https://u@a.example"]), ""),
            r#"checkout.redirect_url_origins: "https://u@a.example" must not contain a user name or password"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &none, "0"),
            r#"checkout.max_amount: "0" must be greater than zero"#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &none, "1e3"),
            r#"checkout.max_amount: "1e3" must be a positive decimal string like "100" or "99.50""#,
        ),
        (
            CheckoutPolicy::from_config(&none, &none, &buy, &none, " 100"),
            r#"checkout.max_amount: " 100" must be a positive decimal string like "100" or "99.50""#,
        ),
    ];
    for (result, expected) in cases {
        assert_eq!(result.unwrap_err(), expected);
    }
}

// ---------- upstream body ----------

#[test]
fn widget_session_request_serialisation() {
    let req = parse_value(
        json!({"network": "polygon", "currency": "usdc", "amount": "007.50",
               "type": "buy", "redirect_url": "https://app.example.com:443/done"}),
        &strict_policy(),
    )
    .unwrap();
    let mut body = req.widget_session("user-1", "a@b.example");
    body.client_ip = Some("203.0.113.7".parse().unwrap());
    body.address = Some("0xabc");
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        concat!(
            r#"{"partner_user_id":"user-1","user_email":"a@b.example","network":"polygon","#,
            r#""currency":"usdc","amount":"007.50","type":"buy","#,
            r#""redirect_url":"https://app.example.com/done","client_ip":"203.0.113.7","#,
            r#""address":"0xabc"}"#
        )
    );

    body.client_ip = Some("2001:db8::1".parse().unwrap());
    assert_eq!(
        serde_json::to_value(&body).unwrap()["client_ip"],
        json!("2001:db8::1")
    );

    let minimal = WidgetSessionRequest {
        partner_user_id: "user-1",
        user_email: "a@b.example",
        network: "ethereum",
        currency: "usdc",
        amount: "1",
        checkout_type: None,
        redirect_url: None,
        client_ip: None,
        address: None,
    };
    assert_eq!(
        serde_json::to_value(&minimal).unwrap(),
        json!({"partner_user_id": "user-1", "user_email": "a@b.example",
               "network": "ethereum", "currency": "usdc", "amount": "1"})
    );
    let sell = WidgetSessionRequest {
        checkout_type: Some("sell"),
        ..minimal
    };
    assert_eq!(serde_json::to_value(&sell).unwrap()["type"], json!("sell"));
}

#[test]
fn widget_session_request_debug_redacts_personal_data() {
    let body = WidgetSessionRequest {
        partner_user_id: "user-1",
        user_email: "alice@private.example",
        network: "ethereum",
        currency: "usdc",
        amount: "1",
        checkout_type: Some("buy"),
        redirect_url: None,
        client_ip: Some("198.51.100.23".parse().unwrap()),
        address: Some("0xdeadbeef"),
    };
    for dbg in [format!("{body:?}"), format!("{body:#?}")] {
        assert!(!dbg.contains("alice"), "{dbg}");
        assert!(!dbg.contains("private.example"), "{dbg}");
        assert!(!dbg.contains("198.51.100.23"), "{dbg}");
        assert!(!dbg.contains("deadbeef"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        assert!(dbg.contains("user-1") && dbg.contains("ethereum"), "{dbg}");
    }
}

// ---------- properties ----------

/// Independent statement of the amount grammar, for the properties.
fn matches_amount_grammar(s: &str) -> bool {
    let mut parts = s.split('.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits =
        |p: &str, max: usize| (1..=max).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit());
    parts.next().is_none()
        && digits(int, 18)
        && frac.is_none_or(|f| digits(f, 18))
        && s.chars().any(|c| ('1'..='9').contains(&c))
}

/// The value times 10^18, exact for every valid amount (< 10^36 < 2^128).
fn scaled(s: &str) -> u128 {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: u128 = int.parse().unwrap();
    let frac_scaled: u128 = format!("{frac:0<18}").parse().unwrap();
    int * 10u128.pow(18) + frac_scaled
}

fn amount_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,20}(\\.[0-9]{0,20})?",
        "[0-9.+\\-eE ]{0,12}",
        any::<String>(),
    ]
}

// That arbitrary bytes never panic the parser, and every refusal names a field, is checked once,
// on the public parser, in `tests/parsers.rs`.
proptest! {
    #[test]
    fn accepted_amounts_match_grammar(s in amount_like()) {
        let accepted = Amount::parse(&s).is_ok();
        prop_assert_eq!(accepted, matches_amount_grammar(&s), "{:?}", s);
        let body = json!({"network": "ethereum", "currency": "usdc", "amount": s});
        let r = parse_value(body, &open_policy());
        prop_assert_eq!(r.is_ok(), accepted);
        if let Ok(r) = r {
            prop_assert_eq!(r.amount.as_str(), s.as_str());
        }
    }

    #[test]
    fn arbitrary_field_values_never_panic_and_respect_grammar(
        network in any::<String>(),
        currency in any::<String>(),
        amount in amount_like(),
        ty in any::<String>(),
        redirect in any::<String>(),
    ) {
        let body = json!({"network": network, "currency": currency, "amount": amount,
                          "type": ty, "redirect_url": redirect});
        if let Ok(r) = parse_value(body, &open_policy()) {
            prop_assert!(matches_amount_grammar(r.amount.as_str()));
            prop_assert!(is_valid_name(&r.network) && is_valid_name(&r.currency));
            let url = Url::parse(r.redirect_url.as_deref().unwrap()).unwrap();
            prop_assert_eq!(url.origin().ascii_serialization(), "https://app.example.com");
        }
    }

    #[test]
    fn exceeds_matches_exact_arithmetic(
        a in "[0-9]{1,18}(\\.[0-9]{1,18})?",
        b in "[0-9]{1,18}(\\.[0-9]{1,18})?",
    ) {
        prop_assume!(matches_amount_grammar(&a) && matches_amount_grammar(&b));
        let (x, y) = (Amount::parse(&a).unwrap(), Amount::parse(&b).unwrap());
        prop_assert_eq!(x.exceeds(&y), scaled(&a) > scaled(&b));
        prop_assert_eq!(y.exceeds(&x), scaled(&b) > scaled(&a));
    }
}
